//! The Diameter handler: messages grouped into sessions by Session-Id, each request paired with its answer, subscriber identities gathered, and connection-level traffic counted per peer pair.
//!
//! Diameter reaches the handler over TCP (cut by [`diameter::frame_message`]) and over
//! SCTP (one message per user message, on PPID 46 or port 3868); never over UDP, which
//! RFC 6733 does not allow. Diameter over TLS or DTLS (port 5868, PPID 47) cannot be
//! read: its packets are counted per peer pair and listed as encrypted, never guessed at.
//!
//! - **Sessions.** A message with a Session-Id belongs to the open session of that id,
//!   opened by its first message. A session ends when its termination is answered (STA,
//!   CCA-T, ASA, an accounting STOP or EVENT record) or, for applications that keep no
//!   session state (Cx/Dx, Sh, S6a, S13, SWx, or `Auth-Session-State`
//!   NO_STATE_MAINTAINED), once every request is answered; it is then closed after the
//!   linger time, and any session after the idle time.
//! - **Pairs.** A request waits for its answer under its hop-by-hop and end-to-end ids and
//!   its two peers; an answer takes the request with the same ids from the peer it was
//!   sent to (or, on a multi-homed SCTP association, from another address of it). The
//!   response time is the answer's time less the request's.
//! - **Connection-level** messages (CER/CEA, DWR/DWA, DPR/DPA, which have no Session-Id)
//!   are counted per pair of peers (`stats.diameter_peers`), not made into sessions.
//! - **Subscribers.** The identities a session carries go into its `subscriber_keys`:
//!   IMSI (User-Name on S6a/S13, Subscription-Id END_USER_IMSI, 3GPP-IMSI), MSISDN
//!   (Subscription-Id END_USER_E164, the MSISDN AVP), the UE address (Framed-IP-Address,
//!   Framed-IPv6-Prefix), the IMS charging id (AF-Charging-Identifier,
//!   IMS-Charging-Identifier), IMPU (Public-Identity, Subscription-Id END_USER_SIP_URI),
//!   IMPI (User-Name on Cx), IMEI, and the Session-Id itself.
//!
//! What looks wrong (an unanswered request, an error result, AVPs that do not decode, an
//! answer whose request is not in the capture) is noted in the session's `anomalies`
//! (and `problems: [unanswered_request]`); a message whose header does not decode is
//! counted as malformed.

use crate::ctx::{tunnel_out, PacketCtx};
use crate::handler::{by_first_frame, Handled, Handler, Services};
use crate::ids::session_id;
use callflow_classify::AppProtocol;
use callflow_decode::diameter::dictionary::ResultClass;
use callflow_decode::diameter::{self, AvpNode, AvpType, DiameterMessage, Dictionary};
use callflow_decode::tcp::Framing;
use callflow_decode::Timestamp;
use callflow_model::{
    CallState, ChargingRule, DiameterAvp, DiameterPeers, DiameterSession, DiameterTransaction, Message, Problem,
    Protocol, Session, SessionKind, SubscriberKey, SubscriberKeyKind, Transport,
};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Requests waiting for their answer, at most; past this the oldest are given up on (and
/// stay unanswered).
const MAX_PENDING: usize = 65_536;
/// Peer pairs listed, at most; traffic of further pairs is not listed.
const MAX_PEERS: usize = 10_000;
/// Bytes of an AVP's data shown in hex, at most.
const MAX_HEX_BYTES: usize = 256;

const CMD_CAPABILITIES_EXCHANGE: u32 = 257;
const CMD_ACCOUNTING: u32 = 271;
const CMD_CREDIT_CONTROL: u32 = 272;
const CMD_ABORT_SESSION: u32 = 274;
const CMD_SESSION_TERMINATION: u32 = 275;
const CMD_DEVICE_WATCHDOG: u32 = 280;
const CMD_DISCONNECT_PEER: u32 = 282;

const APP_CX: u32 = 16_777_216;
const APP_S6A: u32 = 16_777_251;
const APP_S13: u32 = 16_777_252;

const APP_SH: u32 = 16_777_217;
const APP_SWX: u32 = 16_777_265;

/// Applications that keep no session state (each request a session of its own, whatever
/// `Auth-Session-State` says or leaves out): Cx/Dx, Sh, S6a/S6d, S13, SWx.
const STATELESS_APPS: [u32; 5] = [APP_CX, APP_SH, APP_S6A, APP_S13, APP_SWX];

const VENDOR_3GPP: u32 = 10_415;

/// A pair of peers in one tunnel, lower address first.
type PeerKey = (u32, SocketAddr, SocketAddr);

fn peer_key(context: u32, x: SocketAddr, y: SocketAddr) -> PeerKey {
    if x <= y {
        (context, x, y)
    } else {
        (context, y, x)
    }
}

/// Where a request that waits for its answer belongs.
#[derive(Clone, Copy, Debug)]
enum Owner {
    /// Transaction `tx` of session `session`.
    Session { session: u64, tx: usize },
    /// Connection-level traffic of a peer pair.
    Peers(PeerKey),
}

/// A request waiting for its answer.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// Order of arrival, for giving up on the oldest.
    seq: u64,
    requester: SocketAddr,
    responder: SocketAddr,
    context: u32,
    owner: Owner,
    /// The request's CC-Request-Type and Accounting-Record-Type, which its answer may
    /// leave out.
    cc_request_type: Option<u32>,
    accounting_record_type: Option<u32>,
}

/// One open session.
#[derive(Debug)]
struct Open {
    first_frame: u64,
    start: Timestamp,
    last: Timestamp,
    model: DiameterSession,
    messages: Vec<Message>,
    participants: Vec<SocketAddr>,
    anomalies: Vec<String>,
    keys: Vec<SubscriberKey>,
    tunnel: Option<callflow_model::Tunnel>,
    /// Its termination (STR, CCR-T, ASR) was answered.
    ended: bool,
    /// The application keeps no session state: answered means done.
    stateless: bool,
    /// Requests not answered yet.
    outstanding: usize,
    /// The keys its requests wait under in the pending table.
    waiting: Vec<(u32, u32)>,
}

/// The Diameter sessions in progress, the requests waiting for answers and the peer pairs.
#[derive(Debug)]
pub(crate) struct DiameterHandler {
    /// The dictionary given in the options (`None`: the built-in one).
    dict: Option<Arc<Dictionary>>,
    sessions: HashMap<u64, Open>,
    by_session_id: HashMap<String, u64>,
    next: u64,
    /// Requests waiting for their answer, by hop-by-hop and end-to-end id.
    pending: HashMap<(u32, u32), Vec<Pending>>,
    pending_count: usize,
    /// The pending requests' keys and numbers in order of arrival (with answered ones not
    /// yet dropped), to give up on the oldest in constant time.
    arrivals: VecDeque<(u64, (u32, u32))>,
    next_seq: u64,
    peers: HashMap<PeerKey, DiameterPeers>,
}

/// What the handler reads out of one message's AVPs.
#[derive(Debug, Default)]
struct Fields {
    session_id: Option<String>,
    result_code: Option<u32>,
    experimental_result_code: Option<u32>,
    cc_request_type: Option<u32>,
    accounting_record_type: Option<u32>,
    origin_host: Option<String>,
    origin_realm: Option<String>,
    destination_host: Option<String>,
    destination_realm: Option<String>,
    stateless: bool,
}

impl DiameterHandler {
    pub fn new(dict: Option<Arc<Dictionary>>) -> Self {
        DiameterHandler {
            dict,
            sessions: HashMap::new(),
            by_session_id: HashMap::new(),
            next: 1,
            pending: HashMap::new(),
            pending_count: 0,
            arrivals: VecDeque::new(),
            next_seq: 0,
            peers: HashMap::new(),
        }
    }

    fn dict(&self) -> &Dictionary {
        self.dict.as_deref().unwrap_or_else(|| Dictionary::builtin())
    }

    /// Whether a TCP connection or SCTP association between these ports is Diameter over
    /// (D)TLS, which is reported as encrypted rather than read.
    pub fn is_tls(ctx: &PacketCtx<'_>) -> bool {
        ctx.src.port() == diameter::TLS_PORT || ctx.dst.port() == diameter::TLS_PORT
    }

    /// Counts a packet of Diameter over TLS/DTLS against its peer pair.
    pub fn on_encrypted(&mut self, ctx: &PacketCtx<'_>) {
        let Some(peers) = self.peers_of(ctx) else { return };
        peers.encrypted = true;
        peers.packets += 1;
        peers.bytes += ctx.wire_len;
    }

    /// The entry of the packet's peer pair, made if need be (`None` past [`MAX_PEERS`]).
    fn peers_of(&mut self, ctx: &PacketCtx<'_>) -> Option<&mut DiameterPeers> {
        let key = peer_key(ctx.context, ctx.src, ctx.dst);
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&key) {
            return None;
        }
        Some(self.peers.entry(key).or_insert_with(|| DiameterPeers {
            a: ctx.src,
            b: ctx.dst,
            hosts: Vec::new(),
            messages: Default::default(),
            pairs: 0,
            unanswered: 0,
            encrypted: false,
            packets: 0,
            bytes: 0,
            first: ctx.ts,
            last: ctx.ts,
        }))
    }

    /// The peer pairs so far, in order of their first message (requests still waiting
    /// count as unanswered).
    pub fn peers(&self) -> Vec<DiameterPeers> {
        let mut waiting: HashMap<PeerKey, u64> = HashMap::new();
        for p in self.pending.values().flatten() {
            if let Owner::Peers(key) = p.owner {
                *waiting.entry(key).or_default() += 1;
            }
        }
        let mut out: Vec<DiameterPeers> = self
            .peers
            .iter()
            .map(|(key, peers)| {
                let mut peers = peers.clone();
                peers.unanswered += waiting.get(key).copied().unwrap_or(0);
                peers
            })
            .collect();
        out.sort_by_key(|p| (p.first, p.a, p.b));
        out
    }

    fn name_of_app(&self, id: u32) -> String {
        self.dict().application(id).map_or_else(|| id.to_string(), |a| a.name.clone())
    }

    /// The request or answer abbreviation (`CCR`), with the CC-Request-Type letter.
    fn short_name(&self, code: u32, app: u32, request: bool, cc_type: Option<u32>) -> String {
        let mut name = match self.dict().command(code, app) {
            Some(c) if request => c.request.clone(),
            Some(c) => c.answer.clone(),
            None => format!("cmd {code} {}", if request { "R" } else { "A" }),
        };
        if let Some(letter) = cc_type.and_then(|t| ["I", "U", "T", "E"].get((t as usize).wrapping_sub(1))) {
            name.push('-');
            name.push_str(letter);
        }
        name
    }

    fn remember(&mut self, key: (u32, u32), mut pending: Pending) {
        while self.pending_count >= MAX_PENDING {
            // Give up on the oldest waiting request (entries of answered ones are skipped).
            let Some((seq, old)) = self.arrivals.pop_front() else { break };
            self.take_pending(old, |p, _| p.seq == seq);
        }
        if self.arrivals.len() > 4 * MAX_PENDING {
            let pending = &self.pending;
            self.arrivals.retain(|(seq, k)| pending.get(k).is_some_and(|l| l.iter().any(|p| p.seq == *seq)));
        }
        pending.seq = self.next_seq;
        self.next_seq += 1;
        self.arrivals.push_back((pending.seq, key));
        if let Owner::Session { session, .. } = pending.owner {
            if let Some(open) = self.sessions.get_mut(&session) {
                open.waiting.push(key);
            }
        }
        self.pending.entry(key).or_default().push(pending);
        self.pending_count += 1;
    }

    /// Removes and returns the first pending request under `key` that `pick` chooses.
    fn take_pending(&mut self, key: (u32, u32), pick: impl Fn(&Pending, usize) -> bool) -> Option<Pending> {
        let list = self.pending.get_mut(&key)?;
        let i = list.iter().enumerate().position(|(i, p)| pick(p, i))?;
        let p = list.remove(i);
        if list.is_empty() {
            self.pending.remove(&key);
        }
        self.pending_count -= 1;
        Some(p)
    }

    /// The request an answer sent from `src` to `dst` answers: the same ids between the
    /// same peers, else (a multi-homed association) the same ids in the same tunnel.
    fn answered_request(&mut self, ids: (u32, u32), ctx: &PacketCtx<'_>) -> Option<Pending> {
        let (src, dst, context) = (ctx.src, ctx.dst, ctx.context);
        self.take_pending(ids, |p, _| p.requester == dst && p.responder == src && p.context == context)
            .or_else(|| self.take_pending(ids, |p, _| p.context == context))
    }

    fn open_session(&mut self, sid: &str, ctx: &PacketCtx<'_>, app: u32) -> u64 {
        if let Some(&id) = self.by_session_id.get(sid) {
            return id;
        }
        let id = self.next;
        self.next += 1;
        let model = DiameterSession {
            session_id: sid.to_string(),
            application_id: app,
            application: self.name_of_app(app),
            ..DiameterSession::default()
        };
        let open = Open {
            first_frame: ctx.frame,
            start: ctx.ts,
            last: ctx.ts,
            model,
            messages: Vec::new(),
            participants: Vec::new(),
            anomalies: Vec::new(),
            keys: vec![SubscriberKey { kind: SubscriberKeyKind::DiameterSessionId, value: sid.to_string() }],
            tunnel: ctx.tunnel.map(tunnel_out),
            ended: false,
            stateless: false,
            outstanding: 0,
            waiting: Vec::new(),
        };
        self.sessions.insert(id, open);
        self.by_session_id.insert(sid.to_string(), id);
        id
    }

    /// Connection-level traffic, and messages that belong to no session: counted per peers.
    fn count_for_peers(
        &mut self,
        ctx: &PacketCtx<'_>,
        msg: &DiameterMessage<'_>,
        short: &str,
        fields: &Fields,
    ) -> PeerKey {
        let key = peer_key(ctx.context, ctx.src, ctx.dst);
        let Some(peers) = self.peers_of(ctx) else { return key };
        peers.packets += 1;
        peers.bytes += u64::from(msg.header.length);
        peers.last = peers.last.max(ctx.ts);
        *peers.messages.entry(short.to_string()).or_default() += 1;
        if let Some(host) = &fields.origin_host {
            if !peers.hosts.contains(host) {
                peers.hosts.push(host.clone());
            }
        }
        key
    }
}

impl Handler for DiameterHandler {
    type FlowState = ();
    type Key = u64;
    const PROTOCOL: AppProtocol = AppProtocol::Diameter;

    fn probe(&self, payload: &[u8]) -> bool {
        diameter::looks_like_diameter(payload)
    }

    fn framer(&self) -> Option<fn(&[u8]) -> Framing> {
        Some(diameter::frame_message)
    }

    fn on_payload(
        &mut self,
        _protocol: AppProtocol,
        ctx: &PacketCtx<'_>,
        _state: &mut (),
        bytes: &[u8],
        services: &mut Services,
    ) -> Handled {
        if ctx.transport == Transport::Udp {
            return Handled::NotOurs;
        }
        let Ok(msg) = DiameterMessage::parse(bytes) else { return Handled::Malformed };
        let tree = diameter::avp_tree(&msg, self.dict());
        if tree.error.is_some() {
            services.stats.malformed += 1;
        }
        let mut fields = read_fields(&tree.avps);
        let h = msg.header;
        let request = h.is_request();
        let app_name = self.name_of_app(h.application_id);
        let ids = (h.hop_by_hop, h.end_to_end);
        let connection_level =
            matches!(h.command_code, CMD_CAPABILITIES_EXCHANGE | CMD_DEVICE_WATCHDOG | CMD_DISCONNECT_PEER)
                && fields.session_id.is_none();

        // Find the owner: the request an answer answers, or the session of the Session-Id.
        let answered = if request { None } else { self.answered_request(ids, ctx) };
        if let Some(p) = answered {
            fields.cc_request_type = fields.cc_request_type.or(p.cc_request_type);
            fields.accounting_record_type = fields.accounting_record_type.or(p.accounting_record_type);
        }
        let short = self.short_name(h.command_code, h.application_id, request, fields.cc_request_type);
        let retransmission = request
            && self.pending.get(&ids).is_some_and(|list| {
                list.iter().any(|p| p.requester == ctx.src && p.responder == ctx.dst && p.context == ctx.context)
            });
        let session = match (&fields.session_id, answered.map(|p| p.owner)) {
            (_, Some(Owner::Session { session, .. })) if self.sessions.contains_key(&session) => Some(session),
            (_, Some(Owner::Peers(_))) => None,
            (Some(sid), _) if !connection_level => Some(self.open_session(sid, ctx, h.application_id)),
            _ => None,
        };
        let Some(sid) = session else {
            let key = self.count_for_peers(ctx, &msg, &short, &fields);
            if request && !retransmission {
                let pending = Pending {
                    seq: 0,
                    requester: ctx.src,
                    responder: ctx.dst,
                    context: ctx.context,
                    cc_request_type: fields.cc_request_type,
                    accounting_record_type: fields.accounting_record_type,
                    owner: Owner::Peers(key),
                };
                self.remember(ids, pending);
            } else if answered.is_some() {
                if let Some(peers) = self.peers.get_mut(&key) {
                    peers.pairs += 1;
                }
            }
            return Handled::Counted(AppProtocol::Diameter);
        };

        let summary = {
            let mut s = short.clone();
            if let Some(code) = fields.result_code.or(fields.experimental_result_code) {
                let _ = write!(s, " {code}");
            }
            let _ = write!(s, " ({app_name})");
            s
        };
        let result_name =
            fields.result_code.map(|c| (268, c)).or(fields.experimental_result_code.map(|c| (298, c))).and_then(
                |(avp, c)| self.dict().avp(avp, None).and_then(|d| d.value_name(i64::from(c))).map(str::to_string),
            );
        let avps = tree.avps.iter().map(|n| to_model(n, self.dict())).collect();
        let model_msg = callflow_model::DiameterMessage {
            command_code: h.command_code,
            command: self
                .dict()
                .command(h.command_code, h.application_id)
                .map_or_else(|| format!("cmd {}", h.command_code), |c| c.name.clone()),
            application_id: h.application_id,
            application: app_name,
            request,
            flags: flags_text(h.flags),
            hop_by_hop: h.hop_by_hop,
            end_to_end: h.end_to_end,
            session_id: fields.session_id.clone(),
            result_code: fields.result_code,
            experimental_result_code: fields.experimental_result_code,
            avps,
        };
        let mut keys = Vec::new();
        subscriber_keys(&tree.avps, h.application_id, &mut keys);
        let mut rules = Vec::new();
        charging_rules(&tree.avps, ctx.frame, &mut rules);

        let mut new_pending = None;
        let Some(open) = self.sessions.get_mut(&sid) else { return Handled::Counted(AppProtocol::Diameter) };
        open.last = open.last.max(ctx.ts);
        for addr in [ctx.src, ctx.dst] {
            if !open.participants.contains(&addr) {
                open.participants.push(addr);
            }
        }
        for key in keys {
            if !open.keys.contains(&key) {
                open.keys.push(key);
            }
        }
        open.model.charging_rules.extend(rules);
        open.stateless |= fields.stateless || STATELESS_APPS.contains(&h.application_id);
        let m = &mut open.model;
        if request && m.origin_host.is_none() && m.transactions.is_empty() {
            m.origin_host = fields.origin_host.clone();
            m.origin_realm = fields.origin_realm.clone();
            m.destination_host = fields.destination_host.clone();
            m.destination_realm = fields.destination_realm.clone();
        } else if !request {
            if m.destination_host.is_none() {
                m.destination_host = fields.origin_host.clone();
            }
            if m.destination_realm.is_none() {
                m.destination_realm = fields.origin_realm.clone();
            }
        }
        if let Some(e) = &tree.error {
            open.anomalies.push(format!("malformed AVPs in frame {}: {e}", ctx.frame));
        }
        if request {
            if !retransmission {
                open.model.transactions.push(DiameterTransaction {
                    command: short.clone(),
                    command_code: h.command_code,
                    hop_by_hop: h.hop_by_hop,
                    end_to_end: h.end_to_end,
                    request_frame: Some(ctx.frame),
                    request_ts: Some(ctx.ts),
                    answer_frame: None,
                    response_time_ms: None,
                    result_code: None,
                    experimental_result_code: None,
                    result: None,
                });
                open.outstanding += 1;
                new_pending = Some(Pending {
                    seq: 0,
                    requester: ctx.src,
                    responder: ctx.dst,
                    context: ctx.context,
                    cc_request_type: fields.cc_request_type,
                    accounting_record_type: fields.accounting_record_type,
                    owner: Owner::Session { session: sid, tx: open.model.transactions.len() - 1 },
                });
            }
        } else {
            let tx = match answered.map(|p| p.owner) {
                Some(Owner::Session { tx, .. }) if tx < open.model.transactions.len() => {
                    open.outstanding = open.outstanding.saturating_sub(1);
                    tx
                }
                _ => {
                    open.anomalies
                        .push(format!("answer {short} in frame {} without its request in the capture", ctx.frame));
                    open.model.transactions.push(DiameterTransaction {
                        command: short.clone(),
                        command_code: h.command_code,
                        hop_by_hop: h.hop_by_hop,
                        end_to_end: h.end_to_end,
                        request_frame: None,
                        request_ts: None,
                        answer_frame: None,
                        response_time_ms: None,
                        result_code: None,
                        experimental_result_code: None,
                        result: None,
                    });
                    open.model.transactions.len() - 1
                }
            };
            let t = &mut open.model.transactions[tx];
            t.answer_frame = Some(ctx.frame);
            t.response_time_ms = t.request_ts.map(|r| ctx.ts.millis_since(r));
            t.result_code = fields.result_code;
            t.experimental_result_code = fields.experimental_result_code;
            t.result = result_name;
            if let Some(code) = fields.result_code.or(fields.experimental_result_code) {
                if !matches!(ResultClass::of(code), ResultClass::Success | ResultClass::Informational) {
                    open.anomalies.push(format!("error result: {summary} in frame {}", ctx.frame));
                }
            }
            let terminating = matches!(h.command_code, CMD_SESSION_TERMINATION | CMD_ABORT_SESSION)
                || (h.command_code == CMD_CREDIT_CONTROL && matches!(fields.cc_request_type, Some(3 | 4)))
                // Accounting: a STOP_RECORD or an EVENT_RECORD ends it.
                || (h.command_code == CMD_ACCOUNTING && matches!(fields.accounting_record_type, Some(1 | 4)));
            open.ended |= terminating;
        }
        open.messages.push(Message {
            ts: ctx.ts,
            frame: ctx.frame,
            src: ctx.src,
            dst: ctx.dst,
            transport: ctx.transport,
            method: None,
            status: None,
            reason: None,
            cseq: String::new(),
            summary,
            retransmission,
            protocol: Protocol::Diameter,
            diameter: Some(Box::new(model_msg)),
            gtp: None,
            vias: 0,
            capture_agent: None,
        });
        if let Some(p) = new_pending {
            self.remember(ids, p);
        }
        Handled::Counted(AppProtocol::Diameter)
    }

    /// A session is over when it ended (termination answered, or every request answered
    /// for a stateless application) and has been quiet for the linger time, or when it has
    /// been quiet for the idle time.
    fn over(&self, now: Timestamp, services: &Services) -> Vec<u64> {
        let lifetimes = services.lifetimes;
        by_first_frame(
            self.sessions
                .iter()
                .filter(|(_, s)| {
                    let quiet = now.nanos_since(s.last);
                    let finished = s.outstanding == 0 && (s.ended || s.stateless);
                    (finished && quiet > lifetimes.linger) || quiet > lifetimes.idle
                })
                .map(|(id, s)| (s.first_frame, *id)),
        )
    }

    fn open(&self, _services: &Services) -> Vec<u64> {
        by_first_frame(self.sessions.iter().map(|(id, s)| (s.first_frame, *id)))
    }

    fn close(&mut self, id: u64, _services: &mut Services) -> Option<Session> {
        let mut open = self.sessions.remove(&id)?;
        if self.by_session_id.get(&open.model.session_id) == Some(&id) {
            self.by_session_id.remove(&open.model.session_id);
        }
        // Its requests still waiting stay unanswered.
        for key in std::mem::take(&mut open.waiting) {
            while self
                .take_pending(key, |p, _| matches!(p.owner, Owner::Session { session, .. } if session == id))
                .is_some()
            {}
        }
        let mut problems = Vec::new();
        let mut unanswered = 0;
        for t in &open.model.transactions {
            if let (Some(frame), None) = (t.request_frame, t.answer_frame) {
                unanswered += 1;
                open.anomalies.push(format!("unanswered_request: {} in frame {frame} got no answer", t.command));
            }
        }
        if unanswered > 0 {
            problems.push(Problem::UnansweredRequest);
        }
        let results: Vec<u32> =
            open.model.transactions.iter().filter_map(|t| t.result_code.or(t.experimental_result_code)).collect();
        let failed =
            results.iter().any(|&c| !matches!(ResultClass::of(c), ResultClass::Success | ResultClass::Informational));
        let any_request = open.model.transactions.iter().any(|t| t.request_frame.is_some());
        let state = if failed {
            CallState::Rejected
        } else if !any_request {
            CallState::Unknown
        } else if unanswered > 0 {
            CallState::CallSetup
        } else if open.ended || open.stateless {
            CallState::Completed
        } else {
            CallState::InCall
        };
        let model = open.model;
        let id = session_id(SessionKind::Diameter.as_str(), model.session_id.as_bytes(), open.first_frame);
        Some(Session {
            from: model.origin_host.clone().unwrap_or_default(),
            to: model.destination_host.clone().or_else(|| model.destination_realm.clone()).unwrap_or_default(),
            state,
            start: open.start,
            end: open.last,
            participants: open.participants,
            messages: open.messages,
            anomalies: open.anomalies,
            tunnel: open.tunnel,
            subscriber_keys: open.keys,
            problems,
            diameter: Some(Box::new(model)),
            ..Session::empty(id, SessionKind::Diameter)
        })
    }
}

/// The command flags as `RPET` letters, `-` for a clear flag.
fn flags_text(flags: u8) -> String {
    [
        (diameter::FLAG_REQUEST, 'R'),
        (diameter::FLAG_PROXIABLE, 'P'),
        (diameter::FLAG_ERROR, 'E'),
        (diameter::FLAG_RETRANSMIT, 'T'),
    ]
    .iter()
    .map(|&(bit, c)| if flags & bit != 0 { c } else { '-' })
    .collect()
}

fn text(node: &AvpNode<'_>) -> Option<String> {
    node.avp.as_str().map(str::to_string)
}

/// The top-level fields the handler uses.
fn read_fields(avps: &[AvpNode<'_>]) -> Fields {
    let mut f = Fields::default();
    for n in avps {
        let a = &n.avp;
        match (a.code, a.vendor_id) {
            (263, None) if f.session_id.is_none() => f.session_id = text(n),
            (268, None) => f.result_code = a.as_u32(),
            (297, None) => {
                f.experimental_result_code = n
                    .children
                    .iter()
                    .find(|c| c.avp.code == 298 && c.avp.vendor_id.is_none())
                    .and_then(|c| c.avp.as_u32());
            }
            (416, None) => f.cc_request_type = a.as_u32(),
            (480, None) => f.accounting_record_type = a.as_u32(),
            (264, None) => f.origin_host = text(n),
            (296, None) => f.origin_realm = text(n),
            (293, None) => f.destination_host = text(n),
            (283, None) => f.destination_realm = text(n),
            (277, None) => f.stateless = a.as_u32() == Some(1),
            _ => {}
        }
    }
    f
}

fn digits(s: &str, len: std::ops::RangeInclusive<usize>) -> Option<String> {
    (len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.to_string())
}

/// TBCD digits (3GPP TS 29.002: two per byte, low nibble first, 0xF filler).
fn tbcd(data: &[u8]) -> String {
    let mut out = String::new();
    for &b in data {
        for nibble in [b & 0x0f, b >> 4] {
            if nibble < 10 {
                out.push(char::from(b'0' + nibble));
            }
        }
    }
    out
}

fn push_key(keys: &mut Vec<SubscriberKey>, kind: SubscriberKeyKind, value: Option<String>) {
    if let Some(value) = value {
        let key = SubscriberKey { kind, value };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
}

/// The subscriber identities in a message's AVPs, at any depth.
fn subscriber_keys(avps: &[AvpNode<'_>], app: u32, keys: &mut Vec<SubscriberKey>) {
    use SubscriberKeyKind as K;
    for n in avps {
        let a = &n.avp;
        match (a.code, a.vendor_id) {
            // The IMSI, sometimes written as an NAI (`IMSI@realm`).
            (1, None) if matches!(app, APP_S6A | APP_S13) => {
                let local = a.as_str().map(|s| s.split_once('@').map_or(s, |(user, _)| user));
                push_key(keys, K::Imsi, local.and_then(|s| digits(s, 5..=15)))
            }
            (1, None) if app == APP_CX => push_key(keys, K::Impi, text(n).filter(|s| !s.is_empty())),
            (443, None) => {
                let kind = n
                    .children
                    .iter()
                    .find(|c| c.avp.code == 450 && c.avp.vendor_id.is_none())
                    .and_then(|c| c.avp.as_u32());
                let data = n
                    .children
                    .iter()
                    .find(|c| c.avp.code == 444 && c.avp.vendor_id.is_none())
                    .and_then(|c| c.avp.as_str());
                if let (Some(kind), Some(data)) = (kind, data) {
                    match kind {
                        0 => push_key(keys, K::Msisdn, digits(data.trim_start_matches('+'), 1..=15)),
                        1 => push_key(keys, K::Imsi, digits(data, 5..=15)),
                        2 => push_key(keys, K::Impu, Some(data.to_string()).filter(|s| !s.is_empty())),
                        _ => {}
                    }
                }
            }
            (8, None) => {
                if let Ok(b) = <[u8; 4]>::try_from(a.data) {
                    push_key(keys, K::UeAddress, Some(IpAddr::from(Ipv4Addr::from(b)).to_string()));
                }
            }
            (97, None) => {
                // Reserved byte, prefix length in bits, then the prefix's bytes.
                if let [_, bits, prefix @ ..] = a.data {
                    if *bits <= 128 && prefix.len() <= 16 && prefix.len() * 8 >= usize::from(*bits) {
                        let mut addr = [0u8; 16];
                        addr[..prefix.len()].copy_from_slice(prefix);
                        push_key(keys, K::UeAddress, Some(IpAddr::from(Ipv6Addr::from(addr)).to_string()));
                    }
                }
            }
            (505 | 841, Some(VENDOR_3GPP)) => {
                push_key(keys, K::Icid, Some(String::from_utf8_lossy(a.data).into_owned()).filter(|s| !s.is_empty()))
            }
            (601, Some(VENDOR_3GPP)) => push_key(keys, K::Impu, text(n).filter(|s| !s.is_empty())),
            (701, Some(VENDOR_3GPP)) => push_key(keys, K::Msisdn, Some(tbcd(a.data)).filter(|s| !s.is_empty())),
            (1, Some(VENDOR_3GPP)) => push_key(keys, K::Imsi, a.as_str().and_then(|s| digits(s, 5..=15))),
            (1402, Some(VENDOR_3GPP)) => push_key(keys, K::Imei, a.as_str().and_then(|s| digits(s, 14..=16))),
            _ => {}
        }
        if !n.children.is_empty() && a.code != 443 {
            subscriber_keys(&n.children, app, keys);
        }
    }
}

/// The Gx PCC rules installed or removed in a message.
fn charging_rules(avps: &[AvpNode<'_>], frame: u64, out: &mut Vec<ChargingRule>) {
    fn names_and_qci(nodes: &[AvpNode<'_>], names: &mut Vec<String>, qci: &mut Option<u32>) {
        for n in nodes {
            match (n.avp.code, n.avp.vendor_id) {
                (1004 | 1005, Some(VENDOR_3GPP)) => {
                    let name = String::from_utf8_lossy(n.avp.data).into_owned();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                (1028, Some(VENDOR_3GPP)) if qci.is_none() => *qci = n.avp.as_u32(),
                _ => names_and_qci(&n.children, names, qci),
            }
        }
    }
    for n in avps {
        let action = match (n.avp.code, n.avp.vendor_id) {
            (1001, Some(VENDOR_3GPP)) => "install",
            (1002, Some(VENDOR_3GPP)) => "remove",
            _ => continue,
        };
        let (mut names, mut qci) = (Vec::new(), None);
        names_and_qci(&n.children, &mut names, &mut qci);
        out.push(ChargingRule { frame, action: action.to_string(), names, qci });
    }
}

fn hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().min(MAX_HEX_BYTES) * 2 + 16);
    for b in data.iter().take(MAX_HEX_BYTES) {
        let _ = write!(s, "{b:02x}");
    }
    if data.len() > MAX_HEX_BYTES {
        let _ = write!(s, "... ({} bytes)", data.len());
    }
    s
}

fn printable(data: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(data).ok()?;
    (!s.is_empty() && s.chars().all(|c| !c.is_control())).then_some(s)
}

/// An AVP of the tree in its output form: its value as text by its dictionary type, or hex.
fn to_model(node: &AvpNode<'_>, dict: &Dictionary) -> DiameterAvp {
    let a = &node.avp;
    let def = dict.avp(a.code, a.vendor_id);
    let (value, hex_data) = match def.map(|d| d.avp_type) {
        None => (None, Some(hex(a.data))),
        Some(AvpType::Grouped) => (None, None),
        Some(t) => match render(t, a.code, a.vendor_id, a.data) {
            Some(v) => {
                let named = def.and_then(|d| v.parse::<i64>().ok().and_then(|n| d.value_name(n)));
                (Some(named.map_or(v.clone(), |name| format!("{name} ({v})"))), None)
            }
            None => (printable(a.data).map(str::to_string), Some(hex(a.data))),
        },
    };
    DiameterAvp {
        code: a.code,
        vendor: a.vendor_id,
        name: def.map(|d| d.name.clone()),
        value,
        hex: hex_data,
        avps: node.children.iter().map(|c| to_model(c, dict)).collect(),
    }
}

/// The value of data of type `t` as text; `None` when the type shows as hex (octets) or
/// the data does not fit the type.
fn render(t: AvpType, code: u32, vendor: Option<u32>, data: &[u8]) -> Option<String> {
    let be4 = |d: &[u8]| <[u8; 4]>::try_from(d).ok();
    let be8 = |d: &[u8]| <[u8; 8]>::try_from(d).ok();
    match t {
        AvpType::Unsigned32 => be4(data).map(|b| u32::from_be_bytes(b).to_string()),
        AvpType::Integer32 => be4(data).map(|b| i32::from_be_bytes(b).to_string()),
        // Enumerated is an Integer32 on the wire, but its values are named as written in
        // the specifications, where some are 2^32 - 1 (Media-Type OTHER).
        AvpType::Enumerated => be4(data).map(|b| u32::from_be_bytes(b).to_string()),
        AvpType::Unsigned64 => be8(data).map(|b| u64::from_be_bytes(b).to_string()),
        AvpType::Integer64 => be8(data).map(|b| i64::from_be_bytes(b).to_string()),
        AvpType::Float32 => be4(data).map(|b| f32::from_be_bytes(b).to_string()),
        AvpType::Float64 => be8(data).map(|b| f64::from_be_bytes(b).to_string()),
        AvpType::Time => be4(data).map(|b| {
            // Seconds since 1900 (NTP's epoch); the Unix epoch is 2208988800 s later.
            let unix = i64::from(u32::from_be_bytes(b)) - 2_208_988_800;
            format!("{unix} (unix time)")
        }),
        AvpType::Address => match data {
            [0, 1, a @ ..] => <[u8; 4]>::try_from(a).ok().map(|b| Ipv4Addr::from(b).to_string()),
            [0, 2, a @ ..] => <[u8; 16]>::try_from(a).ok().map(|b| Ipv6Addr::from(b).to_string()),
            _ => None,
        },
        t if t.is_text() => std::str::from_utf8(data).ok().map(str::to_string),
        // Framed-IP-Address is an OctetString holding an IPv4 address.
        AvpType::OctetString if code == 8 && vendor.is_none() => be4(data).map(|b| Ipv4Addr::from(b).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
