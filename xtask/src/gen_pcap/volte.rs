//! `gen-pcap --volte N`: VoLTE calls as a mobile core carries them, from attach to detach, with a ground truth of every key that ties one call's SIP, Diameter, GTP and RTP together.
//!
//! One call, for a UE of its own (times from the call's start):
//! - attach: GTPv2 Create Session Request/Response on S11 (IMSI, MSISDN, MEI, APN `ims`,
//!   PAA = the UE's address, S11 and S1-U F-TEIDs, default bearer EBI 5 QCI 5), Gx
//!   CCR-I/CCA-I (Subscription-Id IMSI and E.164, Framed-IP-Address), then Modify Bearer
//!   with the eNodeB's S1-U F-TEID;
//! - SIP between the UE and the P-CSCF inside GTP-U on the default bearer (uplink to the
//!   SGW's TEID, downlink to the eNodeB's): REGISTER/200, INVITE (P-Asserted-Identity,
//!   P-Charging-Vector icid-value, AMR SDP)/100;
//! - Rx AAR/AAA (AF-Charging-Identifier = the icid, Framed-IP-Address, Subscription-Id);
//!   on success Gx RAR/RAA (Charging-Rule-Install, QCI 1) and GTPv2 Create Bearer (EBI 6,
//!   QCI 1, GBR), then 180/200/ACK, AMR RTP both ways inside GTP-U on the dedicated
//!   bearer's TEIDs, BYE/200, Delete Bearer; finally Delete Session (detach).
//!
//! Calls vary by index, so that any N >= 4 has each case: every other call carries its
//! Diameter over SCTP (PPID 46, one DATA chunk a message), the rest over TCP (split and
//! coalesced segments); index % 4 == 2 has its AAR rejected (Experimental-Result 5063: the
//! P-CSCF answers the INVITE 503, no bearer, no media), index % 4 == 3 has its Create
//! Bearer refused (cause 94: the call goes on with its media on the default bearer); every
//! third call (index % 3 == 0) has its REGISTER fragmented at both IP levels (inner
//! fragments each in its own G-PDU, and each G-PDU packet fragmented outside), its INVITE
//! inside the tunnel only and its 200 OK outside only.

use super::diameter::{self as dia, code};
use super::gtpv2 as gtp;
use super::pcap;
use super::rng::Rng;
use super::tcp;
use super::{Emitter, Side};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

const ENB: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
const SGW: Ipv4Addr = Ipv4Addr::new(172, 16, 2, 1);
const MME: Ipv4Addr = Ipv4Addr::new(172, 16, 3, 1);
const PGW: Ipv4Addr = Ipv4Addr::new(172, 16, 4, 1);
const PCRF: Ipv4Addr = Ipv4Addr::new(172, 16, 5, 1);
const PCSCF_RX: Ipv4Addr = Ipv4Addr::new(172, 16, 6, 1);
/// The P-CSCF's and the media gateway's addresses as the UE sees them (inside the tunnel).
const PCSCF: Ipv4Addr = Ipv4Addr::new(10, 46, 0, 10);
const AGW: Ipv4Addr = Ipv4Addr::new(10, 46, 0, 20);
const GTPC_PORT: u16 = 2123;
const GTPU_PORT: u16 = 2152;
const DIAMETER_PORT: u16 = 3868;
const SIP_PORT: u16 = 5060;
const DIAMETER_PPID: u32 = 46;
const IMS: &str = "ims.mnc001.mcc001.3gppnetwork.org";
const EPC: &str = "epc.mnc001.mcc001.3gppnetwork.org";
const PTIME_US: u64 = 20_000;
/// An AMR 12.2 frame in octet-aligned mode: CMR, TOC, 31 bytes of speech.
const AMR_PAYLOAD: usize = 33;
const AMR_PT: u8 = 97;
/// The most calls with distinct UE addresses (10.45.0.1 to 10.45.255.250).
pub const MAX_CALLS: u64 = 64_000;

/// How a call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolteOutcome {
    Completed,
    /// The PCRF refused the AAR: no bearer, the P-CSCF rejects the INVITE.
    AarRejected,
    /// The MME refused the dedicated bearer: the call's media goes on the default bearer.
    BearerFailed,
}

impl VolteOutcome {
    pub fn of(index: u64) -> VolteOutcome {
        match index % 4 {
            2 => VolteOutcome::AarRejected,
            3 => VolteOutcome::BearerFailed,
            _ => VolteOutcome::Completed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            VolteOutcome::Completed => "completed",
            VolteOutcome::AarRejected => "aar_rejected",
            VolteOutcome::BearerFailed => "bearer_failed",
        }
    }
}

/// IP fragmentation of one tunnelled message: the MTU inside the tunnel and outside it.
#[derive(Clone, Copy, Debug, Default)]
struct Frag {
    inner: Option<usize>,
    outer: Option<usize>,
}

/// The TEIDs of one bearer: the SGW's (uplink) and the eNodeB's (downlink).
#[derive(Clone, Copy, Debug)]
struct Bearer {
    sgw: u32,
    enb: u32,
}

/// Builds the frames of a call's signalling, in any order; they are sorted by time at the end.
struct Wire {
    frames: Vec<(u64, Vec<u8>)>,
    ip_id: u16,
    buf: Vec<u8>,
}

impl Wire {
    fn next_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }

    /// One IP packet (or its fragments, a microsecond apart) at `t`.
    fn ip(&mut self, t: u64, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8], mtu: Option<usize>) {
        let id = self.next_id();
        for (k, packet) in pcap::ipv4_packets(src, dst, proto, id, payload, mtu).iter().enumerate() {
            pcap::ethernet_frame(&mut self.buf, src, dst, packet);
            self.frames.push((t + k as u64, self.buf.clone()));
        }
    }

    fn gtpc(&mut self, t: u64, src: Ipv4Addr, dst: Ipv4Addr, message: &[u8]) {
        let d = pcap::udp_datagram(SocketAddrV4::new(src, GTPC_PORT), SocketAddrV4::new(dst, GTPC_PORT), message);
        self.ip(t, src, dst, 17, &d, None);
    }

    /// A UDP datagram between the UE and the IMS inside the bearer: uplink when `from` is
    /// the UE's (to the SGW's TEID), else downlink (to the eNodeB's).
    fn tunnelled(
        &mut self,
        t: u64,
        up: bool,
        bearer: Bearer,
        (from, to): (SocketAddrV4, SocketAddrV4),
        payload: &[u8],
        frag: Frag,
    ) {
        let datagram = pcap::udp_datagram(from, to, payload);
        let id = self.next_id();
        let (outer_src, outer_dst, teid) = if up { (ENB, SGW, bearer.sgw) } else { (SGW, ENB, bearer.enb) };
        let inner = pcap::ipv4_packets(*from.ip(), *to.ip(), 17, id, &datagram, frag.inner);
        for (k, packet) in inner.iter().enumerate() {
            let gpdu = gtp::g_pdu(teid, packet);
            let outer = pcap::udp_datagram(
                SocketAddrV4::new(outer_src, GTPU_PORT),
                SocketAddrV4::new(outer_dst, GTPU_PORT),
                &gpdu,
            );
            self.ip(t + 10 * k as u64, outer_src, outer_dst, 17, &outer, frag.outer);
        }
    }
}

/// One Diameter connection (client to the PCRF): its messages, written at the end over SCTP
/// or TCP.
struct Link {
    client: SocketAddrV4,
    server: SocketAddrV4,
    /// (time, sender, message); `Side::Caller` is the client.
    sends: Vec<(u64, Side, Vec<u8>)>,
}

impl Link {
    fn write(&self, wire: &mut Wire, sctp: bool, rng: &mut Rng) {
        if self.sends.is_empty() {
            return;
        }
        let ends = [self.client, self.server];
        if sctp {
            let tags = [rng.next_u32() | 1, rng.next_u32() | 1];
            let mut tsn = [rng.next_u32(), rng.next_u32()];
            let mut ssn = [0u16; 2];
            for (t, from, message) in &self.sends {
                let (me, peer) = (from.index(), from.peer().index());
                let packet = sctp_data(ends[me].port(), ends[peer].port(), tags[peer], tsn[me], ssn[me], message);
                tsn[me] = tsn[me].wrapping_add(1);
                ssn[me] = ssn[me].wrapping_add(1);
                wire.ip(*t, *ends[me].ip(), *ends[peer].ip(), 132, &packet, None);
            }
        } else {
            let sends: Vec<tcp::Send> =
                self.sends.iter().map(|(t, from, bytes)| tcp::Send { t: *t, from: *from, bytes }).collect();
            let delay = 300;
            let first = self.sends[0].0;
            let last = self.sends.iter().map(|s| s.0).max().unwrap_or(first);
            let timing = tcp::Timing { open_at: first - 3 * delay - 100, delay, close_at: last + 5_000 };
            let isn = [rng.next_u32(), rng.next_u32()];
            for s in tcp::connection(&sends, isn, &timing, &tcp::Policy::default(), rng) {
                let (me, peer) = (s.from.index(), s.from.peer().index());
                let id = wire.next_id();
                pcap::tcp_frame(&mut wire.buf, None, ends[me], ends[peer], id, s.header, &s.payload);
                wire.frames.push((s.t, wire.buf.clone()));
            }
        }
    }
}

/// An SCTP packet with one whole user message in a DATA chunk (B and E set).
fn sctp_data(src: u16, dst: u16, vtag: u32, tsn: u32, ssn: u16, message: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(28 + message.len() + 3);
    p.extend_from_slice(&src.to_be_bytes());
    p.extend_from_slice(&dst.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&[0, 0x03]);
    p.extend_from_slice(&((16 + message.len()) as u16).to_be_bytes());
    p.extend_from_slice(&tsn.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    p.extend_from_slice(&ssn.to_be_bytes());
    p.extend_from_slice(&DIAMETER_PPID.to_be_bytes());
    p.extend_from_slice(message);
    p.resize(p.len().next_multiple_of(4), 0);
    // RFC 9260 appendix A: CRC32c, its bytes in the order the reflected algorithm gives.
    let sum = crc32c(&p);
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    p
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// One direction of AMR speech inside the tunnel, made a packet at a time.
struct AmrStream {
    from: SocketAddrV4,
    to: SocketAddrV4,
    up: bool,
    bearer: Bearer,
    ssrc: u32,
    seq0: u16,
    ts0: u32,
    start_us: u64,
    count: u64,
    next_k: u64,
    ip_id: u16,
}

impl AmrStream {
    fn next_time(&self) -> Option<u64> {
        (self.next_k < self.count).then(|| self.start_us + self.next_k * PTIME_US)
    }

    fn emit(&mut self, buf: &mut Vec<u8>) {
        let k = self.next_k;
        self.next_k += 1;
        let mut rtp = Vec::with_capacity(12 + AMR_PAYLOAD);
        rtp.extend_from_slice(&[0x80, if k == 0 { 0x80 | AMR_PT } else { AMR_PT }]);
        rtp.extend_from_slice(&self.seq0.wrapping_add(k as u16).to_be_bytes());
        rtp.extend_from_slice(&self.ts0.wrapping_add((k as u32).wrapping_mul(160)).to_be_bytes());
        rtp.extend_from_slice(&self.ssrc.to_be_bytes());
        // CMR 15 (no request), then one 12.2 kbit/s frame's TOC (FT 7, Q set).
        rtp.extend_from_slice(&[0xF0, 0x3C]);
        rtp.resize(12 + AMR_PAYLOAD, 0x55);
        let datagram = pcap::udp_datagram(self.from, self.to, &rtp);
        self.ip_id = self.ip_id.wrapping_add(1);
        let inner = pcap::ipv4_packets(*self.from.ip(), *self.to.ip(), 17, self.ip_id, &datagram, None);
        let (src, dst, teid) = if self.up { (ENB, SGW, self.bearer.sgw) } else { (SGW, ENB, self.bearer.enb) };
        let gpdu = gtp::g_pdu(teid, &inner[0]);
        let outer = pcap::udp_datagram(SocketAddrV4::new(src, GTPU_PORT), SocketAddrV4::new(dst, GTPU_PORT), &gpdu);
        let packet = pcap::ipv4_packets(src, dst, 17, self.ip_id, &outer, None);
        pcap::ethernet_frame(buf, src, dst, &packet[0]);
    }
}

/// A VoLTE call in progress: its signalling built at the start, its speech made as it goes.
pub struct VolteCall {
    signalling: VecDeque<(u64, Vec<u8>)>,
    rtp: Vec<AmrStream>,
    truth: serde_json::Value,
}

impl Emitter for VolteCall {
    fn next_time(&self) -> Option<u64> {
        let rtp = self.rtp.iter().filter_map(AmrStream::next_time).min();
        match (self.signalling.front().map(|(t, _)| *t), rtp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn emit(&mut self, buf: &mut Vec<u8>) -> Option<u64> {
        let t = self.next_time()?;
        if self.signalling.front().is_some_and(|(s, _)| *s == t) {
            let (_, frame) = self.signalling.pop_front()?;
            *buf = frame;
        } else {
            let stream = self.rtp.iter_mut().find(|s| s.next_time() == Some(t))?;
            stream.emit(buf);
        }
        Some(t)
    }
}

/// The identities of one subscriber and of its call.
struct Ids {
    imsi: String,
    msisdn: String,
    imei: String,
    ue: Ipv4Addr,
    impu: String,
    impi: String,
    icid: String,
    call_id: String,
    register_call_id: String,
    callee: String,
    rx_session: String,
    gx_session: String,
}

impl VolteCall {
    /// Call `index`, starting (Create Session Request) at `start_us`, with `media_s` seconds of speech.
    pub fn new(seed: u64, index: u64, start_us: u64, media_s: f64) -> VolteCall {
        let mut rng = Rng::derive(seed, index + 1);
        let outcome = VolteOutcome::of(index);
        let sctp = index.is_multiple_of(2);
        let fragmented = index.is_multiple_of(3);
        let ue = Ipv4Addr::new(10, 45, (index / 250) as u8, (index % 250 + 1) as u8);
        let msisdn = format!("4917{:08}", index);
        let ids = Ids {
            imsi: format!("00101{:010}", index),
            impu: format!("sip:+{msisdn}@{IMS}"),
            impi: format!("00101{:010}@{IMS}", index),
            imei: format!("3520990{:08}", index),
            icid: format!("icid-{}-{index}", rng.hex(16)),
            call_id: format!("{}@{ue}", rng.hex(20)),
            register_call_id: format!("reg-{}@{ue}", rng.hex(16)),
            callee: format!("4930{:08}", rng.below(100_000_000)),
            rx_session: format!("pcscf.{IMS};{};{}", rng.next_u32(), index),
            gx_session: format!("pgw.{EPC};{};{}", rng.next_u32(), index),
            msisdn,
            ue,
        };
        let mut teid = || rng.next_u32() | 1;
        let (s11_mme, s11_sgw) = (teid(), teid());
        let default = Bearer { sgw: teid(), enb: teid() };
        let dedicated = Bearer { sgw: teid(), enb: teid() };
        let dedicated_ok = outcome == VolteOutcome::Completed;
        let media_bearer = if dedicated_ok { dedicated } else { default };

        let mut wire = Wire { frames: Vec::new(), ip_id: rng.next_u32() as u16, buf: Vec::new() };
        let mut seq = || rng.next_u32() & 0xFF_FFFF;
        let seqs: Vec<u32> = (0..5).map(|_| seq()).collect();
        let t0 = start_us;

        // Attach: Create Session, Gx CCR-I/CCA-I, Modify Bearer.
        let qos5 = gtp::bearer_qos(5, (0, 0), (0, 0));
        let csr = gtp::message(
            gtp::CREATE_SESSION_REQUEST,
            0,
            seqs[0],
            &[
                gtp::imsi(&ids.imsi),
                gtp::msisdn(&ids.msisdn),
                gtp::mei(&ids.imei),
                gtp::rat_eutran(),
                gtp::f_teid(0, gtp::IF_S11_MME, s11_mme, MME),
                gtp::apn("ims"),
                gtp::pdn_type_ipv4(),
                gtp::paa(Ipv4Addr::UNSPECIFIED),
                gtp::bearer_context(&[gtp::ebi(0, 5), qos5.clone()]),
            ],
        );
        wire.gtpc(t0, MME, SGW, &csr);
        let created = gtp::bearer_context(&[
            gtp::ebi(0, 5),
            gtp::cause(gtp::CAUSE_ACCEPTED),
            gtp::f_teid(0, gtp::IF_S1U_SGW, default.sgw, SGW),
            qos5,
        ]);
        let csr_answer = gtp::message(
            gtp::CREATE_SESSION_RESPONSE,
            s11_mme,
            seqs[0],
            &[gtp::cause(gtp::CAUSE_ACCEPTED), gtp::f_teid(0, gtp::IF_S11_SGW, s11_sgw, SGW), gtp::paa(ue), created],
        );
        wire.gtpc(t0 + 10_000, SGW, MME, &csr_answer);
        let mbr = gtp::message(
            gtp::MODIFY_BEARER_REQUEST,
            s11_sgw,
            seqs[1],
            &[gtp::bearer_context(&[gtp::ebi(0, 5), gtp::f_teid(0, gtp::IF_S1U_ENB, default.enb, ENB)])],
        );
        wire.gtpc(t0 + 15_000, MME, SGW, &mbr);
        let mbr_answer = gtp::message(
            gtp::MODIFY_BEARER_RESPONSE,
            s11_mme,
            seqs[1],
            &[gtp::cause(gtp::CAUSE_ACCEPTED), gtp::bearer_context(&[gtp::ebi(0, 5), gtp::cause(gtp::CAUSE_ACCEPTED)])],
        );
        wire.gtpc(t0 + 18_000, SGW, MME, &mbr_answer);

        let mut gx = Link {
            client: SocketAddrV4::new(PGW, rng.range(32_768, 60_999) as u16),
            server: SocketAddrV4::new(PCRF, DIAMETER_PORT),
            sends: Vec::new(),
        };
        let mut rx = Link {
            client: SocketAddrV4::new(PCSCF_RX, rng.range(32_768, 60_999) as u16),
            server: SocketAddrV4::new(PCRF, DIAMETER_PORT),
            sends: Vec::new(),
        };
        let (hop, end) = ids_pair(&mut rng);
        let ccr = dia::Header {
            request: true,
            command: dia::CMD_CC,
            application: dia::APP_GX,
            hop_by_hop: hop,
            end_to_end: end,
        };
        let base = |session: &str, host: &str, realm: &str, app: u32| {
            vec![
                dia::str_avp(code::SESSION_ID, session),
                dia::u32_avp(code::AUTH_APPLICATION_ID, None, app),
                dia::str_avp(code::ORIGIN_HOST, host),
                dia::str_avp(code::ORIGIN_REALM, realm),
            ]
        };
        let pgw_host = format!("pgw.{EPC}");
        let pcrf_host = format!("pcrf.{EPC}");
        let pcscf_host = format!("pcscf.{IMS}");
        let mut avps = base(&ids.gx_session, &pgw_host, EPC, dia::APP_GX);
        avps.extend([
            dia::str_avp(code::DESTINATION_REALM, EPC),
            dia::u32_avp(code::CC_REQUEST_TYPE, None, 1),
            dia::u32_avp(code::CC_REQUEST_NUMBER, None, 0),
            dia::subscription_id(dia::END_USER_IMSI, &ids.imsi),
            dia::subscription_id(dia::END_USER_E164, &ids.msisdn),
            dia::framed_ip(ue),
            dia::str_avp(code::CALLED_STATION_ID, "ims"),
        ]);
        gx.sends.push((t0 + 2_000, Side::Caller, dia::message(ccr, &avps)));
        let mut avps = base(&ids.gx_session, &pcrf_host, EPC, dia::APP_GX);
        avps.extend([
            dia::u32_avp(code::RESULT_CODE, None, 2001),
            dia::u32_avp(code::CC_REQUEST_TYPE, None, 1),
            dia::u32_avp(code::CC_REQUEST_NUMBER, None, 0),
        ]);
        gx.sends.push((t0 + 6_000, Side::Callee, dia::message(dia::Header { request: false, ..ccr }, &avps)));

        // SIP on the default bearer.
        let sip =
            Sip { ids: &ids, branch: rng.hex(16), tag: rng.hex(10), rtp_port: 40_000 + 2 * rng.below(5_000) as u16 };
        let ue_sip = SocketAddrV4::new(ue, SIP_PORT);
        let pcscf_sip = SocketAddrV4::new(PCSCF, SIP_PORT);
        let none = Frag::default();
        let frag = |inner, outer| if fragmented { Frag { inner, outer } } else { none };
        let mut sip_count = 0;
        let mut send = |wire: &mut Wire, t: u64, up: bool, text: String, f: Frag, counted: bool| {
            let (from, to) = if up { (ue_sip, pcscf_sip) } else { (pcscf_sip, ue_sip) };
            wire.tunnelled(t, up, default, (from, to), text.as_bytes(), f);
            sip_count += usize::from(counted);
        };
        let reg_branch = format!("{}r", sip.branch);
        send(&mut wire, t0 + 100_000, true, sip.register(&reg_branch), frag(Some(300), Some(200)), false);
        send(&mut wire, t0 + 130_000, false, sip.register_ok(&reg_branch), none, false);
        let t_invite = t0 + 500_000;
        send(&mut wire, t_invite, true, sip.invite(), frag(Some(500), None), true);
        send(&mut wire, t_invite + 20_000, false, sip.response("100 Trying", false, false), none, true);

        // Rx, then (accepted) Gx RAR and the dedicated bearer.
        let (hop, end) = ids_pair(&mut rng);
        let aar = dia::Header {
            request: true,
            command: dia::CMD_AA,
            application: dia::APP_RX,
            hop_by_hop: hop,
            end_to_end: end,
        };
        let mut avps = base(&ids.rx_session, &pcscf_host, IMS, dia::APP_RX);
        let v = Some(dia::VENDOR_3GPP);
        avps.extend([
            dia::str_avp(code::DESTINATION_REALM, EPC),
            dia::grouped(
                code::MEDIA_COMPONENT_DESCRIPTION,
                v,
                &[
                    dia::u32_avp(code::MEDIA_COMPONENT_NUMBER, v, 1),
                    dia::u32_avp(code::MEDIA_TYPE, v, 0),
                    dia::u32_avp(code::MAX_REQUESTED_BANDWIDTH_UL, v, 41_000),
                    dia::u32_avp(code::MAX_REQUESTED_BANDWIDTH_DL, v, 41_000),
                ],
            ),
            dia::avp(code::AF_CHARGING_IDENTIFIER, v, ids.icid.as_bytes()),
            dia::framed_ip(ue),
            dia::subscription_id(dia::END_USER_E164, &ids.msisdn),
        ]);
        let t_aar = t_invite + 30_000;
        rx.sends.push((t_aar, Side::Caller, dia::message(aar, &avps)));
        let mut avps = base(&ids.rx_session, &pcrf_host, EPC, dia::APP_RX);
        if outcome == VolteOutcome::AarRejected {
            avps.push(dia::grouped(
                code::EXPERIMENTAL_RESULT,
                None,
                &[
                    dia::u32_avp(code::VENDOR_ID, None, dia::VENDOR_3GPP),
                    dia::u32_avp(code::EXPERIMENTAL_RESULT_CODE, None, 5063),
                ],
            ));
        } else {
            avps.push(dia::u32_avp(code::RESULT_CODE, None, 2001));
        }
        rx.sends.push((t_aar + 10_000, Side::Callee, dia::message(dia::Header { request: false, ..aar }, &avps)));

        let mut rtp = Vec::new();
        let end_t = if outcome == VolteOutcome::AarRejected {
            let t = t_aar + 30_000;
            send(&mut wire, t, false, sip.response("503 Service Unavailable", true, false), none, true);
            send(&mut wire, t + 20_000, true, sip.ack(&sip.branch), none, true);
            t + 200_000
        } else {
            let (hop, end) = ids_pair(&mut rng);
            let rar = dia::Header {
                request: true,
                command: dia::CMD_RA,
                application: dia::APP_GX,
                hop_by_hop: hop,
                end_to_end: end,
            };
            let mut avps = base(&ids.gx_session, &pcrf_host, EPC, dia::APP_GX);
            let qos = dia::grouped(
                code::QOS_INFORMATION,
                v,
                &[
                    dia::u32_avp(code::QOS_CLASS_IDENTIFIER, v, 1),
                    dia::u32_avp(code::MAX_REQUESTED_BANDWIDTH_UL, v, 41_000),
                    dia::u32_avp(code::MAX_REQUESTED_BANDWIDTH_DL, v, 41_000),
                    dia::u32_avp(code::GUARANTEED_BITRATE_UL, v, 41_000),
                    dia::u32_avp(code::GUARANTEED_BITRATE_DL, v, 41_000),
                ],
            );
            let rule = dia::grouped(
                code::CHARGING_RULE_DEFINITION,
                v,
                &[dia::avp(code::CHARGING_RULE_NAME, v, format!("volte-voice-{index}").as_bytes()), qos],
            );
            avps.extend([
                dia::str_avp(code::DESTINATION_REALM, EPC),
                dia::str_avp(code::DESTINATION_HOST, &pgw_host),
                dia::u32_avp(code::RE_AUTH_REQUEST_TYPE, None, 0),
                dia::grouped(code::CHARGING_RULE_INSTALL, v, &[rule]),
            ]);
            let t_rar = t_aar + 15_000;
            gx.sends.push((t_rar, Side::Callee, dia::message(rar, &avps)));
            let mut avps = base(&ids.gx_session, &pgw_host, EPC, dia::APP_GX);
            avps.push(dia::u32_avp(code::RESULT_CODE, None, 2001));
            gx.sends.push((t_rar + 5_000, Side::Caller, dia::message(dia::Header { request: false, ..rar }, &avps)));

            let cbr = gtp::message(
                gtp::CREATE_BEARER_REQUEST,
                s11_mme,
                seqs[2],
                &[
                    gtp::ebi(0, 5),
                    gtp::bearer_context(&[
                        gtp::ebi(0, 0),
                        gtp::f_teid(0, gtp::IF_S1U_SGW, dedicated.sgw, SGW),
                        gtp::bearer_qos(1, (41, 41), (41, 41)),
                    ]),
                ],
            );
            wire.gtpc(t_rar + 10_000, SGW, MME, &cbr);
            let answer = if dedicated_ok {
                vec![
                    gtp::cause(gtp::CAUSE_ACCEPTED),
                    gtp::bearer_context(&[
                        gtp::ebi(0, 6),
                        gtp::cause(gtp::CAUSE_ACCEPTED),
                        gtp::f_teid(0, gtp::IF_S1U_ENB, dedicated.enb, ENB),
                        gtp::f_teid(1, gtp::IF_S1U_SGW, dedicated.sgw, SGW),
                    ]),
                ]
            } else {
                vec![
                    gtp::cause(gtp::CAUSE_REQUEST_REJECTED),
                    gtp::bearer_context(&[gtp::ebi(0, 0), gtp::cause(gtp::CAUSE_REQUEST_REJECTED)]),
                ]
            };
            wire.gtpc(t_rar + 30_000, MME, SGW, &gtp::message(gtp::CREATE_BEARER_RESPONSE, s11_sgw, seqs[2], &answer));

            let t_ring = t_invite + 300_000;
            send(&mut wire, t_ring, false, sip.response("180 Ringing", true, false), none, true);
            let t_answer = t_ring + 2_000_000;
            send(&mut wire, t_answer, false, sip.response("200 OK", true, true), frag(None, Some(400)), true);
            let ack_branch = format!("{}a", sip.branch);
            send(&mut wire, t_answer + 40_000, true, sip.ack(&ack_branch), none, true);

            let start = t_answer + 60_000;
            let count = ((media_s * 50.0).round() as u64).max(10);
            let ue_rtp = SocketAddrV4::new(ue, sip.rtp_port);
            let agw_rtp = SocketAddrV4::new(AGW, 50_000 + sip.rtp_port % 10_000);
            for (up, from, to, offset) in
                [(true, ue_rtp, agw_rtp, 0), (false, agw_rtp, ue_rtp, rng.range(1_000, 15_000))]
            {
                rtp.push(AmrStream {
                    from,
                    to,
                    up,
                    bearer: media_bearer,
                    ssrc: rng.next_u32(),
                    seq0: rng.below(65_536) as u16,
                    ts0: rng.next_u32(),
                    start_us: start + offset,
                    count,
                    next_k: 0,
                    ip_id: rng.next_u32() as u16,
                });
            }
            let t_bye = start + count * PTIME_US + 40_000;
            let bye_branch = format!("{}b", sip.branch);
            send(&mut wire, t_bye, true, sip.bye(&bye_branch), none, true);
            send(&mut wire, t_bye + 30_000, false, sip.bye_ok(&bye_branch), none, true);
            let mut t = t_bye + 60_000;
            if dedicated_ok {
                let dbr = gtp::message(gtp::DELETE_BEARER_REQUEST, s11_mme, seqs[3], &[gtp::ebi(1, 6)]);
                wire.gtpc(t, SGW, MME, &dbr);
                let answer = [
                    gtp::cause(gtp::CAUSE_ACCEPTED),
                    gtp::bearer_context(&[gtp::ebi(0, 6), gtp::cause(gtp::CAUSE_ACCEPTED)]),
                ];
                wire.gtpc(t + 10_000, MME, SGW, &gtp::message(gtp::DELETE_BEARER_RESPONSE, s11_sgw, seqs[3], &answer));
                t += 50_000;
            }
            t
        };
        // Detach.
        let dsr = gtp::message(gtp::DELETE_SESSION_REQUEST, s11_sgw, seqs[4], &[gtp::ebi(0, 5)]);
        wire.gtpc(end_t, MME, SGW, &dsr);
        let answer = [gtp::cause(gtp::CAUSE_ACCEPTED)];
        wire.gtpc(end_t + 10_000, SGW, MME, &gtp::message(gtp::DELETE_SESSION_RESPONSE, s11_mme, seqs[4], &answer));

        gx.write(&mut wire, sctp, &mut rng);
        rx.write(&mut wire, sctp, &mut rng);
        wire.frames.sort_by_key(|(t, _)| *t);

        let hex = |teid: u32| format!("0x{teid:08x}");
        let truth = serde_json::json!({
            "index": index,
            "imsi": ids.imsi,
            "msisdn": ids.msisdn,
            "imei": ids.imei,
            "ue_address": ue.to_string(),
            "impu": ids.impu,
            "impi": ids.impi,
            "icid": ids.icid,
            "call_id": ids.call_id,
            "register_call_id": ids.register_call_id,
            "outcome": outcome.as_str(),
            "expected_state": if outcome == VolteOutcome::AarRejected { "REJECTED" } else { "COMPLETED" },
            "sip_messages": sip_count,
            "register_messages": 2,
            "fragmented": fragmented,
            "diameter_transport": if sctp { "sctp" } else { "tcp" },
            "rx_session_id": ids.rx_session,
            "gx_session_id": ids.gx_session,
            "dedicated_bearer": dedicated_ok,
            "teids": {
                "s11_mme": hex(s11_mme),
                "s11_sgw": hex(s11_sgw),
                "s1u_sgw_default": hex(default.sgw),
                "s1u_enb_default": hex(default.enb),
                "s1u_sgw_dedicated": hex(dedicated.sgw),
                "s1u_enb_dedicated": hex(dedicated.enb),
            },
            "rtp_packets": rtp.iter().map(|s| s.count).sum::<u64>(),
            "media_teids": if rtp.is_empty() { vec![] } else { vec![hex(media_bearer.sgw), hex(media_bearer.enb)] },
        });
        VolteCall { signalling: wire.frames.into(), rtp, truth }
    }

    pub fn truth(&self) -> String {
        self.truth.to_string()
    }
}

/// The SIP text of one call between the UE and its P-CSCF.
struct Sip<'a> {
    ids: &'a Ids,
    branch: String,
    tag: String,
    rtp_port: u16,
}

impl Sip<'_> {
    fn with_length(head: String, body: &str) -> String {
        let content = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
        format!("{head}{content}Content-Length: {}\r\n\r\n{body}", body.len())
    }

    fn register(&self, branch: &str) -> String {
        let Ids { ue, impu, impi, register_call_id, msisdn, .. } = self.ids;
        Self::with_length(
            format!(
                "REGISTER sip:{IMS} SIP/2.0\r\nVia: SIP/2.0/UDP {ue}:5060;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
                 From: <{impu}>;tag={tag}\r\nTo: <{impu}>\r\nCall-ID: {register_call_id}\r\nCSeq: 1 REGISTER\r\n\
                 Contact: <sip:+{msisdn}@{ue}:5060>;expires=600000;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\"\r\n\
                 Authorization: Digest username=\"{impi}\", realm=\"{IMS}\", nonce=\"\", uri=\"sip:{IMS}\", response=\"\"\r\n\
                 Supported: path, sec-agree\r\nUser-Agent: callflowd-xtask VoLTE UE\r\n",
                tag = self.tag
            ),
            "",
        )
    }

    fn register_ok(&self, branch: &str) -> String {
        let Ids { ue, impu, register_call_id, msisdn, .. } = self.ids;
        Self::with_length(
            format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {ue}:5060;branch=z9hG4bK{branch};received={ue}\r\n\
                 From: <{impu}>;tag={tag}\r\nTo: <{impu}>;tag=pcscf{tag}\r\nCall-ID: {register_call_id}\r\nCSeq: 1 REGISTER\r\n\
                 Contact: <sip:+{msisdn}@{ue}:5060>;expires=600000\r\nP-Associated-URI: <{impu}>, <tel:+{msisdn}>\r\n",
                tag = self.tag
            ),
            "",
        )
    }

    fn sdp(&self, ip: Ipv4Addr, port: u16) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {AMR_PT} 98\r\n\
             b=AS:41\r\na=rtpmap:{AMR_PT} AMR/8000/1\r\na=fmtp:{AMR_PT} mode-change-capability=2;max-red=0\r\n\
             a=rtpmap:98 telephone-event/8000\r\na=ptime:20\r\na=maxptime:240\r\na=sendrecv\r\n"
        )
    }

    /// The dialog's From, To and Call-ID lines; `answered` adds the P-CSCF's To tag.
    fn dialog_lines(&self, answered: bool) -> String {
        let Ids { impu, call_id, callee, .. } = self.ids;
        let to_tag = if answered { format!(";tag=pcscf{}", self.tag) } else { String::new() };
        format!("From: <{impu}>;tag={}\r\nTo: <tel:+{callee}>{to_tag}\r\nCall-ID: {call_id}\r\n", self.tag)
    }

    fn invite(&self) -> String {
        let Ids { ue, msisdn, icid, callee, .. } = self.ids;
        Self::with_length(
            format!(
                "INVITE tel:+{callee} SIP/2.0\r\nVia: SIP/2.0/UDP {ue}:5060;branch=z9hG4bK{b}\r\nMax-Forwards: 70\r\n{d}\
                 CSeq: 1 INVITE\r\nContact: <sip:+{msisdn}@{ue}:5060>;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\"\r\n\
                 P-Asserted-Identity: <sip:+{msisdn}@{IMS};user=phone>\r\n\
                 P-Charging-Vector: icid-value=\"{icid}\";icid-generated-at={PCSCF}\r\n\
                 P-Access-Network-Info: 3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=0010100010019B01\r\n\
                 Supported: 100rel, timer, precondition\r\nUser-Agent: callflowd-xtask VoLTE UE\r\n",
                b = self.branch,
                d = self.dialog_lines(false)
            ),
            &self.sdp(*ue, self.rtp_port),
        )
    }

    /// A response to the INVITE from the P-CSCF; `tagged` once the far end answered, `sdp` for the 200.
    fn response(&self, status: &str, tagged: bool, sdp: bool) -> String {
        let Ids { ue, icid, .. } = self.ids;
        let contact = if tagged { format!("Contact: <sip:{PCSCF}:5060>\r\n") } else { String::new() };
        let body = if sdp { self.sdp(AGW, 50_000 + self.rtp_port % 10_000) } else { String::new() };
        Self::with_length(
            format!(
                "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP {ue}:5060;branch=z9hG4bK{b};received={ue}\r\n{d}CSeq: 1 INVITE\r\n\
                 {contact}P-Charging-Vector: icid-value=\"{icid}\"\r\n",
                b = self.branch,
                d = self.dialog_lines(tagged)
            ),
            &body,
        )
    }

    fn ack(&self, branch: &str) -> String {
        let Ids { ue, callee, .. } = self.ids;
        Self::with_length(
            format!(
                "ACK tel:+{callee} SIP/2.0\r\nVia: SIP/2.0/UDP {ue}:5060;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n{d}CSeq: 1 ACK\r\n",
                d = self.dialog_lines(true)
            ),
            "",
        )
    }

    fn bye(&self, branch: &str) -> String {
        let Ids { ue, callee, .. } = self.ids;
        Self::with_length(
            format!(
                "BYE tel:+{callee} SIP/2.0\r\nVia: SIP/2.0/UDP {ue}:5060;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n{d}CSeq: 2 BYE\r\n",
                d = self.dialog_lines(true)
            ),
            "",
        )
    }

    fn bye_ok(&self, branch: &str) -> String {
        let Ids { ue, .. } = self.ids;
        Self::with_length(
            format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {ue}:5060;branch=z9hG4bK{branch};received={ue}\r\n{d}CSeq: 2 BYE\r\n",
                d = self.dialog_lines(true)
            ),
            "",
        )
    }
}

/// A Diameter request's hop-by-hop and end-to-end identifiers.
fn ids_pair(rng: &mut Rng) -> (u32, u32) {
    (rng.next_u32(), rng.next_u32())
}

/// Start times of `n` calls spread evenly (with a random share each) over `window_us`.
pub fn starts(seed: u64, n: u64, start_us: u64, window_us: u64) -> Vec<u64> {
    let mut rng = Rng::derive(seed, 0);
    let mut previous = start_us;
    (0..n)
        .map(|i| {
            let offset = ((i as f64 + rng.unit()) * window_us as f64 / n as f64) as u64;
            previous = previous.max(start_us + offset);
            previous
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(call: &mut VolteCall) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(t) = call.emit(&mut buf) {
            out.push((t, buf.clone()));
        }
        out
    }

    #[test]
    fn crc32c_reference_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn each_outcome_has_its_bearer_and_media() {
        for index in 0..4 {
            let mut call = VolteCall::new(3, index, 1_700_000_000_000_000, 1.0);
            let truth: serde_json::Value = serde_json::from_str(&call.truth()).unwrap();
            let frames = frames(&mut call);
            assert!(frames.windows(2).all(|w| w[0].0 <= w[1].0), "frames in time order");
            let outcome = truth["outcome"].as_str().unwrap();
            assert_eq!(outcome, VolteOutcome::of(index).as_str());
            let media = truth["rtp_packets"].as_u64().unwrap();
            assert_eq!(media == 0, outcome == "aar_rejected", "{truth}");
            assert_eq!(truth["dedicated_bearer"], outcome == "completed");
            // The UE's address is in the frames (inside the tunnel) and the IMSI's TBCD in a GTP IE.
            let ue: Ipv4Addr = truth["ue_address"].as_str().unwrap().parse().unwrap();
            assert!(frames.iter().any(|(_, f)| f.windows(4).any(|w| w == ue.octets())));
            let texts: Vec<String> = frames.iter().map(|(_, f)| String::from_utf8_lossy(f).into_owned()).collect();
            let call_id = truth["call_id"].as_str().unwrap();
            assert!(texts.iter().any(|t| t.contains(call_id)));
            let fragments = frames.iter().filter(|(_, f)| f[20] & 0x20 != 0 || f[21] != 0).count();
            assert_eq!(fragments > 0, index % 3 == 0, "call {index}: {fragments} outer fragments");
        }
    }

    #[test]
    fn same_call_same_frames() {
        let a = frames(&mut VolteCall::new(9, 5, 1_700_000_000_000_000, 0.5));
        let b = frames(&mut VolteCall::new(9, 5, 1_700_000_000_000_000, 0.5));
        assert_eq!(a, b);
    }
}
