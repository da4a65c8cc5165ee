//! Each problem flagged on a call made for it, and none on a clean call: SIP with SDP and RTP written by hand, run through the whole analysis.

#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Document, Problem, SessionKind};
use packets::{ipv4, udp};

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

/// How the call of a case goes; `Call::default()` is a clean call.
#[derive(Clone)]
struct Call {
    /// When the 180 Ringing comes, ms after the INVITE.
    ringing_ms: u64,
    ack: bool,
    /// Whether the BYE gets its 200 OK.
    bye_answered: bool,
    /// RTP from A to B, and from B to A.
    a_to_b: bool,
    b_to_a: bool,
    /// How long RTP goes on after the BYE, ms.
    rtp_after_bye_ms: u64,
    /// A->B switches SSRC halfway.
    ssrc_change: bool,
    /// A->B switches from PCMU to PCMA halfway.
    payload_change: bool,
    /// A->B loses every tenth packet.
    loss: bool,
    /// A->B packets alternately 40 ms late.
    jitter: bool,
}

impl Default for Call {
    fn default() -> Self {
        Call {
            ringing_ms: 100,
            ack: true,
            bye_answered: true,
            a_to_b: true,
            b_to_a: true,
            rtp_after_bye_ms: 0,
            ssrc_change: false,
            payload_change: false,
            loss: false,
            jitter: false,
        }
    }
}

fn sip(lines: &[&str], body: &str) -> Vec<u8> {
    let mut m = lines.join("\r\n");
    m.push_str(&format!("\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    m.into_bytes()
}

fn sdp(ip: &str, port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8\r\n")
}

fn message(start: &str, cseq: &str, to_tag: bool, body: &str) -> Vec<u8> {
    let to = if to_tag { ";tag=callee" } else { "" };
    let mut lines = vec![
        start.to_string(),
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1".to_string(),
        "From: <sip:alice@10.0.0.1>;tag=caller".to_string(),
        format!("To: <sip:bob@10.0.0.2>{to}"),
        "Call-ID: problems@test".to_string(),
        format!("CSeq: {cseq}"),
    ];
    if !body.is_empty() {
        lines.push("Content-Type: application/sdp".to_string());
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    sip(&lines, body)
}

fn rtp(seq: u16, ssrc: u32, pt: u8) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// The capture of `call`: frames (µs, IPv4 packet), sorted by time.
fn frames(call: &Call) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut signal = |ms: u64, from_a: bool, m: Vec<u8>| {
        let (src, dst) = if from_a { (A, B) } else { (B, A) };
        out.push((ms * 1000, ipv4(src, dst, 17, 1, 0, &udp(5060, 5060, &m))));
    };
    let answer_ms = call.ringing_ms + 1000;
    signal(0, true, message("INVITE sip:bob@10.0.0.2 SIP/2.0", "1 INVITE", false, &sdp("10.0.0.1", 4000)));
    signal(call.ringing_ms, false, message("SIP/2.0 180 Ringing", "1 INVITE", true, ""));
    signal(answer_ms, false, message("SIP/2.0 200 OK", "1 INVITE", true, &sdp("10.0.0.2", 5000)));
    if call.ack {
        signal(answer_ms + 10, true, message("ACK sip:bob@10.0.0.2 SIP/2.0", "1 ACK", true, ""));
    }
    // 200 packets (4 s) each way, then the BYE.
    let media_start = answer_ms + 20;
    let bye_ms = media_start + 4000;
    signal(bye_ms, true, message("BYE sip:bob@10.0.0.2 SIP/2.0", "2 BYE", true, ""));
    if call.bye_answered {
        signal(bye_ms + 10, false, message("SIP/2.0 200 OK", "2 BYE", true, ""));
    }
    let packets = 200 + (call.rtp_after_bye_ms / 20) as u16;
    for seq in 0..packets {
        let at = (media_start + u64::from(seq) * 20) * 1000;
        if call.a_to_b && !(call.loss && seq % 10 == 5) {
            let half = seq >= packets / 2;
            let ssrc = if call.ssrc_change && half { 12 } else { 11 };
            let pt = if call.payload_change && half { 8 } else { 0 };
            let late = if call.jitter && seq % 2 == 1 { 40_000 } else { 0 };
            out.push((at + late, ipv4(A, B, 17, 1, 0, &udp(4000, 5000, &rtp(seq, ssrc, pt)))));
        }
        if call.b_to_a {
            out.push((at + 7_000, ipv4(B, A, 17, 1, 0, &udp(5000, 4000, &rtp(seq, 21, 0)))));
        }
    }
    out.sort_by_key(|(us, _)| *us);
    out
}

fn pcap(frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4], 262_144u32.to_le_bytes()] {
        out.extend_from_slice(&word);
    }
    out.extend_from_slice(&1u32.to_le_bytes());
    for (us, ip) in frames {
        let mut eth = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00];
        eth.extend_from_slice(ip);
        let secs = 1_700_000_000 + us / 1_000_000;
        out.extend_from_slice(&(secs as u32).to_le_bytes());
        out.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(eth.len() as u32).to_le_bytes());
        out.extend_from_slice(&(eth.len() as u32).to_le_bytes());
        out.extend_from_slice(&eth);
    }
    out
}

fn analyse(call: &Call) -> Document {
    let mut reader = CaptureReader::from_bytes(pcap(&frames(call))).expect("capture");
    analyze(&mut reader, "problems.pcap", AnalyzerOptions::default(), None).expect("analyze")
}

/// The call's problems, and those of its A->B streams.
fn check(call: Call, session: &[Problem], a_to_b: &[Problem]) {
    let doc = analyse(&call);
    let calls: Vec<_> = doc.sessions.iter().filter(|s| s.kind == SessionKind::SipCall).collect();
    assert_eq!(calls.len(), 1);
    let s = calls[0];
    assert_eq!(s.problems, session, "session problems");
    let forward: Vec<Problem> =
        s.media.iter().filter(|m| m.src.port() == 4000).flat_map(|m| m.problems.iter().copied()).collect();
    assert_eq!(forward, a_to_b, "A->B stream problems");
    // The document counts the sessions with problems, per kind.
    let counted: Vec<(String, u64)> = doc.stats.problems.by_kind.clone().into_iter().collect();
    let want: Vec<(String, u64)> = session.iter().map(|p| (p.as_str().to_string(), 1)).collect();
    assert_eq!((doc.stats.problems.sessions, counted), (u64::from(!session.is_empty()), want));
}

#[test]
fn a_clean_call_has_no_problem() {
    check(Call::default(), &[], &[]);
}

#[test]
fn signalling_problems() {
    check(Call { ack: false, ..Call::default() }, &[Problem::NoAck], &[]);
    check(Call { bye_answered: false, ..Call::default() }, &[Problem::UnansweredRequest], &[]);
    check(Call { ringing_ms: 12_000, ..Call::default() }, &[Problem::LateAnswer], &[]);
}

#[test]
fn media_of_the_call() {
    check(Call { b_to_a: false, ..Call::default() }, &[Problem::OneWayAudio], &[]);
    check(Call { a_to_b: false, b_to_a: false, ..Call::default() }, &[Problem::NoRtp], &[]);
    check(Call { rtp_after_bye_ms: 5000, ..Call::default() }, &[Problem::RtpAfterBye], &[]);
}

#[test]
fn stream_problems() {
    check(Call { ssrc_change: true, ..Call::default() }, &[Problem::SsrcChange], &[Problem::SsrcChange]);
    check(Call { payload_change: true, ..Call::default() }, &[Problem::PayloadChange], &[Problem::PayloadChange]);
    // 10 % loss: MOS 3.31 is below 3.6 too.
    let lossy = [Problem::HighLoss, Problem::LowMos];
    check(Call { loss: true, ..Call::default() }, &lossy, &lossy);
    check(Call { jitter: true, ..Call::default() }, &[Problem::HighJitter], &[Problem::HighJitter]);
}
