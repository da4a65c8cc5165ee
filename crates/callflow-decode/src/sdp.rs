//! SDP session descriptions (RFC 4566 / RFC 8866): the parts that say where media flows.
//!
//! [`Sdp::parse`] reads the origin, the session name, the session-level connection and
//! direction, and every media description with its port, protocol, formats, connection,
//! `rtpmap`s, `ptime`, direction, `rtcp` port and `rtcp-mux`, and what makes media SRTP:
//! the SDES keys of `a=crypto` (RFC 4568, [`Crypto`]) and the DTLS-SRTP `a=fingerprint`
//! (RFC 5763). Values borrow from the body; only the lists (media, formats, rtpmaps,
//! crypto lines) allocate, and an inline key is decoded into a fixed array.
//!
//! Lines may end in CRLF or a bare LF, and blank lines are ignored. Lines of types this
//! module does not use, and attributes it does not know or cannot read, are skipped: one
//! odd attribute must not lose the media of a call. A line that is not `<letter>=<value>`,
//! a description that does not start with `v=`, and `c=` or `m=` lines without their
//! mandatory fields are errors that name the offset of the line.
//!
//! An `a=crypto` line that does not follow RFC 4568's grammar (or whose inline key does
//! not fit its suite) is not skipped silently either, since its keys are what decrypts the
//! call's SRTCP: the media stays, and [`Sdp::attribute_errors`] holds an error naming
//! `a=crypto`, the offset of its value and what is wrong.
//!
//! Which media is SRTP ([`MediaDescription::srtp_keying`]): a secure profile (`RTP/SAVP`,
//! `RTP/SAVPF`, `UDP/TLS/RTP/SAVP(F)`), and, best effort, an RTP profile with `a=crypto`
//! lines (some devices offer SDES keys under `RTP/AVP`). The keys are SDES when there are
//! `a=crypto` lines, DTLS-SRTP when a fingerprint (media or session level) comes with a
//! secure or DTLS profile; the suite is then negotiated in the DTLS handshake.

use crate::srtp::SrtpSuite;
use crate::{DecodeError, Layer};
use base64ct::{Base64, Base64Unpadded, Encoding};
use memchr::memchr;
use std::fmt;
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
    /// The session-level `a=fingerprint` (DTLS-SRTP, RFC 5763), the default for every
    /// media description.
    pub fingerprint: Option<Fingerprint<'a>>,
    /// Attributes this module reads that were present but malformed (today `a=crypto`),
    /// each naming the attribute and the offset of its value; the rest of the description
    /// is read all the same.
    pub attribute_errors: Vec<DecodeError>,
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
    /// The `a=crypto` lines (SDES, RFC 4568) that parsed, in order: the keys this
    /// description's sender encrypts with, one line per alternative offered.
    pub crypto: Vec<Crypto<'a>>,
    /// This section's `a=fingerprint` (DTLS-SRTP).
    pub fingerprint: Option<Fingerprint<'a>>,
}

impl MediaDescription<'_> {
    /// The direction in effect: this section's, else the session's, else send-receive.
    pub fn effective_direction(&self, session: &Sdp<'_>) -> Direction {
        self.direction.or(session.direction).unwrap_or(Direction::SendRecv)
    }

    /// How the keys of this media's SRTP are exchanged, or `None` when it is not SRTP
    /// (see the module documentation for the rules).
    pub fn srtp_keying(&self, session: &Sdp<'_>) -> Option<SrtpKeying> {
        let proto = self.proto.to_ascii_uppercase();
        if !proto.contains("RTP") {
            return None;
        }
        let secure = proto.contains("SAVP");
        if !self.crypto.is_empty() {
            Some(SrtpKeying::Sdes)
        } else if (secure || proto.contains("TLS")) && self.fingerprint.or(session.fingerprint).is_some() {
            Some(SrtpKeying::Dtls)
        } else if secure {
            Some(SrtpKeying::Other)
        } else {
            None
        }
    }
}

/// How the keys of SRTP media are exchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpKeying {
    /// SDP security descriptions (`a=crypto`, RFC 4568): the keys are in the SDP.
    Sdes,
    /// DTLS-SRTP (`a=fingerprint`, RFC 5763/5764): keys and suite come from a DTLS
    /// handshake on the media port.
    Dtls,
    /// A secure profile with neither (MIKEY, ZRTP, keys exchanged elsewhere).
    Other,
}

/// An `a=fingerprint:<hash function> <fingerprint>` attribute (RFC 8122).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint<'a> {
    /// The hash function, as written (`sha-256`, ...).
    pub hash: &'a str,
    /// The certificate's fingerprint, as written (colon-separated hex).
    pub value: &'a str,
}

/// An `a=crypto:<tag> <crypto-suite> <key-params> [<session-params>]` attribute (RFC 4568
/// section 9.1): SRTP keys sent in the clear of the (usually TLS-protected) signalling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crypto<'a> {
    /// The tag an answer uses to say which offered line it accepts (1 to 9 digits).
    pub tag: u32,
    /// The suite, [`SrtpSuite::Unknown`] for names this crate does not know.
    pub suite: SrtpSuite,
    /// The suite as written.
    pub suite_name: &'a str,
    /// The master keys (`inline:` key-params, at least one).
    pub keys: Vec<KeyParams>,
    /// The session parameters after the keys.
    pub session_params: Vec<SessionParam<'a>>,
}

impl Crypto<'_> {
    /// The key derivation rate's exponent (`KDR=n`: keys change every 2^n packets), 0 (never) by default.
    pub fn kdr(&self) -> u8 {
        self.session_params.iter().find_map(|p| if let SessionParam::Kdr(n) = p { Some(*n) } else { None }).unwrap_or(0)
    }

    /// Whether SRTCP is sent unencrypted (`UNENCRYPTED_SRTCP`; still authenticated).
    pub fn unencrypted_srtcp(&self) -> bool {
        self.session_params.contains(&SessionParam::UnencryptedSrtcp)
    }
}

/// One `inline:<key||salt>[|<lifetime>][|<MKI>:<length>]` key parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyParams {
    /// The master key and salt, decoded from base64.
    pub key_salt: KeySalt,
    /// The key's lifetime in packets (`2^n` or a number), when given.
    pub lifetime: Option<u64>,
    /// The master key identifier carried in each packet, when the sender uses one.
    pub mki: Option<Mki>,
}

/// A decoded master key and salt (at most [`KeySalt::MAX`] bytes, kept inline).
#[derive(Clone, PartialEq, Eq)]
pub struct KeySalt {
    bytes: [u8; KeySalt::MAX],
    len: u8,
}

impl KeySalt {
    /// The longest key and salt kept: AES-256's 32 bytes and a 14-byte salt fit, with room.
    pub const MAX: usize = 64;

    /// Makes one from `bytes`, or `None` when longer than [`KeySalt::MAX`].
    pub fn new(bytes: &[u8]) -> Option<KeySalt> {
        let mut out = KeySalt { bytes: [0; KeySalt::MAX], len: u8::try_from(bytes.len()).ok()? };
        out.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(out)
    }

    /// The key followed by the salt.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// Keys stay out of debug output: only their length shows.
impl fmt::Debug for KeySalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySalt({} bytes)", self.len)
    }
}

/// A master key identifier: its value and the bytes it takes in each packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mki {
    /// The identifier.
    pub value: u64,
    /// Its length in each SRTP/SRTCP packet, 1 to 128 bytes.
    pub len: u8,
}

/// An SRTP session parameter of `a=crypto` (RFC 4568 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionParam<'a> {
    /// `KDR=n`: session keys are derived again every 2^n packets.
    Kdr(u8),
    /// `UNENCRYPTED_SRTP`.
    UnencryptedSrtp,
    /// `UNENCRYPTED_SRTCP`.
    UnencryptedSrtcp,
    /// `UNAUTHENTICATED_SRTP`.
    UnauthenticatedSrtp,
    /// `WSH=n`: the replay window size.
    WindowSize(u32),
    /// Another parameter (`FEC_ORDER=`, `FEC_KEY=`, a future one), as written.
    Other(&'a str),
}

impl<'a> Crypto<'a> {
    /// Parses the value of an `a=crypto` attribute (what follows `crypto:`); the error
    /// says what is wrong, for a [`DecodeError`] naming the line.
    pub fn parse(value: &'a str) -> Result<Crypto<'a>, &'static str> {
        let mut words = value.split_ascii_whitespace();
        let (Some(tag), Some(suite_name), Some(keys)) = (words.next(), words.next(), words.next()) else {
            return Err("expected <tag> <crypto-suite> <key-params>");
        };
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err("tag is not 1 to 9 digits");
        }
        let tag = tag.parse().map_err(|_| "tag is not 1 to 9 digits")?;
        let suite = SrtpSuite::from_name(suite_name);
        let keys = keys.split(';').map(|k| key_params(k, suite)).collect::<Result<Vec<_>, _>>()?;
        let session_params = words.map(session_param).collect::<Result<Vec<_>, _>>()?;
        Ok(Crypto { tag, suite, suite_name, keys, session_params })
    }
}

/// `inline:<key||salt>[|<lifetime>][|<mki>:<length>]`.
fn key_params(text: &str, suite: SrtpSuite) -> Result<KeyParams, &'static str> {
    // ABNF's strings are case-insensitive: `INLINE:` is `inline:`.
    let info = match text.split_at_checked(7) {
        Some((method, info)) if method.eq_ignore_ascii_case("inline:") => info,
        _ => return Err("key method is not inline:"),
    };
    let mut parts = info.split('|');
    let encoded = parts.next().unwrap_or_default();
    let mut buf = [0u8; KeySalt::MAX];
    let not_base64 = "inline key is not base64 of at most 64 bytes";
    let decoded = if encoded.len() % 4 == 0 {
        Base64::decode(encoded, &mut buf).map_err(|_| not_base64)?
    } else {
        Base64Unpadded::decode(encoded, &mut buf).map_err(|_| not_base64)?
    };
    if decoded.is_empty() {
        return Err(not_base64);
    }
    if let (Some(key), Some(salt)) = (suite.master_key_len(), suite.master_salt_len()) {
        if decoded.len() != key + salt {
            return Err("inline key is not the length of the suite's master key and salt");
        }
    }
    let key_salt = KeySalt::new(decoded).ok_or(not_base64)?;
    let (mut lifetime, mut mki) = (None, None);
    for part in parts {
        if let Some((value, len)) = part.split_once(':') {
            if mki.is_some() {
                return Err("more than one MKI");
            }
            let len = len.parse::<u8>().ok().filter(|l| (1..=128).contains(l)).ok_or("MKI length is not 1 to 128")?;
            let value = value.parse::<u64>().map_err(|_| "MKI value is not a number below 2^64")?;
            if len < 8 && value >> (u32::from(len) * 8) != 0 {
                return Err("MKI value does not fit its length");
            }
            mki = Some(Mki { value, len });
        } else {
            if lifetime.is_some() || mki.is_some() {
                return Err("lifetime out of place");
            }
            let bad = "lifetime is not 2^n or a number";
            lifetime = Some(match part.strip_prefix("2^") {
                Some(exp) => {
                    1u64.checked_shl(exp.parse::<u32>().map_err(|_| bad)?).filter(|_| exp.len() <= 2).ok_or(bad)?
                }
                None => part.parse::<u64>().map_err(|_| bad)?,
            });
        }
    }
    Ok(KeyParams { key_salt, lifetime, mki })
}

/// One session parameter.
fn session_param(text: &str) -> Result<SessionParam<'_>, &'static str> {
    // ABNF's strings are case-insensitive.
    let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    Ok(match text.split_once('=') {
        Some((k, n)) if is(k, "KDR") => {
            SessionParam::Kdr(n.parse::<u8>().ok().filter(|&n| n <= 24).ok_or("KDR is not 0 to 24")?)
        }
        Some((k, n)) if is(k, "WSH") => SessionParam::WindowSize(n.parse().map_err(|_| "WSH is not a number")?),
        None if is(text, "UNENCRYPTED_SRTP") => SessionParam::UnencryptedSrtp,
        None if is(text, "UNENCRYPTED_SRTCP") => SessionParam::UnencryptedSrtcp,
        None if is(text, "UNAUTHENTICATED_SRTP") => SessionParam::UnauthenticatedSrtp,
        _ => SessionParam::Other(text),
    })
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
                        attribute(text, value_at, &mut sdp, media.as_mut());
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
        crypto: Vec::new(),
        fingerprint: None,
    })
}

/// Applies one `a=` line (its text at offset `at`) to the media section it is in, or to the session.
fn attribute<'a>(text: &'a str, at: usize, sdp: &mut Sdp<'a>, media: Option<&mut MediaDescription<'a>>) {
    let (name, value) = match text.split_once(':') {
        Some((name, value)) => (name.trim(), value.trim()),
        None => (text.trim(), ""),
    };
    if name == "fingerprint" {
        let fingerprint = value
            .split_once(|c: char| c.is_ascii_whitespace())
            .map(|(hash, value)| Fingerprint { hash, value: value.trim() });
        match media {
            Some(m) => m.fingerprint = fingerprint.or(m.fingerprint),
            None => sdp.fingerprint = fingerprint.or(sdp.fingerprint),
        }
        return;
    }
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
        "crypto" => match Crypto::parse(value) {
            Ok(crypto) => m.crypto.push(crypto),
            Err(reason) => {
                // The offset of the value: where in the line it starts, past `crypto:`.
                let offset = at + (value.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
                sdp.attribute_errors.push(DecodeError::invalid(Layer::Sdp, offset, "a=crypto", reason));
            }
        },
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
            crypto: Vec::new(),
            fingerprint: None,
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
                fingerprint: None,
                attribute_errors: Vec::new(),
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

    /// One key of a crypto line: (tag, suite, key||salt, lifetime, MKI).
    type Key = (u32, SrtpSuite, Vec<u8>, Option<u64>, Option<Mki>);

    /// The keys of `m`'s crypto lines.
    fn keys(m: &MediaDescription<'_>) -> Vec<Key> {
        m.crypto
            .iter()
            .flat_map(|c| c.keys.iter().map(|k| (c.tag, c.suite, k.key_salt.as_bytes().to_vec(), k.lifetime, k.mki)))
            .collect()
    }

    #[test]
    fn crypto_lines_give_their_suites_keys_lifetimes_and_mkis() {
        let sdp = parse(
            "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/SAVP 0\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|1048576 KDR=3 UNENCRYPTED_SRTCP WSH=128 FEC_ORDER=FEC_SRTP\r\n\
a=crypto:3 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==\r\n\
a=crypto:4 AEAD_AES_256_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKis\r\n\
a=crypto:5 AES_256_CM_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLQ==|2^31;inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLQ==|2^31\r\n\
a=crypto:999999999 FANCY_NEW_SUITE inline:AAEC\r\n",
        );
        let first = base64_30("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR");
        let count = |n: u8| (0..n).collect::<Vec<u8>>();
        use SrtpSuite::*;
        assert_eq!(
            keys(&sdp.media[0]),
            [
                (1, AesCm128HmacSha1_80, first, Some(1 << 20), Some(Mki { value: 1, len: 32 })),
                (2, AesCm128HmacSha1_32, count(30), Some(1_048_576), None),
                (3, AeadAes128Gcm, count(28), None, None),
                (4, AeadAes256Gcm, count(44), None, None),
                (5, AesCm256HmacSha1_80, count(46), Some(1 << 31), None),
                (5, AesCm256HmacSha1_80, count(46), Some(1 << 31), None),
                (999_999_999, Unknown, vec![0, 1, 2], None, None),
            ]
        );
        let second = &sdp.media[0].crypto[1];
        assert_eq!(
            second.session_params,
            [
                SessionParam::Kdr(3),
                SessionParam::UnencryptedSrtcp,
                SessionParam::WindowSize(128),
                SessionParam::Other("FEC_ORDER=FEC_SRTP")
            ]
        );
        assert_eq!((second.kdr(), second.unencrypted_srtcp()), (3, true));
        assert_eq!((sdp.media[0].crypto[0].kdr(), sdp.media[0].crypto[0].unencrypted_srtcp()), (0, false));
        assert_eq!(sdp.media[0].crypto[5].suite_name, "FANCY_NEW_SUITE");
        assert_eq!(sdp.attribute_errors, []);
        assert_eq!(format!("{:?}", sdp.media[0].crypto[2].keys[0].key_salt), "KeySalt(28 bytes)");
        // ABNF's strings are case-insensitive.
        let lower = Crypto::parse(
            "7 aes_cm_128_hmac_sha1_32 INLINE:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd kdr=2 unencrypted_srtcp",
        );
        let lower = lower.expect("parses");
        assert_eq!((lower.suite, lower.kdr(), lower.unencrypted_srtcp()), (SrtpSuite::AesCm128HmacSha1_32, 2, true));
    }

    fn base64_30(text: &str) -> Vec<u8> {
        let mut buf = [0; 30];
        Base64::decode(text, &mut buf).expect("base64").to_vec()
    }

    #[test]
    fn a_malformed_crypto_line_is_an_error_naming_it_and_the_media_stays() {
        let bad = |line: &str| {
            let text = format!("v=0\r\nm=audio 5004 RTP/SAVP 0\r\na={line}\r\na=crypto:9 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==\r\n");
            let sdp = Sdp::parse(text.as_bytes()).expect("the description still parses");
            assert_eq!(sdp.media.len(), 1);
            // The good line beside the bad one is kept.
            assert_eq!(sdp.media[0].crypto.iter().map(|c| c.tag).collect::<Vec<_>>(), [9], "{line}");
            sdp.attribute_errors.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        let err = |reason: &str| vec![format!("sdp: invalid a=crypto at offset 39: {reason}")];
        assert_eq!(bad("crypto:1 AES_CM_128_HMAC_SHA1_80"), err("expected <tag> <crypto-suite> <key-params>"));
        assert_eq!(bad("crypto:"), err("expected <tag> <crypto-suite> <key-params>"));
        assert_eq!(bad("crypto:x AES_CM_128_HMAC_SHA1_80 inline:AAAA"), err("tag is not 1 to 9 digits"));
        assert_eq!(bad("crypto:1234567890 AES_CM_128_HMAC_SHA1_80 inline:AAAA"), err("tag is not 1 to 9 digits"));
        assert_eq!(bad("crypto:1 AES_CM_128_HMAC_SHA1_80 uri:x"), err("key method is not inline:"));
        assert_eq!(
            bad("crypto:1 AES_CM_128_HMAC_SHA1_80 inline:!!!!"),
            err("inline key is not base64 of at most 64 bytes")
        );
        assert_eq!(
            bad("crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            err("inline key is not base64 of at most 64 bytes")
        );
        let long = "A".repeat(100);
        assert_eq!(bad(&format!("crypto:1 X inline:{long}")), err("inline key is not base64 of at most 64 bytes"));
        assert_eq!(
            bad("crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw=="),
            err("inline key is not the length of the suite's master key and salt")
        );
        let key = "inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";
        assert_eq!(bad(&format!("crypto:1 AES_CM_128_HMAC_SHA1_80 {key}|1:0")), err("MKI length is not 1 to 128"));
        assert_eq!(bad(&format!("crypto:1 AES_CM_128_HMAC_SHA1_80 {key}|1:200")), err("MKI length is not 1 to 128"));
        assert_eq!(
            bad(&format!("crypto:1 AES_CM_128_HMAC_SHA1_80 {key}|256:1")),
            err("MKI value does not fit its length")
        );
        assert_eq!(
            bad(&format!("crypto:1 AES_CM_128_HMAC_SHA1_80 {key}|99999999999999999999:9")),
            err("MKI value is not a number below 2^64")
        );
        assert_eq!(bad(&format!("crypto:1 AES_CM_128_HMAC_SHA1_80 {key}|1:4|2:4")), err("more than one MKI"));
        assert_eq!(bad(&format!("crypto:1 AES_CM_128_HMAC_SHA1_80 {key}|1:4|2^20")), err("lifetime out of place"));
        assert_eq!(
            bad(&format!("crypto:1 AES_CM_128_HMAC_SHA1_80 {key}|2^64")),
            err("lifetime is not 2^n or a number")
        );
        assert_eq!(
            bad(&format!("crypto:1 AES_CM_128_HMAC_SHA1_80 {key}|forever")),
            err("lifetime is not 2^n or a number")
        );
        assert_eq!(bad(&format!("crypto:1 AES_CM_128_HMAC_SHA1_80 {key} KDR=25")), err("KDR is not 0 to 24"));
        assert_eq!(bad(&format!("crypto:1 AES_CM_128_HMAC_SHA1_80 {key} WSH=x")), err("WSH is not a number"));
        // Where the line sits is what the offset names: here after another attribute.
        let sdp = parse("v=0\r\nm=audio 1 RTP/SAVP 0\r\na=ptime:20\r\na=crypto: 1 X\r\n");
        assert_eq!(
            sdp.attribute_errors,
            [DecodeError::invalid(Layer::Sdp, 49, "a=crypto", "expected <tag> <crypto-suite> <key-params>")]
        );
    }

    #[test]
    fn which_media_is_srtp_and_how_its_keys_come() {
        let crypto = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\r\n";
        let fp = "a=fingerprint:sha-256 AB:CD\r\n";
        let keying = |session: &str, m: &str, attrs: &str| format!("v=0\r\n{session}m=audio 5004 {m} 0\r\n{attrs}");
        let cases = [
            ("", "RTP/AVP", "", None),
            ("", "RTP/SAVP", "", Some(SrtpKeying::Other)),
            ("", "RTP/SAVPF", crypto, Some(SrtpKeying::Sdes)),
            ("", "RTP/AVP", crypto, Some(SrtpKeying::Sdes)),
            ("", "UDP/TLS/RTP/SAVPF", fp, Some(SrtpKeying::Dtls)),
            (fp, "UDP/TLS/RTP/SAVP", "", Some(SrtpKeying::Dtls)),
            (fp, "RTP/SAVP", "", Some(SrtpKeying::Dtls)),
            // A fingerprint under a plain profile is not DTLS-SRTP: the media is RTP.
            (fp, "RTP/AVP", "", None),
            ("", "udptl", crypto, None),
        ];
        for (session, proto, attrs, expected) in cases {
            let text = keying(session, proto, attrs);
            let sdp = Sdp::parse(text.as_bytes()).expect("parses");
            assert_eq!(sdp.media[0].srtp_keying(&sdp), expected, "{session:?} {proto} {attrs:?}");
        }
        let sdp =
            parse("v=0\r\na=fingerprint:sha-1 4A:AD\r\nm=audio 1 RTP/SAVP 0\r\na=fingerprint:sha-256  12:34 \r\n");
        assert_eq!(sdp.fingerprint, Some(Fingerprint { hash: "sha-1", value: "4A:AD" }));
        assert_eq!(sdp.media[0].fingerprint, Some(Fingerprint { hash: "sha-256", value: "12:34" }));
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
