//! Measures the job manager and the store: 1,000 small jobs through 2 workers, and page 1,000 of 100,000 stored sessions.
//!
//! Run: `cargo run -p callflow-jobs --example throughput [--release]` (a real SQLite file
//! in a temporary directory; prints the numbers, asserts nothing).

use callflow_jobs::{JobManager, JobStore, ManagerOptions, NewJob, SessionQuery, SqliteStore};
use callflow_model::Timestamp;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("callflow-jobs-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap");

    // 1,000 small jobs (the bundled one-call capture, 607 packets) through 2 workers.
    let store = Arc::new(SqliteStore::open(dir.join("jobs.db"))?);
    let opts = ManagerOptions { workers: 2, sweep_interval: None, ..ManagerOptions::default() };
    let (manager, _) = JobManager::start(store, opts)?;
    let started = Instant::now();
    let ids =
        (0..1_000).map(|_| manager.submit(NewJob::file(&example)).map(|j| j.id)).collect::<Result<Vec<_>, _>>()?;
    let jobs = manager.wait(&ids, None)?;
    let elapsed = started.elapsed();
    assert!(jobs.iter().all(|j| j.sessions == 1));
    println!("1,000 small jobs through 2 workers: {:.0} jobs/s ({elapsed:.2?})", 1_000.0 / elapsed.as_secs_f64());
    manager.shutdown();

    // 100,000 sessions in one job, then page 1,000 (100 per page).
    let store = SqliteStore::open(dir.join("sessions.db"))?;
    let job = store.create_job(&NewJob::file(&example), 0)?.id;
    store.claim_next(0)?;
    let mut reader = callflow_decode::capture::CaptureReader::open(&example)?;
    let base = callflow_correlate::analyze(&mut reader, "x", Default::default(), None)?.sessions.remove(0);
    let started = Instant::now();
    for chunk in 0..100 {
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
    println!("stored 100,000 sessions in {:.2?}", started.elapsed());
    for (label, query) in [
        ("offset", SessionQuery { offset: 99_900, limit: 100, ..SessionQuery::default() }),
        (
            "offset, with documents",
            SessionQuery { offset: 99_900, limit: 100, documents: true, ..SessionQuery::default() },
        ),
    ] {
        let started = Instant::now();
        let rows = store.sessions(job, &query)?;
        println!(
            "page 1,000 of 100,000 sessions by {label}: {:.2} ms ({} rows)",
            started.elapsed().as_secs_f64() * 1e3,
            rows.len()
        );
    }
    let before = store.sessions(job, &SessionQuery { offset: 99_899, limit: 1, ..SessionQuery::default() })?;
    let started = Instant::now();
    let rows =
        store.sessions(job, &SessionQuery { after: Some(before[0].cursor), limit: 100, ..SessionQuery::default() })?;
    println!(
        "page 1,000 of 100,000 sessions by cursor: {:.2} ms ({} rows)",
        started.elapsed().as_secs_f64() * 1e3,
        rows.len()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
