//! `callflow-cli jobs ...`: batch analysis on the job manager, persisted in a results directory (the same store callflowd uses).

use anyhow::{bail, Context, Result};
use callflow_config::{Loader, Settings};
use callflow_jobs::{
    DirLock, Event, Job, JobId, JobManager, JobQuery, JobRef, JobState, JobStore, ManagerOptions, NewJob, SessionQuery,
};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Queue captures, run them on the worker pool with a progress line, and store the
    /// results. Jobs left queued or running by an earlier, interrupted run are resumed.
    Run {
        /// The captures to analyse.
        #[arg(required = false)]
        inputs: Vec<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
        /// Worker threads (processing.workers).
        #[arg(long, value_name = "N")]
        workers: Option<usize>,
        /// No progress line on standard error.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List the stored jobs, newest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a job's sessions in start order.
    Sessions {
        /// The job's id: its UUID, or the number of a job created before ids were UUIDs.
        job: JobRef,
        #[command(flatten)]
        store: StoreArgs,
        /// Skip this many sessions.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Print each whole session as one JSON line instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The results directory holding the job database (storage.results_dir).
    #[arg(long, value_name = "DIR")]
    results_dir: Option<PathBuf>,
    /// A configuration file (TOML, JSON or YAML), as for callflowd.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl StoreArgs {
    fn settings(&self, workers: Option<usize>) -> Result<Settings> {
        let mut loader = Loader::new().process_env();
        if let Some(file) = &self.config {
            loader = loader.file(file);
        }
        if let Some(dir) = &self.results_dir {
            loader = loader.flag("storage.results_dir", dir.to_string_lossy(), "--results-dir");
        }
        if let Some(n) = workers {
            loader = loader.flag("processing.workers", n.to_string(), "--workers");
        }
        Ok(loader.load()?.settings)
    }

    fn open(&self, settings: &Settings) -> Result<Arc<dyn JobStore>> {
        let name = callflow_jobs::store_name(&settings.storage);
        callflow_jobs::open_store(&settings.storage).with_context(|| format!("cannot open the job database {name}"))
    }
}

pub fn run(command: JobsCommand) -> Result<()> {
    match command {
        JobsCommand::Run { inputs, store, workers, quiet } => run_batch(&inputs, &store, workers, quiet),
        JobsCommand::List { store } => {
            let settings = store.settings(None)?;
            let jobs = store.open(&settings)?.jobs(&JobQuery::default())?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<36}  {:<9}  {:>4}  {:>8}  {:>10}  {:>8}  INPUT",
                "ID", "STATE", "%", "SESSIONS", "PACKETS", "ATTEMPTS"
            )?;
            for job in jobs {
                print_job(&mut out, &job)?;
            }
            Ok(())
        }
        JobsCommand::Sessions { job, store, offset, limit, json } => {
            let settings = store.settings(None)?;
            let db = store.open(&settings)?;
            let Some(job) = db.resolve(job)? else {
                bail!("no job {job} in {}", callflow_jobs::store_name(&settings.storage));
            };
            let query = SessionQuery { offset, limit, documents: json, ..SessionQuery::default() };
            let mut out = std::io::stdout().lock();
            for row in db.sessions(job, &query)? {
                match &row.document {
                    Some(doc) => writeln!(out, "{}", serde_json::to_string(doc)?)?,
                    None => writeln!(
                        out,
                        "{}  {:<12}  {:<11}  {:.6}  {} -> {}  {} messages, {} streams",
                        row.id,
                        row.kind.as_str(),
                        row.state.as_str(),
                        row.start.as_secs_f64(),
                        row.from,
                        row.to,
                        row.messages,
                        row.media
                    )?,
                }
            }
            Ok(())
        }
    }
}

fn print_job(out: &mut impl Write, job: &Job) -> Result<()> {
    let error = job.error.as_deref().map(|e| format!("  ({e})")).unwrap_or_default();
    writeln!(
        out,
        "{:<36}  {:<9}  {:>4}  {:>8}  {:>10}  {:>8}  {}{error}",
        job.id.to_string(),
        job.state,
        job.progress,
        job.sessions,
        job.packets,
        job.attempts,
        job.label
    )?;
    Ok(())
}

fn run_batch(inputs: &[PathBuf], args: &StoreArgs, workers: Option<usize>, quiet: bool) -> Result<()> {
    let settings = args.settings(workers)?;
    // One manager per store, held until the run ends: another one (a second run, callflowd)
    // would recover this one's running jobs as its own interrupted ones.
    let db = settings.storage.database_path();
    let mut dirs = vec![settings.storage.results_dir.as_path()];
    // A PostgreSQL store has no directory here.
    if let callflow_config::Database::Sqlite(_) = settings.storage.database() {
        dirs.push(db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")));
    }
    let _locks = DirLock::acquire_all(dirs)?;
    let store = args.open(&settings)?;
    let mut opts = ManagerOptions::from_settings(&settings);
    opts.classifier = crate::classify::job_classifiers(&settings);
    opts.analyzer.diameter_dictionary =
        callflow_jobs::diameter_dictionary(&settings.diameter).context("bad [diameter] dictionary")?;
    // A batch run keeps every job it makes; retention is the server's business.
    opts.sweep_interval = None;
    let (manager, recovery) = JobManager::start(store, opts)?;
    if !recovery.queued.is_empty() {
        eprintln!(
            "callflow-cli: resuming {} job(s) left by an earlier run ({} interrupted while running)",
            recovery.queued.len(),
            recovery.rerun.len()
        );
    }
    if inputs.is_empty() && recovery.queued.is_empty() {
        bail!("nothing to do: give captures, e.g. `callflow-cli jobs run --results-dir results a.pcap b.pcap`");
    }
    let events = manager.subscribe();
    let mut ids = recovery.queued.clone();
    for input in inputs {
        // Absolute, so that a resumed run finds the file from any directory.
        let path = std::path::absolute(input).with_context(|| format!("bad path {}", input.display()))?;
        ids.push(manager.submit(NewJob::file(path))?.id);
    }
    let mut percent: BTreeMap<JobId, u8> = ids.iter().map(|&id| (id, 0)).collect();
    let mut finished = 0;
    while finished < ids.len() {
        match events.recv_timeout(Duration::from_millis(500)) {
            Some(Event::Progress { job, progress }) => {
                percent.insert(job, progress.percent);
            }
            Some(Event::State(job)) if job.state.is_finished() && percent.contains_key(&job.id) => {
                percent.insert(job.id, 100);
            }
            _ => {}
        }
        // The store is the truth; events only say when to look.
        finished = ids.iter().filter(|&&id| manager.job(id).is_ok_and(|j| j.state.is_finished())).count();
        if !quiet {
            let overall = percent.values().map(|&p| u64::from(p)).sum::<u64>() / ids.len() as u64;
            eprint!("\r{finished}/{} jobs finished, {overall}% ", ids.len());
        }
    }
    if !quiet {
        eprintln!();
    }
    let jobs = manager.wait(&ids, None)?;
    manager.shutdown();
    let mut out = std::io::stdout().lock();
    for job in &jobs {
        print_job(&mut out, job)?;
    }
    let failed = jobs.iter().filter(|j| j.state == JobState::Failed).count();
    if failed > 0 {
        bail!("{failed} of {} jobs failed", jobs.len());
    }
    Ok(())
}
