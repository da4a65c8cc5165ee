//! Analysis jobs for callflowd: a worker pool with progress events and cancellation, and a job store that survives restarts.
//!
//! A [`JobManager`] takes jobs (a capture file to analyse) into a bounded queue and runs
//! them on a pool of worker threads. A job goes QUEUED -> RUNNING -> COMPLETED | FAILED |
//! CANCELLED; on the way it reports progress (by bytes of the capture consumed, throttled),
//! every session as it completes, and the capture's statistics. All of it is published on
//! an in-process [`EventBus`] that any number of [`Subscription`]s follow; a subscriber that
//! falls behind loses old progress and session events, never a state change, and never
//! slows a worker down.
//!
//! Jobs and their sessions live in a [`JobStore`]; [`SqliteStore`] is the embedded default
//! (one file in the results directory, WAL mode, versioned migrations). After a crash the
//! store tells the manager which jobs were queued (re-queued) and which were running
//! (re-run from the start, or failed as interrupted).
//!
//! Only one process may run a manager on a store: whoever does holds a [`DirLock`] on the
//! directories it owns (callflowd takes one on its upload, results and database
//! directories), and a second one is refused with the first one's PID.
//!
//! The manager keeps each job's [`JobStatus`] in memory as well, written where it
//! publishes, so that [`JobManager::status`] (what a client polling a job asks) answers
//! without a query once it has seen the job, and [`JobManager::cached_status`] answers
//! without ever waiting for the store.
//!
//! Architecture invariant: this crate knows nothing of HTTP or of the command line; it
//! runs the analysis through `callflow-correlate` and stores `callflow-model` sessions.
//! It knows no classifier but the heuristic one either: an embedder that links nDPI hands
//! in a [`ClassifierFactory`] ([`ManagerOptions::classifier`]), which makes one per job.
//! Every state change goes through the store first and is published second, so what a
//! subscriber is told is always already queryable.
//!
//! ```no_run
//! use callflow_jobs::{JobManager, ManagerOptions, NewJob, SqliteStore};
//! use std::sync::Arc;
//!
//! let store = Arc::new(SqliteStore::open("results/callflow.db")?);
//! let (manager, _recovered) = JobManager::start(store, ManagerOptions::default())?;
//! let job = manager.submit(NewJob::file("call.pcap"))?;
//! let done = manager.wait(&[job.id], None)?;
//! println!("{} {} sessions", done[0].state, done[0].sessions);
//! manager.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod events;
mod lock;
mod manager;
mod sqlite;
mod status;
mod store;

pub use events::{Event, EventBus, Subscription};
pub use lock::{DirLock, LockError, LOCK_FILE};
pub use manager::{Analysis, CaptureAnalysis, ClassifierFactory, JobContext, JobError, JobManager, ManagerOptions};
pub use sqlite::SqliteStore;
pub use status::JobStatus;
pub use store::{JobQuery, JobStore, Outcome, Progress, Recovery, SessionCursor, SessionQuery, SessionRow, StoreError};

use callflow_model::{SourceInfo, Stats};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A job's identifier, unique within its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<JobId, Self::Err> {
        s.parse().map(JobId)
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker is analysing it.
    Running,
    /// Done; its sessions are stored.
    Completed,
    /// Stopped by an error (the job's `error` says which).
    Failed,
    /// Stopped by a user.
    Cancelled,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 5] =
        [JobState::Queued, JobState::Running, JobState::Completed, JobState::Failed, JobState::Cancelled];

    /// The name used in the store and in JSON (`QUEUED`, `RUNNING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Running => "RUNNING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
        }
    }

    /// The state named `name`, as written by [`JobState::as_str`].
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True for COMPLETED, FAILED and CANCELLED: the job will not change again.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed | JobState::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user asks for: a capture to analyse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    /// The capture file.
    pub input: PathBuf,
    /// How the job is shown to users (the uploaded file's name, or the path).
    pub label: String,
    /// True when the capture belongs to the job (an upload): deleting the job deletes it.
    pub owns_input: bool,
    /// The id to create the job with, reserved beforehand with [`JobManager::reserve_id`]
    /// (callflowd names an upload's file after its job while the job does not exist yet);
    /// `None`: the store picks the next one.
    #[serde(default)]
    pub id: Option<JobId>,
}

impl NewJob {
    /// A job on a file the user keeps (it is never deleted with the job).
    pub fn file(path: impl Into<PathBuf>) -> NewJob {
        let input = path.into();
        NewJob { label: input.display().to_string(), input, owns_input: false, id: None }
    }

    /// A job on an uploaded file, deleted with the job.
    pub fn upload(path: impl Into<PathBuf>, label: impl Into<String>) -> NewJob {
        NewJob { input: path.into(), label: label.into(), owns_input: true, id: None }
    }

    /// The same job, to be created with `id` (from [`JobManager::reserve_id`]).
    pub fn with_id(self, id: JobId) -> NewJob {
        NewJob { id: Some(id), ..self }
    }
}

/// A job as stored: what was asked, where it is, and what came of it. Times are
/// milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// What clients are shown of it: state, progress, counts, times. Its fields read as
    /// the job's own (`job.state`).
    #[serde(flatten)]
    pub status: JobStatus,
    /// The capture file.
    pub input: PathBuf,
    /// Whether deleting the job deletes the capture.
    pub owns_input: bool,
    /// The capture as read, once completed.
    pub source: Option<SourceInfo>,
    /// Packet and protocol counts, once completed.
    pub stats: Option<Stats>,
}

impl std::ops::Deref for Job {
    type Target = JobStatus;

    fn deref(&self) -> &JobStatus {
        &self.status
    }
}

impl std::ops::DerefMut for Job {
    fn deref_mut(&mut self) -> &mut JobStatus {
        &mut self.status
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
