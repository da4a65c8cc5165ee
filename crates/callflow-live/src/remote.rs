//! A client for a remote Packetflix-compatible capture stream: `ws://HOST:PORT/capture?...`,
//! `wss://...`, or the Wireshark extcap spelling `packetflix:ws://...`.
//!
//! A Packetflix server (Siemens' packetflix, or callflowd's own `/capture`) answers the
//! WebSocket upgrade and then sends binary messages that, put end to end, are one pcapng
//! stream: a section header, an interface description per interface, enhanced packet
//! blocks, and at the end statistics. Message boundaries mean nothing (Packetflix sends
//! whatever its capture process wrote to its standard output), so [`start`] reads the
//! messages through a [`Read`] adaptor and lets `callflow-decode`'s
//! [`CaptureReader`] cut the blocks, exactly as it reads a capture from standard input.
//!
//! The whole client runs on one thread of its own, with a single-threaded tokio runtime
//! driven from inside the adaptor's `read`: the socket is read only when the pcapng reader
//! wants bytes, and each frame goes to the analysis with [`FrameSender::send`], which
//! waits when the analysis is behind. A slow analysis therefore slows the TCP stream down
//! (the server drops, and counts, on its side) instead of losing frames here or growing a
//! buffer.
//!
//! How a stream ends:
//! - [`RemoteHandle::stop`]: the client sends a close frame (1000, as csharg does), waits
//!   briefly for the server's answer, and the source ends normally.
//! - The server closes with a normal code (1000): the capture ended; the source ends
//!   (or, with [`RemoteSpec::reconnect`], the client connects again).
//! - The server closes with any other code: its reason names the problem (no such
//!   namespace, bad filter, ...); the source fails with [`CaptureError::Io`] whose
//!   message quotes the reason and the code. Reconnecting would only repeat it, so
//!   this ends the source even with reconnection on.
//! - The connection is lost (reset, end of stream without a close frame, a damaged
//!   pcapng stream): without reconnection the source fails saying so; with it, the client
//!   waits (doubling from [`Backoff::initial`] up to [`Backoff::max`]), reports each
//!   attempt to [`RemoteSpec::on_event`] and [`RemoteHandle::reconnects`], and reads the
//!   new connection's stream (a new pcapng section) on.
//!
//! One quirk of the original: Packetflix closes on an error with code 1006, which RFC 6455
//! forbids on the wire; the WebSocket library (like gorilla, under Packetflix's own Go
//! client) then reports a bare protocol violation. A small tap on the incoming bytes
//! (`CloseTap`: frame headers and the close frame's payload only) keeps the close as
//! sent, so the error still quotes the server's reason, with code 1006.

use crate::channel::{FrameSender, OwnedFrame};
use callflow_decode::capture::{CaptureError, CaptureReader};
use futures_util::{SinkExt, StreamExt};
use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// The largest WebSocket message accepted: a pcapng block is at most
/// [`callflow_decode::capture::MAX_BLOCK_LEN`], and a server has no reason to send more in
/// one message than a few blocks.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// How long a closing handshake may take before the connection is dropped anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The Debian (and most Linux distributions') bundle of trusted CA certificates.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a remote stream could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The address is not a `ws://`, `wss://` or `packetflix:ws://` URL with a host.
    #[error("not a capture stream URL: {url:?}: {reason}")]
    BadUrl {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TCP connection (or the TLS handshake) failed.
    #[error("cannot connect to {url}")]
    Connect {
        /// The address connected to.
        url: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The server did not accept the WebSocket upgrade (an HTTP error status, or not a
    /// WebSocket server at all).
    #[error("{url} refused the WebSocket upgrade: {reason}")]
    Refused {
        /// The address connected to.
        url: String,
        /// The status and what the server said, or the handshake error.
        reason: String,
    },
    /// The CA certificates for `wss://` could not be loaded.
    #[error("cannot load CA certificates from {path}: {reason}")]
    Certificates {
        /// The PEM file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The client's thread or runtime could not be started.
    #[error("cannot start the remote capture client: {0}")]
    Start(io::Error),
}

/// Waiting times between reconnection attempts: `initial`, doubled after each failed
/// attempt, at most `max`; back to `initial` once a connection has delivered a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first attempt.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) }
    }
}

/// What happened to a remote stream that reconnects, for a live job's events or a log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteEvent {
    /// The stream was lost (why); the client tries again after `retry_in`.
    Lost {
        /// Why the stream ended.
        reason: String,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// Attempt number `attempt` (counting from 1 since the stream was lost) connected.
    Reconnected {
        /// How many attempts it took.
        attempt: u32,
    },
}

/// A callback told of every [`RemoteEvent`], on the client's thread (so keep it short).
pub type EventHook = Arc<dyn Fn(&RemoteEvent) + Send + Sync>;

/// What to connect to, and how to behave when the stream is lost.
#[derive(Clone)]
pub struct RemoteSpec {
    /// The WebSocket URL (`ws://` or `wss://`), without the `packetflix:` prefix.
    pub url: Uri,
    /// `None`: a lost stream ends the source with an error. `Some`: connect again with
    /// this backoff, until stopped.
    pub reconnect: Option<Backoff>,
    /// PEM file of the CA certificates trusted for `wss://`; `None`: the system bundle.
    pub ca_file: Option<PathBuf>,
    /// How long connecting (TCP, TLS and the upgrade) may take.
    pub connect_timeout: Duration,
    /// Told of each reconnection.
    pub on_event: Option<EventHook>,
}

impl fmt::Debug for RemoteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSpec")
            .field("url", &self.url)
            .field("reconnect", &self.reconnect)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("on_event", &self.on_event.as_ref().map(|_| "..."))
            .finish()
    }
}

impl RemoteSpec {
    /// Reads a stream address: `ws://HOST[:PORT]/PATH?QUERY`, `wss://...`, or either
    /// prefixed with `packetflix:` (the extcap plugin's spelling). No reconnection, the
    /// system's CA certificates, a 10-second connect timeout.
    pub fn parse(address: &str) -> Result<RemoteSpec, RemoteError> {
        let bad = |reason: &str| RemoteError::BadUrl { url: address.to_string(), reason: reason.to_string() };
        let url = address.strip_prefix("packetflix:").unwrap_or(address);
        let url: Uri =
            url.parse().map_err(|e: tokio_tungstenite::tungstenite::http::uri::InvalidUri| bad(&e.to_string()))?;
        match url.scheme_str() {
            Some("ws" | "wss") => {}
            _ => return Err(bad("the scheme must be ws:// or wss://")),
        }
        if url.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        Ok(RemoteSpec { url, reconnect: None, ca_file: None, connect_timeout: Duration::from_secs(10), on_event: None })
    }

    /// Whether `address` is spelled as a remote stream (rather than a file or an interface).
    pub fn is_remote(address: &str) -> bool {
        let url = address.strip_prefix("packetflix:").unwrap_or(address);
        url.starts_with("ws://") || url.starts_with("wss://")
    }

    fn tls(&self) -> bool {
        self.url.scheme_str() == Some("wss")
    }

    /// The host as the socket wants it (an IPv6 literal without its brackets) and the port.
    fn host_port(&self) -> (String, u16) {
        let host = self.url.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_string();
        let port = self.url.port_u16().unwrap_or(if self.tls() { 443 } else { 80 });
        (host, port)
    }
}

/// The running client: stop it, or ask how often it reconnected.
#[derive(Debug)]
pub struct RemoteHandle {
    stop: watch::Sender<bool>,
    reconnects: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RemoteHandle {
    /// Closes the stream (a close frame, then a short wait for the server's) and waits for
    /// the client's thread; the source then ends after the frames already queued.
    pub fn stop(mut self) {
        self.shut();
    }

    /// Successful reconnections so far.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Whether the client has ended (the stream closed, failed, or the analysis went away).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn shut(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RemoteHandle {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Connects to `spec.url` and feeds the frames of its pcapng stream to `sender` from a
/// thread of its own. Returns once the first connection is made (its failure is the
/// error: a wrong address or a refused upgrade is not worth retrying); what happens
/// later (a close with a reason, a lost connection) reaches the analysis through
/// [`FrameSender::fail`], or is retried with [`RemoteSpec::reconnect`].
pub fn start(spec: &RemoteSpec, sender: FrameSender) -> Result<RemoteHandle, RemoteError> {
    let tls = if spec.tls() { Some(tls_config(spec.ca_file.as_deref())?) } else { None };
    let (stop_tx, stop_rx) = watch::channel(false);
    let reconnects = Arc::new(AtomicU64::new(0));
    let spec = spec.clone();
    let counter = reconnects.clone();
    // The first connection is made on the client's thread too, so that `start` may be
    // called from inside another tokio runtime (callflowd's), which cannot block on one.
    let (first_tx, first_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("callflow-remote".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
                Ok(runtime) => Arc::new(runtime),
                Err(e) => {
                    let _ = first_tx.send(Err(RemoteError::Start(e)));
                    return;
                }
            };
            // A bug here must not look like a stream that ended well: the analysis is told.
            let _guard = PanicGuard(sender.clone());
            let client = Client { spec, tls, runtime, stop: stop_rx, reconnects: counter, sender };
            match client.runtime.block_on(client.connect()) {
                Ok(socket) => {
                    let _ = first_tx.send(Ok(()));
                    client.run(socket);
                }
                Err(e) => {
                    let _ = first_tx.send(Err(e));
                }
            }
        })
        .map_err(RemoteError::Start)?;
    let handle = RemoteHandle { stop: stop_tx, reconnects, thread: Some(thread) };
    match first_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(RemoteError::Start(io::Error::other("the client's thread ended before connecting"))),
    }
}

/// Fails the source if the client's thread panics.
struct PanicGuard(FrameSender);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(CaptureError::Io(io::Error::other(
                "the remote capture client failed (a bug: see the panic above)",
            )));
        }
    }
}

/// Loads the CA certificates `wss://` trusts.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, RemoteError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let path = ca_file.map_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE), PathBuf::from);
    let failed = |reason: String| RemoteError::Certificates { path: path.clone(), reason };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&path).map_err(|e| failed(e.to_string()))? {
        let cert = cert.map_err(|e| failed(e.to_string()))?;
        roots.add(cert).map_err(|e| failed(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(failed("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TCP stream, with TLS for `wss://`, whose incoming bytes pass a [`CloseTap`].
struct Transport {
    io: Io,
    tap: CloseTap,
    /// Where the connection goes when the transport is dropped, while the upgrade is under
    /// way: a refusal's body may still be on its way when the WebSocket library gives up
    /// (it keeps only what came with the head), and the server's reason is in it.
    handback: Option<Handback>,
}

type Handback = Arc<Mutex<Option<Io>>>;

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Handed back on drop; a transport is never polled after that.
    Gone,
}

impl Transport {
    fn new(io: Io) -> Transport {
        Transport { io, tap: CloseTap::default(), handback: None }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        if let Some(slot) = self.handback.take() {
            let io = std::mem::replace(&mut self.io, Io::Gone);
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(io);
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection was handed back")
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Io::Gone => Poll::Ready(Err(gone())),
        };
        if let Poll::Ready(Ok(())) = polled {
            this.tap.feed(buf.filled().get(before..).unwrap_or(&[]));
        }
        polled
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }
}

/// Watches what the server sends for its close frame, to keep the code and reason as
/// sent: the WebSocket library answers a code RFC 6455 forbids on the wire (Packetflix's
/// 1006) with a bare "protocol violation" and drops the reason. It reads only frame
/// headers and the close frame's payload (at most 125 bytes); other payloads are counted
/// past, never buffered.
#[derive(Debug, Default)]
struct CloseTap {
    state: TapState,
    /// The frame header read so far (at most 14 bytes).
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// The close frame's payload, while it is read.
    close: Option<Vec<u8>>,
    /// The last close frame's code and reason.
    seen: Option<(u16, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TapState {
    /// In the HTTP answer to the upgrade: how much of its closing CR LF CR LF has been seen.
    Handshake(u8),
    Header,
    Payload,
}

impl Default for TapState {
    fn default() -> Self {
        TapState::Handshake(0)
    }
}

impl CloseTap {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                TapState::Handshake(mut matched) => {
                    let mut used = 0;
                    for &b in bytes {
                        used += 1;
                        matched = match (matched, b) {
                            (0 | 2, b'\r') => matched + 1,
                            (1 | 3, b'\n') => matched + 1,
                            (_, b'\r') => 1,
                            _ => 0,
                        };
                        if matched == 4 {
                            break;
                        }
                    }
                    bytes = &bytes[used..];
                    self.state = if matched == 4 { TapState::Header } else { TapState::Handshake(matched) };
                }
                TapState::Header => {
                    // Two bytes first: they tell how long the rest of the header is.
                    let take = (self.header_len() - self.header.len()).min(bytes.len());
                    self.header.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.header.len() < self.header_len() {
                        continue;
                    }
                    let h = &self.header;
                    self.remaining = match h[1] & 0x7f {
                        126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                        127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                        n => u64::from(n),
                    };
                    // A server's frames are not masked; a masked close is not read.
                    self.close = (h[0] & 0x0f == 8 && h[1] & 0x80 == 0).then(Vec::new);
                    self.header.clear();
                    self.state = TapState::Payload;
                    if self.remaining == 0 {
                        self.end_frame();
                    }
                }
                TapState::Payload => {
                    let n = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(bytes.len());
                    if let Some(close) = self.close.as_mut() {
                        let room = 125usize.saturating_sub(close.len()).min(n);
                        close.extend_from_slice(&bytes[..room]);
                    }
                    bytes = &bytes[n..];
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.end_frame();
                    }
                }
            }
        }
    }

    /// The length of the current frame's header, as far as its first two bytes tell.
    fn header_len(&self) -> usize {
        match self.header.get(1) {
            None => 2,
            Some(b) => {
                let extended = match b & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                2 + extended + if b & 0x80 != 0 { 4 } else { 0 }
            }
        }
    }

    fn end_frame(&mut self) {
        if let Some(payload) = self.close.take() {
            if let [a, b, reason @ ..] = payload.as_slice() {
                self.seen = Some((u16::from_be_bytes([*a, *b]), String::from_utf8_lossy(reason).into_owned()));
            }
        }
        self.state = TapState::Header;
    }
}

type Socket = WebSocketStream<Transport>;

/// How one connection's stream ended, as the adaptor saw it.
#[derive(Debug)]
enum Ended {
    /// [`RemoteHandle::stop`] was asked.
    Stopped,
    /// The server sent a close frame (`None`: without a code).
    Closed(Option<(CloseCode, String)>),
    /// The connection broke, or ended without a close frame, or the server broke the protocol.
    Lost(String),
}

/// The client's state, moved to its thread.
struct Client {
    spec: RemoteSpec,
    tls: Option<Arc<rustls::ClientConfig>>,
    runtime: Arc<Runtime>,
    stop: watch::Receiver<bool>,
    reconnects: Arc<AtomicU64>,
    sender: FrameSender,
}

impl Client {
    /// One connection: TCP, TLS for `wss://`, then the upgrade, within the connect timeout.
    async fn connect(&self) -> Result<Socket, RemoteError> {
        let url = self.spec.url.to_string();
        let work = async {
            let (host, port) = self.spec.host_port();
            let connect_failed = |source| RemoteError::Connect { url: url.clone(), source };
            let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(connect_failed)?;
            let _ = tcp.set_nodelay(true);
            let mut transport = match &self.tls {
                None => Transport::new(Io::Plain(tcp)),
                Some(config) => {
                    let name = rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(|e| connect_failed(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
                    let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await;
                    Transport::new(Io::Tls(Box::new(tls.map_err(connect_failed)?)))
                }
            };
            let handback = Handback::default();
            transport.handback = Some(handback.clone());
            let config =
                WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
            match tokio_tungstenite::client_async_with_config(url.as_str(), transport, Some(config)).await {
                Ok((mut socket, _response)) => {
                    socket.get_mut().handback = None;
                    Ok(socket)
                }
                Err(e) => {
                    let rest = handback.lock().unwrap_or_else(|e| e.into_inner()).take();
                    Err(RemoteError::Refused { url: url.clone(), reason: refusal(e, rest).await })
                }
            }
        };
        match tokio::time::timeout(self.spec.connect_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(RemoteError::Connect {
                url: url.clone(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", self.spec.connect_timeout),
                ),
            }),
        }
    }

    /// Reads connection after connection until the stream ends for good.
    fn run(self, first: Socket) {
        let mut socket = first;
        let backoff = self.spec.reconnect.unwrap_or_default();
        let mut wait = backoff.initial;
        loop {
            let (ended, delivered) = match self.read_stream(socket) {
                Ok(outcome) => outcome,
                // The analysis is gone: nobody to tell.
                Err(crate::channel::SourceClosed) => return,
            };
            let reason = match ended {
                Ended::Stopped => return,
                Ended::Closed(Some((code, reason))) if code != CloseCode::Normal && code != CloseCode::Away => {
                    let shown = if reason.is_empty() { "no reason given".to_string() } else { reason };
                    self.sender.fail(CaptureError::Io(io::Error::other(format!(
                        "the capture server closed the stream: {shown} (close code {})",
                        u16::from(code)
                    ))));
                    return;
                }
                Ended::Closed(_) if self.spec.reconnect.is_none() => return,
                Ended::Closed(_) => "the server ended the capture".to_string(),
                Ended::Lost(reason) => {
                    if self.spec.reconnect.is_none() {
                        self.sender.fail(CaptureError::Io(io::Error::other(format!(
                            "the capture stream from {} was lost: {reason}",
                            self.spec.url
                        ))));
                        return;
                    }
                    reason
                }
            };
            // A connection that gave packets was a good one: start the waits afresh. One
            // that failed at once (a server that accepts and closes) keeps doubling them.
            if delivered {
                wait = backoff.initial;
            }
            match self.reconnect(reason, &mut wait) {
                Some(next) => socket = next,
                None => return,
            }
        }
    }

    /// Waits and connects again, doubling the wait after each failure, until it connects
    /// (`Some`) or is stopped (`None`).
    fn reconnect(&self, mut reason: String, wait: &mut Duration) -> Option<Socket> {
        let backoff = self.spec.reconnect.unwrap_or_default();
        let mut attempt = 0u32;
        let mut stop = self.stop.clone();
        loop {
            self.tell(&RemoteEvent::Lost { reason: reason.clone(), retry_in: *wait });
            let stopped = self.runtime.block_on(async {
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => true,
                    () = tokio::time::sleep(*wait) => false,
                }
            });
            if stopped {
                return None;
            }
            attempt = attempt.saturating_add(1);
            let connected = self.runtime.block_on(self.connect());
            *wait = (*wait * 2).min(backoff.max.max(backoff.initial));
            match connected {
                Ok(socket) => {
                    self.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.tell(&RemoteEvent::Reconnected { attempt });
                    return Some(socket);
                }
                Err(e) => reason = error_chain(&e),
            }
        }
    }

    fn tell(&self, event: &RemoteEvent) {
        if let Some(hook) = &self.spec.on_event {
            hook(event);
        }
    }

    /// Reads one connection's pcapng stream into the sender. Returns how it ended and
    /// whether it delivered any frame, or `SourceClosed` when the analysis went away.
    fn read_stream(&self, socket: Socket) -> Result<(Ended, bool), crate::channel::SourceClosed> {
        let ended = Arc::new(Mutex::new(None));
        let messages = Messages {
            socket,
            runtime: self.runtime.clone(),
            stop: self.stop.clone(),
            current: Default::default(),
            at: 0,
            ended: ended.clone(),
        };
        let how = |ended: &Arc<Mutex<Option<Ended>>>, otherwise: String| {
            ended.lock().ok().and_then(|mut e| e.take()).unwrap_or(Ended::Lost(otherwise))
        };
        let mut reader = match CaptureReader::from_reader(Box::new(messages)) {
            Ok(reader) => reader,
            // Nothing at all before the end: the close (or loss) says why.
            Err(e) => return Ok((how(&ended, format!("not a capture stream: {e}")), false)),
        };
        let mut delivered = false;
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    let owned = OwnedFrame {
                        ts: frame.ts,
                        link_type: frame.link_type,
                        data: frame.data.to_vec(),
                        orig_len: frame.orig_len,
                        interface: frame.interface,
                    };
                    self.sender.send(owned)?;
                    delivered = true;
                }
                Ok(None) => return Ok((how(&ended, "the stream ended without a close frame".into()), delivered)),
                Err(e) => {
                    // A close or a broken connection explains a truncated block better than
                    // the block does; a damaged block on a live connection is the server's.
                    let ended = ended.lock().ok().and_then(|mut e| e.take());
                    return Ok((ended.unwrap_or(Ended::Lost(format!("damaged pcapng stream: {e}"))), delivered));
                }
            }
        }
    }
}

/// The chain of an error's messages on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// How much of a refusal's body is quoted, in characters.
const REFUSAL_CHARS: usize = 200;

/// What to say about a refused upgrade: the HTTP status and the start of the body (the
/// server's own words, such as Packetflix's "use WebSocket"). The WebSocket library keeps
/// only the body bytes that came with the head, so the rest of a body with a
/// content-length is read from the connection (`rest`), as far as it is quoted and for as
/// long as it keeps coming.
async fn refusal(e: WsError, rest: Option<Io>) -> String {
    match e {
        WsError::Http(response) => {
            let mut body = response.body().clone().unwrap_or_default();
            let length = response
                .headers()
                .get(tokio_tungstenite::tungstenite::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
            if let (Some(length), Some(io)) = (length, rest) {
                // Four bytes per character at most: enough for the quoted part.
                let want = length.min(REFUSAL_CHARS * 4);
                let mut conn = Transport::new(io);
                let mut chunk = [0u8; 512];
                while body.len() < want {
                    let room = (want - body.len()).min(chunk.len());
                    let read = tokio::time::timeout(Duration::from_millis(500), conn.read(&mut chunk[..room])).await;
                    match read {
                        Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
                        _ => break,
                    }
                }
            }
            let body = String::from_utf8_lossy(&body);
            let body: String = body.trim().chars().take(REFUSAL_CHARS).collect();
            if body.is_empty() {
                format!("HTTP {}", response.status())
            } else {
                format!("HTTP {}: {body}", response.status())
            }
        }
        other => error_chain(&other),
    }
}

/// The binary messages of one connection as one byte stream, for [`CaptureReader`].
struct Messages {
    socket: Socket,
    runtime: Arc<Runtime>,
    stop: watch::Receiver<bool>,
    current: tokio_tungstenite::tungstenite::Bytes,
    at: usize,
    /// Why the stream ended, once it has: read back by the client after the reader stops.
    ended: Arc<Mutex<Option<Ended>>>,
}

impl Messages {
    fn end(&mut self, how: Ended) {
        if let Ok(mut ended) = self.ended.lock() {
            ended.get_or_insert(how);
        }
    }

    /// Sends our close and waits (briefly) for the server to answer it.
    fn close(&mut self) {
        let socket = &mut self.socket;
        self.runtime.block_on(async {
            let frame = CloseFrame { code: CloseCode::Normal, reason: "ciao".into() };
            let closing = async {
                if socket.send(Message::Close(Some(frame))).await.is_ok() {
                    while let Some(Ok(_)) = socket.next().await {}
                }
            };
            let _ = tokio::time::timeout(CLOSE_WAIT, closing).await;
        });
    }
}

impl Read for Messages {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(rest) = self.current.get(self.at..).filter(|rest| !rest.is_empty()) {
                let n = rest.len().min(out.len());
                out[..n].copy_from_slice(&rest[..n]);
                self.at += n;
                return Ok(n);
            }
            if self.ended.lock().map(|e| e.is_some()).unwrap_or(true) {
                return Ok(0);
            }
            let (socket, stop) = (&mut self.socket, &mut self.stop);
            let next = self.runtime.block_on(async {
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => None,
                    message = socket.next() => Some(message),
                }
            });
            match next {
                None => {
                    self.close();
                    self.end(Ended::Stopped);
                    return Ok(0);
                }
                Some(None) => {
                    self.end(Ended::Lost("the connection ended without a close frame".into()));
                    return Ok(0);
                }
                Some(Some(Ok(Message::Binary(bytes)))) => {
                    self.current = bytes;
                    self.at = 0;
                }
                Some(Some(Ok(Message::Close(frame)))) => {
                    // Let the library send its answer to the close before the socket is dropped.
                    let socket = &mut self.socket;
                    let _ = self.runtime.block_on(async { tokio::time::timeout(CLOSE_WAIT, socket.flush()).await });
                    let told = frame.map(|f| (f.code, f.reason.to_string()));
                    // A code the library refused comes as its own protocol error: the
                    // server's code and reason, as sent, are in the tap.
                    let told = match (told, self.socket.get_ref().tap.seen.clone()) {
                        (Some((CloseCode::Protocol, _)), Some((code, reason)))
                            if !CloseCode::from(code).is_allowed() =>
                        {
                            Some((CloseCode::from(code), reason))
                        }
                        (told, _) => told,
                    };
                    self.end(Ended::Closed(told));
                    return Ok(0);
                }
                Some(Some(Ok(Message::Text(_)))) => {
                    self.end(Ended::Lost("the server sent a text message where pcapng data was expected".into()));
                    return Ok(0);
                }
                // Pings are answered by the library; nothing else carries data.
                Some(Some(Ok(_))) => {}
                Some(Some(Err(e))) => {
                    let reason = error_chain(&e);
                    self.end(Ended::Lost(reason.clone()));
                    return Err(io::Error::other(reason));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tap_finds_the_close_after_the_handshake_and_long_frames_whatever_the_cuts() {
        let mut stream = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        // A 300-byte binary frame (16-bit length), a ping, then a close with code 1006.
        stream.extend_from_slice(&[0x82, 126, 0x01, 0x2c]);
        stream.extend(std::iter::repeat_n(0xaa, 300));
        stream.extend_from_slice(&[0x89, 0]);
        let reason = b"cannot lock target network stack";
        stream.extend_from_slice(&[0x88, 2 + reason.len() as u8, 0x03, 0xee]);
        stream.extend_from_slice(reason);
        for cut in [1, 2, 3, 7, 64, stream.len()] {
            let mut tap = CloseTap::default();
            stream.chunks(cut).for_each(|piece| tap.feed(piece));
            assert_eq!(tap.seen, Some((1006, "cannot lock target network stack".to_string())), "cut {cut}");
        }
    }

    #[test]
    fn addresses_are_read_in_every_spelling_and_bad_ones_say_why() {
        let spec = RemoteSpec::parse("packetflix:ws://127.0.0.1:5001/capture?netns=4026531840&nif=eth0/eth1").unwrap();
        assert_eq!(spec.url.to_string(), "ws://127.0.0.1:5001/capture?netns=4026531840&nif=eth0/eth1");
        assert_eq!(spec.host_port(), ("127.0.0.1".to_string(), 5001));
        assert_eq!(RemoteSpec::parse("wss://[::1]/capture").unwrap().host_port(), ("::1".to_string(), 443));
        assert_eq!(RemoteSpec::parse("ws://localhost/capture").unwrap().host_port(), ("localhost".to_string(), 80));
        assert!(RemoteSpec::is_remote("packetflix:wss://h/capture"));
        assert!(!RemoteSpec::is_remote("capture.pcap"));
        let err = RemoteSpec::parse("http://127.0.0.1/capture").unwrap_err().to_string();
        assert_eq!(err, "not a capture stream URL: \"http://127.0.0.1/capture\": the scheme must be ws:// or wss://");
        assert!(RemoteSpec::parse("ws://").is_err());
    }
}
