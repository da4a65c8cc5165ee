//! HEP ingest: a listener for the HEP packets VoIP platforms mirror their traffic in (Kamailio's siptrace, OpenSIPS, FreeSWITCH, Asterisk, heplify), turned into frames the analysis reads as if it had captured them.
//!
//! [`start`] binds one address for UDP and TCP (the same port) and runs a receiving
//! thread for each, and one per TCP connection. HEP v3 arrives over both; HEP v1/v2,
//! which have no length field, over UDP only. On TCP the packets come back to back and
//! are cut by their total length ([`callflow_decode::hep::frame_packet`]), which is at
//! most 65,535 bytes by the field's width, so a connection buffers at most one packet;
//! a stream that stops starting with `HEP3` has lost its framing and is closed.
//!
//! What happens to each packet:
//! - **SIP (type 1)**: a frame of link type RAW is synthesized, an IPv4 or IPv6 header
//!   and a UDP or TCP header (by the IP protocol chunk; anything but TCP is written as
//!   UDP) around the payload, with the addresses, ports and time from the HEP chunks. The
//!   analysis then reads it exactly as a captured packet. TCP segments of one direction
//!   get consecutive sequence numbers, so the stream reassembler sees an unbroken stream;
//!   a message dropped because the analysis was behind does not leave a gap.
//! - **RTCP as JSON (type 5)**: the report, as agents write it (captagent, rtpengine,
//!   FreeSWITCH: `type`, `ssrc`, `sender_information`, `report_blocks`, the NTP fraction
//!   in `ntp_timestamp_usec`), is written back as the binary RTCP sender or receiver
//!   report it was read from, in a UDP frame between the HEP addresses: the existing
//!   RTCP path attaches it to its stream, by the SDP-announced endpoint, as it does a
//!   captured one (reports are attached to the streams whose SSRC they name; for a stream
//!   whose RTP was not seen, see [`HepAnnotations`]). A report that cannot be written back faithfully (a value out of its
//!   field's range, a type other than SR or RR) is counted as malformed.
//! - **RTP (type 4)**, from agents that mirror media: a UDP frame, as for SIP.
//! - Any other type (logs, QoS JSON, ...) is counted in [`HepStats::ignored`].
//! - A packet that does not decode, lacks its addresses, or (with an
//!   [`HepOptions::auth_key`]) carries another key or none, is counted
//!   ([`HepStats::malformed`], [`HepStats::unauthorized`], and
//!   [`LiveCounters::source_dropped`](crate::LiveCounters)), never fatal.
//!
//! The capture agent id cannot travel inside a synthesized frame, so the listener keeps
//! it beside: [`HepAnnotations`] maps frame numbers (as the [`ChannelSource`](crate::ChannelSource)
//! numbers them: the listener must be its channel's only sender) to agent ids, and
//! [`HepAnnotations::annotate`] sets [`Message::capture_agent`] on a finished session's
//! messages. It keeps runs of frames from one agent, at most [`MAX_AGENT_RUNS`] of them.
//! It also keeps each RTCP report by the correlation id it came with (the Call-ID, as
//! rtpengine and Kamailio send it), so that a call whose RTP was not mirrored, and so has
//! no stream to take its reports, still gets them, in [`Session::rtcp`].
//!
//! ```no_run
//! use callflow_correlate::{Analyzer, FrameSource, Pulled};
//! use callflow_live::hep::{self, HepOptions};
//! use std::time::Duration;
//!
//! let (sender, mut source) = callflow_live::channel(4096, Duration::from_millis(200));
//! let listener = hep::start(&HepOptions::from_settings(&Default::default())?, sender)?;
//! let annotations = listener.annotations();
//! let mut analyzer = Analyzer::default();
//! while let Some(pulled) = source.next_frame()? {
//!     match pulled {
//!         Pulled::Here(frame) => analyzer.process(&frame),
//!         Pulled::Tick(now) => analyzer.advance_to(now),
//!         Pulled::At(_) => {} // only from next_shared_frame, which a channel does not serve
//!     }
//!     for mut session in analyzer.take_completed() {
//!         annotations.annotate(&mut session);
//!         println!("{} {}", session.call_id, session.state.as_str());
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::channel::{FrameSender, LiveCounters, OwnedFrame};
use crate::LiveError;
use callflow_correlate::rtcp_report;
use callflow_decode::hep::{self, HepPacket, ProtoType};
use callflow_decode::rtcp;
use callflow_decode::tcp::Framing;
use callflow_decode::{LinkType, Timestamp};
use callflow_model::{Message, RtcpReport, Session, SessionKind};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::ipv6::MutableIpv6Packet;
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags};
use pnet_packet::udp::{self, MutableUdpPacket};
use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many runs of frames from one capture agent [`HepAnnotations`] remembers (the
/// oldest are forgotten first: their messages get no agent id).
pub const MAX_AGENT_RUNS: usize = 1 << 18;

/// How many calls' RTCP reports [`HepAnnotations`] remembers (the oldest call first out).
pub const MAX_RTCP_CALLS: usize = 1 << 16;

/// How many RTCP reports of one call [`HepAnnotations`] remembers (the first ones).
pub const MAX_RTCP_PER_CALL: usize = 256;

/// TCP directions whose next sequence number is remembered; past this the table starts over.
const MAX_TCP_DIRECTIONS: usize = 1 << 16;

/// How often the receiving threads look at the stop flag while nothing arrives.
const POLL: Duration = Duration::from_millis(100);

/// What a HEP listener listens on and accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HepOptions {
    /// The address for both UDP and TCP (port 0: any free port, the same for both).
    pub listen: SocketAddr,
    /// When set, only packets whose authentication key chunk (14) holds exactly this key
    /// are accepted; HEP v1/v2 packets, which have no key, are then refused.
    pub auth_key: Option<String>,
    /// TCP connections served at once; more are closed as they arrive.
    pub max_connections: usize,
}

impl Default for HepOptions {
    fn default() -> Self {
        HepOptions { listen: SocketAddr::from(([127, 0, 0, 1], hep::PORT)), auth_key: None, max_connections: 64 }
    }
}

impl HepOptions {
    /// The options `[hep]` describes (an empty `auth_key`: none).
    pub fn from_settings(settings: &callflow_config::HepSettings) -> Result<Self, LiveError> {
        let listen = settings
            .listen
            .parse()
            .map_err(|_| LiveError::BadAddress { key: "hep.listen", value: settings.listen.clone() })?;
        let auth_key = (!settings.auth_key.is_empty()).then(|| settings.auth_key.clone());
        Ok(HepOptions { listen, auth_key, ..HepOptions::default() })
    }

    /// The options a `hep://HOST[:PORT]` source names (`callflow-cli analyze
    /// hep://127.0.0.1:9060`): the address to listen on, IPv6 in brackets, port 9060 when
    /// none is given. The key, if any, is set apart (it does not belong in a URL that
    /// shows up in process lists).
    pub fn from_url(url: &str) -> Result<Self, LiveError> {
        let bad = || LiveError::BadAddress { key: "hep:// source", value: url.to_string() };
        let rest = url.strip_prefix("hep://").ok_or_else(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let listen = match rest.parse::<SocketAddr>() {
            Ok(addr) => addr,
            // No port: the host alone, bracketed when IPv6.
            Err(_) => {
                let host = rest.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(rest);
                SocketAddr::new(host.parse::<IpAddr>().map_err(|_| bad())?, hep::PORT)
            }
        };
        Ok(HepOptions { listen, ..HepOptions::default() })
    }
}

/// What a listener did with the packets it received, totals since it started.
#[derive(Debug, Default)]
pub struct HepStats {
    /// HEP packets received (UDP datagrams and TCP-framed packets).
    pub packets: AtomicU64,
    /// SIP messages handed on as frames.
    pub sip: AtomicU64,
    /// RTP packets (type 4) handed on as frames.
    pub rtp: AtomicU64,
    /// RTCP reports handed on as frames.
    pub rtcp: AtomicU64,
    /// Packets that did not decode (or whose payload did not), or that lacked addresses.
    pub malformed: AtomicU64,
    /// Packets refused for a missing or wrong authentication key.
    pub unauthorized: AtomicU64,
    /// Packets of types the analysis does not read (logs, QoS reports, ...).
    pub ignored: AtomicU64,
    /// TCP connections accepted and served.
    pub connections: AtomicU64,
    /// TCP connections closed on arrival because `max_connections` were open.
    pub refused_connections: AtomicU64,
}

impl HepStats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a listener learnt from HEP that the frames it handed on cannot carry, for
/// [`HepAnnotations::annotate`] to put on the sessions the analysis makes of them: which
/// capture agent sent each frame (kept as runs: the first frame of each run and its
/// agent), and the RTCP reports each call's correlation id came with.
#[derive(Clone, Debug, Default)]
pub struct HepAnnotations {
    agents: Arc<Mutex<AgentRuns>>,
    rtcp: Arc<Mutex<CallRtcp>>,
}

/// Runs of frames from one agent: (the run's first frame, the agent's id), oldest first.
type AgentRuns = VecDeque<(u64, Option<u32>)>;

/// RTCP reports by the correlation id (a Call-ID) they came with; the oldest calls are
/// forgotten first.
#[derive(Debug, Default)]
struct CallRtcp {
    by_call: HashMap<String, Vec<RtcpReport>>,
    order: VecDeque<String>,
}

/// A lock whose holder panicked leaves tables that are still valid: keep using them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HepAnnotations {
    /// Records that `frame` (and those after it, until another record) came from `agent`.
    fn record_agent(&self, frame: u64, agent: Option<u32>) {
        let mut runs = lock(&self.agents);
        if runs.back().is_some_and(|&(_, last)| last == agent) {
            return;
        }
        runs.push_back((frame, agent));
        if runs.len() > MAX_AGENT_RUNS {
            runs.pop_front();
        }
    }

    /// Records an RTCP report that came with the correlation id `call_id`.
    fn record_rtcp(&self, call_id: &str, report: RtcpReport) {
        let mut table = lock(&self.rtcp);
        if !table.by_call.contains_key(call_id) {
            if table.order.len() >= MAX_RTCP_CALLS {
                if let Some(oldest) = table.order.pop_front() {
                    table.by_call.remove(&oldest);
                }
            }
            table.order.push_back(call_id.to_string());
        }
        let reports = table.by_call.entry(call_id.to_string()).or_default();
        if reports.len() < MAX_RTCP_PER_CALL {
            reports.push(report);
        }
    }

    /// The capture agent id of the agent that sent `frame`, when it had one and it is
    /// still remembered.
    pub fn agent_of(&self, frame: u64) -> Option<u32> {
        let runs = lock(&self.agents);
        let at = runs.partition_point(|&(first, _)| first <= frame);
        at.checked_sub(1).and_then(|i| runs[i].1)
    }

    /// Sets the capture agent id of each message of `session` that has none, and, for a
    /// SIP call, adds to [`Session::rtcp`] the reports its Call-ID came with that none of
    /// its streams took (their RTP was not seen).
    pub fn annotate(&self, session: &mut Session) {
        self.annotate_messages(&mut session.messages);
        if session.kind != SessionKind::SipCall {
            return;
        }
        let table = lock(&self.rtcp);
        let Some(reports) = table.by_call.get(&session.call_id) else { return };
        let taken =
            |frame: u64| session.media.iter().flat_map(|m| &m.rtcp).chain(&session.rtcp).any(|r| r.frame == frame);
        let missing: Vec<RtcpReport> = reports.iter().filter(|r| !taken(r.frame)).cloned().collect();
        session.rtcp.extend(missing);
    }

    /// Sets the capture agent id of each of `messages` that has none.
    pub fn annotate_messages(&self, messages: &mut [Message]) {
        for m in messages.iter_mut().filter(|m| m.capture_agent.is_none()) {
            m.capture_agent = self.agent_of(m.frame);
        }
    }
}

/// A running HEP listener. Dropping it stops it, as [`HepListener::stop`] does.
pub struct HepListener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    annotations: HepAnnotations,
    stats: Arc<HepStats>,
}

impl HepListener {
    /// The address it listens on, UDP and TCP (the port chosen when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it learnt beside the frames it handed on (capture agents, RTCP reports by
    /// call), for the sessions made of them.
    pub fn annotations(&self) -> HepAnnotations {
        self.annotations.clone()
    }

    /// What it did with the packets it received.
    pub fn stats(&self) -> &Arc<HepStats> {
        &self.stats
    }

    /// Stops listening and waits for the receiving threads (at most about 100 ms each).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for HepListener {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Binds `options.listen` for UDP and TCP and starts handing what HEP agents send to
/// `sender`, which must be its channel's only sender (see [`HepAnnotations`]).
pub fn start(options: &HepOptions, sender: FrameSender) -> Result<HepListener, LiveError> {
    let (udp, tcp) = bind(options.listen)?;
    let addr =
        udp.local_addr().map_err(|source| LiveError::Bind { addr: options.listen, what: "HEP over UDP", source })?;
    let timeout_err = |source| LiveError::Bind { addr, what: "HEP", source };
    udp.set_read_timeout(Some(POLL)).map_err(timeout_err)?;
    tcp.set_nonblocking(true).map_err(timeout_err)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(HepStats::default());
    let annotations = HepAnnotations::default();
    let ingest = Arc::new(Ingest {
        auth_key: options.auth_key.as_ref().map(|k| k.as_bytes().to_vec()),
        stats: stats.clone(),
        annotations: annotations.clone(),
        stop: stop.clone(),
        counters: sender.counters().clone(),
        feed: Mutex::new(Feed { sender, next_frame: 0, tcp_seq: HashMap::new(), directions_seen: 0 }),
    });
    let mut threads = Vec::new();
    let spawn_err = |source| LiveError::Bind { addr, what: "HEP (starting its thread)", source };
    let i = ingest.clone();
    threads
        .push(std::thread::Builder::new().name("hep-udp".into()).spawn(move || udp_loop(&udp, &i)).map_err(spawn_err)?);
    let max = options.max_connections.max(1);
    let i = ingest;
    threads.push(
        std::thread::Builder::new()
            .name("hep-tcp".into())
            .spawn(move || accept_loop(&tcp, &i, max))
            .map_err(spawn_err)?,
    );
    Ok(HepListener { addr, stop, threads, annotations, stats })
}

/// Binds UDP, then TCP on the same port; with port 0, retries until both get one port.
fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), LiveError> {
    let mut attempts = 0;
    loop {
        let udp =
            UdpSocket::bind(listen).map_err(|source| LiveError::Bind { addr: listen, what: "HEP over UDP", source })?;
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(listen.port());
        let tcp_addr = SocketAddr::new(listen.ip(), port);
        match TcpListener::bind(tcp_addr) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 && e.kind() == ErrorKind::AddrInUse && attempts < 16 => attempts += 1,
            Err(source) => return Err(LiveError::Bind { addr: tcp_addr, what: "HEP over TCP", source }),
        }
    }
}

fn udp_loop(socket: &UdpSocket, ingest: &Ingest) {
    let mut buf = vec![0u8; 1 << 16];
    while !ingest.stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => ingest.packet(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            // An ICMP error reported on the socket, or the like: the next datagram may be fine.
            Err(_) => {}
        }
    }
}

fn accept_loop(listener: &TcpListener, ingest: &Arc<Ingest>, max: usize) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !ingest.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                connections.retain(|c| !c.is_finished());
                if open.load(Ordering::Relaxed) >= max {
                    HepStats::add(&ingest.stats.refused_connections);
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                HepStats::add(&ingest.stats.connections);
                let (i, o) = (ingest.clone(), open.clone());
                let spawned = std::thread::Builder::new().name("hep-tcp-conn".into()).spawn(move || {
                    connection(stream, &i);
                    o.fetch_sub(1, Ordering::Relaxed);
                });
                match spawned {
                    Ok(handle) => connections.push(handle),
                    Err(_) => {
                        open.fetch_sub(1, Ordering::Relaxed);
                        HepStats::add(&ingest.stats.refused_connections);
                    }
                }
            }
            // Nothing waiting, or an error that passes (out of file descriptors, a connection
            // reset before it was accepted): look again shortly.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    for c in connections {
        let _ = c.join();
    }
}

/// Serves one TCP connection: HEP v3 packets back to back, until the peer closes, the
/// framing is lost or the listener stops.
fn connection(mut stream: TcpStream, ingest: &Ingest) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 12);
    let mut chunk = [0u8; 1 << 14];
    while !ingest.stop.load(Ordering::Relaxed) {
        // Cut every whole packet at the start of the buffer.
        loop {
            match hep::frame_packet(&buf) {
                Ok(Framing::Message(n)) => {
                    ingest.packet(&buf[..n]);
                    buf.drain(..n);
                }
                Ok(Framing::NeedMore) => break,
                Ok(Framing::Skip(n)) => {
                    buf.drain(..n.min(buf.len()));
                }
                Err(_) => {
                    // Lost framing: nothing marks where the next packet starts.
                    ingest.malformed();
                    return;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                if !buf.is_empty() {
                    // The peer closed in the middle of a packet: a truncated one.
                    ingest.malformed();
                }
                return;
            }
            // The framer needs at most one packet (65,535 bytes) buffered, so this is bounded.
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return,
        }
    }
}

/// What the receiving threads share.
struct Ingest {
    auth_key: Option<Vec<u8>>,
    stats: Arc<HepStats>,
    annotations: HepAnnotations,
    stop: Arc<AtomicBool>,
    /// The channel's counters, where refused packets are added to `source_dropped`.
    counters: Arc<LiveCounters>,
    /// Held while a frame is numbered and queued, so frame numbers follow queue order.
    feed: Mutex<Feed>,
}

struct Feed {
    sender: FrameSender,
    /// The number the channel gave the last frame queued.
    next_frame: u64,
    /// Per TCP direction (source, destination), the next sequence number.
    tcp_seq: HashMap<(SocketAddr, SocketAddr), u32>,
    directions_seen: u32,
}

/// The transport of a synthesized frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carrier {
    Udp,
    Tcp,
}

impl Ingest {
    fn dropped(&self) {
        self.counters.source_dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn malformed(&self) {
        HepStats::add(&self.stats.malformed);
        self.dropped();
    }

    /// Handles one HEP packet.
    fn packet(&self, bytes: &[u8]) {
        HepStats::add(&self.stats.packets);
        let Ok(p) = HepPacket::parse(bytes) else { return self.malformed() };
        if let Some(key) = &self.auth_key {
            if p.auth_key != Some(key.as_slice()) {
                HepStats::add(&self.stats.unauthorized);
                return self.dropped();
            }
        }
        let (payload, carrier, counter) = match p.proto() {
            Some(ProtoType::Sip) => {
                let Ok(payload) = p.payload_bytes() else { return self.malformed() };
                let carrier = if p.ip_proto == Some(6) { Carrier::Tcp } else { Carrier::Udp };
                (payload.into_owned(), carrier, &self.stats.sip)
            }
            Some(ProtoType::Rtp) => {
                let Ok(payload) = p.payload_bytes() else { return self.malformed() };
                (payload.into_owned(), Carrier::Udp, &self.stats.rtp)
            }
            Some(ProtoType::RtcpJson) => {
                let Ok(json) = p.payload_bytes() else { return self.malformed() };
                let Some(rtcp) = rtcp_from_json(&json) else { return self.malformed() };
                (rtcp, Carrier::Udp, &self.stats.rtcp)
            }
            _ => return HepStats::add(&self.stats.ignored),
        };
        let (Some(src_ip), Some(dst_ip), Some(sport), Some(dport)) = (p.src_ip, p.dst_ip, p.src_port, p.dst_port)
        else {
            return self.malformed();
        };
        let (src, dst) = (SocketAddr::new(src_ip, sport), SocketAddr::new(dst_ip, dport));
        let ts = p.timestamp().unwrap_or_else(wall_clock);
        // A panic elsewhere while holding the lock leaves the feed usable: keep going.
        let mut feed = self.feed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let seq = match carrier {
            Carrier::Udp => 0,
            Carrier::Tcp => feed.next_seq(src, dst),
        };
        let Some(data) = synthesize(src, dst, carrier, seq, &payload) else {
            drop(feed);
            return self.malformed();
        };
        let orig_len = data.len() as u32;
        let frame = OwnedFrame { ts, link_type: LinkType::RAW, data, orig_len, interface: 0 };
        match feed.sender.offer(frame) {
            Ok(true) => {
                feed.next_frame += 1;
                self.annotations.record_agent(feed.next_frame, p.capture_id);
                if let (Some(call_id), true) = (p.correlation_id, p.proto() == Some(ProtoType::RtcpJson)) {
                    let call_id = String::from_utf8_lossy(call_id);
                    for packet in rtcp::packets(&payload).map_while(Result::ok) {
                        if let Some(report) = rtcp_report(&packet, ts, feed.next_frame) {
                            self.annotations.record_rtcp(&call_id, report);
                        }
                    }
                }
                if carrier == Carrier::Tcp {
                    feed.tcp_seq.insert((src, dst), seq.wrapping_add(payload.len() as u32));
                }
                HepStats::add(counter);
            }
            // Dropped and counted by the channel: the analysis is behind.
            Ok(false) => {}
            Err(_) => self.stop.store(true, Ordering::Relaxed),
        }
    }
}

impl Feed {
    /// The sequence number of the next segment from `src` to `dst`. A new direction starts
    /// at a spread-out origin, so that one forgotten and started again is not taken for a
    /// retransmission of its old bytes.
    fn next_seq(&mut self, src: SocketAddr, dst: SocketAddr) -> u32 {
        if let Some(&seq) = self.tcp_seq.get(&(src, dst)) {
            return seq;
        }
        if self.tcp_seq.len() >= MAX_TCP_DIRECTIONS {
            self.tcp_seq.clear();
        }
        self.directions_seen = self.directions_seen.wrapping_add(1);
        self.directions_seen.wrapping_mul(0x9e37_79b9)
    }
}

fn wall_clock() -> Timestamp {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp::from_nanos(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

/// An IP packet (no link layer: link type RAW) from `src` to `dst` carrying `payload` in
/// UDP or TCP (with sequence number `seq`, PSH and ACK), checksums filled in. `None` when
/// the families differ or the payload does not fit an IP packet.
fn synthesize(src: SocketAddr, dst: SocketAddr, carrier: Carrier, seq: u32, payload: &[u8]) -> Option<Vec<u8>> {
    let l4_len = payload.len() + if carrier == Carrier::Tcp { 20 } else { 8 };
    let mut l4 = vec![0u8; l4_len];
    match carrier {
        Carrier::Udp => {
            let mut u = MutableUdpPacket::new(&mut l4)?;
            u.set_source(src.port());
            u.set_destination(dst.port());
            u.set_length(u16::try_from(l4_len).ok()?);
            u.set_payload(payload);
            let sum = match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => udp::ipv4_checksum(&u.to_immutable(), &s, &d),
                (IpAddr::V6(s), IpAddr::V6(d)) => udp::ipv6_checksum(&u.to_immutable(), &s, &d),
                _ => return None,
            };
            u.set_checksum(sum);
        }
        Carrier::Tcp => {
            let mut t = MutableTcpPacket::new(&mut l4)?;
            t.set_source(src.port());
            t.set_destination(dst.port());
            t.set_sequence(seq);
            t.set_acknowledgement(1);
            t.set_data_offset(5);
            t.set_flags(TcpFlags::PSH | TcpFlags::ACK);
            t.set_window(65_535);
            t.set_payload(payload);
            let sum = match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => tcp::ipv4_checksum(&t.to_immutable(), &s, &d),
                (IpAddr::V6(s), IpAddr::V6(d)) => tcp::ipv6_checksum(&t.to_immutable(), &s, &d),
                _ => return None,
            };
            t.set_checksum(sum);
        }
    }
    let next = match carrier {
        Carrier::Udp => IpNextHeaderProtocols::Udp,
        Carrier::Tcp => IpNextHeaderProtocols::Tcp,
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut out = vec![0u8; 20 + l4_len];
            let mut ip = MutableIpv4Packet::new(&mut out)?;
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length(u16::try_from(20 + l4_len).ok()?);
            ip.set_ttl(64);
            ip.set_next_level_protocol(next);
            ip.set_source(s);
            ip.set_destination(d);
            ip.set_payload(&l4);
            let sum = ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(sum);
            Some(out)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut out = vec![0u8; 40 + l4_len];
            let mut ip = MutableIpv6Packet::new(&mut out)?;
            ip.set_version(6);
            ip.set_payload_length(u16::try_from(l4_len).ok()?);
            ip.set_next_header(next);
            ip.set_hop_limit(64);
            ip.set_source(s);
            ip.set_destination(d);
            ip.set_payload(&l4);
            Some(out)
        }
        _ => None,
    }
}

/// A JSON number, or a number written as a string (some agents quote them).
fn number(v: Option<&serde_json::Value>) -> Option<i64> {
    match v? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok())),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A 32-bit field as agents print it: unsigned (`%u`) or, by some, signed (`%d`).
fn word(v: Option<&serde_json::Value>) -> Option<u32> {
    let n = number(v)?;
    if (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&n) {
        Some(n as u32)
    } else {
        None
    }
}

/// The binary RTCP sender report (type 200) or receiver report (201) that an agent's
/// JSON report describes, or `None` when it does not describe one faithfully.
pub fn rtcp_from_json(json: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let kind = number(v.get("type"))?;
    let ssrc = word(v.get("ssrc"))?;
    let empty = Vec::new();
    let blocks = match v.get("report_blocks") {
        None | Some(serde_json::Value::Null) => &empty,
        Some(b) => b.as_array()?,
    };
    // The report count is 5 bits.
    if blocks.len() > 31 {
        return None;
    }
    let mut out = vec![0x80 | blocks.len() as u8, 0, 0, 0];
    out.extend_from_slice(&ssrc.to_be_bytes());
    match kind {
        200 => {
            out[1] = 200;
            let s = v.get("sender_information")?;
            for field in ["ntp_timestamp_sec", "ntp_timestamp_usec", "rtp_timestamp", "packets", "octets"] {
                out.extend_from_slice(&word(s.get(field))?.to_be_bytes());
            }
        }
        201 => out[1] = 201,
        _ => return None,
    }
    for b in blocks {
        out.extend_from_slice(&word(b.get("source_ssrc"))?.to_be_bytes());
        let fraction = u8::try_from(number(b.get("fraction_lost"))?).ok()?;
        // Cumulative loss is a signed 24-bit field.
        let lost = number(b.get("packets_lost"))?;
        if !(-(1 << 23)..(1 << 24)).contains(&lost) {
            return None;
        }
        let lost = (lost as u32) & 0x00ff_ffff;
        out.extend_from_slice(&((u32::from(fraction) << 24) | lost).to_be_bytes());
        for field in ["highest_seq_no", "ia_jitter", "lsr", "dlsr"] {
            out.extend_from_slice(&word(b.get(field))?.to_be_bytes());
        }
    }
    let words = u16::try_from(out.len() / 4 - 1).ok()?;
    out[2..4].copy_from_slice(&words.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests;
