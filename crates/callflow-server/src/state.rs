//! [`AppState`]: what every handler shares (the job manager, settings, the event hub, limits and metrics).

use crate::access::Access;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::limit::RateLimiter;
use callflow_config::Settings;
use callflow_jobs::{JobError, JobId, JobManager, JobRef, JobState, JobStatus};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How many calls to the job manager run at once on the blocking pool. With 64 requests
/// in flight, 64 blocking threads took turns at the store's few SQLite connections, in no
/// particular order: a page of 100 sessions had a p99 of 73-91 ms, against 19-23 ms with
/// the others waiting here, first come first served, at the same rate. Four: the store's
/// two read connections and its writer, and one more so that a slow call does not stop
/// the rest.
const STORE_CALLS: usize = 4;

/// How long `/health` reuses a storage check.
const STORAGE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Shared by every handler; cheap to clone: one `Arc`, since each middleware layer and
/// the handler clone it for every request (eight `Arc`s cloned and dropped four times a
/// request were about 5 % of the status endpoint's profile). Its fields are [`AppShared`]'s.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<AppShared>);

impl std::ops::Deref for AppState {
    type Target = AppShared;
    fn deref(&self) -> &AppShared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct AppShared {
    /// The job manager.
    pub manager: Arc<JobManager>,
    /// The effective configuration.
    pub settings: Arc<Settings>,
    /// This node's name in the job store (`cluster.node_name`, or the host name and port:
    /// see `Settings::node_name`), for what the node reports about itself (`/metrics` labels).
    pub node_name: String,
    /// Live events.
    pub hub: Arc<Hub>,
    /// Credentials and login tokens.
    pub auth: Arc<Auth>,
    /// The hosts and origins requests may come from.
    pub(crate) access: Access,
    /// Per-client request rate.
    pub rate: Arc<RateLimiter>,
    /// Uploads in progress.
    pub uploads: Arc<Semaphore>,
    /// WebSocket and SSE clients connected.
    pub clients: Arc<Semaphore>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Opens live jobs' sources.
    pub live_sources: crate::sources::LiveSources,
    /// Share links to single calls.
    pub(crate) shares: crate::share::Shares,
    /// Calls to the job manager in flight on the blocking pool (see [`AppState::jobs`]).
    store_calls: Arc<Semaphore>,
    /// The last storage check: when, and its error if it failed (see [`AppState::storage_check`]).
    storage_checked: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// The state for `manager` under `settings`; starts the thread that feeds the hub.
    pub fn new(manager: Arc<JobManager>, settings: Settings) -> AppState {
        AppState::bound(manager, settings, None)
    }

    /// As [`AppState::new`], for a server bound to `local`: its address and port are among
    /// the names requests may be addressed to (`server.port` may be 0).
    pub(crate) fn bound(manager: Arc<JobManager>, settings: Settings, local: Option<SocketAddr>) -> AppState {
        let store = manager.store().clone();
        let hub = Hub::new(settings.websocket.client_queue, settings.websocket.replay_buffer);
        let metrics = Arc::new(Metrics::default());
        let m = metrics.clone();
        let limits = crate::hub::LogLimits {
            retention: settings.websocket.event_log_retention,
            max_events: settings.websocket.event_log_max,
        };
        hub.pump(manager.subscribe(), manager.store().clone(), limits, move |event| {
            if let callflow_jobs::Event::State(job) = event {
                if job.state == JobState::Completed {
                    m.packets.fetch_add(job.packets, Ordering::Relaxed);
                }
            }
        });
        let node_name = manager.node_name().to_string();
        AppState(Arc::new(AppShared {
            manager,
            hub,
            auth: Auth::new(&settings.auth).share_through(store),
            access: Access::new(&settings.server, settings.auth.enabled, local),
            rate: Arc::new(RateLimiter::new(settings.limits.rate_limit_per_second, settings.limits.rate_limit_burst)),
            uploads: Arc::new(Semaphore::new(settings.limits.max_concurrent_uploads.max(1))),
            clients: Arc::new(Semaphore::new(settings.websocket.max_clients.max(1))),
            metrics,
            live_sources: crate::sources::LiveSources::builtin(),
            shares: Default::default(),
            store_calls: Arc::new(Semaphore::new(STORE_CALLS)),
            storage_checked: Mutex::new(None),
            node_name,
            settings: Arc::new(settings),
        }))
    }

    /// Job `id`'s status: from the manager's memory on this thread when it has it (a lock
    /// and a lookup), else from the store on the blocking pool.
    pub async fn status(&self, id: JobId) -> Result<Arc<JobStatus>, ApiError> {
        match self.manager.cached_status(id) {
            Some(status) => Ok(status),
            None => self.jobs(move |m| m.status(id)).await,
        }
    }

    /// The job a client names in a path or a body (`id`: a UUID, or the number of a job
    /// created before ids were UUIDs): from the manager's memory when it knows the UUID,
    /// else from the store. 404 naming `id` when no job has it or it is no job id at all.
    pub async fn resolve(&self, id: &str) -> Result<JobId, ApiError> {
        let by: JobRef = id.parse().map_err(|_| ApiError::job_not_found(id))?;
        if let Some(found) = self.manager.cached_resolve(by) {
            return Ok(found);
        }
        self.jobs(move |m| m.resolve(by)).await?.ok_or_else(|| ApiError::job_not_found(id))
    }

    /// Whether the store can be written ([`JobManager::check_writable`]), or why not. The
    /// answer is kept for a second: health checks as frequent as a client likes cost one
    /// write a second.
    pub async fn storage_check(&self) -> Result<(), String> {
        let cached = |state: &AppState| {
            let checked = state.storage_checked.lock().unwrap_or_else(|e| e.into_inner());
            checked.as_ref().filter(|(at, _)| at.elapsed() < STORAGE_CHECK_EVERY).map(|(_, r)| r.clone())
        };
        if let Some(result) = cached(self) {
            return result;
        }
        let result = self.jobs(|m| m.check_writable()).await.map_err(|e| e.to_string());
        *self.storage_checked.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), result.clone()));
        result
    }

    /// Runs `f` on the manager off the async threads (the store is SQLite, which blocks).
    ///
    /// At most `STORE_CALLS` (a constant of this module) run at a time; the others wait here, in the order they
    /// came, as futures rather than as blocking threads.
    pub async fn jobs<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&JobManager) -> Result<T, JobError> + Send + 'static,
    {
        let permit = self
            .store_calls
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::Internal(format!("store calls: {e}")))?;
        let manager = self.manager.clone();
        // The call holds its place until it ends, even when the request is dropped first
        // (a timeout, a client gone): what runs on the blocking pool is what is counted.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&manager)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("job task failed: {e}")))?
        .map_err(ApiError::from)
    }
}

/// `text` (the Prometheus text format) with every sample labelled `node="<node>"`, the
/// label last: several nodes' series stay apart when one Prometheus scrapes them all, or
/// when a dashboard sums them. Comments and blank lines are kept as they are.
pub fn label_with_node(text: &str, node: &str) -> String {
    let node = node.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut out = String::with_capacity(text.len() + text.lines().count() * (node.len() + 10));
    for line in text.split_inclusive('\n') {
        if line.starts_with('#') || line.trim().is_empty() {
            out.push_str(line);
            continue;
        }
        // A sample: `name value`, or `name{labels} value` (a label's value may hold `}`, so
        // the labels end at the last `}` before the value).
        match line.find(['{', ' ']) {
            Some(i) if line.as_bytes()[i] == b'{' => {
                let close = line.rfind('}').unwrap_or(line.len());
                let labels = &line[i + 1..close];
                let sep = if labels.trim().is_empty() { "" } else { "," };
                let _ = write!(out, "{}{labels}{sep}node=\"{node}\"{}", &line[..=i], &line[close..]);
            }
            Some(i) => {
                let _ = write!(out, "{}{{node=\"{node}\"}}{}", &line[..i], &line[i..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Requests with one method and one status: (method, status, count).
type RequestCount = (String, u16, u64);

/// Counters for `GET /metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Route -> (method, status, count): looked up by `&str`, so counting a request
    /// allocates nothing once its route, method and status have been seen.
    requests: Mutex<BTreeMap<String, Vec<RequestCount>>>,
    /// Packets analysed by completed jobs since start.
    pub packets: AtomicU64,
    /// Bytes of uploads received.
    pub upload_bytes: AtomicU64,
    /// WebSocket clients connected now.
    pub ws_clients: AtomicU64,
    /// SSE clients connected now.
    pub sse_clients: AtomicU64,
    /// HTTP connections open now.
    pub connections: AtomicU64,
    /// Connections closed at once, past `server.max_connections`.
    refused_total: AtomicU64,
    /// Connections closed at once, past `server.max_connections_per_client`.
    refused_per_client: AtomicU64,
}

impl Metrics {
    /// Counts a request to `route` answered with `status`.
    pub fn request(&self, method: &str, route: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let counts = match requests.get_mut(route) {
            Some(counts) => counts,
            None => requests.entry(route.to_string()).or_default(),
        };
        match counts.iter_mut().find(|(m, s, _)| m == method && *s == status) {
            Some((_, _, n)) => *n += 1,
            None => counts.push((method.to_string(), status, 1)),
        }
    }

    /// Counts a connection closed at once for `why`.
    pub fn count_refused_connection(&self, why: crate::admit::Refusal) {
        match why {
            crate::admit::Refusal::Total => &self.refused_total,
            crate::admit::Refusal::PerClient => &self.refused_per_client,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed at once: (past the total limit, past the per-client limit).
    pub fn connections_refused(&self) -> (u64, u64) {
        (self.refused_total.load(Ordering::Relaxed), self.refused_per_client.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition, with `jobs` counted by state.
    pub fn render(&self, jobs: &[(JobState, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP callflow_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE callflow_http_requests_total counter\n");
        for (route, counts) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let mut counts = counts.clone();
            counts.sort();
            for (method, status, n) in counts {
                let _ = writeln!(
                    out,
                    "callflow_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP callflow_jobs Jobs by state.\n# TYPE callflow_jobs gauge\n");
        for (state, n) in jobs {
            let _ = writeln!(out, "callflow_jobs{{state=\"{state}\"}} {n}");
        }
        let gauges = [
            ("callflow_packets_analysed_total", "counter", "Packets analysed by completed jobs.", &self.packets),
            ("callflow_upload_bytes_total", "counter", "Bytes of uploaded captures received.", &self.upload_bytes),
            ("callflow_websocket_clients", "gauge", "WebSocket clients connected.", &self.ws_clients),
            ("callflow_sse_clients", "gauge", "Server-Sent Events clients connected.", &self.sse_clients),
            ("callflow_connections", "gauge", "HTTP connections open.", &self.connections),
        ];
        for (name, kind, help, value) in gauges {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value.load(Ordering::Relaxed));
        }
        let (total, per_client) = self.connections_refused();
        out.push_str(
            "# HELP callflow_connections_refused_total Connections closed at once, by the limit they were past.\n\
             # TYPE callflow_connections_refused_total counter\n",
        );
        let _ = writeln!(out, "callflow_connections_refused_total{{limit=\"total\"}} {total}");
        let _ = writeln!(out, "callflow_connections_refused_total{{limit=\"per_client\"}} {per_client}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::label_with_node;

    #[test]
    fn every_sample_gets_the_node_label_last_and_comments_stay() {
        let text = "# HELP a A.\n# TYPE a gauge\na 1\nb{x=\"1\",y=\"}\"} 2\nc{} 3\n\nd_total 4 1700000000\n";
        assert_eq!(
            label_with_node(text, "n\"1"),
            "# HELP a A.\n# TYPE a gauge\na{node=\"n\\\"1\"} 1\nb{x=\"1\",y=\"}\",node=\"n\\\"1\"} 2\n\
             c{node=\"n\\\"1\"} 3\n\nd_total{node=\"n\\\"1\"} 4 1700000000\n"
        );
    }
}
