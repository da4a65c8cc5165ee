//! `GET /capture`: the Packetflix-compatible capture service, streaming live packets from a network namespace as pcapng over a WebSocket.
//!
//! The API is Siemens Packetflix's (its `api.md` and `captureparams.go`), so its clients
//! (csharg, the cshargextcap Wireshark plugin) work unchanged:
//!
//! - WebSocket only; a plain HTTP request gets 400 with `Sec-WebSocket-Version: 13`, as
//!   Packetflix's WebSocket library answers, and a text saying to use WebSocket.
//! - Parameters in the query, or in the `Clustershark-Container`, `Clustershark-Nif`,
//!   `Clustershark-Filter` and `Clustershark-Chaste` headers, which win (Kubernetes' API
//!   proxy drops the query of a WebSocket request): `netns=INODE` or `container=JSON`
//!   (exactly one), `nif=eth0/eth1` (`/`-separated, since names may hold commas; absent,
//!   `any` or csharg's `all`: the container's list if it gave one, else every interface),
//!   `filter=BPF`, `chaste` (no promiscuous mode). csharg always sends `container=` (as
//!   query and header); when the description lists no interfaces it first asks
//!   Packetflix's discovery service (GhostWire's `/discover/mobyshark`, not served here) and
//!   gives up without it, so its users list the interfaces in the description.
//! - The upgrade is accepted first; what goes wrong afterwards (bad parameters, no such or
//!   a stale namespace, an unknown interface, a bad filter, a missing privilege) ends the
//!   stream with a close frame whose reason names it, and the server waits for the client
//!   to answer the close, as Packetflix's `GracefullyClose` does. The parameter errors use
//!   Packetflix's own texts.
//! - The stream: binary messages carrying one pcapng section ([`callflow_live::pcapng`]).
//!   The client ends it with a close frame: the capture is stopped and its sockets closed
//!   before the close is answered. When the server ends it (shutdown, the capture failing)
//!   the Interface Statistics Blocks come first, then the close.
//!
//! **Close codes.** Packetflix closes on an error with 1006, which RFC 6455 §7.4.1 forbids
//! in a close frame: gorilla/websocket (csharg) and tungstenite both refuse a received
//! 1006 as a protocol error and drop its reason, so no client ever read Packetflix's
//! reasons. Here an error closes with a valid code and the same reason text, which every
//! client can read: 1008 for a bad request (bad parameters, no such or a stale namespace,
//! an unknown interface, a bad filter: the client must change what it asks), 1011 when the
//! capture itself fails (a missing privilege, libpcap failing, an interface lost during
//! the capture: the server could not fulfil a good request). csharg and cshargextcap
//! accept any close. A normal end is 1000, a shutdown 1001, and authentication failures
//! 4001 as on the other WebSocket routes.
//!
//! **Bounded memory.** The capture threads offer packets to a queue of
//! `capture.queue_packets` frames ([`callflow_live::channel`]); a pump thread turns them
//! into blocks and hands at most [`PUMP_MESSAGES`] messages of at most [`MESSAGE_BYTES`]
//! to the connection. A client reading slowly fills them; then the queue fills and the
//! capture drops (and counts) packets instead of holding more. A client that reads nothing
//! for `websocket.send_timeout` is let go.

use crate::auth::Authorized;
use crate::error::ApiError;
use crate::live::{login_token, within};
use crate::state::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use callflow_correlate::{FrameSource, Pulled};
use callflow_decode::capture::CaptureError;
use callflow_live::capture::{CaptureHandle, CaptureSpec, ContainerTarget, InterfaceStats, NetnsTarget};
use callflow_live::pcapng::{StreamWriter, TargetInfo};
use callflow_live::{ChannelSource, LiveCounters, LiveError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Close code for a capture that cannot start or failed (see the module docs for why not 1006).
pub const CLOSE_CAPTURE_FAILED: u16 = 1011;
/// Close code for a request the client must change: bad parameters, a namespace,
/// interface or filter that does not exist or does not compile (RFC 6455's policy violation,
/// its generic code for a refused request).
pub const CLOSE_BAD_REQUEST: u16 = 1008;
/// Close code for a stream the server ended normally.
const CLOSE_NORMAL: u16 = 1000;
/// Close code for a server going away.
const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a missing, bad, expired or revoked token (as on the other WebSocket routes).
const CLOSE_UNAUTHORIZED: u16 = 4001;
/// The longest close reason a frame can carry (125 bytes of payload less the code).
const MAX_REASON: usize = 123;
/// The pump flushes a message when it holds this much, or when the capture is quiet.
pub const MESSAGE_BYTES: usize = 64 * 1024;
/// Messages waiting for the connection: the pump blocks beyond this.
pub const PUMP_MESSAGES: usize = 4;
/// How long the capture queue waits before the pump flushes what it holds.
const QUIET: Duration = Duration::from_millis(20);
/// How long to wait for the client to answer a close before dropping the connection.
const CLOSING_DEADLINE: Duration = Duration::from_secs(10);

/// The streams allowed at once (`capture.max_streams`), shared by the route's handlers.
#[derive(Clone, Debug)]
pub struct Streams(Arc<Semaphore>);

impl Streams {
    /// Room for `max` streams at once.
    pub fn new(max: usize) -> Streams {
        Streams(Arc::new(Semaphore::new(max.max(1))))
    }
}

/// The capabilities callflowd lacks for the capture service, by name (empty: none).
pub fn missing_privileges() -> Vec<&'static str> {
    // CapEff is a hexadecimal bit mask; CAP_NET_RAW is bit 13, CAP_SYS_ADMIN bit 21.
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapEff:"))?.to_owned();
            u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
        })
        .unwrap_or(0);
    [(21, "CAP_SYS_ADMIN"), (13, "CAP_NET_RAW")]
        .into_iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| name)
        .collect()
}

/// What a request asks to capture.
#[derive(Debug)]
struct Request {
    spec: CaptureSpec,
    target: TargetInfo,
}

/// Reads the parameters (query, then the Clustershark-* headers, which win) as
/// Packetflix's `parseCaptureParams` does; the error texts are its own.
fn parse(uri: &Uri, headers: &HeaderMap, snaplen: u32) -> Result<Request, String> {
    let mut params: Vec<(String, String)> = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| format!("invalid query: {}", e.body_text()))?;
    for (name, key) in [
        ("clustershark-container", "container"),
        ("clustershark-nif", "nif"),
        ("clustershark-filter", "filter"),
        ("clustershark-chaste", "chaste"),
    ] {
        if let Some(value) = headers.get(name) {
            let value = value.to_str().map_err(|_| format!("the {name} header is not text"))?;
            params.retain(|(k, _)| k != key);
            params.push((key.to_owned(), value.to_owned()));
        }
    }
    let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let (netns, mut target, mut interfaces) = match (get("container"), get("netns")) {
        (Some(_), Some(_)) => return Err("container and netns query parameters are mutually exclusive".into()),
        (None, None) => return Err("either container or netns query parameter required".into()),
        (Some(json), None) => {
            let container: ContainerTarget =
                serde_json::from_str(json).map_err(|e| format!("invalid container/target description: {e}"))?;
            let target = TargetInfo {
                name: container.name.clone(),
                kind: container.kind.clone(),
                node_name: container.node_name.clone(),
                netns: container.netns,
                ..TargetInfo::default()
            };
            let interfaces = container.network_interfaces.clone().unwrap_or_default();
            (NetnsTarget::Container(container), target, interfaces)
        }
        (None, Some(netns)) => {
            let inode =
                netns.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| format!("invalid netns \"{netns}\""))?;
            let target = TargetInfo {
                name: format!("net:[{inode}]"),
                kind: "netns".into(),
                netns: Some(inode),
                ..TargetInfo::default()
            };
            (NetnsTarget::Inode(inode), target, Vec::new())
        }
    };
    if let Some(nif) = get("nif") {
        // "any" keeps the container's list (Packetflix); csharg sends "all" when it knows none.
        if nif != "any" && nif != "all" {
            interfaces = nif.split('/').filter(|n| !n.is_empty()).map(str::to_owned).collect();
        }
    }
    // Packetflix's last resort when no list is known is libpcap's "any"; every interface
    // of the namespace, each with its own description, is what that stands for.
    interfaces.retain(|n| n != "any" && n != "all");
    let filter = get("filter").filter(|f| !f.trim().is_empty()).map(str::to_owned);
    let chaste = get("chaste").is_some();
    if target.node_name.is_empty() {
        target.node_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
    }
    target.filter = filter.clone();
    target.chaste = chaste;
    Ok(Request { spec: CaptureSpec { netns: Some(netns), interfaces, filter, promiscuous: !chaste, snaplen }, target })
}

/// A close reason cut to what a close frame can carry, on a character boundary.
fn reason(text: &str) -> String {
    let mut end = text.len().min(MAX_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn close(code: u16, text: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason(text).into() }))
}

/// `GET /capture`.
pub async fn capture(
    State(state): State<AppState>,
    Extension(streams): Extension<Streams>,
    auth: Option<Extension<Authorized>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Ok(upgrade) = upgrade else {
        // What Packetflix's gorilla/websocket upgrader answers a plain request with.
        let mut response = ApiError::BadRequest(
            "/capture is a WebSocket endpoint: please connect with the WebSocket protocol (ws://, Upgrade: websocket)"
                .into(),
        )
        .into_response();
        response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return Ok(response);
    };
    let authorized = auth.is_none_or(|Extension(Authorized(ok))| ok);
    let token = login_token(&state, &headers, &uri);
    let permit = streams
        .0
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable("too many capture streams; retry later".into()))?;
    let request = parse(&uri, &headers, state.settings.capture.snaplen);
    Ok(upgrade.on_upgrade(move |mut socket| async move {
        let _permit = permit;
        if !authorized {
            let text = "unauthorized: pass ?token=<key or token> or Authorization: Bearer";
            within(state.settings.websocket.send_timeout, socket.send(close(CLOSE_UNAUTHORIZED, text))).await;
            return;
        }
        match request {
            Ok(request) => stream(&state, socket, request, token).await,
            Err(text) => {
                tracing::info!(%text, "capture refused");
                gracefully_close(&state, socket, CLOSE_BAD_REQUEST, &text).await;
            }
        }
    }))
}

/// Sends a close frame and waits (a while) for the client to answer it.
async fn gracefully_close(state: &AppState, mut socket: WebSocket, code: u16, text: &str) {
    if !within(state.settings.websocket.send_timeout, socket.send(close(code, text))).await {
        return;
    }
    let answered = async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSING_DEADLINE, answered).await;
}

/// What the pump hands the connection.
enum Pumped {
    /// Blocks to send.
    Data(Vec<u8>),
    /// The capture ended (all its threads stopped): the writer for the statistics, the
    /// packets delivered per interface, and the error it ended with, if any.
    End { writer: StreamWriter, delivered: Vec<u64>, error: Option<String> },
}

/// On a thread of its own: pulls frames from the capture queue, writes them as blocks and
/// hands messages to the connection, waiting when it has [`PUMP_MESSAGES`] unsent.
fn pump(mut source: ChannelSource, mut writer: StreamWriter, interfaces: usize, out: mpsc::Sender<Pumped>) {
    let mut delivered = vec![0u64; interfaces];
    let mut buffer = Vec::with_capacity(MESSAGE_BYTES);
    let error = loop {
        match source.next_frame() {
            Ok(Some(Pulled::Here(frame))) => {
                writer.packet(&frame, &mut buffer);
                if let Some(count) = delivered.get_mut(frame.interface as usize) {
                    *count += 1;
                }
                if buffer.len() >= MESSAGE_BYTES
                    && out.blocking_send(Pumped::Data(std::mem::take(&mut buffer))).is_err()
                {
                    return;
                }
            }
            Ok(Some(_)) => {
                if !buffer.is_empty() && out.blocking_send(Pumped::Data(std::mem::take(&mut buffer))).is_err() {
                    return;
                }
            }
            Ok(None) => break None,
            // The capture's own message ("capture on eth0 failed: ..."), without the
            // "I/O error" the queue wraps it in.
            Err(CaptureError::Io(err)) => break Some(err.to_string()),
            Err(err) => break Some(err.to_string()),
        }
    };
    if !buffer.is_empty() && out.blocking_send(Pumped::Data(buffer)).is_err() {
        return;
    }
    let _ = out.blocking_send(Pumped::End { writer, delivered, error });
}

/// The close code of a capture that could not start: the client's fault (what it named
/// does not exist or is not valid) or the capture's.
fn close_code(err: &LiveError) -> u16 {
    match err {
        LiveError::NoSuchNamespace(_)
        | LiveError::StaleNamespace(_)
        | LiveError::InvalidTarget(_)
        | LiveError::UnknownInterface { .. }
        | LiveError::BadFilter { .. } => CLOSE_BAD_REQUEST,
        _ => CLOSE_CAPTURE_FAILED,
    }
}

/// A label for the log line of a capture that could not start.
fn error_kind(err: &LiveError) -> &'static str {
    match err {
        LiveError::NoSuchNamespace(_) => "no_such_namespace",
        LiveError::StaleNamespace(_) => "stale_namespace",
        LiveError::InvalidTarget(_) => "invalid_target",
        LiveError::UnknownInterface { .. } => "unknown_interface",
        LiveError::BadFilter { .. } => "bad_filter",
        LiveError::NotPermitted { .. } => "not_permitted",
        _ => "capture",
    }
}

/// Stops the capture off the async threads; its final counters.
async fn stop(handle: CaptureHandle) -> Vec<InterfaceStats> {
    tokio::task::spawn_blocking(move || handle.stop()).await.unwrap_or_default()
}

async fn stream(state: &AppState, mut socket: WebSocket, request: Request, token: Option<String>) {
    let limit = state.settings.websocket.send_timeout;
    let (sender, source) = callflow_live::channel(state.settings.capture.queue_packets, QUIET);
    let counters: Arc<LiveCounters> = source.counters().clone();
    let spec = request.spec.clone();
    let started = tokio::task::spawn_blocking(move || callflow_live::capture::start(&spec, sender)).await;
    let handle = match started {
        Ok(Ok(handle)) => handle,
        Ok(Err(err)) => {
            let text = err.to_string();
            tracing::info!(%text, kind = error_kind(&err), "capture failed to start");
            gracefully_close(state, socket, close_code(&err), &text).await;
            return;
        }
        Err(_) => {
            gracefully_close(state, socket, CLOSE_CAPTURE_FAILED, "the capture could not be started").await;
            return;
        }
    };
    let mut target = request.target;
    target.netns = handle.netns_inode();
    let (writer, header) = StreamWriter::start(&target, handle.interfaces());
    tracing::info!(netns = ?handle.netns_inode(), interfaces = handle.interfaces().len(), "capture stream started");
    if !within(limit, socket.send(Message::Binary(header.into()))).await {
        stop(handle).await;
        return;
    }
    let (out, mut pumped) = mpsc::channel(PUMP_MESSAGES);
    let interfaces = handle.interfaces().len();
    let pump_thread =
        std::thread::Builder::new().name("capture-pump".into()).spawn(move || pump(source, writer, interfaces, out));
    if pump_thread.is_err() {
        stop(handle).await;
        gracefully_close(state, socket, CLOSE_CAPTURE_FAILED, "cannot start the capture's pump thread").await;
        return;
    }

    let mut shutdown = state.hub.shutdown.subscribe();
    let mut revocations = state.auth.revocations();
    let expiry = token.as_deref().and_then(|t| state.auth.expiry(t, std::time::Instant::now()).flatten());
    let expired = async move {
        match expiry {
            Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    // Why the server ends the stream, if it does: (code, reason).
    let mut ending: Option<(u16, String)> = None;
    let mut handle = Some(handle);
    let mut final_stats: Option<Vec<InterfaceStats>> = None;
    loop {
        tokio::select! {
            message = pumped.recv() => match message {
                Some(Pumped::Data(bytes)) => {
                    if !within(limit, socket.send(Message::Binary(bytes.into()))).await {
                        // The client stopped reading (or went away): let it go.
                        break;
                    }
                }
                Some(Pumped::End { mut writer, delivered, error }) => {
                    let stats = match handle.take() {
                        Some(handle) => stop(handle).await,
                        None => final_stats.take().unwrap_or_default(),
                    };
                    let dropped = counters.dropped.load(Ordering::Relaxed);
                    let now = u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()).unwrap_or(0);
                    let isb = writer.statistics(&stats, &delivered, dropped, now);
                    let (code, text) = match (ending.take(), error) {
                        (Some(ending), _) => ending,
                        (None, Some(error)) => (CLOSE_CAPTURE_FAILED, error),
                        (None, None) => (CLOSE_NORMAL, "capture process terminated".to_owned()),
                    };
                    tracing::info!(dropped, kernel = stats.iter().map(|s| s.kernel_dropped).sum::<u64>(), "capture stream ended");
                    if within(limit, socket.send(Message::Binary(isb.into()))).await {
                        gracefully_close(state, socket, code, &text).await;
                    }
                    return;
                }
                None => break,
            },
            incoming = socket.recv() => match incoming {
                // The client ends the capture: stop and release it, then answer the close
                // (tungstenite has queued the answer; flushing sends it).
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    if let Some(handle) = handle.take() {
                        stop(handle).await;
                    }
                    let _ = within(limit, futures_util::SinkExt::flush(&mut socket)).await;
                    return;
                }
                // Whatever else the client sends is ignored, as Packetflix does.
                Some(Ok(_)) => {}
            },
            _ = shutdown.changed(), if ending.is_none() => {
                ending = Some((CLOSE_GOING_AWAY, "server shutting down".into()));
                // The pump ends once the capture's threads have; its End carries the
                // writer, and the statistics are written then.
                if let Some(handle) = handle.take() {
                    final_stats = Some(stop(handle).await);
                }
            }
            _ = &mut expired, if ending.is_none() => {
                ending = Some((CLOSE_UNAUTHORIZED, "the token expired".into()));
                if let Some(handle) = handle.take() {
                    final_stats = Some(stop(handle).await);
                }
            }
            Ok(()) = revocations.changed(), if token.is_some() && ending.is_none() => {
                if token.as_deref().is_some_and(|t| state.auth.expiry(t, std::time::Instant::now()).is_none()) {
                    ending = Some((CLOSE_UNAUTHORIZED, "the token was revoked".into()));
                    if let Some(handle) = handle.take() {
                        final_stats = Some(stop(handle).await);
                    }
                }
            }
        }
    }
    if let Some(handle) = handle.take() {
        stop(handle).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The namespace, interfaces, filter and `chaste` a request asks for.
    type Parsed = (Option<NetnsTarget>, Vec<String>, Option<String>, bool);

    fn check(uri: &str, headers: &[(&str, &str)]) -> Result<Parsed, String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        let request = parse(&uri.parse().unwrap(), &map, 65535)?;
        let spec = request.spec;
        Ok((spec.netns, spec.interfaces, spec.filter, !spec.promiscuous))
    }

    #[test]
    fn parameters_are_read_as_packetflix_reads_them() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // '/' separates interfaces, because names may hold commas.
        assert_eq!(
            check("/capture?netns=42&nif=eth0/a,b&filter=udp&chaste", &[]),
            Ok((Some(NetnsTarget::Inode(42)), names(&["eth0", "a,b"]), Some("udp".into()), true))
        );
        // The headers win over the query.
        assert_eq!(
            check(
                "/capture?netns=42&nif=eth0&filter=tcp",
                &[("Clustershark-Nif", "eth1"), ("Clustershark-Filter", "udp")]
            ),
            Ok((Some(NetnsTarget::Inode(42)), names(&["eth1"]), Some("udp".into()), false))
        );
        // "any" (and csharg's "all") keep the container's own list; without one, everything.
        let json = r#"{"netns":42,"network-interfaces":["eth0","lo"],"name":"sbc"}"#;
        let (netns, nifs, _, _) = check("/capture?nif=any", &[("Clustershark-Container", json)]).unwrap();
        assert!(matches!(netns, Some(NetnsTarget::Container(c)) if c.netns == Some(42) && c.name == "sbc"));
        assert_eq!(nifs, names(&["eth0", "lo"]));
        assert_eq!(check("/capture?netns=42&nif=all", &[]).unwrap().1, Vec::<String>::new());
        assert_eq!(check("/capture?netns=42&nif=eth0//", &[]).unwrap().1, names(&["eth0"]));
        assert_eq!(check("/capture?netns=42&filter=%20", &[]).unwrap().2, None);
        // Packetflix's own error texts.
        assert_eq!(check("/capture", &[]).unwrap_err(), "either container or netns query parameter required");
        assert_eq!(
            check("/capture?netns=1", &[("Clustershark-Container", "{}")]).unwrap_err(),
            "container and netns query parameters are mutually exclusive"
        );
        assert_eq!(check("/capture?netns=0", &[]).unwrap_err(), "invalid netns \"0\"");
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let text = "é".repeat(100);
        let cut = reason(&text);
        assert!(cut.len() <= MAX_REASON && cut.len() >= MAX_REASON - 1);
        assert!(text.starts_with(&cut));
    }
}
