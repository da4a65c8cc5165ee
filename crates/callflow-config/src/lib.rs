//! callflowd's settings and how they are loaded: built-in defaults < config file < environment < command-line flags.
//!
//! [`Settings`] is plain data, one struct per section (`server`, `processing`, `storage`,
//! `ndpi`, `websocket`, `auth`, `limits`, `diameter`, `quality`, `legs`, `kpis`, `hep`, `cluster`, ...), shared by `callflowd`, `callflow-cli` and the
//! libraries they configure. [`Loader`] builds it from the layers, later layers winning:
//!
//! 1. the built-in defaults ([`Settings::default`]);
//! 2. a file (`--config FILE`): TOML, JSON or YAML, chosen by its extension;
//! 3. the environment: `CALLFLOW_PORT`, `CALLFLOW_BIND_ADDR`, `CALLFLOW_WORKERS`,
//!    `CALLFLOW_UPLOAD_DIR`, `CALLFLOW_RESULTS_DIR`, `CALLFLOW_ENABLE_NDPI`, and
//!    `CALLFLOW_<SECTION>__<KEY>` for every key (`CALLFLOW_STORAGE__RETENTION=12h`;
//!    a key of a nested table such as `server.tls.cert` is `CALLFLOW_SERVER__TLS__CERT`);
//! 4. command-line flags, which the binary hands over as `key = value` pairs.
//!
//! An unknown key or a value of the wrong type is a [`ConfigError`] naming the key and
//! the layer it came from, never a silent default. [`Loaded::render`] prints the
//! effective configuration with the source of every value (`callflowd --print-config`).
//!
//! Architecture invariant: this crate knows nothing of jobs, captures or HTTP; it only
//! describes settings. It depends on no other callflow crate.
//!
//! ```
//! use callflow_config::{Loader, Source};
//!
//! let loaded = Loader::new()
//!     .env_vars([("CALLFLOW_WORKERS".to_string(), "3".to_string())])
//!     .flag("server.port", "9000", "--port")
//!     .load()?;
//! assert_eq!(loaded.settings.processing.workers, 3);
//! assert_eq!(loaded.settings.server.port, 9000);
//! assert_eq!(loaded.source("server.port"), Some(&Source::Flag("--port".into())));
//! assert_eq!(loaded.source("server.bind_addr"), Some(&Source::Default));
//! # Ok::<(), callflow_config::ConfigError>(())
//! ```

pub mod duration;
mod load;

pub use load::{ConfigError, Loaded, Loader, Source, ENV_ALIASES};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Every setting of callflowd, by section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the HTTP API listens.
    pub server: ServerSettings,
    /// The analysis job pool.
    pub processing: ProcessingSettings,
    /// Directories, database and retention.
    pub storage: StorageSettings,
    /// The nDPI classifier.
    pub ndpi: NdpiSettings,
    /// Live event streams.
    pub websocket: WebSocketSettings,
    /// API authentication.
    pub auth: AuthSettings,
    /// Bounds on what clients may ask for.
    pub limits: LimitSettings,
    /// How the legs of a call through a B2BUA, SBC or proxy are joined.
    pub legs: LegSettings,
    /// Diameter decoding.
    pub diameter: DiameterSettings,
    /// Voice quality estimation and the thresholds of the problems flagged.
    pub quality: QualitySettings,
    /// Live jobs: what they keep of their traffic, and how they report.
    pub live: LiveSettings,
    /// Operator statistics: peers, trunks, time buckets and the live series' labels.
    pub kpis: KpiSettings,
    /// The HEP listener (live analysis of what HEP agents mirror).
    pub hep: HepSettings,
    /// The Packetflix-compatible capture service (`GET /capture`).
    pub capture: CaptureSettings,
    /// Decrypting SIP over TLS in live jobs.
    pub tls: TlsKeySettings,
    /// This node among several on one PostgreSQL store: its name, address and leases.
    pub cluster: ClusterSettings,
}

/// `[cluster]`: this node's name and address among the nodes sharing one job store, and
/// how long a silent node keeps its jobs. A single node (SQLite, the default) needs none
/// of it: it is one node all the same, with its name in `GET /api/v1/nodes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The node's name, unique among the nodes of one store; empty: the host name and
    /// `server.port` (`host:8080`), see [`Settings::node_name`].
    pub node_name: String,
    /// The URL other nodes and clients reach this node's API at; empty: `http://` (or
    /// `https://` with `[server.tls]`) with the host name and `server.port`.
    pub advertise_url: String,
    /// A node silent this long (no heartbeat) is lost: a live node puts its jobs back in
    /// the queue. It heartbeats, and renews its running jobs' leases, every second (every
    /// third of the lease if that is shorter).
    #[serde(with = "duration")]
    pub lease: Duration,
    /// A job whose node was lost is queued again until it has been started this many
    /// times, then failed with the lost nodes named. `processing.max_attempts` bounds the
    /// same count when the node itself restarts and finds its own jobs interrupted.
    pub max_attempts: u32,
    /// At SIGTERM the node takes no more jobs and lets its running ones finish for up to
    /// this long, then hands those still running back to the queue and exits.
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_name: String::new(),
            advertise_url: String::new(),
            lease: Duration::from_secs(30),
            max_attempts: 3,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The longest node name, in bytes.
pub const MAX_NODE_NAME_BYTES: usize = 128;

/// Whether `name` can name a node: 1 to [`MAX_NODE_NAME_BYTES`] bytes of letters, digits
/// and `-._:@` (a host name with a port, an instance name), nothing a log line or a
/// metrics label would need to escape.
pub fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME_BYTES
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-._:@".contains(c))
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `/etc/hostname`), or
/// `localhost` when neither can be read: the default node name's first half.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| is_node_name(s))
        .unwrap_or_else(|| "localhost".to_string())
}

/// `[tls]`: the TLS key log live jobs decrypt SIP over TLS with (a capture file brings its
/// own: `callflow-cli analyze --tls-keylog`, the upload's `keylog` part).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsKeySettings {
    /// An NSS key log file (SSLKEYLOGFILE) that SBCs or clients append to while the job
    /// runs: read again every second, the lines added since used from then on. Empty: none.
    pub keylog: PathBuf,
}

/// `[kpis]`: how the operator statistics (docs/kpis.md) name peers, cut time and label
/// the live Prometheus series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KpiSettings {
    /// The length of a time bucket (`--by minute`).
    #[serde(with = "duration")]
    pub bucket: Duration,
    /// At most this many peers get a label of their own on /metrics; the rest are `other`.
    pub top_peers: usize,
    /// The capture point's own addresses or networks (an SBC, a PBX): a call from outside
    /// to one of them has the caller as its peer; otherwise the peer is where the INVITE went.
    pub local_addresses: Vec<String>,
    /// Trunk names for peers, first match first.
    pub trunks: Vec<TrunkSettings>,
}

impl Default for KpiSettings {
    fn default() -> Self {
        KpiSettings { bucket: Duration::from_secs(60), top_peers: 20, local_addresses: Vec::new(), trunks: Vec::new() }
    }
}

/// One `[[kpis.trunks]]`: a name for the peers with these addresses or hosts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrunkSettings {
    /// The name the peer gets in the statistics.
    pub name: String,
    /// Its signalling addresses or networks (`192.0.2.7`, `198.51.100.0/24`).
    pub addresses: Vec<String>,
    /// Host names of the To URI of calls to it (or the From URI of calls from it).
    pub hosts: Vec<String>,
}

/// Whether `s` is an address or a network (`192.0.2.7`, `198.51.100.0/24`, `2001:db8::/32`).
fn is_address_rule(s: &str) -> bool {
    let (addr, prefix) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
    match addr.trim().parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
        }
        Err(_) => false,
    }
}

/// `[hep]`: where the HEP listener listens (UDP and TCP, one port) for the packets HEP
/// agents (Kamailio's siptrace, heplify, ...) mirror, and the key they must carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HepSettings {
    /// Address and port, `host:port` (`127.0.0.1:9060`).
    pub listen: String,
    /// When not empty, only packets whose HEP authentication key chunk holds exactly this
    /// key are analysed; the others are counted and dropped.
    pub auth_key: String,
}

impl Default for HepSettings {
    fn default() -> Self {
        HepSettings { listen: "127.0.0.1:9060".into(), auth_key: String::new() }
    }
}

/// `[capture]`: the Packetflix-compatible capture service, `GET /capture`, which streams
/// live packets from a network namespace as pcapng over a WebSocket. Off by default: when
/// on, callflowd needs `CAP_SYS_ADMIN` (to enter namespaces) and `CAP_NET_RAW` (to capture)
/// and refuses to start without them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureSettings {
    /// Serve `GET /capture`.
    pub enabled: bool,
    /// Packets held per stream for a client that reads slowly; beyond it they are dropped
    /// (and counted in the stream's closing statistics), so memory stays bounded.
    pub queue_packets: usize,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// Streams at once; more are refused (503).
    pub max_streams: usize,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings { enabled: false, queue_packets: 4096, snaplen: 262_144, max_streams: 16 }
    }
}

/// `[quality]`: how voice quality is estimated and when a stream or call has a problem
/// (docs/quality.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualitySettings {
    /// The simulated fixed jitter buffer: packets later than this count as lost.
    #[serde(with = "duration")]
    pub jitter_buffer: Duration,
    /// The length of a stream's timeline interval.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// The one-way network delay assumed when RTCP gives no round-trip time.
    #[serde(with = "duration")]
    pub default_network_delay: Duration,
    /// `high_jitter` above this mean jitter, in ms.
    pub max_jitter_ms: f64,
    /// `high_loss` above this effective loss, in percent.
    pub max_loss_pct: f64,
    /// `low_mos` below this MOS.
    pub min_mos: f64,
    /// `late_answer` when the far end answers later than this after the INVITE.
    #[serde(with = "duration")]
    pub late_answer: Duration,
    /// `rtp_after_bye` when RTP goes on longer than this after the BYE.
    #[serde(with = "duration")]
    pub rtp_after_bye: Duration,
    /// Capture loss needs gaps in at least this many unrelated streams at once...
    pub capture_loss_streams: usize,
    /// ...within this window of each other.
    #[serde(with = "duration")]
    pub capture_loss_window: Duration,
}

impl Default for QualitySettings {
    fn default() -> Self {
        QualitySettings {
            jitter_buffer: Duration::from_millis(60),
            interval: Duration::from_secs(5),
            default_network_delay: Duration::from_millis(20),
            max_jitter_ms: 30.0,
            max_loss_pct: 5.0,
            min_mos: 3.6,
            late_answer: Duration::from_secs(10),
            rtp_after_bye: Duration::from_secs(2),
            capture_loss_streams: 3,
            capture_loss_window: Duration::from_millis(20),
        }
    }
}

/// `[diameter]`: Diameter decoding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiameterSettings {
    /// A dictionary file (TOML, the built-in dictionary's format) that extends or overrides
    /// the built-in Diameter dictionary; empty: the built-in one alone.
    pub dictionary: PathBuf,
}

/// `[server]`: where the HTTP API listens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind (`CALLFLOW_BIND_ADDR`).
    pub bind_addr: String,
    /// TCP port (`CALLFLOW_PORT`).
    pub port: u16,
    /// How long a request may take before it is answered with a timeout.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// `[server.tls]`: with a certificate and its key, the server speaks HTTPS only.
    pub tls: TlsSettings,
    /// Origins allowed by CORS (`*` for any); empty: no cross-origin access.
    pub cors_origins: Vec<String>,
    /// How long a client may take to send a request's headers (slow clients are cut off).
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    /// How long a connection that has made requests may stay open with none in flight
    /// (HTTP/1 keep-alive and HTTP/2 alike; an event stream or WebSocket is in flight).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Longest request URI, in bytes.
    pub max_uri_bytes: usize,
    /// HTTP connections open at once; past it a new one is closed at once.
    pub max_connections: usize,
    /// HTTP connections open at once from one client address (0: no such limit, as
    /// behind a reverse proxy, where every connection comes from the proxy).
    pub max_connections_per_client: usize,
    /// Serve without authentication on a non-loopback address (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// Origins (`scheme://host[:port]`) whose pages may make state-changing requests
    /// (POST, DELETE) and open WebSockets, besides the server's own origin (the request's
    /// `Host`) and the [`ServerSettings::cors_origins`]; `*` for any. Empty: `http://` and `https://` with each of the default
    /// [`ServerSettings::allowed_hosts`].
    pub allowed_origins: Vec<String>,
    /// Without authentication, the `Host` names a request may be addressed to (`name` for
    /// any port, `name:port` for one), against DNS rebinding; `*` for any. Empty: the bind
    /// address, `localhost`, `127.0.0.1` and `[::1]`, each with the port.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind_addr: "127.0.0.1".into(),
            port: 8080,
            request_timeout: Duration::from_secs(30),
            tls: TlsSettings::default(),
            cors_origins: Vec::new(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            max_connections: 4096,
            max_connections_per_client: 256,
            insecure_no_auth: false,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// `[server.tls]`: the server's certificate and key, both set or neither (cleartext).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificate chain (PEM); with `key`, the server speaks HTTPS, offering h2 and
    /// http/1.1 by ALPN (`CALLFLOW_SERVER__TLS__CERT`).
    pub cert: Option<PathBuf>,
    /// Private key (PEM) for `cert` (`CALLFLOW_SERVER__TLS__KEY`).
    pub key: Option<PathBuf>,
}

/// `[processing]`: the analysis job pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingSettings {
    /// Worker threads (`CALLFLOW_WORKERS`); the default is the number of cores.
    pub workers: usize,
    /// After a crash, re-run the jobs that were running (true) or mark them failed "interrupted".
    pub resume_interrupted: bool,
    /// A job interrupted this many times (its runs cut short by the process stopping, as
    /// a capture that crashes callflowd would) is failed at the next start, not resumed.
    /// [`ClusterSettings::max_attempts`] bounds the same count when another node takes
    /// over the jobs of a lost one.
    pub max_attempts: u32,
    /// A progress event is published at most once per this many packets of a job...
    pub progress_every_packets: u64,
    /// ...and at most this many times per second per job.
    pub progress_per_second: u32,
    /// How long (capture time) a finished call waits for retransmissions and late media.
    #[serde(with = "duration")]
    pub session_linger: Duration,
    /// How long (capture time) a silent session stays open.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Each job reads and decodes its capture on a second thread, ahead of the analysis
    /// (the results are the same either way).
    pub read_ahead: bool,
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        ProcessingSettings {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            resume_interrupted: true,
            max_attempts: 3,
            progress_every_packets: 1_000,
            progress_per_second: 10,
            session_linger: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(300),
            read_ahead: true,
        }
    }
}

/// `[storage]`: directories, database and retention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Where uploaded captures are kept while their jobs exist (`CALLFLOW_UPLOAD_DIR`).
    pub upload_dir: PathBuf,
    /// Where results live, the database included (`CALLFLOW_RESULTS_DIR`).
    pub results_dir: PathBuf,
    /// The job store: a SQLite file's path, or a PostgreSQL server's URL
    /// (`postgres://user:password@host:port/dbname?sslmode=...`, for several nodes on one
    /// store); unset: `callflow.db` in `results_dir`, so one results directory is one
    /// self-contained instance (`CALLFLOW_STORAGE__DATABASE`, `--database`).
    pub database: Option<String>,
    /// PostgreSQL: the most connections the store opens to the server.
    pub database_pool: usize,
    /// Finished jobs older than this are removed with their files.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// How often the retention sweeper runs.
    #[serde(with = "duration")]
    pub sweep_interval: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            upload_dir: "uploads".into(),
            results_dir: "results".into(),
            database: None,
            database_pool: 8,
            retention: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(600),
        }
    }
}

impl StorageSettings {
    /// The SQLite database file: `database`, or `callflow.db` in `results_dir` (with a
    /// PostgreSQL URL in `database`, the URL as a path: ask [`StorageSettings::database`]).
    pub fn database_path(&self) -> PathBuf {
        self.database.as_ref().map_or_else(|| self.results_dir.join("callflow.db"), PathBuf::from)
    }

    /// Where the job store is: a PostgreSQL URL or a SQLite file.
    pub fn database(&self) -> Database {
        match &self.database {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::Postgres(url.clone())
            }
            _ => Database::Sqlite(self.database_path()),
        }
    }
}

/// A database URL without its password, for messages, logs and `--print-config`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// Where the job store is, from `[storage] database`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (one node).
    Sqlite(PathBuf),
    /// A PostgreSQL server's URL (`postgres://` or `postgresql://`), password included.
    Postgres(String),
}

/// `[ndpi]`: the nDPI classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NdpiSettings {
    /// Classify with nDPI as well as the built-in heuristics (`CALLFLOW_ENABLE_NDPI`); on by
    /// default, used when the binary has nDPI built in.
    pub enabled: bool,
}

impl Default for NdpiSettings {
    fn default() -> Self {
        NdpiSettings { enabled: true }
    }
}

/// `[websocket]`: live event streams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSettings {
    /// Serve job events over WebSocket/SSE.
    pub enabled: bool,
    /// Events buffered per subscriber; past it the oldest progress events are dropped
    /// (state changes never are).
    pub event_buffer: usize,
    /// How often an idle connection is pinged.
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    /// Events queued per WebSocket connection; past it progress is coalesced, and a
    /// connection that would lose a state change is closed (1013).
    pub client_queue: usize,
    /// WebSocket and SSE clients connected at once; past it new ones get 503.
    pub max_clients: usize,
    /// Events kept per job in memory for SSE `Last-Event-ID` replay without reading the
    /// store's event log.
    pub replay_buffer: usize,
    /// How long the store's event log keeps events (resumes on any node, across restarts).
    #[serde(with = "duration")]
    pub event_log_retention: Duration,
    /// The most events the store's event log keeps.
    pub event_log_max: u64,
    /// How long a write to a WebSocket client may wait (its socket buffer full: the
    /// client stopped reading) before the connection is dropped.
    #[serde(with = "duration")]
    pub send_timeout: Duration,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        WebSocketSettings {
            enabled: true,
            event_buffer: 1024,
            ping_interval: Duration::from_secs(30),
            client_queue: 1000,
            max_clients: 1000,
            replay_buffer: 256,
            event_log_retention: Duration::from_secs(3600),
            event_log_max: 100_000,
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// `[auth]`: API authentication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Require an API key or a login token on every request.
    pub enabled: bool,
    /// The accepted keys (in the environment: comma-separated).
    pub api_keys: Vec<String>,
    /// Users who may `POST /api/login`: name -> argon2 password hash (PHC string).
    pub users: std::collections::BTreeMap<String, String>,
    /// How long a login token is valid.
    #[serde(with = "duration")]
    pub token_ttl: Duration,
    /// Password checks (argon2, 19 MiB each) running at once; past it, a login gets 503.
    pub max_concurrent_logins: usize,
    /// Login attempts per minute from one client address, and for one user name (token
    /// buckets; 0: no limit); past it, 429 with Retry-After.
    pub login_attempts_per_minute: u32,
    /// Login attempts a client address or a user name may burst above that rate.
    pub login_burst: u32,
    /// How long a share link (a read-only link to one call, `POST /api/v1/shares`) is valid.
    #[serde(with = "duration")]
    pub share_ttl: Duration,
    /// Share links valid at once; past it, making another gets 503.
    pub max_shares: usize,
}

/// The shortest accepted API key, in bytes: an empty or short key is guessed at once.
pub const MIN_API_KEY_BYTES: usize = 16;

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            enabled: false,
            api_keys: Vec::new(),
            users: Default::default(),
            token_ttl: Duration::from_secs(12 * 3600),
            max_concurrent_logins: 2,
            login_attempts_per_minute: 10,
            login_burst: 5,
            share_ttl: Duration::from_secs(7 * 24 * 3600),
            max_shares: 10_000,
        }
    }
}

/// `[limits]`: bounds on what clients may ask for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    /// Jobs that may wait in the queue; past it a submission is refused.
    pub max_queued_jobs: usize,
    /// Largest page of a listing.
    pub max_page_size: usize,
    /// Uploads in progress at once; past it new ones get 503.
    pub max_concurrent_uploads: usize,
    /// Requests per second each client address may sustain (token bucket; 0: no limit).
    pub rate_limit_per_second: u32,
    /// Requests a client may burst above its rate.
    pub rate_limit_burst: u32,
    /// Largest JSON request body (login and the like), in bytes; uploads have their own limit.
    pub max_body_bytes: usize,
    /// Largest size a compressed capture may inflate to, in bytes; past it its job fails.
    pub max_inflated_bytes: u64,
    /// Longest a job's analysis may run; past it the job fails.
    #[serde(with = "duration")]
    pub max_job_time: Duration,
    /// Slowest upload accepted, in bytes per second, averaged over each `server.request_timeout`
    /// (0: only some data in each such period); slower uploads are cut off with 408.
    pub upload_min_bytes_per_second: u64,
    /// Longest an upload may take from its first byte to its last; longer: 408.
    #[serde(with = "duration")]
    pub upload_deadline: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_upload_bytes: 10 << 30,
            max_queued_jobs: 10_000,
            max_page_size: 1_000,
            max_concurrent_uploads: 4,
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            max_body_bytes: 64 * 1024,
            max_inflated_bytes: 100 << 30,
            max_job_time: Duration::from_secs(6 * 3600),
            upload_min_bytes_per_second: 1024,
            upload_deadline: Duration::from_secs(2 * 3600),
        }
    }
}

/// `[legs]`: how the legs of one call through a B2BUA, SBC or proxy (each with its own
/// Call-ID) are found and linked (`related`, relation `leg`). The rules, strongest first:
/// RFC 7989 Session-ID, P-Charging-Vector icid-value, the correlation headers, the Call-ID
/// affixes, then (weaker) caller and callee with close INVITE times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LegSettings {
    /// Join legs (and transfers) at all.
    pub enabled: bool,
    /// Headers holding the Call-ID of the call's other leg, or a value every leg carries.
    pub correlation_headers: Vec<String>,
    /// Suffixes a B2BUA appends to the Call-ID it received to make the other leg's.
    pub call_id_suffixes: Vec<String>,
    /// Prefixes a B2BUA puts before the Call-ID it received.
    pub call_id_prefixes: Vec<String>,
    /// As a last resort, join calls with the same caller and callee and close INVITE
    /// times (recorded as a weaker match: `weak:` in the link's key).
    pub match_parties: bool,
    /// Most time between the INVITEs of two legs joined by caller and callee.
    #[serde(with = "duration")]
    pub party_window: Duration,
}

impl Default for LegSettings {
    fn default() -> Self {
        LegSettings {
            enabled: true,
            correlation_headers: [
                "X-CID",
                "X-Call-ID",
                "XCall-ID",
                "X-Orig-Call-ID",
                "X-Original-Call-ID",
                "X-BroadWorks-Correlation-Info",
                "Cisco-Guid",
            ]
            .map(String::from)
            .to_vec(),
            call_id_suffixes: ["_b2b-1", "_pbx-1"].map(String::from).to_vec(),
            call_id_prefixes: Vec::new(),
            match_parties: true,
            party_window: Duration::from_secs(2),
        }
    }
}

/// `[live]`: live jobs (`POST /api/v1/live`): the rotating files that keep what they
/// capture (so a call's pcap can be cut while it is in the retained window), how often
/// they report, and how many may run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    /// Where live jobs keep their traffic, a directory per job; unset: `live` in
    /// `storage.results_dir`.
    pub capture_dir: Option<PathBuf>,
    /// A live job's files are closed and a new one begun past this many bytes...
    pub segment_bytes: u64,
    /// ...and the oldest files deleted while the job keeps more than this many bytes.
    pub max_bytes: u64,
    /// Files whose last packet is older than this (by capture time, against the newest
    /// packet) are deleted; a file spans at most a quarter of it.
    #[serde(with = "duration")]
    pub max_age: Duration,
    /// How often a live job publishes a `stats` event (packets, drops, sessions, bytes kept).
    #[serde(with = "duration")]
    pub stats_interval: Duration,
    /// Frames waiting between a live source and its analysis; past it frames are dropped
    /// and counted, memory does not grow.
    pub queue_frames: usize,
    /// Live jobs that may run at once (each holds a thread and its source).
    pub max_jobs: usize,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            capture_dir: None,
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(3600),
            stats_interval: Duration::from_secs(5),
            queue_frames: 65_536,
            max_jobs: 4,
        }
    }
}

impl Settings {
    /// Where live jobs keep their traffic: `live.capture_dir`, or `live` in `storage.results_dir`.
    pub fn live_capture_dir(&self) -> PathBuf {
        self.live.capture_dir.clone().unwrap_or_else(|| self.storage.results_dir.join("live"))
    }

    /// This node's name: `cluster.node_name`, or the host name and `server.port`
    /// (`callflow-1:8080`). With `server.port = 0` (a port the system picks), where every
    /// node of a host would be `host:0`, the default is the host name and the process id
    /// (`callflow-1:pid4242`): a new name at each start, so such a node never finds its own
    /// jobs again by name (a live node takes them over after the lease). Name the nodes.
    pub fn node_name(&self) -> String {
        match (self.cluster.node_name.is_empty(), self.server.port) {
            (false, _) => self.cluster.node_name.clone(),
            (true, 0) => format!("{}:pid{}", host_name(), std::process::id()),
            (true, port) => format!("{}:{port}", host_name()),
        }
    }

    /// The URL this node's API is reached at: `cluster.advertise_url`, or the scheme the
    /// server speaks with the host name and `server.port`.
    pub fn advertise_url(&self) -> String {
        if self.cluster.advertise_url.is_empty() {
            let scheme = if self.server.tls.cert.is_some() { "https" } else { "http" };
            format!("{scheme}://{}:{}", host_name(), self.server.port)
        } else {
            self.cluster.advertise_url.clone()
        }
    }

    /// Checks what the types cannot say; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let tls = self.server.tls.cert.is_some() == self.server.tls.key.is_some();
        let keys = self.auth.api_keys.iter().all(|k| k.len() >= MIN_API_KEY_BYTES);
        let rules_ok = self.kpis.local_addresses.iter().all(|a| is_address_rule(a));
        let trunks_ok = self.kpis.trunks.iter().all(|t| t.addresses.iter().all(|a| is_address_rule(a)));
        let names_ok = self.kpis.trunks.iter().all(|t| !t.name.trim().is_empty());
        let hep_listen = self.hep.listen.parse::<std::net::SocketAddr>().is_ok();
        let node_name = self.cluster.node_name.is_empty() || is_node_name(&self.cluster.node_name);
        let url = &self.cluster.advertise_url;
        let advertise = url.is_empty()
            || ["http://", "https://"].iter().any(|s| url.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
        let checks: [(&'static str, bool, &str); 30] = [
            ("processing.workers", self.processing.workers >= 1, "must be at least 1"),
            ("processing.max_attempts", self.processing.max_attempts >= 1, "must be at least 1"),
            ("processing.progress_every_packets", self.processing.progress_every_packets >= 1, "must be at least 1"),
            ("processing.progress_per_second", self.processing.progress_per_second >= 1, "must be at least 1"),
            ("limits.max_queued_jobs", self.limits.max_queued_jobs >= 1, "must be at least 1"),
            ("limits.max_page_size", self.limits.max_page_size >= 1, "must be at least 1"),
            ("limits.max_concurrent_uploads", self.limits.max_concurrent_uploads >= 1, "must be at least 1"),
            ("server.tls.key", tls, "server.tls.cert and server.tls.key must be set together"),
            ("server.max_connections", self.server.max_connections >= 1, "must be at least 1"),
            (
                "auth.api_keys",
                !self.auth.enabled || !self.auth.api_keys.is_empty() || !self.auth.users.is_empty(),
                "must not be empty when auth.enabled (or set auth.users)",
            ),
            (
                "auth.api_keys",
                keys,
                "every key must be at least 16 bytes (an empty or short key is guessed at once); \
                 generate one with `openssl rand -hex 32`",
            ),
            ("auth.max_concurrent_logins", self.auth.max_concurrent_logins >= 1, "must be at least 1"),
            ("quality.interval", self.quality.interval >= Duration::from_millis(100), "must be at least 100ms"),
            ("quality.capture_loss_streams", self.quality.capture_loss_streams >= 2, "must be at least 2"),
            (
                "live.segment_bytes",
                self.live.segment_bytes >= 4096 && self.live.segment_bytes <= self.live.max_bytes,
                "must be at least 4096 and at most live.max_bytes",
            ),
            ("live.max_age", self.live.max_age >= Duration::from_secs(1), "must be at least 1s"),
            ("live.stats_interval", self.live.stats_interval >= Duration::from_millis(100), "must be at least 100ms"),
            ("live.queue_frames", self.live.queue_frames >= 1, "must be at least 1"),
            ("kpis.bucket", self.kpis.bucket >= Duration::from_secs(1), "must be at least 1s"),
            (
                "kpis.local_addresses",
                rules_ok,
                "every entry must be an address or a network (192.0.2.7, 198.51.100.0/24)",
            ),
            (
                "kpis.trunks",
                trunks_ok,
                "every trunk's addresses must be addresses or networks (192.0.2.7, 198.51.100.0/24)",
            ),
            ("kpis.trunks", names_ok, "every trunk needs a name"),
            ("hep.listen", hep_listen, "must be an address and a port, e.g. 127.0.0.1:9060 or [::1]:9060"),
            ("capture.queue_packets", self.capture.queue_packets >= 1, "must be at least 1"),
            ("capture.max_streams", self.capture.max_streams >= 1, "must be at least 1"),
            ("capture.snaplen", self.capture.snaplen >= 64, "must be at least 64"),
            (
                "cluster.node_name",
                node_name,
                "must be 1 to 128 letters, digits or -._:@ (empty: the host name and server.port)",
            ),
            ("cluster.advertise_url", advertise, "must be an http:// or https:// URL (empty: the host name and port)"),
            ("cluster.lease", self.cluster.lease >= Duration::from_secs(1), "must be at least 1s"),
            ("cluster.max_attempts", self.cluster.max_attempts >= 1, "must be at least 1"),
        ];
        match checks.into_iter().find(|(_, ok, _)| !ok) {
            Some((key, _, why)) => Err((key, why.to_string())),
            None => Ok(()),
        }
    }
}
