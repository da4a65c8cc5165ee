//! Live jobs on the job manager: sessions stored as they come, what the job keeps, a failing source, and a restart while one runs.

mod common;

use callflow_correlate::{FrameSource, Pulled};
use callflow_decode::capture::{CaptureError, CaptureReader, Frame};
use callflow_decode::{LinkType, Timestamp};
use callflow_jobs::{
    Event, JobId, JobManager, JobState, JobStore, LiveCounts, LiveFeed, LiveJob, ManagerOptions, SessionQuery,
    SqliteStore, Subscription,
};
use callflow_model::SessionKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The example capture's frames, then quiet ticks until the job ends, or `error` once the
/// frames are out.
struct FileFeed {
    frames: Vec<(LinkType, Vec<u8>, Timestamp)>,
    next: usize,
    error: Option<CaptureError>,
    links: Vec<LinkType>,
    /// Frames flow once this is set (`None`: at once); until then the feed only ticks.
    gate: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl FileFeed {
    fn example(error: Option<CaptureError>) -> FileFeed {
        FileFeed::of(&common::example(), error)
    }

    fn of(path: &std::path::Path, error: Option<CaptureError>) -> FileFeed {
        let mut reader = CaptureReader::open(path).unwrap();
        let mut frames = Vec::new();
        while let Some(f) = reader.next_frame().unwrap() {
            frames.push((f.link_type, f.data.to_vec(), f.ts));
        }
        let links = frames.iter().map(|f| f.0).take(1).collect();
        FileFeed { frames, next: 0, error, links, gate: None }
    }
}

impl FrameSource for FileFeed {
    fn next_frame(&mut self) -> Result<Option<Pulled<'_>>, CaptureError> {
        if self.gate.as_ref().is_some_and(|g| !g.load(std::sync::atomic::Ordering::SeqCst)) {
            std::thread::sleep(Duration::from_millis(5));
            return Ok(Some(Pulled::Tick(self.frames[0].2)));
        }
        let i = self.next;
        if i < self.frames.len() {
            self.next += 1;
            let (link_type, data, ts) = &self.frames[i];
            let frame = Frame {
                number: i as u64 + 1,
                ts: *ts,
                link_type: *link_type,
                data,
                orig_len: data.len() as u32,
                interface: 0,
            };
            return Ok(Some(Pulled::Here(frame)));
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(5));
        // Time goes on a second per tick: calls that are over close at once.
        self.next += 1;
        let last = self.frames.last().unwrap().2;
        Ok(Some(Pulled::Tick(Timestamp::from_nanos(
            last.as_nanos() + (self.next - self.frames.len()) as i64 * 1_000_000_000,
        ))))
    }

    fn bytes_consumed(&self) -> u64 {
        0
    }

    fn link_types(&self) -> &[LinkType] {
        &self.links
    }
}

impl LiveFeed for FileFeed {
    fn counts(&self) -> LiveCounts {
        LiveCounts { received: self.next.min(self.frames.len()) as u64, ..LiveCounts::default() }
    }
}

fn options(dir: &std::path::Path) -> ManagerOptions {
    let mut opts = ManagerOptions::default();
    opts.analyzer.session_linger = Duration::from_secs(1);
    opts.live.dir = dir.join("live");
    opts.sweep_interval = None;
    opts
}

fn live(feed: FileFeed) -> LiveJob {
    LiveJob { label: "test".into(), source: r#"{"source": "test"}"#.into(), duration: None, feed: Box::new(feed) }
}

/// Waits (bounded) for an event `what` accepts.
fn wait_for(sub: &Subscription, mut what: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.checked_duration_since(Instant::now()).expect("the event came in time");
        if let Some(event) = sub.recv_timeout(left) {
            if what(&event) {
                return event;
            }
        }
    }
}

fn sessions(store: &dyn JobStore, id: JobId) -> u64 {
    store.count_sessions(id, &SessionQuery::default()).unwrap()
}

#[test]
fn a_live_job_interrupted_by_a_shutdown_ends_failed_at_the_restart_keeping_its_sessions() {
    let dir = common::temp_dir("live-restart");
    let store = Arc::new(SqliteStore::open(dir.join("jobs.db")).unwrap());
    let (manager, _) = JobManager::start(store.clone(), options(&dir)).unwrap();
    let sub = manager.subscribe();
    let job = manager.start_live(live(FileFeed::example(None))).unwrap();
    assert_eq!(job.state, JobState::Running);
    wait_for(&sub, |e| matches!(e, Event::Session { job: j, .. } if *j == job.id));
    // Stored before it was published.
    assert_eq!(sessions(&*store, job.id), 1);
    let stats = wait_for(&sub, |e| matches!(e, Event::Live { stats, .. } if stats.sessions == 1));
    let Event::Live { stats, .. } = stats else { unreachable!() };
    assert!(stats.retained_bytes > 140_000 && stats.retained_files == 1, "{stats:?}");
    manager.shutdown();
    assert_eq!(store.job(job.id).unwrap().unwrap().state, JobState::Running, "left as it was by a shutdown");

    let (manager, recovery) = JobManager::start(store.clone(), options(&dir)).unwrap();
    assert_eq!(recovery.interrupted, [job.id]);
    assert!(recovery.queued.is_empty(), "a live job is never run again from the queue");
    let after = manager.job(job.id).unwrap();
    assert_eq!(after.state, JobState::Failed);
    assert!(after.error.as_deref().unwrap().contains("interrupted"), "{:?}", after.error);
    assert_eq!(sessions(&*store, job.id), 1, "its sessions are kept");
    manager.delete(job.id).unwrap();
    assert!(!dir.join("live").join(job.id.to_string()).exists(), "its files go with it");
    manager.shutdown();
}

#[test]
fn a_live_job_whose_source_fails_ends_failed_keeping_its_sessions() {
    let dir = common::temp_dir("live-fail");
    let store = Arc::new(SqliteStore::open(dir.join("jobs.db")).unwrap());
    let (manager, _) = JobManager::start(store.clone(), options(&dir)).unwrap();
    let job = manager.start_live(live(FileFeed::example(Some(CaptureError::Empty)))).unwrap();
    let done = manager.wait(&[job.id], Some(Duration::from_secs(60))).unwrap().remove(0);
    assert_eq!(done.state, JobState::Failed);
    assert!(done.error.as_deref().unwrap().starts_with("the live source failed: "), "{:?}", done.error);
    assert_eq!((done.sessions, sessions(&*store, job.id)), (1, 1));
    manager.shutdown();
}

#[test]
fn a_live_job_decrypts_sip_over_tls_with_the_secrets_appended_to_its_key_log_while_it_runs() {
    let dir = common::temp_dir("live-keylog");
    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../callflow-correlate/test_data");
    let keylog = dir.join("sslkeys.log");
    let store = Arc::new(SqliteStore::open(dir.join("jobs.db")).unwrap());
    let mut opts = options(&dir);
    opts.live.tls_keylog = Some(keylog.clone());
    let (manager, _) = JobManager::start(store.clone(), opts).unwrap();
    let sub = manager.subscribe();
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut feed = FileFeed::of(&data.join("sip-tls13.pcap"), None);
    feed.gate = Some(gate.clone());
    let job = manager.start_live(live(feed)).unwrap();
    // The file is missing at first: said, and looked for again.
    wait_for(
        &sub,
        |e| matches!(e, Event::Notice { job: j, message } if *j == job.id && message.contains("cannot read the TLS key log")),
    );
    // The SBC writes its secrets, the job finds them, then the call's traffic comes.
    std::fs::write(&keylog, std::fs::read(data.join("sip-tls13.keys")).unwrap()).unwrap();
    wait_for(
        &sub,
        |e| matches!(e, Event::Notice { job: j, message } if *j == job.id && message.contains("reading the TLS key log")),
    );
    gate.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_for(&sub, |e| matches!(e, Event::Session { job: j, .. } if *j == job.id));
    manager.cancel(job.id).unwrap();
    manager.wait(&[job.id], Some(Duration::from_secs(60))).unwrap();
    let kinds = |kind: SessionKind| {
        let query = SessionQuery { kind: Some(kind), ..SessionQuery::default() };
        store.count_sessions(job.id, &query).unwrap()
    };
    assert_eq!(
        (kinds(SessionKind::SipCall), kinds(SessionKind::Tls)),
        (1, 0),
        "the call decrypted, no unread TLS session"
    );
    manager.shutdown();
}
