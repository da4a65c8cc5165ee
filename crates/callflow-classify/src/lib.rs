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

use callflow_decode::{rtcp, rtp, sip};
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
    /// Anything else.
    Unknown,
}

impl AppProtocol {
    /// The lower-case name used in statistics (`sip`, `rtp`, `rtcp`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Sip => "sip",
            AppProtocol::Rtp => "rtp",
            AppProtocol::Rtcp => "rtcp",
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

/// The transport a payload arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

    fn has_port(&self, port: u16) -> bool {
        self.src.port() == port || self.dst.port() == port
    }
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
}

/// The SIP ports registered with IANA (plain and TLS).
pub const SIP_PORTS: [u16; 2] = [5060, 5061];

/// The pure-Rust classifier: payload signatures first, well-known ports last.
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
        if p.transport == TransportKind::Udp {
            // RTCP first: its packet types 200-207 would also pass RTP's loose header check
            // as payload types 72-79 with the marker bit set.
            if rtcp::looks_like_rtcp(p.bytes) {
                return verdict(AppProtocol::Rtcp, Confidence::Guessed);
            }
            if rtp::looks_like_rtp(p.bytes) {
                return verdict(AppProtocol::Rtp, Confidence::Guessed);
            }
        }
        if SIP_PORTS.iter().any(|&port| p.has_port(port)) {
            return verdict(AppProtocol::Sip, Confidence::Port);
        }
        verdict(AppProtocol::Unknown, Confidence::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn sip_port_is_the_last_resort() {
        check(TransportKind::Udp, (5060, 5060), b"\x00\x01garbage", (AppProtocol::Sip, Confidence::Port));
        check(TransportKind::Udp, (53, 33000), b"\x12\x34\x01\x00", (AppProtocol::Unknown, Confidence::None));
    }
}
