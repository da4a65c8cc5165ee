//! [`JobStatus`] and the status board: the manager's in-memory copy of each job's status, so that reading one touches no store.
//!
//! The manager writes every change to the store first and then, before publishing it,
//! to the board: the job the store returned after a transition, and each progress it
//! recorded. So the board says what the store says, and a status read (an HTTP client
//! polling a job) is a lock and a hash lookup instead of a database query.
//!
//! Jobs the manager has not changed since it started (finished jobs after a restart) are
//! not on the board until read once from the store ([`Board::fill`]). That read races
//! with the manager's own changes, so it is only kept when no board write happened while
//! it was going on: the board counts its writes, and a read that saw another count is
//! answered but not kept, the next read trying again.

use crate::store::Progress;
use crate::{Job, JobId, JobState};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// What clients are shown of a job: its [`Job`] without the capture's path and without
/// the source and statistics documents, which a status does not show (but for whether
/// the capture was read whole, and its warnings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    /// Its identifier.
    pub id: JobId,
    /// How it is shown to users.
    pub label: String,
    /// Where it is.
    pub state: JobState,
    /// When it was submitted (milliseconds since the Unix epoch).
    pub created_at: i64,
    /// When a worker last started it.
    pub started_at: Option<i64>,
    /// When it finished.
    pub completed_at: Option<i64>,
    /// 0-100, by bytes of the capture consumed; 100 only once completed.
    pub progress: u8,
    /// Packets analysed.
    pub packets: u64,
    /// Bytes of the capture consumed.
    pub bytes: u64,
    /// Sessions stored.
    pub sessions: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// How many times a worker started it.
    pub attempts: u32,
    /// Once completed: whether the whole capture was read (false: it was truncated or
    /// damaged, and the sessions cover the part before that point). `None` before.
    pub complete: Option<bool>,
    /// Once completed: the capture's warnings (why reading stopped early, and the like).
    pub warnings: Vec<String>,
    /// A live job's source as the embedder described it (JSON text); `None` for a capture file.
    pub live: Option<String>,
    /// The node running it, or that last ran it (`None`: never started, or started
    /// before nodes were recorded).
    pub node: Option<String>,
}

impl From<&Job> for JobStatus {
    fn from(job: &Job) -> JobStatus {
        job.status.clone()
    }
}

/// How many resolved ids [`Board::remember`] keeps.
const RESOLVED: usize = 4096;

#[derive(Default)]
struct Inner {
    jobs: HashMap<JobId, Arc<JobStatus>>,
    /// The ids of `jobs` by UUID, which is how clients name them.
    uuids: HashMap<uuid::Uuid, JobId>,
    /// UUIDs the store resolved for jobs not on the board (another node's, say), at most
    /// `RESOLVED` of them. A UUID names one job for as long as it exists and keys are never
    /// reused, so an entry is stale only for a deleted job, which every later read finds
    /// gone.
    resolved: HashMap<uuid::Uuid, JobId>,
    /// Board writes so far, for [`Board::fill`] to tell whether one happened during its read.
    writes: u64,
}

/// The status of every job the manager changed since it started, or read once; see the
/// module documentation.
#[derive(Default)]
pub(crate) struct Board {
    inner: RwLock<Inner>,
}

impl Board {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Every write below leaves the map consistent, even if a panic cut it short.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.writes += 1;
        inner
    }

    /// The job's status, if the board has it.
    pub(crate) fn get(&self, id: JobId) -> Option<Arc<JobStatus>> {
        self.read().jobs.get(&id).cloned()
    }

    /// The id of the job with this UUID, if the board has it or remembers it.
    pub(crate) fn find(&self, uuid: uuid::Uuid) -> Option<JobId> {
        let inner = self.read();
        inner.uuids.get(&uuid).or_else(|| inner.resolved.get(&uuid)).copied()
    }

    /// Remembers a job id the store resolved, so that the next request naming it asks no
    /// store (a page of another node's job, polled). Forgets them all once `RESOLVED` are
    /// kept: cheaper than an order of use, and the store answers again.
    pub(crate) fn remember(&self, id: JobId) {
        // Not a board write: it changes no status, so `fill` need not retry for it.
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.resolved.len() >= RESOLVED {
            inner.resolved.clear();
        }
        inner.resolved.insert(id.uuid(), id);
    }

    /// `job` as the store returned it after a transition.
    pub(crate) fn set(&self, job: &Job) {
        let status = Arc::new(JobStatus::from(job));
        let mut inner = self.write();
        inner.jobs.insert(job.id, status);
        inner.uuids.insert(job.id.uuid(), job.id);
    }

    /// A RUNNING job's progress, as [`crate::JobStore::record_progress`] stored it (which
    /// changes RUNNING jobs only, hence the same condition here).
    pub(crate) fn progress(&self, id: JobId, p: &Progress) {
        let mut inner = self.write();
        if let Some(status) = inner.jobs.get_mut(&id).filter(|s| s.state == JobState::Running) {
            let status = Arc::make_mut(status);
            status.progress = p.percent;
            status.packets = p.packets;
            status.bytes = p.bytes;
            status.sessions = p.sessions;
        }
    }

    /// Forgets the job: deleted, or the store's answer is no longer known (reads go to the
    /// store until it is on the board again).
    pub(crate) fn remove(&self, id: JobId) {
        let mut inner = self.write();
        inner.jobs.remove(&id);
        inner.uuids.remove(&id.uuid());
        inner.resolved.remove(&id.uuid());
    }

    /// The count of board writes, taken before reading a job from the store for [`Board::fill`].
    pub(crate) fn writes(&self) -> u64 {
        self.read().writes
    }

    /// Keeps `job`, read from the store after [`Board::writes`] returned `writes`, unless
    /// the board was written since (the read may be older than that write) or already has it.
    pub(crate) fn fill(&self, job: &Job, writes: u64) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.writes == writes {
            inner.jobs.entry(job.id).or_insert_with(|| Arc::new(JobStatus::from(job)));
            inner.uuids.insert(job.id.uuid(), job.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: i64) -> JobId {
        JobId::new(key, uuid::Uuid::from_u128(key as u128))
    }

    fn job(key: i64, state: JobState) -> Job {
        Job {
            status: JobStatus {
                id: id(key),
                label: "x.pcap".into(),
                state,
                created_at: 1,
                started_at: None,
                completed_at: None,
                progress: 0,
                packets: 0,
                bytes: 0,
                sessions: 0,
                error: None,
                attempts: 0,
                complete: None,
                warnings: Vec::new(),
                live: None,
                node: None,
            },
            input: "x.pcap".into(),
            owns_input: false,
            source: None,
            stats: None,
        }
    }

    #[test]
    fn a_store_read_older_than_a_board_write_is_not_kept() {
        let board = Board::default();
        let writes = board.writes();
        // The job is deleted while its (finished) row is being read from the store.
        board.remove(id(1));
        board.fill(&job(1, JobState::Completed), writes);
        assert_eq!(board.get(id(1)), None, "a deleted job must not come back");
        board.fill(&job(1, JobState::Completed), board.writes());
        assert_eq!(board.get(id(1)).map(|s| s.state), Some(JobState::Completed));
        assert_eq!(board.find(id(1).uuid()), Some(id(1)), "found by the UUID clients name it by");
        board.remove(id(1));
        assert_eq!(board.find(id(1).uuid()), None);
        board.remember(id(2));
        assert_eq!(board.find(id(2).uuid()), Some(id(2)), "resolved by the store once, then from memory");
        assert_eq!(board.get(id(2)), None, "a remembered id is no status");
        board.remove(id(2));
        assert_eq!(board.find(id(2).uuid()), None, "deleted here: forgotten");
        for key in 10..10 + RESOLVED as i64 + 1 {
            board.remember(id(key));
        }
        assert!(board.read().resolved.len() <= RESOLVED, "bounded");
    }

    #[test]
    fn progress_changes_running_jobs_only() {
        let board = Board::default();
        board.set(&job(1, JobState::Running));
        board.set(&job(2, JobState::Completed));
        let p = Progress { percent: 40, packets: 7, bytes: 900, sessions: 2 };
        board.progress(id(1), &p);
        board.progress(id(2), &p);
        board.progress(id(3), &p);
        let one = board.get(id(1)).unwrap();
        assert_eq!((one.progress, one.packets, one.bytes, one.sessions), (40, 7, 900, 2));
        assert_eq!(*board.get(id(2)).unwrap(), JobStatus::from(&job(2, JobState::Completed)));
        assert_eq!(board.get(id(3)), None);
    }
}
