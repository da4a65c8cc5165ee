//! Loading [`Settings`] from the layers, remembering which layer gave each value, and rendering the result.

use crate::Settings;
use config::{Config, File, FileFormat, Map, Value, ValueKind};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The short environment variables, and the key each one sets. Every key can also be set
/// as `CALLFLOW_<SECTION>__<KEY>`.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("CALLFLOW_PORT", "server.port"),
    ("CALLFLOW_BIND_ADDR", "server.bind_addr"),
    ("CALLFLOW_WORKERS", "processing.workers"),
    ("CALLFLOW_UPLOAD_DIR", "storage.upload_dir"),
    ("CALLFLOW_RESULTS_DIR", "storage.results_dir"),
    ("CALLFLOW_ENABLE_NDPI", "ndpi.enabled"),
];

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &["auth.api_keys", "server.cors_origins", "server.allowed_origins", "server.allowed_hosts"];

/// Settings that are tables of keys inside a section (`[server.tls]`), rather than values
/// (`auth.users` is a map, but it is one value).
const TABLES: &[&str] = &["server.tls"];

/// Keys of earlier versions and the key that replaced each: named in the error, so that
/// an old configuration says how to fix it.
const RENAMED: &[(&str, &str)] = &[("server.tls_cert", "server.tls.cert"), ("server.tls_key", "server.tls.key")];

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable (its name).
    Env(String),
    /// A command-line flag (its spelling, e.g. `--port`).
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the configuration could not be loaded. Every variant names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key no section has (a typo, or a setting from another version).
    #[error("unknown configuration key `{key}` (from {origin})")]
    UnknownKey {
        /// The key as `section.key` (or the section alone).
        key: String,
        /// The layer that set it.
        origin: Source,
    },
    /// A key of an earlier version that has another name now.
    #[error("configuration key `{key}` (from {origin}) is now `{renamed}`")]
    RenamedKey {
        /// The old key.
        key: String,
        /// Its name now.
        renamed: &'static str,
        /// The layer that set it.
        origin: Source,
    },
    /// A value of the wrong type or out of range.
    #[error("invalid value for `{key}` (from {origin}): {message}")]
    InvalidValue {
        /// The key as `section.key`.
        key: String,
        /// The layer that set it.
        origin: Source,
        /// What is wrong with it.
        message: String,
    },
    /// The configuration file's extension is not `.toml`, `.json`, `.yaml` or `.yml`.
    #[error("configuration file {path}: unknown format (use .toml, .json, .yaml or .yml)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The configuration file cannot be read or parsed.
    #[error("configuration file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// The reader's or parser's message.
        message: String,
    },
}

/// Builds [`Settings`] from a file, environment variables and flags. Nothing is read until
/// [`Loader::load`]; the environment is only what [`Loader::env_vars`] is given, so tests
/// never depend on the process environment.
#[derive(Clone, Debug, Default)]
pub struct Loader {
    file: Option<PathBuf>,
    env: Vec<(String, String)>,
    flags: Vec<(String, String, String)>,
}

/// The effective settings and where each value came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The effective settings.
    pub settings: Settings,
    /// `section.key` -> the layer that set it (absent: the default).
    sources: BTreeMap<String, Source>,
}

impl Loader {
    /// A loader with no file, no environment and no flags: the defaults.
    pub fn new() -> Loader {
        Loader::default()
    }

    /// Reads this configuration file (TOML, JSON or YAML by extension); it must exist.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Loader {
        self.file = Some(path.into());
        self
    }

    /// Uses these environment variables; those not starting with `CALLFLOW_` are ignored,
    /// and so are `CALLFLOW_*` names without `__` that are not aliases (other tools,
    /// such as the benchmarks, use the prefix too).
    pub fn env_vars(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Loader {
        self.env.extend(vars.into_iter().filter(|(name, _)| name.starts_with("CALLFLOW_")));
        self
    }

    /// Uses the process environment.
    pub fn process_env(self) -> Loader {
        self.env_vars(std::env::vars())
    }

    /// Sets `key` (`section.key`) from a command-line flag spelled `flag`.
    pub fn flag(mut self, key: &str, value: impl Into<String>, flag: &str) -> Loader {
        self.flags.push((key.to_string(), value.into(), flag.to_string()));
        self
    }

    /// Reads every layer and checks the result.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let known = known_keys();
        let mut sources = BTreeMap::new();
        let mut builder = Config::builder();

        if let Some(path) = &self.file {
            let format = file_format(path)?;
            let layer = Config::builder()
                .add_source(File::from(path.as_path()).format(format).required(true))
                .build()
                .map_err(|e| ConfigError::File { path: path.clone(), message: e.to_string() })?;
            let table = config::Source::collect(&layer)
                .map_err(|e| ConfigError::File { path: path.clone(), message: e.to_string() })?;
            record(None, &table, &known, &Source::File(path.clone()), &mut sources)?;
            builder = builder.add_source(layer);
        }

        let mut env = self.env.clone();
        // Sorted so that the result does not depend on the environment's order.
        env.sort();
        for (var, value) in &env {
            let Some(key) = env_key(var) else { continue };
            let source = Source::Env(var.clone());
            check_key(&key, &known, &source)?;
            builder = if LIST_KEYS.contains(&key.as_str()) {
                let items: Vec<String> =
                    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                builder.set_override(key.as_str(), items)
            } else {
                builder.set_override(key.as_str(), value.as_str())
            }
            .map_err(|e| invalid(&key, &source, e))?;
            sources.insert(key, source);
        }

        for (key, value, flag) in &self.flags {
            let source = Source::Flag(flag.clone());
            check_key(key, &known, &source)?;
            builder = builder.set_override(key.as_str(), value.as_str()).map_err(|e| invalid(key, &source, e))?;
            sources.insert(key.clone(), source);
        }

        let merged = builder.build().map_err(|e| ConfigError::InvalidValue {
            key: String::new(),
            origin: Source::Default,
            message: e.to_string(),
        })?;
        let settings: Settings = merged.try_deserialize().map_err(|e| {
            let key = error_key(&e).unwrap_or_default();
            let source = sources.get(&key).cloned().unwrap_or(Source::Default);
            ConfigError::InvalidValue { key, origin: source, message: error_message(e) }
        })?;
        if let Err((key, message)) = settings.validate() {
            let source = sources.get(key).cloned().unwrap_or(Source::Default);
            return Err(ConfigError::InvalidValue { key: key.to_string(), origin: source, message });
        }
        Ok(Loaded { settings, sources })
    }
}

impl Loaded {
    /// The layer that set `key` (`section.key`), or `None` for a key that does not exist.
    pub fn source(&self, key: &str) -> Option<&Source> {
        if let Some(source) = self.sources.get(key) {
            return Some(source);
        }
        known_keys().get(key).filter(|table| !**table).map(|_| &Source::Default)
    }

    /// Every key with its effective value (as JSON) and its source, section by section.
    pub fn entries(&self) -> Vec<(String, serde_json::Value, Source)> {
        let value = serde_json::to_value(&self.settings).expect("settings serialize");
        leaves(&value)
            .into_iter()
            .map(|(key, v)| {
                let source = self.sources.get(&key).cloned().unwrap_or(Source::Default);
                (key, v.clone(), source)
            })
            .collect()
    }

    /// The effective configuration as TOML-like text, each value followed by its source.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut section = "";
        let entries = self.entries();
        for (key, value, source) in &entries {
            let (sec, name) = key.split_once('.').expect("section.key");
            if sec != section {
                if !section.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("[{sec}]\n"));
                section = sec;
            }
            let line = match value {
                serde_json::Value::Null => format!("# {name} = (not set)"),
                // A PostgreSQL URL's password is not printed.
                serde_json::Value::String(url) if key == "storage.database" => {
                    format!("{name} = {}", serde_json::Value::String(crate::redact_url(url)))
                }
                v => format!("{name} = {v}"),
            };
            out.push_str(&format!("{line:<44} # {source}\n"));
        }
        // `sec` borrows from `entries`, which lives until here.
        drop(entries);
        out
    }
}

/// Every value of `settings` (serialized) under its full key, `section.key` or
/// `section.table.key`, in order.
fn leaves(settings: &serde_json::Value) -> Vec<(String, &serde_json::Value)> {
    fn walk<'a>(prefix: &str, fields: &'a serde_json::Value, out: &mut Vec<(String, &'a serde_json::Value)>) {
        for (name, value) in fields.as_object().into_iter().flatten() {
            let key = format!("{prefix}.{name}");
            if TABLES.contains(&key.as_str()) {
                walk(&key, value, out);
            } else {
                out.push((key, value));
            }
        }
    }
    let mut out = Vec::new();
    for (section, fields) in settings.as_object().into_iter().flatten() {
        walk(section, fields, &mut out);
    }
    out
}

/// Every key, and every table (a section, or one of [`TABLES`]) marked `true`, from the
/// defaults' serialized form: a key is known iff the settings have a field for it.
fn known_keys() -> BTreeMap<String, bool> {
    let value = serde_json::to_value(Settings::default()).expect("settings serialize");
    let mut keys: BTreeMap<String, bool> = leaves(&value).into_iter().map(|(key, _)| (key, false)).collect();
    for section in value.as_object().into_iter().flatten().map(|(s, _)| s) {
        keys.insert(section.clone(), true);
    }
    for table in TABLES {
        keys.insert(table.to_string(), true);
    }
    keys
}

fn unknown_key(key: &str, origin: &Source) -> ConfigError {
    match RENAMED.iter().find(|(old, _)| *old == key) {
        Some((_, renamed)) => ConfigError::RenamedKey { key: key.to_string(), renamed, origin: origin.clone() },
        None => ConfigError::UnknownKey { key: key.to_string(), origin: origin.clone() },
    }
}

fn check_key(key: &str, known: &BTreeMap<String, bool>, source: &Source) -> Result<(), ConfigError> {
    // A table (a section, `server.tls`) is not a settable key from the environment or a flag.
    match known.get(key) {
        Some(false) => Ok(()),
        _ => Err(unknown_key(key, source)),
    }
}

/// Records the source of every key a file's `table` (under `prefix`) sets, refusing
/// unknown ones.
fn record(
    prefix: Option<&str>,
    table: &Map<String, Value>,
    known: &BTreeMap<String, bool>,
    source: &Source,
    sources: &mut BTreeMap<String, Source>,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = prefix.map_or_else(|| name.clone(), |p| format!("{p}.{name}"));
        match (known.get(&key), &value.kind) {
            (Some(true), ValueKind::Table(fields)) => record(Some(&key), fields, known, source, sources)?,
            (Some(true), _) => {
                return Err(ConfigError::InvalidValue {
                    key,
                    origin: source.clone(),
                    message: "a section must be a table of keys".into(),
                })
            }
            (Some(false), _) => {
                sources.insert(key, source.clone());
            }
            (None, _) => return Err(unknown_key(&key, source)),
        }
    }
    Ok(())
}

fn file_format(path: &Path) -> Result<FileFormat, ConfigError> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("toml") => Ok(FileFormat::Toml),
        Some("json") => Ok(FileFormat::Json),
        Some("yaml" | "yml") => Ok(FileFormat::Yaml),
        _ => Err(ConfigError::UnknownFormat { path: path.to_path_buf() }),
    }
}

/// `CALLFLOW_PORT` -> `server.port`, `CALLFLOW_STORAGE__RETENTION` -> `storage.retention`,
/// `CALLFLOW_SERVER__TLS__CERT` -> `server.tls.cert`; `None` for a variable that is not ours.
fn env_key(var: &str) -> Option<String> {
    if let Some((_, key)) = ENV_ALIASES.iter().find(|(alias, _)| *alias == var) {
        return Some(key.to_string());
    }
    let rest = var.strip_prefix("CALLFLOW_")?;
    rest.contains("__").then(|| rest.split("__").collect::<Vec<_>>().join(".").to_ascii_lowercase())
}

fn invalid(key: &str, source: &Source, e: config::ConfigError) -> ConfigError {
    ConfigError::InvalidValue { key: key.to_string(), origin: source.clone(), message: error_message(e) }
}

/// The key a deserialization error is about, when the config crate knows it.
fn error_key(e: &config::ConfigError) -> Option<String> {
    match e {
        config::ConfigError::Type { key, .. } | config::ConfigError::At { key, .. } => key.clone(),
        _ => None,
    }
}

/// The config crate's message without its own "for key ... in ..." suffix, which the
/// caller's error says better.
fn error_message(e: config::ConfigError) -> String {
    match e {
        config::ConfigError::Type { unexpected, expected, .. } => format!("found {unexpected}, expected {expected}"),
        config::ConfigError::At { error, .. } => error_message(*error),
        other => other.to_string(),
    }
}
