//! The event hub: turns the job manager's events into numbered JSON messages, fans them out to WebSocket and SSE clients, and keeps a per-job ring for SSE replay.
//!
//! One thread drains the manager's [`Subscription`] (a blocking queue) and hands the
//! events waiting there to [`Hub::publish_all`], which never waits for a client: every
//! client has its own bounded queue, and is woken once per batch. A full queue first
//! coalesces progress (the newest progress of a job replaces the queued one), then drops
//! queued session/stats messages; when a state change would have to be dropped the client
//! is marked overflowed and its connection is closed (WebSocket 1013), since silently
//! losing a state change would leave it wrong.
//!
//! Every message carries its number (`id`) and the time it was published (`ts`, seconds
//! since the Unix epoch like `callflow/v1` timestamps), from which a client can tell how
//! late it is (the fan-out benchmark, `examples/fanout.rs`, measures that).

use callflow_jobs::{Event, Job, JobId, JobStatus, Subscription};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// What a message is, for the queue's drop policy and the SSE `event:` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A job changed state. Never dropped.
    Status,
    /// A running job got further. Coalesced.
    Progress,
    /// A session completed.
    Session,
    /// A job's capture statistics (at its end), or a live job's counters (every few seconds).
    Stats,
    /// Something a live job's source wants users to know (a stream lost, reconnected).
    Notice,
    /// A job was deleted. Never dropped.
    Deleted,
}

impl Kind {
    /// The `type` of the JSON message.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::Progress => "progress",
            Kind::Session => "session",
            Kind::Stats => "stats",
            Kind::Notice => "notice",
            Kind::Deleted => "deleted",
        }
    }
}

/// One message, numbered in publication order (the SSE event id).
#[derive(Clone, Debug)]
pub struct Message {
    /// Its number, increasing across all jobs.
    pub id: u64,
    /// What it is.
    pub kind: Kind,
    /// The job it is about.
    pub job: JobId,
    /// The JSON text sent to clients, shared by all of them (cloning it copies nothing).
    pub json: axum::extract::ws::Utf8Bytes,
}

/// Now, in seconds since the Unix epoch (microsecond precision in an `f64`).
pub fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Milliseconds since the epoch (the store's unit) as seconds, the API's unit for every
/// time, as for `callflow/v1` timestamps.
pub fn seconds(millis: i64) -> f64 {
    millis as f64 / 1e3
}

/// A job as clients see it (status endpoint, `full_state`, `status` messages); the
/// OpenAPI document's `Job` schema describes it.
pub fn job_json(job: &Job) -> Value {
    status_json(&JobStatus::from(job))
}

/// [`job_json`] of a job's status: the same JSON, whether the status came from the job
/// manager's memory or from the store.
pub fn status_json(job: &JobStatus) -> Value {
    json!({
        "job_id": job.id,
        "name": job.label,
        "status": job.state,
        "progress": job.progress,
        "packets": job.packets,
        "bytes": job.bytes,
        "session_count": job.sessions,
        "created_at": seconds(job.created_at),
        "started_at": job.started_at.map(seconds),
        "completed_at": job.completed_at.map(seconds),
        "error": job.error,
        "attempts": job.attempts,
        "node": job.node,
        "complete": job.complete,
        "warnings": job.warnings,
        "live": job.live.as_deref().and_then(|l| serde_json::from_str::<Value>(l).ok()),
    })
}

fn message_json(event: &Event) -> (Kind, Value) {
    match event {
        Event::State(job) => (Kind::Status, json!({"type": "status", "job_id": job.id, "job": job_json(job)})),
        Event::Progress { job, progress } => (
            Kind::Progress,
            json!({"type": "progress", "job_id": job, "progress": progress.percent, "packets": progress.packets,
                   "bytes": progress.bytes, "sessions": progress.sessions}),
        ),
        Event::Session { job, session } => (
            Kind::Session,
            json!({"type": "session", "job_id": job, "session": {
                "id": session.id, "kind": session.kind, "call_id": session.call_id, "from": session.from,
                "to": session.to, "state": session.state, "start": session.start, "end": session.end,
                "messages": session.messages.len(), "media": session.media.len()}}),
        ),
        Event::Stats { job, source, stats } => {
            (Kind::Stats, json!({"type": "stats", "job_id": job, "source": &**source, "stats": &**stats}))
        }
        Event::Live { job, stats } => (Kind::Stats, json!({"type": "stats", "job_id": job, "live": stats})),
        Event::Notice { job, message } => {
            (Kind::Notice, json!({"type": "notice", "job_id": job, "message": &**message}))
        }
        Event::Deleted(job) => (Kind::Deleted, json!({"type": "deleted", "job_id": job})),
    }
}

/// One client's bounded queue.
pub struct ClientQueue {
    filter: Option<JobId>,
    capacity: usize,
    queue: Mutex<VecDeque<Message>>,
    overflowed: AtomicBool,
    /// Woken on every push and on shutdown.
    pub notify: Notify,
}

impl ClientQueue {
    /// Queues `msg` if the client follows its job; true when the client must be woken (a
    /// message queued or replaced, or the queue overflowed).
    fn queue(&self, msg: &Message) -> bool {
        if self.filter.is_some_and(|j| j != msg.job) {
            return false;
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.capacity {
            if msg.kind == Kind::Progress {
                // Coalesce: the newest progress of a job makes its queued one worthless.
                if let Some(old) = q.iter_mut().find(|m| m.kind == Kind::Progress && m.job == msg.job) {
                    *old = msg.clone();
                    return true;
                }
            }
            let victim = [Kind::Progress, Kind::Stats, Kind::Session, Kind::Notice]
                .into_iter()
                .find_map(|k| q.iter().position(|m| m.kind == k));
            match (victim, msg.kind) {
                (Some(i), _) => {
                    q.remove(i);
                }
                (None, Kind::Progress | Kind::Session | Kind::Stats | Kind::Notice) => return false,
                (None, Kind::Status | Kind::Deleted) => {
                    // Only state changes are queued: this one would be lost.
                    self.overflowed.store(true, Ordering::SeqCst);
                    return true;
                }
            }
        }
        q.push_back(msg.clone());
        true
    }

    /// Everything queued, in order.
    pub fn drain(&self) -> Vec<Message> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect()
    }

    /// True once a state change could not be queued: the client must be disconnected.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::SeqCst)
    }
}

/// Most events the pump thread takes from the job manager before queueing them.
const PUMP_BATCH: usize = 64;

/// Fans job events out to clients; see the module documentation.
pub struct Hub {
    seq: AtomicU64,
    clients: Mutex<Vec<Weak<ClientQueue>>>,
    rings: Mutex<HashMap<JobId, VecDeque<Message>>>,
    ring_capacity: usize,
    queue_capacity: usize,
    stopping: AtomicBool,
    /// Woken once when the server shuts down, for long-lived connections to close.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

impl Hub {
    /// A hub whose clients queue `queue_capacity` messages and whose jobs keep
    /// `ring_capacity` messages for replay.
    pub fn new(queue_capacity: usize, ring_capacity: usize) -> Arc<Hub> {
        Arc::new(Hub {
            seq: AtomicU64::new(0),
            clients: Mutex::default(),
            rings: Mutex::default(),
            ring_capacity: ring_capacity.max(1),
            queue_capacity: queue_capacity.max(1),
            stopping: AtomicBool::new(false),
            shutdown: tokio::sync::watch::channel(false).0,
        })
    }

    /// Drains `sub` on a thread of its own until [`Hub::stop`]; `on_event` sees each
    /// event first (for metrics).
    pub fn pump(self: &Arc<Hub>, sub: Subscription, on_event: impl Fn(&Event) + Send + 'static) {
        let hub = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("callflow-events".into())
            .spawn(move || loop {
                let event = sub.recv_timeout(Duration::from_millis(200));
                let Some(hub) = hub.upgrade() else { return };
                if hub.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Some(first) = event else { continue };
                // Events come in bursts (a job's session, statistics and completion): the
                // ones already waiting are queued together, and each client woken once.
                let mut events = vec![first];
                while events.len() < PUMP_BATCH {
                    let Some(event) = sub.try_recv() else { break };
                    events.push(event);
                }
                events.iter().for_each(&on_event);
                hub.publish_all(&events);
            })
            .expect("spawn the event thread");
    }

    /// Numbers `event`, keeps it for replay, and queues it for every client.
    pub fn publish(&self, event: &Event) {
        self.publish_all(std::slice::from_ref(event));
    }

    /// [`Hub::publish`] of several events, in order, waking each client once.
    pub fn publish_all(&self, events: &[Event]) {
        let messages: Vec<Message> = events
            .iter()
            .map(|event| {
                let (kind, mut value) = message_json(event);
                let id = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
                value["id"] = json!(id);
                value["ts"] = json!(now_seconds());
                Message { id, kind, job: event.job(), json: value.to_string().into() }
            })
            .collect();
        {
            let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
            for msg in &messages {
                if msg.kind == Kind::Deleted {
                    rings.remove(&msg.job);
                } else {
                    let ring = rings.entry(msg.job).or_default();
                    if ring.len() >= self.ring_capacity {
                        ring.pop_front();
                    }
                    ring.push_back(msg.clone());
                }
            }
        }
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|c| c.strong_count() > 0);
        for client in clients.iter().filter_map(Weak::upgrade) {
            let mut wake = false;
            for msg in &messages {
                wake |= client.queue(msg);
            }
            if wake {
                client.notify.notify_one();
            }
        }
    }

    /// A new client following one job (`Some`) or all of them.
    pub fn subscribe(&self, filter: Option<JobId>) -> Arc<ClientQueue> {
        let client = Arc::new(ClientQueue {
            filter,
            capacity: self.queue_capacity,
            queue: Mutex::default(),
            overflowed: AtomicBool::new(false),
            notify: Notify::new(),
        });
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(&client));
        client
    }

    /// The messages of `job` kept for replay that came after `after`.
    pub fn replay(&self, job: JobId, after: u64) -> Vec<Message> {
        let rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        rings.get(&job).map(|r| r.iter().filter(|m| m.id > after).cloned().collect()).unwrap_or_default()
    }

    /// Stops the pump thread and tells long-lived connections to close.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callflow_jobs::Progress;

    fn progress(job: i64, percent: u8) -> Event {
        Event::Progress { job: JobId(job), progress: Progress { percent, ..Progress::default() } }
    }

    fn describe(client: &ClientQueue) -> Vec<String> {
        client
            .drain()
            .iter()
            .map(|m| {
                let v: Value = serde_json::from_str(&m.json).unwrap();
                match m.kind {
                    Kind::Progress => format!("progress {} {}", m.job, v["progress"]),
                    k => format!("{} {}", k.name(), m.job),
                }
            })
            .collect()
    }

    #[test]
    fn a_full_queue_coalesces_progress_then_overflows_on_state_changes() {
        let hub = Hub::new(2, 8);
        let client = hub.subscribe(None);
        hub.publish(&progress(1, 10));
        hub.publish(&Event::Deleted(JobId(9)));
        hub.publish(&progress(1, 20)); // full: replaces progress 10
        assert_eq!(describe(&client), ["progress 1 20", "deleted 9"]);
        hub.publish(&Event::Deleted(JobId(7)));
        hub.publish(&Event::Deleted(JobId(8)));
        assert!(!client.overflowed());
        hub.publish(&Event::Deleted(JobId(6))); // only state changes queued: lost
        assert!(client.overflowed());
    }

    #[test]
    fn a_message_carries_its_number_and_when_it_was_published() {
        let hub = Hub::new(8, 8);
        let client = hub.subscribe(None);
        let before = now_seconds();
        hub.publish(&progress(1, 10));
        let v: Value = serde_json::from_str(&client.drain()[0].json).unwrap();
        let ts = v["ts"].as_f64().unwrap();
        assert!(v["id"] == 1 && ts >= before && ts <= now_seconds(), "{v}");
    }

    #[test]
    fn events_published_together_are_queued_in_order_and_numbered_in_order() {
        let hub = Hub::new(8, 8);
        let (all, other) = (hub.subscribe(None), hub.subscribe(Some(JobId(2))));
        hub.publish_all(&[progress(1, 10), Event::Deleted(JobId(3)), progress(1, 20)]);
        assert_eq!(describe(&all), ["progress 1 10", "deleted 3", "progress 1 20"]);
        assert!(other.drain().is_empty());
        let ids: Vec<u64> = hub.replay(JobId(1), 0).iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 3]);
    }

    #[test]
    fn a_job_filter_and_the_replay_ring() {
        let hub = Hub::new(8, 2);
        let one = hub.subscribe(Some(JobId(1)));
        for p in [1, 2, 3] {
            hub.publish(&progress(1, p));
            hub.publish(&progress(2, p));
        }
        assert_eq!(describe(&one), ["progress 1 1", "progress 1 2", "progress 1 3"]);
        let ids: Vec<u64> = hub.replay(JobId(1), 0).iter().map(|m| m.id).collect();
        assert_eq!(ids, [3, 5], "the ring keeps the last two, numbered across jobs");
        assert_eq!(hub.replay(JobId(1), 3).len(), 1);
        hub.publish(&Event::Deleted(JobId(1)));
        assert!(hub.replay(JobId(1), 0).is_empty());
    }
}
