//! Several job managers (nodes) on one PostgreSQL store: jobs queued anywhere run somewhere, a cancel reaches the node running the job, and a silent node's jobs are taken over.
//!
//! PostgreSQL runs as a throwaway cluster (`common::pg`); without it the tests say so and
//! pass, unless `CI` is set.

mod common;

use callflow_jobs::{
    Analysis, Job, JobContext, JobId, JobManager, JobState, JobStore, ManagerOptions, NewJob, NodeInfo, NodeOptions,
    PgStore,
};
use callflow_model::Document;
use common::pg;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const LONG_WAIT: Option<Duration> = Some(Duration::from_secs(120));

fn options(node: &str, lease: Duration) -> ManagerOptions {
    ManagerOptions {
        workers: 1,
        sweep_interval: None,
        node: NodeOptions {
            name: node.into(),
            advertise_url: format!("http://{node}.example:8080"),
            lease,
            max_attempts: 3,
        },
        ..ManagerOptions::default()
    }
}

/// Runs until stopped, saying when it starts.
struct UntilStopped(Mutex<mpsc::Sender<callflow_jobs::JobId>>);

impl Analysis for UntilStopped {
    fn run(&self, job: &Job, ctx: &mut JobContext<'_>) -> Result<Document, String> {
        let _ = self.0.lock().unwrap().send(job.id);
        let mut frames = 0;
        loop {
            frames += 1;
            if ctx.on_frame(frames, frames).is_break() {
                return Err("stopped".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Without the cancel flag in the store, a cancel asked on a node that does not run the
/// job found no stop flag there, and the job ran on.
#[test]
fn a_cancel_asked_on_one_node_stops_the_job_another_node_runs() {
    let Some(url) = pg::database("nodes_cancel") else { return };
    let (tx, started) = mpsc::channel();
    let runner = Arc::new(PgStore::connect(&url, 2).unwrap());
    let (b, _) =
        JobManager::start_with(runner, options("b", Duration::from_secs(30)), Arc::new(UntilStopped(Mutex::new(tx))))
            .unwrap();
    // Queued by a process that runs no manager: only b's polling finds it.
    let outside = PgStore::connect(&url, 1).unwrap();
    let id = outside.create_job(&NewJob::file(common::example()), 1).unwrap().id;
    assert_eq!(started.recv_timeout(Duration::from_secs(60)).unwrap(), id, "b's idle worker found the job");
    let running = b.status(id).unwrap();
    assert_eq!((running.state, running.node.as_deref()), (JobState::Running, Some("b")));

    let a = JobManager::start(Arc::new(PgStore::connect(&url, 2).unwrap()), options("a", Duration::from_secs(30)))
        .unwrap()
        .0;
    assert_eq!(a.status(id).unwrap().state, JobState::Running, "a reads the store, not its memory");
    assert_eq!(a.cancel(id).unwrap().state, JobState::Running, "b stops it at its next heartbeat");
    let done = a.wait(&[id], LONG_WAIT).unwrap().remove(0);
    assert_eq!((done.state, done.node.as_deref()), (JobState::Cancelled, Some("b")));
    let nodes = a.nodes().unwrap();
    let names: Vec<(&str, bool)> = nodes.iter().map(|n| (n.row.info.name.as_str(), n.alive)).collect();
    assert_eq!(names, [("a", true), ("b", true)]);
    assert_eq!(nodes[1].row.info.advertise_url, "http://b.example:8080");
}

/// A node that claimed a job and fell silent: a live node puts the job back in the queue
/// after the lease and runs it to the end, as its second attempt.
#[test]
fn a_silent_nodes_job_runs_again_on_a_live_node_after_the_lease() {
    let Some(url) = pg::database("nodes_takeover") else { return };
    let dead = PgStore::connect(&url, 1).unwrap();
    dead.register_node(
        &NodeInfo { name: "dead".into(), advertise_url: String::new(), version: "0".into(), workers: 1, started_at: 1 },
        callflow_jobs::now_millis(),
    )
    .unwrap();
    let id = dead.create_job(&NewJob::file(common::example()), 1).unwrap().id;
    assert_eq!(dead.claim_next(2).unwrap().unwrap().node.as_deref(), Some("dead"));
    // It never beats again.
    let (live, recovery) =
        JobManager::start(Arc::new(PgStore::connect(&url, 2).unwrap()), options("live", Duration::from_secs(1)))
            .unwrap();
    assert!(recovery.queued.is_empty(), "another node's running job is not this node's to recover");
    let done = live.wait(&[id], LONG_WAIT).unwrap().remove(0);
    assert_eq!(
        (done.state, done.attempts, done.node.as_deref(), done.sessions),
        (JobState::Completed, 2, Some("live"), 1)
    );
    let nodes = live.nodes().unwrap();
    let names: Vec<(&str, bool, u64)> =
        nodes.iter().map(|n| (n.row.info.name.as_str(), n.alive, n.row.running)).collect();
    assert_eq!(names, [("dead", false, 0), ("live", true, 0)]);
}

/// Node "a" on `url` (lease 30 s), running a job that runs until it is stopped; returns the
/// node and the job once the job has started.
fn node_a_running_a_job(url: &str) -> (JobManager, JobId) {
    let (tx, started) = mpsc::channel();
    let (a, _) = JobManager::start_with(
        Arc::new(PgStore::connect(url, 2).unwrap()),
        options("a", Duration::from_secs(30)),
        Arc::new(UntilStopped(Mutex::new(tx))),
    )
    .unwrap();
    let id = a.submit(NewJob::file(common::example())).unwrap().id;
    assert_eq!(started.recv_timeout(Duration::from_secs(60)).unwrap(), id);
    (a, id)
}

/// A node drained (SIGTERM) while it runs a job that does not end in time hands it back:
/// another node runs it at once, and the interrupted start is not counted.
#[test]
fn a_drained_node_hands_its_running_job_back_and_another_node_runs_it() {
    let Some(url) = pg::database("nodes_drain") else { return };
    let (a, id) = node_a_running_a_job(&url);
    let b = JobManager::start(Arc::new(PgStore::connect(&url, 2).unwrap()), options("b", Duration::from_secs(30)))
        .unwrap()
        .0;
    assert_eq!(a.drain(Duration::from_millis(200)), [id]);
    assert!(matches!(a.submit(NewJob::file(common::example())), Err(callflow_jobs::JobError::ShutDown)));
    let done = b.wait(&[id], LONG_WAIT).unwrap().remove(0);
    assert_eq!(
        (done.state, done.attempts, done.node.as_deref(), done.sessions),
        (JobState::Completed, 1, Some("b"), 1),
        "the handed-back start is not counted"
    );
}

/// Without the check, a second process given a live node's name recovered that node's
/// running jobs (queued them again) while the first still ran them.
#[test]
fn a_second_process_with_a_live_nodes_name_is_refused_and_takes_none_of_its_jobs() {
    let Some(url) = pg::database("nodes_same_name") else { return };
    let (a, id) = node_a_running_a_job(&url);
    let twin = JobManager::start(Arc::new(PgStore::connect(&url, 2).unwrap()), options("a", Duration::from_secs(30)));
    match twin {
        Err(e @ callflow_jobs::JobError::NodeNameInUse { .. }) => {
            assert!(e.to_string().contains("node name `a` is in use"), "{e}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let job = a.status(id).unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Running, 1), "still a's first run");
}
