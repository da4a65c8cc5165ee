//! SDP session descriptions (RFC 4566 / RFC 8866): the parts that say where media flows.
//!
//! [`Sdp::parse`] reads the origin, the session name, the session-level connection and
//! direction, and every media description with its port, protocol, formats, connection,
//! `rtpmap`s, `ptime`, direction, `rtcp` port and `rtcp-mux`. Values borrow from the
//! body; only the lists (media, formats, rtpmaps) allocate.
//!
//! Lines may end in CRLF or a bare LF, and blank lines are ignored. Lines of types this
//! module does not use, and attributes it does not know or cannot read, are skipped: one
//! odd attribute must not lose the media of a call. A line that is not `<letter>=<value>`,
//! a description that does not start with `v=`, and `c=` or `m=` lines without their
//! mandatory fields are errors that name the offset of the line.

use crate::{DecodeError, Layer};
use memchr::memchr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A session description.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sdp<'a> {
    /// The `o=` line's value: `username sess-id sess-version nettype addrtype address`.
    pub origin: Option<&'a str>,
    /// The `s=` line's value.
    pub session_name: Option<&'a str>,
    /// The session-level `c=`, used by media descriptions without their own.
    pub connection: Option<Connection<'a>>,
    /// The session-level direction attribute, the default for every media description.
    pub direction: Option<Direction>,
    /// The `m=` sections, in order.
    pub media: Vec<MediaDescription<'a>>,
}

/// A `c=` line: `IN IP4 192.0.2.1`, `IN IP4 224.2.1.1/127/3`, `IN IP6 FF15::101/3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection<'a> {
    /// The network type, `IN`.
    pub net_type: &'a str,
    /// The address type, `IP4` or `IP6`.
    pub addr_type: &'a str,
    /// The address without its `/ttl` or `/count` suffixes (an IP address or a host name).
    pub address: &'a str,
    /// The address as an IP address, when it is one of the address type's.
    pub ip: Option<IpAddr>,
    /// The multicast TTL (IPv4: the first suffix).
    pub ttl: Option<u8>,
    /// The number of consecutive multicast addresses (the last suffix).
    pub address_count: Option<u32>,
}

/// One `m=` section with the lines under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaDescription<'a> {
    /// `audio`, `video`, `image`, `application`, ...
    pub media: &'a str,
    /// The transport port (0 for a rejected or disabled stream).
    pub port: u16,
    /// How many consecutive ports (`port/count`); 1 when not given.
    pub port_count: u16,
    /// The transport protocol: `RTP/AVP`, `RTP/SAVP`, `udptl`, ...
    pub proto: &'a str,
    /// The media formats (RTP payload types for RTP protocols).
    pub formats: Vec<&'a str>,
    /// This section's `c=`, when it has one.
    pub connection: Option<Connection<'a>>,
    /// The `a=rtpmap` attributes.
    pub rtpmaps: Vec<RtpMap<'a>>,
    /// `a=ptime`, in milliseconds.
    pub ptime: Option<u32>,
    /// This section's direction attribute, when it has one.
    pub direction: Option<Direction>,
    /// `a=rtcp` port (RFC 3605).
    pub rtcp_port: Option<u16>,
    /// `a=rtcp` address, when the attribute gives one.
    pub rtcp_connection: Option<Connection<'a>>,
    /// `a=rtcp-mux` (RFC 5761): RTCP shares the RTP port.
    pub rtcp_mux: bool,
}

impl MediaDescription<'_> {
    /// The direction in effect: this section's, else the session's, else send-receive.
    pub fn effective_direction(&self, session: &Sdp<'_>) -> Direction {
        self.direction.or(session.direction).unwrap_or(Direction::SendRecv)
    }
}

/// An `a=rtpmap:<payload type> <encoding>/<clock rate>[/<channels>]` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpMap<'a> {
    /// The dynamic or static payload type (0-127).
    pub payload_type: u8,
    /// The encoding name as written (`PCMU`, `opus`, `telephone-event`, ...).
    pub encoding: &'a str,
    /// The RTP clock rate in Hz.
    pub clock_rate: u32,
    /// The number of audio channels, when given.
    pub channels: Option<u8>,
}

/// A media direction attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv`.
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl<'a> Sdp<'a> {
    /// Parses a session description; see the module documentation for what is an error.
    pub fn parse(b: &'a [u8]) -> Result<Sdp<'a>, DecodeError> {
        let mut sdp = Sdp::default();
        let mut media: Option<MediaDescription<'a>> = None;
        let mut seen_version = false;
        let mut pos = 0;
        while pos < b.len() {
            let start = pos;
            let end = memchr(b'\n', b.get(pos..).unwrap_or_default()).map_or(b.len(), |i| pos + i);
            pos = end + 1;
            let raw = b.get(start..end).unwrap_or_default();
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r')) {
                continue;
            }
            let (kind, value) = match line {
                [kind, b'=', value @ ..] if kind.is_ascii_alphabetic() => (*kind, value),
                _ => return Err(DecodeError::invalid(Layer::Sdp, start, "line", "not a <type>=<value> line")),
            };
            if !seen_version {
                if kind != b'v' {
                    return Err(DecodeError::invalid(Layer::Sdp, start, "v", "the description does not start with v="));
                }
                seen_version = true;
                continue;
            }
            let value_at = start + 2;
            let text = std::str::from_utf8(value).map(|t| t.trim_end_matches([' ', '\t']));
            match kind {
                b'o' if media.is_none() => sdp.origin = text.ok(),
                b's' if media.is_none() => sdp.session_name = text.ok(),
                b'c' => {
                    let text = text.map_err(|_| DecodeError::invalid(Layer::Sdp, value_at, "c", "not UTF-8"))?;
                    let c = parse_connection(text).map_err(|e| DecodeError::invalid(Layer::Sdp, value_at, "c", e))?;
                    match media.as_mut() {
                        Some(m) => m.connection = Some(c),
                        None => sdp.connection = Some(c),
                    }
                }
                b'm' => {
                    let text = text.map_err(|_| DecodeError::invalid(Layer::Sdp, value_at, "m", "not UTF-8"))?;
                    let m = parse_media(text).map_err(|e| DecodeError::invalid(Layer::Sdp, value_at, "m", e))?;
                    sdp.media.extend(media.replace(m));
                }
                b'a' => {
                    if let Ok(text) = text {
                        attribute(text, &mut sdp, media.as_mut());
                    }
                }
                _ => {}
            }
        }
        if !seen_version {
            return Err(DecodeError::invalid(Layer::Sdp, 0, "v", "empty session description"));
        }
        sdp.media.extend(media);
        Ok(sdp)
    }
}

/// Parses `<nettype> <addrtype> <address>[/ttl][/count]`.
fn parse_connection(value: &str) -> Result<Connection<'_>, &'static str> {
    const FIELDS: &str = "expected <nettype> <addrtype> <address>";
    let mut words = value.split_ascii_whitespace();
    let (Some(net_type), Some(addr_type), Some(full)) = (words.next(), words.next(), words.next()) else {
        return Err(FIELDS);
    };
    let mut parts = full.split('/');
    let address = parts.next().filter(|a| !a.is_empty()).ok_or(FIELDS)?;
    let suffixes: Vec<&str> = parts.collect();
    let ipv6 = addr_type.eq_ignore_ascii_case("IP6");
    let bad_suffix = "bad /ttl or /count after the address";
    let (ttl, address_count) = match (ipv6, suffixes.as_slice()) {
        (_, []) => (None, None),
        (true, [count]) => (None, Some(count.parse().map_err(|_| bad_suffix)?)),
        (false, [ttl]) => (Some(ttl.parse().map_err(|_| bad_suffix)?), None),
        (false, [ttl, count]) => {
            (Some(ttl.parse().map_err(|_| bad_suffix)?), Some(count.parse().map_err(|_| bad_suffix)?))
        }
        _ => return Err(bad_suffix),
    };
    let ip = if ipv6 {
        address.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else if addr_type.eq_ignore_ascii_case("IP4") {
        address.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        None
    };
    Ok(Connection { net_type, addr_type, address, ip, ttl, address_count })
}

/// Parses `<media> <port>[/<count>] <proto> <fmt> ...`.
fn parse_media(value: &str) -> Result<MediaDescription<'_>, &'static str> {
    let mut words = value.split_ascii_whitespace();
    let (Some(media), Some(port), Some(proto)) = (words.next(), words.next(), words.next()) else {
        return Err("expected <media> <port> <proto> <fmt> ...");
    };
    let (port, port_count) = match port.split_once('/') {
        Some((port, count)) => (port, count.parse::<u16>().ok().filter(|&c| c > 0).ok_or("bad port count")?),
        None => (port, 1),
    };
    let port = port.parse::<u16>().map_err(|_| "port is not a number from 0 to 65535")?;
    Ok(MediaDescription {
        media,
        port,
        port_count,
        proto,
        formats: words.collect(),
        connection: None,
        rtpmaps: Vec::new(),
        ptime: None,
        direction: None,
        rtcp_port: None,
        rtcp_connection: None,
        rtcp_mux: false,
    })
}

/// Applies one `a=` line to the media section it is in, or to the session.
fn attribute<'a>(text: &'a str, sdp: &mut Sdp<'a>, media: Option<&mut MediaDescription<'a>>) {
    let (name, value) = match text.split_once(':') {
        Some((name, value)) => (name.trim(), value.trim()),
        None => (text.trim(), ""),
    };
    let direction = match name {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    };
    let Some(m) = media else {
        if direction.is_some() {
            sdp.direction = direction;
        }
        return;
    };
    if direction.is_some() {
        m.direction = direction;
        return;
    }
    match name {
        "rtpmap" => m.rtpmaps.extend(parse_rtpmap(value)),
        "ptime" => m.ptime = parse_ptime(value).or(m.ptime),
        "rtcp" => {
            let (port, address) = value.split_once(|c: char| c.is_ascii_whitespace()).unwrap_or((value, ""));
            if let Ok(port) = port.parse::<u16>() {
                m.rtcp_port = Some(port);
                m.rtcp_connection = parse_connection(address).ok();
            }
        }
        "rtcp-mux" => m.rtcp_mux = true,
        _ => {}
    }
}

/// `<payload type> <encoding>/<clock rate>[/<channels>]`.
fn parse_rtpmap(value: &str) -> Option<RtpMap<'_>> {
    let (pt, spec) = value.split_once(|c: char| c.is_ascii_whitespace())?;
    let payload_type = pt.parse::<u8>().ok().filter(|&p| p < 128)?;
    let mut parts = spec.trim().split('/');
    let encoding = parts.next().filter(|e| !e.is_empty())?;
    let clock_rate = parts.next()?.trim().parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.trim().parse::<u8>().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(RtpMap { payload_type, encoding, clock_rate, channels })
}

/// Milliseconds, whole or with a fraction (some devices write `20.0`).
fn parse_ptime(value: &str) -> Option<u32> {
    value.parse::<u32>().ok().or_else(|| {
        let ms = value.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0 && *v <= f64::from(u32::MAX))?;
        Some(ms.round() as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: Result<Sdp<'_>, DecodeError>) {
        assert_eq!(Sdp::parse(input), expected, "input {:?}", String::from_utf8_lossy(input));
    }

    fn parse(input: &str) -> Sdp<'_> {
        Sdp::parse(input.as_bytes()).expect("parses")
    }

    fn ip4(addr: &str) -> Connection<'_> {
        Connection {
            net_type: "IN",
            addr_type: "IP4",
            address: addr,
            ip: addr.parse().ok(),
            ttl: None,
            address_count: None,
        }
    }

    fn media<'a>(kind: &'a str, port: u16, proto: &'a str, formats: &[&'a str]) -> MediaDescription<'a> {
        MediaDescription {
            media: kind,
            port,
            port_count: 1,
            proto,
            formats: formats.to_vec(),
            connection: None,
            rtpmaps: Vec::new(),
            ptime: None,
            direction: None,
            rtcp_port: None,
            rtcp_connection: None,
            rtcp_mux: false,
        }
    }

    fn rtpmap(payload_type: u8, encoding: &str, clock_rate: u32, channels: Option<u8>) -> RtpMap<'_> {
        RtpMap { payload_type, encoding, clock_rate, channels }
    }

    #[test]
    fn offer_with_session_level_connection() {
        let offer = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0 8 97 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:97 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";
        let mut audio = media("audio", 49172, "RTP/AVP", &["0", "8", "97", "101"]);
        audio.rtpmaps = vec![
            rtpmap(0, "PCMU", 8000, None),
            rtpmap(97, "opus", 48000, Some(2)),
            rtpmap(101, "telephone-event", 8000, None),
        ];
        audio.ptime = Some(20);
        audio.direction = Some(Direction::SendRecv);
        check(
            offer.as_bytes(),
            Ok(Sdp {
                origin: Some("alice 2890844526 2890844526 IN IP4 atlanta.example.com"),
                session_name: Some("-"),
                connection: Some(ip4("192.0.2.101")),
                direction: None,
                media: vec![audio],
            }),
        );
    }

    #[test]
    fn answer_with_media_level_connections_and_directions() {
        let answer = "v=0\n\
o=bob 1 2 IN IP4 biloxi.example.com\n\
s=call\n\
a=recvonly\n\
t=0 0\n\
m=audio 3456 RTP/AVP 8\n\
c=IN IP4 198.51.100.2\n\
a=sendonly\n\
m=video 0 RTP/AVP 31\n\
m=image 6000 udptl t38\n\
c=IN IP4 198.51.100.3\n\
a=T38FaxVersion:0\n";
        let sdp = parse(answer);
        assert_eq!(sdp.direction, Some(Direction::RecvOnly));
        assert_eq!(sdp.connection, None);
        let mut audio = media("audio", 3456, "RTP/AVP", &["8"]);
        audio.connection = Some(ip4("198.51.100.2"));
        audio.direction = Some(Direction::SendOnly);
        let video = media("video", 0, "RTP/AVP", &["31"]);
        let mut image = media("image", 6000, "udptl", &["t38"]);
        image.connection = Some(ip4("198.51.100.3"));
        assert_eq!(sdp.media, [audio, video, image]);
        assert_eq!(sdp.media[0].effective_direction(&sdp), Direction::SendOnly);
        assert_eq!(sdp.media[1].effective_direction(&sdp), Direction::RecvOnly);
        assert_eq!(media("x", 0, "y", &[]).effective_direction(&Sdp::default()), Direction::SendRecv);
    }

    #[test]
    fn ipv6_and_multicast_connections() {
        let c = parse_connection;
        assert_eq!(
            c("IN IP6 2001:db8::1"),
            Ok(Connection { addr_type: "IP6", address: "2001:db8::1", ip: "2001:db8::1".parse().ok(), ..ip4("") })
        );
        assert_eq!(
            c("IN IP6 FF15::101/3"),
            Ok(Connection {
                addr_type: "IP6",
                address: "FF15::101",
                ip: "ff15::101".parse().ok(),
                address_count: Some(3),
                ..ip4("")
            })
        );
        assert_eq!(c("IN IP4 224.2.1.1/127"), Ok(Connection { ttl: Some(127), ..ip4("224.2.1.1") }));
        assert_eq!(
            c("IN IP4 224.2.1.1/127/3"),
            Ok(Connection { ttl: Some(127), address_count: Some(3), ..ip4("224.2.1.1") })
        );
        assert_eq!(c("IN IP4 host.example.com"), Ok(Connection { ip: None, ..ip4("host.example.com") }));
        assert_eq!(c("IN IP4 2001:db8::1"), Ok(Connection { ip: None, ..ip4("2001:db8::1") }));
        assert_eq!(c("IN IP4 0.0.0.0"), Ok(ip4("0.0.0.0")));
        assert_eq!(c("IN IP4"), Err("expected <nettype> <addrtype> <address>"));
        assert_eq!(c("IN IP4 /5"), Err("expected <nettype> <addrtype> <address>"));
        assert_eq!(c("IN IP4 224.2.1.1/300"), Err("bad /ttl or /count after the address"));
        assert_eq!(c("IN IP6 FF15::101/3/4"), Err("bad /ttl or /count after the address"));
        let sdp = parse("v=0\r\nc=IN IP6 ::1\r\nm=audio 5004 RTP/AVP 0\r\n");
        assert_eq!(sdp.connection.and_then(|c| c.ip), "::1".parse().ok());
    }

    #[test]
    fn rtcp_and_rtcp_mux() {
        let sdp = parse(
            "v=0\r\nm=audio 49170 RTP/AVP 0\r\na=rtcp:53020\r\nm=audio 49180 RTP/AVP 0\r\n\
a=rtcp:53020 IN IP4 126.16.64.4\r\nm=video 51372 RTP/SAVPF 96\r\na=rtcp-mux\r\na=rtcp:junk\r\n",
        );
        let got: Vec<_> = sdp.media.iter().map(|m| (m.rtcp_port, m.rtcp_connection, m.rtcp_mux)).collect();
        assert_eq!(
            got,
            [(Some(53020), None, false), (Some(53020), Some(ip4("126.16.64.4")), false), (None, None, true)]
        );
    }

    #[test]
    fn ports_counts_and_formats() {
        let sdp = parse("v=0\r\nm=video 49170/2 RTP/AVP 31 32\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nm=audio 1 RTP/AVP\r\n");
        let got: Vec<_> =
            sdp.media.iter().map(|m| (m.media, m.port, m.port_count, m.proto, m.formats.clone())).collect();
        assert_eq!(
            got,
            [
                ("video", 49170, 2, "RTP/AVP", vec!["31", "32"]),
                ("application", 9, 1, "UDP/DTLS/SCTP", vec!["webrtc-datachannel"]),
                ("audio", 1, 1, "RTP/AVP", vec![]),
            ]
        );
    }

    #[test]
    fn odd_attributes_are_ignored() {
        let sdp = parse(
            "v=0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:30\r\nm=audio 1 RTP/AVP 0 8 9\r\na=rtpmap:x PCMU/8000\r\na=rtpmap:200 X/8000\r\n\
a=rtpmap:8 PCMA\r\na=rtpmap:9 G722/8000/2/9\r\na=rtpmap:0 PCMU/8000/x\r\na=rtpmap:0\r\na=ptime:abc\r\na=ptime:20.4\r\n\
a=maxptime:40\r\na=\r\na=unknown\r\nx=whatever\r\n",
        );
        assert_eq!(sdp.media[0].rtpmaps, []);
        assert_eq!(sdp.media[0].ptime, Some(20));
        assert_eq!(parse("v=0\r\nm=audio 1 RTP/AVP 0\r\na=ptime: 30 \r\n").media[0].ptime, Some(30));
    }

    #[test]
    fn origin_and_name_stay_at_session_level() {
        let sdp = parse("v=0\r\no=a 1 1 IN IP4 h\r\ns=one\r\nm=audio 1 RTP/AVP 0\r\no=b\r\ns=two\r\n");
        assert_eq!((sdp.origin, sdp.session_name), (Some("a 1 1 IN IP4 h"), Some("one")));
        let sdp = parse("v=0\r\ns=caf\u{e9} \r\n");
        assert_eq!(sdp.session_name, Some("caf\u{e9}"));
        assert_eq!(Sdp::parse(b"v=0\r\ns=caf\xe9\r\n").map(|s| s.session_name), Ok(None));
    }

    #[test]
    fn blank_lines_and_lf_only_are_fine() {
        let sdp = parse("\r\nv=0\n\nm=audio 7078 RTP/AVP 0\n   \nc=IN IP4 10.0.0.1\n\n");
        assert_eq!(sdp.media[0].connection, Some(ip4("10.0.0.1")));
    }

    #[test]
    fn bad_lines_name_their_offset() {
        let invalid = |offset, field, reason| Err(DecodeError::invalid(Layer::Sdp, offset, field, reason));
        check(b"", invalid(0, "v", "empty session description"));
        check(b"\r\n\r\n", invalid(0, "v", "empty session description"));
        check(b"o=x\r\nv=0\r\n", invalid(0, "v", "the description does not start with v="));
        check(b"hello world", invalid(0, "line", "not a <type>=<value> line"));
        check(b"v=0\r\ns=x\r\nbad line\r\n", invalid(10, "line", "not a <type>=<value> line"));
        check(b"v=0\r\n=x\r\n", invalid(5, "line", "not a <type>=<value> line"));
        check(b"v=0\r\n1=x\r\n", invalid(5, "line", "not a <type>=<value> line"));
        check(b"v=0\r\nv\r\n", invalid(5, "line", "not a <type>=<value> line"));
        check(b"v=0\r\nc=IN IP4\r\n", invalid(7, "c", "expected <nettype> <addrtype> <address>"));
        check(b"v=0\r\nm=audio 1 RTP/AVP 0\r\nc=IN\r\n", invalid(28, "c", "expected <nettype> <addrtype> <address>"));
        check(b"v=0\r\nc=IN IP4 \xff\r\n", invalid(7, "c", "not UTF-8"));
        check(b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n", invalid(7, "m", "port is not a number from 0 to 65535"));
        check(b"v=0\r\nm=audio -1 RTP/AVP 0\r\n", invalid(7, "m", "port is not a number from 0 to 65535"));
        check(b"v=0\r\nm=audio 5/0 RTP/AVP 0\r\n", invalid(7, "m", "bad port count"));
        check(b"v=0\r\nm=audio 5\r\n", invalid(7, "m", "expected <media> <port> <proto> <fmt> ..."));
        check(b"v=0\r\nm=\xff 5 RTP/AVP 0\r\n", invalid(7, "m", "not UTF-8"));
        assert_eq!(
            Sdp::parse(b"v=0\r\nm=audio 1 RTP/AVP 0\r\nm=x").unwrap_err().to_string(),
            "sdp: invalid m at offset 28: expected <media> <port> <proto> <fmt> ..."
        );
    }
}
