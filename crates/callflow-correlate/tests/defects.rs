//! Defects found on real captures (issue 11), each rebuilt here as a small capture and named after what it caught.
//!
//! The captures are written by hand (Ethernet, IPv4, UDP, GTP-U, fragments) so each test
//! shows exactly the packets that once went wrong.

#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{CallState, Document, Session, SessionKind};
use packets::{ipv4, udp};

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

/// One frame of a capture: when (microseconds from the start) and its Ethernet payload
/// (an IPv4 packet), on VLAN `vlan` when not 0.
struct Frame {
    us: u64,
    vlan: u16,
    ip: Vec<u8>,
}

/// A classic pcap (Ethernet) of `frames`.
fn pcap(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4], 262_144u32.to_le_bytes()] {
        out.extend_from_slice(&word);
    }
    out.extend_from_slice(&1u32.to_le_bytes());
    for f in frames {
        let mut eth = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1];
        if f.vlan != 0 {
            eth.extend_from_slice(&[0x81, 0x00]);
            eth.extend_from_slice(&f.vlan.to_be_bytes());
        }
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&f.ip);
        let secs = 1_700_000_000 + f.us / 1_000_000;
        out.extend_from_slice(&(secs as u32).to_le_bytes());
        out.extend_from_slice(&((f.us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(eth.len() as u32).to_le_bytes());
        out.extend_from_slice(&(eth.len() as u32).to_le_bytes());
        out.extend_from_slice(&eth);
    }
    out
}

/// A UDP datagram in an unfragmented IPv4 packet.
fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    ipv4(src, dst, 17, 1, 0, &udp(sport, dport, payload))
}

/// A SIP message from `lines` (joined with CRLF, ended by an empty line).
fn sip(lines: &[&str]) -> Vec<u8> {
    let mut m = lines.join("\r\n");
    m.push_str("\r\n\r\n");
    m.into_bytes()
}

/// SIP messages between A:5060 and B:5060, one every 10 ms: (from A?, message).
fn sip_frames(messages: &[(bool, Vec<u8>)]) -> Vec<Frame> {
    messages
        .iter()
        .enumerate()
        .map(|(i, (from_a, m))| {
            let (src, dst) = if *from_a { (A, B) } else { (B, A) };
            Frame { us: i as u64 * 10_000, vlan: 0, ip: udp4(src, 5060, dst, 5060, m) }
        })
        .collect()
}

fn analyse(frames: &[Frame]) -> Document {
    let mut reader = CaptureReader::from_bytes(pcap(frames)).expect("capture");
    analyze(&mut reader, "test.pcap", AnalyzerOptions::default(), None).expect("analyze")
}

/// A request of the call `call_id`: method, CSeq number, Via branch, To tag (empty: none).
fn request(method: &str, call_id: &str, cseq: u32, branch: &str, to_tag: &str) -> Vec<u8> {
    let to = if to_tag.is_empty() { String::new() } else { format!(";tag={to_tag}") };
    sip(&[
        &format!("{method} sip:bob@10.0.0.2 SIP/2.0"),
        &format!("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{branch}"),
        "From: <sip:alice@10.0.0.1>;tag=caller",
        &format!("To: <sip:bob@10.0.0.2>{to}"),
        &format!("Call-ID: {call_id}"),
        &format!("CSeq: {cseq} {}", if method == "ACK" && to_tag.is_empty() { "ACK" } else { method }),
        "Content-Length: 0",
    ])
}

/// A response of the call `call_id` to the request with `cseq_method`, CSeq number and branch.
fn response(status: &str, call_id: &str, cseq: u32, cseq_method: &str, branch: &str, to_tag: &str) -> Vec<u8> {
    sip(&[
        &format!("SIP/2.0 {status}"),
        &format!("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{branch}"),
        "From: <sip:alice@10.0.0.1>;tag=caller",
        &format!("To: <sip:bob@10.0.0.2>;tag={to_tag}"),
        &format!("Call-ID: {call_id}"),
        &format!("CSeq: {cseq} {cseq_method}"),
        "Content-Length: 0",
    ])
}

fn sessions_of(doc: &Document, kind: SessionKind) -> Vec<&Session> {
    doc.sessions.iter().filter(|s| s.kind == kind).collect()
}

#[test]
fn register_then_invite_on_one_call_id_gives_a_register_and_a_call() {
    // As SIPp's uac scenarios do: the REGISTER and the call share the Call-ID.
    let id = "reg-then-invite@test";
    let doc = analyse(&sip_frames(&[
        (true, request("REGISTER", id, 1, "r1", "")),
        (false, response("200 OK", id, 1, "REGISTER", "r1", "registrar")),
        (true, request("INVITE", id, 2, "i1", "")),
        (false, response("180 Ringing", id, 2, "INVITE", "i1", "callee")),
        (false, response("200 OK", id, 2, "INVITE", "i1", "callee")),
        (true, request("ACK", id, 2, "a1", "callee")),
        (true, request("BYE", id, 3, "b1", "callee")),
        (false, response("200 OK", id, 3, "BYE", "b1", "callee")),
    ]));
    assert!(doc.sessions.iter().all(|s| s.setup_time_ms.is_none_or(|t| t >= 0.0)), "no negative setup time");
    let registers = sessions_of(&doc, SessionKind::SipRegister);
    let calls = sessions_of(&doc, SessionKind::SipCall);
    assert_eq!((registers.len(), calls.len(), doc.sessions.len()), (1, 1, 2));
    assert_eq!(registers[0].messages.len(), 2);
    assert_eq!(registers[0].state, CallState::Completed);
    let call = calls[0];
    assert_eq!(call.messages.len(), 6);
    assert_eq!(call.state, CallState::Completed);
    // INVITE at 20 ms, 200 OK at 40 ms.
    assert_eq!(call.setup_time_ms, Some(20.0));
    assert_eq!(call.duration_ms, Some(20.0));
}

/// The one call of a capture of `messages`: (state, setup_time_ms, anomalies).
fn call_outcome(messages: &[(bool, Vec<u8>)]) -> (CallState, Option<f64>, Vec<String>) {
    let doc = analyse(&sip_frames(messages));
    let calls = sessions_of(&doc, SessionKind::SipCall);
    assert_eq!(calls.len(), 1, "one call");
    (calls[0].state, calls[0].setup_time_ms, calls[0].anomalies.clone())
}

#[test]
fn cancel_of_a_parallel_invite_after_the_answer_leaves_the_call_answered() {
    let id = "parallel@test";
    let (state, setup, _) = call_outcome(&[
        (true, request("INVITE", id, 1, "i1", "")),
        (true, request("INVITE", id, 2, "i2", "")),
        (false, response("180 Ringing", id, 1, "INVITE", "i1", "callee")),
        (false, response("200 OK", id, 1, "INVITE", "i1", "callee")),
        (true, request("ACK", id, 1, "a1", "callee")),
        (true, request("CANCEL", id, 2, "i2", "")),
        (false, response("200 OK", id, 2, "CANCEL", "i2", "other")),
        (false, response("487 Request Terminated", id, 2, "INVITE", "i2", "other")),
        (true, request("ACK", id, 2, "i2", "other")),
    ]);
    // The 200 OK (30 ms) answered the first INVITE (0 ms).
    assert_eq!((state, setup), (CallState::InCall, Some(30.0)));
}

#[test]
fn setup_time_comes_from_the_answered_invite_not_a_cancelled_one() {
    let id = "cancelled-first@test";
    let (state, setup, _) = call_outcome(&[
        (true, request("INVITE", id, 1, "i1", "")),
        (true, request("INVITE", id, 2, "i2", "")),
        (true, request("CANCEL", id, 2, "i2", "")),
        (false, response("200 OK", id, 2, "CANCEL", "i2", "other")),
        (false, response("487 Request Terminated", id, 2, "INVITE", "i2", "other")),
        (false, response("200 OK", id, 1, "INVITE", "i1", "callee")),
    ]);
    // The CANCEL reached the second INVITE while the first still went on: the call was
    // answered at 50 ms, 50 ms after its INVITE.
    assert_eq!((state, setup), (CallState::InCall, Some(50.0)));
}

#[test]
fn cancel_before_the_answer_still_cancels() {
    let id = "cancel@test";
    let (state, setup, _) = call_outcome(&[
        (true, request("INVITE", id, 1, "i1", "")),
        (false, response("180 Ringing", id, 1, "INVITE", "i1", "callee")),
        (true, request("CANCEL", id, 1, "i1", "")),
        (false, response("200 OK", id, 1, "CANCEL", "i1", "callee")),
        (false, response("487 Request Terminated", id, 1, "INVITE", "i1", "callee")),
        (true, request("ACK", id, 1, "i1", "callee")),
    ]);
    assert_eq!((state, setup), (CallState::Cancelled, Some(40.0)));
}

#[test]
fn dialog_without_its_invite_is_unknown_with_initial_request_missing() {
    // The INVITE was lost (in real captures: in an IP fragment that never completed).
    let id = "no-invite@test";
    let (state, setup, anomalies) = call_outcome(&[
        (false, response("180 Ringing", id, 1, "INVITE", "i1", "callee")),
        (false, response("200 OK", id, 1, "INVITE", "i1", "callee")),
        (true, request("ACK", id, 1, "a1", "callee")),
        (true, request("BYE", id, 2, "b1", "callee")),
        (false, response("200 OK", id, 2, "BYE", "b1", "callee")),
    ]);
    assert_eq!((state, setup), (CallState::Unknown, None));
    assert_eq!(anomalies.len(), 1);
    assert!(anomalies[0].starts_with("initial_request_missing"), "{anomalies:?}");
}

#[test]
fn long_method_tokens_are_analysed_not_dropped() {
    // Fuzzing suites (PROTOS c07-sip) send method tokens of 33 to 4,000 characters.
    let messages: Vec<(bool, Vec<u8>)> =
        [33, 4000].iter().map(|&n| (true, request(&"X".repeat(n), &format!("long-{n}@test"), 1, "x", ""))).collect();
    let doc = analyse(&sip_frames(&messages));
    let methods: Vec<usize> =
        doc.sessions.iter().flat_map(|s| &s.messages).map(|m| m.method.as_deref().map_or(0, str::len)).collect();
    assert_eq!(methods, [33, 4000]);
    assert_eq!(doc.stats.by_protocol.get("sip").map(|p| p.packets), Some(2));
}

/// An RTP packet (PCMU, 160 bytes of payload) of SSRC `ssrc`.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

/// An RTCP sender report of SSRC `ssrc` with no report block.
fn rtcp_sr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xe8, 0, 0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(&1600u32.to_be_bytes());
    p.extend_from_slice(&10u32.to_be_bytes());
    p.extend_from_slice(&1600u32.to_be_bytes());
    p
}

#[test]
fn rtcp_on_the_port_above_orphan_rtp_joins_its_stream() {
    let ssrc = 0x1234_5678;
    for rtcp_first in [false, true] {
        let mut frames: Vec<Frame> = (0..10u16)
            .map(|i| Frame { us: u64::from(i) * 20_000, vlan: 0, ip: udp4(A, 40000, B, 50000, &rtp(i, ssrc)) })
            .collect();
        let report = Frame { us: 0, vlan: 0, ip: udp4(A, 40001, B, 50001, &rtcp_sr(ssrc)) };
        if rtcp_first {
            frames.insert(0, report);
            frames.iter_mut().skip(1).for_each(|f| f.us += 1);
        } else {
            frames.push(Frame { us: 200_000, ..report });
        }
        let doc = analyse(&frames);
        assert_eq!(doc.sessions.len(), 1, "one rtp session, none empty (RTCP first: {rtcp_first})");
        let session = &doc.sessions[0];
        assert_eq!((session.from.as_str(), session.to.as_str()), ("10.0.0.1:40000", "10.0.0.2:50000"));
        assert_eq!(session.media.len(), 1);
        assert_eq!(session.media[0].rtcp.len(), 1, "the sender report is the stream's (RTCP first: {rtcp_first})");
        assert_eq!(doc.stats.by_protocol.get("rtcp").map(|p| p.packets), Some(1));
    }
}

/// A GTP-U T-PDU (UDP 2152, TEID 1) carrying `inner` from the eNodeB to the gateway.
fn gtp_u(inner: &[u8]) -> Vec<u8> {
    let mut g = vec![0x30, 0xff];
    g.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    g.extend_from_slice(&1u32.to_be_bytes());
    g.extend_from_slice(inner);
    udp(2152, 2152, &g)
}

#[test]
fn sip_in_fragments_inside_a_fragmented_gtp_u_packet_is_reassembled_per_copy() {
    const ENB: [u8; 4] = [192, 168, 1, 1];
    const SGW: [u8; 4] = [192, 168, 1, 2];
    const UE: [u8; 4] = [10, 45, 0, 2];
    const PCSCF: [u8; 4] = [10, 46, 0, 1];
    let mut invite = request("INVITE", "volte@test", 1, "v1", "");
    invite.extend(std::iter::repeat_n(b' ', 600));
    // The UE's packet is cut in two fragments: 256 bytes of UDP, then the rest.
    let inner_udp = udp(5060, 5060, &invite);
    let inner_first = ipv4(UE, PCSCF, 17, 77, 0x2000, &inner_udp[..256]);
    let inner_second = ipv4(UE, PCSCF, 17, 77, 256 / 8, &inner_udp[256..]);
    // The GTP-U packet carrying the first is cut again on the transport network.
    let outer = gtp_u(&inner_first);
    let (head, tail) = outer.split_at(160);
    let outer_first = ipv4(ENB, SGW, 17, 9, 0x2000, head);
    let outer_second = ipv4(ENB, SGW, 17, 9, 160 / 8, tail);
    let second_gtp = ipv4(ENB, SGW, 17, 10, 0, &gtp_u(&inner_second));
    // Seen at two capture points (VLAN 1 and 2), or twice at one, the copies interleaved.
    for vlans in [[1, 2], [0, 0]] {
        let mut frames = Vec::new();
        for (i, ip) in [&outer_first, &outer_second, &second_gtp].into_iter().enumerate() {
            for (copy, vlan) in vlans.into_iter().enumerate() {
                frames.push(Frame { us: (i * 2 + copy) as u64 * 1000, vlan, ip: ip.clone() });
            }
        }
        let doc = analyse(&frames);
        let calls = sessions_of(&doc, SessionKind::SipCall);
        assert_eq!(calls.len(), 1, "the INVITE is found (VLANs {vlans:?})");
        let seen: Vec<(u64, bool)> = calls[0].messages.iter().map(|m| (m.frame, m.retransmission)).collect();
        assert_eq!(seen, [(5, false), (6, true)], "each copy completes with its own fragments (VLANs {vlans:?})");
    }
}

/// A pcapng block of `block_type` around `body` (padded to 4 bytes).
fn pcapng_block(block_type: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(4) * 4;
    let total = (12 + padded) as u32;
    let mut b = block_type.to_le_bytes().to_vec();
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(8 + padded, 0);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

/// A pcapng of Ethernet interfaces with the given `if_tsoffset`s, and `frames` as
/// (interface, timestamp in microseconds, IPv4 packet).
fn pcapng(tsoffsets: &[i64], frames: &[(u32, u64, Vec<u8>)]) -> Vec<u8> {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut out = pcapng_block(0x0a0d_0d0a, &shb);
    for &offset in tsoffsets {
        let mut idb = vec![1, 0, 0, 0];
        idb.extend_from_slice(&262_144u32.to_le_bytes());
        idb.extend_from_slice(&[14, 0, 8, 0]);
        idb.extend_from_slice(&offset.to_le_bytes());
        idb.extend_from_slice(&[0, 0, 0, 0]);
        out.extend(pcapng_block(1, &idb));
    }
    for (interface, us, ip) in frames {
        let mut eth = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00];
        eth.extend_from_slice(ip);
        let mut epb = interface.to_le_bytes().to_vec();
        epb.extend_from_slice(&((us >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(*us as u32).to_le_bytes());
        epb.extend_from_slice(&(eth.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(eth.len() as u32).to_le_bytes());
        epb.extend_from_slice(&eth);
        out.extend(pcapng_block(6, &epb));
    }
    out
}

#[test]
fn timestamps_at_the_ends_of_the_range_do_not_overflow() {
    // Interface 0 is shifted by i64::MIN seconds, interface 1 by i64::MAX: every frame's
    // time is clamped to an end of the range, and the two ends alternate.
    let id = "extreme-times@test";
    let messages = [
        (true, request("INVITE", id, 1, "i1", "")),
        (false, response("200 OK", id, 1, "INVITE", "i1", "callee")),
        (true, request("ACK", id, 1, "a1", "callee")),
        (true, request("BYE", id, 2, "b1", "callee")),
        (false, response("200 OK", id, 2, "BYE", "b1", "callee")),
    ];
    let mut frames: Vec<(u32, u64, Vec<u8>)> = messages
        .iter()
        .enumerate()
        .map(|(i, (from_a, m))| {
            let (src, dst) = if *from_a { (A, B) } else { (B, A) };
            (i as u32 % 2, i as u64, udp4(src, 5060, dst, 5060, m))
        })
        .collect();
    frames.extend(
        (0..4u16).map(|i| (u32::from(i % 2), u64::MAX - 4 + u64::from(i), udp4(A, 40000, B, 50000, &rtp(i, 7)))),
    );
    for offsets in [[i64::MIN, i64::MAX], [i64::MAX, i64::MIN], [0, i64::MAX]] {
        let mut reader = CaptureReader::from_bytes(pcapng(&offsets, &frames)).expect("capture");
        let doc = analyze(&mut reader, "t.pcapng", AnalyzerOptions::default(), None).expect("analyze");
        assert_eq!(doc.source.packets, 9);
        // Centuries pass between messages, so the call may be closed as idle and begun again.
        let messages: usize = doc.sessions.iter().filter(|s| s.call_id == id).map(|s| s.messages.len()).sum();
        assert_eq!(messages, 5, "offsets {offsets:?}");
        for s in &doc.sessions {
            for ms in [s.setup_time_ms, s.duration_ms, s.ring_time_ms, s.post_dial_delay_ms].into_iter().flatten() {
                assert!(ms.is_finite() && ms >= 0.0, "offsets {offsets:?}: {ms}");
            }
        }
    }
}
