//! [`SqliteStore`]: the embedded [`JobStore`], one SQLite file (WAL mode) with versioned migrations.
//!
//! Sessions are stored twice over, deliberately: their summary fields in indexed columns
//! (job, kind, state, start, from, to, call_id) so that listing and filtering are index
//! lookups, and the whole session as a JSON document for the detail view. Deep pages are
//! found in the covering index first and only the page's rows are read
//! (`id IN (SELECT id ... LIMIT OFFSET)`); keyset paging with a [`SessionCursor`] avoids
//! even that.

use crate::eventlog::{EventIds, EventKind, NewEvent, StoredEvent};
use crate::store::{
    DatabaseErrorKind, JobQuery, JobStore, NodeInfo, NodeRow, Outcome, OwnJob, Progress, Recovery, SessionCursor,
    SessionQuery, SessionRow, StoreError,
};
use crate::{Job, JobId, JobRef, JobState, JobStatus, NewJob};
use callflow_model::{Session, SourceInfo, Subscriber, Timestamp};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The schema, one migration per version; `PRAGMA user_version` says how many have run.
/// Never edit a released migration: add the next one.
const MIGRATIONS: &[&str] = &[
    // 1: jobs and sessions.
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        input TEXT NOT NULL,
        label TEXT NOT NULL,
        owns_input INTEGER NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        completed_at INTEGER,
        progress INTEGER NOT NULL DEFAULT 0,
        packets INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        sessions INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        source TEXT,
        stats TEXT
    );
    CREATE INDEX jobs_by_state ON jobs(state, id);
    CREATE INDEX jobs_by_completion ON jobs(completed_at) WHERE completed_at IS NOT NULL;
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        session_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        from_uri TEXT NOT NULL,
        to_uri TEXT NOT NULL,
        call_id TEXT NOT NULL,
        messages INTEGER NOT NULL,
        media INTEGER NOT NULL,
        document TEXT NOT NULL
    );
    CREATE INDEX sessions_by_start ON sessions(job_id, start_ns);
    CREATE INDEX sessions_by_kind ON sessions(job_id, kind, start_ns);
    CREATE INDEX sessions_by_state ON sessions(job_id, state, start_ns);
    CREATE INDEX sessions_by_call_id ON sessions(job_id, call_id);
    CREATE INDEX sessions_by_from ON sessions(job_id, from_uri);
    CREATE INDEX sessions_by_to ON sessions(job_id, to_uri);
    CREATE INDEX sessions_by_session_id ON sessions(job_id, session_id);",
    // 2: a session looked up by its id alone (the HTTP API's /sessions/{id}).
    "CREATE INDEX sessions_by_bare_session_id ON sessions(session_id);",
    // 3: a completed job's subscriber view, the document's `subscribers` as JSON (NULL for
    // the jobs completed before it was kept).
    "ALTER TABLE jobs ADD COLUMN subscribers TEXT;",
    // 4: a live job's source, as the embedder described it (JSON); NULL for capture files.
    "ALTER TABLE jobs ADD COLUMN live TEXT;",
    // 5: nodes (issue 18): the node that runs or last ran each job, a cancel asked for on
    // another node, the nodes lost while it ran; the registered nodes; the cluster's id.
    "ALTER TABLE jobs ADD COLUMN node TEXT;
    ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN lost_nodes TEXT;
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        advertise_url TEXT NOT NULL,
        version TEXT NOT NULL,
        workers INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    );
    CREATE TABLE cluster (id TEXT NOT NULL);",
    // 6: login tokens (by digest) and their revocations, shared by the processes on one
    // database (see the tokens module).
    "CREATE TABLE login_tokens (digest BLOB PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX login_tokens_by_expiry ON login_tokens(expires_at);
    CREATE TABLE token_revocations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        digest BLOB NOT NULL,
        revoked_at INTEGER NOT NULL
    );",
    // 7: the event log (`crate::eventlog`): AUTOINCREMENT, so that an id is never handed
    // out again once the retention removed it. No foreign key: a job's deletion is an event.
    "CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        logged_at INTEGER NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX events_by_job ON events(job_id, id);
    CREATE INDEX events_by_time ON events(logged_at);",
    // 8: share links (by digest) and the session each opens, shared by the processes on
    // one database (see the tokens module).
    "CREATE TABLE share_links (
        digest BLOB PRIMARY KEY,
        job_id INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX share_links_by_expiry ON share_links(expires_at);",
    // 9: job ids become UUIDs (issue 18). `uuid` is what clients see; the jobs already
    // there keep answering at their number (`alias`), the jobs created from now on have
    // none. Events carry their job's UUID, since a deleted job's row is gone. The existing
    // jobs' UUIDs (v7, of their creation time) and the unique indexes come after this, in
    // `backfill_uuids`: UUIDs are made in Rust.
    "ALTER TABLE jobs ADD COLUMN uuid TEXT;
    ALTER TABLE jobs ADD COLUMN alias INTEGER;
    UPDATE jobs SET alias = id;
    ALTER TABLE events ADD COLUMN job_uuid TEXT;",
];

/// The migration (its version) after which [`backfill_uuids`] runs.
const UUID_MIGRATION: usize = 9;

/// Gives each job without a UUID one of its creation time, and each event its job's;
/// events of jobs no longer there (deleted before UUIDs) go, as no client could name them.
fn backfill_uuids(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let jobs: Vec<(i64, i64)> = {
        let mut stmt = tx.prepare("SELECT id, created_at FROM jobs WHERE uuid IS NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut update = tx.prepare("UPDATE jobs SET uuid = ?2 WHERE id = ?1")?;
    for (key, created_at) in jobs {
        update.execute(params![key, JobId::generate(key, created_at).uuid().to_string()])?;
    }
    tx.execute_batch(
        "UPDATE events SET job_uuid = (SELECT uuid FROM jobs WHERE jobs.id = events.job_id);
        DELETE FROM events WHERE job_uuid IS NULL;
        CREATE UNIQUE INDEX jobs_by_uuid ON jobs(uuid);
        CREATE UNIQUE INDEX jobs_by_alias ON jobs(alias) WHERE alias IS NOT NULL;",
    )
}

const JOB_COLUMNS: &str = "id, input, label, owns_input, state, created_at, started_at, completed_at, progress, \
                           packets, bytes, sessions, error, attempts, source, stats, live, node, uuid";
const SESSION_COLUMNS: &str =
    "id, session_id, kind, state, start_ns, end_ns, from_uri, to_uri, call_id, messages, media";

/// The embedded job store: one SQLite database file.
///
/// One connection behind a mutex for every change: SQLite serialises writers anyway, and
/// the statements are short. Queries that change nothing go to read connections (up to
/// `READERS`, a constant of this module), which WAL lets run beside the writer and each other, and which see every
/// change committed before they start. Other processes (`callflow-cli jobs list` while a
/// batch runs) may read the same file concurrently for the same reason; only one process
/// may run a manager on it.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The node registered (`JobStore::register_node`), which claims record.
    node: Mutex<Option<String>>,
    /// Read connections not in use, opened with the store.
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    /// The database file's device and inode when opened (`None` in memory), to tell that
    /// the path still names it ([`JobStore::check_writable`]).
    identity: Option<(u64, u64)>,
}

/// Read connections a store opens. A server's page of 100 sessions spent more time
/// waiting for the one connection than querying (p99 ~100 ms at 64 requests in flight);
/// two readers let both cores of the machine this is sized for run queries at once.
const READERS: usize = 2;

/// A read connection lent by [`SqliteStore::reader`]; given back when dropped. When every
/// reader is in use (or none could be opened) it is the writer's connection instead.
pub(crate) enum Reader<'a> {
    Pooled(Option<Connection>, &'a SqliteStore),
    Writer(MutexGuard<'a, Connection>),
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Reader::Pooled(conn, _) => conn.as_ref().expect("present until dropped"),
            Reader::Writer(guard) => guard,
        }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Reader::Pooled(conn, store) = self {
            if let Some(conn) = conn.take() {
                store.readers.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
            }
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The schema version this build migrates a database to.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// Opens (creating it and its directory if needed) and migrates the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Create { path: dir.to_path_buf(), source })?;
        }
        let mut conn = Connection::open(&path)?;
        // Another process may hold the lock for a moment (migrating, or writing).
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL: readers (listings, other processes) do not wait for the writer.
        // NORMAL: durable at each checkpoint, and a crash loses at most the last
        // transactions, never consistency; a job then is simply re-run.
        set_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        migrate(&mut conn)?;
        // A reader that cannot be opened (out of descriptors, say) is one fewer: the
        // writer's connection answers queries too.
        let readers = (0..READERS).filter_map(|_| open_reader(&path).ok()).collect();
        let identity = file_identity(&path).ok();
        Ok(SqliteStore { conn: Mutex::new(conn), node: Mutex::new(None), readers: Mutex::new(readers), path, identity })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn().query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// The node registered, if any.
    fn node(&self) -> Option<String> {
        self.node.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable (every change is a
        // transaction that rolled back), so a poisoned lock is taken over.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection for a query: a read connection that is free, else the writer's.
    pub(crate) fn reader(&self) -> Reader<'_> {
        match self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            Some(conn) => Reader::Pooled(Some(conn), self),
            None => Reader::Writer(self.conn()),
        }
    }
}

/// The device and inode of the file at `path`.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// A read-only connection to the database at `path`.
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    use rusqlite::OpenFlags;
    // Another connection to an in-memory database would be another, empty, database.
    if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
        return Err(rusqlite::Error::InvalidPath(path.to_path_buf()).into());
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Puts the database in WAL mode. Switching a new database into WAL needs it to itself,
/// and SQLite answers "database is locked" at once, without the busy handler, when a
/// second process opens it at the same moment (a batch run creating the database while
/// `jobs list` looks at it): so the switch is retried for as long as the busy timeout.
fn set_wal(conn: &Connection) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return Ok(other?),
        }
    }
}

/// SQLite's errors become the store's, classified, with SQLite's kept as the source.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        let kind = match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::DiskFull => DatabaseErrorKind::DiskFull,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => DatabaseErrorKind::Busy,
                ErrorCode::ConstraintViolation => DatabaseErrorKind::Constraint,
                _ => DatabaseErrorKind::Other,
            },
            _ => DatabaseErrorKind::Other,
        };
        StoreError::database(kind, e)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock before the version is read, so two processes opening
    // a new database at once (a batch run and a `jobs list`) cannot both migrate it.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::SchemaTooNew { found: version, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        if i + 1 == UUID_MIGRATION {
            backfill_uuids(&tx)?;
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

/// The job id of a row's key and UUID columns.
pub(crate) fn job_id(row: &Row<'_>, key: usize, uuid: usize) -> rusqlite::Result<JobId> {
    let text: String = row.get(uuid)?;
    let parsed = uuid::Uuid::parse_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(uuid, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(JobId::new(row.get(key)?, parsed))
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let state: String = row.get(4)?;
    let source: Option<String> = row.get(14)?;
    let stats: Option<String> = row.get(15)?;
    let source: Option<SourceInfo> = source.and_then(|s| serde_json::from_str(&s).ok());
    Ok(Job {
        status: JobStatus {
            id: job_id(row, 0, 18)?,
            label: row.get(2)?,
            // Only this module writes states, always through `as_str`.
            state: JobState::parse(&state).unwrap_or(JobState::Failed),
            created_at: row.get(5)?,
            started_at: row.get(6)?,
            completed_at: row.get(7)?,
            progress: row.get(8)?,
            packets: row.get::<_, i64>(9)? as u64,
            bytes: row.get::<_, i64>(10)? as u64,
            sessions: row.get::<_, i64>(11)? as u64,
            error: row.get(12)?,
            attempts: row.get(13)?,
            complete: source.as_ref().map(|s| s.complete),
            warnings: source.as_ref().map_or_else(Vec::new, |s| s.warnings.clone()),
            live: row.get(16)?,
            node: row.get(17)?,
        },
        input: PathBuf::from(row.get::<_, String>(1)?),
        owns_input: row.get(3)?,
        source,
        stats: stats.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

fn get_job(conn: &Connection, id: JobId) -> Result<Option<Job>, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row([id.key()], job_from_row).optional()?)
}

/// A serde enum from its string form (`"sip_call"`, `"COMPLETED"`).
fn enum_from_str<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

/// The WHERE clause and parameters of a session query's filters.
fn session_filter(id: JobId, q: &SessionQuery) -> (String, Vec<Value>) {
    let mut sql = String::from("job_id = ?");
    let mut params = vec![Value::Integer(id.key())];
    let mut eq = |column: &str, value: Option<String>| {
        if let Some(v) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            params.push(Value::Text(v));
        }
    };
    eq("kind", q.kind.map(|k| k.as_str().to_string()));
    eq("state", q.state.map(|s| s.as_str().to_string()));
    eq("call_id", q.call_id.clone());
    eq("from_uri", q.from.clone());
    eq("to_uri", q.to.clone());
    if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
        // A substring of the Call-ID, From or To; LIKE's wildcards in it are literal.
        let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        sql.push_str(" AND (call_id LIKE ? ESCAPE '\\' OR from_uri LIKE ? ESCAPE '\\' OR to_uri LIKE ? ESCAPE '\\')");
        for _ in 0..3 {
            params.push(Value::Text(format!("%{escaped}%")));
        }
    }
    if let Some(problem) = q.problem {
        // A problem: one flagged (docs/quality.md), an anomaly recorded, or a failed call.
        let test = "(COALESCE(json_array_length(document, '$.problems'), 0) > 0
             OR COALESCE(json_array_length(document, '$.anomalies'), 0) > 0 OR state = 'FAILED')";
        sql.push_str(&format!(" AND {}{test}", if problem { "" } else { "NOT " }));
    }
    if let Some(kind) = q.problem_kind {
        // The session lists its streams' problems too.
        sql.push_str(" AND EXISTS (SELECT 1 FROM json_each(document, '$.problems') WHERE value = ?)");
        params.push(Value::Text(kind.as_str().to_string()));
    }
    (sql, params)
}

/// The ORDER BY clause of `sort`, arrival breaking ties the same way in both directions
/// (standard SQL: the PostgreSQL store orders by it too).
pub(crate) fn session_order(sort: crate::SessionSort) -> String {
    let column = match sort.key {
        crate::SortKey::Start => "start_ns",
        crate::SortKey::Duration => "(end_ns - start_ns)",
        crate::SortKey::From => "from_uri",
        crate::SortKey::To => "to_uri",
        crate::SortKey::State => "state",
        crate::SortKey::Messages => "messages",
    };
    let direction = if sort.descending { " DESC" } else { "" };
    format!("{column}{direction}, id{direction}")
}

fn delete_sessions(tx: &Transaction<'_>, id: JobId) -> rusqlite::Result<usize> {
    tx.execute("DELETE FROM sessions WHERE job_id = ?1", [id.key()])
}

impl JobStore for SqliteStore {
    fn tokens(&self) -> Option<&dyn crate::tokens::TokenStore> {
        Some(self)
    }

    fn create_job(&self, new: &NewJob, now: i64) -> Result<Job, StoreError> {
        let conn = self.conn();
        // A NULL id is the next AUTOINCREMENT one.
        let uuid = new.id.map_or_else(|| JobId::fresh_uuid(now), JobId::uuid);
        conn.execute(
            "INSERT INTO jobs (id, input, label, owns_input, state, created_at, uuid) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                new.id.map(|id| id.key()),
                new.input.to_string_lossy(),
                new.label,
                new.owns_input,
                JobState::Queued.as_str(),
                now,
                uuid.to_string()
            ],
        )?;
        let id = JobId::new(conn.last_insert_rowid(), uuid);
        Ok(get_job(&conn, id)?.expect("the row just inserted"))
    }

    fn create_live(&self, new: &NewJob, live: &str, now: i64) -> Result<Job, StoreError> {
        let conn = self.conn();
        let uuid = new.id.map_or_else(|| JobId::fresh_uuid(now), JobId::uuid);
        conn.execute(
            "INSERT INTO jobs (id, input, label, owns_input, state, created_at, started_at, attempts, live, node, uuid)
             VALUES (?1, ?2, ?3, ?4, 'RUNNING', ?5, ?5, 1, ?6, ?7, ?8)",
            params![
                new.id.map(|id| id.key()),
                new.input.to_string_lossy(),
                new.label,
                new.owns_input,
                now,
                live,
                self.node(),
                uuid.to_string()
            ],
        )?;
        let id = JobId::new(conn.last_insert_rowid(), uuid);
        Ok(get_job(&conn, id)?.expect("the row just inserted"))
    }

    fn reserve_id(&self) -> Result<JobId, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // AUTOINCREMENT never hands out an id at or below the one sqlite_sequence keeps
        // for the table (the largest ever used; SQLite allows raising it): raising it by
        // one reserves that id, for this process and any later one.
        let last: i64 =
            tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'jobs'", [], |r| r.get(0))?;
        let id = last + 1;
        if tx.execute("UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'jobs'", [id])? == 0 {
            // No job was ever inserted: the table's row does not exist yet.
            tx.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('jobs', ?1)", [id])?;
        }
        tx.commit()?;
        Ok(JobId::generate(id, crate::now_millis()))
    }

    fn last_key(&self) -> Result<i64, StoreError> {
        // AUTOINCREMENT keeps the largest id ever used or reserved (see `reserve_id`).
        let sql = "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'jobs'";
        Ok(self.reader().query_row(sql, [], |r| r.get(0))?)
    }

    fn resolve(&self, by: JobRef) -> Result<Option<JobId>, StoreError> {
        let conn = self.reader();
        let found = match by {
            JobRef::Uuid(uuid) => conn
                .prepare_cached("SELECT id, uuid FROM jobs WHERE uuid = ?1")?
                .query_row([uuid.to_string()], |r| job_id(r, 0, 1)),
            JobRef::Number(n) => {
                conn.prepare_cached("SELECT id, uuid FROM jobs WHERE alias = ?1")?.query_row([n], |r| job_id(r, 0, 1))
            }
        };
        Ok(found.optional()?)
    }

    fn job_by_key(&self, key: i64) -> Result<Option<JobId>, StoreError> {
        let conn = self.reader();
        let found =
            conn.prepare_cached("SELECT id, uuid FROM jobs WHERE id = ?1")?.query_row([key], |r| job_id(r, 0, 1));
        Ok(found.optional()?)
    }

    fn claim_next(&self, now: i64) -> Result<Option<Job>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let sql = format!(
            "UPDATE jobs SET state = 'RUNNING', started_at = ?1, completed_at = NULL, attempts = attempts + 1,
                 progress = 0, packets = 0, bytes = 0, sessions = 0, error = NULL, source = NULL, stats = NULL,
                 subscribers = NULL, node = ?2, cancel_requested = 0
             WHERE id = (SELECT id FROM jobs WHERE state = 'QUEUED' ORDER BY id LIMIT 1)
             RETURNING {JOB_COLUMNS}"
        );
        let job = tx.query_row(&sql, params![now, self.node()], job_from_row).optional()?;
        if let Some(job) = &job {
            // Sessions of a run interrupted by a crash are replaced, not appended to.
            delete_sessions(&tx, job.id)?;
        }
        tx.commit()?;
        Ok(job)
    }

    fn record_progress(&self, id: JobId, p: &Progress) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "UPDATE jobs SET progress = ?2, packets = ?3, bytes = ?4, sessions = ?5 WHERE id = ?1 AND state = 'RUNNING'",
            )?
            .execute(params![id.key(), p.percent, p.packets as i64, p.bytes as i64, p.sessions as i64])?;
        Ok(())
    }

    fn add_sessions(&self, id: JobId, sessions: &[Arc<Session>]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO sessions (job_id, session_id, kind, state, start_ns, end_ns, from_uri, to_uri, call_id,
                     messages, media, document) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for s in sessions {
                let document = serde_json::to_string(&**s).expect("sessions serialize");
                insert.execute(params![
                    id.key(),
                    s.id,
                    s.kind.as_str(),
                    s.state.as_str(),
                    s.start.as_nanos(),
                    s.end.as_nanos(),
                    s.from,
                    s.to,
                    s.call_id,
                    s.messages.len() as i64,
                    s.media.len() as i64,
                    document
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn finish(&self, id: JobId, o: &Outcome, now: i64) -> Result<Option<Job>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let source = o.source.as_ref().map(|s| serde_json::to_string(s).expect("source serializes"));
        let stats = o.stats.as_ref().map(|s| serde_json::to_string(s).expect("stats serialize"));
        let subscribers = o.subscribers.as_ref().map(|s| serde_json::to_string(s).expect("subscribers serialize"));
        let changed = tx.execute(
            "UPDATE jobs SET state = ?2, completed_at = ?3, progress = ?4, packets = ?5, bytes = ?6, sessions = ?7,
                 error = ?8, source = ?9, stats = ?10, subscribers = ?11
             WHERE id = ?1 AND state = 'RUNNING'",
            params![
                id.key(),
                o.state.as_str(),
                now,
                o.progress.percent,
                o.progress.packets as i64,
                o.progress.bytes as i64,
                o.progress.sessions as i64,
                o.error,
                source,
                stats,
                subscribers
            ],
        )?;
        // A live job keeps what it stored whatever its end: its traffic cannot be read again.
        let live: bool = tx.query_row("SELECT live IS NOT NULL FROM jobs WHERE id = ?1", [id.key()], |r| r.get(0))?;
        if changed == 1 && o.state != JobState::Completed && !live {
            delete_sessions(&tx, id)?;
            tx.execute("UPDATE jobs SET sessions = 0 WHERE id = ?1", [id.key()])?;
        }
        let job = if changed == 1 { get_job(&tx, id)? } else { None };
        tx.commit()?;
        Ok(job)
    }

    fn cancel_queued(&self, id: JobId, now: i64) -> Result<Option<Job>, StoreError> {
        let conn = self.conn();
        let changed = conn.execute(
            "UPDATE jobs SET state = 'CANCELLED', completed_at = ?2 WHERE id = ?1 AND state = 'QUEUED'",
            params![id.key(), now],
        )?;
        if changed == 1 {
            get_job(&conn, id)
        } else {
            Ok(None)
        }
    }

    fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        get_job(&self.reader(), id)
    }

    fn jobs(&self, q: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let conn = self.reader();
        let limit = if q.limit == 0 { -1 } else { q.limit as i64 };
        let (filter, state) = match q.state {
            Some(s) => ("WHERE state = ?3", Some(s.as_str())),
            None => ("WHERE ?3 IS NULL", None),
        };
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs {filter} ORDER BY id DESC LIMIT ?1 OFFSET ?2");
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![limit, q.offset as i64, state], job_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count_jobs(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut counts = Vec::new();
        for row in rows {
            let (state, n) = row?;
            // Only this module writes states, always through `as_str`.
            if let Some(state) = JobState::parse(&state) {
                counts.push((state, n as u64));
            }
        }
        Ok(counts)
    }

    fn sessions(&self, id: JobId, q: &SessionQuery) -> Result<Vec<SessionRow>, StoreError> {
        let conn = self.reader();
        let (mut filter, mut values) = session_filter(id, q);
        if let Some(after) = q.after {
            filter.push_str(" AND (start_ns, id) > (?, ?)");
            values.push(Value::Integer(after.start_ns));
            values.push(Value::Integer(after.row));
        }
        let limit = if q.limit == 0 { -1 } else { q.limit as i64 };
        values.push(Value::Integer(limit));
        values.push(Value::Integer(q.offset as i64));
        let document = if q.documents { ", document" } else { "" };
        let order = session_order(q.sort);
        // The page is chosen from the index alone (in the default order); only its rows
        // are then read.
        let sql = format!(
            "SELECT {SESSION_COLUMNS}{document} FROM sessions WHERE id IN (
                 SELECT id FROM sessions WHERE {filter} ORDER BY {order} LIMIT ? OFFSET ?)
             ORDER BY {order}"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let kind: String = row.get(2)?;
            let state: String = row.get(3)?;
            let corrupt = |what: &str| StoreError::Corrupt { job: id, message: format!("unknown {what}") };
            let document = if q.documents {
                let text: String = row.get(11)?;
                Some(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt { job: id, message: e.to_string() })?)
            } else {
                None
            };
            out.push(SessionRow {
                cursor: SessionCursor { start_ns: row.get(4)?, row: row.get(0)? },
                id: row.get(1)?,
                kind: enum_from_str(&kind).ok_or_else(|| corrupt("session kind"))?,
                state: enum_from_str(&state).ok_or_else(|| corrupt("call state"))?,
                start: Timestamp::from_nanos(row.get(4)?),
                end: Timestamp::from_nanos(row.get(5)?),
                from: row.get(6)?,
                to: row.get(7)?,
                call_id: row.get(8)?,
                messages: row.get(9)?,
                media: row.get(10)?,
                document,
            });
        }
        Ok(out)
    }

    fn count_sessions(&self, id: JobId, q: &SessionQuery) -> Result<u64, StoreError> {
        let conn = self.reader();
        let (filter, values) = session_filter(id, q);
        let sql = format!("SELECT COUNT(*) FROM sessions WHERE {filter}");
        let n: i64 = conn.prepare_cached(&sql)?.query_row(rusqlite::params_from_iter(values), |r| r.get(0))?;
        Ok(n as u64)
    }

    fn session(&self, id: JobId, session_id: &str) -> Result<Option<Session>, StoreError> {
        let conn = self.reader();
        let text: Option<String> = conn
            .prepare_cached("SELECT document FROM sessions WHERE job_id = ?1 AND session_id = ?2 ORDER BY id LIMIT 1")?
            .query_row(params![id.key(), session_id], |r| r.get(0))
            .optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt { job: id, message: e.to_string() }))
            .transpose()
    }

    fn subscribers(&self, id: JobId) -> Result<Option<Vec<Subscriber>>, StoreError> {
        // Kept out of the job's columns: a large capture's view is read only when asked for.
        let text: Option<String> = self
            .reader()
            .prepare_cached("SELECT subscribers FROM jobs WHERE id = ?1")?
            .query_row([id.key()], |r| r.get(0))
            .optional()?
            .flatten();
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt { job: id, message: e.to_string() }))
            .transpose()
    }

    fn find_session(&self, session_id: &str) -> Result<Option<(JobId, Session)>, StoreError> {
        let conn = self.reader();
        let row: Option<(JobId, String)> = conn
            .prepare_cached(
                "SELECT s.job_id, j.uuid, s.document FROM sessions s JOIN jobs j ON j.id = s.job_id
                 WHERE s.session_id = ?1 ORDER BY s.job_id DESC, s.id LIMIT 1",
            )?
            .query_row([session_id], |r| Ok((job_id(r, 0, 1)?, r.get(2)?)))
            .optional()?;
        row.map(|(job, text)| {
            serde_json::from_str(&text)
                .map(|s| (job, s))
                .map_err(|e| StoreError::Corrupt { job, message: e.to_string() })
        })
        .transpose()
    }

    fn session_jobs(&self, session_id: &str, limit: usize) -> Result<Vec<JobId>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT j.id, j.uuid FROM jobs j
             WHERE j.id IN (SELECT DISTINCT job_id FROM sessions WHERE session_id = ?1 ORDER BY job_id LIMIT ?2)
             ORDER BY j.id",
        )?;
        let rows = stmt.query_map(params![session_id, limit as i64], |r| job_id(r, 0, 1))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_finished(&self, id: JobId) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // Sessions go by the foreign key's ON DELETE CASCADE.
        let n =
            tx.execute("DELETE FROM jobs WHERE id = ?1 AND state IN ('COMPLETED', 'FAILED', 'CANCELLED')", [id.key()])?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn finished_before(&self, cutoff: i64) -> Result<Vec<Job>, StoreError> {
        let conn = self.reader();
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE completed_at IS NOT NULL AND completed_at < ?1
                 AND state IN ('COMPLETED', 'FAILED', 'CANCELLED') ORDER BY completed_at"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([cutoff], job_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        let unwritable = |reason: String| StoreError::Unwritable { path: self.path.clone(), reason };
        if let Some(opened) = self.identity {
            // SQLite keeps writing to a deleted file through its open descriptor, and
            // nothing of it survives a restart: the path must still name the file opened.
            match file_identity(&self.path) {
                Ok(now) if now == opened => {}
                Ok(_) => {
                    return Err(unwritable("the file was replaced by another one since callflowd opened it".into()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(unwritable("the file was deleted since callflowd opened it".into()));
                }
                Err(e) => return Err(unwritable(e.to_string())),
            }
            // Permissions or a read-only mount do not touch the descriptor already open,
            // but the next start could not write: refused now, not then.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(|e| unwritable(format!("it cannot be opened for writing: {e}")))?;
        }
        // A write the disk must take (a full disk fails it): the schema version, as it is.
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        Ok(())
    }

    fn append_events(&self, events: &[NewEvent], now: i64) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut ids = Vec::with_capacity(events.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (job_id, job_uuid, kind, logged_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for e in events {
                insert.execute(params![e.job.key(), e.job.uuid().to_string(), e.kind.as_str(), now, e.payload])?;
                ids.push(tx.last_insert_rowid() as u64);
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    fn events_after(&self, after: u64, job: Option<JobId>, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT id, job_id, job_uuid, kind, logged_at, payload FROM events
             WHERE id > ?1 AND (?2 IS NULL OR job_id = ?2) ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![after as i64, job.map(|j| j.key()), limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, job_id(r, 1, 2)?, r.get::<_, String>(3)?, r.get(4)?, r.get(5)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, job, kind, logged_at, payload) = row?;
            let kind = EventKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt { job, message: format!("unknown event kind {kind}") })?;
            out.push(StoredEvent { id: id as u64, job, kind, logged_at, payload });
        }
        Ok(out)
    }

    fn event_ids(&self) -> Result<EventIds, StoreError> {
        let conn = self.reader();
        let (newest, oldest): (i64, Option<i64>) = conn.query_row(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'events'),
                    (SELECT MIN(id) FROM events)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let newest = newest.max(0) as u64;
        Ok(EventIds { newest, oldest: oldest.map_or(newest + 1, |o| o as u64) })
    }

    fn prune_events(&self, before: i64, keep: u64) -> Result<u64, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM events WHERE logged_at < ?1 OR id <= (SELECT MAX(id) FROM events) - ?2",
            params![before, keep.min(i64::MAX as u64) as i64],
        )?;
        Ok(n as u64)
    }

    fn recover(&self, resume: bool, max_attempts: u32, now: i64) -> Result<Recovery, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let ids = |tx: &Transaction<'_>, state: &str| -> rusqlite::Result<Vec<(JobId, u32)>> {
            let mut stmt = tx.prepare("SELECT id, uuid, attempts FROM jobs WHERE state = ?1 ORDER BY id")?;
            let rows = stmt.query_map([state], |r| Ok((job_id(r, 0, 1)?, r.get(2)?)))?;
            rows.collect()
        };
        // A live job cannot be run again (its traffic is gone): it ends, keeping its sessions.
        let mut recovery = Recovery::default();
        let live: Vec<JobId> = {
            let mut stmt =
                tx.prepare("SELECT id, uuid FROM jobs WHERE state = 'RUNNING' AND live IS NOT NULL ORDER BY id")?;
            let rows = stmt.query_map([], |r| job_id(r, 0, 1))?;
            rows.collect::<Result<_, _>>()?
        };
        for &id in &live {
            tx.execute(
                "UPDATE jobs SET state = 'FAILED', completed_at = ?2,
                     error = 'interrupted: callflowd stopped while this live job was running; the sessions found until then are kept'
                 WHERE id = ?1",
                params![id.key(), now],
            )?;
            recovery.interrupted.push(id);
        }
        let running = ids(&tx, "RUNNING")?;
        for &(id, attempts) in &running {
            delete_sessions(&tx, id)?;
            if resume && attempts >= max_attempts {
                // Interrupted at every start: most likely the job itself stops the process
                // (a crash, the memory killer), which resuming it would only repeat.
                let error = format!(
                    "gave up after {attempts} attempts: callflowd stopped while this job was running, each time \
                     (processing.max_attempts = {max_attempts}); the capture may be what crashes it"
                );
                tx.execute(
                    "UPDATE jobs SET state = 'FAILED', completed_at = ?2, sessions = 0, error = ?3 WHERE id = ?1",
                    params![id.key(), now, error],
                )?;
                recovery.gave_up.push(id);
            } else if resume {
                tx.execute(
                    "UPDATE jobs SET state = 'QUEUED', progress = 0, packets = 0, bytes = 0, sessions = 0 WHERE id = ?1",
                    [id.key()],
                )?;
                recovery.rerun.push(id);
            } else {
                tx.execute(
                    "UPDATE jobs SET state = 'FAILED', completed_at = ?2, sessions = 0,
                         error = 'interrupted: callflowd stopped while this job was running' WHERE id = ?1",
                    params![id.key(), now],
                )?;
                recovery.interrupted.push(id);
            }
        }
        recovery.queued = ids(&tx, "QUEUED")?.into_iter().map(|(id, _)| id).collect();
        tx.commit()?;
        Ok(recovery)
    }

    // One node: `recover` takes every RUNNING job (the directory lock makes this process
    // the only one), so there is nothing of another node to take over.

    fn register_node(&self, node: &NodeInfo, now: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO nodes (name, advertise_url, version, workers, started_at, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (name) DO UPDATE SET advertise_url = excluded.advertise_url, version = excluded.version,
                 workers = excluded.workers, started_at = excluded.started_at, last_seen = excluded.last_seen",
            params![node.name, node.advertise_url, node.version, node.workers, node.started_at, now],
        )?;
        *self.node.lock().unwrap_or_else(|e| e.into_inner()) = Some(node.name.clone());
        Ok(())
    }

    fn heartbeat(&self, now: i64) -> Result<Vec<OwnJob>, StoreError> {
        let Some(node) = self.node() else { return Err(StoreError::Unsupported("a heartbeat before registering")) };
        let conn = self.conn();
        conn.prepare_cached("UPDATE nodes SET last_seen = MAX(last_seen, ?2) WHERE name = ?1")?
            .execute(params![node, now])?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, uuid, attempts, cancel_requested FROM jobs WHERE state = 'RUNNING' AND node = ?1 ORDER BY id",
        )?;
        let rows =
            stmt.query_map([&node], |r| Ok(OwnJob { id: job_id(r, 0, 1)?, attempts: r.get(2)?, cancel: r.get(3)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT name, advertise_url, version, workers, started_at, last_seen,
                 (SELECT COUNT(*) FROM jobs WHERE state = 'RUNNING' AND node = nodes.name)
             FROM nodes ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(NodeRow {
                info: NodeInfo {
                    name: r.get(0)?,
                    advertise_url: r.get(1)?,
                    version: r.get(2)?,
                    workers: r.get(3)?,
                    started_at: r.get(4)?,
                },
                last_seen: r.get(5)?,
                running: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn hand_back(&self, ids: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut handed = Vec::new();
        for &id in ids {
            let changed = tx.execute(
                "UPDATE jobs SET state = 'QUEUED', attempts = MAX(attempts - 1, 0), progress = 0, packets = 0,
                     bytes = 0, sessions = 0
                 WHERE id = ?1 AND state = 'RUNNING' AND live IS NULL",
                [id.key()],
            )?;
            if changed == 1 {
                delete_sessions(&tx, id)?;
                handed.push(id);
            }
        }
        tx.commit()?;
        Ok(handed)
    }

    fn cluster_id(&self) -> Result<String, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: Option<String> = tx.query_row("SELECT id FROM cluster LIMIT 1", [], |r| r.get(0)).optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                let id = crate::volume::new_cluster_id()
                    .map_err(|source| StoreError::Create { path: PathBuf::from("/dev/urandom"), source })?;
                tx.execute("INSERT INTO cluster (id) VALUES (?1)", [&id])?;
                id
            }
        };
        tx.commit()?;
        Ok(id)
    }

    fn request_cancel(&self, id: JobId) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND state = 'RUNNING'", [id.key()])?;
        Ok(n == 1)
    }
}
