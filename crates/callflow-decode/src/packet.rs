//! Frame decoding: peels link layers, IP and tunnels down to the transport payload.
//!
//! [`decode_frame`] turns one captured frame into a [`Packet`]: the VLAN tags it
//! crossed, the innermost IP header ([`IpInfo`]), how many tunnels it went through and
//! the [`Transport`] payload (UDP, TCP, SCTP, an IP fragment to reassemble with
//! [`crate::ipfrag`], or another protocol). [`decode_transport`] does the transport part
//! again for a datagram that [`crate::ipfrag::FragmentReassembler`] put back together.
//!
//! Decoding is zero-copy and lax: every slice borrows from the frame, and a damaged
//! layer does not throw away the layers decoded before it. The layers already decoded
//! stay filled in and [`Packet::stop`] says which layer stopped, where (the offset from
//! the start of the frame) and why. A link type or protocol this module does not know
//! is not an error: the packet simply ends there.
//!
//! Supported: Ethernet II with 802.1Q / 802.1ad / QinQ tags, PPPoE sessions and MPLS
//! label stacks; Linux cooked captures v1 and v2; raw IP; BSD and OpenBSD loopback;
//! NFLOG; IPv4 (options skipped, payload trimmed to the total length so Ethernet
//! padding is not payload); IPv6 with hop-by-hop, routing, destination options, AH and
//! fragment extension headers; and the tunnels IP-in-IP, GRE (IP, transparent
//! Ethernet bridging, ERSPAN types I, II and III) and GTP-U (T-PDUs on UDP port 2152),
//! nested at most [`MAX_TUNNELS`] deep.

use crate::{need, DecodeError, Layer, LinkType};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod ip;
#[cfg(test)]
mod tests;

/// PPP protocol numbers of IPv4 and IPv6 (RFC 1332, RFC 5072).
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// How many tunnels [`decode_frame`] goes through before it gives up on a packet.
pub const MAX_TUNNELS: u8 = 4;

/// How many VLAN tags a [`Packet`] keeps; further tags are skipped without being kept.
pub const MAX_VLANS: usize = 4;

/// The VLAN identifiers of the 802.1Q / 802.1ad tags a frame crossed, outermost first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VlanTags {
    ids: [u16; MAX_VLANS],
    len: u8,
}

impl VlanTags {
    /// The VLAN identifiers (12 bits each), outermost first; at most [`MAX_VLANS`].
    pub fn as_slice(&self) -> &[u16] {
        self.ids.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// How many tags were kept.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the frame had no VLAN tag.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, id: u16) {
        if let Some(slot) = self.ids.get_mut(usize::from(self.len)) {
            *slot = id;
            self.len += 1;
        }
    }
}

/// One frame decoded down to its transport layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packet<'a> {
    /// VLAN tags crossed on the way in (those of an Ethernet frame inside a tunnel too).
    pub vlans: VlanTags,
    /// The innermost IP header decoded; `None` when the frame holds no IP packet.
    pub ip: Option<IpInfo>,
    /// How many tunnels (IP-in-IP, GRE, ERSPAN, GTP-U) the frame went through.
    pub tunnels: u8,
    /// The innermost tunnel that carried the packet across a network (GTP-U, GRE carrying
    /// IP, IP-in-IP), with its outer endpoints and key: what tells apart equal inner
    /// addresses in different tunnels. Mirroring encapsulations (ERSPAN, GRE transparent
    /// Ethernet bridging) are not tunnels in this sense: their inner frame is the traffic
    /// as it was on the mirrored port.
    pub tunnel: Option<Tunnel>,
    /// What the innermost IP packet carries; [`Transport::None`] when decoding stopped
    /// before the transport layer.
    pub transport: Transport<'a>,
    /// Why decoding stopped early, with the offset from the start of the frame; `None`
    /// when every layer decoded (or the packet ended in a protocol not decoded here).
    pub stop: Option<DecodeError>,
}

/// A tunnel a packet came through: its kind, the outer IP header's addresses and the
/// tunnel's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tunnel {
    /// The encapsulation.
    pub kind: TunnelKind,
    /// Source address of the outer IP header.
    pub src: IpAddr,
    /// Destination address of the outer IP header.
    pub dst: IpAddr,
    /// The GTP-U TEID (the receiving end's, so the two directions of a bearer differ) or the
    /// GRE key (RFC 2890), when the header has one.
    pub key: Option<u32>,
    /// The length of the packet the tunnel carries, as the tunnel's header (GTP-U: the
    /// T-PDU) or the enclosing layer declares it: what a bearer's byte counts add up.
    pub inner_len: u32,
}

/// What kind of [`Tunnel`] a packet came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TunnelKind {
    /// GTP-U T-PDU (3GPP TS 29.281): a mobile bearer; the key is the TEID.
    GtpU,
    /// GRE carrying IPv4 or IPv6 (RFC 2784/2890, and PPTP's enhanced GRE); the key is the
    /// GRE key (for PPTP, the call id).
    Gre,
    /// IPv4 or IPv6 directly in IP (protocols 4 and 41).
    IpInIp,
}

/// Addresses and protocol of an IP header (IPv4 or IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpInfo {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The upper-layer protocol: for IPv6 the next header after the extension headers
    /// decoded (for a fragment: the fragment header's next header).
    pub protocol: u8,
    /// IPv4 TTL or IPv6 hop limit; 0 from [`decode_transport`], which has no IP header.
    pub ttl: u8,
}

/// The transport layer of a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport<'a> {
    /// Nothing decoded at the transport layer (no IP packet, IPv6 "no next header", or
    /// decoding stopped before it).
    #[default]
    None,
    /// A UDP datagram; `payload` is bounded by the UDP length field.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// The UDP payload (what the capture holds of it).
        payload: &'a [u8],
    },
    /// A TCP segment.
    Tcp(TcpSegment<'a>),
    /// An SCTP packet; walk `chunks` with [`crate::sctp::chunks`].
    Sctp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Verification tag.
        verification_tag: u32,
        /// The bytes after the 12-byte common header.
        chunks: &'a [u8],
    },
    /// An IPv4 or IPv6 fragment, for [`crate::ipfrag::FragmentReassembler`].
    Fragment(Fragment<'a>),
    /// Another IP protocol (ICMP, ESP, OSPF, ..., or a tunnel whose inner packet could
    /// not be decoded).
    Other {
        /// IP protocol number.
        protocol: u8,
        /// The IP payload.
        payload: &'a [u8],
    },
}

/// A TCP segment: the header fields stream reassembly needs, and the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags byte: FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128.
    pub flags: u8,
    /// Receive window (unscaled).
    pub window: u16,
    /// The bytes after the header and its options.
    pub payload: &'a [u8],
}

impl TcpSegment<'_> {
    /// FIN flag.
    pub const FIN: u8 = 0x01;
    /// SYN flag.
    pub const SYN: u8 = 0x02;
    /// RST flag.
    pub const RST: u8 = 0x04;
    /// PSH flag.
    pub const PSH: u8 = 0x08;
    /// ACK flag.
    pub const ACK: u8 = 0x10;
}

/// One fragment of an IPv4 or IPv6 datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Identification (16 bits for IPv4, 32 bits for IPv6).
    pub id: u32,
    /// Protocol of the reassembled payload (IPv4 protocol, IPv6 fragment next header).
    pub protocol: u8,
    /// Offset of this fragment's payload in the reassembled payload, in bytes.
    pub offset: usize,
    /// More fragments follow (MF / M flag).
    pub more: bool,
    /// This fragment's part of the payload.
    pub payload: &'a [u8],
}

/// Decodes one captured frame of link type `link` down to its transport layer.
///
/// Never fails and never panics: what could be decoded is in the [`Packet`], and
/// [`Packet::stop`] says why decoding ended early. An unknown link type gives a packet
/// with no IP layer and no `stop`.
pub fn decode_frame(link: LinkType, data: &[u8]) -> Packet<'_> {
    let mut walker = Walker::default();
    if let Err(e) = walker.link(link, data) {
        walker.packet.stop = Some(e);
    }
    walker.packet
}

/// Decodes the transport layer of an IP payload that has no IP header of its own: a
/// datagram put back together by [`crate::ipfrag::FragmentReassembler`].
///
/// `protocol` is the IP protocol (for IPv6 it may also be an extension header that
/// followed the fragment header). The packet's [`IpInfo`] has these addresses and a TTL
/// of 0; error offsets are relative to the start of `payload`. Tunnels are followed as in
/// [`decode_frame`].
pub fn decode_transport(protocol: u8, src: IpAddr, dst: IpAddr, payload: &[u8]) -> Packet<'_> {
    let mut walker = Walker::default();
    walker.packet.ip = Some(IpInfo { src, dst, protocol, ttl: 0 });
    let result = if src.is_ipv6() && ip::is_ipv6_extension(protocol) {
        walker.ipv6_payload(protocol, src, dst, payload, 0, payload.len())
    } else {
        walker.transport(protocol, src, dst, payload, 0, payload.len())
    };
    if let Err(e) = result {
        walker.packet.stop = Some(e);
    }
    walker.packet
}

/// A length that no header declared: the size of a frame at the link layer is whatever
/// the capture holds, so only IP and the layers inside it can be checked against one.
const UNKNOWN: usize = usize::MAX;

/// Walks the layers of one frame, filling in its [`Packet`] as it goes so that an
/// error leaves the outer layers in place.
///
/// Every method takes `buf`, the bytes of its layer to the end of what the enclosing
/// layers allow, `base`, the offset of `buf` in the frame (for error offsets), and
/// `declared`, how many bytes the enclosing headers say there are from `buf`'s start
/// ([`UNKNOWN`] at the link layer). `buf` is shorter than `declared` when the capture
/// was cut by its snapshot length.
#[derive(Default)]
struct Walker<'a> {
    packet: Packet<'a>,
}

/// Ethertypes of VLAN tags: 802.1Q, 802.1ad, and the pre-standard QinQ values.
const VLAN_TPIDS: [u16; 4] = [0x8100, 0x88a8, 0x9100, 0x9200];

impl<'a> Walker<'a> {
    fn link(&mut self, link: LinkType, data: &'a [u8]) -> Result<(), DecodeError> {
        match link.0 {
            1 => self.ethernet(data, 0, UNKNOWN),
            // Linux cooked v1: packet type, ARPHRD, address length, 8 address bytes, protocol.
            113 => {
                need(Layer::Link, data, 0, 16)?;
                self.ethertype(be16(data, 14), tail(data, 16), 16, UNKNOWN)
            }
            // Linux cooked v2: protocol first, then reserved, ifindex, ARPHRD, type, address.
            276 => {
                need(Layer::Link, data, 0, 20)?;
                self.ethertype(be16(data, 0), tail(data, 20), 20, UNKNOWN)
            }
            12 | 14 | 101 => self.ip_by_version(data, 0, UNKNOWN, Layer::Link),
            228 => self.ipv4(data, 0, UNKNOWN),
            229 => self.ipv6(data, 0, UNKNOWN),
            0 => {
                need(Layer::Link, data, 0, 4)?;
                // The address family is in the byte order of the capturing host, which the
                // file does not say; families are small numbers, so the order that gives
                // one is the right one.
                let le = u32::from_le_bytes([byte(data, 0), byte(data, 1), byte(data, 2), byte(data, 3)]);
                let family = if le <= 0xffff { le } else { le.swap_bytes() };
                self.loopback(family, data)
            }
            108 => {
                need(Layer::Link, data, 0, 4)?;
                self.loopback(be32(data, 0), data)
            }
            239 => self.nflog(data),
            _ => Ok(()),
        }
    }

    /// BSD / OpenBSD loopback: a 4-byte address family, then the IP packet.
    fn loopback(&mut self, family: u32, data: &'a [u8]) -> Result<(), DecodeError> {
        match family {
            2 => self.ipv4(tail(data, 4), 4, UNKNOWN),
            // AF_INET6 differs between BSDs: 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS).
            24 | 28 | 30 => self.ipv6(tail(data, 4), 4, UNKNOWN),
            _ => Ok(()),
        }
    }

    /// NFLOG: family, version and resource id, then TLVs (length and type in host byte
    /// order, each padded to 4 bytes); the packet is the value of TLV type 9.
    fn nflog(&mut self, data: &'a [u8]) -> Result<(), DecodeError> {
        const NFULA_PAYLOAD: u16 = 9;
        need(Layer::Link, data, 0, 4)?;
        let family = byte(data, 0);
        let mut little_endian = None;
        let mut at = 4;
        while at < data.len() {
            need(Layer::Link, data, at, 4)?;
            let raw_len = [byte(data, at), byte(data, at + 1)];
            let raw_type = [byte(data, at + 2), byte(data, at + 3)];
            // Types are small numbers: the byte order that gives one is the host's.
            let le = *little_endian.get_or_insert_with(|| u16::from_le_bytes(raw_type) <= 0xff);
            let (len, tlv_type) = if le {
                (u16::from_le_bytes(raw_len), u16::from_le_bytes(raw_type))
            } else {
                (u16::from_be_bytes(raw_len), u16::from_be_bytes(raw_type))
            };
            let len = usize::from(len);
            if len < 4 {
                return Err(DecodeError::invalid(
                    Layer::Link,
                    at,
                    "nflog tlv length",
                    "less than the 4-byte tlv header",
                ));
            }
            need(Layer::Link, data, at, len)?;
            if tlv_type == NFULA_PAYLOAD {
                let value = slice(data, at + 4, at + len);
                return match family {
                    2 => self.ipv4(value, at + 4, UNKNOWN),
                    10 => self.ipv6(value, at + 4, UNKNOWN),
                    _ => Ok(()),
                };
            }
            at += (len + 3) & !3;
        }
        Ok(())
    }

    /// Ethernet II: destination, source, ethertype; an 802.3 length instead of an
    /// ethertype means LLC, which carries no IP worth decoding here.
    fn ethernet(&mut self, buf: &'a [u8], base: usize, declared: usize) -> Result<(), DecodeError> {
        need(Layer::Link, buf, 0, 14).map_err(|e| e.shifted(base))?;
        let ethertype = be16(buf, 12);
        if ethertype < 0x0600 {
            return Ok(());
        }
        self.ethertype(ethertype, tail(buf, 14), base + 14, declared.saturating_sub(14))
    }

    /// What follows an ethertype (Ethernet, Linux cooked): VLAN tags, then IP, PPPoE or MPLS.
    fn ethertype(&mut self, ethertype: u16, buf: &'a [u8], base: usize, declared: usize) -> Result<(), DecodeError> {
        let (mut ethertype, mut buf, mut base, mut declared) = (ethertype, buf, base, declared);
        while VLAN_TPIDS.contains(&ethertype) {
            need(Layer::Vlan, buf, 0, 4).map_err(|e| e.shifted(base))?;
            self.packet.vlans.push(be16(buf, 0) & 0x0fff);
            ethertype = be16(buf, 2);
            (buf, base, declared) = (tail(buf, 4), base + 4, declared.saturating_sub(4));
        }
        match ethertype {
            0x0800 => self.ipv4(buf, base, declared),
            0x86dd => self.ipv6(buf, base, declared),
            0x8864 => self.pppoe(buf, base, declared),
            0x8847 | 0x8848 => self.mpls(buf, base, declared),
            _ => Ok(()),
        }
    }

    /// PPPoE session stage: version/type, code, session id, length, then the PPP protocol.
    fn pppoe(&mut self, buf: &'a [u8], base: usize, declared: usize) -> Result<(), DecodeError> {
        need(Layer::Link, buf, 0, 8).map_err(|e| e.shifted(base))?;
        if byte(buf, 0) != 0x11 {
            return Err(DecodeError::invalid(Layer::Link, base, "pppoe version", "not version 1 type 1"));
        }
        let (inner, inner_base, inner_declared) = (tail(buf, 8), base + 8, declared.saturating_sub(8));
        self.ppp_ip(be16(buf, 6), inner, inner_base, inner_declared)
    }

    /// The IP packet a PPP frame with `protocol` carries (PPPoE, PPTP's enhanced GRE);
    /// other PPP protocols (LCP, IPCP, compressed data) are left alone.
    pub(super) fn ppp_ip(
        &mut self,
        protocol: u16,
        buf: &'a [u8],
        base: usize,
        declared: usize,
    ) -> Result<(), DecodeError> {
        match protocol {
            PPP_IPV4 => self.ipv4(buf, base, declared),
            PPP_IPV6 => self.ipv6(buf, base, declared),
            _ => Ok(()),
        }
    }

    /// MPLS: 4-byte label stack entries up to the one with the bottom-of-stack bit, then
    /// IPv4 or IPv6 by the version nibble (anything else, such as a pseudowire control
    /// word, is left alone).
    fn mpls(&mut self, buf: &'a [u8], base: usize, declared: usize) -> Result<(), DecodeError> {
        let mut at = 0;
        loop {
            need(Layer::Link, buf, at, 4).map_err(|e| e.shifted(base))?;
            let bottom = byte(buf, at + 2) & 0x01 != 0;
            at += 4;
            if bottom {
                break;
            }
        }
        let (inner, inner_base, inner_declared) = (tail(buf, at), base + at, declared.saturating_sub(at));
        match inner.first().map(|b| b >> 4) {
            Some(4) => self.ipv4(inner, inner_base, inner_declared),
            Some(6) => self.ipv6(inner, inner_base, inner_declared),
            _ => Ok(()),
        }
    }
}

// Byte readers. Callers check lengths with `need` first; the 0 for a missing byte
// only keeps the code free of panics should a check be forgotten.

fn byte(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

fn be16(buf: &[u8], at: usize) -> u16 {
    buf.get(at..at.saturating_add(2)).and_then(|b| b.try_into().ok()).map_or(0, u16::from_be_bytes)
}

fn be32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at.saturating_add(4)).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes)
}

fn ipv4_addr(buf: &[u8], at: usize) -> Ipv4Addr {
    buf.get(at..at.saturating_add(4))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from)
}

fn ipv6_addr(buf: &[u8], at: usize) -> Ipv6Addr {
    buf.get(at..at.saturating_add(16))
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
}

/// `buf[from..]`, empty when `from` is past the end.
fn tail(buf: &[u8], from: usize) -> &[u8] {
    buf.get(from..).unwrap_or_default()
}

/// `buf[from..to]` with `to` clamped to the buffer, empty when `from` is past either.
fn slice(buf: &[u8], from: usize, to: usize) -> &[u8] {
    buf.get(from..to.min(buf.len())).unwrap_or_default()
}
