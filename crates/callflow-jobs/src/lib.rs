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
//! Every session a job completes, file or live, also feeds the manager's operator
//! statistics ([`JobManager::kpi_series`], Prometheus series per peer; docs/kpis.md).
//!
//! Jobs and their sessions live in a [`JobStore`]; [`SqliteStore`] is the embedded default
//! (one file in the results directory, WAL mode, versioned migrations), and [`PgStore`] the
//! same tables on a PostgreSQL server (`[storage] database = "postgres://..."`), for several
//! nodes on one queue. Their errors are backend-neutral ([`StoreError`], with a
//! [`DatabaseErrorKind`] to act on and the driver's error as its source). After a crash the
//! store tells the manager which jobs were queued (re-queued) and which were running
//! (re-run from the start, or failed as interrupted).
//!
//! The store also keeps the event log (`JobStore::append_events`, [`StoredEvent`]): job
//! events with ids the store hands out, increasing across every process on it and never
//! reused, so that a client's stream resumes on any node and after a restart; what an event
//! says is the embedder's (the server logs the JSON it sends). A store several processes
//! share (PostgreSQL) tells each of them when the others logged events
//! (`JobStore::listen_events`: `LISTEN/NOTIFY`, reconnecting when the connection fails).
//!
//! Only one process may run a manager on a SQLite store: whoever does holds a [`DirLock`]
//! on the directories it owns (callflowd takes one on its upload, results and database
//! directories), and a second one is refused with the first one's PID. On PostgreSQL
//! several processes do, each a node (see "Several nodes on PostgreSQL" below).
//!
//! The manager keeps each job's [`JobStatus`] in memory as well, written where it
//! publishes, so that [`JobManager::status`] (what a client polling a job asks) answers
//! without a query once it has seen the job, and [`JobManager::cached_status`] answers
//! without ever waiting for the store.
//!
//! [`analyze_to_output`] is the same analysis without a job: one capture straight into a
//! result file (renamed into place when complete) or standard output, for the binaries'
//! one-shot modes (`callflow-cli analyze`, `callflowd --input`).
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
//!
//! # Mechanics
//!
//! The store is the truth; the crossbeam channel only carries one wake-up token per queued
//! job, and a woken worker takes the oldest QUEUED job with `claim_next`. Every transition
//! is conditional on the expected state (`finish` only from RUNNING, `cancel_queued` only
//! from QUEUED), so no job runs twice and a cancel cannot race a claim (both also hold the
//! manager's `running` lock). Sessions are written in batches while the job runs, with
//! their summary columns (job, kind, state, start, from, to, call_id) indexed and the whole
//! session as a JSON document; a job that does not complete keeps none. Deep pages are
//! chosen from the covering index and only the page's rows are read; a `SessionCursor`
//! gives keyset paging. Two filters are not index lookups: `text` (a substring of Call-ID,
//! From or To, a `LIKE` scan of the job's rows) and `problem` (a flagged problem, an
//! anomaly or a failed call, or one problem by name, read from the JSON document); `session_jobs` says which jobs have a
//! session id (one: the manager's analyses scope ids by the job's UUID; but jobs analysed
//! before that, or by an embedder's `Analysis`, may share them). Jobs are named by a UUID
//! v7 (`JobId::uuid`) beside the store's key; a job made before UUIDs keeps its number as
//! an alias (`JobRef::Number`, `JobStore::resolve`). Changes go through one connection behind a mutex; queries through up to two read
//! connections beside it (WAL), each of which sees every change committed before it starts,
//! so two queries run at once beside a write (a third, or one whose reader cannot be
//! opened, uses the writer's connection). Schema migrations are numbered (`PRAGMA
//! user_version`); a database from a newer build is refused. A completed job's subscriber
//! view (the document's `subscribers`, known only once the capture is read) is one JSON
//! column of its row, read apart from the job (`JobStore::subscribers`); jobs completed
//! before version 3 have none. On start, `recover` turns
//! RUNNING jobs (a crash, or a shutdown, which deliberately leaves them RUNNING) back into
//! QUEUED with their partial sessions deleted, or into FAILED "interrupted" when
//! `resume_interrupted = false`, and the manager sends a token per queued job; a job
//! already started `processing.max_attempts` times (3) is FAILED with the reason instead,
//! since a capture that crashes the process would crash it at every start.
//!
//! The manager also keeps each job's status (`JobStatus`: the job without its path, source
//! and statistics) in memory, the status board, for `JobManager::status`: it is written
//! where the manager publishes, after the store and before the bus (the job the store
//! returned after a transition, each progress it recorded, a deletion), so it says what the
//! store says and a status read is a lock and a lookup, not a query. A job the manager has
//! not changed since it started (a finished job after a restart) is read from the store
//! once and then kept, unless the board was written during that read (which may then be
//! older than the board). A worker tries `finish` again after a failure, with pauses from
//! 50 ms doubling, for up to 10 s (unless the manager shuts down), since a job whose end is
//! not recorded stays RUNNING with no worker until the next start; when it still fails, the
//! job leaves the board, its stored state being unknown, and its end is kept in memory: a
//! recorder thread tries it again every second until the store takes it (a full disk
//! freed), and a cancel records it as CANCELLED at once (or answers the store's error), so
//! that the job can then be deleted. When a retry finds the job no
//! longer RUNNING (an attempt failed after its commit), the finished job the store holds is
//! what is published. The board holds every job read or changed until it is deleted (about
//! 200 bytes each).
//!
//! # Several nodes on PostgreSQL
//!
//! [`PgStore`] implements `JobStore` with the same tables (`jsonb` documents), so several
//! callflowd nodes share one queue (its module docs say how the synchronous trait meets
//! the async driver, and how TLS and migrations go). Each manager registers its node
//! ([`NodeOptions`]: `[cluster]` in the configuration) before recovering, and the store
//! it holds is then that node's (`crate::cluster` has the heartbeat's mechanics):
//!
//! - `claim_next` is one statement, `UPDATE jobs SET state='RUNNING', attempts=attempts+1,
//!   node=<this node> ... WHERE id = (SELECT id FROM jobs WHERE state='QUEUED' ORDER BY id
//!   LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ...`, with the job's old sessions deleted in
//!   the same transaction: workers on any node skip rows another transaction holds, so each
//!   job is claimed once, without a lock queue. A job's `node` is the node running it, or
//!   that last ran it, and its `attempts` the times it was started.
//! - Each node heartbeats (`nodes.last_seen`) every second, and its heartbeat is the lease
//!   of every job it runs. A node silent for `[cluster] lease` is lost: at each heartbeat
//!   every live node takes over lost nodes' RUNNING jobs (`FOR UPDATE SKIP LOCKED` again,
//!   so one node handles each), about a lease after their node's last heartbeat: QUEUED
//!   again with their sessions deleted, or FAILED naming the lost nodes once started
//!   `[cluster] max_attempts` times, or, for a live job (its source was the lost node's),
//!   FAILED as interrupted with its sessions kept.
//! - A run whose writes fail because the database cannot be reached (a restart, its
//!   connections cut) is not failed: the job stays RUNNING as this node's, and once the
//!   store answers, the heartbeat finds it RUNNING here with no thread running it and
//!   hands it back (QUEUED, the start not counted) to run again from the start.
//! - A node's name is its identity: a start under the name of a node that still heartbeats
//!   (another live process) is refused ([`JobError::NodeNameInUse`]) rather than take that
//!   node's jobs; the same name after a crash or a stop is that node again.
//! - `recover` at start takes only this node's RUNNING jobs (and those of no node, from
//!   before nodes were recorded), bounded by `processing.max_attempts`.
//! - A run's writes (progress, sessions, its end) are taken only while the job is RUNNING
//!   on this node; a session batch holds the job's row (`FOR SHARE`) while it is written,
//!   so a takeover, which deletes the sessions, comes wholly before or after it. A node
//!   that was only paused finds at its next heartbeat that its jobs are others' and stops
//!   those runs without recording anything: the sessions of two attempts never mix.
//! - A cancel on a node that does not run the job sets the job's `cancel_requested`; the
//!   running node's heartbeat reads it and stops the run within a second.
//! - Jobs queued on another node send no wake-up token here: idle workers are woken at
//!   each heartbeat (a claim that finds nothing is one indexed query). Status reads of jobs
//!   this node does not run go to the store, which other nodes change.
//! - `JobManager::drain` (callflowd at SIGTERM) claims nothing more, lets running file
//!   jobs finish for `[cluster] drain_timeout`, then stops the others and hands them back
//!   to the queue (`JobStore::hand_back`: QUEUED, the start not counted).
//! - The retention sweep runs on the node holding the sweeper's advisory lock
//!   (`pg_try_advisory_lock`, on a connection kept for the sweep); it deletes finished
//!   jobs only, and a file only with the job the store deleted.
//! - Uploaded files live on storage all nodes see (`upload_dir`, `results_dir`); at start a
//!   node checks it can write there and that they hold its store's cluster id
//!   ([`check_volume`]), so that a node pointed at another cluster's files refuses to start.
//!
//! An embedded [`SqliteStore`] is one node: it records the node's name on its jobs and
//! lists it, and recovers every RUNNING job at start (its directory lock makes the process
//! the only one).

mod cluster;
mod direct;
mod eventlog;
mod events;
pub mod live;
mod lock;
mod manager;
mod postgres;
pub mod retain;
mod sqlite;
mod status;
mod store;
pub mod tokens;
mod volume;

pub use cluster::{NodeOptions, NodeState};
pub use direct::{
    analyze_to_output, analyze_to_output_with, diameter_dictionary, job_key_log_path, read_tls_key_log, DirectAnalysis,
    DirectError, KeyLogFileError, ResultFormat, ResultWriter,
};
pub use eventlog::{EventIds, EventKind, EventListener, EventWake, NewEvent, StoredEvent};
pub use events::{Event, EventBus, Subscription};
pub use live::{LiveCounts, LiveFeed, LiveJob, LiveOptions, LiveStats, SessionAnnotator};
pub use lock::{DirLock, LockError, LOCK_FILE};
pub use manager::{
    kpi_options, Analysis, CaptureAnalysis, ClassifierFactory, JobContext, JobError, JobManager, ManagerOptions,
};
pub use postgres::{PgStore, LISTENER_NAME as PG_LISTENER_NAME};
pub use retain::{retained_parts, RetainLimits, RetainedPart};
pub use sqlite::SqliteStore;
pub use status::JobStatus;
pub use store::{
    DatabaseErrorKind, JobQuery, JobStore, NodeInfo, NodeRow, Outcome, OwnJob, Progress, Recovery, SessionCursor,
    SessionQuery, SessionRow, SessionSort, SortKey, StoreError, Takeover,
};
/// The UUID type of [`JobId::uuid`] and [`JobRef::Uuid`].
pub use uuid::Uuid;
pub use volume::{check_volume, VolumeError, CLUSTER_FILE};

use callflow_config::{Database, StorageSettings};
use callflow_model::{SourceInfo, Stats};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// A job's identifier: a UUID (v7: time-ordered, with 74 random bits) unique across nodes
/// and clusters, which is what clients see, and the store's own number for the job, which
/// is how the store finds it.
///
/// Only a store makes one ([`JobStore::create_job`], [`JobStore::reserve_id`]) or finds one
/// ([`JobStore::resolve`]): the two halves always belong together. Serialized (and
/// displayed) as the UUID alone, in its hyphenated lowercase form. A client names a job by
/// a [`JobRef`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    key: i64,
    uuid: uuid::Uuid,
}

impl JobId {
    /// The id of the job the store keeps under `key` with `uuid`: for [`JobStore`]
    /// implementations, which read both from their rows.
    pub fn new(key: i64, uuid: uuid::Uuid) -> JobId {
        JobId { key, uuid }
    }

    /// A new job's id: the store's `key` for it and a [`JobId::fresh_uuid`] of `now`.
    pub fn generate(key: i64, now: i64) -> JobId {
        JobId { key, uuid: JobId::fresh_uuid(now) }
    }

    /// A fresh UUID v7 of the moment `now` (milliseconds since the Unix epoch): the time,
    /// then 74 random bits. For a store drawing a new job's UUID before its key is known.
    pub fn fresh_uuid(now: i64) -> uuid::Uuid {
        let now = u64::try_from(now).unwrap_or(0);
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, now / 1000, (now % 1000) as u32 * 1_000_000);
        uuid::Uuid::new_v7(ts)
    }

    /// The store's number for the job (its row). Not shown to clients, but for the jobs
    /// created before ids were UUIDs, whose number stays their alias ([`JobRef::Number`]).
    pub fn key(self) -> i64 {
        self.key
    }

    /// The job's UUID, what clients see.
    pub fn uuid(self) -> uuid::Uuid {
        self.uuid
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uuid.hyphenated().fmt(f)
    }
}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.uuid.hyphenated())
    }
}

/// How a client names a job: its UUID, or, for a job created before ids were UUIDs, the
/// number it had then (kept as an alias by the migration that added UUIDs; jobs created
/// since have none, so their ids cannot be guessed by counting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobRef {
    /// A job's UUID.
    Uuid(uuid::Uuid),
    /// The number of a job created before ids were UUIDs.
    Number(i64),
}

impl FromStr for JobRef {
    type Err = JobRefError;

    /// A UUID in any of its usual forms (hyphenated or not, any case, braces, `urn:uuid:`),
    /// or a decimal number.
    fn from_str(s: &str) -> Result<JobRef, JobRefError> {
        let s = s.trim();
        if !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().map(JobRef::Number).map_err(|_| JobRefError(s.to_string()));
        }
        uuid::Uuid::parse_str(s).map(JobRef::Uuid).map_err(|_| JobRefError(s.chars().take(64).collect()))
    }
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobRef::Uuid(u) => u.hyphenated().fmt(f),
            JobRef::Number(n) => n.fmt(f),
        }
    }
}

impl From<JobId> for JobRef {
    fn from(id: JobId) -> JobRef {
        JobRef::Uuid(id.uuid)
    }
}

/// A job reference that is neither a UUID nor a number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a job id (a UUID such as 0190a5c2-7c1e-7d3a-9f1e-2b3c4d5e6f70, or the number of a job created before ids were UUIDs)")]
pub struct JobRefError(String);

/// Where a job is in its life.
///
/// Two spellings: clients see lowercase names (`queued`, `running`, ... in JSON, through
/// serde, and `Display`: [`JobState::as_api_str`]), as the API documents they were written
/// from show them; the stores keep the uppercase ones every database has held since the
/// first (`QUEUED`, ...: [`JobState::as_str`]). [`JobState::parse`] reads either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    #[serde(alias = "QUEUED")]
    Queued,
    /// A worker is analysing it.
    #[serde(alias = "RUNNING")]
    Running,
    /// Done; its sessions are stored.
    #[serde(alias = "COMPLETED")]
    Completed,
    /// Stopped by an error (the job's `error` says which).
    #[serde(alias = "FAILED")]
    Failed,
    /// Stopped by a user.
    #[serde(alias = "CANCELLED")]
    Cancelled,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 5] =
        [JobState::Queued, JobState::Running, JobState::Completed, JobState::Failed, JobState::Cancelled];

    /// The name the stores keep (`QUEUED`, `RUNNING`, ...); clients are shown
    /// [`JobState::as_api_str`].
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Running => "RUNNING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
        }
    }

    /// The name clients are shown, in JSON (serde), `Display` and the API (`queued`,
    /// `running`, `completed`, `failed`, `cancelled`).
    pub fn as_api_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state named `name` in either spelling, whatever its case (`completed`,
    /// `COMPLETED`, `Completed`): the stores' and the API's names, and what users type in
    /// filters.
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// True for COMPLETED, FAILED and CANCELLED: the job will not change again.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed | JobState::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_api_str())
    }
}

/// What a user asks for: a capture to analyse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    /// What clients are shown of it: state, progress, counts, times. Its fields read as
    /// the job's own (`job.state`).
    #[serde(flatten)]
    pub status: JobStatus,
    /// The capture file (a live job: the directory of the files it keeps).
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

/// Opens the job store `[storage] database` names: the PostgreSQL server of a
/// `postgres://` URL (at most `database_pool` connections), else the SQLite file.
pub fn open_store(storage: &StorageSettings) -> Result<Arc<dyn JobStore>, StoreError> {
    Ok(match storage.database() {
        Database::Postgres(url) => Arc::new(PgStore::connect(&url, storage.database_pool)?),
        Database::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
    })
}

/// The job store `[storage] database` names, for messages: the SQLite file's path, or
/// the URL without its password.
pub fn store_name(storage: &StorageSettings) -> String {
    match storage.database() {
        Database::Postgres(url) => callflow_config::redact_url(&url),
        Database::Sqlite(path) => path.display().to_string(),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_are_lowercase_for_clients_uppercase_in_the_store_and_parsed_in_either_case() {
        for state in JobState::ALL {
            let (api, stored) = (state.as_api_str(), state.as_str());
            assert_eq!((api.to_ascii_lowercase().as_str(), stored), (api, api.to_ascii_uppercase().as_str()));
            assert_eq!(serde_json::to_value(state).unwrap(), api, "serde writes the API's spelling");
            assert_eq!(state.to_string(), api, "Display is the API's spelling");
            let title = format!("{}{}", api[..1].to_ascii_uppercase(), &api[1..]);
            for name in [api, stored, &title] {
                assert_eq!(JobState::parse(name), Some(state), "{name}");
            }
            for name in [api, stored] {
                assert_eq!(serde_json::from_value::<JobState>(name.into()).unwrap(), state, "serde reads {name}");
            }
        }
        assert_eq!(JobState::parse("done"), None);
    }
}
