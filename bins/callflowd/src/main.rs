//! `callflowd`: the service. Loads the layered configuration and runs the analysis job manager on the configured directories.
//!
//! The HTTP API is not part of this build yet (it comes with `callflow-server`): without
//! `--print-config`, callflowd says so, resumes the jobs left in the store, runs them, and
//! then idles until it is stopped. Stopping it (Ctrl-C, SIGTERM, SIGKILL alike) loses
//! nothing: the store recovers running jobs at the next start.

use anyhow::{Context, Result};
use callflow_config::{Loaded, Loader};
use callflow_jobs::{JobManager, ManagerOptions, SqliteStore};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The callflowd service (configuration and job manager; the HTTP API is not in this build).
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
    /// server.port
    #[arg(long)]
    port: Option<u16>,
    /// processing.workers
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// storage.upload_dir
    #[arg(long, value_name = "DIR")]
    upload_dir: Option<PathBuf>,
    /// storage.results_dir
    #[arg(long, value_name = "DIR")]
    results_dir: Option<PathBuf>,
    /// ndpi.enabled = true
    #[arg(long)]
    enable_ndpi: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match serve(&loaded) {
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
    let flags: [(&str, Option<String>, &str); 6] = [
        ("server.bind_addr", cli.bind_addr.clone(), "--bind-addr"),
        ("server.port", cli.port.map(|p| p.to_string()), "--port"),
        ("processing.workers", cli.workers.map(|n| n.to_string()), "--workers"),
        ("storage.upload_dir", cli.upload_dir.as_ref().map(|d| d.to_string_lossy().into_owned()), "--upload-dir"),
        ("storage.results_dir", cli.results_dir.as_ref().map(|d| d.to_string_lossy().into_owned()), "--results-dir"),
        ("ndpi.enabled", cli.enable_ndpi.then(|| "true".to_string()), "--enable-ndpi"),
    ];
    for (key, value, flag) in flags {
        if let Some(value) = value {
            loader = loader.flag(key, value, flag);
        }
    }
    loader.load().context("invalid configuration")
}

fn serve(loaded: &Loaded) -> Result<()> {
    let settings = &loaded.settings;
    for dir in [&settings.storage.upload_dir, &settings.storage.results_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let db = settings.storage.database_path();
    let store = Arc::new(SqliteStore::open(&db).with_context(|| format!("cannot open {}", db.display()))?);
    let (manager, recovery) = JobManager::start(store, ManagerOptions::from_settings(settings))?;
    eprintln!(
        "callflowd: the HTTP API is not part of this build yet; only the job manager runs \
         ({} workers, database {}, {} job(s) resumed, {} interrupted job(s) failed)",
        settings.processing.workers,
        db.display(),
        recovery.queued.len(),
        recovery.interrupted.len()
    );
    // Nothing can submit jobs without the API: the manager runs what it resumed and
    // sweeps old jobs until the process is stopped.
    let _manager = manager;
    loop {
        std::thread::park();
    }
}
