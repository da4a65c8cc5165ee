//! Payload signatures of the protocols besides SIP and RTP that the heuristic classifier recognises.
//!
//! Each check reads a fixed header and insists on its internal consistency (a length
//! field that matches the payload, reserved bits that are zero, a magic cookie), so that
//! random media payloads do not pass. None allocates or can panic: every read is bounds
//! checked through `get`.

use crate::{AppProtocol, Payload, TransportKind};

/// The first signature the payload matches, strongest checks first.
pub(crate) fn match_signature(p: &Payload<'_>) -> Option<AppProtocol> {
    let b = p.bytes;
    if is_stun(b) {
        return Some(AppProtocol::Stun);
    }
    if p.transport != TransportKind::Udp && is_diameter(b) {
        return Some(AppProtocol::Diameter);
    }
    if p.transport == TransportKind::Udp {
        if let Some(gtp) = gtp(b, p.has_port(2152)) {
            return Some(gtp);
        }
    }
    if p.transport == TransportKind::Tcp {
        if is_tls(b) {
            return Some(AppProtocol::Tls);
        }
        if is_http(b) {
            return Some(AppProtocol::Http);
        }
    }
    if p.transport != TransportKind::Sctp && is_dns(b, p.transport == TransportKind::Tcp) {
        return Some(AppProtocol::Dns);
    }
    None
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize)
}

fn be24(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_be_bytes([0, *b.get(at)?, *b.get(at + 1)?, *b.get(at + 2)?]) as usize)
}

/// RFC 5389: two zero bits, a length that is the rest of the message in 32-bit words,
/// and the magic cookie 0x2112A442.
fn is_stun(b: &[u8]) -> bool {
    b.len() >= 20
        && b[0] & 0xc0 == 0
        && b[4..8] == [0x21, 0x12, 0xa4, 0x42]
        && be16(b, 2).is_some_and(|len| len % 4 == 0 && len + 20 == b.len())
}

/// RFC 6733: version 1, a message length of at least the 20-byte header that fits what
/// was seen (a TCP read may hold several messages, or the start of one), and the four
/// reserved flag bits zero.
fn is_diameter(b: &[u8]) -> bool {
    b.len() >= 20
        && b[0] == 1
        && b[4] & 0x0f == 0
        && be24(b, 1).is_some_and(|len| len >= 20 && len % 4 == 0 && len <= 1 << 20)
        // The command code: no Diameter application uses codes above 2^24 - 1 worth of
        // the space with bit patterns like 0xffffff, which random data often has.
        && be24(b, 5).is_some_and(|code| code != 0 && code < 0x00ff_ffff)
}

/// GTPv1 (TS 29.060/29.281) with PT = 1, or GTPv2-C (TS 29.274), whose length fields
/// count the bytes after the mandatory header. GTPv1 G-PDUs (type 255) and any GTPv1
/// message on the user-plane port are GTP-U; the rest is GTP-C.
fn gtp(b: &[u8], user_plane_port: bool) -> Option<AppProtocol> {
    let flags = *b.first()?;
    let kind = *b.get(1)?;
    let len = be16(b, 2)?;
    match flags >> 5 {
        1 if flags & 0x10 != 0 && b.len() >= 8 && len + 8 == b.len() => {
            Some(if kind == 0xff || user_plane_port { AppProtocol::GtpU } else { AppProtocol::GtpC })
        }
        // GTPv2: spare bits 0-2 zero, and a message type that is defined (1..=255, no 0).
        2 if flags & 0x07 == 0 && kind != 0 && b.len() >= 8 && len + 4 == b.len() => Some(AppProtocol::GtpC),
        _ => None,
    }
}

/// A TLS record carrying a ClientHello or ServerHello: content type 22, version 3.x,
/// and a handshake type of 1 or 2.
fn is_tls(b: &[u8]) -> bool {
    b.len() >= 6 && b[0] == 0x16 && b[1] == 3 && b[2] <= 4 && matches!(b[5], 1 | 2) && be16(b, 3).is_some_and(|l| l > 0)
}

/// An HTTP/1.x request line or status line.
fn is_http(b: &[u8]) -> bool {
    const METHODS: [&[u8]; 8] = [b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT "];
    if b.starts_with(b"HTTP/1.0 ") || b.starts_with(b"HTTP/1.1 ") {
        return true;
    }
    if !METHODS.iter().any(|m| b.starts_with(m)) {
        return false;
    }
    let line_end = b.iter().take(8192).position(|&c| c == b'\n').unwrap_or(b.len().min(8192));
    b[..line_end].windows(7).any(|w| w == b" HTTP/1")
}

/// A DNS message whose header is sane (opcode 0-5, the Z bit clear, 1 to 16
/// questions, modest record counts) and whose first question name parses as labels
/// followed by its type and class. Over TCP a two-byte length comes first.
fn is_dns(b: &[u8], tcp: bool) -> bool {
    let b = if tcp {
        match be16(b, 0) {
            Some(len) if len >= 12 && b.len() >= 2 => &b[2..],
            _ => return false,
        }
    } else {
        b
    };
    if b.len() < 17 {
        return false;
    }
    let opcode = (b[2] >> 3) & 0x0f;
    let z = b[3] & 0x40;
    let counts = [be16(b, 4), be16(b, 6), be16(b, 8), be16(b, 10)];
    let [Some(qd), Some(an), Some(ns), Some(ar)] = counts else { return false };
    if opcode > 5 || z != 0 || !(1..=16).contains(&qd) || an > 256 || ns > 256 || ar > 256 {
        return false;
    }
    let mut at = 12;
    let mut labels = 0;
    loop {
        let Some(&len) = b.get(at) else { return false };
        if len == 0 {
            // The root label ends the name; type and class follow.
            return labels > 0 && b.len() >= at + 5;
        }
        // Compression pointers cannot appear in the first name of a message.
        if len > 63 {
            return false;
        }
        let label = match b.get(at + 1..at + 1 + len as usize) {
            Some(l) => l,
            None => return false,
        };
        if !label.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'*')) {
            return false;
        }
        at += 1 + len as usize;
        labels += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn check(transport: TransportKind, ports: (u16, u16), bytes: &[u8], expected: Option<AppProtocol>) {
        let src = SocketAddr::from(([10, 0, 0, 1], ports.0));
        let dst = SocketAddr::from(([10, 0, 0, 2], ports.1));
        let got = match_signature(&Payload { transport, src, dst, bytes });
        assert_eq!(got, expected, "payload {bytes:02x?}");
    }

    const UDP: TransportKind = TransportKind::Udp;
    const TCP: TransportKind = TransportKind::Tcp;

    fn dns_query() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        q
    }

    #[test]
    fn dns_over_udp_and_tcp() {
        check(UDP, (33000, 53), &dns_query(), Some(AppProtocol::Dns));
        let mut tcp = (dns_query().len() as u16).to_be_bytes().to_vec();
        tcp.extend_from_slice(&dns_query());
        check(TCP, (33000, 53), &tcp, Some(AppProtocol::Dns));
        // A name that runs past the end, or a header with no question, is not DNS.
        check(UDP, (33000, 53), &dns_query()[..20], None);
        let mut none = dns_query();
        none[5] = 0;
        check(UDP, (33000, 53), &none, None);
    }

    #[test]
    fn stun_binding_request_needs_the_cookie_and_length() {
        let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        req.extend_from_slice(&[7; 12]);
        check(UDP, (40000, 3478), &req, Some(AppProtocol::Stun));
        check(TCP, (40000, 3478), &req, Some(AppProtocol::Stun));
        req[4] = 0x22;
        check(UDP, (40000, 3478), &req, None);
    }

    #[test]
    fn diameter_cer_over_tcp_not_udp() {
        // A Capabilities-Exchange-Request header: version 1, length 20, R flag, code 257.
        let cer = [1, 0, 0, 20, 0x80, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
        check(TCP, (40000, 3868), &cer, Some(AppProtocol::Diameter));
        check(TransportKind::Sctp, (3868, 3868), &cer, Some(AppProtocol::Diameter));
        check(UDP, (40000, 3868), &cer, None);
        let mut bad_flags = cer;
        bad_flags[4] = 0x81;
        check(TCP, (40000, 3868), &bad_flags, None);
    }

    #[test]
    fn gtp_user_and_control_planes() {
        // A GTPv1-U G-PDU carrying 4 bytes.
        let gpdu = [0x30, 0xff, 0, 4, 0, 0, 0, 1, 0x45, 0, 0, 0];
        check(UDP, (2152, 2152), &gpdu, Some(AppProtocol::GtpU));
        // A GTPv1-C Echo Request on 2123 is control plane; on 2152 it is GTP-U's echo.
        let echo = [0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0];
        check(UDP, (2123, 2123), &echo, Some(AppProtocol::GtpC));
        check(UDP, (2152, 40000), &echo, Some(AppProtocol::GtpU));
        // A GTPv2-C Echo Request: flags 0x40, type 1, length 4 + 4 bytes.
        let v2 = [0x40, 0x01, 0, 8, 0, 0, 1, 0, 3, 0, 1, 0];
        check(UDP, (2123, 2123), &v2, Some(AppProtocol::GtpC));
        // A length that does not match is not GTP.
        check(UDP, (2152, 2152), &gpdu[..10], None);
    }

    #[test]
    fn tls_and_http_over_tcp() {
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
        check(TCP, (40000, 443), &hello, Some(AppProtocol::Tls));
        check(TCP, (40000, 80), b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", Some(AppProtocol::Http));
        check(TCP, (80, 40000), b"HTTP/1.1 200 OK\r\n\r\n", Some(AppProtocol::Http));
        check(TCP, (40000, 80), b"GET is not a request line\r\n", None);
        check(UDP, (40000, 443), &hello, None);
    }
}
