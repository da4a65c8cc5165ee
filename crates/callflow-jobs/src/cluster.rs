//! This node among the nodes of one store: its registration, its heartbeat, and taking over the jobs of nodes that fell silent.
//!
//! A manager registers its node ([`NodeOptions`]) in the store before it recovers its
//! jobs, so that recovery on a shared store takes only this node's. A heartbeat thread
//! then ticks every second on a shared store (every `lease / 3` on an embedded one, which
//! has no other node) and at each tick:
//!
//! - renews the node's `last_seen`, which is the lease of every job it runs, and reads
//!   back its RUNNING jobs: a job a cancel was asked for on another node is stopped (so
//!   within a second, wherever the cancel came in), and a job this process runs that the
//!   store no longer gives to this node (it was taken over while this node was silent:
//!   paused, or cut off from the database) is stopped without recording anything, its
//!   writes being refused by the store anyway;
//! - on a shared store, wakes idle workers, since jobs queued on another node send no
//!   token here (a claim that finds nothing costs one indexed query);
//! - on a shared store, takes over the jobs of the nodes silent for a whole lease
//!   ([`JobStore::take_over_lost`], one indexed query when there are none), publishing what
//!   it changed: a lost node's jobs run again about a lease (and at most a second) after
//!   its last heartbeat.

use crate::events::Event;
use crate::manager::{lock, Shared, SUPERSEDED};
use crate::store::{JobStore, NodeInfo, NodeRow};
use crate::{now_millis, JobId};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// This node's name and address as registered, and the lease rules it follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOptions {
    /// Its name, unique among the store's nodes (`cluster.node_name`).
    pub name: String,
    /// Where its API is reached (`cluster.advertise_url`).
    pub advertise_url: String,
    /// A node silent this long is lost; heartbeats come at least every third of it.
    pub lease: Duration,
    /// A job whose node was lost runs again until started this many times.
    pub max_attempts: u32,
}

impl NodeOptions {
    /// How often the heartbeat thread ticks: every second on a shared store (cancels and
    /// jobs queued elsewhere are seen within it), never less often than `lease / 3`.
    pub(crate) fn tick(&self, shared_store: bool) -> Duration {
        let third = (self.lease / 3).max(Duration::from_millis(100));
        if shared_store {
            third.min(Duration::from_secs(1))
        } else {
            third
        }
    }
}

/// A node as `GET /api/v1/nodes` shows it: what the store has, and whether it is alive
/// (seen within the lease).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The store's row.
    #[serde(flatten)]
    pub row: NodeRow,
    /// Seen within the lease.
    pub alive: bool,
}

/// On a shared store, refuses a name another live process uses: a node of that name seen
/// within the lease is watched for two heartbeats, and one that beats again is not this
/// node's previous life (a crash, a restart) but another process, whose jobs this node's
/// recovery would take from under it. One node (SQLite) is kept unique by its directory lock.
pub(crate) fn check_name_free(store: &dyn JobStore, opts: &NodeOptions) -> Result<(), crate::JobError> {
    if !store.is_shared() {
        return Ok(());
    }
    let seen = |store: &dyn JobStore| -> Result<Option<i64>, crate::StoreError> {
        Ok(store.nodes()?.into_iter().find(|n| n.info.name == opts.name).map(|n| n.last_seen))
    };
    let Some(before) = seen(store)? else { return Ok(()) };
    if before < now_millis().saturating_sub(opts.lease.as_millis() as i64) {
        return Ok(());
    }
    std::thread::sleep(opts.tick(true) * 2 + Duration::from_millis(500));
    match seen(store)? {
        Some(after) if after > before => Err(crate::JobError::NodeNameInUse { name: opts.name.clone() }),
        _ => Ok(()),
    }
}

/// What registers for `opts` in `store`, started at `started_at`.
pub(crate) fn node_info(opts: &NodeOptions, workers: usize, started_at: i64) -> NodeInfo {
    NodeInfo {
        name: opts.name.clone(),
        advertise_url: opts.advertise_url.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        workers: workers.min(u32::MAX as usize) as u32,
        started_at,
    }
}

/// Every node of `store`, alive when seen within `lease` of `now`.
pub(crate) fn nodes(store: &dyn JobStore, lease: Duration, now: i64) -> Result<Vec<NodeState>, crate::StoreError> {
    let silent_since = now.saturating_sub(lease.as_millis() as i64);
    Ok(store.nodes()?.into_iter().map(|row| NodeState { alive: row.last_seen >= silent_since, row }).collect())
}

/// The heartbeat thread's work at each tick.
pub(crate) struct Heartbeat {
    /// This node's RUNNING jobs in the store that no thread here runs, as the last tick
    /// found them: handed back when the next tick finds them again (one tick may see a
    /// run that has just recorded its end).
    orphans: HashSet<JobId>,
}

impl Heartbeat {
    pub(crate) fn new() -> Heartbeat {
        Heartbeat { orphans: HashSet::new() }
    }

    /// One tick; a store that fails is tried again at the next one (meanwhile the node
    /// may be taken for lost, and its runs found superseded when it is back).
    pub(crate) fn tick(&mut self, shared: &Shared) {
        let store = shared.store();
        let shared_store = store.is_shared();
        // Jobs running here before the heartbeat reads the store: a job claimed after
        // that read started is not judged by it.
        let before: Vec<(JobId, Arc<std::sync::atomic::AtomicU8>)> =
            lock(&shared.running).iter().map(|(id, flag)| (*id, flag.clone())).collect();
        if let Ok(own) = store.heartbeat(now_millis()) {
            let own_ids: HashSet<JobId> = own.iter().map(|j| j.id).collect();
            for job in own.iter().filter(|j| j.cancel) {
                if let Some((_, flag)) = before.iter().find(|(id, _)| *id == job.id) {
                    let _ = flag.compare_exchange(
                        crate::manager::RUN,
                        crate::manager::CANCEL,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
            for (id, flag) in &before {
                if !own_ids.contains(id) {
                    let _ =
                        flag.compare_exchange(crate::manager::RUN, SUPERSEDED, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
            if shared_store {
                self.hand_back_orphans(shared, &own_ids);
            }
        }
        if !shared_store {
            return;
        }
        let node = &shared.opts.node;
        let now = now_millis();
        let silent_since = now.saturating_sub(node.lease.as_millis() as i64);
        if let Ok(takeover) = store.take_over_lost(silent_since, node.max_attempts, now) {
            let changed = takeover.requeued.iter().chain(&takeover.failed).chain(&takeover.cancelled);
            for id in changed {
                if let Ok(Some(job)) = store.job(*id) {
                    shared.bus.publish(Event::State(Arc::new(job)));
                }
            }
        }
        shared.wake_idle_workers();
    }

    /// Hands back this node's RUNNING jobs that no thread here runs: runs the store failed
    /// under (see `run_job`), which another node could not take over, since this node
    /// heartbeats. A claim puts its job in `running` under the same lock, so a job the
    /// heartbeat read as claimed is there by the time the lock is taken.
    fn hand_back_orphans(&mut self, shared: &Shared, own: &HashSet<JobId>) {
        let orphans: HashSet<JobId> = {
            let running = lock(&shared.running);
            let unrecorded = lock(&shared.unrecorded);
            own.iter().filter(|id| !running.contains_key(id) && !unrecorded.contains_key(id)).copied().collect()
        };
        let mut confirmed: Vec<JobId> = orphans.intersection(&self.orphans).copied().collect();
        self.orphans = orphans;
        if confirmed.is_empty() {
            return;
        }
        confirmed.sort();
        let store = shared.store();
        if let Ok(handed) = store.hand_back(&confirmed) {
            for id in handed {
                self.orphans.remove(&id);
                if let Ok(Some(job)) = store.job(id) {
                    shared.board.set(&job);
                    shared.bus.publish(Event::State(Arc::new(job)));
                }
            }
        }
    }
}
