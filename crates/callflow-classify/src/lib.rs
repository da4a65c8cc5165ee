//! Flow classification: which application protocol a transport payload carries.
//!
//! The correlator asks a [`Classifier`] about every UDP datagram and TCP stream whose
//! protocol is not already known from signalling (an SDP-announced endpoint is RTP
//! whatever its port; that lookup belongs to `callflow-correlate`, which owns the
//! sessions). This crate holds the trait and the pure-Rust [`HeuristicClassifier`],
//! which looks at payload signatures first and well-known ports last. nDPI comes in as
//! a second implementation of the same trait.
//!
//! Architecture invariant: classification never fails and never allocates per packet;
//! it knows nothing of sessions, files or output formats.
//!
//! ```
//! use callflow_classify::{AppProtocol, Classifier, Confidence, HeuristicClassifier, Payload};
//!
//! let mut c = HeuristicClassifier::default();
//! let sip = b"OPTIONS sip:a@example.com SIP/2.0\r\n\r\n";
//! let got = c.classify(&Payload::udp("10.0.0.1:5080".parse().unwrap(), "10.0.0.2:5080".parse().unwrap(), sip));
//! assert_eq!(got.protocol, AppProtocol::Sip);
//! assert_eq!(got.confidence, Confidence::Signature);
//! ```

mod signatures;

use callflow_decode::packet::{Packet, TcpSegment, Transport};
use callflow_decode::{rtcp, rtp, sip, Timestamp};
use std::fmt;
use std::net::SocketAddr;

/// Application protocols callflowd tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AppProtocol {
    /// Session Initiation Protocol.
    Sip,
    /// Real-time Transport Protocol.
    Rtp,
    /// RTP Control Protocol.
    Rtcp,
    /// Diameter (RFC 6733), over TCP or SCTP.
    Diameter,
    /// GTP control plane: GTPv1-C or GTPv2-C.
    GtpC,
    /// GTP user plane (GTPv1-U, tunnelled user packets and echo).
    GtpU,
    /// Domain Name System.
    Dns,
    /// HTTP/1.x.
    Http,
    /// TLS (a handshake record opens the stream).
    Tls,
    /// Session Traversal Utilities for NAT (RFC 5389 and later).
    Stun,
    /// Anything else.
    Unknown,
}

impl AppProtocol {
    /// The lower-case name used in statistics (`sip`, `rtp`, `rtcp`, `gtp-u`, `unknown`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Sip => "sip",
            AppProtocol::Rtp => "rtp",
            AppProtocol::Rtcp => "rtcp",
            AppProtocol::Diameter => "diameter",
            AppProtocol::GtpC => "gtp-c",
            AppProtocol::GtpU => "gtp-u",
            AppProtocol::Dns => "dns",
            AppProtocol::Http => "http",
            AppProtocol::Tls => "tls",
            AppProtocol::Stun => "stun",
            AppProtocol::Unknown => "unknown",
        }
    }
}

impl fmt::Display for AppProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure a classification is, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Confidence {
    /// Announced by signalling (an SDP offer or answer named the endpoint).
    Announced,
    /// The payload matched the protocol's signature.
    Signature,
    /// The payload's header is plausible for the protocol, nothing more.
    Guessed,
    /// Only the port number suggests the protocol.
    Port,
    /// Nothing matched.
    None,
}

impl Confidence {
    /// The lower-case name used in the output (`announced`, `signature`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Announced => "announced",
            Confidence::Signature => "signature",
            Confidence::Guessed => "guessed",
            Confidence::Port => "port",
            Confidence::None => "none",
        }
    }
}

/// The transport a payload arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportKind {
    /// One UDP datagram.
    Udp,
    /// The first bytes of a TCP stream direction.
    Tcp,
    /// One SCTP DATA chunk.
    Sctp,
}

/// What a classifier looks at.
#[derive(Clone, Copy, Debug)]
pub struct Payload<'a> {
    /// The transport.
    pub transport: TransportKind,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// The transport payload (for TCP: the first bytes buffered in this direction).
    pub bytes: &'a [u8],
}

impl<'a> Payload<'a> {
    /// A UDP datagram's payload.
    pub fn udp(src: SocketAddr, dst: SocketAddr, bytes: &'a [u8]) -> Self {
        Payload { transport: TransportKind::Udp, src, dst, bytes }
    }

    /// The first bytes of a TCP stream direction.
    pub fn tcp(src: SocketAddr, dst: SocketAddr, bytes: &'a [u8]) -> Self {
        Payload { transport: TransportKind::Tcp, src, dst, bytes }
    }

    /// One SCTP DATA chunk's user data.
    pub fn sctp(src: SocketAddr, dst: SocketAddr, bytes: &'a [u8]) -> Self {
        Payload { transport: TransportKind::Sctp, src, dst, bytes }
    }

    fn has_port(&self, port: u16) -> bool {
        self.src.port() == port || self.dst.port() == port
    }
}

/// What a packet-level classifier (nDPI) needs beyond the payload: the capture time,
/// and for TCP the header fields its connection tracking reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PacketMeta {
    /// Capture time in milliseconds (any epoch, but non-decreasing within a capture).
    pub time_ms: u64,
    /// The TCP header fields, for TCP payloads.
    pub tcp: Option<TcpMeta>,
}

impl PacketMeta {
    /// A packet captured at `time_ms`.
    pub fn at(time_ms: u64) -> Self {
        PacketMeta { time_ms, tcp: None }
    }

    /// The same, with the TCP header fields.
    pub fn with_tcp(self, tcp: TcpMeta) -> Self {
        PacketMeta { tcp: Some(tcp), ..self }
    }

    /// A packet captured at `ts` (clamped to the epoch: nDPI counts unsigned milliseconds).
    pub fn at_time(ts: Timestamp) -> Self {
        PacketMeta::at((ts.as_nanos() / 1_000_000).max(0) as u64)
    }
}

impl From<&TcpSegment<'_>> for TcpMeta {
    fn from(seg: &TcpSegment<'_>) -> Self {
        TcpMeta { seq: seg.seq, ack: seg.ack, flags: seg.flags, window: seg.window }
    }
}

/// What a classifier is shown of a decoded packet captured at `ts`: its UDP or TCP payload
/// with the addresses, and the metadata. `None` for anything else (no IP, SCTP, fragments).
pub fn classifier_input<'a>(packet: &Packet<'a>, ts: Timestamp) -> Option<(Payload<'a>, PacketMeta)> {
    let ip = packet.ip.as_ref()?;
    match &packet.transport {
        Transport::Udp { src_port, dst_port, payload } => Some((
            Payload::udp(SocketAddr::new(ip.src, *src_port), SocketAddr::new(ip.dst, *dst_port), payload),
            PacketMeta::at_time(ts),
        )),
        Transport::Tcp(seg) => Some((
            Payload::tcp(SocketAddr::new(ip.src, seg.src_port), SocketAddr::new(ip.dst, seg.dst_port), seg.payload),
            PacketMeta::at_time(ts).with_tcp(TcpMeta::from(seg)),
        )),
        _ => None,
    }
}

/// TCP header fields a classifier may track a connection by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpMeta {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// The flag bits (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub flags: u8,
    /// Receive window.
    pub window: u16,
}

/// A classifier's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classification {
    /// The protocol.
    pub protocol: AppProtocol,
    /// How sure the classifier is.
    pub confidence: Confidence,
    /// Which classifier decided (`heuristic`, `ndpi`, `sdp`).
    pub classifier: &'static str,
}

/// Decides which application protocol a payload carries.
pub trait Classifier {
    /// A short name for the output's `classifier` field.
    fn name(&self) -> &'static str;

    /// Classifies one payload. Implementations must not fail or panic on any input.
    fn classify(&mut self, payload: &Payload<'_>) -> Classification;

    /// Classifies one packet's payload knowing its capture time (and TCP header), which
    /// flow-tracking classifiers such as nDPI use for their per-flow state and idle
    /// timeouts. The default ignores `meta`, so payload-only classifiers need not care.
    fn classify_packet(&mut self, payload: &Payload<'_>, meta: &PacketMeta) -> Classification {
        let _ = meta;
        self.classify(payload)
    }
}

impl<C: Classifier + ?Sized> Classifier for Box<C> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn classify(&mut self, payload: &Payload<'_>) -> Classification {
        (**self).classify(payload)
    }

    fn classify_packet(&mut self, payload: &Payload<'_>, meta: &PacketMeta) -> Classification {
        (**self).classify_packet(payload, meta)
    }
}

/// The SIP ports registered with IANA (plain and TLS).
pub const SIP_PORTS: [u16; 2] = [5060, 5061];

/// The telecom ports the heuristic falls back on when no signature matched, with the
/// protocol each suggests (SIP's come first, as before).
const PORT_HINTS: [(u16, AppProtocol); 5] = [
    (5060, AppProtocol::Sip),
    (5061, AppProtocol::Sip),
    (3868, AppProtocol::Diameter),
    (2123, AppProtocol::GtpC),
    (2152, AppProtocol::GtpU),
];

/// The pure-Rust classifier: payload signatures first (SIP, STUN, DIAMETER, GTP-C/GTP-U,
/// TLS, HTTP, DNS, then RTCP/RTP by plausibility), well-known telecom ports last.
///
/// RTP and RTCP have no real signature (a version field and a payload-type range),
/// so payloads that merely parse as RTP get [`Confidence::Guessed`]; the correlator
/// only reports such streams when their sequence numbers behave like RTP.
#[derive(Clone, Debug, Default)]
pub struct HeuristicClassifier;

impl Classifier for HeuristicClassifier {
    fn name(&self) -> &'static str {
        "heuristic"
    }

    fn classify(&mut self, p: &Payload<'_>) -> Classification {
        let verdict = |protocol, confidence| Classification { protocol, confidence, classifier: "heuristic" };
        if sip::looks_like_sip(p.bytes) {
            return verdict(AppProtocol::Sip, Confidence::Signature);
        }
        if let Some(protocol) = signatures::match_signature(p) {
            return verdict(protocol, Confidence::Signature);
        }
        // RTP and RTCP have no signature, so they are only guessed between two ephemeral
        // or registered ports: services on system ports (DNS, NetBIOS, QUIC on 443) often
        // carry payloads whose first byte happens to say "version 2".
        if p.transport == TransportKind::Udp && p.src.port() >= 1024 && p.dst.port() >= 1024 {
            // RTCP first: its packet types 200-207 would also pass RTP's loose header check
            // as payload types 72-79 with the marker bit set.
            if rtcp::looks_like_rtcp(p.bytes) {
                return verdict(AppProtocol::Rtcp, Confidence::Guessed);
            }
            if rtp::looks_like_rtp(p.bytes) {
                return verdict(AppProtocol::Rtp, Confidence::Guessed);
            }
        }
        if let Some(&(_, protocol)) = PORT_HINTS.iter().find(|&&(port, _)| p.has_port(port)) {
            return verdict(protocol, Confidence::Port);
        }
        verdict(AppProtocol::Unknown, Confidence::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callflow_decode::packet::decode_frame;
    use callflow_decode::LinkType;

    /// A raw IPv4 packet, 10.0.0.1 -> 10.0.0.2, with `protocol` and its transport bytes.
    fn ipv4(protocol: u8, transport: &[u8]) -> Vec<u8> {
        let total = (20 + transport.len()) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(transport);
        p
    }

    #[test]
    fn classifier_input_takes_udp_and_tcp_with_their_metadata() {
        let ts = Timestamp::from_parts(1_700_000_000, 250_000_000);
        let udp = ipv4(17, &[0x13, 0xc4, 0x13, 0xc4, 0, 11, 0, 0, b'a', b'b', b'c']);
        let packet = decode_frame(LinkType::IPV4, &udp);
        let (payload, meta) = classifier_input(&packet, ts).expect("UDP is classified");
        assert_eq!(
            (payload.transport, payload.src.to_string(), payload.bytes),
            (TransportKind::Udp, "10.0.0.1:5060".into(), &b"abc"[..])
        );
        assert_eq!(meta, PacketMeta::at(1_700_000_000_250));
        let mut tcp = vec![0x9c, 0x40, 0x13, 0xc4, 0, 0, 0, 7, 0, 0, 0, 9, 0x50, 0x18, 0x10, 0x00, 0, 0, 0, 0];
        tcp.extend_from_slice(b"xyz");
        let tcp = ipv4(6, &tcp);
        let packet = decode_frame(LinkType::IPV4, &tcp);
        let (payload, meta) = classifier_input(&packet, ts).expect("TCP is classified");
        assert_eq!((payload.transport, payload.dst.port(), payload.bytes), (TransportKind::Tcp, 5060, &b"xyz"[..]));
        assert_eq!(meta.tcp, Some(TcpMeta { seq: 7, ack: 9, flags: 0x18, window: 0x1000 }));
        // Anything else (here ICMP) is not shown to a classifier.
        assert!(classifier_input(&decode_frame(LinkType::IPV4, &ipv4(1, &[8, 0, 0, 0])), ts).is_none());
    }

    fn check(transport: TransportKind, ports: (u16, u16), bytes: &[u8], expected: (AppProtocol, Confidence)) {
        let src = SocketAddr::from(([10, 0, 0, 1], ports.0));
        let dst = SocketAddr::from(([10, 0, 0, 2], ports.1));
        let got = HeuristicClassifier.classify(&Payload { transport, src, dst, bytes });
        assert_eq!((got.protocol, got.confidence), expected, "payload {bytes:02x?}");
        assert_eq!(got.classifier, "heuristic");
    }

    #[test]
    fn sip_by_signature_on_any_port() {
        let invite = b"INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: x\r\n\r\n";
        check(TransportKind::Udp, (6060, 8060), invite, (AppProtocol::Sip, Confidence::Signature));
        check(TransportKind::Tcp, (40000, 5080), b"SIP/2.0 200 OK\r\n\r\n", (AppProtocol::Sip, Confidence::Signature));
    }

    #[test]
    fn rtp_and_rtcp_are_guessed() {
        let mut rtp = vec![0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44];
        rtp.extend_from_slice(&[0xff; 160]);
        check(TransportKind::Udp, (16384, 20000), &rtp, (AppProtocol::Rtp, Confidence::Guessed));
        // An RTCP RR with no report blocks: V=2, RC=0, PT=201, length 1 (8 bytes).
        let rr = [0x80, 201, 0x00, 0x01, 0x11, 0x22, 0x33, 0x44];
        check(TransportKind::Udp, (16385, 20001), &rr, (AppProtocol::Rtcp, Confidence::Guessed));
    }

    #[test]
    fn rtp_is_not_guessed_on_system_ports() {
        let mut rtp = vec![0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44];
        rtp.extend_from_slice(&[0xff; 160]);
        check(TransportKind::Udp, (137, 137), &rtp, (AppProtocol::Unknown, Confidence::None));
        check(TransportKind::Udp, (40000, 443), &rtp, (AppProtocol::Unknown, Confidence::None));
    }

    #[test]
    fn sip_port_is_the_last_resort() {
        check(TransportKind::Udp, (5060, 5060), b"\x00\x01garbage", (AppProtocol::Sip, Confidence::Port));
        check(TransportKind::Udp, (53, 33000), b"\x12\x34\x01\x00", (AppProtocol::Unknown, Confidence::None));
        check(TransportKind::Tcp, (40000, 3868), b"\x00\x01garbage", (AppProtocol::Diameter, Confidence::Port));
        check(TransportKind::Udp, (2152, 2152), b"\x00\x01garbage", (AppProtocol::GtpU, Confidence::Port));
    }

    #[test]
    fn signatures_come_before_rtp_plausibility() {
        // A STUN binding request is never taken for RTP, whatever its port.
        let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        stun.extend_from_slice(&[0x80; 12]);
        check(TransportKind::Udp, (16384, 20000), &stun, (AppProtocol::Stun, Confidence::Signature));
        let gpdu = [0x30, 0xff, 0, 4, 0, 0, 0, 1, 0x45, 0, 0, 0];
        check(TransportKind::Udp, (2152, 2152), &gpdu, (AppProtocol::GtpU, Confidence::Signature));
    }

    #[test]
    fn classify_packet_defaults_to_classify() {
        let src = SocketAddr::from(([10, 0, 0, 1], 5060));
        let dst = SocketAddr::from(([10, 0, 0, 2], 5060));
        let sip = Payload::udp(src, dst, b"OPTIONS sip:a@b SIP/2.0\r\n\r\n");
        let mut boxed: Box<dyn Classifier> = Box::new(HeuristicClassifier);
        assert_eq!(boxed.classify_packet(&sip, &PacketMeta::at(5)), HeuristicClassifier.classify(&sip));
        assert_eq!(boxed.name(), "heuristic");
    }
}
