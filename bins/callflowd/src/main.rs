//! `callflowd`: the service. Loads the layered configuration, starts the analysis job manager on the configured directories, and serves the HTTP API (`callflow-server`).
//!
//! `--input X [--output Y] [--workers N]` analyses one capture instead, as `callflow-cli
//! analyze` does (the earlier C++ callflowd's batch mode); `--api-server` and `--api-port`,
//! its spellings of the default mode and `--port`, are accepted too.
//!
//! SIGTERM or Ctrl-C stops it gracefully: no new connections, requests in flight finish,
//! event streams are closed, then the job manager drains (no new jobs; running ones get
//! `cluster.drain_timeout` to finish, and those still running go back to the queue for
//! any node), and it exits.

use anyhow::{Context, Result};
use callflow_config::{Database, Loaded, Loader, Settings};
use callflow_jobs::{
    analyze_to_output, ClassifierFactory, DirLock, DirectAnalysis, JobManager, JobStore, ManagerOptions, ResultFormat,
};
use callflow_ndpi::{NdpiClassifier, Options};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The callflowd service: the HTTP API over the analysis job manager.
#[derive(Parser, Debug)]
#[command(name = "callflowd", version, about)]
struct Cli {
    /// Configuration file (TOML, JSON or YAML, by extension).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration, with the source of each value, and exit.
    #[arg(long)]
    print_config: bool,
    /// server.bind_addr
    #[arg(long, value_name = "ADDR")]
    bind_addr: Option<String>,
    /// server.port (also `--api-port`, the earlier callflowd's spelling)
    #[arg(long, visible_alias = "api-port")]
    port: Option<u16>,
    /// Serve the HTTP API: the default mode, accepted for the earlier callflowd's
    /// `--api-server --api-port N`.
    #[arg(long, conflicts_with = "input")]
    api_server: bool,
    /// Analyse this capture once, as `callflow-cli analyze` does, instead of serving
    /// (`--input X --output Y --workers N`, the earlier callflowd's batch mode).
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// With `--input`: where to write the `callflow/v1` document (default: standard output).
    #[arg(long, value_name = "FILE", requires = "input")]
    output: Option<PathBuf>,
    /// processing.workers (with `--input`: the analysis threads)
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// storage.upload_dir
    #[arg(long, value_name = "DIR")]
    upload_dir: Option<PathBuf>,
    /// storage.results_dir
    #[arg(long, value_name = "DIR")]
    results_dir: Option<PathBuf>,
    /// storage.database: a SQLite file, or a PostgreSQL URL (`postgres://user:password@host/db`)
    #[arg(long, value_name = "PATH|URL")]
    database: Option<String>,
    /// cluster.node_name: this node's name among the nodes of one store (default: host:port)
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// ndpi.enabled = true (the default; overrides a configuration file's false)
    #[arg(long, conflicts_with = "no_ndpi")]
    enable_ndpi: bool,
    /// ndpi.enabled = false: classify with the heuristic classifier even when nDPI is built in
    #[arg(long)]
    no_ndpi: bool,
    /// server.insecure_no_auth = true: serve without authentication on a non-loopback address.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Delete the captures in the upload directory that no job of the database has (start-up
    /// only reports them), and exit.
    #[arg(long)]
    remove_orphan_captures: bool,
    /// Print the argon2 hash of the password read from standard input (for `[auth] users`), and exit.
    #[arg(long)]
    hash_password: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.hash_password {
        let mut password = String::new();
        if let Err(err) = std::io::stdin().read_line(&mut password) {
            eprintln!("callflowd: error: reading the password: {err}");
            return ExitCode::FAILURE;
        }
        println!("{}", callflow_server::hash_password(password.trim_end_matches(['\r', '\n'])));
        return ExitCode::SUCCESS;
    }
    let loaded = match load(&cli) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("callflowd: error: {err:#}");
            // The same status as clap's for bad arguments: the invocation is wrong.
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        print!("{}", loaded.render());
        return ExitCode::SUCCESS;
    }
    let result = if cli.remove_orphan_captures {
        remove_orphan_captures(&loaded)
    } else {
        match &cli.input {
            Some(input) => analyze_once(&loaded.settings, input, cli.output.clone()),
            None => serve(&loaded),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("callflowd: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> Result<Loaded> {
    let mut loader = Loader::new().process_env();
    if let Some(file) = &cli.config {
        loader = loader.file(file);
    }
    let flags: [(&str, Option<String>, &str); 10] = [
        ("server.bind_addr", cli.bind_addr.clone(), "--bind-addr"),
        ("server.port", cli.port.map(|p| p.to_string()), "--port"),
        ("processing.workers", cli.workers.map(|n| n.to_string()), "--workers"),
        ("storage.upload_dir", cli.upload_dir.as_ref().map(|d| d.to_string_lossy().into_owned()), "--upload-dir"),
        ("storage.results_dir", cli.results_dir.as_ref().map(|d| d.to_string_lossy().into_owned()), "--results-dir"),
        ("storage.database", cli.database.clone(), "--database"),
        ("cluster.node_name", cli.node_name.clone(), "--node-name"),
        ("ndpi.enabled", cli.enable_ndpi.then(|| "true".to_string()), "--enable-ndpi"),
        ("ndpi.enabled", cli.no_ndpi.then(|| "false".to_string()), "--no-ndpi"),
        ("server.insecure_no_auth", cli.insecure_no_auth.then(|| "true".to_string()), "--insecure-no-auth"),
    ];
    for (key, value, flag) in flags {
        if let Some(value) = value {
            loader = loader.flag(key, value, flag);
        }
    }
    loader.load().context("invalid configuration")
}

/// Locks the directories this instance owns (uploads, results, the database's), for as
/// long as the locks are kept: a second instance on any of them is refused, naming the
/// first, instead of recovering its jobs or taking its captures for leftovers.
fn lock_directories(settings: &Settings) -> Result<Vec<DirLock>> {
    let db = settings.storage.database_path();
    // On PostgreSQL the directories are the cluster's, shared by its nodes (each checks
    // they hold the store's cluster id instead: `check_volume`), and there is no database
    // directory here.
    let dirs = match settings.storage.database() {
        Database::Postgres(_) => Vec::new(),
        Database::Sqlite(_) => vec![
            settings.storage.upload_dir.as_path(),
            settings.storage.results_dir.as_path(),
            db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")),
        ],
    };
    Ok(DirLock::acquire_all(dirs)?)
}

/// On a shared (PostgreSQL) store, checks that this node can write to the upload and
/// results directories and that they belong to its store's cluster (the id is written
/// into them at the first start). One node on SQLite has its directories locked instead,
/// and keeps reporting (not deleting) the captures a lost database leaves.
fn check_directories(settings: &Settings, store: &dyn JobStore, db: &str) -> Result<()> {
    if !store.is_shared() {
        return Ok(());
    }
    let dirs = [settings.storage.upload_dir.as_path(), settings.storage.results_dir.as_path()];
    callflow_jobs::check_volume(store, db, &dirs)?;
    Ok(())
}

/// Opens the job store `[storage] database` names, with its name for messages (a URL
/// without its password).
fn open_store(settings: &Settings) -> Result<(Arc<dyn JobStore>, String)> {
    let name = callflow_jobs::store_name(&settings.storage);
    let store = callflow_jobs::open_store(&settings.storage).with_context(|| format!("cannot open {name}"))?;
    Ok((store, name))
}

fn remove_orphan_captures(loaded: &Loaded) -> Result<()> {
    let settings = &loaded.settings;
    let _locks = lock_directories(settings)?;
    let (store, db) = open_store(settings)?;
    check_directories(settings, &*store, &db)?;
    let orphans = callflow_server::orphan_captures(&settings.storage.upload_dir, &*store);
    for path in &orphans {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
        eprintln!("callflowd: removed {}", path.display());
    }
    eprintln!("callflowd: {} capture(s) without a job in {db} removed", orphans.len());
    Ok(())
}

fn serve(loaded: &Loaded) -> Result<()> {
    let settings = &loaded.settings;
    raise_open_file_limit(settings);
    // Held until the process exits.
    let _locks = lock_directories(settings)?;
    let (store, db) = open_store(settings)?;
    check_directories(settings, &*store, &db)?;
    let (classifier, warning) = classifier_factory(settings);
    if let Some(warning) = warning {
        eprintln!("callflowd: warning: {warning}");
    }
    let mut opts = ManagerOptions { classifier, ..ManagerOptions::from_settings(settings) };
    opts.analyzer.diameter_dictionary =
        callflow_jobs::diameter_dictionary(&settings.diameter).context("bad [diameter] dictionary")?;
    let (manager, recovery) = JobManager::start(store, opts)?;
    eprintln!(
        "callflowd: {} workers, database {db}, {} job(s) resumed, {} interrupted job(s) failed",
        settings.processing.workers,
        recovery.queued.len(),
        recovery.interrupted.len() + recovery.gave_up.len()
    );
    // The server logs through `tracing` (internal errors in detail, which clients never see).
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let manager = Arc::new(manager);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        let server = callflow_server::Server::bind(settings.clone(), manager.clone()).await?;
        let scheme = if settings.server.tls.cert.is_some() { "https" } else { "http" };
        eprintln!("callflowd: listening on {scheme}://{}", server.local_addr());
        server.run(callflow_server::shutdown_signal()).await
    })?;
    // Handlers may still hold the manager for a moment (whoever drops it last stops it).
    drop(runtime);
    // Jobs still running after the drain go back to the queue, for this node's next start
    // or any other node; live jobs end as interrupted at the next start (or by another node).
    let drain = settings.cluster.drain_timeout;
    eprintln!("callflowd: draining: no new jobs, running ones get up to {} s to finish", drain.as_secs_f64());
    let handed = manager.drain(drain);
    if !handed.is_empty() {
        eprintln!("callflowd: {} job(s) handed back to the queue", handed.len());
    }
    drop(manager);
    eprintln!("callflowd: stopped");
    Ok(())
}

/// `--input X --output Y`: one capture analysed into a result file, through the call
/// `callflow-cli analyze` makes, with the classifier the jobs would use and
/// `processing.workers` threads.
fn analyze_once(settings: &Settings, input: &std::path::Path, output: Option<PathBuf>) -> Result<()> {
    let (classifier, warning) = classifier_factory(settings);
    if let Some(warning) = warning {
        eprintln!("callflowd: warning: {warning}");
    }
    let request = DirectAnalysis {
        input: input.to_path_buf(),
        output,
        format: ResultFormat::Json,
        pretty: false,
        threads: settings.processing.workers,
        diameter_dictionary: callflow_jobs::diameter_dictionary(&settings.diameter)
            .context("bad [diameter] dictionary")?,
        tls_keys: Default::default(),
    };
    let doc = analyze_to_output(&request, || classifier.make())?;
    for warning in &doc.source.warnings {
        eprintln!("callflowd: warning: {}: {warning}", input.display());
    }
    Ok(())
}

/// The classifier the jobs hand the traffic no signalling explains to: nDPI when
/// `ndpi.enabled` (the default) and this build has it (feature `ndpi`, on by default, and
/// nDPI found at build time), else the heuristic one. The message, if any, is a start-up
/// warning: nDPI was asked for but is not built in, and why.
fn classifier_factory(settings: &Settings) -> (ClassifierFactory, Option<String>) {
    if !settings.ndpi.enabled {
        return (ClassifierFactory::heuristic(), None);
    }
    if let Err(why) = NdpiClassifier::availability() {
        let warning = format!(
            "ndpi.enabled is set but {why}: classifying with the heuristic classifier \
             (set ndpi.enabled = false, CALLFLOW_ENABLE_NDPI=false or --no-ndpi to silence this)"
        );
        return (ClassifierFactory::heuristic(), Some(warning));
    }
    // One per job: nDPI's flow state belongs to one capture.
    (ClassifierFactory::new(|| NdpiClassifier::new(Options::default())), None)
}

/// Descriptors kept for what is not a connection: the store, captures, results, logs.
const RESERVED_FILES: u64 = 256;

/// Raises the soft limit of open files to the hard one, as servers do (Go's runtime does
/// it for every program): the soft limit is often 1,024, below `server.max_connections`,
/// and a connection refused by the system (EMFILE) is neither answered nor counted. Warns
/// when even the hard limit leaves too little room.
fn raise_open_file_limit(settings: &callflow_config::Settings) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some() && limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            eprintln!("callflowd: warning: cannot raise the open-file limit: {e}");
        }
    }
    let wanted = settings.server.max_connections as u64 + RESERVED_FILES;
    if let Some(now) = getrlimit(Resource::Nofile).current.filter(|&now| now < wanted) {
        eprintln!(
            "callflowd: warning: the open-file limit ({now}) is below server.max_connections ({}) plus {RESERVED_FILES} \
             for the store and captures: lower server.max_connections or raise the limit (ulimit -n, LimitNOFILE=)",
            settings.server.max_connections
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callflow_classify::Classifier;

    fn selected(enabled: bool) -> (&'static str, Option<String>) {
        let mut settings = Settings::default();
        settings.ndpi.enabled = enabled;
        let (factory, warning) = classifier_factory(&settings);
        let classifier = factory.make().expect("the selected classifier starts");
        (classifier.name(), warning)
    }

    #[test]
    fn ndpi_is_enabled_by_default_and_disabled_means_the_heuristic_without_a_warning() {
        assert!(Settings::default().ndpi.enabled);
        assert_eq!(selected(false), ("heuristic", None));
    }

    #[test]
    fn ndpi_enabled_means_ndpi_when_built_in_else_the_heuristic_with_a_warning() {
        let (name, warning) = selected(true);
        if NdpiClassifier::is_built_in() {
            assert_eq!((name, warning), ("ndpi", None));
        } else {
            assert_eq!(name, "heuristic");
            assert!(warning.is_some_and(|w| w.contains("nDPI is not built in")));
        }
    }
}
