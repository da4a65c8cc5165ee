//! How ndpiReader takes a captured frame apart, reproduced so that `callflow-cli classify` shows nDPI the packets ndpiReader shows it.
//!
//! ndpiReader (nDPI 4.2's `example/reader_util.c`, `ndpi_workflow_process_packet` and
//! `get_ndpi_flow_info`) is the oracle of the nDPI tests and what users compare
//! `classify` with. Its reading differs from callflow-decode's on purpose-built points,
//! and each difference changes which flows exist and what nDPI sees of them:
//!
//! - without `-t` it decapsulates no tunnel but IP-in-IP (protocols 4 and 41): GRE,
//!   ERSPAN and GTP-U traffic is the outer flow (UDP 2152 for GTP-U; GRE, like ICMP, IGMP
//!   and every other IP protocol, is a flow keyed by protocol and addresses, ports 0);
//! - it hands nDPI the frame's own IP packet, from the IP header to the end of the
//!   captured bytes (Ethernet padding included), not headers rebuilt around a payload;
//! - it trusts header fields callflow-decode checks: a fuzzed capture's garbled ports and
//!   addresses make flows there, while a packet whose IP total length exceeds the captured
//!   bytes is dropped (callflow-decode keeps its outer layers);
//! - it drops IPv4 fragments other than the first, but only where the link layer said
//!   IPv4 (an Ethernet, SLL or PPP type 0x0800): on raw-IP or loopback captures the
//!   "ports" of a later fragment are whatever bytes are there;
//! - it reads a fixed set of link types and refuses the others (NFLOG, LINUX_SLL2, ...).
//!
//! [`read`] follows that code line for line (the comments name its variables), with
//! bounds checks where the C reads past the captured bytes. What it does not reproduce:
//! radiotap (802.11) captures, which are reported as [`ReaderFrame::NotReproduced`], and
//! the VLAN id, which ndpiReader keys flows by and which is returned but not part of
//! [`FlowKey`] (ndpiReader prints it beside the endpoints).

use crate::FlowKey;
use callflow_classify::{Payload, TransportKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_VLAN: u16 = 0x8100;
const ETH_P_MPLS_UNI: u16 = 0x8847;
const ETH_P_MPLS_MULTI: u16 = 0x8848;
const ETH_P_PPPOE: u16 = 0x8864;

/// A frame as ndpiReader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderFrame<'a> {
    /// An IP packet: ndpiReader hands nDPI `ip` as part of the flow `key`. Packets of
    /// protocols other than UDP and TCP (ICMP, IGMP, GRE, SCTP, ...) make flows too, keyed by
    /// protocol and addresses (ports 0), and go to nDPI like the others.
    Packet(ReaderPacket<'a>),
    /// ndpiReader drops the frame: too short, not IP, a later IPv4 fragment, or IP
    /// lengths that do not fit the captured bytes.
    Dropped,
    /// ndpiReader refuses the capture's link type ("Unsupported datalink").
    UnsupportedLink,
    /// ndpiReader reads this link type (802.11 radiotap) but this module does not reproduce it.
    NotReproduced,
}

/// An IP packet as ndpiReader passes it to nDPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderPacket<'a> {
    /// The flow: IP protocol, VLAN and the two endpoints, as ndpiReader keys it.
    pub key: FlowKey,
    /// The sender (port 0 for protocols without ports).
    pub src: SocketAddr,
    /// The receiver.
    pub dst: SocketAddr,
    /// What nDPI gets: the IP packet from its header to the end of the captured bytes.
    pub ip: &'a [u8],
    /// The payload as ndpiReader computes it: after the UDP, TCP, ICMP or ICMPv6 header;
    /// empty for other protocols.
    pub payload: &'a [u8],
}

impl<'a> ReaderPacket<'a> {
    /// The packet as a `Classifier` input; `None` for protocols other than UDP and TCP.
    pub fn as_payload(&self) -> Option<Payload<'a>> {
        let transport = self.key.transport().filter(|t| *t != TransportKind::Sctp)?;
        Some(Payload { transport, src: self.src, dst: self.dst, bytes: self.payload })
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([*b.get(at)?, *b.get(at + 1)?, *b.get(at + 2)?, *b.get(at + 3)?]))
}

/// Reads a captured frame of link type `link_type` (a LINKTYPE_ value, as in pcap and
/// pcapng files) as ndpiReader 4.2 does without `-t`.
pub fn read(link_type: u32, packet: &[u8]) -> ReaderFrame<'_> {
    read_frame(link_type, packet).unwrap_or(ReaderFrame::Dropped)
}

/// `ndpi_workflow_process_packet`; `None` where the C would read past the captured bytes
/// (it reads garbage there; dropping the frame is the only safe reading).
fn read_frame(link_type: u32, packet: &[u8]) -> Option<ReaderFrame<'_>> {
    let caplen = packet.len();
    // "20 for min iph and 8 for min UDP"
    if caplen < 28 {
        return Some(ReaderFrame::Dropped);
    }
    let mut ether_type: u16 = 0;
    let mut ip_offset: usize;
    match link_type {
        // DLT_NULL: the address family in host order, read with ntohl: a little-endian
        // capture's 2 (AF_INET) is not 2 here, and the frame is typed IPv6.
        0 => {
            ether_type = if be32(packet, 0)? == 2 { ETH_P_IP } else { ETH_P_IPV6 };
            ip_offset = 4;
        }
        // DLT_PPP_SERIAL (LINKTYPE_PPP_HDLC, 50): Cisco HDLC framing.
        50 => {
            ether_type = be16(packet, 2)?;
            ip_offset = 4;
        }
        // DLT_PPP (9) and DLT_C_HDLC (104).
        9 | 104 => {
            if packet[0] == 0x0f || packet[0] == 0x8f {
                ether_type = be16(packet, 2)?;
                ip_offset = 4;
            } else {
                ether_type = be16(packet, 0)?;
                ip_offset = 2;
            }
        }
        228 => {
            ether_type = ETH_P_IP;
            ip_offset = 0;
        }
        229 => {
            ether_type = ETH_P_IPV6;
            ip_offset = 0;
        }
        // DLT_EN10MB.
        1 => {
            ip_offset = 14;
            let check = be16(packet, 12)?;
            let mut pyld_eth_len = 0;
            if check <= 1500 {
                pyld_eth_len = check;
            } else if check >= 1536 {
                ether_type = check;
            }
            if pyld_eth_len != 0 {
                let (dsap, ssap) = (packet[14], packet[15]);
                if dsap == 0xaa || ssap == 0xaa {
                    // `llc->snap.proto_ID` is used without ntohs: the two bytes in host
                    // (little-endian) order.
                    ether_type = u16::from_le_bytes([packet[20], packet[21]]);
                    ip_offset += 8;
                } else if dsap == 0x42 || ssap == 0x42 {
                    // Spanning tree.
                    return Some(ReaderFrame::Dropped);
                }
            }
        }
        // DLT_LINUX_SLL.
        113 => {
            ether_type = be16(packet, 14)?;
            ip_offset = 16;
        }
        // DLT_IEEE802_11_RADIO.
        127 => return Some(ReaderFrame::NotReproduced),
        // DLT_RAW (LINKTYPE_RAW 101; 12 and 14 on some systems): the type stays 0.
        101 | 12 | 14 => ip_offset = 0,
        _ => return Some(ReaderFrame::UnsupportedLink),
    }

    // ether_type_check
    let mut vlan_id = 0u16;
    loop {
        match ether_type {
            ETH_P_VLAN => {
                if ip_offset + 4 >= caplen {
                    return Some(ReaderFrame::Dropped);
                }
                vlan_id = be16(packet, ip_offset)? & 0xfff;
                ether_type = be16(packet, ip_offset + 2)?;
                ip_offset += 4;
                // Double tagging.
                while ether_type == ETH_P_VLAN && ip_offset + 4 < caplen {
                    vlan_id = be16(packet, ip_offset)? & 0xfff;
                    ether_type = be16(packet, ip_offset + 2)?;
                    ip_offset += 4;
                }
            }
            ETH_P_MPLS_UNI | ETH_P_MPLS_MULTI => {
                let mut mpls = be32(packet, ip_offset)?;
                ether_type = ETH_P_IP;
                ip_offset += 4;
                // Bit 8 is the bottom-of-stack flag.
                while mpls & 0x100 == 0 && ip_offset + 4 < caplen {
                    mpls = be32(packet, ip_offset)?;
                    ip_offset += 4;
                }
            }
            ETH_P_PPPOE => {
                ether_type = ETH_P_IP;
                ip_offset += 8;
            }
            _ => break,
        }
    }

    // iph_check, entered again for each IP-in-IP header.
    let mut frag_off = 0u16;
    let is_v4 = loop {
        if caplen < ip_offset + 20 {
            return Some(ReaderFrame::Dropped);
        }
        let iph = &packet[ip_offset..];
        // Only a link layer that said IPv4 makes ndpiReader read the fragment offset.
        if ether_type == ETH_P_IP {
            frag_off = be16(iph, 6)?;
        }
        match iph[0] >> 4 {
            4 => {
                let ip_len = usize::from(iph[0] & 0x0f) * 4;
                if (iph[9] == 41 || iph[9] == 4) && ip_len > 0 {
                    ip_offset += ip_len;
                    continue;
                }
                if frag_off & 0x1fff != 0 {
                    return Some(ReaderFrame::Dropped);
                }
                break true;
            }
            6 => {
                if caplen < ip_offset + 40 {
                    return Some(ReaderFrame::Dropped);
                }
                let plen = be16(iph, 4)?;
                if caplen < ip_offset + 40 + usize::from(plen) {
                    return Some(ReaderFrame::Dropped);
                }
                let ipsize = (caplen - ip_offset) as u16;
                let Some((l4, _, proto)) = ipv6_extension_headers(iph, ipsize.wrapping_sub(40), plen, iph[6]) else {
                    return Some(ReaderFrame::Dropped);
                };
                if proto == 41 || proto == 4 {
                    ip_offset += l4;
                    continue;
                }
                break false;
            }
            _ => return Some(ReaderFrame::Dropped),
        }
    };

    // packet_processing: nDPI gets `ipsize` bytes from the IP header (a u16 in the C).
    let ipsize = usize::from((caplen - ip_offset) as u16);
    let ip = &packet[ip_offset..ip_offset + ipsize];
    let (src, dst, proto, l4_offset, l4_len) = if is_v4 {
        // get_ndpi_flow_info, IPv4.
        if ipsize < 20 {
            return Some(ReaderFrame::Dropped);
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let tot_len = be16(ip, 2)?;
        if ihl > ipsize || ipsize < usize::from(tot_len) {
            return Some(ReaderFrame::Dropped);
        }
        let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
        let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
        (src, dst, ip[9], ihl, usize::from(tot_len.wrapping_sub(ihl as u16)))
    } else {
        // get_ndpi_flow_info6.
        if ipsize < 40 {
            return Some(ReaderFrame::Dropped);
        }
        let Some((l4, l4_len, proto)) = ipv6_extension_headers(ip, (ipsize - 40) as u16, be16(ip, 4)?, ip[6]) else {
            return Some(ReaderFrame::Dropped);
        };
        let addr = |at: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(a))
        };
        if l4 > ipsize {
            return Some(ReaderFrame::Dropped);
        }
        (addr(8), addr(24), proto, l4, usize::from(l4_len))
    };
    if ipsize < l4_offset + l4_len {
        return Some(ReaderFrame::Dropped);
    }
    let l4 = &ip[l4_offset..l4_offset + l4_len];
    let (sport, dport, payload) = match proto {
        6 if l4_len >= 20 => {
            let doff = usize::from(l4[12] >> 4) * 4;
            (be16(l4, 0)?, be16(l4, 2)?, l4.get(doff.min(l4_len)..).unwrap_or(&[]))
        }
        17 if l4_len >= 8 => (be16(l4, 0)?, be16(l4, 2)?, &l4[8..]),
        // ICMP and ICMPv6: the payload after the 8-byte header; no ports.
        1 | 58 => (0, 0, l4.get(8..).unwrap_or(&[])),
        // Other protocols, and a TCP or UDP header too short for its ports: ndpiReader
        // still makes a flow, with ports 0.
        _ => (0, 0, &l4[..0]),
    };
    let (src, dst) = (SocketAddr::new(src, sport), SocketAddr::new(dst, dport));
    Some(ReaderFrame::Packet(ReaderPacket { key: FlowKey::of_ip(proto, vlan_id, src, dst), src, dst, ip, payload }))
}

/// nDPI's `ndpi_handle_ipv6_extension_headers` on the IPv6 packet `ip`: `l3len` bytes
/// after the fixed header, payload length `l4len`, first next-header `nxt`. Returns the
/// transport header's offset in `ip`, its length and protocol; `None` where nDPI returns 1.
fn ipv6_extension_headers(ip: &[u8], mut l3len: u16, mut l4len: u16, mut nxt: u8) -> Option<(usize, u16, u8)> {
    let mut at = 40usize;
    while l3len > 1 && matches!(nxt, 0 | 43 | 44 | 60 | 135 | 59) {
        if nxt == 59 {
            return None;
        }
        if nxt == 44 {
            if l4len < 8 || l3len < 5 {
                return None;
            }
            l3len -= 5;
            nxt = *ip.get(at)?;
            // Like IPv4's: the first fragment is kept, the others dropped.
            if be16(ip, at + 2)? >> 3 != 0 {
                return None;
            }
            l4len -= 8;
            at += 8;
            continue;
        }
        if l4len < 2 {
            return None;
        }
        let ehdr_len = u16::from(*ip.get(at + 1)?) * 8 + 8;
        if ehdr_len > l3len {
            return None;
        }
        l3len -= ehdr_len;
        if l4len < ehdr_len {
            return None;
        }
        nxt = *ip.get(at)?;
        l4len -= ehdr_len;
        at += usize::from(ehdr_len);
    }
    Some((at, l4len, nxt))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame around `ip`, with `pad` bytes of trailer.
    fn ether(ether_type: u16, ip: &[u8], pad: usize) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend_from_slice(ip);
        f.extend(std::iter::repeat_n(0, pad));
        f
    }

    /// An IPv4 header (no options) with `proto`, total length `tot_len` and fragment field `frag`, then `l4`.
    fn ipv4(proto: u8, tot_len: u16, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&tot_len.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(l4);
        p
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = sport.to_be_bytes().to_vec();
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    fn packet(frame: ReaderFrame<'_>) -> ReaderPacket<'_> {
        match frame {
            ReaderFrame::Packet(p) => p,
            other => panic!("not a packet: {other:?}"),
        }
    }

    #[test]
    fn an_ethernet_udp_packet_goes_to_ndpi_whole_with_its_padding() {
        let dgram = udp(5060, 5080, b"OPTIONS");
        let ip = ipv4(17, (20 + dgram.len()) as u16, 0, &dgram);
        let frame = ether(ETH_P_IP, &ip, 6);
        let p = packet(read(1, &frame));
        assert_eq!(p.src, "10.0.0.1:5060".parse().unwrap());
        assert_eq!(p.key, FlowKey::new(TransportKind::Udp, p.dst, p.src));
        assert_eq!(p.as_payload().unwrap().bytes, b"OPTIONS");
        assert_eq!(p.ip.len(), ip.len() + 6, "ndpiReader passes the trailer too");
        assert_eq!(p.payload, b"OPTIONS");
    }

    #[test]
    fn gre_and_gtp_u_stay_the_outer_flow_and_vlan_is_kept() {
        let gre = ipv4(47, 20 + 30, 0, &[0; 30]);
        let gre_frame = ether(ETH_P_IP, &gre, 0);
        let p = packet(read(1, &gre_frame));
        assert_eq!((p.key.protocol, p.src.port(), p.as_payload().is_none()), (47, 0, true));
        let inner = ipv4(17, 20 + 16, 0, &udp(1, 2, b"12345678"));
        let mut gtp = vec![0x30, 0xff, 0, inner.len() as u8, 0, 0, 0, 1];
        gtp.extend_from_slice(&inner);
        let dgram = udp(2152, 2152, &gtp);
        let outer = ipv4(17, (20 + dgram.len()) as u16, 0, &dgram);
        let mut tagged = 7u16.to_be_bytes().to_vec();
        tagged.extend_from_slice(&ETH_P_IP.to_be_bytes());
        tagged.extend_from_slice(&outer);
        let frame = ether(ETH_P_VLAN, &tagged, 0);
        let p = packet(read(1, &frame));
        assert_eq!((p.src.port(), p.dst.port(), p.key.vlan), (2152, 2152, 7));
    }

    #[test]
    fn icmp_is_a_flow_of_its_own_with_its_payload_after_the_header() {
        let echo = [8, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g'];
        let ip = ipv4(1, (20 + echo.len()) as u16, 0, &echo);
        let frame = ether(ETH_P_IP, &ip, 0);
        let p = packet(read(1, &frame));
        assert_eq!(p.key.protocol_name(), "ICMP");
        assert_eq!((p.src, p.payload), ("10.0.0.1:0".parse().unwrap(), &b"ping"[..]));
        assert_eq!(p.ip, &ip[..]);
    }

    #[test]
    fn ip_in_ip_is_followed() {
        let inner = ipv4(17, 20 + 9, 0, &udp(53, 1000, b"x"));
        let mut outer = ipv4(4, (20 + inner.len()) as u16, 0, &inner);
        outer[12] = 192;
        let p = packet(read(101, &outer));
        assert_eq!(p.src, "10.0.0.1:53".parse().unwrap());
        assert_eq!(p.ip, &inner[..]);
    }

    #[test]
    fn lengths_decide_what_is_dropped_not_checksums_or_plausibility() {
        let dgram = udp(1, 2, b"abcd");
        // A total length beyond the captured bytes: dropped (callflow-decode keeps the outer layers).
        let long = ipv4(17, 200, 0, &dgram);
        assert_eq!(read(1, &ether(ETH_P_IP, &long, 0)), ReaderFrame::Dropped);
        // A later fragment: dropped behind Ethernet, read as UDP on raw IP (the type stays 0).
        let frag = ipv4(17, (20 + dgram.len()) as u16, 0x0010, &dgram);
        assert_eq!(read(1, &ether(ETH_P_IP, &frag, 0)), ReaderFrame::Dropped);
        assert!(matches!(read(101, &frag), ReaderFrame::Packet(_)));
        // A UDP length of 0 in the header changes nothing: ndpiReader goes by the IP length.
        let mut zero = dgram.clone();
        zero[4..6].copy_from_slice(&[0, 0]);
        let ip = ipv4(17, (20 + zero.len()) as u16, 0, &zero);
        assert_eq!(packet(read(1, &ether(ETH_P_IP, &ip, 0))).payload, b"abcd");
    }

    #[test]
    fn link_types_ndpi_reader_refuses_are_said_apart_from_drops() {
        let frame = vec![0u8; 64];
        assert_eq!(read(239, &frame), ReaderFrame::UnsupportedLink);
        assert_eq!(read(276, &frame), ReaderFrame::UnsupportedLink);
        assert_eq!(read(127, &frame), ReaderFrame::NotReproduced);
        assert_eq!(read(1, &frame[..27]), ReaderFrame::Dropped);
    }

    #[test]
    fn ipv6_with_a_hop_by_hop_header_and_sll() {
        let dgram = udp(3000, 4000, b"hello");
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&((8 + dgram.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 64]);
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        ip.extend_from_slice(&dgram);
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
        sll.extend_from_slice(&ip);
        let p = packet(read(113, &sll));
        assert_eq!(p.src, "[::1]:3000".parse().unwrap());
        assert_eq!(p.payload, b"hello");
    }
}
