//! Tunnel context: SIP and RTP inside GTP-U keep their tunnel, and equal UE addresses behind two eNodeBs stay apart.

#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::Analyzer;
use callflow_decode::capture::Frame;
use callflow_decode::{LinkType, Timestamp};
use callflow_model::{Session, SessionKind, TunnelKind};
use packets::{ipv4, udp};
use std::net::Ipv4Addr;

/// An unfragmented IPv4 packet (DF set).
fn ip(src: [u8; 4], dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    ipv4(src, dst, protocol, 0, 0x4000, payload)
}

/// A GTP-U T-PDU of bearer `teid`, between the eNodeB `enb` and the gateway.
fn gtp_u(enb: u8, teid: u32, uplink: bool, inner: &[u8]) -> Vec<u8> {
    let mut g = vec![0x30, 255];
    g.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    g.extend_from_slice(&teid.to_be_bytes());
    g.extend_from_slice(inner);
    let (enb, gw) = ([192, 0, 2, enb], [198, 51, 100, 1]);
    let (src, dst) = if uplink { (enb, gw) } else { (gw, enb) };
    ip(src, dst, 17, &udp(2152, 2152, &g))
}

const UE: [u8; 4] = [10, 45, 0, 7];
const PEER: [u8; 4] = [10, 99, 0, 1];

fn invite(call_id: &str) -> Vec<u8> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.45.0.7\r\ns=-\r\nc=IN IP4 10.45.0.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:peer@ims SIP/2.0\r\nVia: SIP/2.0/UDP 10.45.0.7:5060;branch=z9hG4bK{call_id}\r\n\
         From: <sip:ue@ims>;tag=1\r\nTo: <sip:peer@ims>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

fn analyse(packets: &[Vec<u8>]) -> (Vec<Session>, Vec<callflow_model::Flow>) {
    let mut analyzer = Analyzer::default();
    for (i, data) in packets.iter().enumerate() {
        let frame = Frame {
            number: i as u64 + 1,
            ts: Timestamp::from_nanos(1_700_000_000_000_000_000 + i as i64 * 20_000_000),
            link_type: LinkType::IPV4,
            data,
            orig_len: data.len() as u32,
            interface: 0,
        };
        analyzer.process(&frame);
    }
    let (flows, _) = analyzer.take_flows();
    let (sessions, _) = analyzer.finish();
    (sessions, flows)
}

#[test]
fn equal_ue_addresses_behind_two_enodebs_are_two_calls_each_with_its_own_media() {
    let mut packets = Vec::new();
    // Two subscribers behind two eNodeBs, given the same address by two APNs, each call out.
    packets.push(gtp_u(1, 0x100, true, &ip(UE, PEER, 17, &udp(5060, 5060, &invite("call-a")))));
    packets.push(gtp_u(2, 0x200, true, &ip(UE, PEER, 17, &udp(5060, 5060, &invite("call-b")))));
    // Media to the announced address reaches each subscriber through its own bearer: the
    // first bearer carries twice as many packets.
    for seq in 0..6 {
        packets.push(gtp_u(1, 0x101, false, &ip(PEER, UE, 17, &udp(7000, 4000, &rtp(seq)))));
        if seq % 2 == 0 {
            packets.push(gtp_u(2, 0x201, false, &ip(PEER, UE, 17, &udp(7000, 4000, &rtp(seq / 2)))));
        }
    }
    let (sessions, flows) = analyse(&packets);
    let calls: Vec<&Session> = sessions.iter().filter(|s| s.kind == SessionKind::SipCall).collect();
    assert_eq!(calls.len(), 2);
    for (call, enb, teid, packets) in [(calls[0], 1, 0x100, 6), (calls[1], 2, 0x200, 3)] {
        let tunnel = call.tunnel.expect("the call keeps its bearer");
        assert_eq!(tunnel.kind, TunnelKind::GtpU);
        assert_eq!(tunnel.src, Ipv4Addr::new(192, 0, 2, enb));
        assert_eq!(tunnel.teid, Some(teid));
        assert_eq!(call.media.len(), 1, "{}: its own stream only", call.call_id);
        assert_eq!(call.media[0].packets, packets, "{}", call.call_id);
    }
    assert!(sessions.iter().all(|s| s.kind != SessionKind::Rtp), "no media was left over");
    // SIP and RTP in each bearer: four flows, not two.
    assert_eq!(flows.len(), 4);
    assert!(flows.iter().all(|f| f.tunnel.is_some_and(|t| t.kind == TunnelKind::GtpU)));
}
