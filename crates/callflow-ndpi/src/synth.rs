//! Builds the IP packet nDPI wants from a decoded payload: the IP and UDP/TCP headers are rewritten, the payload copied.
//!
//! nDPI reads a packet from its IP header on, but callflowd's decoders hand out the
//! transport payload (after tunnels, VLANs and reassembly). Rebuilding minimal headers
//! from the decoded fields gives nDPI exactly what it inspects (addresses, ports,
//! TCP flags and sequence numbers, payload) whatever the link layer was. Checksums are
//! left zero: nDPI does not verify them.

use callflow_classify::{Payload, TcpMeta, TransportKind};
use std::net::SocketAddr;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// The largest payload that fits an IP packet whose length nDPI takes as a `u16`.
const MAX_PAYLOAD: usize = 65_535 - 60;

/// Writes the packet into `buf` (cleared first, so one buffer serves every packet
/// without allocating once it has grown) and returns false for what nDPI cannot take:
/// SCTP, or addresses of mixed families.
pub(crate) fn build(p: &Payload<'_>, tcp: Option<TcpMeta>, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let protocol = match p.transport {
        TransportKind::Udp => IPPROTO_UDP,
        TransportKind::Tcp => IPPROTO_TCP,
        TransportKind::Sctp => return false,
    };
    let payload = &p.bytes[..p.bytes.len().min(MAX_PAYLOAD)];
    let l4_len = if protocol == IPPROTO_UDP { 8 } else { 20 } + payload.len();
    match (p.src, p.dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            let total = (20 + l4_len) as u16;
            buf.extend_from_slice(&[0x45, 0]);
            buf.extend_from_slice(&total.to_be_bytes());
            // Identification 0, Don't Fragment, TTL 64, protocol, checksum 0.
            buf.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
            buf.extend_from_slice(&s.ip().octets());
            buf.extend_from_slice(&d.ip().octets());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            buf.extend_from_slice(&[0x60, 0, 0, 0]);
            buf.extend_from_slice(&(l4_len as u16).to_be_bytes());
            buf.extend_from_slice(&[protocol, 64]);
            buf.extend_from_slice(&s.ip().octets());
            buf.extend_from_slice(&d.ip().octets());
        }
        _ => return false,
    }
    buf.extend_from_slice(&p.src.port().to_be_bytes());
    buf.extend_from_slice(&p.dst.port().to_be_bytes());
    if protocol == IPPROTO_UDP {
        buf.extend_from_slice(&(l4_len as u16).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
    } else {
        // Without the real header fields, a payload-carrying ACK|PSH segment is what a
        // connection in progress looks like to nDPI's connection tracking.
        let t = tcp.unwrap_or(TcpMeta { seq: 1, ack: 1, flags: 0x18, window: 65_535 });
        buf.extend_from_slice(&t.seq.to_be_bytes());
        buf.extend_from_slice(&t.ack.to_be_bytes());
        buf.extend_from_slice(&[5 << 4, t.flags]);
        buf.extend_from_slice(&t.window.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 0]);
    }
    buf.extend_from_slice(payload);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_udp_headers_carry_lengths_ports_and_payload() {
        let p = Payload::udp("10.0.0.1:5060".parse().unwrap(), "10.0.0.2:5080".parse().unwrap(), b"abc");
        let mut buf = Vec::new();
        assert!(build(&p, None, &mut buf));
        assert_eq!(buf.len(), 20 + 8 + 3);
        assert_eq!(&buf[..4], &[0x45, 0, 0, 31]);
        assert_eq!(buf[9], IPPROTO_UDP);
        assert_eq!(&buf[12..20], &[10, 0, 0, 1, 10, 0, 0, 2]);
        assert_eq!(&buf[20..28], &[0x13, 0xc4, 0x13, 0xd8, 0, 11, 0, 0]);
        assert_eq!(&buf[28..], b"abc");
    }

    #[test]
    fn ipv6_tcp_headers_keep_the_tcp_fields() {
        let p = Payload::tcp("[::1]:40000".parse().unwrap(), "[::2]:3868".parse().unwrap(), b"xy");
        let mut buf = Vec::new();
        let meta = TcpMeta { seq: 7, ack: 9, flags: 0x02, window: 1000 };
        assert!(build(&p, Some(meta), &mut buf));
        assert_eq!(buf.len(), 40 + 20 + 2);
        assert_eq!(&buf[4..7], &[0, 22, IPPROTO_TCP]);
        assert_eq!(&buf[44..52], &[0, 0, 0, 7, 0, 0, 0, 9]);
        assert_eq!(&buf[52..56], &[0x50, 0x02, 0x03, 0xe8]);
    }

    #[test]
    fn sctp_and_mixed_families_are_refused() {
        let mut buf = Vec::new();
        let v4: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:2".parse().unwrap();
        assert!(!build(&Payload::sctp(v4, v4, b"x"), None, &mut buf));
        assert!(!build(&Payload::udp(v4, v6, b"x"), None, &mut buf));
    }
}
