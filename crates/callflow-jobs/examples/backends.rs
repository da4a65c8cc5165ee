//! Compares the two job stores on one node: small jobs per second through the manager, and the latency of a 1,000-session listing page.
//!
//! Run: `cargo run -p callflow-jobs --example backends [--release]`. SQLite is a file in a
//! temporary directory; PostgreSQL is a throwaway cluster started from Debian's binaries
//! (as the tests start it: `fsync=off`, so its figures leave out the disk, as SQLite's WAL
//! with `synchronous=NORMAL` mostly does) unless `CALLFLOW_BENCH_DATABASE` names one.
//! Prints the figures, asserts nothing.

#[path = "../tests/common/pg.rs"]
mod pg;

use callflow_jobs::{JobManager, JobStore, ManagerOptions, NewJob, PgStore, SessionQuery, SqliteStore};
use callflow_model::Timestamp;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const JOBS: usize = 500;
const SESSIONS: usize = 20_000;
const PAGES: usize = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("callflow-jobs-backends-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pg_url = match std::env::var("CALLFLOW_BENCH_DATABASE") {
        Ok(url) => Some(url),
        Err(_) => pg::shared("backends").map(|c| c.create_database()),
    };
    let open = |name: &str| -> Result<Arc<dyn JobStore>, Box<dyn std::error::Error>> {
        Ok(match name {
            "sqlite" => Arc::new(SqliteStore::open(dir.join(format!("{}.db", std::process::id())))?),
            _ => Arc::new(PgStore::connect(pg_url.as_deref().expect("PostgreSQL"), 8)?),
        })
    };
    let mut backends = vec!["sqlite"];
    if pg_url.is_some() {
        backends.push("postgres");
    }
    for name in backends {
        let store = open(name)?;
        store_cost_per_job(name, &*store)?;
        jobs_per_second(name, store.clone())?;
        listing_page(name, &*store)?;
        let _ = std::fs::remove_file(dir.join(format!("{}.db", std::process::id())));
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")
}

/// `JOBS` small jobs (the bundled one-call capture, 607 packets) through 2 workers.
fn jobs_per_second(name: &str, store: Arc<dyn JobStore>) -> Result<(), Box<dyn std::error::Error>> {
    let opts = ManagerOptions { workers: 2, sweep_interval: None, ..ManagerOptions::default() };
    let (manager, _) = JobManager::start(store, opts)?;
    let started = Instant::now();
    let ids =
        (0..JOBS).map(|_| manager.submit(NewJob::file(example())).map(|j| j.id)).collect::<Result<Vec<_>, _>>()?;
    let jobs = manager.wait(&ids, None)?;
    let elapsed = started.elapsed();
    assert!(jobs.iter().all(|j| j.sessions == 1));
    println!(
        "{name}: {JOBS} small jobs through 2 workers: {:.0} jobs/s ({elapsed:.2?})",
        JOBS as f64 / elapsed.as_secs_f64()
    );
    manager.shutdown();
    Ok(())
}

/// The store's part of a small job alone, one after another: create, claim, one progress
/// write, one session, finish (what the manager asks of the store for each job).
fn store_cost_per_job(name: &str, store: &dyn JobStore) -> Result<(), Box<dyn std::error::Error>> {
    let mut reader = callflow_decode::capture::CaptureReader::open(example())?;
    let session = Arc::new(callflow_correlate::analyze(&mut reader, "x", Default::default(), None)?.sessions.remove(0));
    let outcome = callflow_jobs::Outcome {
        state: callflow_jobs::JobState::Completed,
        progress: callflow_jobs::Progress { percent: 100, sessions: 1, ..Default::default() },
        error: None,
        source: None,
        stats: None,
        subscribers: None,
    };
    let started = Instant::now();
    for _ in 0..JOBS {
        let id = store.create_job(&NewJob::file(example()), 0)?.id;
        store.claim_next(1)?;
        store.record_progress(id, &outcome.progress)?;
        store.add_sessions(id, std::slice::from_ref(&session))?;
        store.finish(id, &outcome, 2)?;
    }
    let elapsed = started.elapsed();
    println!(
        "{name}: the store's part of a small job (create, claim, progress, 1 session, finish): {:.2} ms, {:.0} jobs/s",
        elapsed.as_secs_f64() * 1e3 / JOBS as f64,
        JOBS as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// `SESSIONS` sessions in one job, then `PAGES` listing pages of 1,000 at spread offsets.
fn listing_page(name: &str, store: &dyn JobStore) -> Result<(), Box<dyn std::error::Error>> {
    let job = store.create_job(&NewJob::file(example()), 0)?.id;
    while store.claim_next(0)?.is_some_and(|j| j.id != job) {}
    let mut reader = callflow_decode::capture::CaptureReader::open(example())?;
    let base = callflow_correlate::analyze(&mut reader, "x", Default::default(), None)?.sessions.remove(0);
    for chunk in 0..SESSIONS / 1_000 {
        let batch: Vec<_> = (0..1_000)
            .map(|i| {
                let n = chunk * 1_000 + i;
                let mut s = base.clone();
                s.id = format!("s{n:06}");
                s.call_id = format!("call-{n}@example.com");
                s.start = Timestamp::from_nanos(1_700_000_000_000_000_000 + (n as i64 * 7_919 % 100_000) * 1_000_000);
                Arc::new(s)
            })
            .collect();
        store.add_sessions(job, &batch)?;
    }
    let mut times: Vec<Duration> = Vec::with_capacity(PAGES);
    for i in 0..PAGES {
        let offset = (i * 7_919 % (SESSIONS - 1_000)) as u64;
        let query = SessionQuery { offset, limit: 1_000, ..SessionQuery::default() };
        let started = Instant::now();
        let rows = store.sessions(job, &query)?;
        times.push(started.elapsed());
        assert_eq!(rows.len(), 1_000);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name}: a page of 1,000 of {SESSIONS} sessions, {PAGES} pages: p50 {:.2} ms, p99 {:.2} ms",
        ms(times[PAGES / 2]),
        ms(times[PAGES * 99 / 100])
    );
    Ok(())
}
