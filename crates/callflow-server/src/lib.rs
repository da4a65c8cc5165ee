//! callflowd's HTTP API: REST for uploads, jobs and sessions, live job events over WebSocket and Server-Sent Events, authentication and limits, on hyper (axum, tower-http).
//!
//! [`router`] builds the whole API as an axum `Router` from an [`AppState`] (the job
//! manager, the settings, the event hub), so tests drive it with
//! `tower::ServiceExt::oneshot` and no socket. [`Server`] binds the configured address
//! and serves the router over HTTP/1.1 and HTTP/2 (cleartext with prior knowledge, or TLS
//! with ALPN `h2`/`http/1.1` via rustls), with header size limits and a header read timeout
//! against slow clients, which also closes a connection that sends nothing (before or after
//! its TLS handshake), and an idle timeout that closes a connection, HTTP/2 included, with
//! no request in flight (`conn`); [`serve`] runs it until SIGTERM/SIGINT ([`shutdown_signal`]).
//! Errors are one type, [`ApiError`], answered as `{"error": {"code", "message"}}`.
//!
//! Architecture invariant: this is the only crate that speaks HTTP or WebSocket; it holds
//! no analysis logic. Jobs run in `callflow-jobs`; handlers call its blocking API off the
//! async threads, except for a job's status, answered from the manager's memory when it
//! has it (`JobManager::cached_status`).
//!
//! ```no_run
//! use callflow_config::Settings;
//! use callflow_jobs::{JobManager, ManagerOptions, SqliteStore};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = Settings::default();
//! let store = Arc::new(SqliteStore::open(settings.storage.database_path())?);
//! let (manager, _) = JobManager::start(store, ManagerOptions::from_settings(&settings))?;
//! callflow_server::serve(settings, Arc::new(manager)).await?;
//! # Ok(()) }
//! ```
//!
//! # Serving, and the blocking calls
//!
//! The HTTP API on hyper, through axum and tower-http. `router(AppState) -> Router` builds
//! every route (tests drive it with `oneshot`, no socket); `Server::bind` (or
//! `from_listener`, for a socket the caller bound and configured)/`run` serve it from their
//! own accept loop on hyper-util's auto connection builder (HTTP/1.1 and HTTP/2, cleartext
//! with prior knowledge or TLS with ALPN through tokio-rustls and ring), with header size
//! limits and a header read timeout, which `conn` extends to a connection's first bytes
//! (before and after TLS); `serve` runs until SIGTERM/SIGINT (`shutdown_signal`).
//! Modules: `api` (REST handlers, the `ROUTES` table the OpenAPI document is built from),
//! `live` (WebSocket and SSE), `hub` (job events as numbered JSON messages, fanned out to
//! per-client bounded queues, with a per-job ring for SSE `Last-Event-ID` replay), `access`
//! (the `Host` without authentication, the `Origin`/`Referer` of state-changing requests and
//! WebSocket upgrades), `auth` (API keys, argon2 users, login tokens and logout; logins
//! throttled per address and user name, and argon2 verifications capped, since each takes
//! 19 MiB), `limit` (token-bucket rate limit per client
//! address, URI length), `error`
//! (`ApiError`), `ui` (the web UI's page and assets, embedded, under their own
//! Content-Security-Policy), `share` (read-only expiring links to one call). Handlers call the job manager's blocking API through `AppState::jobs`, at
//! most four calls at a time on the blocking pool, the others waiting as futures in arrival
//! order (64 blocking threads contending for the store's connections made the slowest
//! requests several times slower); a job's status is answered from the manager's memory
//! without it.
//!
//! # What never blocks
//!
//! Handlers call the job manager's blocking API on `spawn_blocking`, except the status endpoint,
//! which clients poll: it asks `JobManager::cached_status` on the async thread (memory
//! only, never the store) and goes to the blocking pool only when that has no answer.
//! `DELETE` of a running job waits for it to stop the same way, polling its status on the
//! async thread between the cancel and the delete (409 if it still runs after 10 s), so no
//! blocking thread is held while a job stops. Every error leaves through `ApiError`
//! (`{"error": {"code", "message"}}`), internals only logged. Times are seconds since the
//! Unix epoch with a fraction, as in `callflow/v1` (the store keeps milliseconds). A
//! client's queue coalesces progress when full and closes the WebSocket (1013) rather than
//! drop a state change; a slow client never holds up a worker or another client.
//!
//! # Uploads and session captures
//!
//! An upload is streamed to `<upload_dir>/<key>.capture.part` under a job id reserved
//! before the first byte (`JobManager::reserve_id`; `<key>` is its store key, `JobId::key`,
//! not the UUID clients see; an unused reservation is only a gap in the keys), synced to
//! disk once complete, renamed to `<key>.capture` (the directory
//! synced in turn), and only then is the job created with that id: a refused, aborted or
//! oversized upload removes its file and never shows as a job, not even a power loss leaves
//! a job whose capture is empty or cut short, and the client's file name is only the job's
//! label. At start the server removes the `.part` files of its own interrupted uploads
//! (keys the store reserved, `JobStore::last_key`, and no job has); a complete `N.capture`
//! without a job, or a `.part` of an id the store never handed out, may be another store's
//! (a database lost, a results directory mistyped), so it is only reported (on a shared
//! store no `.part` file is touched: it may be another node's upload in progress), and an upload
//! never takes an id whose file exists. An upload is also refused (503) before its body is
//! read when the store cannot be written (`JobStore::check_writable`: the database file
//! deleted or replaced under the open store, no longer writable, or refusing a write), the
//! check `/health` makes too, reusing its answer for a second (about 70 µs a check). A full
//! disk answers 507 naming which one is full. When the job queue is full the upload is
//! refused (503) before its body is read (`JobManager::check_room`, the rule `submit`
//! applies again at the end), not after gigabytes have arrived. An upload must keep a
//! minimum rate over each `server.request_timeout` and end before `limits.upload_deadline`
//! (408 otherwise), so a trickle cannot hold one of the few upload slots; its name is at
//! most 255 bytes, and what a form sends between parts (part headers, skipped fields) is
//! bounded.
//!
//! A session's pcap (or its leg group's, `?group=true`), its ladder diagram, quality chart
//! and raw messages are drawn or cut by `callflow-render` from the stored session, reading
//! the job's capture again where it needs packets (pcap, the raw messages of the SVG and
//! HTML ladders, `messages/{frame}`), on the blocking pool. What is drawn from capture
//! content is served with `X-Content-Type-Options: nosniff` and a Content-Security-Policy
//! that runs nothing.

mod access;
mod admit;
mod api;
mod auth;
mod capture;
mod conn;
mod error;
mod hub;
mod limit;
mod live;
mod share;
pub mod sources;
mod state;
#[cfg(test)]
mod status_tests;
mod ui;

pub use api::{openapi_document, orphan_captures, ROUTES};
pub use auth::hash_password;
pub use error::ApiError;
pub use sources::{ChannelFeed, LiveRequest, LiveSource, LiveSources, Netns, SourceError};
pub use state::{AppShared, AppState};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use callflow_config::Settings;
use callflow_jobs::JobManager;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The address cannot be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A non-loopback address without authentication: anyone could use the service.
    #[error(
        "refusing to listen on {addr} without authentication: set [auth] enabled = true with api_keys or users \
         (CALLFLOW_AUTH__ENABLED=true, CALLFLOW_AUTH__API_KEYS=...), bind 127.0.0.1, or pass --insecure-no-auth"
    )]
    Insecure {
        /// The address.
        addr: String,
    },
    /// A setting is invalid (an empty or short API key...).
    #[error("invalid configuration: `{key}` {message}")]
    Config {
        /// The key at fault.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The TLS certificate or key cannot be read or used.
    #[error("TLS: {path}: {message}")]
    Tls {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Accepting connections failed.
    #[error("accepting connections: {0}")]
    Accept(std::io::Error),
    /// `[capture] enabled` without the capabilities the capture service needs.
    #[error(
        "[capture] enabled = true, but callflowd lacks {missing}: the capture service needs CAP_SYS_ADMIN \
         (to enter network namespaces) and CAP_NET_RAW (to capture); run it as root or grant them \
         (setcap cap_sys_admin,cap_net_raw+ep, or systemd's AmbientCapabilities=), or turn the service off"
    )]
    CapturePrivileges {
        /// The missing capabilities, e.g. `CAP_SYS_ADMIN and CAP_NET_RAW`.
        missing: String,
    },
}

/// The whole API on `state`.
pub fn router(state: AppState) -> Router {
    let s = &state.settings;
    let timeout = TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, s.server.request_timeout);
    // Requests that end when the handler answers get the request timeout; uploads (long
    // bodies, stalls checked per chunk) and event streams (long-lived) do not.
    let rest = Router::new()
        .route("/api/v1/jobs", get(api::jobs))
        .route("/api/v1/jobs/{id}/status", get(api::job_status))
        .route("/api/v1/jobs/{id}", delete(api::delete))
        .route("/api/v1/jobs/{id}/cancel", post(api::cancel))
        .route("/api/v1/live", post(api::start_live))
        .route("/api/v1/jobs/{id}/sessions", get(api::sessions))
        .route("/api/v1/jobs/{id}/subscribers", get(api::subscribers))
        .route("/api/v1/jobs/{id}/subscribers/{sub_id}", get(api::subscriber))
        .route("/api/v1/jobs/{id}/sessions/{session_id}", get(api::job_session))
        .route("/api/v1/jobs/{id}/sessions/{session_id}/pcap", get(api::job_session_pcap))
        .route("/api/v1/sessions/{session_id}", get(api::session))
        .route("/api/v1/sessions/{session_id}/pcap", get(api::session_pcap))
        .route("/api/v1/jobs/{id}/sessions/{session_id}/ladder", get(api::job_session_ladder))
        .route("/api/v1/jobs/{id}/sessions/{session_id}/chart", get(api::job_session_chart))
        .route("/api/v1/jobs/{id}/sessions/{session_id}/messages/{frame}", get(api::job_session_message))
        .route("/api/v1/sessions/{session_id}/ladder", get(api::session_ladder))
        .route("/api/v1/sessions/{session_id}/chart", get(api::session_chart))
        .route("/api/v1/sessions/{session_id}/messages/{frame}", get(api::session_message))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/v1/nodes", get(api::nodes))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/health", get(api::health))
        .route("/version", get(api::version))
        .route("/metrics", get(api::metrics))
        .route("/api/v1/jobs/{id}/stats", get(api::job_stats))
        .merge(ui::routes())
        .route("/api/v1/shares", post(share::create))
        .route("/api/v1/shares/{token}", delete(share::revoke))
        .route("/api/v1/share/{token}", get(share::session))
        .route("/api/v1/share/{token}/ladder", get(share::ladder))
        .route("/api/v1/share/{token}/chart", get(share::chart))
        .route("/api/v1/share/{token}/messages/{frame}", get(share::message))
        .route("/api/v1/share/{token}/pcap", get(share::pcap))
        .layer(timeout);
    let mut long = Router::new()
        .route("/api/v1/upload", post(api::upload).layer(DefaultBodyLimit::disable()))
        .route("/api/v1/ws", get(live::ws_all))
        // The WebSocket push document's path: the same handler (issue 19).
        .route("/api/ws", get(live::ws_all))
        .route("/api/v1/jobs/{id}/ws", get(live::ws_job))
        .route("/api/v1/jobs/{id}/events", get(live::sse));
    if s.capture.enabled {
        let streams = capture::Streams::new(s.capture.max_streams);
        long = long.route("/capture", get(capture::capture).layer(axum::Extension(streams)));
    }
    rest.merge(long)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .route_layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .layer(middleware::from_fn_with_state(state.clone(), access::check))
        .layer(middleware::from_fn_with_state(state.clone(), limit::limits))
        .layer(DefaultBodyLimit::max(s.limits.max_body_bytes))
        .layer(axum::Extension(error::BodyLimit(s.limits.max_body_bytes as u64)))
        .layer(cors(&s.server.cors_origins))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn count_request(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    // A cheap clone (an `Arc<str>`), not a copy. Routes are the router's templates, and
    // methods other than the standard ones are `other`: any token is a valid method, and
    // 20,000 invented ones made 21 MB of metrics.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = metric_method(req.method());
    let response = next.run(req).await;
    let route = route.as_ref().map_or("other", MatchedPath::as_str);
    state.metrics.request(method, route, response.status().as_u16());
    response
}

/// A method's label in `/metrics`: a standard method's name, else `other`.
fn metric_method(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN.iter().find(|m| *m == method).map_or("other", Method::as_str)
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE]);
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: AppState,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.local_addr()).field("tls", &self.tls.is_some()).finish()
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses invalid settings (an empty API key would let an empty `?token=` in), and a
/// non-loopback address without credentials unless told to.
fn check_auth(settings: &Settings, loopback: bool, addr: &str) -> Result<(), ServerError> {
    settings.validate().map_err(|(key, message)| ServerError::Config { key, message })?;
    let has_credentials = !settings.auth.api_keys.is_empty() || !settings.auth.users.is_empty();
    if loopback || (settings.auth.enabled && has_credentials) || settings.server.insecure_no_auth {
        Ok(())
    } else {
        Err(ServerError::Insecure { addr: addr.to_string() })
    }
}

/// The capture service needs to enter namespaces and open packet sockets: refused when on
/// without the capabilities for it, naming the missing ones.
fn check_capture(settings: &Settings) -> Result<(), ServerError> {
    let missing = if settings.capture.enabled { capture::missing_privileges() } else { Vec::new() };
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ServerError::CapturePrivileges { missing: missing.join(" and ") })
    }
}

impl Server {
    /// Binds `server.bind_addr:server.port` (port 0: any free port) and loads TLS if
    /// configured. A non-loopback address without authentication is refused unless
    /// `server.insecure_no_auth`.
    pub async fn bind(settings: Settings, manager: Arc<JobManager>) -> Result<Server, ServerError> {
        let host = settings.server.bind_addr.clone();
        // An IPv6 address is bracketed before its port.
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", settings.server.port)
        } else {
            format!("{host}:{}", settings.server.port)
        };
        // Refused before binding, so that a refused configuration never listens at all.
        check_auth(&settings, is_loopback(&host), &addr)?;
        check_capture(&settings)?;
        let listener = TcpListener::bind(&addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        Server::from_listener(listener, settings, manager).await
    }

    /// Serves on a listener the caller bound: socket activation, or socket options the
    /// settings have no key for (accepted connections inherit the listener's buffer
    /// sizes). `server.bind_addr` and `server.port` are not used; everything else is as
    /// in [`Server::bind`], the authentication check included.
    pub async fn from_listener(
        listener: TcpListener,
        settings: Settings,
        manager: Arc<JobManager>,
    ) -> Result<Server, ServerError> {
        let local = listener.local_addr().map_err(|source| ServerError::Bind { addr: "listener".into(), source })?;
        check_auth(&settings, local.ip().is_loopback(), &local.to_string())?;
        check_capture(&settings)?;
        let tls = match (&settings.server.tls.cert, &settings.server.tls.key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let (dir, jobs) = (settings.storage.upload_dir.clone(), manager.clone());
        let ws = settings.websocket.clone();
        // Nothing is uploading yet: the `.part` files of interrupted uploads can go. Complete
        // captures without a job are only reported: they may be another store's.
        let (removed, orphans) = tokio::task::spawn_blocking(move || {
            // The event log is pruned before the first client can resume from it (then
            // every minute, by the hub): what a resume finds kept is what the settings say.
            let before = callflow_jobs::now_millis() - ws.event_log_retention.as_millis() as i64;
            if let Err(e) = jobs.store().prune_events(before, ws.event_log_max) {
                tracing::warn!(error = %e, "cannot prune the event log");
            }
            (api::remove_interrupted_uploads(&dir, &**jobs.store()), api::orphan_captures(&dir, &**jobs.store()))
        })
        .await
        .unwrap_or_default();
        if removed > 0 {
            tracing::info!(removed, "removed the partial files of interrupted uploads");
        }
        if let Some(first) = orphans.first() {
            tracing::warn!(
                count = orphans.len(),
                first = %first.display(),
                "captures in the upload directory belong to no job of this database (a database lost or \
                 replaced, or another instance's results directory?); kept: run `callflowd --remove-orphan-captures` \
                 with this configuration to delete them"
            );
        }
        Ok(Server { listener, tls, state: AppState::bound(manager, settings, Some(local)) })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The server with live jobs' sources opened by `sources` instead of
    /// [`LiveSources::builtin`] (an embedder's own kinds, or a test's replayed capture).
    pub fn with_live_sources(mut self, sources: LiveSources) -> Server {
        // The state is shared only once the server runs: until then this is its one owner.
        if let Some(shared) = std::sync::Arc::get_mut(&mut self.state.0) {
            shared.live_sources = sources;
        }
        self
    }

    /// The shared state (for embedding and tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, closes event streams,
    /// and gives requests in flight up to 10 seconds to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let Server { listener, tls, state } = self;
        let settings = state.settings.clone();
        let hub = state.hub.clone();
        let metrics = state.metrics.clone();
        let app = router(state);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.server.header_timeout)
            .max_buf_size(settings.server.max_header_bytes.max(8192));
        builder.http2().timer(TokioTimer::new()).max_header_list_size(settings.server.max_header_bytes as u32);
        // Each connection's task holds a receiver: `closed()` is all of them finished.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let limits = conn::IdleLimits { first: settings.server.header_timeout, between: settings.server.idle_timeout };
        let connections = admit::Connections::new(
            admit::ConnectionLimits {
                total: settings.server.max_connections,
                per_client: settings.server.max_connections_per_client,
            },
            metrics,
        );
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
                },
                _ = &mut shutdown => break,
            };
            // Past a limit the connection is dropped here, closing it (counted in /metrics).
            let Ok(slot) = connections.admit(peer.ip()) else { continue };
            let app = app.clone();
            let (activity, load) = conn::Activity::new();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                // In flight until the response body is dropped: an event stream keeps its
                // connection open however long it lasts.
                let busy = activity.begin();
                let call = app.clone().oneshot(req.map(axum::body::Body::new));
                async move {
                    let response = call.await?;
                    Ok::<_, std::convert::Infallible>(response.map(|body| {
                        axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                            let _busy = &busy;
                            frame
                        }))
                    }))
                }
            });
            let builder = builder.clone();
            let tls = tls.clone();
            let stopping = stopping.clone();
            let header_timeout = settings.server.header_timeout;
            tokio::spawn(async move {
                let _slot = slot;
                let _ = stream.set_nodelay(true);
                match tls {
                    Some(acceptor) => {
                        // The handshake is bounded like headers are: a slow client gets no more time.
                        let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await else {
                            return;
                        };
                        // Then a request's first bytes get as long again.
                        let stream = conn::FirstBytes::new(stream, header_timeout);
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        tokio::pin!(conn);
                        let idle = conn::idle(load, limits);
                        conn::drive(conn, |c| c.graceful_shutdown(), idle, stopping, header_timeout).await;
                    }
                    None => {
                        let stream = conn::FirstBytes::new(stream, header_timeout);
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        tokio::pin!(conn);
                        let idle = conn::idle(load, limits);
                        conn::drive(conn, |c| c.graceful_shutdown(), idle, stopping, header_timeout).await;
                    }
                }
            });
        }
        drop(listener);
        drop(stopping);
        hub.stop();
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), stop.closed()).await;
        Ok(())
    }
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |path: &PathBuf, message: String| ServerError::Tls { path: path.clone(), message };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| err(key, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Binds as configured and serves until SIGTERM or SIGINT.
pub async fn serve(settings: Settings, manager: Arc<JobManager>) -> Result<(), ServerError> {
    let server = Server::bind(settings, manager).await?;
    tracing::info!(addr = %server.local_addr(), "listening");
    server.run(shutdown_signal()).await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
