//! The status endpoint answers from the job manager's memory: at every step of a job's life, after a deletion and after a restart, it answers exactly what the store's job says.

use crate::hub::job_json;
use crate::{router, AppState};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use callflow_config::Settings;
use callflow_jobs::{
    Analysis, CaptureAnalysis, Job, JobContext, JobId, JobManager, JobState, ManagerOptions, NewJob, SqliteStore,
};
use callflow_model::Document;
use http_body_util::BodyExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")
}

/// What the stepped analysis does next.
enum Step {
    /// Reports this many frames and bytes (of 1,000) analysed.
    Frame(u64, u64),
    /// Fails the job with this message.
    Fail(&'static str),
}

/// An analysis the test drives one step at a time, acknowledging each once the manager
/// has stored and published what it reported; a job labelled `real.pcap` is analysed for
/// real, without steps.
struct Stepped {
    steps: Mutex<Receiver<Step>>,
    done: Mutex<Sender<()>>,
}

impl Analysis for Stepped {
    fn run(&self, job: &Job, ctx: &mut JobContext<'_>) -> Result<Document, String> {
        if job.label == "real.pcap" {
            return CaptureAnalysis::default().run(job, ctx);
        }
        ctx.set_total_bytes(Some(1000));
        loop {
            let step = self.steps.lock().unwrap().recv().map_err(|_| "the test is over".to_string())?;
            let stop = match step {
                Step::Frame(frames, bytes) => ctx.on_frame(frames, bytes).is_break(),
                Step::Fail(message) => return Err(message.into()),
            };
            self.done.lock().unwrap().send(()).unwrap();
            if stop {
                return Err("stopped".into());
            }
        }
    }
}

struct Fixture {
    manager: Arc<JobManager>,
    app: axum::Router,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn start(db: &Path, analysis: Option<Arc<dyn Analysis>>) -> Fixture {
        let mut settings = Settings::default();
        settings.limits.rate_limit_per_second = 0;
        settings.storage.upload_dir = db.with_file_name("uploads");
        let opts = ManagerOptions {
            workers: 1,
            sweep_interval: None,
            progress_every_packets: 1,
            progress_interval: Duration::ZERO,
            ..ManagerOptions::from_settings(&settings)
        };
        let store = Arc::new(SqliteStore::open(db).unwrap());
        let manager = match analysis {
            Some(analysis) => JobManager::start_with(store, opts, analysis),
            None => JobManager::start(store, opts),
        };
        let manager = Arc::new(manager.unwrap().0);
        let app = router(AppState::new(manager.clone(), settings));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        Fixture { manager, app, rt }
    }

    /// Asks the endpoint for the job's status and the store for the job, and asserts that
    /// both say the same, to the byte; returns the status.
    fn check(&self, id: JobId) -> StatusCode {
        let req = Request::builder().uri(format!("/api/v1/jobs/{id}/status")).body(Body::empty()).unwrap();
        let (status, body) = self.rt.block_on(async {
            let response = self.app.clone().oneshot(req).await.unwrap();
            (response.status(), response.into_body().collect().await.unwrap().to_bytes())
        });
        match self.manager.store().job(id).unwrap() {
            Some(job) => {
                let stored = serde_json::to_vec(&job_json(&job)).unwrap();
                assert_eq!(
                    (status, String::from_utf8_lossy(&body)),
                    (StatusCode::OK, String::from_utf8_lossy(&stored)),
                    "job {id}: the endpoint against the store"
                );
            }
            None => assert_eq!(status, StatusCode::NOT_FOUND, "job {id} is not in the store"),
        }
        status
    }

    fn state(&self, id: JobId) -> Option<JobState> {
        self.manager.cached_status(id).map(|s| s.state)
    }

    fn wait(&self, id: JobId) {
        self.manager.wait(&[id], Some(Duration::from_secs(60))).unwrap();
    }

    fn shutdown(self) {
        let Fixture { manager, app, rt } = self;
        drop((app, rt));
        Arc::into_inner(manager).expect("the router was the only other owner").shutdown();
    }
}

fn job(label: &str) -> NewJob {
    NewJob { input: example(), label: label.into(), owns_input: false, id: None }
}

#[test]
fn the_status_from_memory_is_the_stored_one_through_a_jobs_life_deletion_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("results").join("callflow.db");
    let (step, steps) = channel();
    let (done_tx, done) = channel();
    let analysis = Stepped { steps: Mutex::new(steps), done: Mutex::new(done_tx) };
    let f = Fixture::start(&db, Some(Arc::new(analysis)));
    // Bound after the fixture, so dropped before it: when an assertion fails, the worker
    // waiting for a step is let go instead of holding up the manager's shutdown.
    let (step, done) = (step, done);
    let go = |s: Step| {
        step.send(s).unwrap();
        done.recv_timeout(Duration::from_secs(60)).expect("the step was taken");
    };

    // One worker: `a` runs, `b` waits behind it.
    let a = f.manager.submit(job("a.pcap")).unwrap().id;
    go(Step::Frame(1, 10));
    assert_eq!(f.check(a), StatusCode::OK);
    assert_eq!(f.state(a), Some(JobState::Running));
    let b = f.manager.submit(job("b.pcap")).unwrap().id;
    f.check(b);
    assert_eq!(f.state(b), Some(JobState::Queued));
    go(Step::Frame(500, 500));
    f.check(a);
    assert_eq!(f.manager.cached_status(a).map(|s| (s.progress, s.packets, s.bytes)), Some((50, 500, 500)));

    f.manager.cancel(b).unwrap();
    f.check(b);
    assert_eq!(f.state(b), Some(JobState::Cancelled));

    step.send(Step::Fail("the capture went away")).unwrap();
    f.wait(a);
    f.check(a);
    let failed = f.manager.cached_status(a).unwrap();
    assert_eq!((failed.state, failed.error.as_deref()), (JobState::Failed, Some("the capture went away")));

    // Cancelled while running: it stops at its next frame.
    let c = f.manager.submit(job("c.pcap")).unwrap().id;
    go(Step::Frame(5, 100));
    f.check(c);
    f.manager.cancel(c).unwrap();
    f.check(c);
    assert_eq!(f.state(c), Some(JobState::Running), "running until the analysis stops");
    go(Step::Frame(6, 200));
    f.wait(c);
    f.check(c);
    assert_eq!(f.state(c), Some(JobState::Cancelled));

    let d = f.manager.submit(job("real.pcap")).unwrap().id;
    f.wait(d);
    f.check(d);
    let completed = f.manager.cached_status(d).unwrap();
    assert_eq!((completed.state, completed.progress, completed.sessions), (JobState::Completed, 100, 1));

    f.manager.delete(b).unwrap();
    assert_eq!(f.check(b), StatusCode::NOT_FOUND);
    assert_eq!(f.state(b), None);
    assert_eq!(f.check(JobId::new(999, callflow_jobs::Uuid::from_u128(999))), StatusCode::NOT_FOUND);
    f.shutdown();

    // After a restart the manager knows no job until one is read from the store.
    let f = Fixture::start(&db, None);
    assert_eq!(f.state(d), None);
    assert_eq!(f.check(d), StatusCode::OK);
    assert_eq!(f.state(d), Some(JobState::Completed), "kept after the first read");
    f.check(d);
    f.check(a);
    assert_eq!(f.check(b), StatusCode::NOT_FOUND);
    f.manager.delete(d).unwrap();
    assert_eq!(f.check(d), StatusCode::NOT_FOUND);
    assert_eq!(f.state(d), None);
    f.shutdown();
}
