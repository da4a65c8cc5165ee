//! The in-process event bus: every job's state changes, progress, sessions and statistics, for any number of subscribers.
//!
//! Publishing never waits for a subscriber: each subscriber has its own bounded queue, and
//! a publisher only takes that queue's lock for a push. When a queue is full, the oldest
//! progress event in it is dropped (then, if there is none, the oldest session or stats
//! event); state changes are never dropped, so a queue can exceed its bound by at most the
//! state changes it holds. A subscriber learns how many events it lost from
//! [`Subscription::dropped`] and can re-read what it missed from the store.

use crate::live::LiveStats;
use crate::store::Progress;
use crate::{Job, JobId};
use callflow_model::{Session, SourceInfo, Stats};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// Something that happened to a job.
#[derive(Clone, Debug)]
pub enum Event {
    /// The job changed state (submitted, started, finished); the job as stored afterwards.
    /// Never dropped.
    State(Arc<Job>),
    /// A running job got further.
    Progress {
        /// The job.
        job: JobId,
        /// How far.
        progress: Progress,
    },
    /// A running job completed a session (already stored).
    Session {
        /// The job.
        job: JobId,
        /// The session.
        session: Arc<Session>,
    },
    /// A job's capture statistics, published when it completes, before its final state.
    Stats {
        /// The job.
        job: JobId,
        /// The capture as read.
        source: Arc<SourceInfo>,
        /// Packet and protocol counts.
        stats: Arc<Stats>,
    },
    /// A running live job's counters, every `live.stats_interval`.
    Live {
        /// The job.
        job: JobId,
        /// Its counters.
        stats: LiveStats,
    },
    /// Something a running live job's source wants users to know (a remote stream lost
    /// and reconnecting, say).
    Notice {
        /// The job.
        job: JobId,
        /// What happened, for a person to read.
        message: Arc<str>,
    },
    /// A finished job was deleted (by a user or by retention). Never dropped.
    Deleted(JobId),
}

impl Event {
    /// The job the event is about.
    pub fn job(&self) -> JobId {
        match self {
            Event::State(job) => job.id,
            Event::Progress { job, .. }
            | Event::Session { job, .. }
            | Event::Stats { job, .. }
            | Event::Live { job, .. }
            | Event::Notice { job, .. } => *job,
            Event::Deleted(job) => *job,
        }
    }

    /// 0 for progress, 1 for sessions and stats, `None` for events never dropped.
    fn drop_rank(&self) -> Option<u8> {
        match self {
            Event::Progress { .. } => Some(0),
            Event::Live { .. } => Some(0),
            Event::Session { .. } | Event::Stats { .. } | Event::Notice { .. } => Some(1),
            Event::State(_) | Event::Deleted(_) => None,
        }
    }
}

struct Queue {
    events: VecDeque<Event>,
    dropped: u64,
}

struct Slot {
    queue: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, event: Event) {
        let mut q = self.lock();
        if q.events.len() >= self.capacity {
            // Lose the oldest of the least valuable kind; a state change is never lost.
            let victim =
                [0u8, 1].into_iter().find_map(|rank| q.events.iter().position(|e| e.drop_rank() == Some(rank)));
            match (victim, event.drop_rank()) {
                (Some(i), _) => {
                    q.events.remove(i);
                    q.dropped += 1;
                }
                (None, Some(_)) => {
                    // Only state changes are queued: this event is the one to lose.
                    q.dropped += 1;
                    return;
                }
                (None, None) => {}
            }
        }
        q.events.push_back(event);
        drop(q);
        self.ready.notify_one();
    }
}

/// Fans events out to subscribers. Cheap to clone; all clones are the same bus.
#[derive(Clone)]
pub struct EventBus {
    subscribers: Arc<RwLock<Vec<Weak<Slot>>>>,
    capacity: usize,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl EventBus {
    /// A bus whose subscribers each buffer `capacity` events (at least 1).
    pub fn new(capacity: usize) -> EventBus {
        EventBus { subscribers: Arc::default(), capacity: capacity.max(1) }
    }

    /// Follows every event published from now on.
    pub fn subscribe(&self) -> Subscription {
        let slot = Arc::new(Slot {
            queue: Mutex::new(Queue { events: VecDeque::new(), dropped: 0 }),
            ready: Condvar::new(),
            capacity: self.capacity,
        });
        let mut subs = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.strong_count() > 0);
        subs.push(Arc::downgrade(&slot));
        Subscription { slot }
    }

    /// Hands `event` to every subscriber; never blocks on a slow one.
    pub fn publish(&self, event: Event) {
        let subs = self.subscribers.read().unwrap_or_else(|e| e.into_inner());
        for slot in subs.iter().filter_map(Weak::upgrade) {
            slot.push(event.clone());
        }
    }

    /// Subscribers currently following the bus.
    pub fn subscribers(&self) -> usize {
        self.subscribers.read().unwrap_or_else(|e| e.into_inner()).iter().filter(|s| s.strong_count() > 0).count()
    }
}

/// One subscriber's view of the bus; dropping it unsubscribes.
pub struct Subscription {
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("pending", &self.pending()).finish()
    }
}

impl Subscription {
    /// The next event, if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.slot.lock().events.pop_front()
    }

    /// The next event, waiting at most `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let mut q = self.slot.lock();
        loop {
            if let Some(event) = q.events.pop_front() {
                return Some(event);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            q = self.slot.ready.wait_timeout(q, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Events waiting to be received.
    pub fn pending(&self) -> usize {
        self.slot.lock().events.len()
    }

    /// Events this subscriber lost because it fell behind.
    pub fn dropped(&self) -> u64 {
        self.slot.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Job `key`'s id (a UUID made of the key: the tests only need them distinct).
    fn id(key: i64) -> JobId {
        JobId::new(key, uuid::Uuid::from_u128(key as u128))
    }

    fn progress(job: i64, packets: u64) -> Event {
        Event::Progress { job: id(job), progress: Progress { packets, ..Progress::default() } }
    }

    fn deleted(job: i64) -> Event {
        Event::Deleted(id(job))
    }

    fn describe(sub: &Subscription) -> Vec<String> {
        std::iter::from_fn(|| sub.try_recv())
            .map(|e| match e {
                Event::Progress { job, progress } => format!("progress {} {}", job.key(), progress.packets),
                Event::Deleted(job) => format!("deleted {}", job.key()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_subscriber_gets_every_event_in_order() {
        let bus = EventBus::new(8);
        let (a, b) = (bus.subscribe(), bus.subscribe());
        bus.publish(progress(1, 10));
        bus.publish(deleted(1));
        for sub in [&a, &b] {
            assert_eq!(describe(sub), ["progress 1 10", "deleted 1"]);
        }
        drop(b);
        assert_eq!(bus.subscribers(), 1);
    }

    #[test]
    fn a_full_queue_loses_old_progress_never_state_changes() {
        let bus = EventBus::new(3);
        let sub = bus.subscribe();
        bus.publish(progress(1, 1));
        bus.publish(deleted(1));
        bus.publish(progress(1, 2));
        bus.publish(deleted(2)); // full: progress 1 goes
        bus.publish(deleted(3)); // full: progress 2 goes
        bus.publish(deleted(4)); // only state changes: kept beyond the bound
        bus.publish(progress(1, 3)); // nothing droppable queued: this one is lost
        assert_eq!(sub.dropped(), 3);
        assert_eq!(describe(&sub), ["deleted 1", "deleted 2", "deleted 3", "deleted 4"]);
    }

    #[test]
    fn recv_timeout_wakes_on_publish() {
        let bus = EventBus::new(4);
        let sub = bus.subscribe();
        let publisher = bus.clone();
        let t = std::thread::spawn(move || publisher.publish(deleted(7)));
        assert_eq!(sub.recv_timeout(Duration::from_secs(10)).map(|e| e.job()), Some(id(7)));
        t.join().unwrap();
        assert!(sub.recv_timeout(Duration::from_millis(1)).is_none());
    }
}
