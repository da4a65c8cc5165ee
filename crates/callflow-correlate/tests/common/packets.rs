//! IPv4 and UDP packets for the tests, built with pnet_packet (checksums left zero, which the decoders do not check).

use pnet_packet::ip::IpNextHeaderProtocol;
use pnet_packet::ipv4::MutableIpv4Packet;
use pnet_packet::udp::MutableUdpPacket;
use std::net::Ipv4Addr;

/// An IPv4 header and payload; `flags_offset` holds DF (0x4000), MF (0x2000) and the
/// fragment offset in 8-byte units, as the header's 16 bits do.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, id: u16, flags_offset: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; 20 + payload.len()];
    let mut p = MutableIpv4Packet::new(&mut buf).expect("room for the header");
    p.set_version(4);
    p.set_header_length(5);
    p.set_total_length((20 + payload.len()) as u16);
    p.set_identification(id);
    p.set_flags((flags_offset >> 13) as u8);
    p.set_fragment_offset(flags_offset & 0x1fff);
    p.set_ttl(64);
    p.set_next_level_protocol(IpNextHeaderProtocol(protocol));
    p.set_source(Ipv4Addr::from(src));
    p.set_destination(Ipv4Addr::from(dst));
    p.set_payload(payload);
    buf
}

/// A UDP header and payload.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; 8 + payload.len()];
    let mut u = MutableUdpPacket::new(&mut buf).expect("room for the header");
    u.set_source(sport);
    u.set_destination(dport);
    u.set_length((8 + payload.len()) as u16);
    u.set_payload(payload);
    buf
}

/// A TCP header (20 bytes, flags PSH+ACK unless `flags` says otherwise) and payload.
// Not every test binary builds TCP segments.
#[allow(dead_code)]
pub fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; 20 + payload.len()];
    let mut t = pnet_packet::tcp::MutableTcpPacket::new(&mut buf).expect("room for the header");
    t.set_source(sport);
    t.set_destination(dport);
    t.set_sequence(seq);
    t.set_data_offset(5);
    t.set_flags(flags);
    t.set_window(65_535);
    t.set_payload(payload);
    buf
}

/// One packet of a test's script: a UDP payload from one address to another.
// Not every test binary runs scripts.
#[allow(dead_code)]
pub struct Scripted {
    pub src: std::net::SocketAddrV4,
    pub dst: std::net::SocketAddrV4,
    pub payload: Vec<u8>,
}

#[allow(dead_code)]
impl Scripted {
    /// A packet from `src` to `dst` (`"10.0.0.1:5060"`).
    pub fn new(src: &str, dst: &str, payload: Vec<u8>) -> Scripted {
        Scripted { src: src.parse().unwrap(), dst: dst.parse().unwrap(), payload }
    }

    /// The packet as the `n`th IPv4 datagram of its script (its id; DF set).
    pub fn ipv4(&self, n: usize) -> Vec<u8> {
        let udp = udp(self.src.port(), self.dst.port(), &self.payload);
        ipv4(self.src.ip().octets(), self.dst.ip().octets(), 17, n as u16, 0x4000, &udp)
    }
}
