//! [`PgStore`]: the [`JobStore`] on a PostgreSQL server, for several callflowd nodes sharing one queue.
//!
//! The same two tables as [`SqliteStore`](crate::SqliteStore) (jobs, and sessions with
//! their summary columns indexed beside the whole session as `jsonb`), reached through a
//! bounded pool of tokio-postgres connections (deadpool). `JobStore` is synchronous and is
//! called from the manager's worker threads and from the server's blocking pool, so the
//! store owns a small tokio runtime of its own (two threads driving the connections) and
//! each call waits for its future there: `block_on` from a thread outside any runtime, or,
//! from a thread of another runtime (where `block_on` would panic), from a scoped thread
//! spawned for the call.
//!
//! Migrations are numbered rows of `callflow_schema`, applied at start while holding
//! `pg_advisory_lock`, so nodes starting together on an empty database migrate it once; a
//! database whose schema is newer than this build is refused, naming both versions.
//!
//! The URL is libpq's (`postgres://user:password@host:port/dbname?sslmode=...`). TLS is
//! rustls: `sslmode=prefer` (the default) and `require` encrypt without checking the
//! server's certificate, as libpq does; `verify-ca` checks it against the PEM file
//! `sslrootcert` names, and `verify-full` checks the host name as well; `disable` never
//! encrypts.
//!
//! Nodes (see the crate docs): the `nodes` table holds each node's registration and
//! heartbeat, jobs their `node`, `cancel_requested` and `lost_nodes`; a heartbeat is one
//! statement (the node's row updated in a CTE, its RUNNING jobs read back), a takeover one
//! transaction over the lost nodes' jobs locked with `SKIP LOCKED`.
//!
//! Strings PostgreSQL cannot store (a NUL character, which `text` and `jsonb` both refuse,
//! and which a hostile capture can put in a SIP header) are stored with U+FFFD in its place.

use crate::eventlog::{EventIds, EventKind, EventListener, EventWake, NewEvent, StoredEvent};
use crate::store::{
    DatabaseErrorKind, JobQuery, JobStore, NodeInfo, NodeRow, Outcome, OwnJob, Progress, Recovery, SessionCursor,
    SessionQuery, SessionRow, StoreError, Takeover,
};
use crate::{Job, JobId, JobRef, JobState, JobStatus, NewJob};
use callflow_config::redact_url;
use callflow_model::{CallState, Session, SourceInfo, Subscriber, Timestamp};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// The schema, one migration per version; `callflow_schema` has a row per version applied.
/// Never edit a released migration: add the next one.
const MIGRATIONS: &[&str] = &[
    // 1: jobs and sessions, as SQLite's version 4 has them, plus the node running or last
    // running a job (set by the nodes of issue 18; NULL on one node).
    "CREATE TABLE jobs (
        id BIGSERIAL PRIMARY KEY,
        input TEXT NOT NULL,
        label TEXT NOT NULL,
        owns_input BOOLEAN NOT NULL,
        state TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        started_at BIGINT,
        completed_at BIGINT,
        progress SMALLINT NOT NULL DEFAULT 0,
        packets BIGINT NOT NULL DEFAULT 0,
        bytes BIGINT NOT NULL DEFAULT 0,
        sessions BIGINT NOT NULL DEFAULT 0,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        source JSONB,
        stats JSONB,
        subscribers JSONB,
        live TEXT,
        node TEXT
    );
    CREATE INDEX jobs_by_state ON jobs(state, id);
    CREATE INDEX jobs_by_completion ON jobs(completed_at) WHERE completed_at IS NOT NULL;
    CREATE TABLE sessions (
        id BIGSERIAL PRIMARY KEY,
        job_id BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        session_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        start_ns BIGINT NOT NULL,
        end_ns BIGINT NOT NULL,
        from_uri TEXT NOT NULL,
        to_uri TEXT NOT NULL,
        call_id TEXT NOT NULL,
        messages INTEGER NOT NULL,
        media INTEGER NOT NULL,
        document JSONB NOT NULL
    );
    CREATE INDEX sessions_by_start ON sessions(job_id, start_ns, id);
    CREATE INDEX sessions_by_kind ON sessions(job_id, kind, start_ns, id);
    CREATE INDEX sessions_by_state ON sessions(job_id, state, start_ns, id);
    CREATE INDEX sessions_by_call_id ON sessions(job_id, call_id);
    CREATE INDEX sessions_by_from ON sessions(job_id, from_uri);
    CREATE INDEX sessions_by_to ON sessions(job_id, to_uri);
    CREATE INDEX sessions_by_session_id ON sessions(session_id, job_id);",
    // 2: nodes (issue 18): a cancel asked for on another node, the nodes lost while a job
    // ran; the registered nodes and their heartbeats; the cluster's id.
    "ALTER TABLE jobs ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false;
    ALTER TABLE jobs ADD COLUMN lost_nodes TEXT;
    CREATE INDEX jobs_running_by_node ON jobs(node) WHERE state = 'RUNNING';
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        advertise_url TEXT NOT NULL,
        version TEXT NOT NULL,
        workers INTEGER NOT NULL,
        started_at BIGINT NOT NULL,
        last_seen BIGINT NOT NULL
    );
    CREATE TABLE cluster (id TEXT NOT NULL);",
    // 3: login tokens (by digest) and their revocations, shared by the nodes (see the
    // tokens module).
    "CREATE TABLE login_tokens (digest BYTEA PRIMARY KEY, expires_at BIGINT NOT NULL);
    CREATE INDEX login_tokens_by_expiry ON login_tokens(expires_at);
    CREATE TABLE token_revocations (
        seq BIGSERIAL PRIMARY KEY,
        digest BYTEA NOT NULL,
        revoked_at BIGINT NOT NULL
    );
    CREATE INDEX token_revocations_by_time ON token_revocations(revoked_at);",
    // 4: the event log (`crate::eventlog`); no foreign key: a job's deletion is an event.
    "CREATE TABLE events (
        id BIGSERIAL PRIMARY KEY,
        job_id BIGINT NOT NULL,
        kind TEXT NOT NULL,
        logged_at BIGINT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX events_by_job ON events(job_id, id);
    CREATE INDEX events_by_time ON events(logged_at);",
    // 5: share links (by digest) and the session each opens, shared by the nodes (see the
    // tokens module).
    "CREATE TABLE share_links (
        digest BYTEA PRIMARY KEY,
        job_id BIGINT NOT NULL,
        session_id TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX share_links_by_expiry ON share_links(expires_at);",
    // 6: job ids become UUIDs, as SQLite's version 9 (see there); the existing jobs'
    // UUIDs and the unique indexes come after this, in `backfill_uuids`.
    "ALTER TABLE jobs ADD COLUMN uuid uuid;
    ALTER TABLE jobs ADD COLUMN alias BIGINT;
    UPDATE jobs SET alias = id;
    ALTER TABLE events ADD COLUMN job_uuid uuid;",
];

/// The migration (its version) after which [`backfill_uuids`] runs.
const UUID_MIGRATION: usize = 6;

/// Gives each job without a UUID one of its creation time (v7, made here: PostgreSQL
/// before 18 has no `uuidv7()`), and each event its job's; events of jobs no longer there
/// go, as no client could name them.
async fn backfill_uuids(tx: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
    let rows = tx.query("SELECT id, created_at FROM jobs WHERE uuid IS NULL", &[]).await?;
    let mut keys = Vec::with_capacity(rows.len());
    let mut uuids = Vec::with_capacity(rows.len());
    for row in rows {
        let (key, created_at): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        keys.push(key);
        uuids.push(JobId::generate(key, created_at).uuid());
    }
    tx.execute(
        "UPDATE jobs SET uuid = u.uuid FROM UNNEST($1::int8[], $2::uuid[]) AS u(id, uuid) WHERE jobs.id = u.id",
        &[&keys, &uuids],
    )
    .await?;
    tx.batch_execute(
        "UPDATE events SET job_uuid = jobs.uuid FROM jobs WHERE jobs.id = events.job_id;
        DELETE FROM events WHERE job_uuid IS NULL;
        CREATE UNIQUE INDEX jobs_by_uuid ON jobs(uuid);
        CREATE UNIQUE INDEX jobs_by_alias ON jobs(alias) WHERE alias IS NOT NULL;",
    )
    .await?;
    Ok(())
}

/// The key of the transaction-level advisory lock every append to the event log takes
/// ("cfevents" in ASCII): ids are drawn and committed one transaction at a time, so that a
/// node that sees an id committed knows every smaller id is committed too (or never will
/// be), and reading the log from the last id it saw misses nothing.
const EVENT_LOCK: i64 = 0x6366_6576_656e_7473;

/// The channel events are announced on: the payload is the newest id committed.
const EVENT_CHANNEL: &str = "callflow_events";

/// The `application_name` of a listener's connection (for `pg_stat_activity`).
pub const LISTENER_NAME: &str = "callflowd events";

/// The key of the advisory lock held while migrating ("callflow" in ASCII).
const MIGRATION_LOCK: i64 = 0x6361_6c6c_666c_6f77;
/// The key of the advisory lock the retention sweeper holds ("cf sweep").
const SWEEP_LOCK: i64 = 0x6366_2073_7765_6570;

const JOB_COLUMNS: &str = "id, input, label, owns_input, state, created_at, started_at, completed_at, progress, \
                           packets, bytes, sessions, error, attempts, source::text, stats::text, live, node, uuid";
const SESSION_COLUMNS: &str =
    "id, session_id, kind, state, start_ns, end_ns, from_uri, to_uri, call_id, messages, media";

/// The job store on a PostgreSQL server (`[storage] database = "postgres://..."`).
pub struct PgStore {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The URL without its password, for messages.
    display: String,
    /// The node registered (`JobStore::register_node`): claims record it, recovery and a
    /// run's writes are limited to its jobs.
    node: std::sync::Mutex<Option<String>>,
    /// The connection holding the sweeper's advisory lock, while this node holds it.
    sweeper: std::sync::Mutex<Option<deadpool_postgres::Object>>,
    /// How to connect, for the event listener's connection (outside the pool).
    config: tokio_postgres::Config,
    tls: RustlsConnect,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.display).finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The last handle may go on an async thread (a server's), where waiting for the
        // runtime's threads is not allowed: they are left to stop on their own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgStore {
    /// The schema version this build migrates a database to.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    /// Connects to the server at `url` with at most `pool_size` connections, and migrates
    /// its schema (under an advisory lock) or refuses one newer than this build.
    pub fn connect(url: &str, pool_size: usize) -> Result<PgStore, StoreError> {
        let (config, tls) = parse_url(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("callflow-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::database(DatabaseErrorKind::Other, e))?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = {
            // The pool's timeouts need the runtime they run on.
            let _enter = runtime.enter();
            Pool::builder(manager)
                .max_size(pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(30)))
                .create_timeout(Some(Duration::from_secs(10)))
                .recycle_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| StoreError::Config(format!("connection pool: {e}")))?
        };
        let store = PgStore {
            runtime: Some(runtime),
            pool,
            display: redact_url(url),
            node: std::sync::Mutex::new(None),
            sweeper: std::sync::Mutex::new(None),
            config,
            tls,
        };
        store.run(store.migrate())?;
        Ok(store)
    }

    /// The URL, its password left out.
    pub fn display_url(&self) -> &str {
        &self.display
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client.query_one("SELECT COALESCE(MAX(version), 0) FROM callflow_schema", &[]).await?;
            Ok(row.try_get(0)?)
        })
    }

    /// Waits for `fut` on the store's runtime.
    pub(crate) fn run<T: Send>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        let runtime = self.runtime.as_ref().expect("present until dropped");
        if tokio::runtime::Handle::try_current().is_ok() {
            // A thread of another runtime (a server's blocking pool, or a test's): its
            // runtime's context forbids `block_on` on some of them, so a thread of no
            // runtime waits instead.
            std::thread::scope(|s| s.spawn(|| runtime.block_on(fut)).join())
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        } else {
            runtime.block_on(fut)
        }
    }

    /// The node registered, if any.
    fn node(&self) -> Option<String> {
        self.node.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // A session-level lock: it outlives the transactions below, and another node
        // starting now waits here, then finds the schema migrated.
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
        let result = migrate_locked(&mut client).await;
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
        result?;
        unlocked?;
        Ok(())
    }
}

async fn migrate_locked(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    client.batch_execute("CREATE TABLE IF NOT EXISTS callflow_schema (version BIGINT PRIMARY KEY)").await?;
    let version: i64 =
        client.query_one("SELECT COALESCE(MAX(version), 0) FROM callflow_schema", &[]).await?.try_get(0)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::SchemaTooNew { found: version, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        if i + 1 == UUID_MIGRATION {
            backfill_uuids(&tx).await?;
        }
        tx.execute("INSERT INTO callflow_schema (version) VALUES ($1)", &[&(i as i64 + 1)]).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// The event listener: a connection of its own that `LISTEN`s, hands each notification's id
/// to `wake`, and when the connection fails (the server restarted, the backend terminated)
/// connects again, pausing from 50 ms doubling to 2 s, and calls `wake(None)` once listening
/// again, so the caller reads what was logged meanwhile.
async fn listen_loop(
    mut config: tokio_postgres::Config,
    tls: RustlsConnect,
    wake: EventWake,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    config.application_name(LISTENER_NAME);
    let mut pause = Duration::from_millis(50);
    loop {
        let session = listen_once(&config, &tls, &wake, &mut pause);
        tokio::select! {
            _ = session => {}
            _ = &mut stop => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut stop => return,
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// One listening connection, until it fails.
async fn listen_once(config: &tokio_postgres::Config, tls: &RustlsConnect, wake: &EventWake, pause: &mut Duration) {
    let Ok((client, mut connection)) = config.connect(tls.clone()).await else { return };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<u64>>();
    // The connection is driven here, its notifications forwarded; it ends when the server
    // closes it or it fails.
    let driver = async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().parse().ok());
            }
        }
    };
    let listening = async {
        if client.batch_execute(&format!("LISTEN {EVENT_CHANNEL}")).await.is_err() {
            return;
        }
        *pause = Duration::from_millis(50);
        // Listening from here: whatever was logged before is read by the caller.
        wake(None);
        while let Some(id) = rx.recv().await {
            // A payload that is not an id (sent by someone else): read the log anyway.
            wake(id);
        }
    };
    tokio::select! {
        _ = driver => {}
        _ = listening => {}
    }
}

/// How the server's certificate is checked, from `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    /// Encrypt, accept any certificate (`prefer`, `require`).
    Nothing,
    /// Check the chain against `sslrootcert` (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// tokio-postgres's configuration and the TLS connector, from a libpq URL. tokio-postgres
/// knows `disable`, `prefer` and `require` only, so `sslmode` and `sslrootcert` are taken
/// out of the URL and applied here.
fn parse_url(url: &str) -> Result<(tokio_postgres::Config, RustlsConnect), StoreError> {
    let bad = |what: String| StoreError::Config(format!("database URL {}: {what}", redact_url(url)));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut sslmode, mut rootcert) = (String::from("prefer"), None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => sslmode = v.to_string(),
            Some(("sslrootcert", v)) => rootcert = Some(PathBuf::from(percent_decode(v))),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| bad(e.to_string()))?;
    let (mode, verify) = match sslmode.as_str() {
        "disable" => (tokio_postgres::config::SslMode::Disable, Verify::Nothing),
        "allow" | "prefer" => (tokio_postgres::config::SslMode::Prefer, Verify::Nothing),
        "require" => (tokio_postgres::config::SslMode::Require, Verify::Nothing),
        "verify-ca" => (tokio_postgres::config::SslMode::Require, Verify::Chain),
        "verify-full" => (tokio_postgres::config::SslMode::Require, Verify::Full),
        other => {
            return Err(bad(format!(
                "unknown sslmode `{other}` (disable, allow, prefer, require, verify-ca or verify-full)"
            )))
        }
    };
    config.ssl_mode(mode);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("callflowd");
    }
    let tls = tls_config(verify, rootcert.as_deref()).map_err(bad)?;
    Ok((config, RustlsConnect(Arc::new(tls))))
}

/// `%XX` escapes decoded (a path in the URL's query).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

use tokio_rustls::rustls;

fn tls_config(verify: Verify, rootcert: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Verify::Chain | Verify::Full => {
            let path = rootcert.ok_or("sslmode verify-ca and verify-full need sslrootcert=<PEM file>")?;
            let mut roots = rustls::RootCertStore::empty();
            let certs =
                CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("sslrootcert {}: no certificate in it", path.display()));
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(RootedCertificate { webpki, names: verify == Verify::Full }))
                .with_no_client_auth()
        }
    };
    Ok(config)
}

/// `sslmode=require`: the connection is encrypted, the server's certificate not checked
/// (libpq's meaning), though its handshake signatures still are.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` / `verify-full`: the chain must lead to `sslrootcert`; the name must match
/// the host only for `verify-full`.
#[derive(Debug)]
struct RootedCertificate {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    names: bool,
}

impl ServerCertVerifier for RootedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError;
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// tokio-postgres's TLS hook, on tokio-rustls.
#[derive(Clone)]
struct RustlsConnect(Arc<rustls::ClientConfig>);

/// One connection's TLS handshake, to the host it was made for.
struct RustlsConnector {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// A TLS connection to the server.
struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for RustlsConnect
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnector;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnector, Self::Error> {
        Ok(RustlsConnector { config: self.0.clone(), name: ServerName::try_from(domain.to_string())? })
    }
}

impl<S> tokio_postgres::tls::TlsConnect<S> for RustlsConnector
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = std::io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

impl<S> tokio_postgres::tls::TlsStream for RustlsStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        // SCRAM without channel binding: the server's certificate hash would need a
        // digest crate for one feature the server does not require.
        tokio_postgres::tls::ChannelBinding::none()
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// PostgreSQL's errors become the store's, classified, with PostgreSQL's kept as the source.
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        use tokio_postgres::error::SqlState;
        let kind = match e.code() {
            Some(c) if *c == SqlState::DISK_FULL => DatabaseErrorKind::DiskFull,
            Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::FOREIGN_KEY_VIOLATION => {
                DatabaseErrorKind::Constraint
            }
            Some(c) if c.code().starts_with("08") || c.code().starts_with("57P") => DatabaseErrorKind::Unavailable,
            Some(_) => DatabaseErrorKind::Other,
            None if e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()) => {
                DatabaseErrorKind::Unavailable
            }
            None => DatabaseErrorKind::Other,
        };
        StoreError::database(kind, e)
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => e.into(),
        other => StoreError::database(DatabaseErrorKind::Unavailable, other),
    }
}

/// `s` with every NUL character replaced by U+FFFD: PostgreSQL's `text` refuses NUL.
fn storable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}").into()
    } else {
        s.into()
    }
}

/// A JSON text with every `\u0000` escape replaced by `\ufffd`: `jsonb` refuses NUL.
fn storable_json(json: String) -> String {
    if !json.contains("\\u0000") {
        return json;
    }
    let mut out = String::with_capacity(json.len());
    let mut chars = json.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        // An escape: `\u0000` is the one to replace; any other (`\\` included) is copied
        // whole, so that a backslash it escapes is never taken for the start of one.
        if json[i..].starts_with("\\u0000") {
            out.push_str("\\ufffd");
            for _ in 0..5 {
                chars.next();
            }
        } else {
            out.push(c);
            if let Some((_, next)) = chars.next() {
                out.push(next);
            }
        }
    }
    out
}

fn json<T: serde::Serialize>(value: &T) -> String {
    storable_json(serde_json::to_string(value).expect("store documents serialize"))
}

/// The job id of a row's key and UUID columns.
pub(crate) fn job_id(row: &Row, key: usize, uuid: usize) -> Result<JobId, StoreError> {
    Ok(JobId::new(row.try_get(key)?, row.try_get(uuid)?))
}

fn job_from_row(row: &Row) -> Result<Job, StoreError> {
    let state: String = row.try_get(4)?;
    let source: Option<String> = row.try_get(14)?;
    let stats: Option<String> = row.try_get(15)?;
    let source: Option<SourceInfo> = source.and_then(|s| serde_json::from_str(&s).ok());
    Ok(Job {
        status: JobStatus {
            id: job_id(row, 0, 18)?,
            label: row.try_get(2)?,
            // Only this module writes states, always through `as_str`.
            state: JobState::parse(&state).unwrap_or(JobState::Failed),
            created_at: row.try_get(5)?,
            started_at: row.try_get(6)?,
            completed_at: row.try_get(7)?,
            progress: row.try_get::<_, i16>(8)?.clamp(0, 100) as u8,
            packets: row.try_get::<_, i64>(9)? as u64,
            bytes: row.try_get::<_, i64>(10)? as u64,
            sessions: row.try_get::<_, i64>(11)? as u64,
            error: row.try_get(12)?,
            attempts: row.try_get::<_, i32>(13)?.max(0) as u32,
            complete: source.as_ref().map(|s| s.complete),
            warnings: source.as_ref().map_or_else(Vec::new, |s| s.warnings.clone()),
            live: row.try_get(16)?,
            node: row.try_get(17)?,
        },
        input: PathBuf::from(row.try_get::<_, String>(1)?),
        owns_input: row.try_get(3)?,
        source,
        stats: stats.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

async fn get_job(client: &impl GenericClient, id: JobId) -> Result<Option<Job>, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
    let stmt = client.prepare_cached(&sql).await?;
    client.query_opt(&stmt, &[&id.key()]).await?.map(|r| job_from_row(&r)).transpose()
}

/// A serde enum from its string form (`"sip_call"`, `"COMPLETED"`).
fn enum_from_str<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

/// One parameter of a built query.
enum Param {
    Int(i64),
    Text(String),
    Limit(Option<i64>),
}

impl Param {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Int(v) => v,
            Param::Text(v) => v,
            Param::Limit(v) => v,
        }
    }
}

/// The WHERE clause and parameters of a session query's filters.
fn session_filter(id: JobId, q: &SessionQuery) -> (String, Vec<Param>) {
    let mut sql = String::from("job_id = $1");
    let mut params = vec![Param::Int(id.key())];
    let mut eq = |column: &str, value: Option<String>| {
        if let Some(v) = value {
            params.push(Param::Text(storable(&v).into_owned()));
            sql.push_str(&format!(" AND {column} = ${}", params.len()));
        }
    };
    eq("kind", q.kind.map(|k| k.as_str().to_string()));
    eq("state", q.state.map(|s| s.as_str().to_string()));
    eq("call_id", q.call_id.clone());
    eq("from_uri", q.from.clone());
    eq("to_uri", q.to.clone());
    if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
        // A substring of the Call-ID, From or To, any case as SQLite's LIKE; the pattern's
        // wildcards in it are literal.
        let escaped = storable(text).replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        params.push(Param::Text(format!("%{escaped}%")));
        let n = params.len();
        sql.push_str(&format!(
            " AND (call_id ILIKE ${n} ESCAPE '\\' OR from_uri ILIKE ${n} ESCAPE '\\' OR to_uri ILIKE ${n} ESCAPE '\\')"
        ));
    }
    if let Some(problem) = q.problem {
        // A problem: one flagged (docs/quality.md), an anomaly recorded, or a failed call.
        // COALESCE: a document without the arrays makes the tests NULL, which NOT keeps NULL.
        let test = format!(
            "COALESCE((jsonb_typeof(document->'problems') = 'array' AND document->'problems' <> '[]'::jsonb)
              OR (jsonb_typeof(document->'anomalies') = 'array' AND document->'anomalies' <> '[]'::jsonb)
              OR state = '{}', false)",
            CallState::Failed.as_str()
        );
        sql.push_str(&format!(" AND {}{test}", if problem { "" } else { "NOT " }));
    }
    if let Some(kind) = q.problem_kind {
        // The session lists its streams' problems too.
        params.push(Param::Text(kind.as_str().to_string()));
        sql.push_str(&format!(" AND document->'problems' ? ${}", params.len()));
    }
    (sql, params)
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(Param::as_sql).collect()
}

fn session_row(id: JobId, row: &Row, documents: bool) -> Result<SessionRow, StoreError> {
    let kind: String = row.try_get(2)?;
    let state: String = row.try_get(3)?;
    let corrupt = |what: &str| StoreError::Corrupt { job: id, message: format!("unknown {what}") };
    let document = if documents {
        let text: String = row.try_get(11)?;
        Some(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt { job: id, message: e.to_string() })?)
    } else {
        None
    };
    Ok(SessionRow {
        cursor: SessionCursor { start_ns: row.try_get(4)?, row: row.try_get(0)? },
        id: row.try_get(1)?,
        kind: enum_from_str(&kind).ok_or_else(|| corrupt("session kind"))?,
        state: enum_from_str(&state).ok_or_else(|| corrupt("call state"))?,
        start: Timestamp::from_nanos(row.try_get(4)?),
        end: Timestamp::from_nanos(row.try_get(5)?),
        from: row.try_get(6)?,
        to: row.try_get(7)?,
        call_id: row.try_get(8)?,
        messages: row.try_get::<_, i32>(9)?.max(0) as u32,
        media: row.try_get::<_, i32>(10)?.max(0) as u32,
        document,
    })
}

fn parse_session(job: JobId, text: &str) -> Result<Session, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt { job, message: e.to_string() })
}

/// A batch of sessions as one array per column, for `add_sessions`' `UNNEST`.
#[derive(Default)]
struct SessionColumns {
    session_id: Vec<String>,
    kind: Vec<String>,
    state: Vec<String>,
    start_ns: Vec<i64>,
    end_ns: Vec<i64>,
    from_uri: Vec<String>,
    to_uri: Vec<String>,
    call_id: Vec<String>,
    messages: Vec<i32>,
    media: Vec<i32>,
    document: Vec<String>,
}

impl SessionColumns {
    fn of(sessions: &[Arc<Session>]) -> SessionColumns {
        let mut c = SessionColumns::default();
        for s in sessions {
            c.session_id.push(storable(&s.id).into_owned());
            c.kind.push(s.kind.as_str().to_string());
            c.state.push(s.state.as_str().to_string());
            c.start_ns.push(s.start.as_nanos());
            c.end_ns.push(s.end.as_nanos());
            c.from_uri.push(storable(&s.from).into_owned());
            c.to_uri.push(storable(&s.to).into_owned());
            c.call_id.push(storable(&s.call_id).into_owned());
            c.messages.push(s.messages.len().min(i32::MAX as usize) as i32);
            c.media.push(s.media.len().min(i32::MAX as usize) as i32);
            c.document.push(json(&**s));
        }
        c
    }
}

/// The finished states, as an SQL list.
fn finished() -> String {
    let states = [JobState::Completed, JobState::Failed, JobState::Cancelled];
    format!("({})", states.map(|s| format!("'{}'", s.as_str())).join(", "))
}

impl JobStore for PgStore {
    fn tokens(&self) -> Option<&dyn crate::tokens::TokenStore> {
        Some(self)
    }

    fn create_job(&self, new: &NewJob, now: i64) -> Result<Job, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let sql = format!(
                "INSERT INTO jobs (id, input, label, owns_input, state, created_at, uuid)
                 VALUES (COALESCE($1, nextval('jobs_id_seq')), $2, $3, $4, $5, $6, $7) RETURNING {JOB_COLUMNS}"
            );
            let stmt = client.prepare_cached(&sql).await?;
            let input = new.input.to_string_lossy();
            let row = client
                .query_one(
                    &stmt,
                    &[
                        &new.id.map(|id| id.key()),
                        &storable(&input),
                        &storable(&new.label),
                        &new.owns_input,
                        &JobState::Queued.as_str(),
                        &now,
                        &new.id.map_or_else(|| JobId::fresh_uuid(now), JobId::uuid),
                    ],
                )
                .await?;
            job_from_row(&row)
        })
    }

    fn create_live(&self, new: &NewJob, live: &str, now: i64) -> Result<Job, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let sql = format!(
                "INSERT INTO jobs (id, input, label, owns_input, state, created_at, started_at, attempts, live, node, uuid)
                 VALUES (COALESCE($1, nextval('jobs_id_seq')), $2, $3, $4, $5, $6, $6, 1, $7, $8, $9)
                 RETURNING {JOB_COLUMNS}"
            );
            let node = self.node();
            let stmt = client.prepare_cached(&sql).await?;
            let input = new.input.to_string_lossy();
            let row = client
                .query_one(
                    &stmt,
                    &[
                        &new.id.map(|id| id.key()),
                        &storable(&input),
                        &storable(&new.label),
                        &new.owns_input,
                        &JobState::Running.as_str(),
                        &now,
                        &storable(live),
                        &node,
                        &new.id.map_or_else(|| JobId::fresh_uuid(now), JobId::uuid),
                    ],
                )
                .await?;
            job_from_row(&row)
        })
    }

    fn reserve_id(&self) -> Result<JobId, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client.query_one("SELECT nextval('jobs_id_seq')", &[]).await?;
            Ok(JobId::generate(row.try_get(0)?, crate::now_millis()))
        })
    }

    fn last_key(&self) -> Result<i64, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row =
                client.query_one("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM jobs_id_seq", &[]).await?;
            Ok(row.try_get(0)?)
        })
    }

    fn resolve(&self, by: JobRef) -> Result<Option<JobId>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = match by {
                JobRef::Uuid(uuid) => {
                    let stmt = client.prepare_cached("SELECT id, uuid FROM jobs WHERE uuid = $1").await?;
                    client.query_opt(&stmt, &[&uuid]).await?
                }
                JobRef::Number(n) => {
                    let stmt = client.prepare_cached("SELECT id, uuid FROM jobs WHERE alias = $1").await?;
                    client.query_opt(&stmt, &[&n]).await?
                }
            };
            row.map(|r| job_id(&r, 0, 1)).transpose()
        })
    }

    fn job_by_key(&self, key: i64) -> Result<Option<JobId>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached("SELECT id, uuid FROM jobs WHERE id = $1").await?;
            client.query_opt(&stmt, &[&key]).await?.map(|r| job_id(&r, 0, 1)).transpose()
        })
    }

    fn claim_next(&self, now: i64) -> Result<Option<Job>, StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // SKIP LOCKED: a job another transaction (another node's worker) is claiming
            // is passed over, not waited for, and never claimed twice.
            let sql = format!(
                "UPDATE jobs SET state = '{running}', started_at = $1, completed_at = NULL, attempts = attempts + 1,
                     progress = 0, packets = 0, bytes = 0, sessions = 0, error = NULL, source = NULL, stats = NULL,
                     subscribers = NULL, node = $2, cancel_requested = false
                 WHERE id = (SELECT id FROM jobs WHERE state = '{queued}' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING {JOB_COLUMNS}",
                running = JobState::Running.as_str(),
                queued = JobState::Queued.as_str(),
            );
            let stmt = tx.prepare_cached(&sql).await?;
            let node = self.node();
            let job = tx.query_opt(&stmt, &[&now, &node]).await?.map(|r| job_from_row(&r)).transpose()?;
            if let Some(job) = &job {
                // Sessions of a run interrupted by a crash are replaced, not appended to.
                tx.execute("DELETE FROM sessions WHERE job_id = $1", &[&job.id.key()]).await?;
            }
            tx.commit().await?;
            Ok(job)
        })
    }

    fn record_progress(&self, id: JobId, p: &Progress) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            let sql = format!(
                "UPDATE jobs SET progress = $2, packets = $3, bytes = $4, sessions = $5
                 WHERE id = $1 AND state = '{}' AND ($6::text IS NULL OR node = $6)",
                JobState::Running.as_str()
            );
            let stmt = client.prepare_cached(&sql).await?;
            let node = self.node();
            client
                .execute(
                    &stmt,
                    &[
                        &id.key(),
                        &(p.percent as i16),
                        &(p.packets as i64),
                        &(p.bytes as i64),
                        &(p.sessions as i64),
                        &node,
                    ],
                )
                .await?;
            Ok(())
        })
    }

    fn add_sessions(&self, id: JobId, sessions: &[Arc<Session>]) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        // One statement per batch: the columns go as arrays, unnested into rows.
        let c = SessionColumns::of(sessions);
        let node = self.node();
        self.run(async {
            let mut client = self.client().await?;
            let client = client.transaction().await?;
            if node.is_some() {
                // The job's row is held (FOR SHARE) until these rows are in: a node taking
                // the job over (which deletes its sessions) waits for them, or this finds
                // the job no longer this node's and stores nothing, so the sessions of a
                // superseded run never mix with the next one's.
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT 1 FROM jobs WHERE id = $1 AND state = '{}' AND node = $2 FOR SHARE",
                        JobState::Running.as_str()
                    ))
                    .await?;
                if client.query_opt(&stmt, &[&id.key(), &node]).await?.is_none() {
                    return Ok(());
                }
            }
            let stmt = client
                .prepare_cached(
                    "INSERT INTO sessions (job_id, session_id, kind, state, start_ns, end_ns, from_uri, to_uri, call_id,
                         messages, media, document)
                     SELECT $1, s, k, st, b, e, f, t, c, m, md, d::jsonb
                     FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::text[], $8::text[],
                                 $9::text[], $10::int4[], $11::int4[], $12::text[])
                          AS u(s, k, st, b, e, f, t, c, m, md, d)",
                )
                .await?;
            client
                .execute(
                    &stmt,
                    &[
                        &id.key(),
                        &c.session_id,
                        &c.kind,
                        &c.state,
                        &c.start_ns,
                        &c.end_ns,
                        &c.from_uri,
                        &c.to_uri,
                        &c.call_id,
                        &c.messages,
                        &c.media,
                        &c.document,
                    ],
                )
                .await?;
            client.commit().await?;
            Ok(())
        })
    }

    fn finish(&self, id: JobId, o: &Outcome, now: i64) -> Result<Option<Job>, StoreError> {
        let source = o.source.as_ref().map(json);
        let stats = o.stats.as_ref().map(json);
        let subscribers = o.subscribers.as_ref().map(json);
        let error = o.error.as_deref().map(|e| storable(e).into_owned());
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let sql = format!(
                "UPDATE jobs SET state = $2, completed_at = $3, progress = $4, packets = $5, bytes = $6, sessions = $7,
                     error = $8, source = $9::text::jsonb, stats = $10::text::jsonb, subscribers = $11::text::jsonb
                 WHERE id = $1 AND state = '{}' AND ($12::text IS NULL OR node = $12) RETURNING live IS NOT NULL",
                JobState::Running.as_str()
            );
            let stmt = tx.prepare_cached(&sql).await?;
            let node = self.node();
            let changed = tx
                .query_opt(
                    &stmt,
                    &[
                        &id.key(),
                        &o.state.as_str(),
                        &now,
                        &(o.progress.percent as i16),
                        &(o.progress.packets as i64),
                        &(o.progress.bytes as i64),
                        &(o.progress.sessions as i64),
                        &error,
                        &source,
                        &stats,
                        &subscribers,
                        &node,
                    ],
                )
                .await?;
            let Some(row) = changed else {
                tx.commit().await?;
                return Ok(None);
            };
            // A live job keeps what it stored whatever its end: its traffic cannot be read again.
            let live: bool = row.try_get(0)?;
            if o.state != JobState::Completed && !live {
                tx.execute("DELETE FROM sessions WHERE job_id = $1", &[&id.key()]).await?;
                tx.execute("UPDATE jobs SET sessions = 0 WHERE id = $1", &[&id.key()]).await?;
            }
            let job = get_job(&tx, id).await?;
            tx.commit().await?;
            Ok(job)
        })
    }

    fn cancel_queued(&self, id: JobId, now: i64) -> Result<Option<Job>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let sql = format!(
                "UPDATE jobs SET state = '{}', completed_at = $2 WHERE id = $1 AND state = '{}' RETURNING {JOB_COLUMNS}",
                JobState::Cancelled.as_str(),
                JobState::Queued.as_str()
            );
            let stmt = client.prepare_cached(&sql).await?;
            client.query_opt(&stmt, &[&id.key(), &now]).await?.map(|r| job_from_row(&r)).transpose()
        })
    }

    fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.run(async { get_job(&self.client().await?, id).await })
    }

    fn jobs(&self, q: &JobQuery) -> Result<Vec<Job>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let limit = (q.limit != 0).then_some(q.limit as i64);
            let state = q.state.map(|s| s.as_str());
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE ($3::text IS NULL OR state = $3)
                 ORDER BY id DESC LIMIT $1 OFFSET $2"
            );
            let stmt = client.prepare_cached(&sql).await?;
            let rows = client.query(&stmt, &[&limit, &(q.offset as i64), &state]).await?;
            rows.iter().map(job_from_row).collect()
        })
    }

    fn count_jobs(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let rows = client.query("SELECT state, COUNT(*) FROM jobs GROUP BY state", &[]).await?;
            let mut counts = Vec::new();
            for row in rows {
                let state: String = row.try_get(0)?;
                // Only this module writes states, always through `as_str`.
                if let Some(state) = JobState::parse(&state) {
                    counts.push((state, row.try_get::<_, i64>(1)? as u64));
                }
            }
            Ok(counts)
        })
    }

    fn sessions(&self, id: JobId, q: &SessionQuery) -> Result<Vec<SessionRow>, StoreError> {
        let (mut filter, mut params) = session_filter(id, q);
        if let Some(after) = q.after {
            params.push(Param::Int(after.start_ns));
            params.push(Param::Int(after.row));
            filter.push_str(&format!(" AND (start_ns, id) > (${}, ${})", params.len() - 1, params.len()));
        }
        params.push(Param::Limit((q.limit != 0).then_some(q.limit as i64)));
        params.push(Param::Int(q.offset as i64));
        let document = if q.documents { ", document::text" } else { "" };
        // One query; in the default order, that of the (job, start, row) index the cursor follows.
        let sql = format!(
            "SELECT {SESSION_COLUMNS}{document} FROM sessions WHERE {filter}
             ORDER BY {} LIMIT ${} OFFSET ${}",
            crate::sqlite::session_order(q.sort),
            params.len() - 1,
            params.len()
        );
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&sql).await?;
            let rows = client.query(&stmt, &refs(&params)).await?;
            rows.iter().map(|r| session_row(id, r, q.documents)).collect()
        })
    }

    fn count_sessions(&self, id: JobId, q: &SessionQuery) -> Result<u64, StoreError> {
        let (filter, params) = session_filter(id, q);
        let sql = format!("SELECT COUNT(*) FROM sessions WHERE {filter}");
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached(&sql).await?;
            let n: i64 = client.query_one(&stmt, &refs(&params)).await?.try_get(0)?;
            Ok(n as u64)
        })
    }

    fn session(&self, id: JobId, session_id: &str) -> Result<Option<Session>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT document::text FROM sessions WHERE job_id = $1 AND session_id = $2 ORDER BY id LIMIT 1",
                )
                .await?;
            let row = client.query_opt(&stmt, &[&id.key(), &storable(session_id)]).await?;
            row.map(|r| parse_session(id, r.try_get(0)?)).transpose()
        })
    }

    fn subscribers(&self, id: JobId) -> Result<Option<Vec<Subscriber>>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client.prepare_cached("SELECT subscribers::text FROM jobs WHERE id = $1").await?;
            let text: Option<String> = match client.query_opt(&stmt, &[&id.key()]).await? {
                Some(row) => row.try_get(0)?,
                None => None,
            };
            text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt { job: id, message: e.to_string() }))
                .transpose()
        })
    }

    fn find_session(&self, session_id: &str) -> Result<Option<(JobId, Session)>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT s.job_id, j.uuid, s.document::text FROM sessions s JOIN jobs j ON j.id = s.job_id
                     WHERE s.session_id = $1 ORDER BY s.job_id DESC, s.id LIMIT 1",
                )
                .await?;
            let Some(row) = client.query_opt(&stmt, &[&storable(session_id)]).await? else { return Ok(None) };
            let job = job_id(&row, 0, 1)?;
            Ok(Some((job, parse_session(job, row.try_get(2)?)?)))
        })
    }

    fn session_jobs(&self, session_id: &str, limit: usize) -> Result<Vec<JobId>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT j.id, j.uuid FROM jobs j
                     WHERE j.id IN (SELECT DISTINCT job_id FROM sessions WHERE session_id = $1 ORDER BY job_id LIMIT $2)
                     ORDER BY j.id",
                )
                .await?;
            let rows = client.query(&stmt, &[&storable(session_id), &(limit as i64)]).await?;
            rows.iter().map(|r| job_id(r, 0, 1)).collect()
        })
    }

    fn delete_finished(&self, id: JobId) -> Result<bool, StoreError> {
        self.run(async {
            let client = self.client().await?;
            // Sessions go by the foreign key's ON DELETE CASCADE.
            let sql = format!("DELETE FROM jobs WHERE id = $1 AND state IN {}", finished());
            Ok(client.execute(&sql, &[&id.key()]).await? == 1)
        })
    }

    fn finished_before(&self, cutoff: i64) -> Result<Vec<Job>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE completed_at IS NOT NULL AND completed_at < $1
                     AND state IN {} ORDER BY completed_at",
                finished()
            );
            let rows = client.query(&sql, &[&cutoff]).await?;
            rows.iter().map(job_from_row).collect()
        })
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            // A write the server must take: refused by a read-only server (a standby
            // after a failover, default_transaction_read_only) or a full disk.
            client
                .execute(
                    "UPDATE callflow_schema SET version = version
                     WHERE version = (SELECT MAX(version) FROM callflow_schema)",
                    &[],
                )
                .await
                .map_err(|e| match e.code() {
                    Some(c) if *c == tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION => {
                        StoreError::Unwritable { path: PathBuf::from(&self.display), reason: e.to_string() }
                    }
                    _ => e.into(),
                })?;
            Ok(())
        })
    }

    fn append_events(&self, events: &[NewEvent], now: i64) -> Result<Vec<u64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let jobs: Vec<i64> = events.iter().map(|e| e.job.key()).collect();
        let uuids: Vec<uuid::Uuid> = events.iter().map(|e| e.job.uuid()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let payloads: Vec<String> = events.iter().map(|e| storable(&e.payload).into_owned()).collect();
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // One appender at a time across every node (see EVENT_LOCK): ids commit in order.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EVENT_LOCK]).await?;
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO events (job_id, job_uuid, kind, logged_at, payload)
                     SELECT j, ju, k, $5, p
                     FROM UNNEST($1::int8[], $2::uuid[], $3::text[], $4::text[]) WITH ORDINALITY AS u(j, ju, k, p, n)
                     ORDER BY n RETURNING id",
                )
                .await?;
            let rows = tx.query(&stmt, &[&jobs, &uuids, &kinds, &payloads, &now]).await?;
            // Rows are numbered in the order they are inserted, which is the events' order.
            let mut ids =
                rows.iter().map(|r| r.try_get::<_, i64>(0).map(|id| id as u64)).collect::<Result<Vec<_>, _>>()?;
            ids.sort_unstable();
            let newest = ids.last().copied().unwrap_or_default().to_string();
            // Delivered to every listener at commit, after the rows are visible.
            tx.execute("SELECT pg_notify($1, $2)", &[&EVENT_CHANNEL, &newest]).await?;
            tx.commit().await?;
            Ok(ids)
        })
    }

    fn events_after(&self, after: u64, job: Option<JobId>, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT id, job_id, job_uuid, kind, logged_at, payload FROM events
                     WHERE id > $1 AND ($2::int8 IS NULL OR job_id = $2) ORDER BY id LIMIT $3",
                )
                .await?;
            let rows = client
                .query(&stmt, &[&(after.min(i64::MAX as u64) as i64), &job.map(|j| j.key()), &(limit as i64)])
                .await?;
            rows.iter()
                .map(|r| {
                    let job = job_id(r, 1, 2)?;
                    let kind: String = r.try_get(3)?;
                    let kind = EventKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt { job, message: format!("unknown event kind {kind}") })?;
                    Ok(StoredEvent {
                        id: r.try_get::<_, i64>(0)? as u64,
                        job,
                        kind,
                        logged_at: r.try_get(4)?,
                        payload: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    fn event_ids(&self) -> Result<EventIds, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq),
                            (SELECT MIN(id) FROM events)",
                    &[],
                )
                .await?;
            let newest = row.try_get::<_, i64>(0)?.max(0) as u64;
            let oldest: Option<i64> = row.try_get(1)?;
            Ok(EventIds { newest, oldest: oldest.map_or(newest + 1, |o| o as u64) })
        })
    }

    fn prune_events(&self, before: i64, keep: u64) -> Result<u64, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let n = client
                .execute(
                    "DELETE FROM events WHERE logged_at < $1 OR id <= (SELECT MAX(id) FROM events) - $2",
                    &[&before, &(keep.min(i64::MAX as u64) as i64)],
                )
                .await?;
            Ok(n)
        })
    }

    fn listen_events(&self, wake: EventWake) -> Result<Option<EventListener>, StoreError> {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let runtime = self.runtime.as_ref().expect("present until dropped");
        runtime.spawn(listen_loop(self.config.clone(), self.tls.clone(), wake, stopped));
        Ok(Some(EventListener { _stop: stop }))
    }

    fn recover(&self, resume: bool, max_attempts: u32, now: i64) -> Result<Recovery, StoreError> {
        let (running, queued, failed) =
            (JobState::Running.as_str(), JobState::Queued.as_str(), JobState::Failed.as_str());
        // Other nodes' RUNNING jobs are theirs: those of a lost node are taken over by
        // `take_over_lost`, once it has been silent for the lease.
        let node = self.node();
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let mut recovery = Recovery::default();
            // A live job cannot be run again (its traffic is gone): it ends, keeping its sessions.
            let live = tx
                .query(
                    &format!(
                        "UPDATE jobs SET state = '{failed}', completed_at = $1,
                             error = 'interrupted: callflowd stopped while this live job was running; the sessions \
                              found until then are kept'
                         WHERE state = '{running}' AND live IS NOT NULL AND ($2::text IS NULL OR node IS NULL OR node = $2)
                         RETURNING id, uuid"
                    ),
                    &[&now, &node],
                )
                .await?;
            recovery.interrupted = live.iter().map(|r| job_id(r, 0, 1)).collect::<Result<_, _>>()?;
            recovery.interrupted.sort();
            let rows = tx
                .query(
                    &format!(
                        "SELECT id, attempts, uuid FROM jobs WHERE state = '{running}'
                             AND ($1::text IS NULL OR node IS NULL OR node = $1) ORDER BY id FOR UPDATE"
                    ),
                    &[&node],
                )
                .await?;
            for row in rows {
                let (id, attempts): (i64, i32) = (row.try_get(0)?, row.try_get(1)?);
                let job = job_id(&row, 0, 2)?;
                let attempts = attempts.max(0) as u32;
                tx.execute("DELETE FROM sessions WHERE job_id = $1", &[&id]).await?;
                if resume && attempts >= max_attempts {
                    // Interrupted at every start: most likely the job itself stops the
                    // process (a crash, the memory killer), which resuming it would only repeat.
                    let error = format!(
                        "gave up after {attempts} attempts: callflowd stopped while this job was running, each time \
                         (processing.max_attempts = {max_attempts}); the capture may be what crashes it"
                    );
                    let sql = format!(
                        "UPDATE jobs SET state = '{failed}', completed_at = $2, sessions = 0, error = $3 WHERE id = $1"
                    );
                    tx.execute(&sql, &[&id, &now, &error]).await?;
                    recovery.gave_up.push(job);
                } else if resume {
                    let sql = format!(
                        "UPDATE jobs SET state = '{queued}', progress = 0, packets = 0, bytes = 0, sessions = 0
                         WHERE id = $1"
                    );
                    tx.execute(&sql, &[&id]).await?;
                    recovery.rerun.push(job);
                } else {
                    let sql = format!(
                        "UPDATE jobs SET state = '{failed}', completed_at = $2, sessions = 0,
                             error = 'interrupted: callflowd stopped while this job was running' WHERE id = $1"
                    );
                    tx.execute(&sql, &[&id, &now]).await?;
                    recovery.interrupted.push(job);
                }
            }
            let rows =
                tx.query(&format!("SELECT id, uuid FROM jobs WHERE state = '{queued}' ORDER BY id"), &[]).await?;
            recovery.queued = rows.iter().map(|r| job_id(r, 0, 1)).collect::<Result<_, _>>()?;
            tx.commit().await?;
            Ok(recovery)
        })
    }

    fn register_node(&self, node: &NodeInfo, now: i64) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO nodes (name, advertise_url, version, workers, started_at, last_seen)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (name) DO UPDATE SET advertise_url = excluded.advertise_url,
                         version = excluded.version, workers = excluded.workers, started_at = excluded.started_at,
                         last_seen = excluded.last_seen",
                    &[
                        &storable(&node.name),
                        &storable(&node.advertise_url),
                        &storable(&node.version),
                        &(node.workers.min(i32::MAX as u32) as i32),
                        &node.started_at,
                        &now,
                    ],
                )
                .await?;
            Ok(())
        })?;
        *self.node.lock().unwrap_or_else(|e| e.into_inner()) = Some(node.name.clone());
        Ok(())
    }

    fn heartbeat(&self, now: i64) -> Result<Vec<OwnJob>, StoreError> {
        let Some(node) = self.node() else { return Err(StoreError::Unsupported("a heartbeat before registering")) };
        self.run(async {
            let client = self.client().await?;
            // One round trip: the node's row and its jobs' leases (the node's heartbeat
            // is its running jobs' lease) renewed, its RUNNING jobs read back.
            let stmt = client
                .prepare_cached(&format!(
                    "WITH beat AS (UPDATE nodes SET last_seen = GREATEST(last_seen, $2) WHERE name = $1)
                     SELECT id, attempts, cancel_requested, uuid FROM jobs WHERE state = '{}' AND node = $1 ORDER BY id",
                    JobState::Running.as_str()
                ))
                .await?;
            let rows = client.query(&stmt, &[&node, &now]).await?;
            rows.iter()
                .map(|r| {
                    Ok(OwnJob {
                        id: job_id(r, 0, 3)?,
                        attempts: r.try_get::<_, i32>(1)?.max(0) as u32,
                        cancel: r.try_get(2)?,
                    })
                })
                .collect()
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT n.name, n.advertise_url, n.version, n.workers, n.started_at, n.last_seen,
                         (SELECT COUNT(*) FROM jobs WHERE state = '{}' AND node = n.name)
                     FROM nodes n ORDER BY n.name",
                    JobState::Running.as_str()
                ))
                .await?;
            let rows = client.query(&stmt, &[]).await?;
            rows.iter()
                .map(|r| {
                    Ok(NodeRow {
                        info: NodeInfo {
                            name: r.try_get(0)?,
                            advertise_url: r.try_get(1)?,
                            version: r.try_get(2)?,
                            workers: r.try_get::<_, i32>(3)?.max(0) as u32,
                            started_at: r.try_get(4)?,
                        },
                        last_seen: r.try_get(5)?,
                        running: r.try_get::<_, i64>(6)?.max(0) as u64,
                    })
                })
                .collect()
        })
    }

    fn take_over_lost(&self, silent_since: i64, max_attempts: u32, now: i64) -> Result<Takeover, StoreError> {
        let me = self.node();
        let (running, queued, failed, cancelled) = (
            JobState::Running.as_str(),
            JobState::Queued.as_str(),
            JobState::Failed.as_str(),
            JobState::Cancelled.as_str(),
        );
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // SKIP LOCKED: two live nodes taking over at once share the jobs out, each job
            // handled by one of them. A node that is not registered (gone from the table)
            // is as lost as a silent one.
            let rows = tx
                .query(
                    &format!(
                        "SELECT j.id, j.attempts, j.live IS NOT NULL, j.cancel_requested, j.node,
                             COALESCE(j.lost_nodes, ''), j.uuid
                         FROM jobs j LEFT JOIN nodes n ON n.name = j.node
                         WHERE j.state = '{running}' AND j.node IS NOT NULL
                             AND ($1::text IS NULL OR j.node <> $1) AND (n.name IS NULL OR n.last_seen < $2)
                         ORDER BY j.id FOR UPDATE OF j SKIP LOCKED"
                    ),
                    &[&me, &silent_since],
                )
                .await?;
            let mut takeover = Takeover::default();
            for row in rows {
                let (id, attempts, live, cancel): (i64, i32, bool, bool) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
                let (node, earlier): (String, String) = (row.try_get(4)?, row.try_get(5)?);
                let job = job_id(&row, 0, 6)?;
                let mut lost: Vec<&str> = earlier.split(',').filter(|n| !n.is_empty()).collect();
                if !lost.contains(&node.as_str()) {
                    lost.push(&node);
                }
                let lost_list = lost.join(",");
                if !takeover.lost.contains(&node) {
                    takeover.lost.push(node.clone());
                }
                let attempts = attempts.max(0) as u32;
                if live {
                    let error = format!(
                        "interrupted: its node {node} was lost (silent for longer than cluster.lease) while this \
                         live job ran on its source; the sessions found until then are kept"
                    );
                    let sql = format!(
                        "UPDATE jobs SET state = '{failed}', completed_at = $2, error = $3, lost_nodes = $4 WHERE id = $1"
                    );
                    tx.execute(&sql, &[&id, &now, &error, &lost_list]).await?;
                    takeover.failed.push(job);
                    continue;
                }
                tx.execute("DELETE FROM sessions WHERE job_id = $1", &[&id]).await?;
                if cancel {
                    let sql = format!(
                        "UPDATE jobs SET state = '{cancelled}', completed_at = $2, sessions = 0, lost_nodes = $3
                         WHERE id = $1"
                    );
                    tx.execute(&sql, &[&id, &now, &lost_list]).await?;
                    takeover.cancelled.push(job);
                } else if attempts >= max_attempts {
                    let error = format!(
                        "gave up after {attempts} attempts: the nodes running it were lost ({}); \
                         cluster.max_attempts = {max_attempts}",
                        lost.join(", ")
                    );
                    let sql = format!(
                        "UPDATE jobs SET state = '{failed}', completed_at = $2, sessions = 0, error = $3, lost_nodes = $4
                         WHERE id = $1"
                    );
                    tx.execute(&sql, &[&id, &now, &error, &lost_list]).await?;
                    takeover.failed.push(job);
                } else {
                    let sql = format!(
                        "UPDATE jobs SET state = '{queued}', progress = 0, packets = 0, bytes = 0, sessions = 0,
                             lost_nodes = $2
                         WHERE id = $1"
                    );
                    tx.execute(&sql, &[&id, &lost_list]).await?;
                    takeover.requeued.push(job);
                }
            }
            tx.commit().await?;
            Ok(takeover)
        })
    }

    fn hand_back(&self, ids: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        let node = self.node();
        let ids: Vec<i64> = ids.iter().map(|id| id.key()).collect();
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let sql = format!(
                "UPDATE jobs SET state = '{}', attempts = GREATEST(attempts - 1, 0), progress = 0, packets = 0,
                     bytes = 0, sessions = 0
                 WHERE id = ANY($1) AND state = '{}' AND live IS NULL AND ($2::text IS NULL OR node = $2)
                 RETURNING id, uuid",
                JobState::Queued.as_str(),
                JobState::Running.as_str()
            );
            let rows = tx.query(&sql, &[&ids, &node]).await?;
            let mut handed: Vec<JobId> = rows.iter().map(|r| job_id(r, 0, 1)).collect::<Result<_, _>>()?;
            let keys: Vec<i64> = handed.iter().map(|id| id.key()).collect();
            tx.execute("DELETE FROM sessions WHERE job_id = ANY($1)", &[&keys]).await?;
            tx.commit().await?;
            handed.sort();
            Ok(handed)
        })
    }

    fn lock_sweeper(&self) -> Result<bool, StoreError> {
        let mut held = self.sweeper.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_some() {
            return Ok(true);
        }
        // A session-level advisory lock, so it is held on one connection, kept aside
        // from the pool until `unlock_sweeper`; a node that dies lets it go with its
        // connection.
        let (client, locked) = self.run(async {
            let client = self.client().await?;
            let locked: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&SWEEP_LOCK]).await?.try_get(0)?;
            Ok((client, locked))
        })?;
        if locked {
            *held = Some(client);
        }
        Ok(locked)
    }

    fn unlock_sweeper(&self) -> Result<(), StoreError> {
        let client = self.sweeper.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(client) = client {
            self.run(async move {
                client.execute("SELECT pg_advisory_unlock($1)", &[&SWEEP_LOCK]).await?;
                Ok(())
            })?;
        }
        Ok(())
    }

    fn cluster_id(&self) -> Result<String, StoreError> {
        let fresh = crate::volume::new_cluster_id()
            .map_err(|source| StoreError::Create { path: PathBuf::from("/dev/urandom"), source })?;
        self.run(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // Nodes starting together on a new database: one writes the id, under the
            // migrations' lock (held for this transaction), the others read it.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
            tx.execute("INSERT INTO cluster (id) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM cluster)", &[&fresh])
                .await?;
            let id: String = tx.query_one("SELECT id FROM cluster LIMIT 1", &[]).await?.try_get(0)?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn request_cancel(&self, id: JobId) -> Result<bool, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let sql = format!(
                "UPDATE jobs SET cancel_requested = true WHERE id = $1 AND state = '{}'",
                JobState::Running.as_str()
            );
            Ok(client.execute(&sql, &[&id.key()]).await? == 1)
        })
    }

    fn is_shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/x?sslmode=require"),
            "postgres://u@db:5432/x?sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact_url("postgresql://u@db"), "postgresql://u@db");
    }

    #[test]
    fn nul_characters_become_replacement_characters_and_escaped_backslashes_stay() {
        let json = serde_json::to_string(&["a\0b", "c\\u0000d"]).unwrap();
        assert_eq!(storable_json(json), r#"["a\ufffdb","c\\u0000d"]"#);
        assert_eq!(storable("x\0"), "x\u{fffd}");
    }

    #[test]
    fn sslmode_is_checked_and_verify_modes_need_a_root_certificate() {
        let err = |url: &str| parse_url(url).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("postgres://u:pw@h/db?sslmode=sometimes").contains("unknown sslmode `sometimes`"));
        assert!(!err("postgres://u:pw@h/db?sslmode=sometimes").contains("pw"), "no password in messages");
        assert!(err("postgres://h/db?sslmode=verify-full").contains("sslrootcert"));
        assert!(err("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent.pem").contains("/nonexistent.pem"));
        for mode in ["disable", "prefer", "require"] {
            assert!(parse_url(&format!("postgres://h/db?sslmode={mode}&connect_timeout=3")).is_ok(), "{mode}");
        }
    }
}
