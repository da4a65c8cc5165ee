//! SIP calls written as a pcap for the tests (Ethernet, IPv4, UDP built with pnet_packet): as many calls and messages as a test asks, with headers it chooses.

use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::MutableIpv4Packet;
use pnet_packet::udp::MutableUdpPacket;
use std::net::Ipv4Addr;

/// One call of [`calls_pcap`].
pub struct CallSpec {
    /// The caller's number (the From user part).
    pub from: String,
    /// The callee's number.
    pub to: String,
    /// The From header's display name, as it appears between quotes.
    pub display: String,
    /// Extra header lines put in every request (`User-Agent: ...`), without CRLF.
    pub headers: Vec<String>,
    /// INFO transactions between the ACK and the BYE (each two messages).
    pub infos: usize,
}

impl CallSpec {
    pub fn new(from: &str, to: &str) -> CallSpec {
        CallSpec { from: from.into(), to: to.into(), display: from.into(), headers: Vec::new(), infos: 0 }
    }
}

/// A frame: Ethernet, IPv4 (checksums left zero, which the decoders do not check), UDP.
fn frame(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut udp = vec![0; 8 + payload.len()];
    let mut u = MutableUdpPacket::new(&mut udp).expect("room");
    u.set_source(5060);
    u.set_destination(5060);
    u.set_length((8 + payload.len()) as u16);
    u.set_payload(payload);
    let mut ip = vec![0; 20 + udp.len()];
    let mut p = MutableIpv4Packet::new(&mut ip).expect("room");
    p.set_version(4);
    p.set_header_length(5);
    p.set_total_length((20 + udp.len()) as u16);
    p.set_ttl(64);
    p.set_next_level_protocol(IpNextHeaderProtocols::Udp);
    p.set_source(Ipv4Addr::from(src));
    p.set_destination(Ipv4Addr::from(dst));
    p.set_payload(&udp);
    let mut eth = vec![0; 14 + ip.len()];
    let mut e = MutableEthernetPacket::new(&mut eth).expect("room");
    e.set_ethertype(EtherTypes::Ipv4);
    e.set_payload(&ip);
    eth
}

/// The calls as a pcap: each INVITE, 100, 180, 200, ACK, its INFOs with their 200s, BYE,
/// 200, a millisecond apart, the calls a second apart; returns the file's bytes.
pub fn calls_pcap(calls: &[CallSpec]) -> Vec<u8> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::DataLink;
    let header = PcapHeader { datalink: DataLink::ETHERNET, ..PcapHeader::default() };
    let mut writer = PcapWriter::with_header(Vec::new(), header).expect("in memory");
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let mut t = std::time::Duration::from_secs(1_700_000_000);
    for (i, call) in calls.iter().enumerate() {
        let call_id = format!("call-{i}@test");
        let from = format!("\"{}\" <sip:{}@a.example>;tag=f{i}", call.display, call.from);
        let to_plain = format!("<sip:{}@b.example>", call.to);
        let to_tagged = format!("{to_plain};tag=t{i}");
        let extra: String = call.headers.iter().map(|h| format!("{h}\r\n")).collect();
        let request = |method: &str, cseq: u32, to: &str| {
            format!(
                "{method} sip:{}@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{i}x{cseq}{method}\r\n\
                 From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
                 Contact: <sip:{}@10.0.0.1>\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n",
                call.to, call.from
            )
        };
        let response = |code: u16, reason: &str, method: &str, cseq: u32, to: &str| {
            format!(
                "SIP/2.0 {code} {reason}\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{i}x{cseq}{method}\r\n\
                 From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let mut messages = vec![
            (a, b, request("INVITE", 1, &to_plain)),
            (b, a, response(100, "Trying", "INVITE", 1, &to_plain)),
            (b, a, response(180, "Ringing", "INVITE", 1, &to_tagged)),
            (b, a, response(200, "OK", "INVITE", 1, &to_tagged)),
            (a, b, request("ACK", 1, &to_tagged)),
        ];
        for k in 0..call.infos as u32 {
            messages.push((a, b, request("INFO", 2 + k, &to_tagged)));
            messages.push((b, a, response(200, "OK", "INFO", 2 + k, &to_tagged)));
        }
        let bye = 2 + call.infos as u32;
        messages.push((a, b, request("BYE", bye, &to_tagged)));
        messages.push((b, a, response(200, "OK", "BYE", bye, &to_tagged)));
        for (src, dst, text) in messages {
            let data = frame(src, dst, text.as_bytes());
            writer.write_packet(&PcapPacket::new(t, data.len() as u32, &data)).expect("in memory");
            t += std::time::Duration::from_millis(1);
        }
        t += std::time::Duration::from_secs(1);
    }
    writer.into_writer()
}
