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
//!
//! # Ids from the store, and events from other nodes
//!
//! The pump thread appends each batch to the store's event log (`JobStore::append_events`)
//! before queueing it, and the message's `id` is the one the store handed out: increasing
//! across every node of the store and across restarts, so that `Last-Event-ID` (SSE) and
//! `?last_event_id=` (WebSocket) resume on any node, from the log when the job's ring
//! does not reach back far enough. Every event is logged, progress included (coalesced:
//! of a job's progress events waiting together, only the newest is kept), since a client on
//! another node follows a job only through the log. The pump also prunes the log
//! (`websocket.event_log_retention`, `event_log_max`) once a minute. A store without an
//! event log (a test's) leaves the numbering to the hub, per process.
//!
//! The hub remembers the last id it queued (`last`) and queues in id order only: on a store
//! other processes write to (PostgreSQL), its listener (`JobStore::listen_events`) names the
//! newest id each commit holds, and the catch-up thread reads the log after `last` when the
//! id is newer than it (an own batch, already queued, costs no read), and reads it whole
//! from `last` after the listener reconnects, so nothing is lost or sent twice. Appends are
//! serialised by the store, so an id seen committed means every smaller one is. On SQLite
//! (one process) the pump queues what it appended without reading anything back.
//!
//! The log's order is the order in which the nodes' pumps appended, which for one node is
//! the order its manager published in. Across nodes it is so for each job as long as one
//! node publishes its events; a job submitted on one node and claimed at once by another
//! could have its `running` logged before its `queued` (the two pumps a few milliseconds
//! apart). Logging a state change in the transaction that makes it would close that, at the
//! price of the store's every transition knowing the event format.

use callflow_jobs::{Event, Job, JobId, JobStatus, JobStore, NewEvent, StoreError, StoredEvent, Subscription};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// What a message is, for the queue's drop policy and the SSE `event:` field.
pub use callflow_jobs::EventKind as Kind;

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

impl Message {
    /// A message read back from the store's event log.
    pub fn stored(event: &StoredEvent) -> Message {
        Message { id: event.id, kind: event.kind, job: event.job, json: with_id(&event.payload, event.id) }
    }
}

/// A logged payload (a JSON object without its id) with `"id": id` added as its last member.
fn with_id(payload: &str, id: u64) -> axum::extract::ws::Utf8Bytes {
    match payload.trim_end().strip_suffix('}') {
        Some(open) if open.trim_end().ends_with('{') => format!("{open}\"id\":{id}}}").into(),
        Some(open) => format!("{open},\"id\":{id}}}").into(),
        // Not an object (never written by the hub): sent as it is.
        None => payload.to_string().into(),
    }
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

/// What the pump logs of `events`: each event's JSON (with `ts`, without `id`); with
/// `coalesce`, of a job's progress events in the batch only the newest.
fn logged_events(events: &[Event], coalesce: bool) -> Vec<NewEvent> {
    let mut newest_progress = HashSet::new();
    let mut keep: Vec<bool> = events
        .iter()
        .rev()
        .map(|e| !(coalesce && matches!(e, Event::Progress { job, .. } if !newest_progress.insert(*job))))
        .collect();
    keep.reverse();
    let ts = now_seconds();
    events
        .iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|(event, _)| {
            let (kind, mut value) = message_json(event);
            value["ts"] = json!(ts);
            NewEvent { job: event.job(), kind, payload: value.to_string() }
        })
        .collect()
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

/// How the pump keeps the store's event log.
#[derive(Clone, Copy, Debug)]
pub struct LogLimits {
    /// Events older than this are removed.
    pub retention: Duration,
    /// At most about this many are kept.
    pub max_events: u64,
}

/// How often the pump prunes the event log.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Events read from the log at a time when catching up.
const CATCH_UP_PAGE: usize = 500;
/// The pause before a failed append or read of the log is tried again.
const LOG_RETRY: Duration = Duration::from_millis(200);

/// Fans job events out to clients; see the module documentation.
pub struct Hub {
    /// The id of the last message queued: messages are queued in id order only.
    last: Mutex<u64>,
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
            last: Mutex::new(0),
            clients: Mutex::default(),
            rings: Mutex::default(),
            ring_capacity: ring_capacity.max(1),
            queue_capacity: queue_capacity.max(1),
            stopping: AtomicBool::new(false),
            shutdown: tokio::sync::watch::channel(false).0,
        })
    }

    fn last(&self) -> MutexGuard<'_, u64> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Drains `sub` on a thread of its own until [`Hub::stop`], logging every event in
    /// `store` (see the module documentation); `on_event` sees each event first (for
    /// metrics). When the store has other writers, a second thread queues theirs.
    pub fn pump(
        self: &Arc<Hub>,
        sub: Subscription,
        store: Arc<dyn JobStore>,
        limits: LogLimits,
        on_event: impl Fn(&Event) + Send + 'static,
    ) {
        let hub = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("callflow-events".into())
            .spawn(move || {
                // Where the log is, before anything is queued: messages continue from there.
                let logged = loop {
                    let Some(hub) = hub.upgrade().filter(|h| !h.stopping()) else { return };
                    match store.event_ids() {
                        Ok(ids) => {
                            *hub.last() = ids.newest;
                            break true;
                        }
                        Err(StoreError::Unsupported(_)) => break false,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read the event log; trying again");
                            std::thread::sleep(LOG_RETRY);
                        }
                    }
                };
                let listener = match logged {
                    true => Hub::listen(&hub, &store),
                    false => false,
                };
                let mut pruned = Instant::now();
                loop {
                    let event = sub.recv_timeout(Duration::from_millis(200));
                    let Some(hub) = hub.upgrade() else { return };
                    if hub.stopping() {
                        return;
                    }
                    if logged && pruned.elapsed() >= PRUNE_EVERY {
                        pruned = Instant::now();
                        let before = callflow_jobs::now_millis() - limits.retention.as_millis() as i64;
                        if let Err(e) = store.prune_events(before, limits.max_events) {
                            tracing::warn!(error = %e, "cannot prune the event log");
                        }
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
                    if !logged {
                        hub.publish_all(&events);
                        continue;
                    }
                    let new = logged_events(&events, true);
                    // Tried again until the store takes them (said once per outage): the
                    // events wait, the bus dropping progress first if it fills.
                    let mut failing = false;
                    let ids = loop {
                        match store.append_events(&new, callflow_jobs::now_millis()) {
                            Ok(ids) => break ids,
                            Err(e) => {
                                if !std::mem::replace(&mut failing, true) {
                                    tracing::warn!(error = %e, "cannot log events; trying again");
                                }
                                std::thread::sleep(LOG_RETRY);
                                if hub.stopping() {
                                    return;
                                }
                            }
                        }
                    };
                    if failing {
                        tracing::info!("events are logged again");
                    }
                    hub.queue_own(&*store, listener, &new, &ids);
                }
            })
            .expect("spawn the event thread");
    }

    /// Starts the store's listener and the thread that queues what other processes log;
    /// false when the store has no other writers.
    fn listen(hub: &Weak<Hub>, store: &Arc<dyn JobStore>) -> bool {
        let (tx, rx) = std::sync::mpsc::channel::<Option<u64>>();
        let wake: callflow_jobs::EventWake = Arc::new(move |id| {
            let _ = tx.send(id);
        });
        let listener = match store.listen_events(wake) {
            Ok(Some(listener)) => listener,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other nodes' events");
                return false;
            }
        };
        let (hub, store) = (hub.clone(), store.clone());
        std::thread::Builder::new()
            .name("callflow-events-in".into())
            .spawn(move || {
                let _listener = listener;
                // Read the whole log after `last` (a reconnection, or a read that failed).
                let mut from_last = false;
                loop {
                    let woken = rx.recv_timeout(Duration::from_millis(200));
                    let Some(hub) = hub.upgrade() else { return };
                    if hub.stopping() {
                        return;
                    }
                    if woken == Err(std::sync::mpsc::RecvTimeoutError::Disconnected) {
                        // The listener is gone (its store's runtime stopped): nothing will
                        // come, but the hub may still be asked to stop.
                        std::thread::sleep(LOG_RETRY);
                        continue;
                    }
                    let mut newest = 0;
                    for wake in woken.into_iter().chain(rx.try_iter()) {
                        match wake {
                            Some(id) => newest = newest.max(id),
                            None => from_last = true,
                        }
                    }
                    let mut last = hub.last();
                    if !from_last && newest <= *last {
                        // Nothing this hub has not queued (its own batches, typically).
                        continue;
                    }
                    from_last = hub.catch_up(&*store, &mut last).is_err();
                    if from_last {
                        drop(last);
                        std::thread::sleep(LOG_RETRY);
                    }
                }
            })
            .expect("spawn the event catch-up thread");
        true
    }

    /// Queues the events logged after `last`, in order, until the log has no more.
    fn catch_up(&self, store: &dyn JobStore, last: &mut u64) -> Result<(), StoreError> {
        loop {
            let page = store.events_after(*last, None, CATCH_UP_PAGE)?;
            let messages: Vec<Message> = page.iter().map(Message::stored).collect();
            if let Some(m) = messages.last() {
                *last = m.id;
            }
            self.fan_out(&messages);
            if page.len() < CATCH_UP_PAGE {
                return Ok(());
            }
        }
    }

    /// Queues this process's events, logged with `ids`; on a store with other writers, the
    /// ones logged before them that are not queued yet first.
    fn queue_own(&self, store: &dyn JobStore, listening: bool, events: &[NewEvent], ids: &[u64]) {
        let mut last = self.last();
        if listening && ids.first().is_some_and(|&first| first > *last + 1) {
            // Another node's events came first (or an append rolled back, leaving a gap).
            let mut failing = false;
            while let Err(e) = self.catch_up(store, &mut last) {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "cannot read the event log; trying again");
                }
                if self.stopping() {
                    return;
                }
                std::thread::sleep(LOG_RETRY);
            }
        }
        let messages: Vec<Message> = events
            .iter()
            .zip(ids)
            .filter(|(_, &id)| id > *last)
            .map(|(e, &id)| Message { id, kind: e.kind, job: e.job, json: with_id(&e.payload, id) })
            .collect();
        if let Some(m) = messages.last() {
            *last = m.id;
        }
        self.fan_out(&messages);
    }

    /// Numbers `event` itself, keeps it for replay, and queues it for every client.
    pub fn publish(&self, event: &Event) {
        self.publish_all(std::slice::from_ref(event));
    }

    /// [`Hub::publish`] of several events, in order, waking each client once: numbered by
    /// the hub, for a store without an event log.
    pub fn publish_all(&self, events: &[Event]) {
        let mut last = self.last();
        let messages: Vec<Message> = logged_events(events, false)
            .iter()
            .map(|e| {
                *last += 1;
                Message { id: *last, kind: e.kind, job: e.job, json: with_id(&e.payload, *last) }
            })
            .collect();
        self.fan_out(&messages);
    }

    /// Keeps `messages` for replay and queues them for every client, waking each once.
    fn fan_out(&self, messages: &[Message]) {
        if messages.is_empty() {
            return;
        }
        {
            let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
            for msg in messages {
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
            for msg in messages {
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

    /// Every message of `job` after `after`, from the ring, when the ring reaches back that
    /// far (its oldest message is at or before `after`); `None`: read the event log.
    pub fn replay_from_ring(&self, job: JobId, after: u64) -> Option<Vec<Message>> {
        let rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        let ring = rings.get(&job)?;
        ring.front().filter(|m| m.id <= after)?;
        Some(ring.iter().filter(|m| m.id > after).cloned().collect())
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

    /// Job `key`'s id (its UUID made of the key: tests only need them distinct).
    fn id(key: i64) -> JobId {
        JobId::new(key, callflow_jobs::Uuid::from_u128(key as u128))
    }

    fn progress(job: i64, percent: u8) -> Event {
        Event::Progress { job: id(job), progress: Progress { percent, ..Progress::default() } }
    }

    fn describe(client: &ClientQueue) -> Vec<String> {
        client
            .drain()
            .iter()
            .map(|m| {
                let v: Value = serde_json::from_str(&m.json).unwrap();
                match m.kind {
                    Kind::Progress => format!("progress {} {}", m.job.key(), v["progress"]),
                    k => format!("{} {}", k.as_str(), m.job.key()),
                }
            })
            .collect()
    }

    #[test]
    fn a_full_queue_coalesces_progress_then_overflows_on_state_changes() {
        let hub = Hub::new(2, 8);
        let client = hub.subscribe(None);
        hub.publish(&progress(1, 10));
        hub.publish(&Event::Deleted(id(9)));
        hub.publish(&progress(1, 20)); // full: replaces progress 10
        assert_eq!(describe(&client), ["progress 1 20", "deleted 9"]);
        hub.publish(&Event::Deleted(id(7)));
        hub.publish(&Event::Deleted(id(8)));
        assert!(!client.overflowed());
        hub.publish(&Event::Deleted(id(6))); // only state changes queued: lost
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
        let (all, other) = (hub.subscribe(None), hub.subscribe(Some(id(2))));
        hub.publish_all(&[progress(1, 10), Event::Deleted(id(3)), progress(1, 20)]);
        assert_eq!(describe(&all), ["progress 1 10", "deleted 3", "progress 1 20"]);
        assert!(other.drain().is_empty());
        let ids: Vec<u64> = hub.replay(id(1), 0).iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 3]);
    }

    #[test]
    fn the_pump_logs_only_the_newest_progress_of_a_job_in_a_batch_and_every_other_event() {
        let batch = [progress(1, 10), progress(2, 10), Event::Deleted(id(3)), progress(1, 20), progress(2, 30)];
        let logged: Vec<String> = logged_events(&batch, true)
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_str(&e.payload).unwrap();
                assert!(v["ts"].is_f64() && v.get("id").is_none(), "{v}");
                assert_eq!(v["job_id"], e.job.to_string(), "the payload names the job by its UUID");
                format!("{} {} {}", e.kind.as_str(), e.job.key(), v["progress"])
            })
            .collect();
        assert_eq!(logged, ["deleted 3 null", "progress 1 20", "progress 2 30"]);
        assert_eq!(logged_events(&batch, false).len(), 5, "the hub's own numbering keeps them all");
    }

    #[test]
    fn a_logged_payload_gets_its_id_as_its_last_member() {
        assert_eq!(
            with_id(r#"{"type":"deleted","job_id":3}"#, 42).as_str(),
            r#"{"type":"deleted","job_id":3,"id":42}"#
        );
        assert_eq!(with_id("{}", 1).as_str(), r#"{"id":1}"#);
        let stored =
            StoredEvent { id: 7, job: id(2), kind: Kind::Status, logged_at: 0, payload: r#"{"type":"status"}"#.into() };
        let m = Message::stored(&stored);
        assert_eq!((m.id, m.kind, m.job, m.json.as_str()), (7, Kind::Status, id(2), r#"{"type":"status","id":7}"#));
    }

    #[test]
    fn a_job_filter_and_the_replay_ring() {
        let hub = Hub::new(8, 2);
        let one = hub.subscribe(Some(id(1)));
        for p in [1, 2, 3] {
            hub.publish(&progress(1, p));
            hub.publish(&progress(2, p));
        }
        assert_eq!(describe(&one), ["progress 1 1", "progress 1 2", "progress 1 3"]);
        let ids: Vec<u64> = hub.replay(id(1), 0).iter().map(|m| m.id).collect();
        assert_eq!(ids, [3, 5], "the ring keeps the last two, numbered across jobs");
        assert_eq!(hub.replay(id(1), 3).len(), 1);
        assert!(hub.replay_from_ring(id(1), 2).is_none(), "event 1 of job 1 left the ring: read the log");
        let covered: Vec<u64> = hub.replay_from_ring(id(1), 3).unwrap().iter().map(|m| m.id).collect();
        assert_eq!(covered, [5]);
        hub.publish(&Event::Deleted(id(1)));
        assert!(hub.replay(id(1), 0).is_empty());
    }
}
