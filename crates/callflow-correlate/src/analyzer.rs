//! The analyzer: takes frames in capture order, decodes them, and grows sessions from them.

use crate::ctx::PacketCtx;
use crate::dialog::{Dialog, MsgMeta};
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
use callflow_model::{Flow, Session, Stats, Transport};
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
    /// Forget flows idle for longer than `idle_timeout`: they leave the flow list (counted
    /// in `stats.flows_forgotten`, and handed out summarised by
    /// [`Analyzer::take_forgotten_flows`]), so the list holds the flows in progress. For
    /// endless inputs (a live interface); off for a capture file, whose document lists
    /// every flow.
    pub forget_idle_flows: bool,
}

impl Default for AnalyzerOptions {
    fn default() -> Self {
        AnalyzerOptions {
            session_linger: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(300),
            fragments: FragmentLimits::default(),
            tcp: TcpLimits::default(),
            threads: 1,
            forget_idle_flows: false,
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
    tcp_flows: HashMap<(u32, SocketAddr, SocketAddr), (TcpApp, Timestamp, Decider)>,
    /// The directions of the SIP-over-WebSocket connections among `tcp_flows`.
    ws: WsDirections,
    dialogs: HashMap<Owner, Dialog>,
    by_call_id: HashMap<String, Owner>,
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
            front: Front::new(opts.fragments.clone(), opts.forget_idle_flows.then_some(opts.idle_timeout)),
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
        if let Some(forgotten) = &prepared.forgotten {
            self.flows.forget(forgotten);
        }
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
        if self.clock.as_nanos() - self.last_sweep.as_nanos() >= SWEEP_INTERVAL_NS {
            self.last_sweep = self.clock;
            self.sweep(self.clock);
        }
    }

    /// Tells the analysis that capture time has moved on to `now` without a frame (a quiet
    /// live input): sessions that are over by then are closed, as a frame of that time
    /// would have closed them, and come out of [`Analyzer::take_completed`]. Time never
    /// goes back: an earlier `now` does nothing.
    pub fn advance_to(&mut self, now: Timestamp) {
        let forgotten = self.front.advance_to(now);
        self.advance(now, forgotten.as_deref().map_or(&[], |f| &f[..]));
    }

    /// [`Analyzer::advance_to`] with the flows a front stage on another thread forgot then.
    pub(crate) fn advance(&mut self, now: Timestamp, forgotten: &[FlowId]) {
        self.flows.forget(forgotten);
        if self.stats.packets == 0 && self.clock == Timestamp::default() {
            self.last_sweep = now;
        }
        self.clock = self.clock.max(now);
        if self.clock.as_nanos() - self.last_sweep.as_nanos() >= SWEEP_INTERVAL_NS {
            self.last_sweep = self.clock;
            self.sweep(self.clock);
        }
    }

    /// The statistics so far, while the analysis goes on (what [`Analyzer::finish`] would
    /// give now, less the sessions still open).
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.build(self.classifier.name());
        stats.flows_unlisted = self.front.unlisted_flows();
        stats.flows_forgotten = self.flows.forgotten_count();
        stats
    }

    /// The flows listed so far, in order of their first packet, while the analysis goes on.
    pub fn flows(&self) -> Vec<Flow> {
        self.flows.snapshot()
    }

    /// Flows forgotten since the last call (see [`AnalyzerOptions::forget_idle_flows`]),
    /// each summarised as it stood when it was forgotten.
    pub fn take_forgotten_flows(&mut self) -> Vec<Flow> {
        self.flows.take_forgotten()
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
        let Some(ip) = ip else {
            self.stats.count("other", len, None);
            return;
        };
        let (src_ip, dst_ip) = (ip.src, ip.dst);
        let (context, tunnel) = match &prepared.tunnel {
            Some((n, t)) => (*n, Some(t)),
            None => (0, None),
        };
        let ctx = |transport, src_port, dst_port| PacketCtx {
            ts,
            frame,
            src: SocketAddr::new(src_ip, src_port),
            dst: SocketAddr::new(dst_ip, dst_port),
            transport,
            tunnel,
            context,
            wire_len: len,
            flow: prepared.flow,
        };
        match transport {
            Tp::Udp { src_port, dst_port, payload } => {
                self.on_udp(&ctx(Transport::Udp, *src_port, *dst_port), hints, payload);
            }
            Tp::Tcp(seg) => self.on_tcp(&ctx(Transport::Tcp, seg.src_port, seg.dst_port), seg),
            Tp::Sctp { src_port, dst_port, chunks, .. } => {
                self.on_sctp(&ctx(Transport::Sctp, *src_port, *dst_port), chunks);
            }
            Tp::Fragment(_) => match prepared.reassembly.as_deref() {
                Some(Ok(Some(datagram))) => {
                    let inner = decode_transport(datagram.protocol, datagram.src, datagram.dst, &datagram.payload);
                    if inner.stop.is_some() {
                        self.stats.malformed += 1;
                    }
                    // A datagram's transport is never a fragment again, so this recurses once.
                    if !matches!(inner.transport, Tp::Fragment(_)) {
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

    fn on_udp(&mut self, ctx: &PacketCtx<'_>, hints: Option<&UdpHints>, payload: &[u8]) {
        let computed;
        let hints = match hints {
            Some(hints) => hints,
            None => {
                computed = UdpHints::of(payload);
                &computed
            }
        };
        let datagram = Datagram {
            src: ctx.src,
            dst: ctx.dst,
            context: ctx.context,
            tunnel: ctx.tunnel,
            payload,
            hints,
            ts: ctx.ts,
            frame: ctx.frame,
            wire_len: ctx.wire_len,
        };
        // The memo is copied out and back because the analysis below borrows all of `self`.
        let (mut memo, dir) = self.flows.memo(ctx).map(|(m, dir)| (m.media[dir], dir)).unzip();
        let (protocol, decider) = self.udp_protocol(memo.get_or_insert_default(), &datagram, ctx);
        let counted = self.flows.count(ctx, protocol, decider).map(|m| {
            if let (Some(dir), Some(memo)) = (dir, memo) {
                m.media[dir] = memo;
            }
            &mut m.counted
        });
        self.stats.count_flow(protocol, ctx.wire_len, (ctx.src, ctx.dst), counted);
    }

    /// Counts a packet of a TCP or SCTP flow as `protocol`.
    fn count_flow(&mut self, ctx: &PacketCtx<'_>, protocol: &'static str, decider: Decider) {
        let counted = self.flows.count(ctx, protocol, decider).map(|m| &mut m.counted);
        self.stats.count_flow(protocol, ctx.wire_len, (ctx.src, ctx.dst), counted);
    }

    /// Analyses a UDP datagram; returns what it was counted as, and who decided that.
    fn udp_protocol(&mut self, memo: &mut MediaMemo, d: &Datagram<'_>, ctx: &PacketCtx<'_>) -> (&'static str, Decider) {
        let Datagram { src, dst, payload, ts, .. } = *d;
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
                // A datagram on the SIP port that is not SIP at all (a keep-alive, or
                // another protocol) is not a malformed SIP message.
                let counted_as_sip = self.on_sip(payload, &msg_meta(ctx), verdict.confidence != Confidence::Port);
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

    fn on_tcp(&mut self, ctx: &PacketCtx<'_>, seg: &TcpSegment<'_>) {
        let (src, dst, ts) = (ctx.src, ctx.dst, ctx.ts);
        let pair = if src <= dst { (ctx.context, src, dst) } else { (ctx.context, dst, src) };
        let (app, decider) = match self.tcp_flows.get_mut(&pair) {
            Some(entry) => {
                entry.1 = ts;
                (entry.0, entry.2)
            }
            None if seg.payload.is_empty() => {
                // Handshakes and bare ACKs say nothing about the application yet.
                self.count_flow(ctx, "tcp", Decider::NONE);
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
                self.count_flow(ctx, "tcp", decider);
                return;
            }
            TcpApp::Sip => (sip::frame_message, Transport::Tcp),
            TcpApp::SipWebSocket => (frame_http_or_ws, Transport::Ws),
        };
        self.count_flow(ctx, "sip", decider);
        let mut pdus = std::mem::take(&mut self.pdus);
        let (ws, max_message) = (&mut self.ws, self.opts.tcp.max_buffered_bytes);
        let key = StreamKey { src, dst, context: ctx.context };
        self.tcp.push(key, seg, ctx.frame, ts, &mut framer, &mut |pdu| {
            if app == TcpApp::Sip {
                pdus.push((pdu.data.to_vec(), pdu.last_frame, pdu.ts));
            } else if let Some(message) = ws.on_pdu(key, pdu.data, max_message) {
                pdus.push((message.to_vec(), pdu.last_frame, pdu.ts));
            }
        });
        for (bytes, last_frame, pdu_ts) in pdus.drain(..) {
            let meta = MsgMeta { ts: pdu_ts, frame: last_frame, transport, ..msg_meta(ctx) };
            self.on_sip(&bytes, &meta, true);
        }
        self.pdus = pdus;
    }

    fn on_sctp(&mut self, ctx: &PacketCtx<'_>, chunks: &[u8]) {
        let mut carried_sip = false;
        for chunk in sctp::chunks(chunks) {
            let Ok(chunk) = chunk else {
                self.stats.malformed += 1;
                break;
            };
            if let Some(Ok(data)) = sctp::data_chunk(&chunk) {
                if sip::looks_like_sip(data.payload) {
                    carried_sip |= self.on_sip(data.payload, &msg_meta(ctx), true);
                }
            }
        }
        let (protocol, decider) = if carried_sip {
            ("sip", Decider { confidence: Confidence::Signature, classifier: "heuristic" })
        } else {
            ("sctp", Decider::NONE)
        };
        self.count_flow(ctx, protocol, decider);
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
        let id = match self.by_call_id.get(call_id) {
            Some(&id) => id,
            None => {
                let id = self.next_dialog;
                self.next_dialog += 1;
                self.by_call_id.insert(call_id.to_string(), id);
                self.dialogs.insert(id, Dialog::new(&msg, call_id, meta));
                id
            }
        };
        let mut has_sdp = false;
        if let Some(body) = sip::sdp_body(&msg) {
            if let Ok(sdp) = Sdp::parse(body) {
                has_sdp = true;
                self.media.register_sdp(id, &sdp, meta.context);
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

    /// Closes sessions that are over as of capture time `now`.
    fn sweep(&mut self, now: Timestamp) {
        let linger = duration_ns(self.opts.session_linger);
        let idle = duration_ns(self.opts.idle_timeout);
        self.tcp.expire(now);
        self.tcp_flows.retain(|_, (_, seen, _)| now.as_nanos() - seen.as_nanos() <= idle);
        let flows = &self.tcp_flows;
        self.ws.retain(|StreamKey { src, dst, context }| {
            flows.contains_key(&if src <= dst { (context, src, dst) } else { (context, dst, src) })
        });
        let mut done: Vec<(u64, Owner)> = self
            .dialogs
            .iter()
            .filter(|(id, d)| {
                let last = self.media.last_activity(**id).map_or(d.last_activity, |m| m.max(d.last_activity));
                let quiet = now.as_nanos() - last.as_nanos();
                (d.is_terminated() && quiet > linger) || quiet > idle
            })
            .map(|(id, d)| (d.first_frame, *id))
            .collect();
        done.sort_unstable();
        for (_, id) in done {
            self.close_dialog(id);
        }
        for owner in self.media.idle_orphans(Timestamp::from_nanos(now.as_nanos() - idle)) {
            self.close_orphan(owner);
        }
    }

    fn close_dialog(&mut self, id: Owner) {
        let Some(dialog) = self.dialogs.remove(&id) else { return };
        if self.by_call_id.get(&dialog.call_id) == Some(&id) {
            self.by_call_id.remove(&dialog.call_id);
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
        (self.flows.take_flows(), self.front.unlisted_flows())
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
        let mut stats = self.stats.build(self.classifier.name());
        stats.flows_forgotten = self.flows.forgotten_count();
        (sessions, stats)
    }
}

/// Where and when a SIP message in the packet of `ctx` was seen.
fn msg_meta(ctx: &PacketCtx<'_>) -> MsgMeta {
    MsgMeta {
        ts: ctx.ts,
        frame: ctx.frame,
        src: ctx.src,
        dst: ctx.dst,
        transport: ctx.transport,
        context: ctx.context,
        tunnel: ctx.tunnel.copied(),
    }
}

/// The order sessions are written in: by start time, then id, so output is deterministic.
pub fn sort_sessions(sessions: &mut [Session]) {
    sessions.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.id.cmp(&b.id)));
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
