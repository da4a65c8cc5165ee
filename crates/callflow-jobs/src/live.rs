//! Live jobs: an analysis that runs on a live source until it is stopped, reporting sessions as calls complete and its counters every few seconds.
//!
//! The manager knows no source kind: the embedder (callflowd's server) opens the source
//! (an interface, a remote stream, HEP agents) and hands it in as a [`LiveFeed`], a
//! [`FrameSource`] that also reports its counters and notices. A live job does not wait
//! in the queue nor hold a worker: [`JobManager::start_live`](crate::JobManager::start_live)
//! stores it RUNNING and runs it on a thread of its own, at most `max_jobs` at once.
//!
//! The run wraps the feed in a source of its own, which, each time the analysis pulls:
//! ends the source (so the analysis finishes normally and the calls still open are handed
//! out) once the job is cancelled, deleted or its duration has passed; keeps every frame in
//! the job's rotating files ([`crate::retain`]); and every `stats_interval` publishes an
//! [`Event::Live`](crate::Event::Live) with the counters and each notice of the feed as an
//! [`Event::Notice`](crate::Event::Notice). Sessions are stored as they complete, before
//! they are published, so a client told of one can fetch it at once.
//!
//! A live job that was stopped (cancel, DELETE, duration) or whose source ended ends
//! COMPLETED; one whose source failed ends FAILED with the reason. Either way it keeps its
//! sessions, and the store makes it FAILED as interrupted, keeping them, if callflowd
//! stopped while it ran.

use crate::manager::Shared;
use crate::retain::{RetainLimits, Retainer};
use crate::{JobId, JobState};
use callflow_correlate::{FrameSource, Pulled};
use callflow_decode::capture::CaptureError;
use callflow_decode::tls::keylog::{KeyLogTail, SharedKeyLog};
use callflow_decode::{LinkType, Timestamp};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A live source's counters, totals since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveCounts {
    /// Frames handed to the analysis.
    pub received: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Frames dropped because the analysis was behind.
    pub dropped: u64,
    /// Frames the source itself lost or refused (kernel drops, malformed HEP packets...).
    pub source_dropped: u64,
}

/// A live source as the job manager sees it: frames, counters and notices.
pub trait LiveFeed: FrameSource + Send {
    /// The counters now.
    fn counts(&self) -> LiveCounts;

    /// What happened to the source since the last call that users should hear of (a
    /// remote stream lost, reconnected...), oldest first. None by default.
    fn notices(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// What adds the source's own knowledge to each session before it is stored (a HEP
    /// agent's id on its messages), asked once when the job starts. None by default.
    fn annotator(&self) -> Option<SessionAnnotator> {
        None
    }
}

/// Changes a session before it is stored; see [`LiveFeed::annotator`].
pub type SessionAnnotator = Box<dyn Fn(&mut callflow_model::Session) + Send>;

/// What [`JobManager::start_live`](crate::JobManager::start_live) runs.
pub struct LiveJob {
    /// How the job is shown to users.
    pub label: String,
    /// The source as the embedder describes it (JSON, shown in the job's status).
    pub source: String,
    /// Stop after this long; `None`: run until cancelled or deleted.
    pub duration: Option<Duration>,
    /// The source, opened.
    pub feed: Box<dyn LiveFeed>,
}

impl std::fmt::Debug for LiveJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveJob")
            .field("label", &self.label)
            .field("source", &self.source)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

/// How live jobs run and what they keep.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Where each live job keeps its traffic, in a directory named after its id.
    pub dir: PathBuf,
    /// The bounds on what each job keeps.
    pub retain: RetainLimits,
    /// How often a job publishes its counters.
    pub stats_interval: Duration,
    /// Live jobs running at once.
    pub max_jobs: usize,
    /// A TLS key log file (`[tls] keylog`) followed while each job runs: the secrets
    /// appended to it are used for the TLS connections that follow.
    pub tls_keylog: Option<PathBuf>,
}

/// How often a live job looks for secrets appended to its key log.
const KEYLOG_POLL: Duration = Duration::from_secs(1);

/// A running live job's counters, as published every `stats_interval`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveStats {
    /// Frames analysed.
    pub packets: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Frames dropped because the analysis was behind.
    pub dropped: u64,
    /// Frames the source lost or refused before the analysis.
    pub source_dropped: u64,
    /// Sessions completed (and stored) so far.
    pub sessions: u64,
    /// Bytes of traffic kept for pcap downloads.
    pub retained_bytes: u64,
    /// Files they are kept in.
    pub retained_files: u64,
    /// The capture time of the oldest packet kept: calls that began before it have aged out.
    pub retained_since: Option<Timestamp>,
    /// Milliseconds since the job started.
    pub elapsed_ms: u64,
}

/// The source the analysis of a live job pulls from; see the module documentation.
pub(crate) struct LiveRun<'a> {
    pub(crate) feed: Box<dyn LiveFeed>,
    pub(crate) shared: &'a Shared,
    pub(crate) job: JobId,
    pub(crate) stop: &'a AtomicU8,
    pub(crate) until: Option<Instant>,
    pub(crate) retain: Option<Retainer>,
    /// Keeping the last frame failed: said, and keeping stopped, at the next pull.
    pub(crate) failed: Option<std::io::Error>,
    /// Sessions stored so far, counted by the control.
    pub(crate) sessions: Arc<AtomicU64>,
    pub(crate) started: Instant,
    pub(crate) next_stats: Instant,
    pub(crate) ended: bool,
    /// The key log file followed, when `[tls] keylog` names one.
    pub(crate) keylog: Option<KeyLogTail>,
    /// The analysis' key log, which the secrets read are added to.
    pub(crate) keys: SharedKeyLog,
    pub(crate) next_keylog: Instant,
    /// Reading the key log failed at the last poll (said once, until it works again).
    pub(crate) keylog_failing: bool,
}

impl LiveRun<'_> {
    /// Opens the job's rotating files; a failure is a notice, and the job runs on without them.
    pub(crate) fn retainer(shared: &Shared, job: JobId, dir: &std::path::Path) -> Option<Retainer> {
        match Retainer::new(dir, shared.opts.live.retain) {
            Ok(r) => Some(r),
            Err(e) => {
                notice(
                    shared,
                    job,
                    format!("cannot keep the traffic in {}: {e}; calls will have no pcap", dir.display()),
                );
                None
            }
        }
    }

    fn stats(&self) -> LiveStats {
        let counts = self.feed.counts();
        let (retained_bytes, retained_files) = self.retain.as_ref().map_or((0, 0), |r| r.kept());
        LiveStats {
            packets: counts.received,
            bytes: counts.bytes,
            dropped: counts.dropped,
            source_dropped: counts.source_dropped,
            sessions: self.sessions.load(Ordering::Relaxed),
            retained_bytes,
            retained_files,
            retained_since: self.retain.as_ref().and_then(|r| r.kept_since()).map(Timestamp::from_nanos),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
        }
    }

    /// Adds the secrets appended to the key log since the last look; a failure to read it
    /// is a notice when it starts and when it ends.
    fn follow_keylog(&mut self) {
        let Some(tail) = self.keylog.as_mut() else { return };
        match tail.poll(&self.keys) {
            Ok(added) => {
                if std::mem::take(&mut self.keylog_failing) {
                    notice(self.shared, self.job, format!("reading the TLS key log {} again", tail.path().display()));
                }
                if let Some((line, why)) = added.first_bad {
                    let (job, path) = (self.job, tail.path().display().to_string());
                    notice(
                        self.shared,
                        job,
                        format!(
                            "TLS key log {path}: {} lines skipped, the first (line {line} of those read): {}",
                            added.bad,
                            why.as_str()
                        ),
                    );
                }
            }
            Err(e) if !self.keylog_failing => {
                self.keylog_failing = true;
                let path = tail.path().display().to_string();
                notice(
                    self.shared,
                    self.job,
                    format!("cannot read the TLS key log {path}: {e}; looking again every second"),
                );
            }
            Err(_) => {}
        }
    }

    /// Publishes the feed's notices and the counters.
    fn report(&mut self) {
        for message in self.feed.notices() {
            notice(self.shared, self.job, message);
        }
        let stats = self.stats();
        self.shared.bus.publish(crate::Event::Live { job: self.job, stats });
    }
}

fn notice(shared: &Shared, job: JobId, message: String) {
    shared.bus.publish(crate::Event::Notice { job, message: message.into() });
}

impl FrameSource for LiveRun<'_> {
    fn next_frame(&mut self) -> Result<Option<Pulled<'_>>, CaptureError> {
        if self.ended {
            return Ok(None);
        }
        let now = Instant::now();
        if now >= self.next_keylog {
            self.next_keylog = now + KEYLOG_POLL;
            self.follow_keylog();
        }
        if now >= self.next_stats {
            self.next_stats = now + self.shared.opts.live.stats_interval;
            self.report();
        }
        if self.stop.load(Ordering::Relaxed) != crate::manager::RUN || self.until.is_some_and(|u| now >= u) {
            // Ended here, not by the control: the analysis then hands out the open calls.
            self.ended = true;
            self.report();
            return Ok(None);
        }
        if let Some(e) = self.failed.take() {
            self.retain = None;
            notice(
                self.shared,
                self.job,
                format!("cannot keep the traffic any longer: {e}; later calls will have no pcap"),
            );
        }
        let LiveRun { feed, retain, failed, .. } = self;
        let pulled = feed.next_frame()?;
        if let Some(r) = retain.as_mut() {
            let kept = match &pulled {
                Some(Pulled::Here(frame)) => r.write(frame),
                Some(Pulled::Tick(_)) => r.maintain(),
                _ => Ok(()),
            };
            // Said at the next pull: the frame borrows the feed until then.
            if let Err(e) = kept {
                *failed = Some(e);
            }
        }
        Ok(pulled)
    }

    fn bytes_consumed(&self) -> u64 {
        self.feed.bytes_consumed()
    }

    fn link_types(&self) -> &[LinkType] {
        self.feed.link_types()
    }

    /// The analysis' key log: the followed file's secrets go there.
    fn share_tls_keys(&mut self, keys: SharedKeyLog) {
        self.keys = keys;
        self.next_keylog = Instant::now();
    }
}

/// The state a live run ends in, and its error: stopped or ended, COMPLETED; a source
/// that failed part-way (the document says it was not read whole), FAILED.
pub(crate) fn live_end(doc: &callflow_model::Document) -> (JobState, Option<String>) {
    if doc.source.complete {
        (JobState::Completed, None)
    } else {
        (JobState::Failed, Some(format!("the live source failed: {}", doc.source.warnings.join("; "))))
    }
}
