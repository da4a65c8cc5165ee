//! The [`JobStore`] trait: the narrow interface between the job manager and wherever jobs and sessions are kept.
//!
//! It is shaped so that a shared PostgreSQL store can implement it for several nodes
//! without changing the manager: the only way a job starts running is
//! [`JobStore::claim_next`], an atomic "take the oldest queued job" that maps to
//! `SELECT ... FOR UPDATE SKIP LOCKED`; every other transition is conditional on the
//! state the caller expects, so two nodes can never both finish or both cancel a job.
//! Nodes register in the store and heartbeat through it (the trait's last block), and a
//! store serves the node registered on it: its claims record that node, and a run's
//! writes are refused once the job has been taken over by another.

use crate::eventlog::{EventIds, EventListener, EventWake, NewEvent, StoredEvent};
use crate::{Job, JobId, JobRef, JobState, NewJob};
use callflow_model::{CallState, Problem, Session, SessionKind, SourceInfo, Stats, Subscriber, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed (disk full, locked too long, unreachable, corrupt
    /// file...). The backend's own error is the source; `kind` is what callers act on.
    #[error("job store: {source}")]
    Database {
        /// What sort of failure, whatever the backend.
        kind: DatabaseErrorKind,
        /// The backend's error (SQLite's, PostgreSQL's, the pool's).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database was written by a newer callflowd, with migrations this one lacks.
    #[error("job store: database schema version {found} is newer than this build knows ({known}); upgrade callflowd")]
    SchemaTooNew {
        /// The version in the database.
        found: i64,
        /// The newest version this build has.
        known: i64,
    },
    /// The database's address or settings cannot be used (a malformed URL, an unknown
    /// `sslmode`, a root certificate file that cannot be read).
    #[error("job store: {0}")]
    Config(String),
    /// A stored document could not be read back (written by an incompatible version?).
    #[error("job store: stored document of job {job} cannot be read: {message}")]
    Corrupt {
        /// The job it belongs to.
        job: JobId,
        /// The decoder's message.
        message: String,
    },
    /// The database cannot take writes: its file was deleted or replaced under the open
    /// store (whatever is written then is lost), or can no longer be opened for writing.
    #[error("job store: the database {path} cannot be written: {reason}")]
    Unwritable {
        /// The database file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The store cannot do this at all (a store written before live jobs existed).
    #[error("job store: {0} is not supported by this store")]
    Unsupported(&'static str),
    /// The database file or its directory cannot be created.
    #[error("job store: cannot create {path}: {source}")]
    Create {
        /// What could not be created.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What sort of database failure a [`StoreError::Database`] is, the same for every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseErrorKind {
    /// The database's disk is full (SQLite `SQLITE_FULL`, PostgreSQL `53100 disk_full`).
    DiskFull,
    /// Another writer held the database for too long (SQLite `SQLITE_BUSY`/`LOCKED`).
    Busy,
    /// The database server cannot be reached, or closed the connection (PostgreSQL down,
    /// restarting, the pool's wait for a connection timed out).
    Unavailable,
    /// A statement broke a constraint (an id given twice).
    Constraint,
    /// Anything else.
    Other,
}

impl StoreError {
    /// A database failure of `kind`, keeping the backend's error as the source.
    pub fn database(kind: DatabaseErrorKind, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Database { kind, source: source.into() }
    }

    /// True when the database could not be written because its disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Database { kind: DatabaseErrorKind::DiskFull, .. })
    }

    /// True when the database server could not be reached or dropped the connection (a
    /// restart, connections cut): the failure says nothing about the job being written.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Database { kind: DatabaseErrorKind::Unavailable, .. })
    }
}

/// How far a running job has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// 0-100 by bytes consumed; never goes down within one run.
    pub percent: u8,
    /// Packets analysed so far.
    pub packets: u64,
    /// Bytes of the capture consumed so far.
    pub bytes: u64,
    /// Sessions completed so far.
    pub sessions: u64,
}

/// How a run ended, for [`JobStore::finish`].
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// COMPLETED, FAILED or CANCELLED.
    pub state: JobState,
    /// The last progress.
    pub progress: Progress,
    /// Why it failed.
    pub error: Option<String>,
    /// The capture as read (completed jobs).
    pub source: Option<SourceInfo>,
    /// Packet and protocol counts (completed jobs).
    pub stats: Option<Stats>,
    /// The document's subscriber view (completed jobs).
    pub subscribers: Option<Vec<Subscriber>>,
}

/// What [`JobStore::recover`] found after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Jobs that were RUNNING and are QUEUED again, to be re-run from the start.
    pub rerun: Vec<JobId>,
    /// Jobs that were RUNNING and are now FAILED "interrupted" (`resume_interrupted = false`).
    pub interrupted: Vec<JobId>,
    /// Jobs that were RUNNING and are now FAILED as given up: their runs were interrupted
    /// `max_attempts` times.
    pub gave_up: Vec<JobId>,
    /// Every job now QUEUED, oldest first (the re-run ones included).
    pub queued: Vec<JobId>,
}

/// Which jobs to list, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Skip this many.
    pub offset: u64,
    /// At most this many (0: no limit).
    pub limit: u64,
}

/// A position in a job's session list, for keyset paging: the next page starts after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCursor {
    /// The last session's start, in nanoseconds.
    pub start_ns: i64,
    /// The last session's row number in the store.
    pub row: i64,
}

impl fmt::Display for SessionCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.start_ns, self.row)
    }
}

impl FromStr for SessionCursor {
    type Err = String;
    fn from_str(s: &str) -> Result<SessionCursor, String> {
        let (start, row) = s.split_once(':').ok_or_else(|| format!("bad cursor `{s}`"))?;
        Ok(SessionCursor {
            start_ns: start.parse().map_err(|_| format!("bad cursor `{s}`"))?,
            row: row.parse().map_err(|_| format!("bad cursor `{s}`"))?,
        })
    }
}

/// What a session list is ordered by, before the tie-break on arrival.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Start time (the default, and the only order keyset paging follows).
    #[default]
    Start,
    /// Duration, first message or packet to last.
    Duration,
    /// From URI.
    From,
    /// To URI.
    To,
    /// Call state.
    State,
    /// Number of messages.
    Messages,
}

/// A session list's order: a key, ascending or descending (`-duration`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionSort {
    /// What is compared.
    pub key: SortKey,
    /// Largest first.
    pub descending: bool,
}

impl SessionSort {
    /// The names [`SessionSort::from_str`] takes, each also with a leading `-`.
    pub const NAMES: [&'static str; 6] = ["start", "duration", "from", "to", "state", "messages"];

    /// True for the default order (start, ascending), the one cursors page through.
    pub fn is_default(&self) -> bool {
        *self == SessionSort::default()
    }
}

impl FromStr for SessionSort {
    type Err = String;
    fn from_str(s: &str) -> Result<SessionSort, String> {
        let (descending, name) = match s.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, s),
        };
        let key = match name {
            "start" => SortKey::Start,
            "duration" => SortKey::Duration,
            "from" => SortKey::From,
            "to" => SortKey::To,
            "state" => SortKey::State,
            "messages" => SortKey::Messages,
            _ => {
                return Err(format!(
                    "unknown sort `{s}` ({}, each with a leading - for descending)",
                    SessionSort::NAMES.join(", ")
                ))
            }
        };
        Ok(SessionSort { key, descending })
    }
}

/// Which sessions of a job to list, ordered by [`SessionQuery::sort`] (start time by
/// default), then arrival.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionQuery {
    /// Only this kind.
    pub kind: Option<SessionKind>,
    /// Only this call state.
    pub state: Option<CallState>,
    /// Only this Call-ID.
    pub call_id: Option<String>,
    /// Only this From URI.
    pub from: Option<String>,
    /// Only this To URI.
    pub to: Option<String>,
    /// Only sessions whose Call-ID, From or To contains this text.
    pub text: Option<String>,
    /// Only sessions with a problem (`Some(true)`: a flagged problem, an anomaly or a
    /// failed call), or only those without one (`Some(false)`).
    pub problem: Option<bool>,
    /// Only sessions flagged with this problem (on the session or one of its streams).
    pub problem_kind: Option<Problem>,
    /// Start after this position (keyset paging; cheaper than `offset` for deep pages).
    pub after: Option<SessionCursor>,
    /// Skip this many.
    pub offset: u64,
    /// At most this many (0: no limit).
    pub limit: u64,
    /// Include the full session documents.
    pub documents: bool,
    /// The order; [`SessionQuery::after`] applies to the default one only.
    pub sort: SessionSort,
}

/// One stored session: its indexed summary, and its document when asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    /// Where it is in the list; pass as `after` for the next page.
    pub cursor: SessionCursor,
    /// The session's stable id.
    pub id: String,
    /// Its kind.
    pub kind: SessionKind,
    /// Its SIP Call-ID.
    pub call_id: String,
    /// From URI.
    pub from: String,
    /// To URI.
    pub to: String,
    /// Its state.
    pub state: CallState,
    /// First message or packet.
    pub start: Timestamp,
    /// Last message or packet.
    pub end: Timestamp,
    /// SIP messages.
    pub messages: u32,
    /// Media streams.
    pub media: u32,
    /// The full session, when [`SessionQuery::documents`] asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Session>,
}

/// A node as it registers in the store: what `GET /api/v1/nodes` lists of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its name, unique among the store's nodes (`cluster.node_name`).
    pub name: String,
    /// Where its API is reached (`cluster.advertise_url`).
    pub advertise_url: String,
    /// The callflowd version it runs.
    pub version: String,
    /// Its worker threads.
    pub workers: u32,
    /// When it started (milliseconds since the epoch).
    pub started_at: i64,
}

/// A registered node, with its last heartbeat and the jobs it runs now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRow {
    /// What it registered.
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Its last heartbeat (milliseconds since the epoch).
    pub last_seen: i64,
    /// Jobs RUNNING on it.
    pub running: u64,
}

/// One of this node's RUNNING jobs as a heartbeat finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnJob {
    /// The job.
    pub id: JobId,
    /// Its start count: a run of an earlier attempt is superseded.
    pub attempts: u32,
    /// A cancel was asked for, on any node.
    pub cancel: bool,
}

/// What [`JobStore::take_over_lost`] did with the jobs of lost nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Takeover {
    /// Put back in the queue, to run again from the start.
    pub requeued: Vec<JobId>,
    /// FAILED: started `max_attempts` times, or live (their source was the lost node's).
    pub failed: Vec<JobId>,
    /// CANCELLED: a cancel had been asked for when their node was lost.
    pub cancelled: Vec<JobId>,
    /// The nodes whose jobs these were.
    pub lost: Vec<String>,
}

/// Where jobs and their sessions are kept. Every method is one atomic step; the ones that
/// change a job's state do so only from the state named in their documentation and
/// return `None` (or `false`) when the job was not in it.
pub trait JobStore: Send + Sync {
    /// Adds a QUEUED job, with the id [`NewJob::id`] names (one from
    /// [`JobStore::reserve_id`]) or else the next one.
    fn create_job(&self, new: &NewJob, now: i64) -> Result<Job, StoreError>;
    /// Adds a live job, RUNNING from the start (no worker claims it: the manager runs it on
    /// a thread of its own), with `live` describing its source (JSON, opaque to the store).
    /// A live job keeps its sessions whatever its end, and after a restart it is FAILED as
    /// interrupted, keeping them, since its traffic cannot be read again. The default
    /// refuses: a store must record which jobs are live for those rules.
    fn create_live(&self, new: &NewJob, live: &str, now: i64) -> Result<Job, StoreError> {
        let _ = (new, live, now);
        Err(StoreError::Unsupported("a live job"))
    }
    /// Reserves an id for a job created later: no job has it, and neither `create_job`
    /// nor another reservation will hand it out, even after a restart. A reservation that
    /// is never used is a gap in the ids and nothing else (PostgreSQL: `nextval`).
    fn reserve_id(&self) -> Result<JobId, StoreError>;
    /// The largest key ([`JobId::key`]) this store has handed out, created or reserved (0:
    /// none), so that a file named after a key can be told to be this store's. The
    /// default claims none, which makes such files never provably this store's.
    fn last_key(&self) -> Result<i64, StoreError> {
        Ok(0)
    }
    /// The job a client names ([`JobRef`]): the one with that UUID, or the job created
    /// before ids were UUIDs that had that number. `None`: no such job.
    fn resolve(&self, by: JobRef) -> Result<Option<JobId>, StoreError>;
    /// The job the store keeps under `key` ([`JobId::key`]: upload files are named after
    /// it), whether or not clients may name it by that number.
    fn job_by_key(&self, key: i64) -> Result<Option<JobId>, StoreError>;
    /// Takes the oldest QUEUED job and makes it RUNNING (attempts + 1, progress reset,
    /// sessions of an earlier run deleted), or `None` when nothing is queued.
    fn claim_next(&self, now: i64) -> Result<Option<Job>, StoreError>;
    /// Records a RUNNING job's progress.
    fn record_progress(&self, id: JobId, progress: &Progress) -> Result<(), StoreError>;
    /// Stores sessions of a RUNNING job.
    fn add_sessions(&self, id: JobId, sessions: &[Arc<Session>]) -> Result<(), StoreError>;
    /// RUNNING -> `outcome.state`. A job that did not complete keeps no sessions.
    fn finish(&self, id: JobId, outcome: &Outcome, now: i64) -> Result<Option<Job>, StoreError>;
    /// QUEUED -> CANCELLED.
    fn cancel_queued(&self, id: JobId, now: i64) -> Result<Option<Job>, StoreError>;
    /// One job.
    fn job(&self, id: JobId) -> Result<Option<Job>, StoreError>;
    /// Jobs, newest first.
    fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError>;
    /// How many jobs are in each state (states without jobs left out). The default reads
    /// every job; a store that can count should.
    fn count_jobs(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        let mut counts: Vec<(JobState, u64)> = Vec::new();
        for job in self.jobs(&JobQuery { limit: 0, ..JobQuery::default() })? {
            match counts.iter_mut().find(|(s, _)| *s == job.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((job.state, 1)),
            }
        }
        Ok(counts)
    }
    /// A page of a job's sessions.
    fn sessions(&self, id: JobId, query: &SessionQuery) -> Result<Vec<SessionRow>, StoreError>;
    /// How many sessions match the query's filters (paging ignored).
    fn count_sessions(&self, id: JobId, query: &SessionQuery) -> Result<u64, StoreError>;
    /// One session by its id.
    fn session(&self, id: JobId, session_id: &str) -> Result<Option<Session>, StoreError>;
    /// A completed job's subscriber view (the document's `subscribers`); `None` when the
    /// job has none recorded: not completed, or completed by a build that did not keep
    /// them. The default keeps none.
    fn subscribers(&self, id: JobId) -> Result<Option<Vec<Subscriber>>, StoreError> {
        let _ = id;
        Ok(None)
    }
    /// A session by its id alone, with its job. Session ids are unique across jobs (the
    /// analysis scopes them by the job's UUID), but for jobs analysed before they were:
    /// then the newest job's.
    fn find_session(&self, session_id: &str) -> Result<Option<(JobId, Session)>, StoreError>;
    /// The jobs that have a session with this id, oldest first, at most `limit`: one, but
    /// for jobs analysed before session ids were scoped by their job (two jobs of the same
    /// capture then shared them), and for embedders whose [`Analysis`](crate::Analysis)
    /// does not scope them. The default asks every job; a store with an index should use it.
    fn session_jobs(&self, session_id: &str, limit: usize) -> Result<Vec<JobId>, StoreError> {
        let mut jobs = self.jobs(&JobQuery { limit: 0, ..JobQuery::default() })?;
        jobs.reverse();
        let mut found = Vec::new();
        for job in jobs {
            if found.len() < limit && self.session(job.id, session_id)?.is_some() {
                found.push(job.id);
            }
        }
        Ok(found)
    }
    /// Deletes a finished job and its sessions; `false` when it is not finished or not there.
    fn delete_finished(&self, id: JobId) -> Result<bool, StoreError>;
    /// Finished jobs that completed before `cutoff`, for the retention sweeper.
    fn finished_before(&self, cutoff: i64) -> Result<Vec<Job>, StoreError>;
    /// Checks that a change written now would be kept: the database is still the one
    /// opened and takes a write. Cheap enough for every health check and upload. The
    /// default trusts the store.
    fn check_writable(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// After a restart: RUNNING jobs become QUEUED (`resume`) or FAILED "interrupted";
    /// those already started `max_attempts` times become FAILED, with the reason, instead
    /// of QUEUED.
    fn recover(&self, resume: bool, max_attempts: u32, now: i64) -> Result<Recovery, StoreError>;

    // The event log (`crate::eventlog`): job events with store-assigned ids, so that a
    // client resumes on any node. The defaults keep none (a store for tests); the server
    // then numbers events itself, per process.

    /// Logs `events` in their order, at `now` (milliseconds since the Unix epoch), and
    /// returns their ids: larger than every id handed out before, across every process on
    /// the store, and in the order the events are committed.
    fn append_events(&self, events: &[NewEvent], now: i64) -> Result<Vec<u64>, StoreError> {
        let _ = (events, now);
        Err(StoreError::Unsupported("an event log"))
    }
    /// Up to `limit` logged events with an id above `after`, oldest first; only `job`'s
    /// when given.
    fn events_after(&self, after: u64, job: Option<JobId>, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let _ = (after, job, limit);
        Err(StoreError::Unsupported("an event log"))
    }
    /// The newest id handed out and the oldest one kept.
    fn event_ids(&self) -> Result<EventIds, StoreError> {
        Err(StoreError::Unsupported("an event log"))
    }
    /// Removes the events logged before `before` (milliseconds since the Unix epoch), and
    /// all but about the newest `keep` (ids may have gaps); returns how many went.
    fn prune_events(&self, before: i64, keep: u64) -> Result<u64, StoreError> {
        let _ = (before, keep);
        Ok(0)
    }
    /// Calls `wake` whenever another process may have logged events (see
    /// [`EventWake`]) until the returned listener is dropped; `None` when no other process
    /// writes to this store (SQLite), so that there is nothing to listen for.
    fn listen_events(&self, wake: EventWake) -> Result<Option<EventListener>, StoreError> {
        let _ = wake;
        Ok(None)
    }

    // Nodes. A store serves one node: once `register_node` has named it, the store's
    // claims and live jobs record that node, `recover` takes only that node's jobs (and
    // those of no node) where the store is shared, and a run's writes (progress,
    // sessions, its end) are taken only while the job is still that node's. The defaults
    // are a store without nodes.

    /// Registers this store's node (again, after a restart), seen at `now`.
    fn register_node(&self, node: &NodeInfo, now: i64) -> Result<(), StoreError> {
        let _ = (node, now);
        Ok(())
    }
    /// Says the registered node is alive at `now`, and returns its RUNNING jobs with
    /// whether a cancel was asked for each. The default (no nodes) refuses, so that the
    /// manager judges none of its runs by it.
    fn heartbeat(&self, now: i64) -> Result<Vec<OwnJob>, StoreError> {
        let _ = now;
        Err(StoreError::Unsupported("a node's heartbeat"))
    }
    /// Every node registered, by name.
    fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        Ok(Vec::new())
    }
    /// Takes over the RUNNING jobs of the nodes (other than this one) last seen before
    /// `silent_since`: each is QUEUED again with its sessions deleted, or FAILED with the
    /// lost nodes named once started `max_attempts` times, or, live, FAILED as
    /// interrupted with its sessions kept, or CANCELLED when a cancel was asked for.
    fn take_over_lost(&self, silent_since: i64, max_attempts: u32, now: i64) -> Result<Takeover, StoreError> {
        let _ = (silent_since, max_attempts, now);
        Ok(Takeover::default())
    }
    /// Asks whichever node runs job `id` to cancel it (its heartbeat reads the flag);
    /// `false` when the job is not RUNNING.
    fn request_cancel(&self, id: JobId) -> Result<bool, StoreError> {
        let _ = id;
        Ok(false)
    }
    /// Hands back jobs this node stopped running before their end (a drain at SIGTERM):
    /// QUEUED again with their sessions deleted, the start not counted; returns those
    /// handed back. The default leaves them RUNNING, for the next start to recover.
    fn hand_back(&self, ids: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        let _ = ids;
        Ok(Vec::new())
    }
    /// Takes the sweeper's lock if no node holds it: the retention sweep runs on one node
    /// at a time. The default (one node) always has it.
    fn lock_sweeper(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Lets the sweeper's lock go.
    fn unlock_sweeper(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The cluster's id: made (random) and stored the first time it is asked for, the
    /// same for every node of the store from then on. Written into the shared directories
    /// too (`crate::volume`), so that a node pointed at another cluster's files refuses to
    /// start. The default has none.
    fn cluster_id(&self) -> Result<String, StoreError> {
        Err(StoreError::Unsupported("a cluster id"))
    }
    /// Whether other processes run jobs from this store too (nodes on one PostgreSQL):
    /// then jobs may be queued, cancelled or finished by others, so the manager asks
    /// the store rather than its memory.
    fn is_shared(&self) -> bool {
        false
    }

    /// Where login tokens are shared between the nodes on this store (see
    /// [`crate::tokens`]); `None`, the default, for a store that keeps none (tokens then
    /// live in one process's memory).
    fn tokens(&self) -> Option<&dyn crate::tokens::TokenStore> {
        None
    }
}
