//! The GTP handler: GTPv2-C PDN connections and GTPv1-C PDP contexts followed by TEID and sequence number, requests paired with responses, bearers with their tunnels and QoS, and the user plane counted per bearer by TEID.
//!
//! A session is opened by a Create Session Request (GTPv2) or a Create PDP Context Request
//! sent to TEID 0 (GTPv1), or by any other message whose TEID no open session announced
//! (a capture starting mid-session). Each side announces its control-plane endpoint
//! (an F-TEID, a TEID Control Plane IE): a later message sent to that address and TEID
//! belongs to the session. A response is paired with its request by the version, the
//! requester's address and port, the responder's address and the sequence number, as
//! TS 29.274 §7.6 and TS 29.060 §7.6 pair them.
//!
//! Bearers are EPS bearers by EBI (GTPv2) or PDP contexts by NSAPI (GTPv1), with the
//! user-plane endpoints of their bearer contexts. A Create Bearer Request names its bearers
//! with EBI 0: the Create Bearer Response gives them their EBIs, bearer context by bearer
//! context, in order. The endpoints are also registered in the user-plane table: a
//! G-PDU the front stage decapsulated ([`GtpHandler::on_user_packet`]) costs one hash lookup
//! on its outer destination and TEID, and is counted in place, uplink or downlink by the
//! endpoint that receives it (the interface type when the F-TEID has one, else the side
//! that announced it: the endpoints of the side that created the session receive the
//! downlink).
//!
//! Echo, Version Not Supported, and on the user plane Error Indication and End Marker are
//! path management: counted in a `path` session per pair of nodes and version, not one
//! session per message. A session is over after its Delete Session Response (or the Delete
//! PDP Context Response deleting its last context), or a rejected creation, and the
//! linger time; or after the idle time without control or user traffic.

use crate::ctx::PacketCtx;
use crate::handler::{by_first_frame, Handled, Handler, Services};
use crate::ids::session_id;
use callflow_classify::AppProtocol;
use callflow_decode::gtp::names::{self, Role};
use callflow_decode::gtp::{self, v1, v2, Digits};
use callflow_decode::packet::Tunnel;
use callflow_decode::{DecodeError, Timestamp};
use callflow_model::{
    CallState, GtpBearer, GtpDirection, GtpIe, GtpMessage, GtpPathCounters, GtpScope, GtpSession, GtpTeid,
    GtpTransaction, Message, Protocol, Session, SessionKind, SubscriberKey, SubscriberKeyKind,
};
use std::collections::HashMap;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// Most messages kept per session (the transactions and counters go on).
const MAX_MESSAGES: usize = 10_000;
/// Most bearers per session (15 EBIs; GTPv1 NSAPIs 5-15).
const MAX_BEARERS: usize = 16;
/// Most IEs kept in one message's tree.
const MAX_IES: usize = 256;
/// Most tunnel endpoints (and subscriber keys) kept per session or bearer: a node announces
/// a handful; a capture announcing more is hostile or broken, and the rest are not followed.
const MAX_TEIDS: usize = 64;

/// A session's number in the handler.
pub(crate) type GtpKey = u64;

/// A pending request: version, the responder's address, the requester's address and port,
/// the sequence number.
type PendingKey = (u8, IpAddr, SocketAddr, u32);

/// A user-plane endpoint's entry: whose it is, and its counters, kept here so that a G-PDU
/// costs one lookup.
#[derive(Clone, Copy, Debug)]
struct UserEndpoint {
    session: GtpKey,
    bearer: usize,
    direction: GtpDirection,
    packets: u64,
    bytes: u64,
    last: Timestamp,
}

/// One open session.
#[derive(Debug)]
struct State {
    first_frame: u64,
    start: Timestamp,
    last_activity: Timestamp,
    messages: Vec<Message>,
    participants: Vec<SocketAddr>,
    gtp: GtpSession,
    state: CallState,
    ended: bool,
    /// The side that sent the creating request (the MME, SGW or SGSN: the UE's side).
    initiator: Option<IpAddr>,
    keys: Vec<SubscriberKey>,
    anomalies: Vec<String>,
    control_keys: Vec<(u8, IpAddr, u32)>,
    user_keys: Vec<(IpAddr, u32)>,
    pending: Vec<PendingKey>,
    path_key: Option<(u8, IpAddr, IpAddr)>,
    /// The bearers each pending Create Bearer Request proposed, by transaction index.
    proposed: Vec<(usize, Vec<usize>)>,
    /// The NSAPIs and teardown flag of pending Delete PDP Context Requests, by transaction.
    deleting: Vec<(usize, Option<u8>, bool)>,
}

/// The GTP-C sessions, their endpoints and pending requests.
#[derive(Debug, Default)]
pub(crate) struct GtpHandler {
    sessions: HashMap<GtpKey, State>,
    next: GtpKey,
    control: HashMap<(u8, IpAddr, u32), GtpKey>,
    user: foldhash::HashMap<(IpAddr, u32), UserEndpoint>,
    pending: HashMap<PendingKey, (GtpKey, usize)>,
    paths: HashMap<(u8, IpAddr, IpAddr), GtpKey>,
}

/// What one message said, gathered from its IEs.
#[derive(Debug, Default)]
struct Facts {
    imsi: Option<Digits>,
    msisdn: Option<Digits>,
    mei: Option<Digits>,
    apn: Option<String>,
    ue: Vec<IpAddr>,
    rat: Option<u8>,
    location: Option<String>,
    ambr: Option<(u32, u32)>,
    cause: Option<(u8, bool)>,
    /// Control-plane endpoints: TEID, addresses, interface type.
    control: Vec<(u32, Vec<IpAddr>, Option<u8>)>,
    bearers: Vec<BearerFacts>,
    /// GTPv2 EBI IEs at the top level: (instance, ebi).
    ebis: Vec<(u8, u8)>,
    /// GTPv1: NSAPI, teardown.
    nsapi: Option<u8>,
    teardown: bool,
    /// GTPv1 GSN addresses in order (signalling, then user traffic).
    gsn: Vec<IpAddr>,
    error: Option<DecodeError>,
}

#[derive(Debug, Default)]
struct BearerFacts {
    ebi: Option<u8>,
    nsapi: Option<u8>,
    qos: Option<v2::BearerQos>,
    qos_v1: Option<v1::QosProfile>,
    /// User-plane endpoints: TEID, addresses, interface type.
    teids: Vec<(u32, Vec<IpAddr>, Option<u8>)>,
    cause: Option<(u8, bool)>,
}

fn teid_key(teid: u32) -> SubscriberKey {
    SubscriberKey { kind: SubscriberKeyKind::Teid, value: format!("0x{teid:08x}") }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn push_key(keys: &mut Vec<SubscriberKey>, key: SubscriberKey) {
    if keys.len() < MAX_TEIDS && !keys.contains(&key) {
        keys.push(key);
    }
}

fn fteid_addrs(f: &v2::Fteid) -> Vec<IpAddr> {
    f.ipv4.map(IpAddr::V4).into_iter().chain(f.ipv6.map(IpAddr::V6)).collect()
}

/// The direction of user traffic an F-TEID's endpoint receives, by its interface type.
fn interface_direction(t: u8) -> Option<GtpDirection> {
    match t {
        0 | 2 | 4 | 15 | 19 => Some(GtpDirection::Downlink),
        1 | 3 | 5 | 16 | 20 => Some(GtpDirection::Uplink),
        _ => None,
    }
}

/// The GTPv2 IEs of a message (or grouped IE) as a tree, and what the analysis reads from
/// them into `facts`. `bearer` is the bearer context being read, if inside one.
fn read_v2(
    ies: v2::V2Ies<'_>,
    facts: &mut Facts,
    mut bearer: Option<&mut BearerFacts>,
    out: &mut Vec<GtpIe>,
    budget: &mut usize,
) {
    for ie in ies {
        let ie = match ie {
            Ok(ie) => ie,
            Err(e) => {
                facts.error.get_or_insert(e);
                return;
            }
        };
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let mut node = GtpIe {
            ie_type: ie.ie_type,
            name: names::v2_ie(ie.ie_type).to_string(),
            instance: Some(ie.instance),
            value: None,
            raw: None,
            children: Vec::new(),
        };
        let value: Result<Option<String>, DecodeError> = (|| {
            use v2::ie::*;
            Ok(match ie.ie_type {
                IMSI | MSISDN | MEI => {
                    let d = Digits::tbcd(ie.value, ie.offset)?;
                    if ie.depth == 0 {
                        match ie.ie_type {
                            IMSI => facts.imsi = Some(d),
                            MSISDN => facts.msisdn = Some(d),
                            _ => facts.mei = Some(d),
                        }
                    }
                    Some(d.to_string())
                }
                APN => {
                    let apn = gtp::Apn::parse(ie.value, ie.offset)?.to_string();
                    facts.apn = Some(apn.clone());
                    Some(apn)
                }
                CAUSE => {
                    let c = v2::Cause::parse(ie.value, ie.offset)?;
                    let v = (c.value, c.accepted());
                    match bearer.as_deref_mut() {
                        Some(b) => b.cause = Some(v),
                        None if ie.depth == 0 => facts.cause = Some(v),
                        None => {}
                    }
                    Some(format!("{} ({})", names::v2_cause(c.value), c.value))
                }
                RECOVERY => Some(ie.value.first().copied().unwrap_or(0).to_string()),
                EBI => {
                    let ebi = v2::ebi(ie.value, ie.offset)?;
                    match bearer.as_deref_mut() {
                        Some(b) => b.ebi = Some(ebi),
                        None if ie.depth == 0 => facts.ebis.push((ie.instance, ebi)),
                        None => {}
                    }
                    Some(ebi.to_string())
                }
                AMBR => {
                    let a = v2::Ambr::parse(ie.value, ie.offset)?;
                    facts.ambr = Some((a.uplink, a.downlink));
                    Some(format!("UL {} kbps, DL {} kbps", a.uplink, a.downlink))
                }
                PAA => {
                    let paa = v2::Paa::parse(ie.value, ie.offset)?;
                    let (v4, v6) = match paa {
                        v2::Paa::Ipv4(a) => (Some(a), None),
                        v2::Paa::Ipv6(_, a) => (None, Some(a)),
                        v2::Paa::Ipv4v6(a, _, b) => (Some(a), Some(b)),
                        v2::Paa::Other(_) => (None, None),
                    };
                    // An address of all zeros asks for a dynamic one: it is no UE address yet.
                    let addrs: Vec<IpAddr> = v4
                        .map(IpAddr::V4)
                        .into_iter()
                        .chain(v6.map(IpAddr::V6))
                        .filter(|a| !a.is_unspecified())
                        .collect();
                    let text = addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
                    facts.ue.extend(addrs);
                    Some(text)
                }
                BEARER_QOS => {
                    let q = v2::BearerQos::parse(ie.value, ie.offset)?;
                    if let Some(b) = bearer.as_deref_mut() {
                        b.qos = Some(q);
                    }
                    Some(format!(
                        "QCI {}, ARP {}, MBR {}/{} kbps, GBR {}/{} kbps",
                        q.qci, q.priority_level, q.mbr_uplink, q.mbr_downlink, q.gbr_uplink, q.gbr_downlink
                    ))
                }
                RAT_TYPE => {
                    let r = ie.value.first().copied().unwrap_or(0);
                    facts.rat = Some(r);
                    Some(names::rat_type(r).to_string())
                }
                ULI => {
                    let uli = v2::Uli::parse(ie.value, ie.offset)?;
                    let mut s = String::new();
                    if let Some((p, tac)) = uli.tai {
                        let _ = write!(s, "TAI {p}/0x{tac:04x}");
                    }
                    if let Some((p, eci)) = uli.ecgi {
                        let _ = write!(s, "{}ECGI {p}/0x{eci:07x}", if s.is_empty() { "" } else { " " });
                    }
                    if let (Some((p, lac)), true) = (uli.lai, s.is_empty()) {
                        let _ = write!(s, "LAI {p}/0x{lac:04x}");
                    }
                    facts.location = Some(s.clone());
                    Some(s)
                }
                FTEID => {
                    let f = v2::Fteid::parse(ie.value, ie.offset)?;
                    let addrs = fteid_addrs(&f);
                    let text = format!(
                        "{} TEID 0x{:08x} {}",
                        names::interface_type(f.interface_type),
                        f.teid,
                        addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ")
                    );
                    match bearer.as_deref_mut() {
                        Some(b) => b.teids.push((f.teid, addrs, Some(f.interface_type))),
                        None if ie.depth == 0 => facts.control.push((f.teid, addrs, Some(f.interface_type))),
                        None => {}
                    }
                    Some(text.trim_end().to_string())
                }
                BEARER_CONTEXT => {
                    let group = ie.group()?;
                    if ie.depth == 0 {
                        let mut b = BearerFacts::default();
                        read_v2(group, facts, Some(&mut b), &mut node.children, budget);
                        facts.bearers.push(b);
                    } else {
                        read_v2(group, facts, None, &mut node.children, budget);
                    }
                    None
                }
                _ if ie.is_grouped() => {
                    read_v2(ie.group()?, facts, None, &mut node.children, budget);
                    None
                }
                _ => None,
            })
        })();
        match value {
            Ok(Some(v)) => node.value = Some(v),
            Ok(None) if ie.is_grouped() => {}
            Ok(None) => node.raw = Some(hex(ie.value)),
            Err(e) => {
                node.raw = Some(hex(ie.value));
                facts.error.get_or_insert(e);
            }
        }
        out.push(node);
    }
}

/// The GTPv1 IEs of a message as a list, and what the analysis reads from them.
fn read_v1(ies: v1::V1Ies<'_>, facts: &mut Facts, out: &mut Vec<GtpIe>) {
    let mut data_teids: Vec<u32> = Vec::new();
    let mut qos = None;
    for ie in ies.take(MAX_IES) {
        let ie = match ie {
            Ok(ie) => ie,
            Err(e) => {
                facts.error.get_or_insert(e);
                break;
            }
        };
        let value: Result<Option<String>, DecodeError> = (|| {
            use v1::ie::*;
            Ok(match ie.ie_type {
                IMSI | IMEI => {
                    let d = Digits::tbcd(ie.value, ie.offset)?;
                    if ie.ie_type == IMSI {
                        facts.imsi = Some(d);
                    } else {
                        facts.mei = Some(d);
                    }
                    Some(d.to_string())
                }
                MSISDN => {
                    let d = v1::msisdn(ie.value, ie.offset)?;
                    facts.msisdn = Some(d);
                    Some(d.to_string())
                }
                CAUSE => {
                    let c = ie.value[0];
                    facts.cause = Some((c, names::v1_cause_accepted(c)));
                    Some(format!("{} ({c})", names::v1_cause(c)))
                }
                RECOVERY => Some(ie.value[0].to_string()),
                TEID_DATA_I => {
                    let t = u32::from_be_bytes([ie.value[0], ie.value[1], ie.value[2], ie.value[3]]);
                    data_teids.push(t);
                    Some(format!("0x{t:08x}"))
                }
                TEID_CONTROL => {
                    let t = u32::from_be_bytes([ie.value[0], ie.value[1], ie.value[2], ie.value[3]]);
                    facts.control.push((t, Vec::new(), None));
                    Some(format!("0x{t:08x}"))
                }
                TEARDOWN => {
                    facts.teardown = ie.value[0] & 1 != 0;
                    Some(facts.teardown.to_string())
                }
                NSAPI => {
                    let n = ie.value[0] & 0x0f;
                    facts.nsapi.get_or_insert(n);
                    Some(n.to_string())
                }
                END_USER_ADDRESS => {
                    let eua = v1::EndUserAddress::parse(ie.value, ie.offset)?;
                    let addrs: Vec<IpAddr> =
                        eua.ipv4.map(IpAddr::V4).into_iter().chain(eua.ipv6.map(IpAddr::V6)).collect();
                    let text = addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
                    facts.ue.extend(addrs);
                    Some(text)
                }
                APN => {
                    let apn = gtp::Apn::parse(ie.value, ie.offset)?.to_string();
                    facts.apn = Some(apn.clone());
                    Some(apn)
                }
                GSN_ADDRESS => {
                    let a = gtp::ip_address(ie.value, ie.offset)?;
                    facts.gsn.push(a);
                    Some(a.to_string())
                }
                QOS_PROFILE => {
                    let q = v1::QosProfile::parse(ie.value, ie.offset)?;
                    qos = Some(q);
                    Some(format!(
                        "ARP {}, traffic class {}, MBR {}/{} kbps",
                        q.arp,
                        q.traffic_class.map_or("-".into(), |t| t.to_string()),
                        q.mbr_uplink.unwrap_or(0),
                        q.mbr_downlink.unwrap_or(0)
                    ))
                }
                RAT_TYPE => {
                    let r = ie.value.first().copied().unwrap_or(0);
                    facts.rat = Some(r);
                    Some(names::rat_type(r).to_string())
                }
                ULI => {
                    let u = v1::V1Uli::parse(ie.value, ie.offset)?;
                    let kind = ["CGI", "SAI", "RAI"].get(usize::from(u.location_type)).unwrap_or(&"location");
                    let s = format!("{kind} {}/0x{:04x}/0x{:04x}", u.plmn, u.lac, u.code);
                    facts.location = Some(s.clone());
                    Some(s)
                }
                _ => None,
            })
        })();
        let mut node = GtpIe {
            ie_type: ie.ie_type,
            name: names::v1_ie(ie.ie_type).to_string(),
            instance: None,
            value: None,
            raw: None,
            children: Vec::new(),
        };
        match value {
            Ok(Some(v)) => node.value = Some(v),
            Ok(None) => node.raw = Some(hex(ie.value)),
            Err(e) => {
                node.raw = Some(hex(ie.value));
                facts.error.get_or_insert(e);
            }
        }
        out.push(node);
    }
    // The user-traffic GSN address is the second one (the first is for signalling).
    let user_addr: Vec<IpAddr> = facts.gsn.get(1).or(facts.gsn.first()).copied().into_iter().collect();
    if let Some((_, addrs, _)) = facts.control.first_mut() {
        addrs.extend(facts.gsn.first().copied());
    }
    if !data_teids.is_empty() || qos.is_some() || facts.nsapi.is_some() {
        facts.bearers.push(BearerFacts {
            nsapi: facts.nsapi,
            qos_v1: qos,
            teids: data_teids.into_iter().map(|t| (t, user_addr.clone(), None)).collect(),
            ..BearerFacts::default()
        });
    }
}

/// One decoded message, ready to be filed.
struct Decoded {
    version: u8,
    message_type: u8,
    teid: Option<u32>,
    sequence: Option<u32>,
    piggybacked: bool,
    facts: Facts,
    ies: Vec<GtpIe>,
}

impl GtpHandler {
    /// A G-PDU the front stage decapsulated: counted against the bearer whose endpoint
    /// (outer destination and TEID) it was sent to. One hash lookup; nothing when no
    /// session announced the endpoint.
    #[inline]
    pub fn on_user_packet(&mut self, tunnel: &Tunnel, ts: Timestamp) {
        if self.user.is_empty() {
            return;
        }
        let Some(teid) = tunnel.key else { return };
        if let Some(e) = self.user.get_mut(&(tunnel.dst, teid)) {
            e.packets += 1;
            e.bytes += u64::from(tunnel.inner_len);
            e.last = ts;
        }
    }

    fn new_session(&mut self, ctx: &PacketCtx<'_>, version: u8, scope: GtpScope) -> GtpKey {
        self.next += 1;
        let key = self.next;
        let state = State {
            first_frame: ctx.frame,
            start: ctx.ts,
            last_activity: ctx.ts,
            messages: Vec::new(),
            participants: Vec::new(),
            gtp: GtpSession { version, scope: Some(scope), ..GtpSession::default() },
            state: CallState::Unknown,
            ended: false,
            initiator: None,
            keys: Vec::new(),
            anomalies: Vec::new(),
            control_keys: Vec::new(),
            user_keys: Vec::new(),
            pending: Vec::new(),
            path_key: None,
            proposed: Vec::new(),
            deleting: Vec::new(),
        };
        self.sessions.insert(key, state);
        key
    }

    /// The session a message belongs to, opened if need be, and whether it repeats a
    /// pending request.
    fn session_for(&mut self, ctx: &PacketCtx<'_>, d: &Decoded, role: Role) -> (GtpKey, bool) {
        let v = d.version;
        let path_message = matches!((v, d.message_type), (_, 1..=3) | (1, 26 | 31 | 254));
        if path_message {
            let (a, b) =
                if ctx.src.ip() <= ctx.dst.ip() { (ctx.src.ip(), ctx.dst.ip()) } else { (ctx.dst.ip(), ctx.src.ip()) };
            let pk = (v, a, b);
            if let Some(&s) = self.paths.get(&pk) {
                let retrans = role == Role::Request
                    && self.pending.contains_key(&(v, ctx.dst.ip(), ctx.src, d.sequence.unwrap_or(0)));
                return (s, retrans);
            }
            let s = self.new_session(ctx, v, GtpScope::Path);
            if let Some(state) = self.sessions.get_mut(&s) {
                state.path_key = Some(pk);
                state.gtp.path = Some(GtpPathCounters::default());
            }
            self.paths.insert(pk, s);
            return (s, false);
        }
        let seq = d.sequence.unwrap_or(0);
        if role == Role::Response {
            if let Some(&(s, _)) = self.pending.get(&(v, ctx.src.ip(), ctx.dst, seq)) {
                return (s, false);
            }
        }
        if role == Role::Request {
            if let Some(&(s, _)) = self.pending.get(&(v, ctx.dst.ip(), ctx.src, seq)) {
                return (s, true);
            }
        }
        let creating = match v {
            2 => d.message_type == 32,
            _ => d.message_type == 16 && d.teid == Some(0),
        };
        if !creating {
            if let Some(&s) = d.teid.filter(|t| *t != 0).and_then(|t| self.control.get(&(v, ctx.dst.ip(), t))) {
                return (s, false);
            }
        }
        let scope = if v == 2 { GtpScope::PdnConnection } else { GtpScope::PdpContext };
        let s = self.new_session(ctx, v, scope);
        if let Some(state) = self.sessions.get_mut(&s) {
            if creating {
                state.initiator = Some(ctx.src.ip());
                state.state = CallState::CallSetup;
            }
            // A message to a TEID nobody announced here: the capture began mid-session, and
            // the receiver's endpoint is known from the header.
            if let Some(t) = d.teid.filter(|t| *t != 0) {
                state.control_keys.push((v, ctx.dst.ip(), t));
                self.control.insert((v, ctx.dst.ip(), t), s);
            }
        }
        (s, false)
    }

    fn file(&mut self, ctx: &PacketCtx<'_>, d: Decoded) {
        let (name, role) =
            if d.version == 2 { names::v2_message(d.message_type) } else { names::v1_message(d.message_type) };
        let (key, retransmission) = self.session_for(ctx, &d, role);
        let seq = d.sequence.unwrap_or(0);
        let Self { sessions, control, user, pending, .. } = self;
        let Some(s) = sessions.get_mut(&key) else { return };
        s.last_activity = s.last_activity.max(ctx.ts);
        for a in [ctx.src, ctx.dst] {
            if !s.participants.contains(&a) {
                s.participants.push(a);
            }
        }
        let facts = &d.facts;
        if let Some(e) = &facts.error {
            s.anomalies.push(format!("frame {}: {name}: {e}", ctx.frame));
        }
        // The summary: what a ladder shows.
        let mut details: Vec<String> = Vec::new();
        if role == Role::Request {
            if let Some(apn) = &facts.apn {
                details.push(format!("APN {apn}"));
            }
            // The bearer's own EBI; else the top-level one, which in a Create Bearer Request
            // is the linked (default) bearer's, the new bearer having none yet.
            let own = facts.bearers.iter().find_map(|b| b.ebi.filter(|e| *e != 0));
            match (own, facts.ebis.first()) {
                (Some(ebi), _) if d.version == 2 => details.push(format!("EBI {ebi}")),
                (None, Some((_, ebi))) if d.message_type == 95 => details.push(format!("LBI {ebi}")),
                (None, Some((_, ebi))) => details.push(format!("EBI {ebi}")),
                _ => {}
            }
            if let Some(n) = facts.bearers.iter().find_map(|b| b.nsapi).filter(|_| d.version == 1) {
                details.push(format!("NSAPI {n}"));
            }
            if matches!(d.message_type, 95 | 97) && d.version == 2 {
                if let Some(q) = facts.bearers.iter().find_map(|b| b.qos) {
                    details.push(format!("QCI {}", q.qci));
                }
            }
        }
        let cause_name = |c: u8| if d.version == 2 { names::v2_cause(c) } else { names::v1_cause(c) };
        if let (Some((c, _)), Role::Response) = (facts.cause, role) {
            details.push(cause_name(c).to_string());
        }
        let summary = if details.is_empty() { name.to_string() } else { format!("{name} ({})", details.join(", ")) };
        if s.messages.len() < MAX_MESSAGES {
            s.messages.push(Message {
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
                protocol: Protocol::Gtp,
                diameter: None,
                gtp: Some(Box::new(GtpMessage {
                    version: d.version,
                    message_type: d.message_type,
                    name: name.to_string(),
                    teid: d.teid,
                    sequence: d.sequence,
                    cause: facts.cause.map(|c| c.0),
                    piggybacked: d.piggybacked,
                    ies: d.ies,
                    error: facts.error.as_ref().map(|e| e.to_string()),
                })),
                vias: 0,
                capture_agent: None,
            });
        }
        if let Some(p) = s.gtp.path.as_mut() {
            match (d.message_type, role) {
                (1, _) => p.echo_requests += 1,
                (2, _) => p.echo_responses += 1,
                (26, _) if d.version == 1 => p.error_indications += 1,
                (254, _) if d.version == 1 => p.end_markers += 1,
                _ => p.other += 1,
            }
        }
        // Transactions.
        let mut transaction = None;
        match role {
            Role::Request if retransmission => {
                if let Some(&(_, t)) = pending.get(&(d.version, ctx.dst.ip(), ctx.src, seq)) {
                    if let Some(t) = s.gtp.transactions.get_mut(t) {
                        t.retransmissions += 1;
                    }
                }
                return;
            }
            // Past the bound a session's requests are still shown, no longer paired.
            Role::Request if s.gtp.transactions.len() >= MAX_MESSAGES => {}
            Role::Request => {
                let t = s.gtp.transactions.len();
                s.gtp.transactions.push(GtpTransaction {
                    request: name.to_string(),
                    request_frame: ctx.frame,
                    sequence: seq,
                    response: None,
                    response_frame: None,
                    latency_ms: None,
                    cause: None,
                    cause_name: None,
                    accepted: None,
                    retransmissions: 0,
                });
                let pk = (d.version, ctx.dst.ip(), ctx.src, seq);
                pending.insert(pk, (key, t));
                s.pending.push(pk);
                transaction = Some(t);
            }
            Role::Response => {
                let pk = (d.version, ctx.src.ip(), ctx.dst, seq);
                if let Some((_, t)) = pending.remove(&pk) {
                    s.pending.retain(|k| *k != pk);
                    if let Some(tr) = s.gtp.transactions.get_mut(t) {
                        if tr.response.is_none() {
                            tr.response = Some(name.to_string());
                            tr.response_frame = Some(ctx.frame);
                            let ts = s.messages.iter().find(|m| m.frame == tr.request_frame).map(|m| m.ts);
                            tr.latency_ms = ts.filter(|t| ctx.ts >= *t).map(|t| ctx.ts.millis_since(t));
                            if let Some((c, ok)) = facts.cause {
                                tr.cause = Some(c);
                                tr.cause_name = Some(cause_name(c).to_string());
                                tr.accepted = Some(ok);
                            }
                        }
                    }
                    transaction = Some(t);
                }
            }
            Role::Other => {}
        }
        if s.gtp.path.is_some() {
            // An Error Indication names the endpoint (TEID Data I, GSN Address) whose G-PDU
            // its sender could not deliver: the bearer's session is told.
            if (d.version, d.message_type) == (1, 26) {
                let hit: Vec<(UserEndpoint, u32, IpAddr)> = facts
                    .bearers
                    .iter()
                    .flat_map(|b| &b.teids)
                    .flat_map(|(teid, addrs, _)| addrs.iter().map(move |a| (*a, *teid)))
                    .filter_map(|(a, teid)| Some((*user.get(&(a, teid))?, teid, a)))
                    .collect();
                for (e, teid, a) in hit {
                    if let Some(owner) = sessions.get_mut(&e.session) {
                        if owner.anomalies.len() < MAX_TEIDS {
                            owner.anomalies.push(format!(
                                "frame {}: Error Indication from {}: the G-PDUs to TEID 0x{teid:08x} at {a} were not delivered",
                                ctx.frame,
                                ctx.src.ip()
                            ));
                        }
                    }
                }
            }
            return;
        }
        // The subscriber.
        let g = &mut s.gtp;
        if let Some(i) = facts.imsi {
            g.imsi.get_or_insert_with(|| i.to_string());
            push_key(&mut s.keys, SubscriberKey { kind: SubscriberKeyKind::Imsi, value: i.to_string() });
        }
        if let Some(m) = facts.msisdn {
            g.msisdn.get_or_insert_with(|| m.to_string());
            push_key(&mut s.keys, SubscriberKey { kind: SubscriberKeyKind::Msisdn, value: m.to_string() });
        }
        if let Some(m) = facts.mei {
            g.mei.get_or_insert_with(|| m.to_string());
            push_key(&mut s.keys, SubscriberKey { kind: SubscriberKeyKind::Imei, value: m.to_string() });
        }
        if let Some(apn) = &facts.apn {
            g.apn.get_or_insert_with(|| apn.clone());
        }
        for a in &facts.ue {
            if !g.ue_addresses.contains(a) {
                g.ue_addresses.push(*a);
            }
            push_key(&mut s.keys, SubscriberKey { kind: SubscriberKeyKind::UeAddress, value: a.to_string() });
        }
        if let Some(r) = facts.rat {
            g.rat_type = Some(names::rat_type(r).to_string());
        }
        if let Some(l) = &facts.location {
            g.location = Some(l.clone());
        }
        if let Some(a) = facts.ambr {
            g.apn_ambr_kbps = Some(a);
        }
        // Control-plane endpoints: later messages to them belong here.
        for (teid, addrs, iface) in facts.control.iter().take(MAX_TEIDS.saturating_sub(s.control_keys.len())) {
            let addrs = if addrs.is_empty() { vec![ctx.src.ip()] } else { addrs.clone() };
            for a in &addrs {
                let k = (d.version, *a, *teid);
                if *teid != 0 && control.insert(k, key) != Some(key) {
                    s.control_keys.push(k);
                }
            }
            if g.control_teids.len() < MAX_TEIDS
                && !g.control_teids.iter().any(|t| t.teid == *teid && t.addresses == addrs)
            {
                g.control_teids.push(GtpTeid {
                    teid: *teid,
                    addresses: addrs,
                    interface: iface.map(|i| names::interface_type(i).to_string()),
                    direction: None,
                    frame: ctx.frame,
                });
            }
            push_key(&mut s.keys, teid_key(*teid));
        }
        // Bearers.
        let mut displaced = Vec::new();
        let from_initiator = s.initiator.map_or(role == Role::Request, |i| i == ctx.src.ip());
        let mut proposed = Vec::new();
        let earlier_proposal = match (d.message_type, transaction) {
            (96, Some(t)) if d.version == 2 => {
                s.proposed.iter().position(|(pt, _)| *pt == t).map(|i| s.proposed.remove(i).1)
            }
            _ => None,
        };
        for (i, b) in facts.bearers.iter().enumerate() {
            let index = if let Some(&p) = earlier_proposal.as_ref().and_then(|p| p.get(i)) {
                if let (Some(bearer), Some(ebi)) = (g.bearers.get_mut(p), b.ebi.filter(|e| *e != 0)) {
                    bearer.ebi = Some(ebi);
                }
                Some(p)
            } else {
                let found = g.bearers.iter().position(|x| match (b.ebi, b.nsapi) {
                    (Some(e), _) if e != 0 => x.ebi == Some(e),
                    (_, Some(n)) => x.nsapi == Some(n),
                    _ => false,
                });
                let found = match (found, d.version, b.nsapi) {
                    // A GTPv1 response's TEID Data I has no NSAPI: it answers the request's.
                    (None, 1, None) => transaction
                        .and_then(|t| s.deleting.iter().find(|x| x.0 == t).and_then(|x| x.1))
                        .or_else(|| g.bearers.iter().rposition(|x| x.nsapi.is_some()).and_then(|p| g.bearers[p].nsapi))
                        .and_then(|n| g.bearers.iter().position(|x| x.nsapi == Some(n))),
                    (f, ..) => f,
                };
                match found {
                    Some(p) => Some(p),
                    None if g.bearers.len() < MAX_BEARERS => {
                        g.bearers.push(GtpBearer {
                            ebi: b.ebi.filter(|e| *e != 0),
                            nsapi: b.nsapi,
                            ..GtpBearer::default()
                        });
                        if d.version == 2 && d.message_type == 95 {
                            proposed.push(g.bearers.len() - 1);
                        }
                        Some(g.bearers.len() - 1)
                    }
                    None => None,
                }
            };
            let Some(index) = index else { continue };
            let bearer = &mut g.bearers[index];
            if let Some(q) = b.qos {
                bearer.qci = Some(q.qci);
                bearer.arp = Some(q.priority_level);
                bearer.preemption = Some((q.preemption_capability, q.preemption_vulnerability));
                bearer.mbr_kbps = Some((q.mbr_uplink, q.mbr_downlink));
                bearer.gbr_kbps = Some((q.gbr_uplink, q.gbr_downlink));
            }
            if let Some(q) = b.qos_v1 {
                bearer.arp = Some(q.arp);
                if let (Some(u), Some(dl)) = (q.mbr_uplink, q.mbr_downlink) {
                    bearer.mbr_kbps = Some((u.into(), dl.into()));
                }
                if let (Some(u), Some(dl)) = (q.gbr_uplink, q.gbr_downlink) {
                    bearer.gbr_kbps = Some((u.into(), dl.into()));
                }
            }
            if let Some((c, false)) = b.cause {
                bearer.rejected = Some(cause_name(c).to_string());
            }
            for (teid, addrs, iface) in b.teids.iter().take(MAX_TEIDS.saturating_sub(s.user_keys.len())) {
                let addrs = if addrs.is_empty() { vec![ctx.src.ip()] } else { addrs.clone() };
                let direction = iface.and_then(interface_direction).unwrap_or(if from_initiator {
                    GtpDirection::Downlink
                } else {
                    GtpDirection::Uplink
                });
                for a in &addrs {
                    let endpoint =
                        UserEndpoint { session: key, bearer: index, direction, packets: 0, bytes: 0, last: ctx.ts };
                    match user.get_mut(&(*a, *teid)) {
                        Some(e) if e.session == key => {
                            e.bearer = index;
                            e.direction = direction;
                        }
                        // An endpoint announced again by another session: its packets are
                        // that session's from now on (the first keeps what it counted).
                        _ => {
                            if let Some(old) = user.insert((*a, *teid), endpoint).filter(|o| o.session != key) {
                                displaced.push(old);
                            }
                            s.user_keys.push((*a, *teid));
                        }
                    }
                }
                if bearer.teids.len() < MAX_TEIDS
                    && !bearer.teids.iter().any(|t| t.teid == *teid && t.addresses == addrs)
                {
                    bearer.teids.push(GtpTeid {
                        teid: *teid,
                        addresses: addrs,
                        interface: iface.map(|i| names::interface_type(i).to_string()),
                        direction: Some(direction),
                        frame: ctx.frame,
                    });
                }
                push_key(&mut s.keys, teid_key(*teid));
            }
        }
        if let (false, Some(t)) = (proposed.is_empty(), transaction) {
            s.proposed.push((t, proposed));
        }
        // What the message does to the session.
        let accepted = facts.cause.map(|c| c.1);
        match (d.version, d.message_type) {
            (2, 33) | (1, 17) => match accepted {
                Some(true) => s.state = CallState::InCall,
                Some(false) => {
                    s.state = CallState::Rejected;
                    s.ended = true;
                }
                None => {}
            },
            (2, 99) => {
                // EBI instance 1: the bearers to delete; instance 0 alone: the default
                // bearer, and with it the whole PDN connection.
                let ebis: Vec<u8> = facts.ebis.iter().filter(|e| e.0 == 1).map(|e| e.1).collect();
                for b in &mut g.bearers {
                    if ebis.is_empty() || b.ebi.is_some_and(|e| ebis.contains(&e)) {
                        b.deleted = true;
                    }
                }
            }
            (2, 37) if accepted != Some(false) => {
                g.bearers.iter_mut().for_each(|b| b.deleted = true);
                s.state = CallState::Completed;
                s.ended = true;
            }
            (1, 20) => {
                if let Some(t) = transaction {
                    s.deleting.push((t, facts.nsapi, facts.teardown));
                }
            }
            (1, 21) if accepted != Some(false) => {
                let request =
                    transaction.and_then(|t| s.deleting.iter().position(|x| x.0 == t)).map(|i| s.deleting.remove(i));
                match request {
                    Some((_, Some(n), false)) => {
                        g.bearers.iter_mut().filter(|b| b.nsapi == Some(n)).for_each(|b| b.deleted = true)
                    }
                    _ => g.bearers.iter_mut().for_each(|b| b.deleted = true),
                }
                if g.bearers.iter().all(|b| b.deleted) {
                    s.state = CallState::Completed;
                    s.ended = true;
                }
            }
            _ => {}
        }
        if s.state == CallState::Unknown && accepted == Some(true) && s.initiator.is_none() {
            s.state = CallState::InCall;
        }
        for old in displaced {
            if let Some(b) = sessions.get_mut(&old.session).and_then(|o| o.gtp.bearers.get_mut(old.bearer)) {
                add_traffic(b, &old);
            }
        }
    }
}

fn add_traffic(b: &mut GtpBearer, e: &UserEndpoint) {
    let t = match e.direction {
        GtpDirection::Uplink => &mut b.uplink,
        GtpDirection::Downlink => &mut b.downlink,
    };
    t.packets += e.packets;
    t.bytes += e.bytes;
}

/// Decodes a datagram into its messages (two for a piggybacked GTPv2 one); `None` when it
/// is not GTP at all. A G-PDU is no control message: it comes back as an empty list.
fn decode(bytes: &[u8]) -> Option<Vec<Decoded>> {
    match bytes.first()? >> 5 {
        1 => {
            let h = v1::v1_header(bytes).ok()?;
            if h.message_type == 255 {
                return Some(Vec::new());
            }
            let body = bytes.get(h.header_len..h.end.min(bytes.len())).unwrap_or_default();
            let mut facts = Facts::default();
            if h.end > bytes.len() {
                facts.error = Some(DecodeError::truncated(callflow_decode::Layer::Gtp, 0, h.end, bytes.len()));
            }
            let mut ies = Vec::new();
            read_v1(v1::V1Ies::new(body, h.header_len), &mut facts, &mut ies);
            Some(vec![Decoded {
                version: 1,
                message_type: h.message_type,
                teid: Some(h.teid),
                sequence: h.sequence.map(u32::from),
                piggybacked: false,
                facts,
                ies,
            }])
        }
        2 => {
            let mut out = Vec::new();
            for m in v2::v2_messages(bytes) {
                let Ok(m) = m else { break };
                let mut facts = Facts { error: m.cut.clone(), ..Facts::default() };
                let mut ies = Vec::new();
                read_v2(m.ies(), &mut facts, None, &mut ies, &mut { MAX_IES });
                out.push(Decoded {
                    version: 2,
                    message_type: m.header.message_type,
                    teid: m.header.teid,
                    sequence: Some(m.header.sequence),
                    piggybacked: m.offset != 0,
                    facts,
                    ies,
                });
            }
            (!out.is_empty()).then_some(out)
        }
        _ => None,
    }
}

impl Handler for GtpHandler {
    type FlowState = ();
    type Key = GtpKey;
    const PROTOCOL: AppProtocol = AppProtocol::GtpC;

    fn probe(&self, payload: &[u8]) -> bool {
        match payload.first().map(|b| b >> 5) {
            Some(1) => v1::v1_header(payload).is_ok_and(|h| h.end == payload.len()),
            Some(2) => v2::v2_messages(payload).next().is_some_and(|m| m.is_ok()),
            _ => false,
        }
    }

    fn on_payload(
        &mut self,
        protocol: AppProtocol,
        ctx: &PacketCtx<'_>,
        _state: &mut (),
        bytes: &[u8],
        _services: &mut Services,
    ) -> Handled {
        // GTPv0 (GSM 09.60, port 3386) and GTP' (charging, TS 32.295: PT clear, or the spare
        // bits GTPv2 leaves clear set) are protocols of their own, which a classifier may
        // still call GTP: not ours, and not malformed GTP either.
        let first = bytes.first().copied().unwrap_or(0);
        let ours = match first >> 5 {
            1 => first & 0x10 != 0,
            2 => first & 0x03 == 0,
            _ => false,
        };
        if !ours {
            return Handled::NotOurs;
        }
        let Some(messages) = decode(bytes) else { return Handled::Malformed };
        for d in messages {
            self.file(ctx, d);
        }
        Handled::Counted(protocol)
    }

    fn over(&self, now: Timestamp, services: &Services) -> Vec<GtpKey> {
        let lifetimes = services.lifetimes;
        by_first_frame(
            self.sessions
                .iter()
                .filter(|(_, s)| {
                    let user = s.user_keys.iter().filter_map(|k| self.user.get(k)).map(|e| e.last).max();
                    let quiet = now.nanos_since(user.map_or(s.last_activity, |u| u.max(s.last_activity)));
                    (s.ended && quiet > lifetimes.linger) || quiet > lifetimes.idle
                })
                .map(|(k, s)| (s.first_frame, *k)),
        )
    }

    fn open(&self, _services: &Services) -> Vec<GtpKey> {
        by_first_frame(self.sessions.iter().map(|(k, s)| (s.first_frame, *k)))
    }

    fn close(&mut self, key: GtpKey, _services: &mut Services) -> Option<Session> {
        let mut s = self.sessions.remove(&key)?;
        for k in &s.control_keys {
            if self.control.get(k) == Some(&key) {
                self.control.remove(k);
            }
        }
        let mut end = s.messages.last().map_or(s.start, |m| m.ts);
        for k in &s.user_keys {
            if let Some(e) = self.user.get(k).filter(|e| e.session == key).copied() {
                self.user.remove(k);
                if let Some(b) = s.gtp.bearers.get_mut(e.bearer) {
                    add_traffic(b, &e);
                }
                if e.packets > 0 {
                    end = end.max(e.last);
                }
            }
        }
        for k in &s.pending {
            self.pending.remove(k);
        }
        if let Some(p) = s.path_key {
            self.paths.remove(&p);
        }
        let name = match (s.gtp.imsi.as_deref(), s.control_keys.first()) {
            (Some(imsi), _) => imsi.to_string(),
            (None, Some((_, a, t))) => format!("{a}/0x{t:08x}"),
            (None, None) => s.participants.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("-"),
        };
        if s.gtp.transactions.iter().any(|t| t.response.is_none()) {
            let n = s.gtp.transactions.iter().filter(|t| t.response.is_none()).count();
            s.anomalies.push(format!("{n} request(s) without a response"));
        }
        Some(Session {
            state: s.state,
            start: s.start,
            end,
            participants: s.participants,
            messages: s.messages,
            anomalies: s.anomalies,
            subscriber_keys: s.keys,
            gtp: Some(Box::new(s.gtp)),
            ..Session::empty(session_id(SessionKind::Gtp.as_str(), name.as_bytes(), s.first_frame), SessionKind::Gtp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::Lifetimes;
    use crate::media::MediaTable;
    use crate::stats::StatsBuilder;
    use callflow_model::Transport;

    fn handle(bytes: &[u8]) -> (Handled, usize) {
        let mut handler = GtpHandler::default();
        let mut services = Services {
            media: MediaTable::default(),
            stats: StatsBuilder::default(),
            lifetimes: Lifetimes { linger: 1, idle: 1 },
        };
        let ctx = PacketCtx {
            ts: Timestamp::default(),
            frame: 1,
            src: "10.0.0.1:3386".parse().unwrap(),
            dst: "10.0.0.2:3386".parse().unwrap(),
            transport: Transport::Udp,
            tunnel: None,
            context: 0,
            wire_len: 100,
            flow: None,
            udp: None,
        };
        let handled = handler.on_payload(AppProtocol::GtpC, &ctx, &mut (), bytes, &mut services);
        (handled, handler.sessions.len())
    }

    #[test]
    fn gtp_v0_and_gtp_prime_are_not_malformed_gtp() {
        // A GTPv0 Create PDP Context Request's header (zeek/gtp_control_prime.pcap, frame 5),
        // which nDPI calls GTP.
        let v0 = [0x1e, 0x10, 0x00, 0x4f, 0x10, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(handle(&v0), (Handled::NotOurs, 0));
        // GTP' version 2 (PT clear, spare bits set): a Data Record Transfer Request.
        assert_eq!(handle(&[0x4e, 240, 0, 2, 0, 1, 0, 0]), (Handled::NotOurs, 0));
        assert_eq!(handle(&[0x2e, 240, 0, 2, 0, 1, 0, 0]), (Handled::NotOurs, 0));
        // GTPv1-C with PT set is ours: an Echo Request.
        assert_eq!(handle(&[0x32, 1, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0]), (Handled::Counted(AppProtocol::GtpC), 1));
    }
}
