//! The SQLite store on its own: migrations, restart recovery, and session paging and filtering.

mod common;

use callflow_jobs::{
    JobId, JobState, JobStore, NewJob, Outcome, Progress, SessionCursor, SessionQuery, SqliteStore, StoreError,
};
use callflow_model::{CallState, Problem, Session, SessionKind, Timestamp};
use std::sync::Arc;

fn example_session() -> Session {
    let mut reader = callflow_decode::capture::CaptureReader::open(common::example()).unwrap();
    let doc = callflow_correlate::analyze(&mut reader, "x", Default::default(), None).unwrap();
    doc.sessions.into_iter().next().unwrap()
}

/// `n` sessions with distinct ids, starts in reverse order of arrival, and two kinds.
fn sessions(n: usize) -> Vec<Arc<Session>> {
    let base = example_session();
    (0..n)
        .map(|i| {
            let mut s = base.clone();
            s.id = format!("s{i:06}");
            s.call_id = format!("call-{i}");
            s.start = Timestamp::from_nanos(((n - i) as i64) * 1_000);
            s.kind = if i % 4 == 0 { SessionKind::SipRegister } else { SessionKind::SipCall };
            Arc::new(s)
        })
        .collect()
}

fn completed(sessions: u64) -> Outcome {
    Outcome {
        state: JobState::Completed,
        progress: Progress { percent: 100, sessions, ..Progress::default() },
        error: None,
        source: None,
        stats: None,
        subscribers: None,
    }
}

#[test]
fn a_crash_leaves_finished_jobs_intact_and_running_ones_to_rerun_or_fail() {
    let dir = common::temp_dir("recover");
    let db = dir.join("callflow.db");
    let (done, running, queued);
    {
        let store = SqliteStore::open(&db).unwrap();
        done = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
        running = store.create_job(&NewJob::file("b.pcap"), 2).unwrap().id;
        queued = store.create_job(&NewJob::file("c.pcap"), 3).unwrap().id;
        assert_eq!(store.claim_next(10).unwrap().unwrap().id, done);
        store.add_sessions(done, &sessions(3)).unwrap();
        store.finish(done, &completed(3), 11).unwrap().unwrap();
        assert_eq!(store.claim_next(12).unwrap().unwrap().id, running);
        store.add_sessions(running, &sessions(2)).unwrap();
        // The store is dropped mid-run: a crash, as far as the file knows.
    }
    let store = SqliteStore::open(&db).unwrap();
    let recovery = store.recover(true, 3, 20).unwrap();
    assert_eq!(recovery.rerun, [running]);
    assert_eq!(recovery.queued, [running, queued]);
    assert_eq!(store.job(done).unwrap().unwrap().state, JobState::Completed);
    assert_eq!(store.count_sessions(done, &SessionQuery::default()).unwrap(), 3);
    assert_eq!(store.count_sessions(running, &SessionQuery::default()).unwrap(), 0, "partial sessions go");
    // Re-run from the start: a second attempt.
    let again = store.claim_next(21).unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (running, 2));

    // With resume_interrupted = false it fails instead.
    let store = SqliteStore::open(&db).unwrap();
    let recovery = store.recover(false, 3, 30).unwrap();
    assert_eq!(recovery.interrupted, [running]);
    assert_eq!(recovery.queued, [queued]);
    let failed = store.job(running).unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(failed.status.error.unwrap().starts_with("interrupted"));
}

#[test]
fn transitions_only_happen_from_the_expected_state() {
    let dir = common::temp_dir("transitions");
    let store = SqliteStore::open(dir.join("x.db")).unwrap();
    let id = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
    assert!(store.finish(id, &completed(0), 2).unwrap().is_none(), "a queued job cannot finish");
    assert!(!store.delete_finished(id).unwrap(), "nor be deleted");
    assert_eq!(store.cancel_queued(id, 3).unwrap().unwrap().state, JobState::Cancelled);
    assert!(store.cancel_queued(id, 4).unwrap().is_none());
    assert!(store.claim_next(5).unwrap().is_none(), "a cancelled job is never claimed");
    assert_eq!(store.finished_before(4).unwrap().len(), 1);
    assert_eq!(store.finished_before(3).unwrap().len(), 0);
    assert!(store.delete_finished(id).unwrap());
    assert!(store.job(id).unwrap().is_none());
}

#[test]
fn a_reserved_id_is_never_handed_out_again_even_after_a_restart() {
    let dir = common::temp_dir("reserve");
    let db = dir.join("x.db");
    let store = SqliteStore::open(&db).unwrap();
    // Before any job exists, and with jobs.
    let first = store.reserve_id().unwrap();
    let plain = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
    assert!(plain > first, "{plain} after the reserved {first}");
    let reserved = store.reserve_id().unwrap();
    let unused = store.reserve_id().unwrap();
    assert!(reserved > plain && unused > reserved);
    let job = store.create_job(&NewJob::upload("u.capture", "u").with_id(reserved), 2).unwrap();
    assert_eq!((job.id, job.state), (reserved, JobState::Queued));
    assert!(store.create_job(&NewJob::file("b.pcap").with_id(reserved), 3).is_err(), "an id is one job's");
    drop(store);
    let store = SqliteStore::open(&db).unwrap();
    let next = store.create_job(&NewJob::file("c.pcap"), 4).unwrap().id;
    assert!(next > unused, "an unused reservation stays a gap: {next} after {unused}");
    assert!(store.job(first).unwrap().is_none() && store.job(unused).unwrap().is_none());
}

#[test]
fn migrations_are_versioned_and_a_newer_schema_is_refused() {
    let dir = common::temp_dir("migrations");
    let db = dir.join("x.db");
    assert_eq!(SqliteStore::open(&db).unwrap().schema_version().unwrap(), 4);
    assert_eq!(SqliteStore::open(&db).unwrap().schema_version().unwrap(), 4, "reopening migrates nothing");
    rusqlite::Connection::open(&db).unwrap().pragma_update(None, "user_version", 99).unwrap();
    match SqliteStore::open(&db) {
        Err(e @ StoreError::SchemaTooNew { found: 99, known: 4 }) => {
            assert!(e.to_string().contains("upgrade callflowd"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_version_2_database_upgrades_and_completed_jobs_keep_their_subscribers() {
    let dir = common::temp_dir("subscribers-upgrade");
    let db = dir.join("x.db");
    let subscriber: callflow_model::Subscriber = serde_json::from_value(serde_json::json!({
        "id": "sub-1", "imsi": "001010123456789", "msisdn": "15550001",
        "sessions": [{"session": "s1", "kind": "gtp", "start": 1.0,
                      "end": 2.0, "key": {"kind": "imsi", "value": "001010123456789"}}]
    }))
    .unwrap();
    let old = {
        let store = SqliteStore::open(&db).unwrap();
        let old = store.create_job(&NewJob::file("old.pcap"), 1).unwrap().id;
        assert_eq!(store.claim_next(2).unwrap().unwrap().id, old);
        store.finish(old, &completed(0), 3).unwrap().unwrap();
        old
    };
    // The file as the build before version 3 left it: no subscribers column (nor live).
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "ALTER TABLE jobs DROP COLUMN subscribers; ALTER TABLE jobs DROP COLUMN live; PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(store.schema_version().unwrap(), 4);
    assert_eq!(store.job(old).unwrap().unwrap().state, JobState::Completed, "the old job survives the upgrade");
    assert_eq!(store.subscribers(old).unwrap(), None, "completed before subscribers were kept");
    let new = store.create_job(&NewJob::file("new.pcap"), 4).unwrap().id;
    assert_eq!(store.claim_next(5).unwrap().unwrap().id, new);
    assert_eq!(store.subscribers(new).unwrap(), None, "running: none yet");
    let outcome = Outcome { subscribers: Some(vec![subscriber.clone()]), ..completed(0) };
    store.finish(new, &outcome, 6).unwrap().unwrap();
    assert_eq!(store.subscribers(new).unwrap(), Some(vec![subscriber]));
    assert_eq!(store.subscribers(JobId(999)).unwrap(), None);
}

#[test]
fn sessions_page_by_offset_or_cursor_in_start_order_and_filter_by_summary_columns() {
    let dir = common::temp_dir("paging");
    let store = SqliteStore::open(dir.join("x.db")).unwrap();
    let id = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
    store.claim_next(2).unwrap();
    store.add_sessions(id, &sessions(250)).unwrap();
    let other = store.create_job(&NewJob::file("b.pcap"), 1).unwrap().id;
    store.claim_next(2).unwrap();
    store.add_sessions(other, &sessions(5)).unwrap();

    let ids = |rows: &[callflow_jobs::SessionRow]| rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let page = |offset, after: Option<SessionCursor>| {
        store.sessions(id, &SessionQuery { offset, after, limit: 100, ..SessionQuery::default() }).unwrap()
    };
    let first = page(0, None);
    assert_eq!(first.len(), 100);
    assert_eq!(first[0].id, "s000249", "earliest start first");
    let by_offset = page(100, None);
    let by_cursor = page(0, Some(first.last().unwrap().cursor));
    assert_eq!(ids(&by_offset), ids(&by_cursor));
    assert_eq!(by_offset[0].id, "s000149");
    assert_eq!(page(200, None).len(), 50);
    let cursor: SessionCursor = first[99].cursor.to_string().parse().unwrap();
    assert_eq!(cursor, first[99].cursor);

    let registers = SessionQuery { kind: Some(SessionKind::SipRegister), ..SessionQuery::default() };
    assert_eq!(store.count_sessions(id, &registers).unwrap(), 63);
    assert_eq!(store.count_sessions(id, &SessionQuery::default()).unwrap(), 250);
    let by_call = SessionQuery { call_id: Some("call-7".into()), documents: true, ..SessionQuery::default() };
    let rows = store.sessions(id, &by_call).unwrap();
    assert_eq!(ids(&rows), ["s000007"]);
    assert_eq!(rows[0].document.as_ref().unwrap().call_id, "call-7");
    let base = example_session();
    let by_from = SessionQuery { from: Some(base.from.clone()), state: Some(base.state), ..SessionQuery::default() };
    assert_eq!(store.count_sessions(id, &by_from).unwrap(), 250);
    let none = SessionQuery { state: Some(CallState::Rejected), ..SessionQuery::default() };
    assert_eq!(store.count_sessions(id, &none).unwrap(), 0);
    assert_eq!(store.session(id, "s000042").unwrap().unwrap().call_id, "call-42");
    assert!(store.session(JobId(id.0 + 100), "s000042").unwrap().is_none());
}

#[test]
fn text_and_problem_filters_and_a_session_found_by_its_id_alone() {
    let dir = common::temp_dir("filters");
    let store = SqliteStore::open(dir.join("callflow.db")).unwrap();
    let mut all = sessions(12);
    // Session 3 has an anomaly, 5 a flagged problem, 7 failed, 9 lost a packet (not a
    // problem by itself); `call-1%` must match literally.
    Arc::make_mut(&mut all[3]).anomalies.push("BYE without INVITE".into());
    Arc::make_mut(&mut all[5]).problems = vec![Problem::HighLoss, Problem::LowMos];
    Arc::make_mut(&mut all[9]).media.iter_mut().for_each(|m| m.lost = 1);
    Arc::make_mut(&mut all[7]).state = CallState::Failed;
    Arc::make_mut(&mut all[11]).call_id = "odd_1%x".into();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
        store.claim_next(2).unwrap().unwrap();
        store.add_sessions(id, &all).unwrap();
        store.finish(id, &completed(12), 3).unwrap().unwrap();
        ids.push(id);
    }
    let count = |q: SessionQuery| store.count_sessions(ids[0], &q).unwrap();
    let text = |t: &str| SessionQuery { text: Some(t.into()), ..SessionQuery::default() };
    assert_eq!(count(text("call-1")), 2, "call-1 and call-10");
    assert_eq!(count(text("1%")), 1, "% is literal");
    assert_eq!(count(text("d_1")), 1, "_ is literal");
    assert_eq!(count(text("nobody-matches")), 0);
    let base = example_session();
    assert_eq!(count(text(&base.from[1..base.from.len() - 1])), 12, "a substring of From");
    let problem = |p: bool| SessionQuery { problem: Some(p), ..SessionQuery::default() };
    assert!(base.anomalies.is_empty() && base.problems.is_empty(), "the example call is clean");
    assert_eq!(count(problem(true)), 3);
    assert_eq!(count(problem(false)), 9);
    let kind = |p: Problem| SessionQuery { problem_kind: Some(p), ..SessionQuery::default() };
    assert_eq!((count(kind(Problem::LowMos)), count(kind(Problem::NoAck))), (1, 0));

    let (job, session) = store.find_session("s000004").unwrap().unwrap();
    assert_eq!((job, session.call_id.as_str()), (ids[1], "call-4"), "the newest job's");
    assert!(store.find_session("nope").unwrap().is_none());
    // Both jobs have every id: the API's short session URL must not pick one of them.
    assert_eq!(store.session_jobs("s000004", 5).unwrap(), ids, "oldest first");
    assert_eq!(store.session_jobs("s000004", 1).unwrap(), [ids[0]]);
    assert_eq!(store.session_jobs("nope", 5).unwrap(), []);
    assert_eq!(store.schema_version().unwrap(), 4);
}

#[test]
fn opening_a_new_database_from_several_places_at_once_is_not_database_is_locked() {
    // Regression: CI's SIGKILL test failed with "database is locked" when `jobs list`
    // opened the database while the batch run was creating it: switching a new database
    // into WAL does not wait for the busy timeout, so the switch is retried.
    let dir = std::env::temp_dir().join(format!("callflow-jobs-open-race-{}", std::process::id()));
    for round in 0..20 {
        let path = dir.join(format!("race-{round}.db"));
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path).map(|s| s.schema_version().unwrap()))
            })
            .collect();
        for opener in openers {
            let version = opener.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(version >= 1);
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Queries go to read connections beside the writer's: each must see every change
/// committed before it started, however many queries run at once (a reader left inside
/// an old read transaction would answer from an old snapshot).
#[test]
fn reads_on_the_read_connections_see_every_change_committed_before_them() {
    let dir = common::temp_dir("readers");
    let store = Arc::new(SqliteStore::open(dir.join("callflow.db")).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Other queries at the same time, so that every read connection, and the writer's
    // when they are all taken, answers some of the checks below.
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.jobs(&callflow_jobs::JobQuery { limit: 10, ..Default::default() }).unwrap();
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..200 {
        let id = store.create_job(&NewJob::file(format!("{i}.pcap")), i).unwrap().id;
        assert_eq!(store.job(id).unwrap().map(|j| j.state), Some(JobState::Queued), "job {id} just created");
        assert_eq!(store.claim_next(i).unwrap().map(|j| j.id), Some(id));
        store.add_sessions(id, &sessions(2)).unwrap();
        let query = SessionQuery { limit: 10, ..SessionQuery::default() };
        assert_eq!(store.count_sessions(id, &query).unwrap(), 2, "sessions of job {id} just added");
        store.finish(id, &completed(2), i + 1).unwrap().unwrap();
        assert_eq!(store.job(id).unwrap().map(|j| j.state), Some(JobState::Completed), "job {id} just finished");
        assert_eq!(store.jobs(&callflow_jobs::JobQuery { limit: 1, ..Default::default() }).unwrap()[0].id, id);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reads in busy {
        assert!(reads.join().unwrap() > 0);
    }
}

/// `/metrics` counts jobs per state with one query; it must count what listing finds.
#[test]
fn jobs_counted_per_state_are_the_jobs_listed_in_each_state() {
    let dir = common::temp_dir("count");
    let store = SqliteStore::open(dir.join("callflow.db")).unwrap();
    assert!(store.count_jobs().unwrap().is_empty());
    for i in 0..6 {
        store.create_job(&NewJob::file(format!("{i}.pcap")), i).unwrap();
    }
    for i in 0..3 {
        let job = store.claim_next(10 + i).unwrap().unwrap();
        if i < 2 {
            store.finish(job.id, &completed(0), 20 + i).unwrap().unwrap();
        }
    }
    let mut counts = store.count_jobs().unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(counts, [(JobState::Completed, 2), (JobState::Queued, 3), (JobState::Running, 1)]);
    for (state, n) in counts {
        let listed = store.jobs(&callflow_jobs::JobQuery { state: Some(state), ..Default::default() }).unwrap();
        assert_eq!(listed.len() as u64, n, "{state:?}");
    }
}
