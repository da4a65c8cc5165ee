//! Classic pcap output (little-endian, microsecond timestamps, Ethernet; written by `pcap-file`) and the Ethernet/802.1Q/IPv4/UDP/TCP framing of generated packets.

use pcap_file::pcap::{PcapHeader, PcapPacket};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

const SNAPLEN: u32 = 262_144;

/// Writes the file header at once, then one record per frame (through `pcap-file`, the
/// workspace's one pcap writer), counting what it wrote.
pub struct PcapWriter<W: Write> {
    out: pcap_file::pcap::PcapWriter<W>,
    packets: u64,
    bytes: u64,
}

fn pcap_error(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        e => io::Error::other(e),
    }
}

impl<W: Write> PcapWriter<W> {
    pub fn new(out: W) -> io::Result<Self> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0, // timestamps are UTC
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::Little,
        };
        let out = pcap_file::pcap::PcapWriter::with_header(out, header).map_err(pcap_error)?;
        Ok(PcapWriter { out, packets: 0, bytes: 24 })
    }

    /// One record; `ts_us` is microseconds since the Unix epoch.
    pub fn write(&mut self, ts_us: u64, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len()).map_err(|_| io::Error::other("frame longer than 4 GiB"))?;
        let written =
            self.out.write_packet(&PcapPacket::new(Duration::from_micros(ts_us), len, frame)).map_err(pcap_error)?;
        self.packets += 1;
        self.bytes += written as u64;
        Ok(())
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// File size so far, header included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn into_inner(self) -> W {
        self.out.into_writer()
    }
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// What goes in a TCP header besides the ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

/// A locally administered MAC made from the IPv4 address, so each host keeps one MAC.
pub fn mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

/// Replaces `buf` with an Ethernet frame carrying `payload` in UDP.
pub fn udp_frame(
    buf: &mut Vec<u8>,
    vlan: Option<u16>,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ip_id: u16,
    payload: &[u8],
) {
    buf.clear();
    let udp_len = 8 + payload.len();
    ethernet_ipv4(buf, vlan, *src.ip(), *dst.ip(), 17, ip_id, udp_len);
    let start = buf.len();
    buf.extend_from_slice(&src.port().to_be_bytes());
    buf.extend_from_slice(&dst.port().to_be_bytes());
    buf.extend_from_slice(&(udp_len as u16).to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(payload);
    // A computed sum of 0 is sent as 0xFFFF, since 0 means "no checksum" in UDP.
    let sum = match transport_checksum(*src.ip(), *dst.ip(), 17, &buf[start..]) {
        0 => 0xFFFF,
        s => s,
    };
    buf[start + 6..start + 8].copy_from_slice(&sum.to_be_bytes());
}

/// Replaces `buf` with an Ethernet frame carrying one TCP segment. SYNs carry an MSS option,
/// as every real stack sends one.
pub fn tcp_frame(
    buf: &mut Vec<u8>,
    vlan: Option<u16>,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ip_id: u16,
    header: TcpHeader,
    payload: &[u8],
) {
    buf.clear();
    let options: &[u8] = if header.flags & TCP_SYN != 0 { &[2, 4, 0x05, 0xB4] } else { &[] };
    let header_len = 20 + options.len();
    ethernet_ipv4(buf, vlan, *src.ip(), *dst.ip(), 6, ip_id, header_len + payload.len());
    let start = buf.len();
    buf.extend_from_slice(&src.port().to_be_bytes());
    buf.extend_from_slice(&dst.port().to_be_bytes());
    buf.extend_from_slice(&header.seq.to_be_bytes());
    buf.extend_from_slice(&header.ack.to_be_bytes());
    buf.push(((header_len / 4) as u8) << 4);
    buf.push(header.flags);
    buf.extend_from_slice(&65_535u16.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    buf.extend_from_slice(options);
    buf.extend_from_slice(payload);
    let sum = transport_checksum(*src.ip(), *dst.ip(), 6, &buf[start..]);
    buf[start + 16..start + 18].copy_from_slice(&sum.to_be_bytes());
}

fn ethernet_ipv4(buf: &mut Vec<u8>, vlan: Option<u16>, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, id: u16, len: usize) {
    buf.extend_from_slice(&mac(dst));
    buf.extend_from_slice(&mac(src));
    if let Some(vid) = vlan {
        buf.extend_from_slice(&0x8100u16.to_be_bytes());
        buf.extend_from_slice(&(vid & 0x0FFF).to_be_bytes());
    }
    buf.extend_from_slice(&0x0800u16.to_be_bytes());
    let start = buf.len();
    buf.push(0x45);
    buf.push(0);
    buf.extend_from_slice(&((20 + len) as u16).to_be_bytes());
    buf.extend_from_slice(&id.to_be_bytes());
    buf.extend_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    buf.push(64);
    buf.push(proto);
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    let sum = !fold(sum_words(0, &buf[start..]));
    buf[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
}

/// A UDP header and `payload`, with the checksum over the IPv4 pseudo-header: what goes in
/// an IP packet built by [`ipv4_packets`] (the datagram a G-PDU carries, say).
pub fn udp_datagram(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&src.port().to_be_bytes());
    d.extend_from_slice(&dst.port().to_be_bytes());
    d.extend_from_slice(&(len as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    let sum = match transport_checksum(*src.ip(), *dst.ip(), 17, &d) {
        0 => 0xFFFF,
        s => s,
    };
    d[6..8].copy_from_slice(&sum.to_be_bytes());
    d
}

/// IPv4 packets (no Ethernet) carrying `payload` of protocol `proto`: one, or with `mtu`
/// smaller than the packet, fragments of at most `mtu` bytes each (RFC 791: offsets in
/// 8-byte units, MF on all but the last), all with identification `id`.
pub fn ipv4_packets(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    payload: &[u8],
    mtu: Option<usize>,
) -> Vec<Vec<u8>> {
    let room = mtu.map_or(usize::MAX, |m| (m.saturating_sub(20) / 8 * 8).max(8));
    if payload.len() <= room {
        return vec![ipv4_packet(src, dst, proto, id, 0x4000, payload)];
    }
    let pieces: Vec<&[u8]> = payload.chunks(room).collect();
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(n, piece)| {
            let more = if n < last { 0x2000 } else { 0 };
            ipv4_packet(src, dst, proto, id, more | ((n * room / 8) as u16), piece)
        })
        .collect()
}

/// One IPv4 header (`flags_offset`: the flags and fragment offset word) and its payload.
fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, id: u16, flags_offset: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(20 + payload.len());
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&flags_offset.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = !fold(sum_words(0, &p));
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Replaces `buf` with an Ethernet frame carrying the IPv4 packet `ip` (from `src` to `dst`).
pub fn ethernet_frame(buf: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr, ip: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&mac(dst));
    buf.extend_from_slice(&mac(src));
    buf.extend_from_slice(&0x0800u16.to_be_bytes());
    buf.extend_from_slice(ip);
}

/// The UDP/TCP checksum over the IPv4 pseudo-header and the segment (checksum field zeroed).
fn transport_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut sum = sum_words(0, &src.octets());
    sum = sum_words(sum, &dst.octets());
    sum += u64::from(proto) + segment.len() as u64;
    !fold(sum_words(sum, segment))
}

fn sum_words(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_header_and_records() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_700_000_000_123_456, &[0xAA, 0xBB, 0xCC]).unwrap();
        w.write(1_700_000_001_000_000, &[]).unwrap();
        assert_eq!((w.packets(), w.bytes()), (2, 24 + 16 + 3 + 16));
        let bytes = w.into_inner();
        assert_eq!(
            bytes[..24],
            [0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0][..]
        );
        let record = &bytes[24..24 + 16 + 3];
        assert_eq!(u32::from_le_bytes(record[0..4].try_into().unwrap()), 1_700_000_000);
        assert_eq!(u32::from_le_bytes(record[4..8].try_into().unwrap()), 123_456);
        assert_eq!(u32::from_le_bytes(record[8..12].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(record[12..16].try_into().unwrap()), 3);
        assert_eq!(record[16..], [0xAA, 0xBB, 0xCC]);
        let second = &bytes[24 + 19..];
        assert_eq!(second.len(), 16);
        assert_eq!(u32::from_le_bytes(second[0..4].try_into().unwrap()), 1_700_000_001);
        assert_eq!(u32::from_le_bytes(second[4..8].try_into().unwrap()), 0);
    }

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn udp_frame_has_valid_lengths_and_checksums() {
        let mut buf = Vec::new();
        udp_frame(&mut buf, Some(42), addr("10.1.0.1:5060"), addr("10.2.0.1:5060"), 7, b"hello");
        assert_eq!(buf.len(), 18 + 20 + 8 + 5);
        assert_eq!(buf[12..16], [0x81, 0x00, 0x00, 42]);
        assert_eq!(buf[16..18], [0x08, 0x00]);
        let ip = &buf[18..38];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 33);
        assert_eq!(fold(sum_words(0, ip)), 0xFFFF, "IPv4 header checksum verifies");
        let udp = &buf[38..];
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]), 13);
        let check = fold(sum_words(sum_words(sum_words(17 + 13, &ip[12..16]), &ip[16..20]), udp));
        assert_eq!(check, 0xFFFF, "UDP checksum verifies");
    }

    #[test]
    fn fragments_cover_the_payload_in_8_byte_units() {
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let payload: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let frags = ipv4_packets(a, b, 17, 9, &payload, Some(300));
        assert_eq!(frags.len(), 4, "280 bytes a fragment");
        let mut joined = Vec::new();
        for (n, f) in frags.iter().enumerate() {
            assert_eq!(fold(sum_words(0, &f[..20])), 0xFFFF, "header checksum verifies");
            let word = u16::from_be_bytes([f[6], f[7]]);
            assert_eq!(usize::from(word & 0x1FFF) * 8, joined.len());
            assert_eq!(word & 0x2000 != 0, n < 3, "MF on all but the last");
            joined.extend_from_slice(&f[20..]);
        }
        assert_eq!(joined, payload);
        assert_eq!(ipv4_packets(a, b, 17, 9, &payload, None).len(), 1);
    }

    #[test]
    fn tcp_frame_has_valid_header() {
        let mut buf = Vec::new();
        let header = TcpHeader { seq: 1000, ack: 0, flags: TCP_SYN };
        tcp_frame(&mut buf, None, addr("10.1.0.1:40000"), addr("10.2.0.1:5060"), 1, header, &[]);
        assert_eq!(buf.len(), 14 + 20 + 24);
        let tcp = &buf[34..];
        assert_eq!(u32::from_be_bytes(tcp[4..8].try_into().unwrap()), 1000);
        assert_eq!(tcp[12] >> 4, 6, "data offset covers the MSS option");
        assert_eq!(tcp[13], TCP_SYN);
        let ip = &buf[14..34];
        let check = fold(sum_words(sum_words(sum_words(6 + 24, &ip[12..16]), &ip[16..20]), tcp));
        assert_eq!(check, 0xFFFF, "TCP checksum verifies");
    }
}
