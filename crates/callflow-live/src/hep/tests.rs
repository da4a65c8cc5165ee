//! Unit tests of the HEP listener's parts: RTCP written back from JSON, synthesized frames, and the capture agents' runs.

use super::*;
use callflow_decode::packet::{decode_frame, Transport};
use callflow_decode::rtcp::{self, RtcpPacket};

#[test]
fn an_rtcp_sender_report_in_json_is_written_back_as_binary() {
    // As captagent and rtpengine print it: the NTP fraction in ntp_timestamp_usec, some
    // numbers quoted, a signed rtp_timestamp and lsr.
    let json = br#"{"type":200,"ssrc":1814766290,"report_count":1,
        "sender_information":{"packets":2,"ntp_timestamp_sec":"3373905459","ntp_timestamp_usec":"4280379832","rtp_timestamp":-210833031,"octets":40},
        "report_blocks":[{"source_ssrc":898343773,"highest_seq_no":20881,"fraction_lost":12,"ia_jitter":7,"packets_lost":-2,"lsr":-1097006646,"dlsr":7733}]}"#;
    let bytes = rtcp_from_json(json).expect("a faithful SR");
    let packets: Vec<_> = rtcp::packets(&bytes).collect::<Result<_, _>>().unwrap();
    let [RtcpPacket::SenderReport { ssrc, sender, blocks }] = packets.as_slice() else { panic!("{packets:?}") };
    assert_eq!(*ssrc, 1814766290);
    assert_eq!(sender.ntp_timestamp, (3373905459u64 << 32) | 4280379832);
    assert_eq!((sender.rtp_timestamp, sender.packet_count, sender.octet_count), ((-210833031i32) as u32, 2, 40));
    let blocks: Vec<_> = blocks.clone().collect();
    assert_eq!(blocks.len(), 1);
    let b = blocks[0];
    assert_eq!(
        (b.ssrc, b.fraction_lost, b.cumulative_lost, b.highest_seq, b.jitter, b.lsr, b.dlsr),
        (898343773, 12, -2, 20881, 7, (-1097006646i32) as u32, 7733)
    );
}

#[test]
fn an_rtcp_receiver_report_in_json_is_written_back_as_binary() {
    let json = br#"{"type":201,"ssrc":7,"report_blocks":[]}"#;
    assert_eq!(rtcp_from_json(json).unwrap(), vec![0x80, 201, 0, 1, 0, 0, 0, 7]);
}

#[test]
fn rtcp_json_that_cannot_be_written_back_faithfully_is_refused() {
    // hepgen.js's sample (the corpus's hep.pcap): an NTP "usec" beyond 32 bits.
    let hepgen = br#"{"sender_information":{"ntp_timestamp_sec":3650797214,"packets":106,"ntp_timestamp_usec":13217348104192,"octets":16960,"rtp_timestamp":16960},"ssrc":451916597,"type":200,"report_blocks":[],"report_count":0}"#;
    assert_eq!(rtcp_from_json(hepgen), None);
    assert_eq!(rtcp_from_json(br#"{"type":202,"ssrc":1}"#), None, "SDES is not an SR or RR");
    assert_eq!(rtcp_from_json(br#"{"type":200,"ssrc":1}"#), None, "an SR without its sender information");
    assert_eq!(rtcp_from_json(br#"{"type":201,"ssrc":1,"report_blocks":[{"source_ssrc":1}]}"#), None);
    assert_eq!(rtcp_from_json(b"not json"), None);
    let lost = br#"{"type":201,"ssrc":1,"report_blocks":[{"source_ssrc":1,"highest_seq_no":1,"fraction_lost":300,"ia_jitter":0,"packets_lost":0,"lsr":0,"dlsr":0}]}"#;
    assert_eq!(rtcp_from_json(lost), None, "a fraction lost above 255");
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn synthesized_frames_decode_as_the_packets_hep_described() {
    for (src, dst, carrier) in [
        ("10.0.0.1:5060", "10.0.0.2:5080", Carrier::Udp),
        ("10.0.0.1:5060", "10.0.0.2:5080", Carrier::Tcp),
        ("[2001:db8::1]:5060", "[2001:db8::2]:5062", Carrier::Udp),
        ("[2001:db8::1]:5060", "[2001:db8::2]:5062", Carrier::Tcp),
    ] {
        let data = synthesize(addr(src), addr(dst), carrier, 1000, b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
        let packet = decode_frame(LinkType::RAW, &data);
        assert_eq!(packet.stop, None, "{src} {carrier:?}");
        let ip = packet.ip.unwrap();
        let (s, d) = (ip.src, ip.dst);
        assert_eq!((s, d), (addr(src).ip(), addr(dst).ip()));
        match (carrier, packet.transport) {
            (Carrier::Udp, Transport::Udp { src_port, dst_port, payload }) => {
                assert_eq!(
                    (src_port, dst_port, payload),
                    (addr(src).port(), addr(dst).port(), &b"OPTIONS sip:x SIP/2.0\r\n\r\n"[..])
                );
            }
            (Carrier::Tcp, Transport::Tcp(seg)) => {
                assert_eq!((seg.src_port, seg.dst_port, seg.seq), (addr(src).port(), addr(dst).port(), 1000));
                assert_eq!(seg.payload, b"OPTIONS sip:x SIP/2.0\r\n\r\n");
            }
            (c, t) => panic!("{c:?} gave {t:?}"),
        }
    }
    assert_eq!(synthesize(addr("10.0.0.1:1"), addr("[::1]:2"), Carrier::Udp, 0, b"x"), None, "mixed families");
    assert_eq!(synthesize(addr("10.0.0.1:1"), addr("10.0.0.2:2"), Carrier::Udp, 0, &vec![0; 65_510]), None, "too long");
}

#[test]
fn capture_agents_are_kept_as_runs_and_found_by_frame() {
    let agents = HepAnnotations::default();
    agents.record_agent(1, Some(7));
    agents.record_agent(2, Some(7));
    agents.record_agent(3, None);
    agents.record_agent(5, Some(9));
    assert_eq!(lock(&agents.agents).len(), 3, "frame 2 continues frame 1's run");
    let found: Vec<_> = (0..7).map(|f| agents.agent_of(f)).collect();
    assert_eq!(found, vec![None, Some(7), Some(7), None, None, Some(9), Some(9)]);
}

#[test]
fn capture_agents_forget_the_oldest_runs_past_the_bound() {
    let agents = HepAnnotations::default();
    for frame in 1..=(MAX_AGENT_RUNS as u64 + 2) {
        agents.record_agent(frame, Some(frame as u32 % 2));
    }
    assert_eq!(lock(&agents.agents).len(), MAX_AGENT_RUNS);
    assert_eq!((agents.agent_of(1), agents.agent_of(2)), (None, None), "forgotten");
    assert_eq!(agents.agent_of(3), Some(1));
}

#[test]
fn options_come_from_the_hep_section() {
    let mut settings = callflow_config::HepSettings::default();
    let options = HepOptions::from_settings(&settings).unwrap();
    assert_eq!((options.listen, options.auth_key), (addr("127.0.0.1:9060"), None));
    settings.listen = "[::1]:9061".into();
    settings.auth_key = "k".into();
    let options = HepOptions::from_settings(&settings).unwrap();
    assert_eq!((options.listen, options.auth_key.as_deref()), (addr("[::1]:9061"), Some("k")));
    settings.listen = "localhost".into();
    let err = HepOptions::from_settings(&settings).unwrap_err().to_string();
    assert_eq!(err, "hep.listen: \"localhost\" is not an address and a port (e.g. 127.0.0.1:9060 or [::1]:9060)");
}

#[test]
fn a_port_taken_is_an_error_naming_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (tx, _rx) = crate::channel(4, Duration::from_millis(10));
    let err = start(&HepOptions { listen: addr, ..HepOptions::default() }, tx).err().expect("the port is taken");
    assert!(err.to_string().starts_with(&format!("cannot listen for HEP over UDP on {addr}: ")), "{err}");
}

#[test]
fn hep_urls_name_the_address_to_listen_on() {
    let listen = |url: &str| HepOptions::from_url(url).map(|o| o.listen.to_string()).map_err(|e| e.to_string());
    assert_eq!(listen("hep://127.0.0.1:9060"), Ok("127.0.0.1:9060".into()));
    assert_eq!(listen("hep://0.0.0.0:19060/"), Ok("0.0.0.0:19060".into()));
    assert_eq!(listen("hep://127.0.0.1"), Ok("127.0.0.1:9060".into()));
    assert_eq!(listen("hep://[::1]:9061"), Ok("[::1]:9061".into()));
    assert_eq!(listen("hep://[::1]"), Ok("[::1]:9060".into()));
    for bad in ["hep://localhost:9060", "ws://127.0.0.1:9060", "hep://127.0.0.1:port", "hep://"] {
        assert_eq!(
            listen(bad),
            Err(format!("hep:// source: {bad:?} is not an address and a port (e.g. 127.0.0.1:9060 or [::1]:9060)"))
        );
    }
}

fn rr(frame: u64) -> RtcpReport {
    RtcpReport {
        ts: Timestamp::default(),
        frame,
        packet_type: callflow_model::RtcpReportKind::Rr,
        ssrc: 1,
        sender_info: None,
        blocks: vec![],
    }
}

#[test]
fn rtcp_reports_by_call_are_bounded_and_the_oldest_call_goes_first() {
    let a = HepAnnotations::default();
    for frame in 0..(MAX_RTCP_PER_CALL as u64 + 5) {
        a.record_rtcp("busy", rr(frame));
    }
    for call in 0..MAX_RTCP_CALLS {
        a.record_rtcp(&format!("call-{call}"), rr(1));
    }
    let table = lock(&a.rtcp);
    assert_eq!((table.by_call.len(), table.order.len()), (MAX_RTCP_CALLS, MAX_RTCP_CALLS));
    assert!(!table.by_call.contains_key("busy"), "the oldest call is forgotten first");
    drop(table);
    let b = HepAnnotations::default();
    for frame in 0..(MAX_RTCP_PER_CALL as u64 + 5) {
        b.record_rtcp("busy", rr(frame));
    }
    assert_eq!(lock(&b.rtcp).by_call["busy"].len(), MAX_RTCP_PER_CALL);
}
