//! callflowd's settings and how they are loaded: built-in defaults < config file < environment < command-line flags.
//!
//! [`Settings`] is plain data, one struct per section (`server`, `processing`, `storage`,
//! `ndpi`, `websocket`, `auth`, `limits`), shared by `callflowd`, `callflow-cli` and the
//! libraries they configure. [`Loader`] builds it from the layers, later layers winning:
//!
//! 1. the built-in defaults ([`Settings::default`]);
//! 2. a file (`--config FILE`): TOML, JSON or YAML, chosen by its extension;
//! 3. the environment: `CALLFLOW_PORT`, `CALLFLOW_BIND_ADDR`, `CALLFLOW_WORKERS`,
//!    `CALLFLOW_UPLOAD_DIR`, `CALLFLOW_RESULTS_DIR`, `CALLFLOW_ENABLE_NDPI`, and
//!    `CALLFLOW_<SECTION>__<KEY>` for every key (`CALLFLOW_STORAGE__RETENTION=12h`);
//! 4. command-line flags, which the binary hands over as `key = value` pairs.
//!
//! An unknown key or a value of the wrong type is a [`ConfigError`] naming the key and
//! the layer it came from, never a silent default. [`Loaded::render`] prints the
//! effective configuration with the source of every value (`callflowd --print-config`).
//!
//! Architecture invariant: this crate knows nothing of jobs, captures or HTTP; it only
//! describes settings. It depends on no other callflow crate.
//!
//! ```
//! use callflow_config::{Loader, Source};
//!
//! let loaded = Loader::new()
//!     .env_vars([("CALLFLOW_WORKERS".to_string(), "3".to_string())])
//!     .flag("server.port", "9000", "--port")
//!     .load()?;
//! assert_eq!(loaded.settings.processing.workers, 3);
//! assert_eq!(loaded.settings.server.port, 9000);
//! assert_eq!(loaded.source("server.port"), Some(&Source::Flag("--port".into())));
//! assert_eq!(loaded.source("server.bind_addr"), Some(&Source::Default));
//! # Ok::<(), callflow_config::ConfigError>(())
//! ```

pub mod duration;
mod load;

pub use load::{ConfigError, Loaded, Loader, Source, ENV_ALIASES};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Every setting of callflowd, by section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the HTTP API listens.
    pub server: ServerSettings,
    /// The analysis job pool.
    pub processing: ProcessingSettings,
    /// Directories, database and retention.
    pub storage: StorageSettings,
    /// The nDPI classifier.
    pub ndpi: NdpiSettings,
    /// Live event streams.
    pub websocket: WebSocketSettings,
    /// API authentication.
    pub auth: AuthSettings,
    /// Bounds on what clients may ask for.
    pub limits: LimitSettings,
}

/// `[server]`: where the HTTP API listens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind (`CALLFLOW_BIND_ADDR`).
    pub bind_addr: String,
    /// TCP port (`CALLFLOW_PORT`).
    pub port: u16,
    /// How long a request may take before it is answered with a timeout.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings { bind_addr: "127.0.0.1".into(), port: 8080, request_timeout: Duration::from_secs(30) }
    }
}

/// `[processing]`: the analysis job pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingSettings {
    /// Worker threads (`CALLFLOW_WORKERS`); the default is the number of cores.
    pub workers: usize,
    /// After a crash, re-run the jobs that were running (true) or mark them FAILED "interrupted".
    pub resume_interrupted: bool,
    /// A progress event is published at most once per this many packets of a job...
    pub progress_every_packets: u64,
    /// ...and at most this many times per second per job.
    pub progress_per_second: u32,
    /// How long (capture time) a finished call waits for retransmissions and late media.
    #[serde(with = "duration")]
    pub session_linger: Duration,
    /// How long (capture time) a silent session stays open.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        ProcessingSettings {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            resume_interrupted: true,
            progress_every_packets: 1_000,
            progress_per_second: 10,
            session_linger: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// `[storage]`: directories, database and retention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Where uploaded captures are kept while their jobs exist (`CALLFLOW_UPLOAD_DIR`).
    pub upload_dir: PathBuf,
    /// Where results live, the database included (`CALLFLOW_RESULTS_DIR`).
    pub results_dir: PathBuf,
    /// The SQLite database; unset: `callflow.db` in `results_dir`, so one results
    /// directory is one self-contained instance.
    pub database: Option<PathBuf>,
    /// Finished jobs older than this are removed with their files.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// How often the retention sweeper runs.
    #[serde(with = "duration")]
    pub sweep_interval: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            upload_dir: "uploads".into(),
            results_dir: "results".into(),
            database: None,
            retention: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(600),
        }
    }
}

impl StorageSettings {
    /// The database file: `database`, or `callflow.db` in `results_dir`.
    pub fn database_path(&self) -> PathBuf {
        self.database.clone().unwrap_or_else(|| self.results_dir.join("callflow.db"))
    }
}

/// `[ndpi]`: the nDPI classifier.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NdpiSettings {
    /// Classify with nDPI as well as the built-in heuristics (`CALLFLOW_ENABLE_NDPI`).
    pub enabled: bool,
}

/// `[websocket]`: live event streams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSettings {
    /// Serve job events over WebSocket/SSE.
    pub enabled: bool,
    /// Events buffered per subscriber; past it the oldest progress events are dropped
    /// (state changes never are).
    pub event_buffer: usize,
    /// How often an idle connection is pinged.
    #[serde(with = "duration")]
    pub ping_interval: Duration,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        WebSocketSettings { enabled: true, event_buffer: 1024, ping_interval: Duration::from_secs(30) }
    }
}

/// `[auth]`: API authentication.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Require an API key on every request.
    pub enabled: bool,
    /// The accepted keys (in the environment: comma-separated).
    pub api_keys: Vec<String>,
}

/// `[limits]`: bounds on what clients may ask for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    /// Jobs that may wait in the queue; past it a submission is refused.
    pub max_queued_jobs: usize,
    /// Largest page of a listing.
    pub max_page_size: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings { max_upload_bytes: 2 << 30, max_queued_jobs: 10_000, max_page_size: 1_000 }
    }
}

impl Settings {
    /// Checks what the types cannot say; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let checks: [(&'static str, bool, &str); 6] = [
            ("processing.workers", self.processing.workers >= 1, "must be at least 1"),
            ("processing.progress_every_packets", self.processing.progress_every_packets >= 1, "must be at least 1"),
            ("processing.progress_per_second", self.processing.progress_per_second >= 1, "must be at least 1"),
            ("limits.max_queued_jobs", self.limits.max_queued_jobs >= 1, "must be at least 1"),
            ("limits.max_page_size", self.limits.max_page_size >= 1, "must be at least 1"),
            (
                "auth.api_keys",
                !self.auth.enabled || !self.auth.api_keys.is_empty(),
                "must not be empty when auth.enabled",
            ),
        ];
        match checks.into_iter().find(|(_, ok, _)| !ok) {
            Some((key, _, why)) => Err((key, why.to_string())),
            None => Ok(()),
        }
    }
}
