//! The job stores on their own, SQLite and PostgreSQL: one contract suite run against both (restart recovery, transitions, ids, session paging and filtering, live jobs), then what is each backend's own (migrations, TLS, concurrent opening).
//!
//! PostgreSQL runs as a throwaway cluster (`common::pg`); without it installed the
//! contract tests run on SQLite alone and say so, unless `CI` is set, where they fail.

mod common;

use callflow_jobs::{
    EventKind, JobId, JobQuery, JobRef, JobState, JobStore, NewEvent, NewJob, NodeInfo, Outcome, PgStore, Progress,
    SessionCursor, SessionQuery, SqliteStore, StoreError,
};
use callflow_model::{CallState, Document, Problem, Session, SessionKind, Timestamp};
use common::pg;
use std::sync::Arc;

/// Where a store under test lives: opening it again is a restart.
enum Backend {
    /// The directory holding `callflow.db`, removed when the backend is dropped.
    Sqlite(common::TempDir),
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn open(&self) -> Box<dyn JobStore> {
        match self {
            Backend::Sqlite(dir) => Box::new(SqliteStore::open(dir.join("callflow.db")).unwrap()),
            Backend::Postgres(url) => Box::new(PgStore::connect(url, 4).unwrap()),
        }
    }
}

/// A fresh, empty store location on every backend this machine has.
fn backends(test: &str) -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite(common::temp_dir(test))];
    if let Some(url) = pg::database(test) {
        all.push(Backend::Postgres(url));
    }
    all
}

fn example_document() -> Document {
    let mut reader = callflow_decode::capture::CaptureReader::open(common::example()).unwrap();
    callflow_correlate::analyze(&mut reader, "x", Default::default(), None).unwrap()
}

fn example_session() -> Session {
    example_document().sessions.into_iter().next().unwrap()
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
    for backend in backends("recover") {
        let name = backend.name();
        let (done, running, queued);
        {
            let store = backend.open();
            done = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
            running = store.create_job(&NewJob::file("b.pcap"), 2).unwrap().id;
            queued = store.create_job(&NewJob::file("c.pcap"), 3).unwrap().id;
            assert_eq!(store.claim_next(10).unwrap().unwrap().id, done);
            store.add_sessions(done, &sessions(3)).unwrap();
            store.finish(done, &completed(3), 11).unwrap().unwrap();
            assert_eq!(store.claim_next(12).unwrap().unwrap().id, running);
            store.add_sessions(running, &sessions(2)).unwrap();
            // The store is dropped mid-run: a crash, as far as the database knows.
        }
        let store = backend.open();
        let recovery = store.recover(true, 3, 20).unwrap();
        assert_eq!(recovery.rerun, [running], "{name}");
        assert_eq!(recovery.queued, [running, queued], "{name}");
        assert_eq!(store.job(done).unwrap().unwrap().state, JobState::Completed, "{name}");
        assert_eq!(store.count_sessions(done, &SessionQuery::default()).unwrap(), 3, "{name}");
        assert_eq!(store.count_sessions(running, &SessionQuery::default()).unwrap(), 0, "{name}: partial sessions go");
        // Re-run from the start: a second attempt.
        let again = store.claim_next(21).unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (running, 2), "{name}");
        drop(store);

        // With resume_interrupted = false it fails instead.
        let store = backend.open();
        let recovery = store.recover(false, 3, 30).unwrap();
        assert_eq!(recovery.interrupted, [running], "{name}");
        assert_eq!(recovery.queued, [queued], "{name}");
        let failed = store.job(running).unwrap().unwrap();
        assert_eq!(failed.state, JobState::Failed, "{name}");
        assert!(failed.status.error.unwrap().starts_with("interrupted"), "{name}");

        // Started max_attempts times: given up, with the reason.
        let store = backend.open();
        let third = store.create_job(&NewJob::file("d.pcap"), 40).unwrap().id;
        store.cancel_queued(queued, 41).unwrap().unwrap();
        for attempt in 1..=3 {
            assert_eq!(store.claim_next(42).unwrap().map(|j| (j.id, j.attempts)), Some((third, attempt)), "{name}");
            let recovery = store.recover(true, 3, 43).unwrap();
            if attempt < 3 {
                assert_eq!(recovery.rerun, [third], "{name}");
            } else {
                assert_eq!((recovery.gave_up, recovery.queued), (vec![third], vec![]), "{name}");
            }
        }
        let gave_up = store.job(third).unwrap().unwrap();
        assert_eq!(gave_up.state, JobState::Failed, "{name}");
        assert!(gave_up.status.error.unwrap().starts_with("gave up after 3 attempts"), "{name}");
    }
}

#[test]
fn transitions_only_happen_from_the_expected_state() {
    for backend in backends("transitions") {
        let name = backend.name();
        let store = backend.open();
        let id = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
        assert!(store.finish(id, &completed(0), 2).unwrap().is_none(), "{name}: a queued job cannot finish");
        assert!(!store.delete_finished(id).unwrap(), "{name}: nor be deleted");
        assert_eq!(store.cancel_queued(id, 3).unwrap().unwrap().state, JobState::Cancelled, "{name}");
        assert!(store.cancel_queued(id, 4).unwrap().is_none(), "{name}");
        assert!(store.claim_next(5).unwrap().is_none(), "{name}: a cancelled job is never claimed");
        assert_eq!(store.finished_before(4).unwrap().len(), 1, "{name}");
        assert_eq!(store.finished_before(3).unwrap().len(), 0, "{name}");
        assert!(store.delete_finished(id).unwrap(), "{name}");
        assert!(store.job(id).unwrap().is_none(), "{name}");

        // A run that does not complete keeps no sessions; a finished job does not finish again.
        let id = store.create_job(&NewJob::file("b.pcap"), 6).unwrap().id;
        store.claim_next(7).unwrap().unwrap();
        store.record_progress(id, &Progress { percent: 40, packets: 7, bytes: 900, sessions: 2 }).unwrap();
        let running = store.job(id).unwrap().unwrap();
        assert_eq!((running.progress, running.packets, running.bytes), (40, 7, 900), "{name}");
        store.add_sessions(id, &sessions(2)).unwrap();
        let failed = Outcome { state: JobState::Failed, error: Some("bad capture".into()), ..completed(2) };
        let job = store.finish(id, &failed, 8).unwrap().unwrap();
        assert_eq!(
            (job.state, job.sessions, job.error.as_deref()),
            (JobState::Failed, 0, Some("bad capture")),
            "{name}"
        );
        assert_eq!(store.count_sessions(id, &SessionQuery::default()).unwrap(), 0, "{name}");
        assert!(store.finish(id, &completed(0), 9).unwrap().is_none(), "{name}");
        assert!(store.delete_finished(id).unwrap(), "{name}");
    }
}

#[test]
fn a_reserved_id_is_never_handed_out_again_even_after_a_restart() {
    for backend in backends("reserve") {
        let name = backend.name();
        let store = backend.open();
        assert_eq!(store.last_key().unwrap(), 0, "{name}: none handed out yet");
        // Before any job exists, and with jobs.
        let first = store.reserve_id().unwrap();
        let plain = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
        assert!(plain > first, "{name}: {plain} after the reserved {first}");
        let reserved = store.reserve_id().unwrap();
        let unused = store.reserve_id().unwrap();
        assert!(reserved > plain && unused > reserved, "{name}");
        assert_eq!(store.last_key().unwrap(), unused.key(), "{name}: the largest, reserved or created");
        let job = store.create_job(&NewJob::upload("u.capture", "u").with_id(reserved), 2).unwrap();
        assert_eq!((job.id, job.state), (reserved, JobState::Queued), "{name}: the reserved key and UUID");
        assert_eq!(store.resolve(JobRef::Uuid(reserved.uuid())).unwrap(), Some(reserved), "{name}");
        assert_eq!(store.job_by_key(reserved.key()).unwrap(), Some(reserved), "{name}");
        assert_eq!(store.resolve(JobRef::Number(reserved.key())).unwrap(), None, "{name}: new jobs have no number");
        assert_eq!(store.resolve(JobRef::Uuid(unused.uuid())).unwrap(), None, "{name}: reserved, not created");
        assert!(store.create_job(&NewJob::file("b.pcap").with_id(reserved), 3).is_err(), "{name}: an id is one job's");
        drop(store);
        let store = backend.open();
        let next = store.create_job(&NewJob::file("c.pcap"), 4).unwrap().id;
        assert!(next > unused, "{name}: an unused reservation stays a gap: {next} after {unused}");
        assert!(store.job(first).unwrap().is_none() && store.job(unused).unwrap().is_none(), "{name}");
    }
}

#[test]
fn migrations_are_versioned_and_a_newer_schema_is_refused() {
    let dir = common::temp_dir("migrations");
    let db = dir.join("x.db");
    let latest = SqliteStore::SCHEMA_VERSION;
    assert!(latest >= 5, "{latest}");
    assert_eq!(SqliteStore::open(&db).unwrap().schema_version().unwrap(), latest);
    assert_eq!(SqliteStore::open(&db).unwrap().schema_version().unwrap(), latest, "reopening migrates nothing");
    rusqlite::Connection::open(&db).unwrap().pragma_update(None, "user_version", 99).unwrap();
    match SqliteStore::open(&db) {
        Err(e @ StoreError::SchemaTooNew { found: 99, known }) if known == latest => {
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
    // The file as the build before version 3 left it: no subscribers column (nor live,
    // nor what versions 5 and on add).
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "DROP INDEX jobs_by_uuid; DROP INDEX jobs_by_alias; ALTER TABLE jobs DROP COLUMN uuid;
             ALTER TABLE jobs DROP COLUMN alias; ALTER TABLE jobs DROP COLUMN subscribers; ALTER TABLE jobs DROP COLUMN live;
             ALTER TABLE jobs DROP COLUMN node; ALTER TABLE jobs DROP COLUMN cancel_requested;
             ALTER TABLE jobs DROP COLUMN lost_nodes; DROP TABLE nodes; DROP TABLE cluster;
             DROP TABLE login_tokens; DROP TABLE token_revocations; DROP TABLE events; DROP TABLE share_links;
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(store.schema_version().unwrap(), SqliteStore::SCHEMA_VERSION);
    assert_eq!(store.job(old).unwrap().unwrap().state, JobState::Completed, "the old job survives the upgrade");
    assert_eq!(store.subscribers(old).unwrap(), None, "completed before subscribers were kept");
    let new = store.create_job(&NewJob::file("new.pcap"), 4).unwrap().id;
    assert_eq!(store.claim_next(5).unwrap().unwrap().id, new);
    assert_eq!(store.subscribers(new).unwrap(), None, "running: none yet");
    let outcome = Outcome { subscribers: Some(vec![subscriber.clone()]), ..completed(0) };
    store.finish(new, &outcome, 6).unwrap().unwrap();
    assert_eq!(store.subscribers(new).unwrap(), Some(vec![subscriber]));
    assert_eq!(store.subscribers(JobId::new(999, callflow_jobs::Uuid::from_u128(999))).unwrap(), None);
}

#[test]
fn sessions_page_by_offset_or_cursor_in_start_order_and_filter_by_summary_columns() {
    for backend in backends("paging") {
        let name = backend.name();
        let store = backend.open();
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
        assert_eq!(first.len(), 100, "{name}");
        assert_eq!(first[0].id, "s000249", "{name}: earliest start first");
        let by_offset = page(100, None);
        let by_cursor = page(0, Some(first.last().unwrap().cursor));
        assert_eq!(ids(&by_offset), ids(&by_cursor), "{name}");
        assert_eq!(by_offset[0].id, "s000149", "{name}");
        assert_eq!(page(200, None).len(), 50, "{name}");
        let cursor: SessionCursor = first[99].cursor.to_string().parse().unwrap();
        assert_eq!(cursor, first[99].cursor, "{name}");
        let all = store.sessions(id, &SessionQuery::default()).unwrap();
        assert_eq!(all.len(), 250, "{name}: limit 0 is no limit");
        assert!(all.iter().all(|r| r.document.is_none()), "{name}: documents only when asked for");

        let registers = SessionQuery { kind: Some(SessionKind::SipRegister), ..SessionQuery::default() };
        assert_eq!(store.count_sessions(id, &registers).unwrap(), 63, "{name}");
        assert_eq!(store.count_sessions(id, &SessionQuery::default()).unwrap(), 250, "{name}");
        let by_call = SessionQuery { call_id: Some("call-7".into()), documents: true, ..SessionQuery::default() };
        let rows = store.sessions(id, &by_call).unwrap();
        assert_eq!(ids(&rows), ["s000007"], "{name}");
        let base = example_session();
        let expected = sessions(250)[7].clone();
        let document = rows[0].document.as_ref().unwrap();
        // Floats may come back an ulp apart (serde_json's parsing): the rest is compared whole.
        assert_eq!((&document.id, &document.call_id), (&expected.id, &expected.call_id), "{name}");
        assert_eq!((&document.messages, document.media.len()), (&expected.messages, 2), "{name}");
        assert_eq!((rows[0].messages as usize, rows[0].media as usize), (base.messages.len(), base.media.len()));
        let by_from =
            SessionQuery { from: Some(base.from.clone()), state: Some(base.state), ..SessionQuery::default() };
        assert_eq!(store.count_sessions(id, &by_from).unwrap(), 250, "{name}");
        let none = SessionQuery { state: Some(CallState::Rejected), ..SessionQuery::default() };
        assert_eq!(store.count_sessions(id, &none).unwrap(), 0, "{name}");
        assert_eq!(store.session(id, "s000042").unwrap().unwrap().call_id, "call-42", "{name}");
        assert!(store.session(JobId::new(id.key() + 100, id.uuid()), "s000042").unwrap().is_none(), "{name}");
    }
}

#[test]
fn text_and_problem_filters_and_a_session_found_by_its_id_alone() {
    for backend in backends("filters") {
        eprintln!("backend: {}", backend.name());
        let store = backend.open();
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
    }
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
    for backend in backends("readers") {
        eprintln!("backend: {}", backend.name());
        let store: Arc<dyn JobStore> = Arc::from(backend.open());
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
}

/// `/metrics` counts jobs per state with one query; it must count what listing finds.
#[test]
fn login_tokens_are_found_by_digest_until_they_expire_or_are_revoked_and_revocations_are_read_in_order() {
    use callflow_jobs::tokens::{next_cursor, SETTLED_MS};
    for backend in backends("tokens") {
        let name = backend.name();
        let store = backend.open();
        let tokens = store.tokens().expect("both backends share tokens");
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        tokens.put_token(&a, 10_000).unwrap();
        tokens.put_token(&b, 20_000).unwrap();
        assert_eq!(tokens.token_expiry(&a, 5_000).unwrap(), Some(10_000), "{name}");
        assert_eq!(tokens.token_expiry(&a, 10_000).unwrap(), None, "{name}: expired");
        assert_eq!(tokens.token_expiry(&c, 5_000).unwrap(), None, "{name}: unknown");
        // Another store on the same database (another node) sees the token, and the revocation.
        let other = backend.open();
        let others = other.tokens().unwrap();
        assert_eq!(others.token_expiry(&b, 5_000).unwrap(), Some(20_000), "{name}");
        others.revoke_token(&b, 6_000).unwrap();
        others.revoke_token(&c, 7_000).unwrap();
        assert_eq!(tokens.token_expiry(&b, 6_500).unwrap(), None, "{name}: revoked");
        let read = tokens.token_revocations(0, 10).unwrap();
        assert_eq!(read.iter().map(|r| (r.digest, r.at)).collect::<Vec<_>>(), [(b, 6_000), (c, 7_000)], "{name}");
        assert!(read[0].seq < read[1].seq, "{name}");
        assert_eq!(tokens.token_revocations(read[0].seq, 10).unwrap(), read[1..], "{name}");
        assert_eq!(tokens.token_revocations(0, 1).unwrap(), read[..1], "{name}: the limit");
        assert_eq!(next_cursor(0, &read, 6_500 + SETTLED_MS), read[0].seq, "{name}");
        // A restart keeps them; the sweep drops the expired and the old.
        drop((store, other));
        let store = backend.open();
        let tokens = store.tokens().unwrap();
        assert_eq!(tokens.token_expiry(&a, 5_000).unwrap(), Some(10_000), "{name}: kept over a restart");
        tokens.sweep_tokens(10_000, 3_500).unwrap();
        assert_eq!(tokens.token_expiry(&a, 0).unwrap(), None, "{name}: swept");
        let left: Vec<_> = tokens.token_revocations(0, 10).unwrap().into_iter().map(|r| r.digest).collect();
        assert_eq!(left, [c], "{name}: revocations older than the kept time are swept");
    }
}

/// Share links live in the store: made through one store (node), opened through another,
/// until they expire or either revokes them; a restart keeps them.
#[test]
fn share_links_open_on_every_store_of_one_database_until_they_expire_or_are_revoked() {
    for backend in backends("shares") {
        let name = backend.name();
        let store = backend.open();
        let shares = store.tokens().expect("both backends keep share links");
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let seven = store.create_job(&NewJob::file("7.pcap"), 1).unwrap().id;
        let eight = store.create_job(&NewJob::file("8.pcap"), 1).unwrap().id;
        shares.put_share(&a, seven, "ff52fc41b0a8cc3a", 10_000).unwrap();
        shares.put_share(&b, eight, "e281a5584e4de78e", 20_000).unwrap();
        let other = backend.open();
        let others = other.tokens().unwrap();
        assert_eq!(others.share(&a, 5_000).unwrap(), Some((seven, "ff52fc41b0a8cc3a".into())), "{name}");
        assert_eq!(others.share(&a, 10_000).unwrap(), None, "{name}: expired");
        assert_eq!(others.share(&c, 5_000).unwrap(), None, "{name}: never made");
        assert!(others.put_share(&a, eight, "x", 30_000).is_err(), "{name}: a digest is made once");
        assert!(!others.revoke_share(&a, 10_000).unwrap(), "{name}: an expired link is not revoked");
        assert!(others.revoke_share(&b, 6_000).unwrap(), "{name}");
        assert!(!shares.revoke_share(&b, 6_000).unwrap(), "{name}: revoked once");
        assert_eq!(shares.share(&b, 6_000).unwrap(), None, "{name}: revoked on the other node");
        shares.put_share(&c, eight, "e281a5584e4de78e", 40_000).unwrap();
        drop((store, other));
        let store = backend.open();
        let shares = store.tokens().unwrap();
        assert_eq!(shares.share(&c, 6_000).unwrap(), Some((eight, "e281a5584e4de78e".into())), "{name}: restart");
        assert_eq!(shares.sweep_shares(5_000).unwrap(), 2, "{name}: a and c valid");
        assert_eq!(shares.sweep_shares(10_000).unwrap(), 1, "{name}: a expired and swept");
        assert_eq!(shares.share(&a, 0).unwrap(), None, "{name}: swept");
    }
}

#[test]
fn jobs_counted_per_state_are_the_jobs_listed_in_each_state() {
    for backend in backends("count") {
        eprintln!("backend: {}", backend.name());
        let store = backend.open();
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
}

#[test]
fn a_completed_job_keeps_its_source_statistics_and_subscribers_as_given() {
    let doc = example_document();
    for backend in backends("documents") {
        let name = backend.name();
        let store = backend.open();
        let id = store.create_job(&NewJob::upload("/u/1.capture", "call.pcap"), 1).unwrap().id;
        store.claim_next(2).unwrap().unwrap();
        let outcome = Outcome {
            source: Some(doc.source.clone()),
            stats: Some(doc.stats.clone()),
            subscribers: Some(doc.subscribers.clone()),
            ..completed(0)
        };
        let job = store.finish(id, &outcome, 3).unwrap().unwrap();
        let again = store.job(id).unwrap().unwrap();
        assert_eq!(job, again, "{name}");
        assert_eq!(again.source.as_ref(), Some(&doc.source), "{name}");
        assert_eq!(again.stats.as_ref(), Some(&doc.stats), "{name}");
        assert_eq!(
            (again.input.to_str(), again.label.as_str(), again.owns_input),
            (Some("/u/1.capture"), "call.pcap", true)
        );
        assert_eq!(store.subscribers(id).unwrap(), Some(doc.subscribers.clone()), "{name}");
        assert_eq!(store.subscribers(JobId::new(id.key() + 100, id.uuid())).unwrap(), None, "{name}");
        let listed = store.jobs(&JobQuery { state: Some(JobState::Completed), ..JobQuery::default() }).unwrap();
        assert_eq!(listed, [again], "{name}");
    }
}

#[test]
fn a_live_job_keeps_its_sessions_whatever_its_end_and_a_restart_ends_it() {
    for backend in backends("live") {
        let name = backend.name();
        let store = backend.open();
        let source = r#"{"interface":"eth0","filter":"udp port 5060"}"#;
        let stopped = store.create_live(&NewJob::file("/live/1"), source, 1).unwrap();
        assert_eq!((stopped.state, stopped.attempts, stopped.live.as_deref()), (JobState::Running, 1, Some(source)));
        assert!(store.claim_next(2).unwrap().is_none(), "{name}: no worker claims a live job");
        store.add_sessions(stopped.id, &sessions(3)).unwrap();
        let cancelled = Outcome { state: JobState::Cancelled, ..completed(3) };
        let job = store.finish(stopped.id, &cancelled, 3).unwrap().unwrap();
        assert_eq!(
            (job.state, store.count_sessions(job.id, &SessionQuery::default()).unwrap()),
            (JobState::Cancelled, 3)
        );

        let running = store.create_live(&NewJob::file("/live/2"), source, 4).unwrap().id;
        store.add_sessions(running, &sessions(2)).unwrap();
        drop(store);
        let store = backend.open();
        let recovery = store.recover(true, 3, 5).unwrap();
        assert_eq!((recovery.interrupted, recovery.rerun), (vec![running], vec![]), "{name}: never re-run");
        let job = store.job(running).unwrap().unwrap();
        assert_eq!(job.state, JobState::Failed, "{name}");
        assert!(job.error.as_deref().unwrap().contains("live job"), "{name}");
        assert_eq!(store.count_sessions(running, &SessionQuery::default()).unwrap(), 2, "{name}: kept");
    }
}

#[test]
fn a_listing_page_of_1000_sessions_with_documents_reads_back_what_was_stored() {
    for backend in backends("page-1000") {
        let name = backend.name();
        let store = backend.open();
        let id = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
        store.claim_next(2).unwrap().unwrap();
        let all = sessions(1500);
        for batch in all.chunks(256) {
            store.add_sessions(id, batch).unwrap();
        }
        let query = SessionQuery { limit: 1000, offset: 250, documents: true, ..SessionQuery::default() };
        let page = store.sessions(id, &query).unwrap();
        assert_eq!(page.len(), 1000, "{name}");
        // Starts run backwards from arrival: the 251st earliest is the 1250th stored.
        for (row, stored) in page.iter().zip(all.iter().rev().skip(250)) {
            let document = row.document.as_ref().unwrap();
            assert_eq!((&row.id, &document.id, &document.call_id), (&stored.id, &stored.id, &stored.call_id), "{name}");
            assert_eq!((document.start, &document.messages), (stored.start, &stored.messages), "{name}");
        }
    }
}

/// PostgreSQL's `text` and `jsonb` refuse NUL, which a crafted SIP header can carry: the
/// job must not fail on it, and the session is stored with U+FFFD in its place.
#[test]
fn postgres_stores_a_session_whose_strings_hold_nul_characters() {
    let Some(url) = pg::database("postgres_nul") else { return };
    let store = PgStore::connect(&url, 2).unwrap();
    let id = store.create_job(&NewJob::file("nul\0.pcap"), 1).unwrap().id;
    store.claim_next(2).unwrap().unwrap();
    let mut session = (*sessions(1)[0]).clone();
    session.call_id = "abc\0def".into();
    session.from = "<sip:\0@x>".into();
    session.anomalies.push("odd \0 header".into());
    store.add_sessions(id, &[Arc::new(session)]).unwrap();
    let failure = Outcome { state: JobState::Completed, error: None, ..completed(1) };
    store.finish(id, &failure, 3).unwrap().unwrap();
    let rows = store.sessions(id, &SessionQuery { documents: true, ..SessionQuery::default() }).unwrap();
    assert_eq!(rows[0].call_id, "abc\u{fffd}def");
    let document = rows[0].document.as_ref().unwrap();
    assert_eq!((document.call_id.as_str(), document.anomalies[0].as_str()), ("abc\u{fffd}def", "odd \u{fffd} header"));
    let by_call = SessionQuery { call_id: Some("abc\0def".into()), ..SessionQuery::default() };
    assert_eq!(store.count_sessions(id, &by_call).unwrap(), 1, "a filter with NUL finds it too");
}

/// Jobs made before ids were UUIDs: the migration gives each a UUID v7 of its creation
/// time, keeps its number as an alias, and gives their events the UUID; the jobs made
/// after have UUIDs only. The database is made by this build and taken back to the
/// schema before UUIDs (columns and indexes dropped, the version set back).
#[test]
fn jobs_made_before_uuids_get_one_of_their_time_and_keep_answering_at_their_number() {
    let created = [1_700_000_000_123_i64, 1_700_000_000_123, 1_733_000_000_999];
    /// A backend's name, how to open its store, and how to take it back before UUIDs.
    type Upgraded = (&'static str, Box<dyn Fn() -> Box<dyn JobStore>>, Box<dyn Fn()>);
    let mut stores: Vec<Upgraded> = Vec::new();
    let dir = common::temp_dir("uuid-upgrade");
    let db = dir.join("old.db");
    let sqlite_db = db.clone();
    stores.push((
        "sqlite",
        Box::new(move || Box::new(SqliteStore::open(&sqlite_db).unwrap())),
        Box::new(move || {
            rusqlite::Connection::open(&db)
                .unwrap()
                .execute_batch(
                    "DROP INDEX jobs_by_uuid; DROP INDEX jobs_by_alias; ALTER TABLE jobs DROP COLUMN uuid;
                     ALTER TABLE jobs DROP COLUMN alias; ALTER TABLE events DROP COLUMN job_uuid;
                     PRAGMA user_version = 8;",
                )
                .unwrap()
        }),
    ));
    if let Some(url) = pg::database("uuid_upgrade") {
        let cluster = pg::shared("uuid_upgrade").unwrap();
        let name = url.rsplit('/').next().unwrap().to_string();
        let open_url = url.clone();
        stores.push((
            "postgres",
            Box::new(move || Box::new(PgStore::connect(&open_url, 2).unwrap())),
            Box::new(move || {
                cluster.psql(
                    &name,
                    "DROP INDEX jobs_by_uuid; DROP INDEX jobs_by_alias; ALTER TABLE jobs DROP COLUMN uuid;
                     ALTER TABLE jobs DROP COLUMN alias; ALTER TABLE events DROP COLUMN job_uuid;
                     DELETE FROM callflow_schema WHERE version > 5;",
                );
            }),
        ));
    }
    for (name, open, downgrade) in stores {
        let (keys, gone) = {
            let store = open();
            let ids: Vec<JobId> =
                created.iter().map(|&at| store.create_job(&NewJob::file("old.pcap"), at).unwrap().id).collect();
            let gone = store.create_job(&NewJob::file("gone.pcap"), 1).unwrap().id;
            let event =
                |job: JobId, n: u32| NewEvent { job, kind: EventKind::Status, payload: format!("{{\"n\":{n}}}") };
            store.append_events(&[event(ids[0], 0), event(gone, 1), event(ids[2], 2)], 5).unwrap();
            (ids.iter().map(|id| id.key()).collect::<Vec<_>>(), gone)
        };
        // A job deleted before the upgrade: its row is gone, its event is not.
        let store = open();
        assert!(store.cancel_queued(gone, 6).unwrap().is_some() && store.delete_finished(gone).unwrap(), "{name}");
        drop(store);
        downgrade();
        let store = open();
        let mut uuids = Vec::new();
        for (&key, &at) in keys.iter().zip(&created) {
            let id = store.resolve(JobRef::Number(key)).unwrap().unwrap_or_else(|| panic!("{name}: job {key}"));
            assert_eq!(id.key(), key, "{name}");
            assert_eq!(store.resolve(JobRef::Uuid(id.uuid())).unwrap(), Some(id), "{name}");
            assert_eq!(store.job(id).unwrap().unwrap().id, id, "{name}");
            let uuid = id.uuid();
            assert_eq!(uuid.get_version_num(), 7, "{name}: {uuid}");
            let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
            assert_eq!(secs as i64 * 1000 + i64::from(nanos / 1_000_000), at, "{name}: the UUID's time is the job's");
            uuids.push(uuid);
        }
        assert_ne!(uuids[0], uuids[1], "{name}: two jobs of the same millisecond");
        let events = store.events_after(0, None, 10).unwrap();
        let jobs: Vec<(i64, callflow_jobs::Uuid)> = events.iter().map(|e| (e.job.key(), e.job.uuid())).collect();
        assert_eq!(jobs, [(keys[0], uuids[0]), (keys[2], uuids[2])], "{name}: the deleted job's event went");
        let new = store.create_job(&NewJob::file("new.pcap"), 7).unwrap().id;
        assert_eq!(store.resolve(JobRef::Number(new.key())).unwrap(), None, "{name}: a new job has no number");
        assert_eq!(store.resolve(JobRef::Uuid(new.uuid())).unwrap(), Some(new), "{name}");
        assert_eq!(store.resolve(JobRef::Number(gone.key())).unwrap(), None, "{name}");
    }
}

#[test]
fn postgres_migrations_are_versioned_and_a_newer_schema_is_refused_naming_both_versions() {
    let Some(url) = pg::database("postgres_migrations") else { return };
    let latest = PgStore::SCHEMA_VERSION;
    assert!(latest >= 2, "{latest}");
    assert_eq!(PgStore::connect(&url, 2).unwrap().schema_version().unwrap(), latest);
    assert_eq!(PgStore::connect(&url, 2).unwrap().schema_version().unwrap(), latest, "reopening migrates nothing");
    let cluster = pg::shared("postgres_migrations").unwrap();
    let db = url.rsplit('/').next().unwrap();
    cluster.psql(db, "INSERT INTO callflow_schema (version) VALUES (99)");
    match PgStore::connect(&url, 2) {
        Err(e @ StoreError::SchemaTooNew { found: 99, known }) if known == latest => {
            let message = e.to_string();
            assert!(
                message.contains("99")
                    && message.contains(&format!("({latest})"))
                    && message.contains("upgrade callflowd"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Nodes starting at the same moment on an empty database: one migrates, the others wait
/// for its advisory lock and find the schema there (without it, a second `CREATE TABLE`
/// fails, or versions are recorded twice).
#[test]
fn postgres_nodes_starting_together_on_an_empty_database_migrate_it_once() {
    let Some(cluster) = pg::shared("postgres_start_together") else { return };
    for round in 0..5 {
        let url = cluster.create_database();
        let starts: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || PgStore::connect(&url, 1).and_then(|s| s.schema_version()))
            })
            .collect();
        for start in starts {
            let version = start.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(version, PgStore::SCHEMA_VERSION);
        }
        let db = url.rsplit('/').next().unwrap();
        let rows = cluster.psql(db, "SELECT count(*) FROM callflow_schema");
        assert_eq!(rows, PgStore::SCHEMA_VERSION.to_string(), "round {round}: one row per migration, each run once");
    }
}

/// `JobStore` is synchronous; the server calls it from its blocking pool and tests from
/// their own runtimes: the store must answer there too, never panic with "cannot start a
/// runtime from within a runtime".
#[test]
fn postgres_answers_calls_made_from_inside_another_tokio_runtime() {
    let Some(url) = pg::database("postgres_in_runtime") else { return };
    let store = Arc::new(PgStore::connect(&url, 2).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let id = runtime.block_on(async {
        let blocking = store.clone();
        let id = tokio::task::spawn_blocking(move || blocking.create_job(&NewJob::file("a.pcap"), 1).unwrap().id)
            .await
            .unwrap();
        // On an async thread itself (which a server should not do, but must not panic).
        assert_eq!(store.job(id).unwrap().unwrap().state, JobState::Queued);
        id
    });
    // The store dropped on an async thread must not panic either.
    runtime.block_on(async move { drop(store) });
    assert!(id.key() > 0);
}

/// `sslmode` as libpq has it: `require` encrypts, `verify-ca` checks the chain against
/// `sslrootcert`, `verify-full` the host name too; a server that refuses plain
/// connections proves which ones were encrypted.
#[test]
fn postgres_connects_over_tls_when_the_url_asks_and_checks_what_it_is_told_to() {
    let Some(bin) = pg::binaries_or_skip("postgres_tls") else { return };
    if std::process::Command::new("openssl").arg("version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "openssl is not installed and CI is set");
        eprintln!("postgres_tls: skipped: openssl is not installed (apt-get install openssl)");
        return;
    }
    let dir = common::temp_dir("pg-tls");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").current_dir(&dir).args(args).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for ca in ["ca", "other-ca"] {
        let mut args = vec!["req", "-x509", "-days", "2", "-subj"];
        let subject = format!("/CN=callflow test {ca}");
        args.push(&subject);
        args.extend(ec);
        let (key, cert) = (format!("{ca}.key"), format!("{ca}.pem"));
        args.extend(["-keyout", &key, "-out", &cert]);
        openssl(&args);
    }
    // The server's certificate names a host, not the address the tests connect to.
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:db.example\nbasicConstraints=CA:FALSE\n").unwrap();
    let mut args = vec!["req", "-subj", "/CN=db.example"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&args);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext",
        "-out",
        "server.pem",
    ]);
    let tls = pg::Tls { cert: &dir.join("server.pem"), key: &dir.join("server.key") };
    let cluster = pg::Cluster::start(&bin, Some(tls));
    let connect = |query: String| PgStore::connect(&cluster.url("postgres", &query), 1).map(|_| ());
    let root = |ca: &str| format!("sslrootcert={}", dir.join(format!("{ca}.pem")).display());
    assert!(connect("sslmode=disable".into()).is_err(), "the server refuses plain connections");
    connect("sslmode=require".into()).unwrap();
    connect(String::new()).expect("prefer (the default) encrypts when the server can");
    connect(format!("sslmode=verify-ca&{}", root("ca"))).unwrap();
    let wrong_ca = connect(format!("sslmode=verify-ca&{}", root("other-ca"))).unwrap_err();
    assert!(matches!(wrong_ca, StoreError::Database { .. }), "{wrong_ca}");
    let wrong_name = connect(format!("sslmode=verify-full&{}", root("ca"))).unwrap_err();
    assert!(format!("{:?}", wrong_name).to_lowercase().contains("name"), "127.0.0.1 is not db.example: {wrong_name:?}");
}

#[test]
fn sessions_sort_by_any_listed_key_in_either_direction_with_arrival_breaking_ties() {
    use callflow_jobs::SessionSort;
    for backend in backends("sort") {
        let name = backend.name();
        let store = backend.open();
        let id = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
        store.claim_next(2).unwrap().unwrap();
        let mut all = sessions(12);
        for (i, s) in all.iter_mut().enumerate() {
            let s = Arc::make_mut(s);
            s.end = Timestamp::from_nanos(s.start.as_nanos() + ((i * 5) % 12) as i64 * 1_000_000);
            s.from = format!("sip:{}@x", (b'a' + ((i * 7) % 12) as u8) as char);
        }
        store.add_sessions(id, &all).unwrap();
        let sorted = |sort: &str| {
            let query = SessionQuery { sort: sort.parse::<SessionSort>().unwrap(), ..SessionQuery::default() };
            store.sessions(id, &query).unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        let mut by_duration: Vec<_> =
            all.iter().map(|s| (s.end.as_nanos() - s.start.as_nanos(), s.id.clone())).collect();
        by_duration.sort();
        let expected: Vec<_> = by_duration.iter().rev().map(|(_, id)| id.clone()).collect();
        assert_eq!(sorted("-duration"), expected, "{name}");
        let mut by_from: Vec<_> = all.iter().map(|s| (s.from.clone(), s.id.clone())).collect();
        by_from.sort();
        assert_eq!(sorted("from"), by_from.into_iter().map(|(_, id)| id).collect::<Vec<_>>(), "{name}");
        let start: Vec<_> = sorted("start");
        assert_eq!(start.first().map(String::as_str), Some("s000011"), "{name}: earliest start first");
        assert_eq!(sorted("-start"), start.iter().rev().cloned().collect::<Vec<_>>(), "{name}");
    }
}

fn node(name: &str, started_at: i64) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        advertise_url: format!("http://{name}:8080"),
        version: "1.2.3".into(),
        workers: 4,
        started_at,
    }
}

#[test]
fn a_registered_node_is_listed_with_its_heartbeat_and_the_jobs_it_claims_record_it() {
    for backend in backends("nodes") {
        let name = backend.name();
        let store = backend.open();
        assert!(store.nodes().unwrap().is_empty(), "{name}");
        let before = store.create_job(&NewJob::file("a.pcap"), 1).unwrap().id;
        assert_eq!(store.claim_next(2).unwrap().unwrap().node, None, "{name}: no node registered yet");
        store.finish(before, &completed(0), 3).unwrap().unwrap();
        store.register_node(&node("node-a", 10), 11).unwrap();
        let id = store.create_job(&NewJob::file("b.pcap"), 12).unwrap().id;
        let claimed = store.claim_next(13).unwrap().unwrap();
        assert_eq!((claimed.id, claimed.node.as_deref()), (id, Some("node-a")), "{name}");
        let live = store.create_live(&NewJob::file("/live/1"), "{}", 14).unwrap();
        assert_eq!(live.node.as_deref(), Some("node-a"), "{name}");
        let own = store.heartbeat(20).unwrap();
        assert_eq!(own.iter().map(|j| (j.id, j.cancel)).collect::<Vec<_>>(), [(id, false), (live.id, false)], "{name}");
        assert!(store.request_cancel(id).unwrap(), "{name}");
        assert!(!store.request_cancel(before).unwrap(), "{name}: a finished job has nothing to cancel");
        assert!(store.heartbeat(21).unwrap().iter().any(|j| j.id == id && j.cancel), "{name}: the flag is read back");
        let nodes = store.nodes().unwrap();
        assert_eq!(nodes.len(), 1, "{name}");
        assert_eq!(
            (nodes[0].info.clone(), nodes[0].last_seen, nodes[0].running),
            (node("node-a", 10), 21, 2),
            "{name}"
        );
        store.heartbeat(15).unwrap();
        assert_eq!(store.nodes().unwrap()[0].last_seen, 21, "{name}: a late heartbeat never goes back");
        // A restart registers again, with its new start time.
        drop(store);
        let store = backend.open();
        store.register_node(&node("node-a", 30), 31).unwrap();
        assert_eq!(
            (store.nodes().unwrap()[0].info.started_at, store.nodes().unwrap()[0].last_seen),
            (30, 31),
            "{name}"
        );
    }
}

/// Two nodes on one PostgreSQL store: a restart recovers only the restarted node's jobs,
/// and a live node takes over those of a silent one, which can then no longer write them.
#[test]
fn postgres_a_restarted_node_recovers_only_its_own_jobs_and_a_silent_nodes_are_taken_over() {
    let Some(url) = pg::database("postgres_takeover") else { return };
    let a = PgStore::connect(&url, 2).unwrap();
    a.register_node(&node("a", 1), 1).unwrap();
    let b = PgStore::connect(&url, 2).unwrap();
    b.register_node(&node("b", 1), 1).unwrap();
    let on_a = a.create_job(&NewJob::file("a.pcap"), 2).unwrap().id;
    let on_b = a.create_job(&NewJob::file("b.pcap"), 2).unwrap().id;
    assert_eq!(a.claim_next(3).unwrap().unwrap().id, on_a);
    assert_eq!(b.claim_next(3).unwrap().unwrap().id, on_b);
    let live_b = b.create_live(&NewJob::file("/live/b"), "{}", 3).unwrap().id;
    b.add_sessions(live_b, &sessions(2)).unwrap();
    b.add_sessions(on_b, &sessions(2)).unwrap();

    // a restarts: its own job is re-run, b's are left alone.
    drop(a);
    let a = PgStore::connect(&url, 2).unwrap();
    a.register_node(&node("a", 4), 4).unwrap();
    let recovery = a.recover(true, 3, 5).unwrap();
    assert_eq!((recovery.rerun, recovery.queued), (vec![on_a], vec![on_a]));
    assert_eq!(a.job(on_b).unwrap().unwrap().state, JobState::Running, "another node's job is not recovered");
    assert_eq!(a.job(live_b).unwrap().unwrap().state, JobState::Running);

    // b falls silent (last seen at 3... its heartbeat at 3): taken over once seen before 10.
    a.heartbeat(20).unwrap();
    b.heartbeat(3).unwrap();
    assert_eq!(a.take_over_lost(3, 3, 21).unwrap(), Default::default(), "b was seen at 3, not before");
    let takeover = a.take_over_lost(10, 3, 21).unwrap();
    assert_eq!((takeover.requeued, takeover.failed, takeover.lost), (vec![on_b], vec![live_b], vec!["b".to_string()]));
    let requeued = a.job(on_b).unwrap().unwrap();
    assert_eq!((requeued.state, requeued.node.as_deref()), (JobState::Queued, Some("b")), "last run on b");
    assert_eq!(a.count_sessions(on_b, &SessionQuery::default()).unwrap(), 0, "its sessions go");
    let live = a.job(live_b).unwrap().unwrap();
    assert_eq!(live.state, JobState::Failed);
    assert!(live.error.as_deref().unwrap().starts_with("interrupted: its node b was lost"), "{:?}", live.error);
    assert_eq!(a.count_sessions(live_b, &SessionQuery::default()).unwrap(), 2, "a live job keeps its sessions");

    // b comes back: the job is not its own any more; what its run writes is refused.
    assert!(b.heartbeat(22).unwrap().is_empty(), "b runs nothing now");
    b.add_sessions(on_b, &sessions(3)).unwrap();
    b.record_progress(on_b, &Progress { percent: 50, ..Progress::default() }).unwrap();
    assert!(b.finish(on_b, &completed(3), 23).unwrap().is_none());
    assert_eq!(a.count_sessions(on_b, &SessionQuery::default()).unwrap(), 0, "no sessions of a superseded run");
    assert_eq!(a.job(on_b).unwrap().unwrap().progress, 0);

    // a runs it (claimed as its second attempt), then is lost twice more: failed, naming the nodes.
    let mut lost_by = vec!["b"];
    for (attempt, holder) in [(2, "a"), (3, "c")] {
        let store = PgStore::connect(&url, 1).unwrap();
        store.register_node(&node(holder, 30), 30).unwrap();
        while store.claim_next(31).unwrap().is_some_and(|j| j.id != on_b) {}
        assert_eq!(store.job(on_b).unwrap().unwrap().attempts, attempt);
        store.add_sessions(on_b, &sessions(1)).unwrap();
        let survivor = PgStore::connect(&url, 1).unwrap();
        survivor.register_node(&node("d", 40), 40).unwrap();
        let takeover = survivor.take_over_lost(35, 3, 41).unwrap();
        assert!(takeover.lost.contains(&holder.to_string()), "{takeover:?}");
        lost_by.push(holder);
    }
    let failed = a.job(on_b).unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    let error = failed.status.error.unwrap();
    assert!(error.starts_with("gave up after 3 attempts") && error.contains("b, a, c"), "{error}");
    assert_eq!(a.count_sessions(on_b, &SessionQuery::default()).unwrap(), 0);
}

/// A cancel asked for while the job's node was alive, the node then lost: the job ends
/// CANCELLED rather than running again.
#[test]
fn postgres_a_job_whose_node_is_lost_after_a_cancel_was_asked_ends_cancelled() {
    let Some(url) = pg::database("postgres_lost_cancel") else { return };
    let a = PgStore::connect(&url, 2).unwrap();
    a.register_node(&node("a", 1), 1).unwrap();
    let b = PgStore::connect(&url, 2).unwrap();
    b.register_node(&node("b", 1), 1).unwrap();
    let id = b.create_job(&NewJob::file("a.pcap"), 2).unwrap().id;
    b.claim_next(3).unwrap().unwrap();
    assert!(a.request_cancel(id).unwrap());
    a.heartbeat(20).unwrap();
    let takeover = a.take_over_lost(10, 3, 21).unwrap();
    assert_eq!(takeover.cancelled, [id]);
    assert_eq!(a.job(id).unwrap().unwrap().state, JobState::Cancelled);
}

#[test]
fn postgres_one_node_at_a_time_holds_the_sweepers_lock_and_a_dead_node_lets_it_go() {
    let Some(url) = pg::database("postgres_sweeper") else { return };
    let (a, b) = (PgStore::connect(&url, 2).unwrap(), PgStore::connect(&url, 2).unwrap());
    assert!(a.lock_sweeper().unwrap());
    assert!(a.lock_sweeper().unwrap(), "held already");
    assert!(!b.lock_sweeper().unwrap(), "another node sweeps");
    a.unlock_sweeper().unwrap();
    assert!(b.lock_sweeper().unwrap());
    drop(b);
    // The server lets the lock go once it sees the connection closed, a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !a.lock_sweeper().unwrap() {
        assert!(std::time::Instant::now() < deadline, "a node gone lets it go with its connection");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SQLite is one node: it always has it.
    let sqlite = SqliteStore::open(common::temp_dir("sweeper").join("callflow.db")).unwrap();
    assert!(sqlite.lock_sweeper().unwrap());
}

#[test]
fn a_directory_of_another_cluster_is_refused_naming_both_ids_and_the_directory() {
    let dir = common::temp_dir("volume");
    let (uploads, results) = (dir.join("uploads"), dir.join("results"));
    let first = SqliteStore::open(dir.join("one.db")).unwrap();
    let id = callflow_jobs::check_volume(&first, "one.db", &[&uploads, &results]).unwrap();
    assert_eq!((id.len(), first.cluster_id().unwrap()), (32, id.clone()), "made once, then the same");
    for d in [&uploads, &results] {
        assert_eq!(std::fs::read_to_string(d.join(callflow_jobs::CLUSTER_FILE)).unwrap().trim(), id);
    }
    assert_eq!(
        callflow_jobs::check_volume(&SqliteStore::open(dir.join("one.db")).unwrap(), "one.db", &[&uploads]).unwrap(),
        id
    );
    let other = SqliteStore::open(dir.join("two.db")).unwrap();
    let other_id = other.cluster_id().unwrap();
    assert_ne!(other_id, id);
    let err = callflow_jobs::check_volume(&other, "two.db", &[&uploads, &results]).unwrap_err().to_string();
    for part in [id.clone(), other_id, uploads.display().to_string(), "two.db".into()] {
        assert!(err.contains(&part), "{part} in {err}");
    }
    std::fs::write(dir.join("a-file"), b"x").unwrap();
    let err = callflow_jobs::check_volume(&first, "one.db", &[&dir.join("a-file/uploads")]).unwrap_err().to_string();
    assert!(err.starts_with("cannot write to") && err.contains("a-file/uploads"), "{err}");
}

#[test]
fn postgres_nodes_asking_together_for_a_new_databases_cluster_id_all_get_the_same_one() {
    let Some(url) = pg::database("postgres_cluster_id") else { return };
    let asks: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::connect(&url, 1).unwrap().cluster_id().unwrap())
        })
        .collect();
    let ids: Vec<String> = asks.into_iter().map(|a| a.join().unwrap()).collect();
    assert!(ids.iter().all(|id| *id == ids[0] && id.len() == 32), "{ids:?}");
}
