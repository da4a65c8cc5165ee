//! The event log's types: job events as the store keeps them, with store-assigned ids, so that a client can resume a stream on any node.
//!
//! The store hands out event ids ([`JobStore::append_events`](crate::JobStore::append_events)):
//! increasing in the order the events are committed, across every process on the store,
//! and never reused, so an id a client saw on one node names the same point on another and
//! after a restart. What an event says (its payload) is opaque here: the embedder (the
//! server's hub) writes the JSON it sends clients and reads it back verbatim.
//!
//! A store shared by several processes (PostgreSQL) also tells each one when the others
//! logged events ([`JobStore::listen_events`](crate::JobStore::listen_events)); a store
//! that only one process opens (SQLite) has nothing to tell.

use crate::JobId;

/// What a logged event is, for a client's choice of messages and a queue's drop policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
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

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 6] = [
        EventKind::Status,
        EventKind::Progress,
        EventKind::Session,
        EventKind::Stats,
        EventKind::Notice,
        EventKind::Deleted,
    ];

    /// Its name: the JSON message's `type` and the SSE `event:` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::Progress => "progress",
            EventKind::Session => "session",
            EventKind::Stats => "stats",
            EventKind::Notice => "notice",
            EventKind::Deleted => "deleted",
        }
    }

    /// The kind named `s` ([`EventKind::as_str`]).
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An event to log: its job, its kind and what clients are sent (JSON, opaque here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// The job it is about.
    pub job: JobId,
    /// What it is.
    pub kind: EventKind,
    /// What clients are sent.
    pub payload: String,
}

/// An event as the log keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its id: larger than every id logged before it.
    pub id: u64,
    /// The job it is about.
    pub job: JobId,
    /// What it is.
    pub kind: EventKind,
    /// When it was logged, in milliseconds since the Unix epoch.
    pub logged_at: i64,
    /// What clients are sent, as it was appended.
    pub payload: String,
}

/// The range of ids the log holds, for telling whether a resume lost events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventIds {
    /// The largest id handed out so far (0: none).
    pub newest: u64,
    /// The oldest id still kept; `newest + 1` when none is. A client that saw up to an id
    /// below `oldest - 1` may have missed events the retention removed.
    pub oldest: u64,
}

impl EventIds {
    /// True when events after `after` may have been removed by the retention (or never
    /// reached this store: an id from another one), so that a replay cannot be complete.
    pub fn lost_after(&self, after: u64) -> bool {
        after < self.newest && after.saturating_add(1) < self.oldest
    }
}

/// Told when other processes may have logged events: with the id a notification named
/// (the newest of the events committed together), or `None` after the listener connected
/// or reconnected, when notifications may have been missed and the log must be read from
/// the last id seen. Called on the store's own threads: it must not block (hand the work to
/// a thread of the caller's).
pub type EventWake = std::sync::Arc<dyn Fn(Option<u64>) + Send + Sync>;

/// A running listener ([`JobStore::listen_events`](crate::JobStore::listen_events)); it
/// stops when dropped.
pub struct EventListener {
    pub(crate) _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for EventListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventListener").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_clients_see_them_and_read_back() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("heartbeat"), None);
    }

    #[test]
    fn a_resume_lost_events_only_when_the_retention_removed_some_after_it() {
        let ids = EventIds { newest: 100, oldest: 51 };
        assert!(!ids.lost_after(50), "51 on are all kept");
        assert!(ids.lost_after(49), "50 was removed");
        assert!(!ids.lost_after(100) && !ids.lost_after(120), "nothing after: nothing lost");
        let empty = EventIds { newest: 7, oldest: 8 };
        assert!(!empty.lost_after(7) && empty.lost_after(6));
        assert!(!EventIds { newest: 0, oldest: 1 }.lost_after(0));
    }
}
