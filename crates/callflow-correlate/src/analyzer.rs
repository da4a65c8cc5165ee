//! The analyzer: a router that takes frames in capture order, finds each packet's flow and application protocol, and hands the payload to that protocol's handler.
//!
//! The route of a packet: front stage (decoding, IP fragments, the flow's number; see
//! `front`) -> flow (its entry in the flow list, with what earlier packets decided) ->
//! application protocol (announced by an earlier protocol, decided on the connection's
//! first payload, probed by a handler, or classified) -> that protocol's handler (see
//! `handler`). The router knows transports and flows; the handlers own the protocols'
//! tables and sessions, and say when a session is over.

use crate::ctx::PacketCtx;
use crate::diameter::DiameterHandler;
use crate::flows::{Decider, FlowId, FlowTable};
use crate::front::{Front, Prepared, UdpHints, SWEEP_INTERVAL_NS};
use crate::gtp::GtpHandler;
use crate::handler::{Handled, Handler, Lifetimes, Services, StreamFraming};
use crate::ids::scoped_id;
use crate::kpis::KpiOptions;
use crate::legs::LegOptions;
use crate::media::MediaTable;
use crate::problems::flag_problems;
use crate::quality::QualityOptions;
use crate::rtp::MediaHandler;
use crate::sctp::{Message as SctpMessage, SctpMessages};
use crate::sip::SipHandler;
use crate::stats::{Counted, StatsBuilder};
use crate::tls::{ConnKey, Inner, TlsHandler};
use crate::websocket::WsDirections;
use callflow_classify::{AppProtocol, Classifier, Confidence, HeuristicClassifier, PacketMeta, Payload, TcpMeta};
use callflow_decode::capture::Frame;
use callflow_decode::diameter::{self, Dictionary};
use callflow_decode::ipfrag::FragmentLimits;
use callflow_decode::packet::{decode_transport, IpInfo, TcpSegment, Transport as Tp, TunnelKind};
use callflow_decode::tcp::{Framing, StreamKey, TcpLimits, TcpReassembler};
use callflow_decode::tls::keylog::SharedKeyLog;
use callflow_decode::tls::{frame_record, starts_tls};
use callflow_decode::websocket::frame_http_or_ws;
use callflow_decode::{sctp, Timestamp};
use callflow_model::{CaptureLoss, Flow, ProblemCounts, Session, Stats, Transport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
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
    /// How the legs of a call through a B2BUA or proxy are found and joined (`related`
    /// links of relation `leg`), and how long a closed call waits for its other legs.
    pub legs: LegOptions,
    /// The Diameter dictionary (command and AVP names and types); `None` for the built-in
    /// one ([`Dictionary::builtin`]), else typically the built-in one extended by a file
    /// ([`Dictionary::with_file`]).
    pub diameter_dictionary: Option<Arc<Dictionary>>,
    /// How voice quality is estimated (jitter buffer, timeline interval, assumed delay) and
    /// the thresholds of the problems flagged on streams and sessions.
    pub quality: QualityOptions,
    /// How the operator statistics (the document's `kpis`) name peers and cut time.
    pub kpis: KpiOptions,
    /// The TLS secrets SIP over TLS is decrypted with (a key log; a capture's pcapng
    /// Decryption Secrets Blocks are added to it as they are read). Empty: TLS connections
    /// become `tls` sessions with the reason `no_key`.
    pub tls_keys: SharedKeyLog,
    /// What session ids are unique within. `None` (the default): ids depend on the
    /// capture alone (16 hex digits), the same on every run of the same input. `Some`:
    /// they depend on the scope too (32 hex digits), so that analyses with different
    /// scopes never share one; callflow-jobs scopes each job's by its UUID, so the same
    /// capture uploaded twice gives two sets of ids. References to sessions (`related`,
    /// the subscriber view, KPIs) use the same ids.
    pub session_id_scope: Option<u128>,
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
            legs: LegOptions::default(),
            diameter_dictionary: None,
            quality: QualityOptions::default(),
            kpis: KpiOptions::default(),
            tls_keys: SharedKeyLog::default(),
            session_id_scope: None,
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
    /// SCTP user messages being reassembled from their fragments.
    sctp: SctpMessages,
    /// What each TCP connection (by tunnel and ordered address pair) carries, decided on
    /// its first payload, and when it was last seen.
    tcp_flows: HashMap<(u32, SocketAddr, SocketAddr), TcpRoute>,
    /// The directions of the WebSocket connections among `tcp_flows`.
    ws: WsDirections,
    /// The handlers, one per protocol followed.
    sip: SipHandler,
    media: MediaHandler,
    diameter: DiameterHandler,
    gtp: GtpHandler,
    /// TLS connections: their keys and records (decrypted data comes back to the router).
    tls: TlsHandler,
    /// The decrypted byte streams of TLS connections, framed as plaintext TCP would be.
    tls_plain: TcpReassembler,
    /// Scratch space for the records cut from TLS streams and one record's plaintext.
    tls_records: Vec<(Vec<u8>, u64, Timestamp)>,
    tls_plain_buf: Vec<u8>,
    /// What the handlers share.
    services: Services,
    completed: Vec<Session>,
    clock: Timestamp,
    last_sweep: Timestamp,
    /// Scratch space for messages cut from TCP streams, reused across segments.
    pdus: Vec<(Vec<u8>, u64, Timestamp)>,
    /// Every UDP, TCP and SCTP flow with what it carries.
    flows: FlowTable,
    /// TCP bytes acknowledged that the capture never saw sent.
    tcp_unseen_bytes: u64,
    /// The frame in hand was cut short by the snapshot length.
    frame_truncated: bool,
    /// Sessions handed out with problems, in all and per kind.
    problems: ProblemCounts,
}

/// The handlers and what they share, borrowed apart from the rest of the analyzer (its flow
/// table above all) for the time of one payload.
struct HandlersMut<'a> {
    sip: &'a mut SipHandler,
    media: &'a mut MediaHandler,
    diameter: &'a mut DiameterHandler,
    gtp: &'a mut GtpHandler,
    services: &'a mut Services,
}

impl HandlersMut<'_> {
    /// Hands a payload to the handler of `protocol`; a payload that did not parse counts as
    /// malformed when `strict` (something more than a port number said it was that protocol).
    fn hand_over(
        self,
        protocol: AppProtocol,
        ctx: &PacketCtx<'_>,
        media: &mut <MediaHandler as Handler>::FlowState,
        bytes: &[u8],
        strict: bool,
    ) -> Handled {
        let HandlersMut { sip, media: handler, diameter, gtp, services } = self;
        let handled = match protocol {
            AppProtocol::Sip => sip.on_payload(protocol, ctx, &mut (), bytes, services),
            AppProtocol::Rtp | AppProtocol::Rtcp => handler.on_payload(protocol, ctx, media, bytes, services),
            AppProtocol::Diameter => diameter.on_payload(protocol, ctx, &mut (), bytes, services),
            AppProtocol::GtpC | AppProtocol::GtpU => gtp.on_payload(protocol, ctx, &mut (), bytes, services),
            _ => Handled::NotOurs,
        };
        if handled == Handled::Malformed && strict {
            services.stats.malformed += 1;
        }
        handled
    }
}

/// What a TCP connection carries, decided on its first payload.
#[derive(Clone, Copy, Debug)]
struct TcpRoute {
    /// The handler's protocol (`Unknown`: nothing we follow).
    protocol: AppProtocol,
    framing: StreamFraming,
    seen: Timestamp,
    decider: Decider,
    /// Per direction (0: from the lower address of the pair), what the capture saw sent, to
    /// catch acknowledgements of bytes it never saw.
    sent: [SeenSent; 2],
    /// A frame of the connection was cut short by the capture's snapshot length: its
    /// segments' lengths are unknown, so acknowledgements prove nothing.
    blind: bool,
}

impl TcpRoute {
    /// Notes a segment from direction `dir` and returns how many bytes it acknowledges
    /// that the capture never saw the other direction send (a capture that dropped them).
    fn unseen_acked(&mut self, dir: usize, seg: &TcpSegment<'_>, truncated: bool) -> u64 {
        self.blind |= truncated;
        if self.blind {
            return 0;
        }
        // A SYN opens a new sequence space (the address pair may be reused by a new
        // connection); a RST ends it.
        if seg.flags & TcpSegment::RST != 0 {
            self.sent = Default::default();
            return 0;
        }
        if seg.flags & TcpSegment::SYN != 0 {
            if seg.flags & TcpSegment::ACK == 0 {
                self.sent = Default::default();
            } else if let Some(own) = self.sent.get_mut(dir) {
                *own = SeenSent::default();
            }
        }
        let flag = |f: u8| u32::from(seg.flags & f != 0);
        let len = u32::try_from(seg.payload.len()).unwrap_or(u32::MAX);
        let end = seg.seq.wrapping_add(len).wrapping_add(flag(TcpSegment::SYN) + flag(TcpSegment::FIN));
        if let Some(sent) = self.sent.get_mut(dir) {
            sent.on_segment(seg.seq, end);
        }
        match self.sent.get_mut(1 - dir) {
            Some(theirs) if seg.flags & TcpSegment::ACK != 0 && seg.flags & TcpSegment::RST == 0 => {
                theirs.on_ack(seg.ack)
            }
            _ => 0,
        }
    }
}

/// The bytes of one TCP direction the capture saw: up to `next` without a hole, and the
/// span of what it saw beyond a hole, if any.
#[derive(Clone, Copy, Debug, Default)]
struct SeenSent {
    next: Option<u32>,
    beyond: Option<(u32, u32)>,
}

/// `a` comes after `b` in sequence space.
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The later of two sequence numbers.
fn latest(a: u32, b: u32) -> u32 {
    if after(a, b) {
        a
    } else {
        b
    }
}

impl SeenSent {
    /// The capture saw bytes `seq..end` sent.
    fn on_segment(&mut self, seq: u32, end: u32) {
        let Some(next) = self.next else {
            self.next = Some(end);
            return;
        };
        if after(seq, next) {
            // Beyond a hole: remember the span.
            self.beyond = Some(match self.beyond {
                Some((start, last)) => (if after(start, seq) { seq } else { start }, latest(end, last)),
                None => (seq, end),
            });
        } else if after(end, next) {
            let mut next = end;
            // The hole is filled: what was seen beyond it joins.
            if let Some((start, last)) = self.beyond {
                if !after(start, next) {
                    next = latest(last, next);
                    self.beyond = None;
                }
            }
            self.next = Some(next);
        }
    }

    /// The other side acknowledged up to `ack`: the bytes of it the capture did not see,
    /// which are then taken as sent.
    fn on_ack(&mut self, ack: u32) -> u64 {
        let Some(next) = self.next else { return 0 };
        let ahead = ack.wrapping_sub(next) as i32;
        // More than 1 GiB ahead is a confused peer, not bytes the capture missed.
        if ahead <= 0 || ahead >= 1 << 30 {
            return 0;
        }
        let unseen = match self.beyond {
            Some((start, last)) if after(ack, start) => {
                self.beyond = None;
                self.next = Some(latest(last, ack));
                start.wrapping_sub(next)
            }
            _ => {
                self.next = Some(ack);
                ahead as u32
            }
        };
        u64::from(unseen)
    }
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
        let sip = SipHandler::new(opts.legs.clone());
        let lifetimes = Lifetimes { linger: duration_ns(opts.session_linger), idle: duration_ns(opts.idle_timeout) };
        let dictionary = opts.diameter_dictionary.clone();
        let media = MediaTable::with_quality(opts.quality.clone());
        let (tls, tls_plain) = (TlsHandler::new(opts.tls_keys.clone()), TcpReassembler::new(opts.tcp.clone()));
        Analyzer {
            front: Front::new(opts.fragments.clone(), opts.forget_idle_flows.then_some(opts.idle_timeout)),
            tcp: TcpReassembler::new(opts.tcp.clone()),
            sctp: SctpMessages::new(opts.tcp.max_buffered_bytes),
            opts,
            classifier,
            tcp_flows: HashMap::new(),
            ws: WsDirections::default(),
            sip,
            media: MediaHandler,
            diameter: DiameterHandler::new(dictionary),
            gtp: GtpHandler::default(),
            tls,
            tls_plain,
            tls_records: Vec::new(),
            tls_plain_buf: Vec::new(),
            services: Services { media, stats: StatsBuilder::default(), lifetimes },
            completed: Vec::new(),
            clock: Timestamp::default(),
            last_sweep: Timestamp::default(),
            pdus: Vec::new(),
            flows: FlowTable::default(),
            tcp_unseen_bytes: 0,
            frame_truncated: false,
            problems: ProblemCounts::default(),
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
        if self.services.stats.packets == 0 {
            self.last_sweep = ts;
        }
        self.clock = self.clock.max(ts);
        self.services.stats.frame(prepared.stopped);
        if let Some((_, tunnel)) = &prepared.tunnel {
            if tunnel.kind == TunnelKind::GtpU {
                self.gtp.on_user_packet(tunnel, ts);
            }
        }
        let len = u64::from(frame.orig_len.max(frame.data.len() as u32));
        self.frame_truncated = u64::from(frame.orig_len) > frame.data.len() as u64;
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
        if self.services.stats.packets == 0 && self.clock == Timestamp::default() {
            self.last_sweep = now;
        }
        self.clock = self.clock.max(now);
        if self.clock.nanos_since(self.last_sweep) >= SWEEP_INTERVAL_NS {
            self.last_sweep = self.clock;
            self.sweep(self.clock);
        }
    }

    /// The statistics so far, while the analysis goes on (what [`Analyzer::finish`] would
    /// give now, less the sessions still open). `flows_unlisted` is what this analyzer's
    /// own front stage counted: with the read-ahead thread, [`analyze`](crate::analyze)
    /// adds that thread's count at the end.
    pub fn stats(&self) -> Stats {
        let mut stats = self.services.stats.build(self.classifier.name());
        stats.flows_unlisted = self.front.unlisted_flows();
        stats.flows_forgotten = self.flows.forgotten_count();
        stats.diameter_peers = self.diameter.peers();
        stats.capture_loss = self.capture_loss();
        stats.problems = self.problems.clone();
        stats
    }

    /// What points to the capture's own losses so far.
    fn capture_loss(&self) -> CaptureLoss {
        let (events, rtp_packets) = self.services.media.capture_loss();
        CaptureLoss { events, rtp_packets, tcp_unseen_bytes: self.tcp_unseen_bytes }
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

    /// Routes a packet's IP header and transport: the frame's (with the front stage's
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
            self.services.stats.count(Counted::Other, len, None);
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
            udp: hints,
        };
        match transport {
            Tp::Udp { src_port, dst_port, payload } => {
                self.on_udp(&ctx(Transport::Udp, *src_port, *dst_port), payload);
            }
            Tp::Tcp(seg) => self.on_tcp(&ctx(Transport::Tcp, seg.src_port, seg.dst_port), seg),
            Tp::Sctp { src_port, dst_port, chunks, .. } => {
                self.on_sctp(&ctx(Transport::Sctp, *src_port, *dst_port), chunks);
            }
            Tp::Fragment(_) => match prepared.reassembly.as_deref() {
                Some(Ok(Some(datagram))) => {
                    let inner = decode_transport(datagram.protocol, datagram.src, datagram.dst, &datagram.payload);
                    if inner.stop.is_some() {
                        self.services.stats.malformed += 1;
                    }
                    // The front stage reassembled fragments in fragments too, so this
                    // recurses once; a fragment nested deeper than tunnels go stays one.
                    if matches!(inner.transport, Tp::Fragment(_)) {
                        self.services.stats.count(Counted::IpFragment, len, None);
                    } else {
                        self.dispatch((inner.ip.as_ref(), &inner.transport), prepared, None, frame, ts, len);
                    }
                }
                Some(Ok(None)) | None => self.services.stats.count(Counted::IpFragment, len, None),
                Some(Err(_)) => {
                    self.services.stats.malformed += 1;
                    self.services.stats.count(Counted::IpFragment, len, None);
                }
            },
            Tp::None | Tp::Other { .. } => self.services.stats.count(
                Counted::Other,
                len,
                Some((SocketAddr::new(src_ip, 0), SocketAddr::new(dst_ip, 0))),
            ),
        }
    }

    fn on_udp(&mut self, ctx: &PacketCtx<'_>, payload: &[u8]) {
        // The front stage has mostly worked the hints out already; the context is copied
        // (35 instructions a packet) only when they are computed here.
        let (computed, with_hints);
        let (ctx, hints) = match ctx.udp {
            Some(hints) => (ctx, hints),
            None => {
                computed = UdpHints::of(payload);
                with_hints = PacketCtx { udp: Some(&computed), ..*ctx };
                (&with_hints, &computed)
            }
        };
        // The handlers are borrowed apart from the flow table, so the flow's media memo is
        // used where it lies: copying it out and back cost about 40 instructions a packet.
        let Analyzer { flows, classifier, sip, media, diameter, gtp, services, .. } = self;
        let mut unlisted = None;
        let state = match flows.memo(ctx) {
            Some((m, dir)) => &mut m.media[dir],
            None => unlisted.get_or_insert_with(Default::default),
        };
        // Media to an endpoint an earlier protocol announced goes to the media handler,
        // whatever its port; SIP-like payloads are SIP's to decide.
        let announced = if hints.sip_like { None } else { media.on_announced(ctx, state, hints, payload, services) };
        let (handled, decider) = match announced {
            Some(handled) => (handled, Decider::SDP),
            None => {
                // The capture time lets flow-tracking classifiers (nDPI) age their flows out.
                let meta = PacketMeta::at_time(ctx.ts);
                let verdict = classifier.classify_packet(&Payload::udp(ctx.src, ctx.dst, payload), &meta);
                // A datagram on the SIP or GTP port that is not that protocol at all (a
                // keep-alive, or another protocol) is not a malformed message of it.
                let strict = verdict.confidence != Confidence::Port;
                let to = match verdict.protocol {
                    p @ (AppProtocol::Sip | AppProtocol::GtpC | AppProtocol::GtpU) => Some((p, strict)),
                    p @ (AppProtocol::Rtp | AppProtocol::Rtcp) => Some((p, true)),
                    _ => None,
                };
                let handled = to.map_or(Handled::NotOurs, |(protocol, strict)| {
                    HandlersMut { sip, media, diameter, gtp, services: &mut *services }
                        .hand_over(protocol, ctx, state, payload, strict)
                });
                (handled, Decider::of(&verdict))
            }
        };
        let protocol = counted_as(handled, Transport::Udp);
        let counted = flows.count(ctx, protocol, decider).map(|m| &mut m.counted);
        services.stats.count_flow(protocol, ctx.wire_len, (ctx.src, ctx.dst), counted);
    }

    /// Hands a payload to the handler of `protocol` (see [`HandlersMut::hand_over`]).
    fn hand_over(
        &mut self,
        protocol: AppProtocol,
        ctx: &PacketCtx<'_>,
        media: &mut <MediaHandler as Handler>::FlowState,
        bytes: &[u8],
        strict: bool,
    ) -> Handled {
        let Analyzer { sip, media: handler, diameter, gtp, services, .. } = self;
        HandlersMut { sip, media: handler, diameter, gtp, services }.hand_over(protocol, ctx, media, bytes, strict)
    }

    /// Counts a packet of a TCP or SCTP flow as `protocol`.
    fn count_flow(&mut self, ctx: &PacketCtx<'_>, protocol: Counted, decider: Decider) {
        let counted = self.flows.count(ctx, protocol, decider).map(|m| &mut m.counted);
        self.services.stats.count_flow(protocol, ctx.wire_len, (ctx.src, ctx.dst), counted);
    }

    /// Decides what a TCP connection carries on its first payload: a handler's own framing
    /// (a WebSocket upgrade naming its subprotocol) first, which no classifier knows of,
    /// then the classifier.
    fn route_tcp(&mut self, ctx: &PacketCtx<'_>, seg: &TcpSegment<'_>) -> TcpRoute {
        if let Some(framing) = self.sip.probe_stream(seg.payload) {
            let decider = Decider { confidence: Confidence::Signature, classifier: "heuristic" };
            return TcpRoute {
                protocol: SipHandler::PROTOCOL,
                framing,
                seen: ctx.ts,
                decider,
                sent: Default::default(),
                blind: false,
            };
        }
        // TLS (SIP over TLS, secure WebSocket) by its record header; Diameter's TLS port
        // stays Diameter's.
        if starts_tls(seg.payload) && !DiameterHandler::is_tls(ctx) {
            let decider = Decider { confidence: Confidence::Signature, classifier: "heuristic" };
            return TcpRoute {
                protocol: AppProtocol::Tls,
                framing: StreamFraming::Plain,
                seen: ctx.ts,
                decider,
                sent: Default::default(),
                blind: false,
            };
        }
        let verdict = self.classifier.classify_packet(
            &Payload::tcp(ctx.src, ctx.dst, seg.payload),
            &PacketMeta::at_time(ctx.ts).with_tcp(TcpMeta::from(seg)),
        );
        let protocol = match verdict.protocol {
            AppProtocol::Sip | AppProtocol::Diameter => verdict.protocol,
            // Diameter over TLS: anything but plain Diameter on Diameter's TLS port.
            _ if DiameterHandler::is_tls(ctx) => AppProtocol::Tls,
            _ => AppProtocol::Unknown,
        };
        TcpRoute {
            protocol,
            framing: StreamFraming::Plain,
            seen: ctx.ts,
            decider: Decider::of(&verdict),
            sent: Default::default(),
            blind: false,
        }
    }

    fn on_tcp(&mut self, ctx: &PacketCtx<'_>, seg: &TcpSegment<'_>) {
        let (src, dst, ts) = (ctx.src, ctx.dst, ctx.ts);
        let pair = if src <= dst { (ctx.context, src, dst) } else { (ctx.context, dst, src) };
        let dir = usize::from(src > dst);
        let route = match self.tcp_flows.get_mut(&pair) {
            Some(route) => {
                route.seen = ts;
                self.tcp_unseen_bytes += route.unseen_acked(dir, seg, self.frame_truncated);
                *route
            }
            None if seg.payload.is_empty() => {
                // Handshakes and bare ACKs say nothing about the application yet.
                self.count_flow(ctx, Counted::Bare(Transport::Tcp), Decider::NONE);
                return;
            }
            None => {
                let mut route = self.route_tcp(ctx, seg);
                route.unseen_acked(dir, seg, self.frame_truncated);
                self.tcp_flows.insert(pair, route);
                route
            }
        };
        let framer = match route.protocol {
            AppProtocol::Sip => self.sip.framer(),
            // Diameter over TLS on its port: counted, not read.
            AppProtocol::Tls if DiameterHandler::is_tls(ctx) => {
                self.diameter.on_encrypted(ctx);
                self.count_flow(ctx, Counted::Bare(Transport::Tcp), route.decider);
                return;
            }
            AppProtocol::Tls => {
                self.on_tls(ctx, seg, pair, route.decider);
                return;
            }
            AppProtocol::Diameter => self.diameter.framer(),
            _ => None,
        };
        let (protocol, framer) = match framer {
            Some(framer) => (route.protocol, framer),
            None => {
                self.count_flow(ctx, Counted::Bare(Transport::Tcp), route.decider);
                return;
            }
        };
        self.count_flow(ctx, Counted::App(protocol), route.decider);
        let (mut framer, transport): (fn(&[u8]) -> Framing, _) = match route.framing {
            StreamFraming::Plain => (framer, Transport::Tcp),
            StreamFraming::WebSocket => (frame_http_or_ws, Transport::Ws),
        };
        let mut pdus = std::mem::take(&mut self.pdus);
        let (ws, max_message) = (&mut self.ws, self.opts.tcp.max_buffered_bytes);
        let key = StreamKey { src, dst, context: ctx.context };
        self.tcp.push(key, seg, ctx.frame, ts, &mut framer, &mut |pdu| match route.framing {
            StreamFraming::Plain => pdus.push((pdu.data.to_vec(), pdu.last_frame, pdu.ts)),
            StreamFraming::WebSocket => {
                if let Some(message) = ws.on_pdu(key, pdu.data, max_message) {
                    pdus.push((message.to_vec(), pdu.last_frame, pdu.ts));
                }
            }
        });
        for (bytes, last_frame, pdu_ts) in pdus.drain(..) {
            let message = PacketCtx { ts: pdu_ts, frame: last_frame, transport, ..*ctx };
            self.hand_over(protocol, &message, &mut Default::default(), &bytes, true);
        }
        self.pdus = pdus;
    }

    /// A segment of a TLS connection: its records to the TLS handler, and the application
    /// data they decrypt to framed as the plaintext stream would be and handed over.
    fn on_tls(&mut self, ctx: &PacketCtx<'_>, seg: &TcpSegment<'_>, conn: ConnKey, decider: Decider) {
        self.count_flow(ctx, Counted::App(AppProtocol::Tls), decider);
        let mut records = std::mem::take(&mut self.tls_records);
        let key = StreamKey { src: ctx.src, dst: ctx.dst, context: ctx.context };
        self.tcp.push(key, seg, ctx.frame, ctx.ts, &mut frame_record, &mut |pdu| {
            records.push((pdu.data.to_vec(), pdu.last_frame, pdu.ts))
        });
        let mut plain = std::mem::take(&mut self.tls_plain_buf);
        for (bytes, last_frame, ts) in records.drain(..) {
            let record = PacketCtx { ts, frame: last_frame, ..*ctx };
            plain.clear();
            match self.tls.on_record(&record, conn, &bytes) {
                Some(data) if !data.is_empty() => plain.extend_from_slice(data),
                _ => continue,
            }
            self.on_tls_plain(&record, conn, &plain);
        }
        self.tls_plain_buf = plain;
        self.tls_records = records;
    }

    /// Decrypted application data of a TLS connection: the protocol it carries is decided
    /// on its first bytes as a plaintext connection's would be (SIP, or SIP over
    /// WebSocket), then it is framed and handed to that handler.
    fn on_tls_plain(&mut self, ctx: &PacketCtx<'_>, conn: ConnKey, plain: &[u8]) {
        let framing = match self.tls.inner(conn) {
            Some(Inner::NotFollowed) => return,
            Some(Inner::Followed(framing)) => framing,
            None => {
                // Keep-alive line ends say nothing yet.
                if plain.iter().all(|b| b.is_ascii_whitespace()) {
                    return;
                }
                let framing = self.sip.probe_stream(plain).or(self.sip.probe(plain).then_some(StreamFraming::Plain));
                self.tls.set_inner(conn, framing.map_or(Inner::NotFollowed, Inner::Followed));
                match framing {
                    Some(f) => f,
                    None => return,
                }
            }
        };
        let key = StreamKey { src: ctx.src, dst: ctx.dst, context: ctx.context };
        let seq = self.tls.plain_offset(conn, ctx.src, plain.len());
        let seg = TcpSegment {
            src_port: ctx.src.port(),
            dst_port: ctx.dst.port(),
            seq,
            ack: 0,
            flags: 0,
            window: 0,
            payload: plain,
        };
        let (mut framer, transport): (fn(&[u8]) -> Framing, _) = match framing {
            StreamFraming::Plain => (callflow_decode::sip::frame_message, Transport::Tls),
            StreamFraming::WebSocket => (frame_http_or_ws, Transport::Wss),
        };
        let mut pdus = std::mem::take(&mut self.pdus);
        let (ws, max_message) = (&mut self.ws, self.opts.tcp.max_buffered_bytes);
        self.tls_plain.push(key, &seg, ctx.frame, ctx.ts, &mut framer, &mut |pdu| match framing {
            StreamFraming::Plain => pdus.push((pdu.data.to_vec(), pdu.last_frame, pdu.ts)),
            StreamFraming::WebSocket => {
                if let Some(message) = ws.on_pdu(key, pdu.data, max_message) {
                    pdus.push((message.to_vec(), pdu.last_frame, pdu.ts));
                }
            }
        });
        for (bytes, last_frame, pdu_ts) in pdus.drain(..) {
            let message = PacketCtx { ts: pdu_ts, frame: last_frame, transport, ..*ctx };
            self.hand_over(SipHandler::PROTOCOL, &message, &mut Default::default(), &bytes, true);
        }
        self.pdus = pdus;
    }

    fn on_sctp(&mut self, ctx: &PacketCtx<'_>, chunks: &[u8]) {
        let (mut carried, mut encrypted) = (None, false);
        for chunk in sctp::chunks(chunks) {
            let Ok(chunk) = chunk else {
                self.services.stats.malformed += 1;
                break;
            };
            let Some(Ok(data)) = sctp::data_chunk(&chunk) else { continue };
            let reassembled;
            let message = match self.sctp.push((ctx.context, ctx.src, ctx.dst), &data, ctx.ts) {
                SctpMessage::Whole(message) => message,
                SctpMessage::Reassembled(message) => {
                    reassembled = message;
                    &reassembled[..]
                }
                SctpMessage::Pending => continue,
            };
            let diameter_port = ctx.src.port() == diameter::PORT || ctx.dst.port() == diameter::PORT;
            let protocol = if self.sip.probe(message) {
                SipHandler::PROTOCOL
            } else if data.ppid == diameter::PPID || self.diameter.probe(message) {
                DiameterHandler::PROTOCOL
            } else if data.ppid == diameter::PPID_DTLS || DiameterHandler::is_tls(ctx) {
                // Diameter over DTLS: counted (once per packet), not read.
                encrypted = true;
                continue;
            } else if diameter_port {
                DiameterHandler::PROTOCOL
            } else {
                continue;
            };
            let handled = self.hand_over(protocol, ctx, &mut Default::default(), message, true);
            if let Handled::Counted(protocol) = handled {
                carried = Some(protocol);
            }
        }
        if encrypted {
            self.diameter.on_encrypted(ctx);
        }
        match carried {
            Some(protocol) => {
                let decider = Decider { confidence: Confidence::Signature, classifier: "heuristic" };
                self.count_flow(ctx, Counted::App(protocol), decider);
            }
            None => self.count_flow(ctx, Counted::Bare(Transport::Sctp), Decider::NONE),
        }
    }

    /// Queues a session a handler closed, with its problems flagged.
    fn hand_out(&mut self, session: Option<Session>) {
        if let Some(mut session) = session {
            if let Some(scope) = self.opts.session_id_scope {
                // Every id a session holds so far: later references (bearers, the
                // subscriber view, KPIs) are read from the sessions handed out.
                session.id = scoped_id(scope, &session.id);
                for related in &mut session.related {
                    related.session = scoped_id(scope, &related.session);
                }
            }
            session.shrink_to_fit();
            flag_problems(&mut session, &self.opts.quality);
            if !session.problems.is_empty() {
                self.problems.sessions += 1;
                for p in &session.problems {
                    *self.problems.by_kind.entry(p.as_str().to_string()).or_default() += 1;
                }
            }
            self.completed.push(session);
        }
    }

    /// Closes the sessions that are over as of `now` (every open one when `None`) and hands
    /// them out, handler by handler in a fixed order: SIP first, since closing a dialog
    /// takes its media out of the media table before orphan media is looked at.
    fn close_sessions(&mut self, now: Option<Timestamp>) {
        macro_rules! close_each {
            ($($handler:ident),*) => {$(
                let keys = match now {
                    Some(now) => self.$handler.over(now, &self.services),
                    None => self.$handler.open(&self.services),
                };
                for key in keys {
                    let closed = self.$handler.close(key, &mut self.services);
                    self.hand_out(closed);
                }
            )*};
        }
        close_each!(sip, media, diameter, gtp, tls);
    }

    /// Closes sessions that are over as of capture time `now`.
    fn sweep(&mut self, now: Timestamp) {
        let idle = self.services.lifetimes.idle;
        self.tcp.expire(now);
        self.tls_plain.expire(now);
        self.sctp.expire(Timestamp::from_nanos(now.as_nanos().saturating_sub(duration_ns(self.opts.tcp.idle_timeout))));
        self.tcp_flows.retain(|_, route| now.nanos_since(route.seen) <= idle);
        let flows = &self.tcp_flows;
        self.ws.retain(|StreamKey { src, dst, context }| {
            flows.contains_key(&if src <= dst { (context, src, dst) } else { (context, dst, src) })
        });
        self.close_sessions(Some(now));
    }

    /// Every UDP, TCP and SCTP flow so far, in order of its first packet, and how many new
    /// flows were counted but not listed (past the bound). Call it before [`Analyzer::finish`].
    pub fn take_flows(&mut self) -> (Vec<Flow>, u64) {
        (self.flows.take_flows(), self.front.unlisted_flows())
    }

    /// How many sessions are open (started and not yet over): SIP dialogs, orphan media,
    /// Diameter and GTP sessions. It lists each handler's table, so ask now and then, not
    /// per frame.
    pub fn open_count(&self) -> usize {
        self.sip.open(&self.services).len()
            + self.media.open(&self.services).len()
            + self.diameter.open(&self.services).len()
            + self.gtp.open(&self.services).len()
            + self.tls.open(&self.services).len()
    }

    /// How many sessions are over and wait for [`Analyzer::take_completed`].
    pub fn completed_count(&self) -> usize {
        self.completed.len()
    }

    /// Sessions that are over, in the order they ended. Each is handed out once.
    pub fn take_completed(&mut self) -> Vec<Session> {
        std::mem::take(&mut self.completed)
    }

    /// Closes every open session and returns what is left, ordered by start time (then
    /// id), with the statistics of the whole run.
    pub fn finish(mut self) -> (Vec<Session>, Stats) {
        self.close_sessions(None);
        let mut sessions = std::mem::take(&mut self.completed);
        sort_sessions(&mut sessions);
        let mut stats = self.services.stats.build(self.classifier.name());
        stats.flows_forgotten = self.flows.forgotten_count();
        stats.diameter_peers = self.diameter.peers();
        stats.capture_loss = self.capture_loss();
        stats.problems = std::mem::take(&mut self.problems);
        (sessions, stats)
    }
}

/// The name a packet is counted under: its protocol's when a handler took it, else its
/// transport's.
fn counted_as(handled: Handled, transport: Transport) -> Counted {
    match handled {
        Handled::Counted(protocol) => Counted::App(protocol),
        Handled::NotOurs | Handled::Malformed => Counted::Bare(transport),
    }
}

/// The order sessions are written in: by start time, then id, so output is deterministic.
pub fn sort_sessions(sessions: &mut [Session]) {
    sessions.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.id.cmp(&b.id)));
}

/// A duration in nanoseconds, saturating (capture-time arithmetic is in `i64` nanoseconds).
pub(crate) fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `(from A?, seq, len, ack)` segments of one connection (ACK set on each) and
    /// returns the bytes acknowledged that were never seen.
    fn unseen(segments: &[(bool, u32, usize, u32)]) -> u64 {
        let mut route = TcpRoute {
            protocol: AppProtocol::Unknown,
            framing: StreamFraming::Plain,
            seen: Timestamp::default(),
            decider: Decider::NONE,
            sent: Default::default(),
            blind: false,
        };
        let payload = [0u8; 100];
        segments
            .iter()
            .map(|&(from_a, seq, len, ack)| {
                let seg = TcpSegment {
                    src_port: 1,
                    dst_port: 2,
                    seq,
                    ack,
                    flags: TcpSegment::ACK,
                    window: 0,
                    payload: &payload[..len],
                };
                route.unseen_acked(usize::from(!from_a), &seg, false)
            })
            .sum()
    }

    #[test]
    fn tcp_acks_of_bytes_the_capture_never_saw() {
        // Everything seen: nothing unseen.
        assert_eq!(unseen(&[(true, 1000, 10, 1), (false, 1, 0, 1010), (true, 1010, 10, 1), (false, 1, 0, 1020)]), 0);
        // The segment 1010..1020 dropped by the capture, acknowledged with the next one.
        assert_eq!(unseen(&[(true, 1000, 10, 1), (true, 1020, 10, 1), (false, 1, 0, 1030)]), 10);
        // The last segment dropped: acknowledged past everything seen.
        assert_eq!(unseen(&[(true, 1000, 10, 1), (false, 1, 0, 1050)]), 40);
        // A segment lost in the network and retransmitted (seen before the ACK): nothing.
        assert_eq!(unseen(&[(true, 1000, 10, 1), (true, 1020, 10, 1), (true, 1010, 10, 1), (false, 1, 0, 1030)]), 0);
        // Counted once, whatever the duplicate ACKs.
        assert_eq!(unseen(&[(true, 1000, 10, 1), (false, 1, 0, 1050), (false, 1, 0, 1050)]), 40);
    }

    #[test]
    fn a_new_connection_on_the_same_ports_starts_a_new_sequence_space() {
        // gtp-iphone.pcap counted 1.1 GB "unseen": SIP over TCP reopened 5060 <-> 5060 with
        // new initial sequence numbers.
        let mut route = TcpRoute {
            protocol: AppProtocol::Unknown,
            framing: StreamFraming::Plain,
            seen: Timestamp::default(),
            decider: Decider::NONE,
            sent: Default::default(),
            blind: false,
        };
        let payload = [0u8; 10];
        let mut seg = |dir: usize, seq: u32, ack: u32, flags: u8, len: usize| {
            let seg = TcpSegment { src_port: 1, dst_port: 2, seq, ack, flags, window: 0, payload: &payload[..len] };
            route.unseen_acked(dir, &seg, false)
        };
        const SYN: u8 = TcpSegment::SYN;
        const ACK: u8 = TcpSegment::ACK;
        let first = [seg(0, 100, 0, SYN, 0), seg(1, 900, 101, SYN | ACK, 0), seg(0, 101, 901, ACK, 10)];
        let reopened =
            [seg(0, 7_000_000, 0, SYN, 0), seg(1, 5_000, 7_000_001, SYN | ACK, 0), seg(1, 5_001, 7_000_001, ACK, 0)];
        assert_eq!((first, reopened), ([0; 3], [0; 3]));
    }

    #[test]
    fn tcp_frames_cut_by_the_snapshot_length_prove_nothing() {
        let mut route = TcpRoute {
            protocol: AppProtocol::Unknown,
            framing: StreamFraming::Plain,
            seen: Timestamp::default(),
            decider: Decider::NONE,
            sent: Default::default(),
            blind: false,
        };
        let seg = |seq: u32, ack: u32| TcpSegment {
            src_port: 1,
            dst_port: 2,
            seq,
            ack,
            flags: TcpSegment::ACK,
            window: 0,
            payload: &[],
        };
        // The data segment's frame was truncated: its 1448 bytes are not in the capture.
        assert_eq!(route.unseen_acked(0, &seg(1000, 1), true), 0);
        assert_eq!(route.unseen_acked(1, &seg(1, 2448), false), 0);
    }
}
