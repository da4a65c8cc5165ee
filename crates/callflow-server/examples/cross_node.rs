//! Two figures of several nodes on one store: how late an event published on one node reaches a WebSocket client of another (through PostgreSQL's LISTEN/NOTIFY and the event log), and how long a page of 1,000 sessions takes on SQLite and on PostgreSQL.
//!
//! Starts a throwaway PostgreSQL cluster (Debian's binaries, as the tests do), two servers
//! in this process on one database, and a third on a SQLite file:
//!
//! ```sh
//! cargo run --release -p callflow-server --example cross_node -- [JOBS=200] [PAGES=200]
//! ```
//!
//! Node B runs `JOBS` uploads of the bundled one-call capture, one after the other; a
//! WebSocket client of node A notes, for every event, the time it read it less the `ts` the
//! publishing node stamped (same host, same clock). Then `PAGES` requests of
//! `/api/v1/jobs/{id}/sessions?limit=1000` on a job of 1,000 sessions, on each backend, one
//! at a time. Prints p50, p99 and max; asserts nothing.

#[path = "../../callflow-jobs/tests/common/pg.rs"]
mod pg;

use callflow_config::Settings;
use callflow_jobs::{JobManager, JobState, ManagerOptions, NewJob, Outcome, Progress};
use futures_util::StreamExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")
}

/// A server named `node` on `database` with its directories under `dir`; its address.
async fn start(node: &str, database: &str, dir: &Path) -> SocketAddr {
    let mut s = Settings::default();
    s.cluster.node_name = node.to_string();
    s.server.port = 0;
    s.processing.workers = 1;
    s.storage.upload_dir = dir.join("uploads");
    s.storage.results_dir = dir.join("results");
    s.storage.database = Some(database.to_string());
    s.limits.rate_limit_per_second = 0;
    let store = callflow_jobs::open_store(&s.storage).expect("the store opens");
    let (manager, _) = JobManager::start(store, ManagerOptions::from_settings(&s)).expect("the manager starts");
    let server = callflow_server::Server::bind(s, Arc::new(manager)).await.expect("the server binds");
    let addr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    addr
}

fn percentiles(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
    println!("{what}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms", ms.len(), at(0.5), at(0.99), ms[ms.len() - 1]);
}

/// A completed job of 1,000 sessions (the example call's, with ids and starts of their
/// own), written straight into the store at `database`; its id.
fn thousand_sessions(database: &str) -> String {
    let mut storage = Settings::default().storage;
    storage.database = Some(database.to_string());
    let store = callflow_jobs::open_store(&storage).expect("the store opens");
    let mut reader = callflow_decode::capture::CaptureReader::open(example()).expect("the example opens");
    let call = callflow_correlate::analyze(&mut reader, "x", Default::default(), None).expect("it analyses").sessions
        [0]
    .clone();
    let sessions: Vec<_> = (0..1000)
        .map(|i| {
            let mut s = call.clone();
            s.id = format!("s{i:06}");
            s.call_id = format!("call-{i}");
            s.start = callflow_model::Timestamp::from_nanos(i * 1_000_000);
            Arc::new(s)
        })
        .collect();
    let job = store.create_job(&NewJob::file(example()), 1).unwrap();
    let claimed = store.claim_next(2).unwrap().expect("the job just created");
    assert_eq!(claimed.id, job.id);
    store.add_sessions(job.id, &sessions).unwrap();
    let outcome = Outcome {
        state: JobState::Completed,
        progress: Progress { percent: 100, sessions: 1000, ..Progress::default() },
        error: None,
        source: None,
        stats: None,
        subscribers: None,
    };
    store.finish(job.id, &outcome, 3).unwrap();
    job.id.to_string()
}

async fn pages(name: &str, addr: SocketAddr, job: String, n: usize) {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/v1/jobs/{job}/sessions?limit=1000");
    let mut ms = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(page["sessions"].as_array().map(Vec::len), Some(1000), "{name}");
    }
    percentiles(&format!("1,000-session page, {name}"), ms);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let jobs = args.first().copied().unwrap_or(200);
    let page_count = args.get(1).copied().unwrap_or(200);
    let bin = pg::binaries().expect("PostgreSQL's binaries (apt-get install postgresql)");
    let cluster = pg::Cluster::start(&bin, None);
    let url = cluster.create_database();
    let dir = tempfile::tempdir().unwrap();
    let a = start("a", &url, &dir.path().join("a")).await;
    let b = start("b", &url, &dir.path().join("b")).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{a}/api/v1/ws")).await.unwrap();
    let client = reqwest::Client::new();
    let body = std::fs::read(example()).unwrap();
    let mut delays = Vec::new();
    for _ in 0..jobs {
        let reply: Value = client
            .post(format!("http://{b}/api/v1/upload?name=call.pcap"))
            .header("content-type", "application/vnd.tcpdump.pcap")
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let job = reply["job_id"].as_str().expect("a job").to_string();
        loop {
            let Some(Ok(Message::Text(text))) =
                tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("an event in time")
            else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            let Some(ts) = v["ts"].as_f64() else { continue };
            if v["type"] == "heartbeat" {
                continue;
            }
            delays.push((now() - ts) * 1e3);
            if v["job_id"] == job && v["type"] == "status" && v["job"]["status"] == "completed" {
                break;
            }
        }
    }
    percentiles("cross-node event (published on B, read by A's WebSocket client)", delays);

    let pg_job = thousand_sessions(&url);
    pages("PostgreSQL", a, pg_job, page_count).await;
    let sqlite = dir.path().join("c/results/callflow.db");
    let sqlite_job = thousand_sessions(sqlite.to_str().unwrap());
    let c = start("c", sqlite.to_str().unwrap(), &dir.path().join("c")).await;
    pages("SQLite", c, sqlite_job, page_count).await;
}
