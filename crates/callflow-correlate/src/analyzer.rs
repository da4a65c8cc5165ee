//! The analyzer: takes frames in capture order, decodes them, and grows sessions from them.

use crate::dialog::{self, Dialog, MsgMeta};
use crate::flows::{Decider, FlowId, FlowTable};
use crate::front::{Front, Prepared, UdpHints, SWEEP_INTERVAL_NS};
use crate::media::{Datagram, MediaKind, MediaMemo, MediaTable, Owner};
use crate::stats::StatsBuilder;
use crate::websocket::{self, TcpApp, WsDirections};
use callflow_classify::{AppProtocol, Classifier, Confidence, HeuristicClassifier, PacketMeta, Payload, TcpMeta};
use callflow_decode::capture::Frame;
use callflow_decode::ipfrag::FragmentLimits;
use callflow_decode::packet::{decode_transport, IpInfo, TcpSegment, Transport as Tp};
use callflow_decode::sdp::Sdp;
use callflow_decode::sip::{self, SipMessage};
use callflow_decode::tcp::{Framing, StreamKey, TcpLimits, TcpReassembler};
use callflow_decode::websocket::frame_http_or_ws;
use callflow_decode::{sctp, Timestamp};
use callflow_model::{Flow, Session, SessionKind, Stats, Transport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Tuning knobs of the analysis. The defaults suit captures of real networks.
#[derive(Clone, Debug)]
pub struct AnalyzerOptions {
    /// How long (capture time) a finished dialog waits for retransmissions and late
    /// media before it is closed and handed out. RFC 3261's timer H/J is 32 s.
    pub session_linger: Duration,
    /// How long (capture time) a session may stay silent, SIP and media alike, before it
    /// is closed whatever its state.
    pub idle_timeout: Duration,
    /// Bounds of IP fragment reassembly.
    pub fragments: FragmentLimits,
    /// Bounds of TCP stream reassembly.
    pub tcp: TcpLimits,
    /// Threads [`analyze`](crate::analyze) and its kin use. With 1, everything happens in
    /// the calling thread. With 2 or more, a second thread reads and decodes frames ahead
    /// while the calling thread analyses them in capture order: the analysis itself stays
    /// sequential, which is what keeps every number identical to the one-thread run (SIP
    /// and the media it announces meet in capture order). A third thread would find
    /// nothing to do, so more than 2 uses 2.
    pub threads: usize,
}

impl Default for AnalyzerOptions {
    fn default() -> Self {
        AnalyzerOptions {
            session_linger: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(300),
            fragments: FragmentLimits::default(),
            tcp: TcpLimits::default(),
            threads: 1,
        }
    }
}

/// Turns frames into sessions.
///
/// Feed it every frame of a capture in order with [`Analyzer::process`]; sessions that
/// are over come out of [`Analyzer::take_completed`] while the capture is still being
/// read (this is what keeps memory flat on long captures), and [`Analyzer::finish`]
/// closes the rest. The analyzer never fails: a packet it cannot decode is counted as
/// malformed and analysis goes on.
pub struct Analyzer<C: Classifier = HeuristicClassifier> {
    opts: AnalyzerOptions,
    classifier: C,
    /// The front stage, when this analyzer decodes its frames itself ([`Analyzer::process`]).
    front: Front,
    tcp: TcpReassembler,
    /// What each TCP connection (by its ordered address pair) carries, decided on its
    /// first payload, and when it was last seen.
    tcp_flows: HashMap<(SocketAddr, SocketAddr), (TcpApp, Timestamp, Decider)>,
    /// The directions of the SIP-over-WebSocket connections among `tcp_flows`.
    ws: WsDirections,
    dialogs: HashMap<Owner, Dialog>,
    /// The open sessions of each Call-ID: its INVITE dialog and its group of other
    /// transactions (a REGISTER, say, sent with the Call-ID the INVITE then reuses).
    by_call_id: HashMap<String, CallIdSessions>,
    next_dialog: Owner,
    media: MediaTable,
    stats: StatsBuilder,
    completed: Vec<Session>,
    clock: Timestamp,
    last_sweep: Timestamp,
    /// Scratch space for SIP messages reassembled from TCP, reused across segments.
    pdus: Vec<(Vec<u8>, u64, Timestamp)>,
    /// Every UDP, TCP and SCTP flow with what it carries.
    flows: FlowTable,
}

impl Analyzer<HeuristicClassifier> {
    /// An analyzer with the built-in heuristic classifier.
    pub fn new(opts: AnalyzerOptions) -> Self {
        Analyzer::with_classifier(opts, HeuristicClassifier)
    }
}

impl Default for Analyzer<HeuristicClassifier> {
    fn default() -> Self {
        Analyzer::new(AnalyzerOptions::default())
    }
}

impl<C: Classifier> Analyzer<C> {
    /// An analyzer that asks `classifier` about payloads no signalling explained.
    pub fn with_classifier(opts: AnalyzerOptions, classifier: C) -> Self {
        Analyzer {
            front: Front::new(opts.fragments.clone()),
            tcp: TcpReassembler::new(opts.tcp.clone()),
            opts,
            classifier,
            tcp_flows: HashMap::new(),
            ws: WsDirections::default(),
            dialogs: HashMap::new(),
            by_call_id: HashMap::new(),
            next_dialog: 1,
            media: MediaTable::default(),
            stats: StatsBuilder::default(),
            completed: Vec::new(),
            clock: Timestamp::default(),
            last_sweep: Timestamp::default(),
            pdus: Vec::new(),
            flows: FlowTable::default(),
        }
    }

    /// The options the analyzer was made with.
    pub fn options(&self) -> &AnalyzerOptions {
        &self.opts
    }

    /// Analyses one frame. Frames must come in capture order.
    pub fn process(&mut self, frame: &Frame<'_>) {
        let prepared = self.front.prepare(frame);
        self.analyse(frame, &prepared);
    }

    /// Analyses one frame that a [`Front`] (this analyzer's, or one on another thread fed
    /// the same frames) prepared.
    pub(crate) fn analyse(&mut self, frame: &Frame<'_>, prepared: &Prepared<'_>) {
        let ts = frame.ts;
        if self.stats.packets == 0 {
            self.last_sweep = ts;
        }
        self.clock = self.clock.max(ts);
        self.stats.frame(prepared.stopped);
        let len = u64::from(frame.orig_len.max(frame.data.len() as u32));
        self.dispatch(
            (prepared.ip.as_ref(), &prepared.transport),
            prepared,
            prepared.udp.as_ref(),
            frame.number,
            ts,
            len,
        );
        if self.clock.nanos_since(self.last_sweep) >= SWEEP_INTERVAL_NS {
            self.last_sweep = self.clock;
            self.sweep(self.clock);
        }
    }

    /// Analyses a packet's IP header and transport: the frame's (with the front stage's
    /// `hints` for UDP), or the datagram its fragment completed.
    fn dispatch(
        &mut self,
        (ip, transport): (Option<&IpInfo>, &Tp<'_>),
        prepared: &Prepared<'_>,
        hints: Option<&UdpHints>,
        frame: u64,
        ts: Timestamp,
        len: u64,
    ) {
        let flow = prepared.flow;
        let Some(ip) = ip else {
            self.stats.count("other", len, None);
            return;
        };
        let (src_ip, dst_ip) = (ip.src, ip.dst);
        match transport {
            Tp::Udp { src_port, dst_port, payload } => {
                let (src, dst) = (SocketAddr::new(src_ip, *src_port), SocketAddr::new(dst_ip, *dst_port));
                self.on_udp(flow, hints, src, dst, payload, frame, ts, len);
            }
            Tp::Tcp(seg) => {
                let (src, dst) = (SocketAddr::new(src_ip, seg.src_port), SocketAddr::new(dst_ip, seg.dst_port));
                self.on_tcp(flow, src, dst, seg, frame, ts, len);
            }
            Tp::Sctp { src_port, dst_port, chunks, .. } => {
                let (src, dst) = (SocketAddr::new(src_ip, *src_port), SocketAddr::new(dst_ip, *dst_port));
                self.on_sctp(flow, src, dst, chunks, frame, ts, len);
            }
            Tp::Fragment(_) => match prepared.reassembly.as_deref() {
                Some(Ok(Some(datagram))) => {
                    let inner = decode_transport(datagram.protocol, datagram.src, datagram.dst, &datagram.payload);
                    if inner.stop.is_some() {
                        self.stats.malformed += 1;
                    }
                    // The front stage reassembled fragments in fragments too, so this
                    // recurses once; a fragment nested deeper than tunnels go stays one.
                    if matches!(inner.transport, Tp::Fragment(_)) {
                        self.stats.count("ip_fragment", len, None);
                    } else {
                        self.dispatch((inner.ip.as_ref(), &inner.transport), prepared, None, frame, ts, len);
                    }
                }
                Some(Ok(None)) | None => self.stats.count("ip_fragment", len, None),
                Some(Err(_)) => {
                    self.stats.malformed += 1;
                    self.stats.count("ip_fragment", len, None);
                }
            },
            Tp::None | Tp::Other { .. } => {
                self.stats.count("other", len, Some((SocketAddr::new(src_ip, 0), SocketAddr::new(dst_ip, 0))))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_udp(
        &mut self,
        flow: Option<FlowId>,
        hints: Option<&UdpHints>,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        frame: u64,
        ts: Timestamp,
        len: u64,
    ) {
        let computed;
        let hints = match hints {
            Some(hints) => hints,
            None => {
                computed = UdpHints::of(payload);
                &computed
            }
        };
        let datagram = Datagram { src, dst, payload, hints, ts, frame, wire_len: len };
        // The memo is copied out and back because the analysis below borrows all of `self`.
        let (mut memo, dir) = self.flows.memo(flow, "udp", src, dst).map(|(m, dir)| (m.media[dir], dir)).unzip();
        let (protocol, decider) = self.udp_protocol(memo.get_or_insert_default(), &datagram);
        let counted = self.flows.count(flow, "udp", (src, dst), protocol, decider, ts, len).map(|m| {
            if let (Some(dir), Some(memo)) = (dir, memo) {
                m.media[dir] = memo;
            }
            &mut m.counted
        });
        self.stats.count_flow(protocol, len, (src, dst), counted);
    }

    /// Counts a packet of a TCP or SCTP flow as `protocol`.
    #[allow(clippy::too_many_arguments)]
    fn count_flow(
        &mut self,
        flow: Option<FlowId>,
        transport: &'static str,
        src: SocketAddr,
        dst: SocketAddr,
        protocol: &'static str,
        decider: Decider,
        ts: Timestamp,
        len: u64,
    ) {
        let counted = self.flows.count(flow, transport, (src, dst), protocol, decider, ts, len).map(|m| &mut m.counted);
        self.stats.count_flow(protocol, len, (src, dst), counted);
    }

    /// Analyses a UDP datagram; returns what it was counted as, and who decided that.
    fn udp_protocol(&mut self, memo: &mut MediaMemo, d: &Datagram<'_>) -> (&'static str, Decider) {
        let Datagram { src, dst, payload, ts, frame, .. } = *d;
        if !d.hints.sip_like {
            if let Some(media) = self.media.on_announced(memo, d) {
                return match media {
                    Ok((MediaKind::Rtp, _)) => ("rtp", Decider::SDP),
                    Ok((MediaKind::Rtcp, _)) => ("rtcp", Decider::SDP),
                    Ok((MediaKind::Other, _)) => ("udp", Decider::SDP),
                    // ICE/STUN keep-alives and the like share media ports: not RTP, not broken.
                    Err(_) => ("udp", Decider::SDP),
                };
            }
        }
        // The capture time lets flow-tracking classifiers (nDPI) age their flows out.
        let meta = PacketMeta::at_time(ts);
        let verdict = self.classifier.classify_packet(&Payload::udp(src, dst, payload), &meta);
        let decider = Decider::of(&verdict);
        match verdict.protocol {
            AppProtocol::Sip => {
                let meta = MsgMeta { ts, frame, src, dst, transport: Transport::Udp };
                // A datagram on the SIP port that is not SIP at all (a keep-alive, or
                // another protocol) is not a malformed SIP message.
                let counted_as_sip = self.on_sip(payload, &meta, verdict.confidence != Confidence::Port);
                (if counted_as_sip { "sip" } else { "udp" }, decider)
            }
            AppProtocol::Rtp | AppProtocol::Rtcp => {
                let kind = if verdict.protocol == AppProtocol::Rtp { MediaKind::Rtp } else { MediaKind::Rtcp };
                match self.media.on_orphan(memo, kind, d) {
                    Ok(_) => (verdict.protocol.as_str(), decider),
                    Err(_) => ("udp", decider),
                }
            }
            _ => ("udp", decider),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_tcp(
        &mut self,
        flow: Option<FlowId>,
        src: SocketAddr,
        dst: SocketAddr,
        seg: &TcpSegment<'_>,
        frame: u64,
        ts: Timestamp,
        len: u64,
    ) {
        let pair = if src <= dst { (src, dst) } else { (dst, src) };
        let (app, decider) = match self.tcp_flows.get_mut(&pair) {
            Some(entry) => {
                entry.1 = ts;
                (entry.0, entry.2)
            }
            None if seg.payload.is_empty() => {
                // Handshakes and bare ACKs say nothing about the application yet.
                self.count_flow(flow, "tcp", src, dst, "tcp", Decider::NONE, ts, len);
                return;
            }
            None => {
                // The WebSocket handshake comes first: the classifier knows nothing of it.
                let decided = if websocket::starts_sip_websocket(seg.payload) {
                    let ours = Decider { confidence: Confidence::Signature, classifier: "heuristic" };
                    (TcpApp::SipWebSocket, ours)
                } else {
                    let verdict = self.classifier.classify_packet(
                        &Payload::tcp(src, dst, seg.payload),
                        &PacketMeta::at_time(ts).with_tcp(TcpMeta::from(seg)),
                    );
                    let app = if verdict.protocol == AppProtocol::Sip { TcpApp::Sip } else { TcpApp::Other };
                    (app, Decider::of(&verdict))
                };
                self.tcp_flows.insert(pair, (decided.0, ts, decided.1));
                decided
            }
        };
        let (mut framer, transport): (fn(&[u8]) -> Framing, _) = match app {
            TcpApp::Other => {
                self.count_flow(flow, "tcp", src, dst, "tcp", decider, ts, len);
                return;
            }
            TcpApp::Sip => (sip::frame_message, Transport::Tcp),
            TcpApp::SipWebSocket => (frame_http_or_ws, Transport::Ws),
        };
        self.count_flow(flow, "tcp", src, dst, "sip", decider, ts, len);
        let mut pdus = std::mem::take(&mut self.pdus);
        let (ws, max_message) = (&mut self.ws, self.opts.tcp.max_buffered_bytes);
        self.tcp.push(StreamKey { src, dst }, seg, frame, ts, &mut framer, &mut |pdu| {
            if app == TcpApp::Sip {
                pdus.push((pdu.data.to_vec(), pdu.last_frame, pdu.ts));
            } else if let Some(message) = ws.on_pdu(src, dst, pdu.data, max_message) {
                pdus.push((message.to_vec(), pdu.last_frame, pdu.ts));
            }
        });
        for (bytes, last_frame, pdu_ts) in pdus.drain(..) {
            let meta = MsgMeta { ts: pdu_ts, frame: last_frame, src, dst, transport };
            self.on_sip(&bytes, &meta, true);
        }
        self.pdus = pdus;
    }

    #[allow(clippy::too_many_arguments)]
    fn on_sctp(
        &mut self,
        flow: Option<FlowId>,
        src: SocketAddr,
        dst: SocketAddr,
        chunks: &[u8],
        frame: u64,
        ts: Timestamp,
        len: u64,
    ) {
        let mut carried_sip = false;
        for chunk in sctp::chunks(chunks) {
            let Ok(chunk) = chunk else {
                self.stats.malformed += 1;
                break;
            };
            if let Some(Ok(data)) = sctp::data_chunk(&chunk) {
                if sip::looks_like_sip(data.payload) {
                    let meta = MsgMeta { ts, frame, src, dst, transport: Transport::Sctp };
                    carried_sip |= self.on_sip(data.payload, &meta, true);
                }
            }
        }
        let (protocol, decider) = if carried_sip {
            ("sip", Decider { confidence: Confidence::Signature, classifier: "heuristic" })
        } else {
            ("sctp", Decider::NONE)
        };
        self.count_flow(flow, "sctp", src, dst, protocol, decider, ts, len);
    }

    /// Handles one SIP message. Returns false when it did not parse; `report` says
    /// whether that counts as malformed.
    fn on_sip(&mut self, bytes: &[u8], meta: &MsgMeta, report: bool) -> bool {
        let msg = match SipMessage::parse(bytes) {
            Ok(msg) => msg,
            Err(_) => {
                if report {
                    self.stats.malformed += 1;
                    self.stats.sip_malformed += 1;
                }
                return false;
            }
        };
        // A message without a Call-ID breaks RFC 3261 but is still a SIP message that tshark
        // counts and a user wants to see: such messages share one session with an empty
        // Call-ID, flagged as an anomaly, and are counted as malformed.
        let call_id = msg.call_id().unwrap_or("");
        if call_id.is_empty() {
            self.stats.malformed += 1;
            self.stats.sip_malformed += 1;
        }
        let id = self.session_for(&msg, call_id, meta);
        let mut has_sdp = false;
        if let Some(body) = sip::sdp_body(&msg) {
            if let Ok(sdp) = Sdp::parse(body) {
                has_sdp = true;
                self.media.register_sdp(id, &sdp);
            }
        }
        if let Some(dialog) = self.dialogs.get_mut(&id) {
            dialog.on_message(&msg, meta, has_sdp);
            if call_id.is_empty() {
                dialog.note(format!("message in frame {} has no Call-ID header", meta.frame));
            }
        }
        true
    }

    /// The session a SIP message belongs to, opened if need be. A session is an INVITE
    /// dialog or a group of other transactions, not a Call-ID: a Call-ID that carried a
    /// REGISTER and then an INVITE gives a `sip_register` and a `sip_call` (RFC 3261 keys
    /// a dialog by Call-ID and tags, a transaction by its branch).
    fn session_for(&mut self, msg: &SipMessage<'_>, call_id: &str, meta: &MsgMeta) -> Owner {
        let sessions = self.by_call_id.get(call_id).copied().unwrap_or_default();
        let in_call = dialog::is_invite_family(msg)
            || sessions.call.and_then(|id| self.dialogs.get(&id)).is_some_and(|d| d.has_tags_of(msg));
        let out_of_dialog_request = msg.method().is_some() && msg.to().and_then(|t| t.tag).is_none();
        let existing = match (in_call, sessions.call, sessions.other) {
            (true, Some(call), _) => Some(call),
            // An initial INVITE opens the call beside the other transactions of its Call-ID.
            (true, None, Some(_)) if msg.method() == Some("INVITE") && out_of_dialog_request => None,
            (true, None, other) => other,
            (false, _, Some(other)) => Some(other),
            // A request outside any dialog starts a transaction group of its own; what else
            // the call's Call-ID carries (a response to an in-dialog request) stays with it.
            (false, Some(_), None) if out_of_dialog_request => None,
            (false, call, None) => call,
        };
        if let Some(id) = existing {
            return id;
        }
        let id = self.next_dialog;
        self.next_dialog += 1;
        let dialog = Dialog::new(msg, call_id, meta);
        let entry = self.by_call_id.entry(call_id.to_string()).or_default();
        if dialog.kind == SessionKind::SipCall {
            entry.call = Some(id);
        } else {
            entry.other = Some(id);
        }
        self.dialogs.insert(id, dialog);
        id
    }

    /// Closes sessions that are over as of capture time `now`.
    fn sweep(&mut self, now: Timestamp) {
        let linger = duration_ns(self.opts.session_linger);
        let idle = duration_ns(self.opts.idle_timeout);
        self.tcp.expire(now);
        self.tcp_flows.retain(|_, (_, seen, _)| now.nanos_since(*seen) <= idle);
        let flows = &self.tcp_flows;
        self.ws.retain(|src, dst| flows.contains_key(&if src <= dst { (src, dst) } else { (dst, src) }));
        let mut done: Vec<(u64, Owner)> = self
            .dialogs
            .iter()
            .filter(|(id, d)| {
                let last = self.media.last_activity(**id).map_or(d.last_activity, |m| m.max(d.last_activity));
                let quiet = now.nanos_since(last);
                (d.is_terminated() && quiet > linger) || quiet > idle
            })
            .map(|(id, d)| (d.first_frame, *id))
            .collect();
        done.sort_unstable();
        for (_, id) in done {
            self.close_dialog(id);
        }
        for owner in self.media.idle_orphans(Timestamp::from_nanos(now.as_nanos().saturating_sub(idle))) {
            self.close_orphan(owner);
        }
    }

    fn close_dialog(&mut self, id: Owner) {
        let Some(dialog) = self.dialogs.remove(&id) else { return };
        if let Some(sessions) = self.by_call_id.get_mut(&dialog.call_id) {
            for slot in [&mut sessions.call, &mut sessions.other] {
                if *slot == Some(id) {
                    *slot = None;
                }
            }
            if sessions.call.is_none() && sessions.other.is_none() {
                self.by_call_id.remove(&dialog.call_id);
            }
        }
        let media = self.media.take(id);
        let mut session = dialog.into_session();
        if let Some(end) = media.iter().map(|m| m.end).max() {
            session.end = session.end.max(end);
        }
        session.media = media;
        self.completed.push(session);
    }

    fn close_orphan(&mut self, owner: Owner) {
        let (session, rejected) = self.media.take_orphan_session(owner);
        self.stats.reclassify_rtp_as_udp(rejected);
        if let Some(session) = session {
            self.completed.push(session);
        }
    }

    /// Every UDP, TCP and SCTP flow so far, in order of its first packet, and how many new
    /// flows were counted but not listed (past the bound). Call it before [`Analyzer::finish`].
    pub fn take_flows(&mut self) -> (Vec<Flow>, u64) {
        (std::mem::take(&mut self.flows).into_flows(), self.front.unlisted_flows())
    }

    /// Sessions that are over, in the order they ended. Each is handed out once.
    pub fn take_completed(&mut self) -> Vec<Session> {
        std::mem::take(&mut self.completed)
    }

    /// Closes every open session and returns what is left, ordered by start time (then
    /// id), with the statistics of the whole run.
    pub fn finish(mut self) -> (Vec<Session>, Stats) {
        let mut open: Vec<(u64, Owner)> = self.dialogs.iter().map(|(id, d)| (d.first_frame, *id)).collect();
        open.sort_unstable();
        for (_, id) in open {
            self.close_dialog(id);
        }
        for owner in self.media.all_orphans() {
            self.close_orphan(owner);
        }
        let mut sessions = std::mem::take(&mut self.completed);
        sort_sessions(&mut sessions);
        (sessions, self.stats.build(self.classifier.name()))
    }
}

/// The open sessions of one Call-ID.
#[derive(Clone, Copy, Debug, Default)]
struct CallIdSessions {
    /// Its INVITE dialog (forks and retries with credentials included).
    call: Option<Owner>,
    /// Its other transactions: REGISTER, OPTIONS, SUBSCRIBE...
    other: Option<Owner>,
}

/// The order sessions are written in: by start time, then id, so output is deterministic.
pub fn sort_sessions(sessions: &mut [Session]) {
    sessions.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.id.cmp(&b.id)));
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
