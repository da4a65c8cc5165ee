//! HEP, the Homer Encapsulation Protocol: how VoIP platforms (Kamailio's siptrace, OpenSIPS, FreeSWITCH, Asterisk, heplify) mirror the packets they see to a collector.
//!
//! **HEP v3** (sipcapture's HEP3 specification, rev. 12): the magic `HEP3`, a 16-bit total
//! length counting the whole packet, then chunks. Each chunk is a 6-byte header (16-bit
//! vendor id, 16-bit type, 16-bit length counting the header) and its data. The generic
//! chunks (vendor 0) this module reads are listed in [`chunk`]; every other chunk,
//! whatever its vendor, is skipped by its length and counted in
//! [`HepPacket::unknown_chunks`]. A chunk repeated keeps its last value, as sipcapture's
//! own decoders do.
//!
//! **HEP v1 and v2** (the older agents' binary header): version, header length, address
//! family, IP protocol, the two ports (network order), the two addresses (4 or 16 bytes
//! each), and in v2 a time header of seconds, microseconds and a 16-bit capture id, which
//! the agents write in their own byte order with C struct padding (12 bytes): read here
//! as little-endian, the order of every agent platform in use (x86, ARM). The payload is
//! the rest of the datagram. HEP v1/v2 have no length field, so they only travel over
//! UDP; over TCP only HEP v3 can be framed ([`frame_packet`]).
//!
//! Everything borrows the packet: [`HepPacket`] holds numbers and slices. Only
//! [`HepPacket::payload_bytes`] allocates, to inflate a zlib-compressed payload (chunk
//! 16), bounded by [`MAX_INFLATED`]. Bad input is expected: a chunk length shorter than
//! its header or past the packet's end, a total length that disagrees with the datagram,
//! an address of the wrong size; each gives a [`DecodeError`] of layer
//! [`Layer::Hep`] naming the field and its offset from the start of the HEP packet.
//!
//! [`Hep3Builder`] writes HEP v3 packets (for tests and for relaying), chunk by chunk in
//! the order it is called, as sipcapture's encoders lay them out.

use crate::tcp::Framing;
use crate::{need, DecodeError, Layer, Timestamp};
use nom::number::complete::{be_u16, be_u32};
use nom::sequence::tuple;
use nom::IResult;
use std::borrow::Cow;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The magic at the start of a HEP v3 packet.
pub const MAGIC_V3: &[u8; 4] = b"HEP3";
/// Length of the HEP v3 packet header (magic and total length).
pub const HEADER_LEN: usize = 6;
/// Length of a chunk header (vendor, type, length).
pub const CHUNK_HEADER_LEN: usize = 6;
/// The port HEP collectors listen on by convention.
pub const PORT: u16 = 9060;
/// The most a compressed payload may inflate to (1 MiB): a SIP message is far smaller, so
/// more is a hostile or broken packet, refused rather than allocated.
pub const MAX_INFLATED: usize = 1 << 20;

/// The generic chunk types (vendor 0) of HEP v3.
pub mod chunk {
    /// IP protocol family: 2 IPv4, 10 IPv6 (u8).
    pub const IP_FAMILY: u16 = 1;
    /// IP protocol id: 17 UDP, 6 TCP, 132 SCTP (u8).
    pub const IP_PROTO: u16 = 2;
    /// IPv4 source address.
    pub const IPV4_SRC: u16 = 3;
    /// IPv4 destination address.
    pub const IPV4_DST: u16 = 4;
    /// IPv6 source address.
    pub const IPV6_SRC: u16 = 5;
    /// IPv6 destination address.
    pub const IPV6_DST: u16 = 6;
    /// Source port (u16).
    pub const SRC_PORT: u16 = 7;
    /// Destination port (u16).
    pub const DST_PORT: u16 = 8;
    /// Capture time, seconds since the Unix epoch (u32).
    pub const TS_SEC: u16 = 9;
    /// Capture time, microseconds within the second (u32).
    pub const TS_USEC: u16 = 10;
    /// What the payload is (u8, see [`super::ProtoType`]).
    pub const PROTO_TYPE: u16 = 11;
    /// The capture agent's id (u32).
    pub const CAPTURE_ID: u16 = 12;
    /// Keep-alive timer (u16, seconds).
    pub const KEEP_ALIVE: u16 = 13;
    /// The authentication key (text).
    pub const AUTH_KEY: u16 = 14;
    /// The captured payload.
    pub const PAYLOAD: u16 = 15;
    /// The captured payload, zlib-compressed.
    pub const COMPRESSED_PAYLOAD: u16 = 16;
    /// An id correlating this packet with others (a Call-ID for RTCP reports and logs).
    pub const CORRELATION_ID: u16 = 17;
    /// The VLAN id (u16).
    pub const VLAN: u16 = 18;
    /// The capture agent's group name (text).
    pub const GROUP_ID: u16 = 19;
    /// The capture node's name (text).
    pub const NODE_NAME: u16 = 24;
}

/// The HEP version of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HepVersion {
    /// HEP v1: addresses and ports, no time.
    V1,
    /// HEP v2: v1 plus time and a 16-bit capture id.
    V2,
    /// HEP v3: chunks.
    V3,
}

/// What a HEP packet's payload is (chunk 11): the types sipcapture defines; any other
/// value is kept as [`ProtoType::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtoType {
    /// 1: a SIP message.
    Sip,
    /// 2: XMPP.
    Xmpp,
    /// 3: SDP.
    Sdp,
    /// 4: RTP.
    Rtp,
    /// 5: an RTCP report, as JSON.
    RtcpJson,
    /// 6: MGCP.
    Mgcp,
    /// 7: MEGACO (H.248).
    Megaco,
    /// 8: M2UA.
    M2ua,
    /// 9: M3UA.
    M3ua,
    /// 10: IAX.
    Iax,
    /// 11: H.322.
    H322,
    /// 12: H.321.
    H321,
    /// 32: QoS statistics as JSON.
    QosJson,
    /// 34: RTP agent statistics as JSON.
    RtpAgentJson,
    /// 35: RTCP XR as JSON.
    RtcpXrJson,
    /// 53: DNS.
    Dns,
    /// 100: a log line.
    Log,
    /// Any other value.
    Other(u8),
}

impl ProtoType {
    /// The type for the chunk's value.
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => ProtoType::Sip,
            2 => ProtoType::Xmpp,
            3 => ProtoType::Sdp,
            4 => ProtoType::Rtp,
            5 => ProtoType::RtcpJson,
            6 => ProtoType::Mgcp,
            7 => ProtoType::Megaco,
            8 => ProtoType::M2ua,
            9 => ProtoType::M3ua,
            10 => ProtoType::Iax,
            11 => ProtoType::H322,
            12 => ProtoType::H321,
            32 => ProtoType::QosJson,
            34 => ProtoType::RtpAgentJson,
            35 => ProtoType::RtcpXrJson,
            53 => ProtoType::Dns,
            100 => ProtoType::Log,
            other => ProtoType::Other(other),
        }
    }

    /// The chunk's value for this type.
    pub fn as_u8(self) -> u8 {
        match self {
            ProtoType::Sip => 1,
            ProtoType::Xmpp => 2,
            ProtoType::Sdp => 3,
            ProtoType::Rtp => 4,
            ProtoType::RtcpJson => 5,
            ProtoType::Mgcp => 6,
            ProtoType::Megaco => 7,
            ProtoType::M2ua => 8,
            ProtoType::M3ua => 9,
            ProtoType::Iax => 10,
            ProtoType::H322 => 11,
            ProtoType::H321 => 12,
            ProtoType::QosJson => 32,
            ProtoType::RtpAgentJson => 34,
            ProtoType::RtcpXrJson => 35,
            ProtoType::Dns => 53,
            ProtoType::Log => 100,
            ProtoType::Other(v) => v,
        }
    }
}

/// The payload of a HEP packet, as it travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// The payload itself (chunk 15, or the rest of a v1/v2 datagram).
    Plain(&'a [u8]),
    /// The payload compressed with zlib (chunk 16).
    Zlib(&'a [u8]),
}

/// One chunk of a HEP v3 packet, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The vendor id (0 for the generic chunks).
    pub vendor: u16,
    /// The chunk type.
    pub kind: u16,
    /// The chunk's data, without its header.
    pub data: &'a [u8],
    /// Offset of the chunk header from the start of the packet.
    pub offset: usize,
}

/// A decoded HEP packet (any version): the fields it carried, borrowed from the packet.
/// A field the packet did not carry is `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HepPacket<'a> {
    /// The version; `None` only for a default value.
    pub version: Option<HepVersion>,
    /// The total length from the v3 header (the datagram's length for v1/v2).
    pub length: usize,
    /// IP protocol family (2 IPv4, 10 IPv6).
    pub ip_family: Option<u8>,
    /// IP protocol id (17 UDP, 6 TCP, 132 SCTP).
    pub ip_proto: Option<u8>,
    /// The captured packet's source address.
    pub src_ip: Option<IpAddr>,
    /// The captured packet's destination address.
    pub dst_ip: Option<IpAddr>,
    /// The captured packet's source port.
    pub src_port: Option<u16>,
    /// The captured packet's destination port.
    pub dst_port: Option<u16>,
    /// Capture time, seconds.
    pub ts_sec: Option<u32>,
    /// Capture time, microseconds.
    pub ts_usec: Option<u32>,
    /// What the payload is (chunk 11's raw value).
    pub proto_type: Option<u8>,
    /// The capture agent's id (16 bits in v2).
    pub capture_id: Option<u32>,
    /// The keep-alive timer.
    pub keep_alive: Option<u16>,
    /// The authentication key.
    pub auth_key: Option<&'a [u8]>,
    /// The payload.
    pub payload: Option<Payload<'a>>,
    /// The correlation id.
    pub correlation_id: Option<&'a [u8]>,
    /// The VLAN id.
    pub vlan: Option<u16>,
    /// The capture agent's group.
    pub group_id: Option<&'a [u8]>,
    /// The capture node's name.
    pub node_name: Option<&'a [u8]>,
    /// Chunks skipped: other vendors' and generic types this module does not read.
    pub unknown_chunks: u16,
}

impl<'a> HepPacket<'a> {
    /// Decodes the HEP packet (v1, v2 or v3) that `buf` holds, all of it: trailing bytes
    /// after a v3 packet's length are an error, since a datagram holds one packet.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        need(Layer::Hep, buf, 0, 1)?;
        match buf[0] {
            b'H' => Self::parse_v3(buf),
            1 | 2 => Self::parse_v2(buf),
            _ => Err(DecodeError::invalid(Layer::Hep, 0, "version", "neither HEP3 nor 1 or 2")),
        }
    }

    /// Decodes a HEP v3 packet.
    pub fn parse_v3(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let length = v3_length(buf)?;
        if buf.len() < length {
            return Err(DecodeError::truncated(Layer::Hep, 0, length, buf.len()));
        }
        if buf.len() > length {
            return Err(DecodeError::invalid(Layer::Hep, 4, "total length", "shorter than the datagram"));
        }
        let mut p = HepPacket { version: Some(HepVersion::V3), length, ..HepPacket::default() };
        for chunk in Chunks::new(buf) {
            p.apply(chunk?)?;
        }
        Ok(p)
    }

    fn apply(&mut self, c: Chunk<'a>) -> Result<(), DecodeError> {
        if c.vendor != 0 {
            self.unknown_chunks = self.unknown_chunks.saturating_add(1);
            return Ok(());
        }
        match c.kind {
            chunk::IP_FAMILY => self.ip_family = Some(fixed::<1>(c, "ip family")?[0]),
            chunk::IP_PROTO => self.ip_proto = Some(fixed::<1>(c, "ip protocol")?[0]),
            chunk::IPV4_SRC => self.src_ip = Some(Ipv4Addr::from(fixed::<4>(c, "ipv4 source")?).into()),
            chunk::IPV4_DST => self.dst_ip = Some(Ipv4Addr::from(fixed::<4>(c, "ipv4 destination")?).into()),
            chunk::IPV6_SRC => self.src_ip = Some(Ipv6Addr::from(fixed::<16>(c, "ipv6 source")?).into()),
            chunk::IPV6_DST => self.dst_ip = Some(Ipv6Addr::from(fixed::<16>(c, "ipv6 destination")?).into()),
            chunk::SRC_PORT => self.src_port = Some(u16::from_be_bytes(fixed(c, "source port")?)),
            chunk::DST_PORT => self.dst_port = Some(u16::from_be_bytes(fixed(c, "destination port")?)),
            chunk::TS_SEC => self.ts_sec = Some(u32::from_be_bytes(fixed(c, "timestamp seconds")?)),
            chunk::TS_USEC => self.ts_usec = Some(u32::from_be_bytes(fixed(c, "timestamp microseconds")?)),
            chunk::PROTO_TYPE => self.proto_type = Some(fixed::<1>(c, "protocol type")?[0]),
            chunk::CAPTURE_ID => {
                // The specification says 32 bits; some agents send the v2-era 16.
                self.capture_id = Some(match c.data.len() {
                    2 => u16::from_be_bytes([c.data[0], c.data[1]]).into(),
                    _ => u32::from_be_bytes(fixed(c, "capture agent id")?),
                })
            }
            chunk::KEEP_ALIVE => self.keep_alive = Some(u16::from_be_bytes(fixed(c, "keep-alive timer")?)),
            chunk::AUTH_KEY => self.auth_key = Some(text(c.data)),
            chunk::PAYLOAD => self.payload = Some(Payload::Plain(c.data)),
            chunk::COMPRESSED_PAYLOAD => self.payload = Some(Payload::Zlib(c.data)),
            chunk::CORRELATION_ID => self.correlation_id = Some(text(c.data)),
            chunk::VLAN => self.vlan = Some(u16::from_be_bytes(fixed(c, "vlan id")?)),
            chunk::GROUP_ID => self.group_id = Some(text(c.data)),
            chunk::NODE_NAME => self.node_name = Some(text(c.data)),
            _ => self.unknown_chunks = self.unknown_chunks.saturating_add(1),
        }
        Ok(())
    }

    /// Decodes a HEP v1 or v2 packet.
    pub fn parse_v2(buf: &'a [u8]) -> Result<Self, DecodeError> {
        need(Layer::Hep, buf, 0, 8)?;
        let version = match buf[0] {
            1 => HepVersion::V1,
            2 => HepVersion::V2,
            _ => return Err(DecodeError::invalid(Layer::Hep, 0, "version", "not 1 or 2")),
        };
        let (family, proto) = (buf[2], buf[3]);
        let addr_len = match family {
            2 => 4,
            10 => 16,
            _ => return Err(DecodeError::invalid(Layer::Hep, 2, "ip family", "neither 2 (IPv4) nor 10 (IPv6)")),
        };
        let mut at = 8;
        need(Layer::Hep, buf, at, 2 * addr_len)?;
        let (src, dst) = if addr_len == 4 {
            let s: [u8; 4] = buf[at..at + 4].try_into().unwrap_or_default();
            let d: [u8; 4] = buf[at + 4..at + 8].try_into().unwrap_or_default();
            (IpAddr::from(s), IpAddr::from(d))
        } else {
            let s: [u8; 16] = buf[at..at + 16].try_into().unwrap_or_default();
            let d: [u8; 16] = buf[at + 16..at + 32].try_into().unwrap_or_default();
            (IpAddr::from(s), IpAddr::from(d))
        };
        at += 2 * addr_len;
        let mut p = HepPacket {
            version: Some(version),
            length: buf.len(),
            ip_family: Some(family),
            ip_proto: Some(proto),
            src_ip: Some(src),
            dst_ip: Some(dst),
            src_port: Some(u16::from_be_bytes([buf[4], buf[5]])),
            dst_port: Some(u16::from_be_bytes([buf[6], buf[7]])),
            ..HepPacket::default()
        };
        if version == HepVersion::V2 {
            // Seconds, microseconds and the capture id in the agent's (little-endian)
            // order, padded as the C struct is to 12 bytes.
            need(Layer::Hep, buf, at, 12)?;
            let le32 = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
            p.ts_sec = Some(le32(at));
            p.ts_usec = Some(le32(at + 4));
            p.capture_id = Some(u16::from_le_bytes([buf[at + 8], buf[at + 9]]).into());
            at += 12;
        }
        // v1/v2 agents only ever sent SIP.
        p.proto_type = Some(ProtoType::Sip.as_u8());
        p.payload = Some(Payload::Plain(buf.get(at..).unwrap_or_default()));
        Ok(p)
    }

    /// What the payload is.
    pub fn proto(&self) -> Option<ProtoType> {
        self.proto_type.map(ProtoType::from_u8)
    }

    /// The capture time from the seconds and microseconds chunks (`None` without seconds).
    /// Microseconds of a second or more are kept as they add up, as agents that send
    /// milliseconds there would have them read.
    pub fn timestamp(&self) -> Option<Timestamp> {
        let sec = i64::from(self.ts_sec?);
        let usec = i64::from(self.ts_usec.unwrap_or(0));
        Some(Timestamp::from_nanos(sec * 1_000_000_000 + usec * 1_000))
    }

    /// The payload's bytes: borrowed when plain, inflated (at most [`MAX_INFLATED`] bytes)
    /// when compressed. Empty when the packet had none.
    pub fn payload_bytes(&self) -> Result<Cow<'a, [u8]>, DecodeError> {
        match self.payload {
            None => Ok(Cow::Borrowed(&[])),
            Some(Payload::Plain(bytes)) => Ok(Cow::Borrowed(bytes)),
            Some(Payload::Zlib(bytes)) => inflate(bytes).map(Cow::Owned),
        }
    }
}

/// Inflates a zlib stream of at most [`MAX_INFLATED`] bytes.
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut reader = flate2::read::ZlibDecoder::new(bytes).take(MAX_INFLATED as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::invalid(Layer::Hep, 0, "compressed payload", "not a valid zlib stream"))?;
    if out.len() > MAX_INFLATED {
        return Err(DecodeError::invalid(Layer::Hep, 0, "compressed payload", "inflates beyond 1 MiB"));
    }
    Ok(out)
}

/// Text chunks may end with the C string's NUL (Kamailio sends it); it is not part of the value.
fn text(data: &[u8]) -> &[u8] {
    data.strip_suffix(&[0]).unwrap_or(data)
}

/// A chunk's data as exactly `N` bytes, or an error naming the field.
fn fixed<const N: usize>(c: Chunk<'_>, field: &'static str) -> Result<[u8; N], DecodeError> {
    c.data
        .try_into()
        .map_err(|_| DecodeError::invalid(Layer::Hep, c.offset + 4, field, "chunk length does not fit the field"))
}

/// The total length a HEP v3 header at the start of `buf` declares (checking the magic
/// and that the length covers at least the header).
fn v3_length(buf: &[u8]) -> Result<usize, DecodeError> {
    let header: IResult<&[u8], (u32, u16)> = tuple((be_u32, be_u16))(buf);
    let Ok((_, (magic, length))) = header else {
        return Err(DecodeError::truncated(Layer::Hep, 0, HEADER_LEN, buf.len()));
    };
    if magic.to_be_bytes() != *MAGIC_V3 {
        return Err(DecodeError::invalid(Layer::Hep, 0, "magic", "not HEP3"));
    }
    let length = usize::from(length);
    if length < HEADER_LEN {
        return Err(DecodeError::invalid(Layer::Hep, 4, "total length", "shorter than the 6-byte header"));
    }
    Ok(length)
}

/// Iterator over the chunks of a HEP v3 packet (the header is skipped; `buf` is the whole
/// packet, up to its total length).
///
/// Each item is a chunk or the error that ended the walk; nothing follows an error.
#[derive(Clone, Debug)]
pub struct Chunks<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Chunks<'a> {
    /// The chunks of the packet `buf` (its first [`HEADER_LEN`] bytes are the header).
    pub fn new(buf: &'a [u8]) -> Self {
        Chunks { buf, pos: HEADER_LEN, failed: false }
    }

    fn next_chunk(&mut self) -> Result<Chunk<'a>, DecodeError> {
        let offset = self.pos;
        let rest = self.buf.get(offset..).unwrap_or_default();
        let fields: IResult<&[u8], (u16, u16, u16)> = tuple((be_u16, be_u16, be_u16))(rest);
        let Ok((_, (vendor, kind, length))) = fields else {
            return Err(DecodeError::truncated(Layer::Hep, offset, CHUNK_HEADER_LEN, rest.len()));
        };
        let length = usize::from(length);
        if length < CHUNK_HEADER_LEN {
            return Err(DecodeError::invalid(
                Layer::Hep,
                offset + 4,
                "chunk length",
                "shorter than the 6-byte chunk header",
            ));
        }
        if rest.len() < length {
            return Err(DecodeError::truncated(Layer::Hep, offset, length, rest.len()));
        }
        self.pos = offset + length;
        Ok(Chunk { vendor, kind, data: &rest[CHUNK_HEADER_LEN..length], offset })
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Result<Chunk<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let item = self.next_chunk();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Frames HEP v3 packets sent back to back on a TCP stream: the packet at the start of
/// `buf` by its total length. Bytes that do not start with `HEP3` are a stream that lost
/// its framing, an error: a collector closes such a connection, since there is no marker
/// to find the next packet by (a payload may contain `HEP3`).
pub fn frame_packet(buf: &[u8]) -> Result<Framing, DecodeError> {
    if buf.len() < HEADER_LEN {
        let n = buf.len().min(4);
        if buf[..n] != MAGIC_V3[..n] {
            return Err(DecodeError::invalid(Layer::Hep, 0, "magic", "not HEP3"));
        }
        return Ok(Framing::NeedMore);
    }
    let length = v3_length(buf)?;
    Ok(if buf.len() >= length { Framing::Message(length) } else { Framing::NeedMore })
}

/// Writes a HEP v3 packet chunk by chunk, in the order the methods are called (the order
/// is free in HEP v3; a receiver must not depend on it).
#[derive(Clone, Debug)]
pub struct Hep3Builder {
    buf: Vec<u8>,
}

impl Default for Hep3Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Hep3Builder {
    /// An empty packet: the header alone.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(MAGIC_V3);
        buf.extend_from_slice(&[0, 0]);
        Hep3Builder { buf }
    }

    /// Adds a chunk of any vendor and type. Data longer than a chunk can say is cut to fit.
    pub fn chunk(mut self, vendor: u16, kind: u16, data: &[u8]) -> Self {
        let data = &data[..data.len().min(usize::from(u16::MAX) - CHUNK_HEADER_LEN)];
        self.buf.extend_from_slice(&vendor.to_be_bytes());
        self.buf.extend_from_slice(&kind.to_be_bytes());
        self.buf.extend_from_slice(&((data.len() + CHUNK_HEADER_LEN) as u16).to_be_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    /// Adds the IP family chunk (2 or 10).
    pub fn ip_family(self, family: u8) -> Self {
        self.chunk(0, chunk::IP_FAMILY, &[family])
    }

    /// Adds the IP protocol chunk (17 UDP, 6 TCP).
    pub fn ip_proto(self, proto: u8) -> Self {
        self.chunk(0, chunk::IP_PROTO, &[proto])
    }

    /// Adds the source address chunk (IPv4 or IPv6 by the address).
    pub fn src_ip(self, ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => self.chunk(0, chunk::IPV4_SRC, &v4.octets()),
            IpAddr::V6(v6) => self.chunk(0, chunk::IPV6_SRC, &v6.octets()),
        }
    }

    /// Adds the destination address chunk (IPv4 or IPv6 by the address).
    pub fn dst_ip(self, ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => self.chunk(0, chunk::IPV4_DST, &v4.octets()),
            IpAddr::V6(v6) => self.chunk(0, chunk::IPV6_DST, &v6.octets()),
        }
    }

    /// Adds the source port chunk.
    pub fn src_port(self, port: u16) -> Self {
        self.chunk(0, chunk::SRC_PORT, &port.to_be_bytes())
    }

    /// Adds the destination port chunk.
    pub fn dst_port(self, port: u16) -> Self {
        self.chunk(0, chunk::DST_PORT, &port.to_be_bytes())
    }

    /// Adds the timestamp seconds chunk.
    pub fn ts_sec(self, sec: u32) -> Self {
        self.chunk(0, chunk::TS_SEC, &sec.to_be_bytes())
    }

    /// Adds the timestamp microseconds chunk.
    pub fn ts_usec(self, usec: u32) -> Self {
        self.chunk(0, chunk::TS_USEC, &usec.to_be_bytes())
    }

    /// Adds the protocol type chunk.
    pub fn proto_type(self, proto: ProtoType) -> Self {
        self.chunk(0, chunk::PROTO_TYPE, &[proto.as_u8()])
    }

    /// Adds the capture agent id chunk.
    pub fn capture_id(self, id: u32) -> Self {
        self.chunk(0, chunk::CAPTURE_ID, &id.to_be_bytes())
    }

    /// Adds the authentication key chunk.
    pub fn auth_key(self, key: &[u8]) -> Self {
        self.chunk(0, chunk::AUTH_KEY, key)
    }

    /// Adds the correlation id chunk.
    pub fn correlation_id(self, id: &[u8]) -> Self {
        self.chunk(0, chunk::CORRELATION_ID, id)
    }

    /// Adds the payload chunk.
    pub fn payload(self, payload: &[u8]) -> Self {
        self.chunk(0, chunk::PAYLOAD, payload)
    }

    /// Adds the compressed payload chunk, with `compressed` already zlib-compressed.
    pub fn compressed_payload(self, compressed: &[u8]) -> Self {
        self.chunk(0, chunk::COMPRESSED_PAYLOAD, compressed)
    }

    /// The packet, its total length filled in (cut at 65,535 bytes, the most it can say).
    pub fn build(mut self) -> Vec<u8> {
        self.buf.truncate(usize::from(u16::MAX));
        let len = self.buf.len() as u16;
        self.buf[4..6].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests;
