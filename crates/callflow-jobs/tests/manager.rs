//! The job manager end to end on real SQLite files: states, progress, cancellation, concurrency, failures, retention, slow subscribers.

mod common;

use callflow_classify::{Classification, Classifier, HeuristicClassifier, Payload};
use callflow_jobs::{
    Analysis, CaptureAnalysis, ClassifierFactory, DatabaseErrorKind, Event, Job, JobContext, JobError, JobId,
    JobManager, JobQuery, JobState, JobStore, ManagerOptions, NewJob, Outcome, Progress, Recovery, SessionQuery,
    SessionRow, SqliteStore, StoreError, Subscription,
};
use callflow_model::{Document, Session};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const LONG_WAIT: Option<Duration> = Some(Duration::from_secs(120));

fn options(workers: usize) -> ManagerOptions {
    ManagerOptions { workers, sweep_interval: None, ..ManagerOptions::default() }
}

fn start(dir: &Path, opts: ManagerOptions) -> JobManager {
    let store = Arc::new(SqliteStore::open(dir.join("callflow.db")).unwrap());
    JobManager::start(store, opts).unwrap().0
}

/// Everything received so far (waiting up to `quiet` for each further event).
fn drain(sub: &Subscription, quiet: Duration) -> Vec<Event> {
    std::iter::from_fn(|| sub.recv_timeout(quiet)).collect()
}

/// The finished job as `sub` hears of it (within a minute).
fn published_end(sub: &Subscription, id: JobId) -> Arc<Job> {
    loop {
        match sub.recv_timeout(Duration::from_secs(60)) {
            Some(Event::State(j)) if j.id == id && j.state.is_finished() => return j,
            Some(_) => {}
            None => panic!("the end of job {id} was never published"),
        }
    }
}

fn states_of(events: &[Event], id: JobId) -> Vec<JobState> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::State(job) if job.id == id => Some(job.state),
            _ => None,
        })
        .collect()
}

#[test]
fn a_job_goes_queued_running_completed_with_its_results_stored() {
    let dir = common::temp_dir("states");
    let manager = start(&dir, options(1));
    let sub = manager.subscribe();
    let job = manager.submit(NewJob::file(common::example())).unwrap();
    assert_eq!(job.state, JobState::Queued);
    let done = manager.wait(&[job.id], LONG_WAIT).unwrap().remove(0);
    let events = drain(&sub, Duration::from_millis(50));
    assert_eq!(states_of(&events, job.id), [JobState::Queued, JobState::Running, JobState::Completed]);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::State(_) => "state",
            Event::Progress { .. } => "progress",
            Event::Session { .. } => "session",
            Event::Stats { .. } => "stats",
            Event::Live { .. } => "live",
            Event::Notice { .. } => "notice",
            Event::Deleted(_) => "deleted",
        })
        .collect();
    assert_eq!(kinds, ["state", "state", "session", "stats", "state"]);

    assert_eq!(done.state, JobState::Completed);
    assert_eq!((done.progress, done.sessions, done.attempts), (100, 1, 1));
    assert_eq!(done.error, None);
    let started = done.started_at.unwrap();
    assert!(done.created_at <= started && started <= done.completed_at.unwrap());
    let source = done.source.as_ref().unwrap();
    assert!(source.complete);
    assert_eq!(done.packets, source.packets);
    assert_eq!(done.bytes, std::fs::metadata(common::example()).unwrap().len());

    let rows = manager.sessions(job.id, &SessionQuery { documents: true, ..SessionQuery::default() }).unwrap();
    assert_eq!(rows.len(), 1);
    let session = rows[0].document.as_ref().unwrap();
    assert_eq!(session.messages.len(), 7);
    assert_eq!(rows[0].call_id, session.call_id);
    assert_eq!(manager.store().session(job.id, &session.id).unwrap().as_ref(), Some(session));
    manager.shutdown();
}

#[test]
fn progress_never_goes_backwards_and_is_throttled() {
    let dir = common::temp_dir("progress");
    let capture = common::long_capture(&dir, 30);
    let opts = ManagerOptions { progress_interval: Duration::ZERO, ..options(1) };
    let manager = start(&dir, opts);
    let sub = manager.subscribe();
    let job = manager.submit(NewJob::file(&capture)).unwrap();
    let done = manager.wait(&[job.id], LONG_WAIT).unwrap().remove(0);
    let progress: Vec<_> = drain(&sub, Duration::from_millis(50))
        .into_iter()
        .filter_map(|e| match e {
            Event::Progress { progress, .. } => Some(progress),
            _ => None,
        })
        .collect();
    assert!(progress.len() >= 10, "{} progress events", progress.len());
    for pair in progress.windows(2) {
        assert!(pair[1].percent >= pair[0].percent, "{pair:?}");
        assert!(pair[1].packets >= pair[0].packets + 1_000, "at most one event per 1,000 packets: {pair:?}");
        assert!(pair[1].bytes > pair[0].bytes && pair[1].sessions >= pair[0].sessions, "{pair:?}");
    }
    assert!(progress.iter().all(|p| p.percent < 100), "100 is only for completion");
    assert!(progress.last().unwrap().percent >= 90);
    // The copies share one Call-ID, so they make one session.
    assert_eq!((done.state, done.progress, done.sessions), (JobState::Completed, 100, 1));
}

#[test]
fn a_running_job_is_cancelled_within_the_bound_and_a_queued_one_at_once() {
    let dir = common::temp_dir("cancel");
    let capture = common::long_capture(&dir, 400);
    let manager = start(&dir, options(1));
    let sub = manager.subscribe();
    let long = manager.submit(NewJob::file(&capture)).unwrap();
    let queued = manager.submit(NewJob::file(common::example())).unwrap();

    // Wait until the long job has really started analysing.
    while !matches!(sub.recv_timeout(Duration::from_secs(60)), Some(Event::Progress { job, .. }) if job == long.id) {}
    let asked = Instant::now();
    assert_eq!(manager.cancel(long.id).unwrap().state, JobState::Running, "it stops cooperatively");
    let cancelled_after = loop {
        match sub.recv_timeout(Duration::from_secs(60)) {
            Some(Event::State(job)) if job.id == long.id => {
                assert_eq!(job.state, JobState::Cancelled);
                break asked.elapsed();
            }
            Some(_) => {}
            None => panic!("no state change after cancel"),
        }
    };
    // The documented bound is 100 ms; the margin absorbs a loaded test machine.
    assert!(cancelled_after < Duration::from_millis(500), "took {cancelled_after:?}");
    let long = manager.job(long.id).unwrap();
    assert!(long.packets < 400 * 607, "stopped early: {} packets", long.packets);
    assert_eq!(long.sessions, 0, "a cancelled job keeps no sessions");
    assert!(manager.sessions(long.id, &SessionQuery::default()).unwrap().is_empty());

    // The queued job ran after it: cancelling it now is refused as already finished.
    let queued_done = manager.wait(&[queued.id], LONG_WAIT).unwrap().remove(0);
    assert_eq!(queued_done.state, JobState::Completed);
    assert!(matches!(manager.cancel(queued.id), Err(JobError::AlreadyFinished { .. })));

    // A job still in the queue is cancelled at once and never runs.
    let blocker = manager.submit(NewJob::file(&capture)).unwrap();
    let waiting = manager.submit(NewJob::file(common::example())).unwrap();
    assert_eq!(manager.cancel(waiting.id).unwrap().state, JobState::Cancelled);
    manager.cancel(blocker.id).unwrap();
    manager.wait(&[blocker.id], LONG_WAIT).unwrap();
    let events = drain(&sub, Duration::from_millis(50));
    assert_eq!(states_of(&events, waiting.id), [JobState::Queued, JobState::Cancelled]);
    assert!(matches!(manager.cancel(JobId::new(999, callflow_jobs::Uuid::from_u128(999))), Err(JobError::NotFound(_))));
}

#[test]
fn four_workers_run_twenty_jobs_each_exactly_once() {
    let dir = common::temp_dir("pool");
    let manager = start(&dir, options(4));
    let sub = manager.subscribe();
    let ids: Vec<JobId> = (0..20).map(|_| manager.submit(NewJob::file(common::example())).unwrap().id).collect();
    let jobs = manager.wait(&ids, LONG_WAIT).unwrap();
    assert!(jobs.iter().all(|j| j.state == JobState::Completed && j.attempts == 1 && j.sessions == 1));
    let events = drain(&sub, Duration::from_millis(50));
    for &id in &ids {
        assert_eq!(states_of(&events, id), [JobState::Queued, JobState::Running, JobState::Completed], "job {id}");
    }
    let all = manager.jobs(&Default::default()).unwrap();
    assert_eq!(all.len(), 20);
    let mut seen: Vec<JobId> = all.iter().map(|j| j.id).collect();
    seen.sort();
    assert_eq!(seen, ids);
}

/// Panics on captures whose label says so; analyses the others for real.
struct Flaky;

impl Analysis for Flaky {
    fn run(&self, job: &Job, ctx: &mut JobContext<'_>) -> Result<Document, String> {
        if job.label.contains("panic") {
            panic!("decoder bug on {}", job.label);
        }
        CaptureAnalysis::default().run(job, ctx)
    }
}

#[test]
fn failures_carry_a_message_and_the_worker_lives_on() {
    let dir = common::temp_dir("failures");
    let html = dir.join("page.pcap");
    std::fs::write(&html, "<html><body>not a capture</body></html>").unwrap();
    let store = Arc::new(SqliteStore::open(dir.join("callflow.db")).unwrap());
    let (manager, _) = JobManager::start_with(store, options(1), Arc::new(Flaky)).unwrap();
    let bad = manager.submit(NewJob::file(&html)).unwrap();
    let missing = manager.submit(NewJob::upload(dir.join("gone.pcap"), "gone.pcap")).unwrap();
    let panics = manager.submit(NewJob::upload(common::example(), "panic.pcap")).unwrap();
    let good = manager.submit(NewJob::file(common::example())).unwrap();
    let jobs = manager.wait(&[bad.id, missing.id, panics.id, good.id], LONG_WAIT).unwrap();
    let summary: Vec<(JobState, Option<&str>)> = jobs.iter().map(|j| (j.state, j.error.as_deref())).collect();
    assert_eq!(
        summary,
        [
            (JobState::Failed, Some("not a capture file: bad magic 0x3c68746d at offset 0")),
            (JobState::Failed, Some("cannot open gone.pcap: No such file or directory (os error 2)")),
            (JobState::Failed, Some("internal error while analysing panic.pcap: decoder bug on panic.pcap")),
            (JobState::Completed, None),
        ]
    );
}

#[test]
fn retention_removes_old_finished_jobs_and_their_uploads() {
    let dir = common::temp_dir("retention");
    let upload = dir.join("upload.pcap");
    std::fs::copy(common::example(), &upload).unwrap();
    let opts = ManagerOptions { retention: Duration::from_secs(3600), ..options(1) };
    let manager = start(&dir, opts);
    let uploaded = manager.submit(NewJob::upload(&upload, "upload.pcap")).unwrap();
    let kept = manager.submit(NewJob::file(common::example())).unwrap();
    let done = manager.wait(&[uploaded.id, kept.id], LONG_WAIT).unwrap();
    let completed_at = done.iter().map(|j| j.completed_at.unwrap()).max().unwrap();

    assert_eq!(manager.sweep(completed_at + 3_599_000).unwrap(), 0, "younger than the retention");
    assert_eq!(manager.sweep(completed_at + 3_600_001).unwrap(), 2);
    assert!(matches!(manager.job(uploaded.id), Err(JobError::NotFound(_))));
    assert!(!upload.exists(), "the upload goes with its job");
    assert!(common::example().exists(), "a file the user named stays");
    drop(manager);

    // The background sweeper does the same on its own.
    let upload = dir.join("upload2.pcap");
    std::fs::copy(common::example(), &upload).unwrap();
    let opts =
        ManagerOptions { retention: Duration::ZERO, sweep_interval: Some(Duration::from_millis(20)), ..options(1) };
    let manager = start(&dir, opts);
    let sub = manager.subscribe();
    let job = manager.submit(NewJob::upload(&upload, "upload2.pcap")).unwrap();
    let deleted = std::iter::from_fn(|| sub.recv_timeout(Duration::from_secs(60)))
        .any(|e| matches!(e, Event::Deleted(id) if id == job.id));
    assert!(deleted);
    assert!(!upload.exists());
    assert!(manager.jobs(&Default::default()).unwrap().is_empty());
}

#[test]
fn deleting_needs_a_finished_job() {
    let dir = common::temp_dir("delete");
    let capture = common::long_capture(&dir, 200);
    let manager = start(&dir, options(1));
    let running = manager.submit(NewJob::file(&capture)).unwrap();
    assert!(matches!(manager.delete(running.id), Err(JobError::NotFinished { .. })));
    manager.cancel(running.id).unwrap();
    manager.wait(&[running.id], LONG_WAIT).unwrap();
    manager.delete(running.id).unwrap();
    assert!(matches!(manager.delete(running.id), Err(JobError::NotFound(_))));
    assert!(capture.exists());
}

#[test]
fn a_slow_subscriber_loses_progress_not_state_changes_and_never_blocks_workers() {
    let dir = common::temp_dir("slow");
    let capture = common::long_capture(&dir, 20);
    let opts = ManagerOptions { event_buffer: 8, progress_interval: Duration::ZERO, ..options(2) };
    let manager = start(&dir, opts);
    // Subscribed and never read while the jobs run: with a blocking bus the workers
    // would stall at the ninth event and `wait` would time out.
    let slow = manager.subscribe();
    let ids: Vec<JobId> = (0..10).map(|_| manager.submit(NewJob::file(&capture)).unwrap().id).collect();
    let jobs = manager.wait(&ids, LONG_WAIT).unwrap();
    assert!(jobs.iter().all(|j| j.state == JobState::Completed && j.sessions == 1));
    assert!(slow.dropped() > 0);
    let events = drain(&slow, Duration::from_millis(10));
    for &id in &ids {
        assert_eq!(states_of(&events, id), [JobState::Queued, JobState::Running, JobState::Completed], "job {id}");
    }
    assert!(events.len() <= 8 + 30, "bounded by the buffer plus the state changes: {}", events.len());
}

#[test]
fn the_queue_is_bounded() {
    let dir = common::temp_dir("bounded");
    let capture = common::long_capture(&dir, 200);
    let opts = ManagerOptions { queue_capacity: 2, ..options(1) };
    let manager = start(&dir, opts);
    let sub = manager.subscribe();
    let first = manager.submit(NewJob::file(&capture)).unwrap();
    // Once the first is running, the queue holds two more and refuses a third.
    while !matches!(sub.recv_timeout(Duration::from_secs(60)), Some(Event::State(j)) if j.state == JobState::Running) {}
    let a = manager.submit(NewJob::file(common::example())).unwrap();
    let b = manager.submit(NewJob::file(common::example())).unwrap();
    assert!(matches!(manager.submit(NewJob::file(common::example())), Err(JobError::QueueFull { capacity: 2 })));
    manager.cancel(first.id).unwrap();
    let done = manager.wait(&[a.id, b.id], LONG_WAIT).unwrap();
    assert!(done.iter().all(|j| j.state == JobState::Completed));
    assert_eq!(manager.jobs(&Default::default()).unwrap().len(), 3, "the refused job was never stored");
}

/// The heuristic classifier under another name, so a document shows which one ran.
struct TestClassifier(HeuristicClassifier);

impl Classifier for TestClassifier {
    fn name(&self) -> &'static str {
        "test"
    }

    fn classify(&mut self, payload: &Payload<'_>) -> Classification {
        self.0.classify(payload)
    }
}

#[test]
fn each_job_runs_with_a_new_classifier_from_the_factory_and_its_name_is_stored() {
    let dir = common::temp_dir("classifier");
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    let classifier = ClassifierFactory::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(TestClassifier(HeuristicClassifier))
    });
    let manager = start(&dir, ManagerOptions { classifier, ..options(1) });
    let ids: Vec<JobId> = (0..2).map(|_| manager.submit(NewJob::file(common::example())).unwrap().id).collect();
    let done = manager.wait(&ids, LONG_WAIT).unwrap();
    for job in &done {
        assert_eq!(job.state, JobState::Completed, "{:?}", job.error);
        assert_eq!(job.stats.as_ref().map(|s| s.classifier.as_str()), Some("test"), "job {}", job.id);
        // Read back from the store, not only from the finished event.
        let stored = manager.store().job(job.id).unwrap().unwrap();
        assert_eq!(stored.stats.map(|s| s.classifier), Some("test".to_string()));
    }
    assert_eq!(made.load(Ordering::SeqCst), 2, "one classifier per job");
    manager.shutdown();
}

#[test]
fn the_default_classifier_is_the_heuristic_one() {
    let dir = common::temp_dir("default-classifier");
    let manager = start(&dir, options(1));
    let job = manager.submit(NewJob::file(common::example())).unwrap();
    let done = manager.wait(&[job.id], LONG_WAIT).unwrap().remove(0);
    assert_eq!(done.stats.map(|s| s.classifier), Some("heuristic".to_string()));
    manager.shutdown();
}

#[test]
fn a_classifier_that_cannot_start_fails_the_job_with_its_reason() {
    let dir = common::temp_dir("classifier-fails");
    let classifier = ClassifierFactory::new(|| Err::<HeuristicClassifier, _>("no nDPI today"));
    let manager = start(&dir, ManagerOptions { classifier, ..options(1) });
    let job = manager.submit(NewJob::file(common::example())).unwrap();
    let done = manager.wait(&[job.id], LONG_WAIT).unwrap().remove(0);
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(done.error.as_deref(), Some("cannot start the classifier: no nDPI today"));
    manager.shutdown();
}

#[test]
fn jobs_read_ahead_on_a_second_thread_unless_configured_not_to() {
    let mut settings = callflow_config::Settings::default();
    assert_eq!(ManagerOptions::from_settings(&settings).analyzer.threads, 2);
    settings.processing.read_ahead = false;
    assert_eq!(ManagerOptions::from_settings(&settings).analyzer.threads, 1);
}

#[test]
fn the_legs_section_reaches_the_analysis_with_the_same_defaults() {
    let mut settings = callflow_config::Settings::default();
    let defaults = callflow_correlate::LegOptions::default();
    assert_eq!(ManagerOptions::from_settings(&settings).analyzer.legs, defaults);
    settings.legs.call_id_prefixes = vec!["SD".into()];
    settings.legs.party_window = Duration::from_secs(5);
    let legs = ManagerOptions::from_settings(&settings).analyzer.legs;
    assert_eq!((legs.call_id_prefixes, legs.party_window), (vec!["SD".to_string()], Duration::from_secs(5)));
}

/// The real store, except that [`JobStore::finish`] fails its first `refusals` calls as a
/// locked database does, telling `refused` of each.
struct RefusesFinish {
    inner: SqliteStore,
    refusals: usize,
    /// Each refusal first records the end, as a commit whose acknowledgement is lost would.
    after_commit: bool,
    /// Each refusal takes this long first, as SQLite's busy timeout does.
    slow: Duration,
    calls: AtomicUsize,
    refused: Mutex<Option<mpsc::Sender<()>>>,
}

impl RefusesFinish {
    fn new(dir: &Path, refusals: usize) -> RefusesFinish {
        let inner = SqliteStore::open(dir.join("callflow.db")).unwrap();
        RefusesFinish {
            inner,
            refusals,
            after_commit: false,
            slow: Duration::ZERO,
            calls: AtomicUsize::new(0),
            refused: Mutex::new(None),
        }
    }

    /// Records the end before each refusal.
    fn after_commit(self) -> RefusesFinish {
        RefusesFinish { after_commit: true, ..self }
    }

    /// Tells `refused` of each refusal.
    fn telling(self, refused: mpsc::Sender<()>) -> RefusesFinish {
        RefusesFinish { refused: Mutex::new(Some(refused)), ..self }
    }

    fn finish_calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl JobStore for RefusesFinish {
    fn create_job(&self, new: &NewJob, now: i64) -> Result<Job, StoreError> {
        self.inner.create_job(new, now)
    }
    fn reserve_id(&self) -> Result<JobId, StoreError> {
        self.inner.reserve_id()
    }
    fn resolve(&self, by: callflow_jobs::JobRef) -> Result<Option<JobId>, StoreError> {
        self.inner.resolve(by)
    }
    fn job_by_key(&self, key: i64) -> Result<Option<JobId>, StoreError> {
        self.inner.job_by_key(key)
    }
    fn claim_next(&self, now: i64) -> Result<Option<Job>, StoreError> {
        self.inner.claim_next(now)
    }
    fn record_progress(&self, id: JobId, progress: &Progress) -> Result<(), StoreError> {
        self.inner.record_progress(id, progress)
    }
    fn add_sessions(&self, id: JobId, sessions: &[Arc<Session>]) -> Result<(), StoreError> {
        self.inner.add_sessions(id, sessions)
    }
    fn finish(&self, id: JobId, outcome: &Outcome, now: i64) -> Result<Option<Job>, StoreError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.refusals {
            if let Some(refused) = &*self.refused.lock().unwrap() {
                let _ = refused.send(());
            }
            std::thread::sleep(self.slow);
            if self.after_commit {
                self.inner.finish(id, outcome, now)?;
            }
            let busy = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY);
            let cause = rusqlite::Error::SqliteFailure(busy, Some("database is locked".into()));
            return Err(StoreError::database(DatabaseErrorKind::Busy, cause));
        }
        self.inner.finish(id, outcome, now)
    }
    fn cancel_queued(&self, id: JobId, now: i64) -> Result<Option<Job>, StoreError> {
        self.inner.cancel_queued(id, now)
    }
    fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.inner.job(id)
    }
    fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        self.inner.jobs(query)
    }
    fn sessions(&self, id: JobId, query: &SessionQuery) -> Result<Vec<SessionRow>, StoreError> {
        self.inner.sessions(id, query)
    }
    fn count_sessions(&self, id: JobId, query: &SessionQuery) -> Result<u64, StoreError> {
        self.inner.count_sessions(id, query)
    }
    fn session(&self, id: JobId, session_id: &str) -> Result<Option<Session>, StoreError> {
        self.inner.session(id, session_id)
    }
    fn find_session(&self, session_id: &str) -> Result<Option<(JobId, Session)>, StoreError> {
        self.inner.find_session(session_id)
    }
    fn delete_finished(&self, id: JobId) -> Result<bool, StoreError> {
        self.inner.delete_finished(id)
    }
    fn finished_before(&self, cutoff: i64) -> Result<Vec<Job>, StoreError> {
        self.inner.finished_before(cutoff)
    }
    fn recover(&self, resume: bool, max_attempts: u32, now: i64) -> Result<Recovery, StoreError> {
        self.inner.recover(resume, max_attempts, now)
    }
}

/// `finish` was tried twice: when the store refused both, the job stayed RUNNING, with no
/// worker, until the next start, and clients saw it running all that time.
#[test]
fn a_job_whose_end_the_store_refuses_three_times_still_ends_completed() {
    let dir = common::temp_dir("finish-retried");
    let store = Arc::new(RefusesFinish::new(&dir, 3));
    let (manager, _) = JobManager::start(store.clone(), options(1)).unwrap();
    let sub = manager.subscribe();
    let job = manager.submit(NewJob::file(common::example())).unwrap();
    let ended = published_end(&sub, job.id);
    assert_eq!((ended.state, ended.error.as_deref()), (JobState::Completed, None));
    assert_eq!(store.finish_calls(), 4, "three refusals, then recorded");
    assert_eq!(store.inner.job(job.id).unwrap().unwrap().state, JobState::Completed);
    assert_eq!(manager.status(job.id).unwrap().state, JobState::Completed);
    manager.shutdown();
}

/// SQLite answers "database is locked" only after its busy timeout (10 s), as long as the
/// whole retry window when that was timed from the first attempt: there was no retry.
#[test]
fn a_job_end_refused_after_the_whole_busy_timeout_is_still_tried_again() {
    let dir = common::temp_dir("finish-slow");
    let store = Arc::new(RefusesFinish { slow: Duration::from_millis(10_100), ..RefusesFinish::new(&dir, 1) });
    let (manager, _) = JobManager::start(store.clone(), options(1)).unwrap();
    let sub = manager.subscribe();
    let job = manager.submit(NewJob::file(common::example())).unwrap();
    let ended = published_end(&sub, job.id);
    assert_eq!(ended.state, JobState::Completed);
    assert_eq!(store.finish_calls(), 2, "the slow refusal, then the retry");
    manager.shutdown();
}

/// An attempt that fails after its commit leaves the job finished in the store, so the
/// retry finds it no longer RUNNING: the end must still reach subscribers and the status.
#[test]
fn a_job_end_recorded_by_an_attempt_that_then_failed_is_still_published() {
    let dir = common::temp_dir("finish-after-commit");
    let store = Arc::new(RefusesFinish::new(&dir, 1).after_commit());
    let (manager, _) = JobManager::start(store.clone(), options(1)).unwrap();
    let sub = manager.subscribe();
    let job = manager.submit(NewJob::file(common::example())).unwrap();
    let ended = published_end(&sub, job.id);
    assert_eq!((ended.state, ended.error.as_deref()), (JobState::Completed, None));
    assert_eq!(store.finish_calls(), 2, "one attempt that failed after its commit, then one that found it done");
    assert_eq!(manager.cached_status(job.id).map(|s| s.state), Some(JobState::Completed));
    manager.shutdown();
}

#[test]
fn a_shutdown_cuts_short_the_retries_of_a_job_end_the_store_keeps_refusing() {
    let dir = common::temp_dir("finish-shutdown");
    let (refused, refusals) = mpsc::channel();
    let store = Arc::new(RefusesFinish::new(&dir, usize::MAX).telling(refused));
    let (manager, _) = JobManager::start(store.clone(), options(1)).unwrap();
    let job = manager.submit(NewJob::file(common::example())).unwrap();
    refusals.recv_timeout(Duration::from_secs(60)).expect("the job's end was tried");
    let asked = Instant::now();
    manager.shutdown();
    // The worker would otherwise go on trying for 10 s.
    assert!(asked.elapsed() < Duration::from_secs(5), "the shutdown took {:?}", asked.elapsed());
    assert_eq!(store.inner.job(job.id).unwrap().unwrap().state, JobState::Running, "left to the next start");
}

/// Runs until the manager stops it, as a capture that crashes the process would never end.
struct NeverEnds(mpsc::Sender<JobId>);

impl Analysis for NeverEnds {
    fn run(&self, job: &Job, ctx: &mut JobContext<'_>) -> Result<Document, String> {
        let _ = self.0.send(job.id);
        while !ctx.should_stop() {
            std::thread::sleep(Duration::from_millis(5));
        }
        Err("stopped".into())
    }
}

#[test]
fn a_job_interrupted_at_every_start_is_failed_after_max_attempts_instead_of_resumed_forever() {
    let dir = common::temp_dir("max-attempts");
    let store: Arc<dyn JobStore> = Arc::new(SqliteStore::open(dir.join("callflow.db")).unwrap());
    let job = store.create_job(&NewJob::file(common::example()), 1).unwrap().id;
    let (started, starts) = mpsc::channel();
    // Each start resumes the job, which is running when the process stops (a shutdown
    // leaves it RUNNING, as a crash does), until the attempts run out.
    let mut runs = 0;
    for _ in 0..10 {
        let (manager, _) =
            JobManager::start_with(store.clone(), options(1), Arc::new(NeverEnds(started.clone()))).unwrap();
        if manager.job(job).unwrap().state.is_finished() {
            break;
        }
        assert_eq!(starts.recv_timeout(Duration::from_secs(60)), Ok(job));
        runs += 1;
        manager.shutdown();
    }
    let failed = store.job(job).unwrap().unwrap();
    assert_eq!((failed.state, runs), (JobState::Failed, 3), "processing.max_attempts defaults to 3");
    let error = failed.status.error.unwrap();
    assert!(error.contains("gave up after 3 attempts") && error.contains("max_attempts"), "{error}");
}

#[test]
fn a_file_job_feeds_the_kpi_series_one_session_at_a_time() {
    let dir = common::temp_dir("kpi-series");
    // No peer label: every call counts under `other`, the whole capture's figures.
    let manager = start(&dir, ManagerOptions { top_peers: 0, ..options(1) });
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../callflow-correlate/test_data/outcomes.pcap");
    let job = manager.submit(NewJob::file(capture)).unwrap();
    let done = manager.wait(&[job.id], LONG_WAIT).unwrap();
    assert_eq!(done[0].state, JobState::Completed);
    let mut text = String::new();
    manager.kpi_series().render(&mut text);
    // outcomes.truth.json: two completed calls, one busy, one cancelled while ringing.
    for (outcome, n) in [("answered", 2), ("busy", 1), ("abandoned", 1), ("failed", 0)] {
        let line = format!("callflow_sip_calls_total{{peer=\"other\",outcome=\"{outcome}\"}} {n}\n");
        assert!(text.contains(&line), "no {line} in\n{text}");
    }
    assert!(text.contains("callflow_sip_call_duration_seconds_count{peer=\"other\"} 2\n"), "{text}");
    manager.shutdown();
}

/// Runs captures whose name says `forever` until stopped, the others as usual.
struct SomeNeverEnd;

impl Analysis for SomeNeverEnd {
    fn run(&self, job: &Job, ctx: &mut JobContext<'_>) -> Result<Document, String> {
        if !job.label.contains("forever") {
            return CaptureAnalysis::default().run(job, ctx);
        }
        while !ctx.should_stop() {
            std::thread::sleep(Duration::from_millis(5));
        }
        Err("stopped".into())
    }
}

#[test]
fn a_drain_lets_jobs_finish_and_hands_back_those_still_running_without_counting_their_start() {
    let dir = common::temp_dir("drain");
    let store: Arc<dyn JobStore> = Arc::new(SqliteStore::open(dir.join("callflow.db")).unwrap());
    let (manager, _) = JobManager::start_with(store.clone(), options(2), Arc::new(SomeNeverEnd)).unwrap();
    let forever = manager.submit(NewJob::upload(common::example(), "forever.pcap")).unwrap().id;
    let short = manager.submit(NewJob::file(common::example())).unwrap().id;
    // Both started (a drain starts nothing more).
    while manager.job(forever).unwrap().state != JobState::Running
        || manager.job(short).unwrap().state == JobState::Queued
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(manager.drain(Duration::from_secs(3)), [forever]);
    assert_eq!(manager.job(short).unwrap().state, JobState::Completed, "finished within the drain");
    let back = manager.job(forever).unwrap();
    assert_eq!((back.state, back.attempts, back.sessions), (JobState::Queued, 0, 0));
    manager.shutdown();
    let (manager, recovery) = JobManager::start_with(store, options(1), Arc::new(SomeNeverEnd)).unwrap();
    assert_eq!((recovery.queued, recovery.rerun), (vec![forever], vec![]), "queued, not interrupted");
    while manager.job(forever).unwrap().state != JobState::Running {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(manager.job(forever).unwrap().attempts, 1);
}
