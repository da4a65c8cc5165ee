//! The store's event log on both backends: ids handed out in order and never again, reads after an id (one job's or all), the bounds a resume is judged by, pruning, and on PostgreSQL the listener (notifications, and a reconnection after its backend is terminated).
//!
//! PostgreSQL runs as a throwaway cluster (`common::pg`); without it installed these run on
//! SQLite alone and say so, unless `CI` is set, where they fail.

mod common;

use callflow_jobs::{EventIds, EventKind, JobId, JobStore, NewEvent, PgStore, SqliteStore};
use common::pg;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Opens a store again (a restart).
type Open = Box<dyn Fn() -> Box<dyn JobStore>>;

/// A fresh store on every backend this machine has, with its name and how to open it again.
fn backends(test: &str) -> Vec<(&'static str, Open)> {
    let path = common::temp_dir(test).join("callflow.db");
    let mut all: Vec<(&'static str, Open)> =
        vec![("sqlite", Box::new(move || Box::new(SqliteStore::open(&path).unwrap())))];
    if let Some(url) = pg::database(test) {
        all.push(("postgres", Box::new(move || Box::new(PgStore::connect(&url, 2).unwrap()))));
    }
    all
}

/// Job `key`'s id; events need no job row (a deleted job's events outlive it).
fn job(key: i64) -> JobId {
    JobId::new(key, callflow_jobs::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + key as u128))
}

fn event(key: i64, kind: EventKind, n: u32) -> NewEvent {
    NewEvent { job: job(key), kind, payload: format!(r#"{{"type":"{}","n":{n}}}"#, kind.as_str()) }
}

#[test]
fn event_ids_rise_in_order_are_read_back_after_an_id_and_survive_a_restart() {
    for (name, open) in backends("event_ids") {
        let store = open();
        assert_eq!(store.event_ids().unwrap(), EventIds { newest: 0, oldest: 1 }, "{name}: empty");
        let first = store
            .append_events(
                &[event(1, EventKind::Status, 0), event(2, EventKind::Status, 1), event(1, EventKind::Session, 2)],
                10,
            )
            .unwrap();
        assert_eq!(first.len(), 3, "{name}");
        assert!(first.windows(2).all(|w| w[0] < w[1]), "{name}: {first:?}");
        let all = store.events_after(0, None, 100).unwrap();
        let read: Vec<(u64, JobId, EventKind, i64)> = all.iter().map(|e| (e.id, e.job, e.kind, e.logged_at)).collect();
        assert_eq!(
            read,
            [
                (first[0], job(1), EventKind::Status, 10),
                (first[1], job(2), EventKind::Status, 10),
                (first[2], job(1), EventKind::Session, 10)
            ],
            "{name}"
        );
        assert_eq!(all[2].payload, r#"{"type":"session","n":2}"#, "{name}: the payload verbatim");
        let of_job_1: Vec<u64> =
            store.events_after(first[0], Some(job(1)), 100).unwrap().iter().map(|e| e.id).collect();
        assert_eq!(of_job_1, [first[2]], "{name}: job 1's after its first");
        assert_eq!(store.events_after(0, None, 2).unwrap().len(), 2, "{name}: the limit");
        drop(store);
        // A restart hands out larger ids still.
        let store = open();
        let second = store.append_events(&[event(3, EventKind::Deleted, 3)], 20).unwrap();
        assert!(second[0] > first[2], "{name}: {second:?} after {first:?}");
        assert_eq!(store.event_ids().unwrap(), EventIds { newest: second[0], oldest: first[0] }, "{name}");
    }
}

#[test]
fn pruning_keeps_the_newest_events_and_never_hands_their_ids_out_again() {
    for (name, open) in backends("event_prune") {
        let store = open();
        let old =
            store.append_events(&[event(1, EventKind::Status, 0), event(1, EventKind::Progress, 1)], 1_000).unwrap();
        let new: Vec<u64> =
            (0..5).flat_map(|n| store.append_events(&[event(1, EventKind::Progress, 2 + n)], 5_000).unwrap()).collect();
        // By age: the two logged at 1,000 go.
        assert_eq!(store.prune_events(2_000, 100).unwrap(), 2, "{name}");
        assert_eq!(store.event_ids().unwrap(), EventIds { newest: new[4], oldest: new[0] }, "{name}");
        assert!(store.event_ids().unwrap().lost_after(old[0]), "{name}: a resume from the first lost one");
        assert!(!store.event_ids().unwrap().lost_after(old[1]), "{name}: nothing after the second was lost");
        // By number: about the newest 2 stay.
        store.prune_events(0, 2).unwrap();
        let kept: Vec<u64> = store.events_after(0, None, 100).unwrap().iter().map(|e| e.id).collect();
        assert_eq!(kept, new[3..], "{name}");
        store.prune_events(0, 0).unwrap();
        assert_eq!(store.event_ids().unwrap(), EventIds { newest: new[4], oldest: new[4] + 1 }, "{name}: empty");
        drop(store);
        let store = open();
        let next = store.append_events(&[event(2, EventKind::Status, 9)], 6_000).unwrap();
        assert!(next[0] > new[4], "{name}: a removed id is not handed out again ({next:?})");
    }
}

#[test]
fn sqlite_has_no_other_writers_to_listen_for() {
    let store = SqliteStore::open(common::temp_dir("sqlite_listen").join("callflow.db")).unwrap();
    assert!(store.listen_events(Arc::new(|_| {})).unwrap().is_none());
}

/// Waits (bounded) for the next wake-up.
fn next(rx: &mpsc::Receiver<Option<u64>>) -> Option<u64> {
    rx.recv_timeout(Duration::from_secs(30)).expect("a wake-up in time")
}

#[test]
fn postgres_listeners_hear_each_commits_newest_id_and_catch_up_after_their_backend_is_terminated() {
    let Some(cluster) = pg::shared("postgres_listen") else { return };
    let url = cluster.create_database();
    let db = url.rsplit('/').next().unwrap().to_string();
    let writer = PgStore::connect(&url, 2).unwrap();
    let reader = PgStore::connect(&url, 2).unwrap();
    let (tx, rx) = mpsc::channel();
    let listener = reader.listen_events(Arc::new(move |id| tx.send(id).unwrap())).unwrap().expect("a listener");
    assert_eq!(next(&rx), None, "listening: read the log from the last id seen");
    let ids = writer.append_events(&[event(1, EventKind::Status, 0), event(1, EventKind::Progress, 1)], 1).unwrap();
    assert_eq!(next(&rx), Some(ids[1]), "one notification per commit, naming its newest id");

    // The listener's backend killed: it connects again and says to catch up.
    let killed = cluster.psql(
        &db,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND application_name = '{}'",
            callflow_jobs::PG_LISTENER_NAME
        ),
    );
    assert_eq!(killed, "1");
    let during = writer.append_events(&[event(1, EventKind::Session, 2)], 2).unwrap();
    // Whatever was logged while it was away is found by reading after the last id seen.
    let mut woken = Vec::new();
    while !woken.contains(&None) {
        woken.push(next(&rx));
    }
    let missed: Vec<u64> = reader.events_after(ids[1], None, 10).unwrap().iter().map(|e| e.id).collect();
    assert_eq!(missed, during);
    let after = writer.append_events(&[event(1, EventKind::Status, 3)], 3).unwrap();
    loop {
        if next(&rx) == Some(after[0]) {
            break;
        }
    }
    drop(listener);
}
