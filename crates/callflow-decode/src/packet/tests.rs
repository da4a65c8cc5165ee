//! Unit tests of frame decoding: frames built by hand, layer by layer, and a few real captures.

use super::*;
use std::fmt::Write as _;

// ---- Frame builders -------------------------------------------------------------

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let macs = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb];
    cat(&[&macs, &ethertype.to_be_bytes(), payload])
}

/// A VLAN tag: TPID is the ethertype before it, so this is TCI then the next ethertype.
fn tag(vlan: u16, next: u16) -> Vec<u8> {
    cat(&[&(0xa000 | vlan).to_be_bytes(), &next.to_be_bytes()])
}

fn ipv4_header(protocol: u8, total: usize, id: u16, flags_offset: u16) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&flags_offset.to_be_bytes());
    h
}

fn ipv4(protocol: u8, payload: &[u8]) -> Vec<u8> {
    cat(&[&ipv4_header(protocol, 20 + payload.len(), 0x1234, 0x4000), payload])
}

fn ipv6(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 0, next_header, 32];
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
    cat(&[&h, &src.octets(), &dst.octets(), payload])
}

fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    cat(&[&src_port.to_be_bytes(), &dst_port.to_be_bytes(), &len.to_be_bytes(), &[0, 0], payload])
}

fn tcp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let ports = cat(&[&src_port.to_be_bytes(), &dst_port.to_be_bytes()]);
    cat(&[&ports, &[0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x18, 0x03, 0xe8, 0, 0, 0, 0], payload])
}

/// An IPv6 extension header of `len` bytes (a multiple of 8) with the generic layout.
fn ext(next_header: u8, len: usize) -> Vec<u8> {
    let mut h = vec![0; len];
    h[0] = next_header;
    h[1] = (len / 8 - 1) as u8;
    h
}

fn sip() -> Vec<u8> {
    udp(5060, 5060, b"hello")
}

// ---- What a decoded packet looks like, in one line --------------------------------

fn show(payload: &[u8]) -> String {
    format!("\"{}\"", payload.escape_ascii())
}

fn summary(p: &Packet<'_>) -> String {
    let mut s = String::new();
    if !p.vlans.is_empty() {
        write!(s, "vlans {:?}; ", p.vlans.as_slice()).unwrap();
    }
    match &p.ip {
        Some(ip) => write!(s, "ip {} > {} proto {} ttl {}", ip.src, ip.dst, ip.protocol, ip.ttl).unwrap(),
        None => s.push_str("no ip"),
    }
    if p.tunnels > 0 {
        write!(s, "; tunnels {}", p.tunnels).unwrap();
    }
    match &p.transport {
        Transport::None => {}
        Transport::Udp { src_port, dst_port, payload } => {
            write!(s, "; udp {src_port} > {dst_port} {}", show(payload)).unwrap()
        }
        Transport::Tcp(t) => write!(
            s,
            "; tcp {} > {} seq {} ack {} flags {:#04x} win {} {}",
            t.src_port,
            t.dst_port,
            t.seq,
            t.ack,
            t.flags,
            t.window,
            show(t.payload)
        )
        .unwrap(),
        Transport::Sctp { src_port, dst_port, verification_tag, chunks } => {
            write!(s, "; sctp {src_port} > {dst_port} tag {verification_tag} {}", show(chunks)).unwrap()
        }
        Transport::Fragment(f) => write!(
            s,
            "; fragment {} > {} id {} proto {} offset {}{} {}",
            f.src,
            f.dst,
            f.id,
            f.protocol,
            f.offset,
            if f.more { " more" } else { "" },
            show(f.payload)
        )
        .unwrap(),
        Transport::Other { protocol, payload } => write!(s, "; other {protocol} {}", show(payload)).unwrap(),
    }
    if let Some(e) = &p.stop {
        write!(s, "; stop: {e}").unwrap();
    }
    s
}

fn check(link: LinkType, frame: &[u8], expected: &str) {
    assert_eq!(summary(&decode_frame(link, frame)), expected);
}

const V4_UDP: &str = "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 64; udp 5060 > 5060 \"hello\"";
const V6_UDP: &str = "ip 2001:db8::1 > 2001:db8::2 proto 17 ttl 32; udp 5060 > 5060 \"hello\"";
const V6_IP: &str = "ip 2001:db8::1 > 2001:db8::2 proto 17 ttl 32";

// ---- Link layers ----------------------------------------------------------------

#[test]
fn ethernet_ipv4_udp() {
    check(LinkType::ETHERNET, &eth(0x0800, &ipv4(17, &sip())), V4_UDP);
}

#[test]
fn ethernet_ipv6_udp() {
    check(LinkType::ETHERNET, &eth(0x86dd, &ipv6(17, &sip())), V6_UDP);
}

#[test]
fn ethernet_ipv4_tcp() {
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(6, &tcp(5060, 40000, b"INVITE"))),
        "ip 10.0.0.1 > 10.0.0.2 proto 6 ttl 64; tcp 5060 > 40000 seq 1 ack 2 flags 0x18 win 1000 \"INVITE\"",
    );
}

#[test]
fn tcp_options_are_skipped() {
    let mut segment = tcp(1, 2, b"data");
    segment[12] = 0x70;
    segment.splice(20..20, [1, 1, 1, 1, 2, 4, 5, 0xb4]);
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(6, &segment)),
        "ip 10.0.0.1 > 10.0.0.2 proto 6 ttl 64; tcp 1 > 2 seq 1 ack 2 flags 0x18 win 1000 \"data\"",
    );
}

#[test]
fn ethernet_ipv4_sctp() {
    let sctp = [0x0b, 0x59, 0x0b, 0x59, 0, 0, 0, 7, 0, 0, 0, 0, 3, 0, 0, 4];
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(132, &sctp)),
        "ip 10.0.0.1 > 10.0.0.2 proto 132 ttl 64; sctp 2905 > 2905 tag 7 \"\\x03\\x00\\x00\\x04\"",
    );
}

#[test]
fn other_ip_protocols() {
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(1, b"ping")),
        "ip 10.0.0.1 > 10.0.0.2 proto 1 ttl 64; other 1 \"ping\"",
    );
}

#[test]
fn vlan_and_qinq_tags() {
    let ip = ipv4(17, &sip());
    check(LinkType::ETHERNET, &eth(0x8100, &cat(&[&tag(10, 0x0800), &ip])), &format!("vlans [10]; {V4_UDP}"));
    let qinq = cat(&[&tag(100, 0x8100), &tag(200, 0x0800), &ip]);
    check(LinkType::ETHERNET, &eth(0x88a8, &qinq), &format!("vlans [100, 200]; {V4_UDP}"));
    let old_qinq = cat(&[&tag(4095, 0x8100), &tag(1, 0x86dd), &ipv6(17, &sip())]);
    check(LinkType::ETHERNET, &eth(0x9100, &old_qinq), &format!("vlans [4095, 1]; {V6_UDP}"));
}

#[test]
fn more_vlan_tags_than_kept_are_still_crossed() {
    let mut inner = cat(&[&tag(6, 0x0800), &ipv4(17, &sip())]);
    for vlan in (1..=5).rev() {
        inner = cat(&[&tag(vlan, 0x8100), &inner]);
    }
    check(LinkType::ETHERNET, &eth(0x8100, &inner), &format!("vlans [1, 2, 3, 4]; {V4_UDP}"));
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut frame = eth(0x0800, &ipv4(17, &sip()));
    frame.resize(60, 0);
    check(LinkType::ETHERNET, &frame, V4_UDP);
}

#[test]
fn snaplen_cut_keeps_what_is_there() {
    let frame = eth(0x0800, &ipv4(17, &udp(5060, 5060, b"hello world")));
    check(
        LinkType::ETHERNET,
        &frame[..frame.len() - 6],
        "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 64; udp 5060 > 5060 \"hello\"",
    );
}

#[test]
fn non_ip_ethertypes_and_802_3_end_quietly() {
    check(LinkType::ETHERNET, &eth(0x0806, &[0; 28]), "no ip");
    check(LinkType::ETHERNET, &eth(0x0026, &[0xaa; 38]), "no ip");
    check(LinkType::ETHERNET, &eth(0x8100, &tag(5, 0x0806)), "vlans [5]; no ip");
}

#[test]
fn pppoe_session() {
    let ip = ipv4(17, &sip());
    let pppoe = |proto: u16, ip: &[u8]| {
        let len = (ip.len() + 2) as u16;
        cat(&[&[0x11, 0x00, 0x12, 0x34], &len.to_be_bytes(), &proto.to_be_bytes(), ip])
    };
    check(LinkType::ETHERNET, &eth(0x8864, &pppoe(0x0021, &ip)), V4_UDP);
    check(LinkType::ETHERNET, &eth(0x8864, &pppoe(0x0057, &ipv6(17, &sip()))), V6_UDP);
    check(LinkType::ETHERNET, &eth(0x8864, &pppoe(0xc021, &[1, 2, 3, 4])), "no ip");
    check(
        LinkType::ETHERNET,
        &eth(0x8864, &[0x11, 0, 0, 1, 0]),
        "no ip; stop: link: truncated at offset 14: needs 8 bytes, 5 available",
    );
    check(
        LinkType::ETHERNET,
        &eth(0x8864, &cat(&[&[0x21], &pppoe(0x0021, &ip)[1..]])),
        "no ip; stop: link: invalid pppoe version at offset 14: not version 1 type 1",
    );
}

#[test]
fn mpls_label_stack() {
    let labels = [0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
    check(LinkType::ETHERNET, &eth(0x8847, &cat(&[&labels, &ipv4(17, &sip())])), V4_UDP);
    check(LinkType::ETHERNET, &eth(0x8847, &cat(&[&labels, &ipv6(17, &sip())])), V6_UDP);
    // A pseudowire control word (first nibble 0) is not decoded further.
    check(LinkType::ETHERNET, &eth(0x8847, &cat(&[&labels, &[0, 0, 0, 0]])), "no ip");
    check(
        LinkType::ETHERNET,
        &eth(0x8847, &labels[..6]),
        "no ip; stop: link: truncated at offset 18: needs 4 bytes, 2 available",
    );
}

#[test]
fn linux_sll() {
    let header = [0, 0, 0, 1, 0, 6, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0, 0x08, 0x00];
    check(LinkType::LINUX_SLL, &cat(&[&header, &ipv4(17, &sip())]), V4_UDP);
    check(LinkType::LINUX_SLL, &header[..15], "no ip; stop: link: truncated at offset 0: needs 16 bytes, 15 available");
}

#[test]
fn linux_sll2() {
    let header = [0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0, 0];
    check(LinkType::LINUX_SLL2, &cat(&[&header, &ipv6(17, &sip())]), V6_UDP);
    let mut vlan = header;
    vlan[0..2].copy_from_slice(&[0x81, 0x00]);
    check(LinkType::LINUX_SLL2, &cat(&[&vlan, &tag(7, 0x86dd), &ipv6(17, &sip())]), &format!("vlans [7]; {V6_UDP}"));
    check(LinkType::LINUX_SLL2, &header[..4], "no ip; stop: link: truncated at offset 0: needs 20 bytes, 4 available");
}

#[test]
fn raw_ip_by_version() {
    for link in [LinkType::RAW, LinkType(12), LinkType(14)] {
        check(link, &ipv4(17, &sip()), V4_UDP);
        check(link, &ipv6(17, &sip()), V6_UDP);
        check(link, &[0x50; 24], "no ip; stop: link: invalid ip version at offset 0: neither 4 nor 6");
        check(link, &[], "no ip; stop: link: truncated at offset 0: needs 1 bytes, 0 available");
    }
    check(LinkType::IPV4, &ipv4(17, &sip()), V4_UDP);
    check(LinkType::IPV6, &ipv6(17, &sip()), V6_UDP);
    check(LinkType::IPV4, &ipv6(17, &sip()), "no ip; stop: ipv4: invalid version at offset 0: not 4");
    check(LinkType::IPV6, &ipv4(17, &sip()), "no ip; stop: ipv6: truncated at offset 0: needs 40 bytes, 33 available");
}

#[test]
fn null_loopback_either_byte_order() {
    check(LinkType::NULL, &cat(&[&[2, 0, 0, 0], &ipv4(17, &sip())]), V4_UDP);
    check(LinkType::NULL, &cat(&[&[0, 0, 0, 2], &ipv4(17, &sip())]), V4_UDP);
    for family in [24u32, 28, 30] {
        check(LinkType::NULL, &cat(&[&family.to_le_bytes(), &ipv6(17, &sip())]), V6_UDP);
        check(LinkType::NULL, &cat(&[&family.to_be_bytes(), &ipv6(17, &sip())]), V6_UDP);
    }
    check(LinkType::NULL, &cat(&[&[7, 0, 0, 0], &ipv4(17, &sip())]), "no ip");
    check(LinkType::NULL, &[2, 0], "no ip; stop: link: truncated at offset 0: needs 4 bytes, 2 available");
}

#[test]
fn openbsd_loop_is_network_order() {
    check(LinkType::LOOP, &cat(&[&[0, 0, 0, 2], &ipv4(17, &sip())]), V4_UDP);
    check(LinkType::LOOP, &cat(&[&[0, 0, 0, 24], &ipv6(17, &sip())]), V6_UDP);
    check(LinkType::LOOP, &cat(&[&[2, 0, 0, 0], &ipv4(17, &sip())]), "no ip");
}

/// An NFLOG TLV in little-endian (the usual host order) or big-endian byte order.
fn tlv(tlv_type: u16, value: &[u8], big_endian: bool) -> Vec<u8> {
    let len = (4 + value.len()) as u16;
    let (len, tlv_type) = if big_endian {
        (len.to_be_bytes(), tlv_type.to_be_bytes())
    } else {
        (len.to_le_bytes(), tlv_type.to_le_bytes())
    };
    let mut t = cat(&[&len, &tlv_type, value]);
    t.resize(t.len().div_ceil(4) * 4, 0);
    t
}

#[test]
fn nflog_payload_tlv() {
    let ip = ipv4(17, &sip());
    for big_endian in [false, true] {
        let frame = cat(&[&[2, 0, 0, 0], &tlv(10, b"prefix", big_endian), &tlv(9, &ip[..ip.len() - 1], big_endian)]);
        check(LinkType::NFLOG, &frame, "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 64; udp 5060 > 5060 \"hell\"");
    }
    let v6 = cat(&[&[10, 0, 0, 0], &tlv(1, &[0; 4], false), &tlv(9, &ipv6(17, &sip()), false)]);
    check(LinkType::NFLOG, &v6, V6_UDP);
    check(LinkType::NFLOG, &cat(&[&[2, 0, 0, 0], &tlv(10, b"no payload", false)]), "no ip");
    check(
        LinkType::NFLOG,
        &[2, 0, 0, 0, 2, 0, 9, 0],
        "no ip; stop: link: invalid nflog tlv length at offset 4: less than the 4-byte tlv header",
    );
    check(
        LinkType::NFLOG,
        &[2, 0, 0, 0, 40, 0, 9, 0, 0x45],
        "no ip; stop: link: truncated at offset 4: needs 40 bytes, 5 available",
    );
}

#[test]
fn unknown_link_type_is_not_an_error() {
    check(LinkType(147), &eth(0x0800, &ipv4(17, &sip())), "no ip");
}

// ---- IPv4 and IPv6 ----------------------------------------------------------------

#[test]
fn ipv4_options_are_skipped() {
    let mut packet = ipv4_header(17, 24 + 13, 1, 0);
    packet[0] = 0x46;
    let packet = cat(&[&packet, &[1, 1, 1, 0], &sip()]);
    check(LinkType::IPV4, &packet, V4_UDP);
}

#[test]
fn ipv4_fragments() {
    let first = cat(&[&ipv4_header(17, 28, 0xbeef, 0x2000), &udp(5060, 5060, b"hello")[..8]]);
    check(
        LinkType::IPV4,
        &first,
        "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 64; fragment 10.0.0.1 > 10.0.0.2 id 48879 proto 17 offset 0 more \
         \"\\x13\\xc4\\x13\\xc4\\x00\\r\\x00\\x00\"",
    );
    let last = cat(&[&ipv4_header(17, 25, 0xbeef, 1), b"hello"]);
    check(
        LinkType::IPV4,
        &last,
        "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 64; fragment 10.0.0.1 > 10.0.0.2 id 48879 proto 17 offset 8 \"hello\"",
    );
    check(
        LinkType::IPV4,
        &last[..24],
        "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 64; stop: ipv4: truncated at offset 0: needs 25 bytes, 24 available",
    );
}

#[test]
fn ipv4_bad_headers() {
    let good = ipv4(17, &sip());
    let with = |at: usize, value: u8| {
        let mut p = good.clone();
        p[at] = value;
        p
    };
    check(LinkType::IPV4, &with(0, 0x55), "no ip; stop: ipv4: invalid version at offset 0: not 4");
    check(LinkType::IPV4, &with(0, 0x44), "no ip; stop: ipv4: invalid header length at offset 0: less than 20 bytes");
    check(LinkType::IPV4, &with(0, 0x4f), "no ip; stop: ipv4: truncated at offset 0: needs 60 bytes, 33 available");
    check(
        LinkType::IPV4,
        &cat(&[&with(3, 19)]),
        "no ip; stop: ipv4: invalid total length at offset 2: shorter than the header",
    );
    check(LinkType::IPV4, &good[..19], "no ip; stop: ipv4: truncated at offset 0: needs 20 bytes, 19 available");
}

#[test]
fn ipv6_extension_headers() {
    let ah = {
        let mut h = vec![0; 24];
        h[0] = 17;
        h[1] = 4;
        h
    };
    let payload = cat(&[&ext(43, 8), &ext(60, 16), &ext(51, 8), &ah, &sip()]);
    check(LinkType::IPV6, &ipv6(0, &payload), V6_UDP);
    check(LinkType::IPV6, &ipv6(59, b"ignored"), "ip 2001:db8::1 > 2001:db8::2 proto 59 ttl 32");
    check(
        LinkType::IPV6,
        &ipv6(60, &ext(6, 8)),
        "ip 2001:db8::1 > 2001:db8::2 proto 6 ttl 32; stop: tcp: truncated at offset 48: needs 20 bytes, 0 available",
    );
    check(
        LinkType::IPV6,
        &ipv6(0, &ext(17, 16)[..12]),
        "ip 2001:db8::1 > 2001:db8::2 proto 0 ttl 32; stop: ipv6: truncated at offset 40: needs 16 bytes, 12 available",
    );
    check(
        LinkType::IPV6,
        &ipv6(0, &[17]),
        "ip 2001:db8::1 > 2001:db8::2 proto 0 ttl 32; stop: ipv6: truncated at offset 40: needs 2 bytes, 1 available",
    );
}

#[test]
fn ipv6_fragments() {
    let frag = |offset_flags: u16, payload: &[u8]| {
        cat(&[&[60, 0], &offset_flags.to_be_bytes(), &0xdead_beef_u32.to_be_bytes(), payload])
    };
    check(
        LinkType::IPV6,
        &ipv6(44, &frag(0x0001, b"12345678")),
        "ip 2001:db8::1 > 2001:db8::2 proto 60 ttl 32; \
         fragment 2001:db8::1 > 2001:db8::2 id 3735928559 proto 60 offset 0 more \"12345678\"",
    );
    check(
        LinkType::IPV6,
        &ipv6(44, &frag(0x0010, b"tail")),
        "ip 2001:db8::1 > 2001:db8::2 proto 60 ttl 32; \
         fragment 2001:db8::1 > 2001:db8::2 id 3735928559 proto 60 offset 16 \"tail\"",
    );
    // An atomic fragment (offset 0, no more fragments) is a whole packet.
    let atomic = cat(&[&[17, 0, 0, 0, 0, 0, 0, 1], &sip()]);
    check(LinkType::IPV6, &ipv6(44, &atomic), V6_UDP);
    let cut = ipv6(44, &frag(0x0001, b"12345678"));
    check(
        LinkType::IPV6,
        &cut[..cut.len() - 3],
        "ip 2001:db8::1 > 2001:db8::2 proto 60 ttl 32; stop: ipv6: truncated at offset 48: needs 8 bytes, 5 available",
    );
    check(
        LinkType::IPV6,
        &ipv6(44, &[17, 0, 0]),
        "ip 2001:db8::1 > 2001:db8::2 proto 44 ttl 32; stop: ipv6: truncated at offset 40: needs 8 bytes, 3 available",
    );
}

#[test]
fn ipv6_bad_headers() {
    let mut packet = ipv6(17, &sip());
    packet[0] = 0x40;
    check(LinkType::IPV6, &packet, "no ip; stop: ipv6: invalid version at offset 0: not 6");
    check(LinkType::IPV6, &packet[..39], "no ip; stop: ipv6: truncated at offset 0: needs 40 bytes, 39 available");
}

// ---- Transport errors -----------------------------------------------------------

#[test]
fn truncated_transport_headers_keep_ip() {
    let ip = "ip 10.0.0.1 > 10.0.0.2";
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(17, &[0x13, 0xc4, 0x13])),
        &format!("{ip} proto 17 ttl 64; stop: udp: truncated at offset 34: needs 8 bytes, 3 available"),
    );
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(6, &tcp(1, 2, b"")[..19])),
        &format!("{ip} proto 6 ttl 64; stop: tcp: truncated at offset 34: needs 20 bytes, 19 available"),
    );
    let mut long_header = tcp(1, 2, b"xx");
    long_header[12] = 0x80;
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(6, &long_header)),
        &format!("{ip} proto 6 ttl 64; stop: tcp: truncated at offset 34: needs 32 bytes, 22 available"),
    );
    long_header[12] = 0x40;
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(6, &long_header)),
        &format!("{ip} proto 6 ttl 64; stop: tcp: invalid data offset at offset 46: less than 5 (20 bytes)"),
    );
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(132, &[0; 11])),
        &format!("{ip} proto 132 ttl 64; stop: sctp: truncated at offset 34: needs 12 bytes, 11 available"),
    );
}

#[test]
fn udp_length_field() {
    let ip = "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 64";
    let with_length = |len: u16| {
        let mut d = sip();
        d[4..6].copy_from_slice(&len.to_be_bytes());
        eth(0x0800, &ipv4(17, &d))
    };
    check(LinkType::ETHERNET, &with_length(10), &format!("{ip}; udp 5060 > 5060 \"he\""));
    check(LinkType::ETHERNET, &with_length(0), V4_UDP);
    check(
        LinkType::ETHERNET,
        &with_length(100),
        &format!("{ip}; stop: udp: truncated at offset 34: needs 100 bytes, 13 available"),
    );
    check(
        LinkType::ETHERNET,
        &with_length(7),
        &format!("{ip}; stop: udp: invalid length at offset 38: less than the 8-byte header"),
    );
    // A UDP length within the IP length but beyond a snaplen-cut capture is not an error.
    let frame = with_length(13);
    check(LinkType::ETHERNET, &frame[..frame.len() - 2], &format!("{ip}; udp 5060 > 5060 \"hel\""));
}

#[test]
fn truncated_link_layers() {
    check(LinkType::ETHERNET, &[0; 10], "no ip; stop: link: truncated at offset 0: needs 14 bytes, 10 available");
    check(
        LinkType::ETHERNET,
        &eth(0x8100, &[0, 1]),
        "no ip; stop: vlan: truncated at offset 14: needs 4 bytes, 2 available",
    );
    check(
        LinkType::ETHERNET,
        &eth(0x88a8, &cat(&[&tag(1, 0x8100), &[0, 2, 8]])),
        "vlans [1]; no ip; stop: vlan: truncated at offset 18: needs 4 bytes, 3 available",
    );
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(17, &sip())[..10]),
        "no ip; stop: ipv4: truncated at offset 14: needs 20 bytes, 10 available",
    );
    check(
        LinkType::ETHERNET,
        &eth(0x86dd, &ipv6(17, &sip())[..30]),
        "no ip; stop: ipv6: truncated at offset 14: needs 40 bytes, 30 available",
    );
}

// ---- Tunnels ----------------------------------------------------------------------

fn gre(flags: u8, protocol: u16, optional: &[u8], payload: &[u8]) -> Vec<u8> {
    cat(&[&[flags, 0], &protocol.to_be_bytes(), optional, payload])
}

const INNER: &str = "ip 192.168.1.1 > 192.168.1.2 proto 17 ttl 64";

/// An IPv4 packet with other addresses, to tell the inner packet from the outer one.
fn inner_ipv4() -> Vec<u8> {
    let mut p = ipv4(17, &sip());
    p[12..20].copy_from_slice(&[192, 168, 1, 1, 192, 168, 1, 2]);
    p
}

#[test]
fn gre_ip() {
    let inner = inner_ipv4();
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(47, &gre(0, 0x0800, &[], &inner))),
        &format!("{INNER}; tunnels 1; udp 5060 > 5060 \"hello\""),
    );
    // Checksum, key and sequence number words.
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(47, &gre(0xb0, 0x0800, &[0; 12], &inner))),
        &format!("{INNER}; tunnels 1; udp 5060 > 5060 \"hello\""),
    );
    check(
        LinkType::ETHERNET,
        &eth(0x0800, &ipv4(47, &gre(0x20, 0x86dd, &[0; 4], &ipv6(17, &sip())))),
        &format!("{V6_IP}; tunnels 1; udp 5060 > 5060 \"hello\""),
    );
}

#[test]
fn enhanced_gre_carries_ppp_with_ip() {
    // Version 1, key and sequence flags, protocol 0x880b, payload length, call id, sequence
    // number; then PPP with address/control and the two-byte protocol 0x0021.
    let mut pptp = vec![0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 7, 0, 0, 0, 1, 0xff, 0x03, 0x00, 0x21];
    pptp.extend_from_slice(&ipv4(17, &udp(5060, 5060, b"hello")));
    check(
        LinkType::IPV4,
        &ipv4(47, &pptp),
        "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 64; tunnels 1; udp 5060 > 5060 \"hello\"",
    );
    // The compressed one-byte protocol, with the acknowledgement number present.
    let mut compressed = vec![0x20, 0x81, 0x88, 0x0b, 0, 0, 0, 7, 0, 0, 0, 2, 0x21];
    compressed.extend_from_slice(&ipv4(17, &udp(5060, 5060, b"hello")));
    check(
        LinkType::IPV4,
        &ipv4(47, &compressed),
        "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 64; tunnels 1; udp 5060 > 5060 \"hello\"",
    );
}

#[test]
fn gre_other_payloads_stay_gre() {
    let outer = "ip 10.0.0.1 > 10.0.0.2 proto 47 ttl 64";
    check(
        LinkType::IPV4,
        &ipv4(47, &gre(0, 0x880b, &[], b"ppp")),
        &format!("{outer}; other 47 \"\\x00\\x00\\x88\\x0bppp\""),
    );
    // Enhanced GRE (PPTP) carrying PPP LCP (0xc021), not IP.
    check(
        LinkType::IPV4,
        &ipv4(47, &[0x30, 0x01, 0x88, 0x0b, 0, 4, 0, 0, 0, 0, 0, 1, 0xc0, 0x21, 1, 1]),
        &format!("{outer}; other 47 \"0\\x01\\x88\\x0b\\x00\\x04\\x00\\x00\\x00\\x00\\x00\\x01\\xc0!\\x01\\x01\""),
    );
    check(
        LinkType::IPV4,
        &ipv4(47, &gre(0x20, 0x0800, &[0, 0], b"")),
        &format!("{outer}; other 47 \" \\x00\\x08\\x00\\x00\\x00\"; stop: gre: truncated at offset 20: needs 8 bytes, 6 available"),
    );
}

#[test]
fn gre_transparent_ethernet() {
    let frame = eth(0x8100, &cat(&[&tag(42, 0x0800), &inner_ipv4()]));
    check(
        LinkType::IPV4,
        &ipv4(47, &gre(0, 0x6558, &[], &frame)),
        &format!("vlans [42]; {INNER}; tunnels 1; udp 5060 > 5060 \"hello\""),
    );
}

#[test]
fn erspan() {
    let frame = eth(0x0800, &inner_ipv4());
    let expected = format!("{INNER}; tunnels 1; udp 5060 > 5060 \"hello\"");
    // Type II: GRE with a sequence number, then an 8-byte ERSPAN header.
    let type2 = [0x10, 0x01, 0, 5, 0, 0, 0, 0];
    check(LinkType::IPV4, &ipv4(47, &gre(0x10, 0x88be, &[0, 0, 0, 1], &cat(&[&type2, &frame]))), &expected);
    // Type I: no sequence number, no ERSPAN header.
    check(LinkType::IPV4, &ipv4(47, &gre(0, 0x88be, &[], &frame)), &expected);
    // Type III, without and with the platform-specific subheader.
    let type3 = [0x20, 0x01, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
    check(LinkType::IPV4, &ipv4(47, &gre(0x10, 0x22eb, &[0, 0, 0, 1], &cat(&[&type3, &frame]))), &expected);
    let mut type3_o = type3;
    type3_o[11] = 0x01;
    let with_subheader = cat(&[&type3_o, &[0xff; 8], &frame]);
    check(LinkType::IPV4, &ipv4(47, &gre(0x10, 0x22eb, &[0, 0, 0, 1], &with_subheader)), &expected);
    // Type III carrying an IP packet (frame type 2) rather than an Ethernet frame.
    let mut type3_ip = type3;
    type3_ip[10] = 2 << 2;
    check(LinkType::IPV4, &ipv4(47, &gre(0x10, 0x22eb, &[0, 0, 0, 1], &cat(&[&type3_ip, &inner_ipv4()]))), &expected);
}

#[test]
fn erspan_truncated() {
    let outer = "ip 10.0.0.1 > 10.0.0.2 proto 47 ttl 64";
    let packet = ipv4(47, &gre(0x10, 0x88be, &[0, 0, 0, 1], &[0x10, 0x01, 0, 5]));
    let stop = decode_frame(LinkType::IPV4, &packet).stop;
    assert_eq!(stop, Some(DecodeError::truncated(Layer::Gre, 28, 8, 4)));
    let mut type3_o = [0x20, 0x01, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0xff].to_vec();
    let packet = ipv4(47, &gre(0, 0x22eb, &[], &type3_o));
    assert_eq!(decode_frame(LinkType::IPV4, &packet).stop, Some(DecodeError::truncated(Layer::Gre, 24, 20, 13)));
    // The inner Ethernet frame cut short: the tunnel was entered, the outer IP stays.
    type3_o[11] = 0;
    type3_o.truncate(12);
    let packet = ipv4(47, &gre(0, 0x22eb, &[], &cat(&[&type3_o, &[0; 10]])));
    let p = decode_frame(LinkType::IPV4, &packet);
    assert!(summary(&p).starts_with(&format!("{outer}; tunnels 1; other 47 ")));
    assert_eq!(p.stop, Some(DecodeError::truncated(Layer::Link, 36, 14, 10)));
}

#[test]
fn ip_in_ip() {
    check(LinkType::IPV4, &ipv4(4, &inner_ipv4()), &format!("{INNER}; tunnels 1; udp 5060 > 5060 \"hello\""));
    check(
        LinkType::IPV4,
        &ipv4(41, &ipv6(17, &sip())),
        "ip 2001:db8::1 > 2001:db8::2 proto 17 ttl 32; tunnels 1; udp 5060 > 5060 \"hello\"",
    );
    check(LinkType::IPV6, &ipv6(4, &inner_ipv4()), &format!("{INNER}; tunnels 1; udp 5060 > 5060 \"hello\""));
}

#[test]
fn tunnel_with_a_broken_inner_packet_keeps_the_outer_one() {
    let inner = inner_ipv4();
    check(
        LinkType::IPV4,
        &ipv4(4, &inner[..12]),
        "ip 10.0.0.1 > 10.0.0.2 proto 4 ttl 64; tunnels 1; \
         other 4 \"E\\x00\\x00!\\x124@\\x00@\\x11\\x00\\x00\"; stop: ipv4: truncated at offset 20: needs 20 bytes, 12 available",
    );
    // The inner packet says it is longer than the outer one leaves room for.
    let mut long = inner.clone();
    long[3] += 10;
    check(
        LinkType::IPV4,
        &ipv4(4, &long),
        &format!("{INNER}; tunnels 1; stop: ipv4: truncated at offset 20: needs 43 bytes, 33 available"),
    );
}

#[test]
fn tunnels_nest_at_most_four_deep() {
    let mut packet = inner_ipv4();
    for _ in 0..4 {
        packet = ipv4(4, &packet);
    }
    check(LinkType::IPV4, &packet, &format!("{INNER}; tunnels 4; udp 5060 > 5060 \"hello\""));
    let five = ipv4(4, &packet);
    let p = decode_frame(LinkType::IPV4, &five);
    assert_eq!(p.tunnels, 4);
    assert_eq!(p.stop, Some(DecodeError::invalid(Layer::Ipv4, 100, "tunnel nesting", "more than 4 nested tunnels")));
}

/// A GTP-U T-PDU; `optional` is the sequence/N-PDU/next-extension word and the
/// extension headers, present when `flags` has E, S or PN set.
fn gtp(flags: u8, message: u8, optional: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = (optional.len() + payload.len()) as u16;
    cat(&[&[0x30 | flags, message], &len.to_be_bytes(), &[0, 0, 0, 9], optional, payload])
}

#[test]
fn gtp_u() {
    let expected = format!("{INNER}; tunnels 1; udp 5060 > 5060 \"hello\"");
    let outer = |gtp: &[u8]| eth(0x0800, &ipv4(17, &udp(2152, 2152, gtp)));
    check(LinkType::ETHERNET, &outer(&gtp(0, 255, &[], &inner_ipv4())), &expected);
    // Sequence number present, no extension headers.
    check(LinkType::ETHERNET, &outer(&gtp(0x02, 255, &[0, 1, 0, 0], &inner_ipv4())), &expected);
    // A PDU session container extension header (type 0x85), then none.
    let ext = [0, 0, 0, 0x85, 1, 0x10, 0x05, 0x00];
    check(LinkType::ETHERNET, &outer(&gtp(0x04, 255, &ext, &inner_ipv4())), &expected);
    // Two chained extension headers, the first 8 bytes long.
    let two = [0, 0, 0, 0x85, 2, 0, 0, 0, 0, 0, 0, 0x40, 1, 0, 0, 0];
    check(LinkType::ETHERNET, &outer(&gtp(0x04, 255, &two, &inner_ipv4())), &expected);
    check(
        LinkType::ETHERNET,
        &outer(&gtp(0, 255, &[], &ipv6(17, &sip()))),
        "ip 2001:db8::1 > 2001:db8::2 proto 17 ttl 32; tunnels 1; udp 5060 > 5060 \"hello\"",
    );
    // From either port.
    check(LinkType::IPV4, &ipv4(17, &udp(40000, 2152, &gtp(0, 255, &[], &inner_ipv4()))), &expected);
}

#[test]
fn gtp_u_next_extension_type_ignored_without_e_flag() {
    // S set, E clear: the next-extension byte is an unused field the receiver must not
    // evaluate (TS 29.060 §6); a sender that leaves garbage there still gets its packet
    // through (it was read as a chain of extension headers into the inner IP header).
    let expected = format!("{INNER}; tunnels 1; udp 5060 > 5060 \"hello\"");
    let outer = |gtp: &[u8]| eth(0x0800, &ipv4(17, &udp(2152, 2152, gtp)));
    check(LinkType::ETHERNET, &outer(&gtp(0x02, 255, &[0, 1, 0, 0x85], &inner_ipv4())), &expected);
}

#[test]
fn gtp_u_signalling_stays_udp() {
    let outer = "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 64";
    // Echo request.
    check(
        LinkType::IPV4,
        &ipv4(17, &udp(2152, 2152, &gtp(0x02, 1, &[0, 1, 0, 0], b""))),
        &format!("{outer}; udp 2152 > 2152 \"2\\x01\\x00\\x04\\x00\\x00\\x00\\t\\x00\\x01\\x00\\x00\""),
    );
    // Not GTPv1 at all.
    check(LinkType::IPV4, &ipv4(17, &udp(2152, 2152, b"junk")), &format!("{outer}; udp 2152 > 2152 \"junk\""));
    check(LinkType::IPV4, &ipv4(17, &udp(2152, 2152, b"")), &format!("{outer}; udp 2152 > 2152 \"\""));
    // A T-PDU that carries no IP packet.
    check(
        LinkType::IPV4,
        &ipv4(17, &udp(2152, 2152, &gtp(0, 255, &[], b"\x01ppp"))),
        &format!("{outer}; udp 2152 > 2152 \"0\\xff\\x00\\x04\\x00\\x00\\x00\\t\\x01ppp\""),
    );
}

#[test]
fn gtp_u_errors() {
    let decode = |gtp: &[u8]| decode_frame(LinkType::IPV4, &ipv4(17, &udp(2152, 2152, gtp))).stop;
    // 20 bytes of IPv4 and 8 of UDP: GTP starts at 28.
    assert_eq!(decode(&[0x30, 255, 0, 0]), Some(DecodeError::truncated(Layer::Gtp, 28, 8, 4)));
    let mut lying = gtp(0, 255, &[], &inner_ipv4());
    lying[3] += 1;
    assert_eq!(decode(&lying), Some(DecodeError::truncated(Layer::Gtp, 28, 42, 41)));
    assert_eq!(decode(&gtp(0x02, 255, &[0, 1], b"")), Some(DecodeError::truncated(Layer::Gtp, 28, 12, 10)));
    assert_eq!(
        decode(&gtp(0x04, 255, &[0, 0, 0, 0x85, 0, 0, 0, 0], b"")),
        Some(DecodeError::invalid(Layer::Gtp, 40, "extension header length", "zero"))
    );
    assert_eq!(
        decode(&gtp(0x04, 255, &[0, 0, 0, 0x85, 2, 0, 0, 0], b"")),
        Some(DecodeError::truncated(Layer::Gtp, 40, 8, 4))
    );
    let mut short = gtp(0x02, 255, &[0, 1, 0, 0], &inner_ipv4());
    short[2..4].copy_from_slice(&[0, 2]);
    assert_eq!(
        decode(&short),
        Some(DecodeError::invalid(Layer::Gtp, 30, "length", "shorter than the optional header fields"))
    );
    // The inner packet cut short: UDP stays, the tunnel counts.
    let cut = ipv4(17, &udp(2152, 2152, &gtp(0, 255, &[], &inner_ipv4()[..15])));
    let p = decode_frame(LinkType::IPV4, &cut);
    assert_eq!((p.tunnels, p.ip.map(|ip| ip.src)), (1, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))));
    assert!(matches!(p.transport, Transport::Udp { src_port: 2152, .. }));
    assert_eq!(p.stop, Some(DecodeError::truncated(Layer::Ipv4, 36, 20, 15)));
}

// ---- decode_transport ---------------------------------------------------------------

#[test]
fn decode_transport_after_reassembly() {
    let (src, dst) = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    let datagram = sip();
    assert_eq!(summary(&decode_transport(17, src, dst, &datagram)), V4_UDP.replace("ttl 64", "ttl 0"));
    assert_eq!(
        summary(&decode_transport(17, src, dst, &datagram[..5])),
        "ip 10.0.0.1 > 10.0.0.2 proto 17 ttl 0; stop: udp: truncated at offset 0: needs 8 bytes, 5 available"
    );
    let (src6, dst6) = (IpAddr::V6("2001:db8::1".parse().unwrap()), IpAddr::V6("2001:db8::2".parse().unwrap()));
    let with_options = cat(&[&ext(17, 8), &datagram]);
    assert_eq!(summary(&decode_transport(60, src6, dst6, &with_options)), V6_UDP.replace("ttl 32", "ttl 0"));
    let gtp_u = udp(2152, 2152, &gtp(0, 255, &[], &inner_ipv4()));
    assert_eq!(
        summary(&decode_transport(17, src, dst, &gtp_u)),
        format!("{INNER}; tunnels 1; udp 5060 > 5060 \"hello\"")
    );
}

// ---- Robustness ---------------------------------------------------------------------

const LINKS: [LinkType; 12] = [
    LinkType::NULL,
    LinkType::ETHERNET,
    LinkType(12),
    LinkType(14),
    LinkType::RAW,
    LinkType::LOOP,
    LinkType::LINUX_SLL,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::NFLOG,
    LinkType::LINUX_SLL2,
    LinkType(9999),
];

#[test]
fn every_prefix_of_nested_frames_decodes_without_panic() {
    let inner =
        eth(0x8100, &cat(&[&tag(3, 0x86dd), &ipv6(0, &cat(&[&ext(44, 8), &[17, 0, 0, 0, 0, 0, 0, 0], &sip()]))]));
    let erspan = gre(0x10, 0x22eb, &[0, 0, 0, 1], &cat(&[&[0x20, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1], &[0; 8], &inner]));
    let gtp_u = udp(2152, 2152, &gtp(0x04, 255, &[0, 0, 0, 0x85, 1, 0, 0, 0], &ipv4(4, &ipv4(47, &erspan))));
    let frames = [
        eth(0x8864, &cat(&[&[0x11, 0, 0, 1, 0, 0, 0, 0x21], &ipv4(17, &gtp_u)])),
        eth(0x8847, &cat(&[&[0, 0, 1, 0], &ipv6(41, &ipv6(6, &tcp(1, 2, b"x")))])),
        cat(&[&[2, 0, 0, 0], &tlv(9, &ipv4(132, &[0; 16]), false)]),
    ];
    for frame in &frames {
        for len in 0..=frame.len() {
            for link in LINKS {
                let p = decode_frame(link, &frame[..len]);
                if let Some(DecodeError::Truncated { offset, needed, available, .. }) = p.stop {
                    assert!(available < needed, "{link} {len}: {:?}", p.stop);
                    assert!(offset <= len, "{link} {len}: {:?}", p.stop);
                }
            }
        }
    }
    // The full first frame goes through PPPoE, then the tunnels GTP-U, IP-in-IP and GRE/ERSPAN III.
    assert_eq!(
        summary(&decode_frame(LinkType::ETHERNET, &frames[0])),
        format!("vlans [3]; {V6_IP}; tunnels 3; udp 5060 > 5060 \"hello\"")
    );
}

#[test]
fn random_bytes_decode_without_panic() {
    // A fixed xorshift sequence: reproducible garbage, biased towards small values that
    // look like the fields (versions, lengths, ethertypes) decoders branch on.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds = [eth(0x0800, &ipv4(17, &udp(2152, 2152, &gtp(0, 255, &[], &inner_ipv4())))), ipv6(0, &ext(44, 8))];
    for round in 0..20_000 {
        let mut frame = seeds[round % 2].clone();
        for _ in 0..(next() % 6) {
            let at = (next() as usize) % frame.len();
            frame[at] = (next() % 256) as u8;
        }
        frame.truncate((next() as usize) % (frame.len() + 1));
        for link in LINKS {
            let _ = decode_frame(link, &frame);
        }
    }
}

// ---- Real captures --------------------------------------------------------------------

/// The frames of a classic pcap file (either byte order): (link type, frame bytes).
/// pcapng files and anything unreadable give `None`; this reads just enough for the test,
/// so it does not depend on the capture module.
fn pcap_frames(bytes: &[u8]) -> Option<(LinkType, Vec<&[u8]>)> {
    let magic = bytes.get(..4)?;
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return None,
    };
    let word = |at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    };
    let link = LinkType(word(20)? & 0x0fff_ffff);
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = word(at + 8)? as usize;
        frames.push(bytes.get(at + 16..at + 16 + caplen)?);
        at += 16 + caplen;
    }
    Some((link, frames))
}

/// Counts over the frames of one capture.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    frames: usize,
    ip: usize,
    udp: usize,
    tcp: usize,
    sctp: usize,
    fragments: usize,
    tunnelled: usize,
    vlan: usize,
    stopped: usize,
}

fn tally(path: &str) -> Option<Tally> {
    let bytes = std::fs::read(crate::test_support::corpus_dir()?.join("public").join(path)).ok()?;
    let (link, frames) = pcap_frames(&bytes)?;
    let mut t = Tally::default();
    for frame in frames {
        let p = decode_frame(link, frame);
        t.frames += 1;
        t.ip += usize::from(p.ip.is_some());
        t.udp += usize::from(matches!(p.transport, Transport::Udp { .. }));
        t.tcp += usize::from(matches!(p.transport, Transport::Tcp(_)));
        t.sctp += usize::from(matches!(p.transport, Transport::Sctp { .. }));
        t.fragments += usize::from(matches!(p.transport, Transport::Fragment(_)));
        t.tunnelled += usize::from(p.tunnels > 0);
        t.vlan += usize::from(!p.vlans.is_empty());
        t.stopped += usize::from(p.stop.is_some());
    }
    Some(t)
}

#[test]
fn real_captures() {
    let tally_of = |frames, ip, udp, tcp, sctp, fragments, tunnelled, vlan, stopped| Tally {
        frames,
        ip,
        udp,
        tcp,
        sctp,
        fragments,
        tunnelled,
        vlan,
        stopped,
    };
    // Checked frame by frame against tshark 4.0 (with IP reassembly off): the innermost
    // addresses, ports and tunnel counts agree, and every stopped frame is one tshark
    // flags as malformed too.
    let expectations = [
        ("sngrep/ipv6frag.pcap", tally_of(34, 34, 30, 0, 0, 4, 0, 0, 0)),
        ("sngrep/ipip.pcap", tally_of(4, 4, 0, 4, 0, 0, 2, 0, 0)),
        ("heplify/ipip0.pcap", tally_of(8, 8, 8, 0, 0, 0, 0, 0, 0)),
        ("heplify/sip_sctp.pcap", tally_of(5, 5, 0, 0, 5, 0, 0, 0, 0)),
        ("arkime/gtp-iphone.pcap", tally_of(106, 106, 40, 58, 0, 0, 106, 0, 0)),
        ("zeek/gtp_ext_header.pcap", tally_of(2, 2, 0, 0, 0, 2, 0, 0, 0)),
        ("zeek/q-in-q.pcap", tally_of(5, 4, 4, 0, 0, 0, 0, 5, 0)),
        ("tcpdump/802.1ad_QinQ.pcap", tally_of(2, 0, 0, 0, 0, 0, 0, 2, 0)),
        ("tcpdump/nflog.pcap", tally_of(4, 4, 4, 0, 0, 0, 0, 0, 0)),
        ("zeek/linux_dlt_sll2.pcap", tally_of(6, 4, 0, 0, 0, 0, 0, 0, 0)),
        ("pcapplusplus/sip_reqs.pcap", tally_of(4, 4, 4, 0, 0, 0, 0, 0, 0)),
        ("pcapplusplus/ip-frag.pcap", tally_of(3000, 2996, 831, 256, 47, 1859, 0, 0, 0)),
        ("ndpi/fuzz-2006-06-26-2594.pcap", tally_of(691, 606, 496, 50, 0, 26, 0, 0, 36)),
    ];
    for (path, expected) in expectations {
        if let Some(got) = tally(path) {
            assert_eq!(got, expected, "{path}");
        }
    }
}

/// Reassembles the fragments of a capture; returns (datagrams completed, fragments
/// refused, completed datagrams that decode to UDP/TCP/SCTP without error).
fn reassemble(path: &str) -> Option<(usize, usize, usize)> {
    use crate::ipfrag::{FragmentLimits, FragmentReassembler};
    let bytes = std::fs::read(crate::test_support::corpus_dir()?.join("public").join(path)).ok()?;
    let (link, frames) = pcap_frames(&bytes)?;
    let mut reassembler = FragmentReassembler::new(FragmentLimits::default());
    let (mut done, mut refused, mut decoded) = (0, 0, 0);
    for frame in frames {
        let Transport::Fragment(fragment) = decode_frame(link, frame).transport else { continue };
        match reassembler.push(crate::Timestamp::default(), &fragment) {
            Ok(Some(d)) => {
                done += 1;
                let inner = decode_transport(d.protocol, d.src, d.dst, &d.payload);
                let transport =
                    matches!(inner.transport, Transport::Udp { .. } | Transport::Tcp(_) | Transport::Sctp { .. });
                decoded += usize::from(inner.stop.is_none() && transport);
            }
            Ok(None) => {}
            Err(_) => refused += 1,
        }
    }
    Some((done, refused, decoded))
}

#[test]
fn real_captures_reassembled() {
    // tshark reassembles the same numbers of datagrams, but for the copies: ip-frag.pcap
    // holds six NFS datagrams whose every fragment was captured twice (frames 839-851 hold
    // one), and each copy completes here (tshark: 190, taking the second for repeats).
    for (path, expected) in [
        ("sngrep/ipv6frag.pcap", (2, 0, 2)),
        ("pcapplusplus/ip-frag.pcap", (196, 0, 196)),
        ("zeek/gtp1_gn_normal_incl_fragmentation.pcap", (36, 0, 36)),
    ] {
        if let Some(got) = reassemble(path) {
            assert_eq!(got, expected, "{path}");
        }
    }
}

#[test]
fn the_innermost_tunnel_is_kept_with_its_outer_endpoints_and_key() {
    let outer = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    let tunnel = |packet: &[u8]| {
        let p = decode_frame(LinkType::IPV4, packet);
        p.tunnel.map(|t| (t.kind, t.src, t.dst, t.key))
    };
    // GTP-U: the TEID (9 in `gtp`).
    let gtp_u = ipv4(17, &udp(2152, 2152, &gtp(0, 255, &[], &inner_ipv4())));
    assert_eq!(tunnel(&gtp_u), Some((TunnelKind::GtpU, outer.0, outer.1, Some(9))));
    // GRE with a checksum word then a key word; and without a key.
    let keyed = gre(0xa0, 0x0800, &[0, 0, 0, 0, 0, 0, 0x12, 0x34], &inner_ipv4());
    assert_eq!(tunnel(&ipv4(47, &keyed)), Some((TunnelKind::Gre, outer.0, outer.1, Some(0x1234))));
    assert_eq!(tunnel(&ipv4(47, &gre(0, 0x0800, &[], &inner_ipv4()))), Some((TunnelKind::Gre, outer.0, outer.1, None)));
    assert_eq!(tunnel(&ipv4(4, &inner_ipv4())), Some((TunnelKind::IpInIp, outer.0, outer.1, None)));
    // Nested: the innermost tunnel is the packet's (its outer header is the first tunnel's inner one).
    let nested = ipv4(4, &ipv4(17, &udp(2152, 2152, &gtp(0, 255, &[], &inner_ipv4()))));
    assert_eq!(tunnel(&nested), Some((TunnelKind::GtpU, outer.0, outer.1, Some(9))));
    // Mirroring is not a tunnel: the frame is the traffic as it was.
    let mirrored = ipv4(47, &gre(0, 0x88be, &[], &eth(0x0800, &inner_ipv4())));
    assert_eq!(tunnel(&mirrored), None);
    assert_eq!(tunnel(&ipv4(17, &sip())), None);
    // GTP-U signalling stays plain UDP, with no tunnel.
    assert_eq!(tunnel(&ipv4(17, &udp(2152, 2152, &gtp(0, 1, &[], &[])))), None);
}
