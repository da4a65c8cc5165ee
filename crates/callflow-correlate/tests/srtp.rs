//! Encrypted media end to end: SDES keys in the SDP, SRTP streams measured from their clear headers, SRTCP decrypted with the keys.

#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::Analyzer;
use callflow_decode::capture::Frame;
use callflow_decode::{LinkType, Timestamp};
use callflow_model::{Session, SessionKind};
use packets::{ipv4, udp};
use std::net::SocketAddrV4;

const CALLER: &str = "10.0.0.1:5060";
const CALLEE: &str = "10.0.0.2:5060";
const SDP: &str = "application/sdp";

/// One packet of a script: a UDP payload from and to an address.
struct Packet {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: Vec<u8>,
}

fn addr(a: &str) -> SocketAddrV4 {
    a.parse().unwrap()
}

/// An SDP from `ip` with PCMU audio on `port` under `proto`, and `extra` lines.
fn sdp(ip: &str, port: u16, proto: &str, extra: &str) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} {proto} 0\r\n{extra}")
}

/// A SIP message of call `srtp@a` with `start` line, `from_caller` says the direction.
fn sip(from_caller: bool, start: &str, to_tag: Option<&str>, cseq: &str, body: Option<&str>) -> Packet {
    let (src, dst) = if from_caller { (CALLER, CALLEE) } else { (CALLEE, CALLER) };
    let to = to_tag.map_or_else(|| "<sip:bob@b>".to_string(), |t| format!("<sip:bob@b>;tag={t}"));
    let branch = format!("z9hG4bK{}", cseq.replace(' ', ""));
    let (ct, body) = body.map_or((String::new(), ""), |b| (format!("Content-Type: {SDP}\r\n"), b));
    let text = format!(
        "{start}\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\nFrom: <sip:alice@a>;tag=a1\r\nTo: {to}\r\n\
         Call-ID: srtp@a\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Packet { src: addr(src), dst: addr(dst), payload: text.into_bytes() }
}

/// INVITE with `offer`, 200 with `answer`, ACK.
fn setup(offer: &str, answer: &str) -> Vec<Packet> {
    vec![
        sip(true, "INVITE sip:bob@b SIP/2.0", None, "1 INVITE", Some(offer)),
        sip(false, "SIP/2.0 200 OK", Some("b1"), "1 INVITE", Some(answer)),
        sip(true, "ACK sip:bob@b SIP/2.0", Some("b1"), "1 ACK", None),
    ]
}

/// Runs the packets 20 ms apart and returns the one call.
fn call(packets: &[Packet]) -> Session {
    let mut analyzer = Analyzer::default();
    for (i, p) in packets.iter().enumerate() {
        let data = ipv4(
            p.src.ip().octets(),
            p.dst.ip().octets(),
            17,
            i as u16,
            0x4000,
            &udp(p.src.port(), p.dst.port(), &p.payload),
        );
        let frame = Frame {
            number: i as u64 + 1,
            ts: Timestamp::from_nanos(1_700_000_000_000_000_000 + i as i64 * 20_000_000),
            link_type: LinkType::IPV4,
            data: &data,
            orig_len: data.len() as u32,
            interface: 0,
        };
        analyzer.process(&frame);
    }
    let (sessions, _) = analyzer.finish();
    let mut calls: Vec<Session> = sessions.into_iter().filter(|s| s.kind == SessionKind::SipCall).collect();
    assert_eq!(calls.len(), 1);
    calls.remove(0)
}

#[test]
fn a_malformed_crypto_line_is_a_call_anomaly_naming_it() {
    let offer = sdp("10.0.0.1", 4000, "RTP/SAVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n");
    let answer = sdp("10.0.0.2", 6000, "RTP/SAVP", "a=crypto:x AES_CM_128_HMAC_SHA1_80\r\n");
    let s = call(&setup(&offer, &answer));
    assert_eq!(
        s.anomalies,
        [
            "SDP in frame 1: sdp: invalid a=crypto at offset 95: inline key is not the length of the suite's \
             master key and salt",
            "SDP in frame 2: sdp: invalid a=crypto at offset 95: expected <tag> <crypto-suite> <key-params>",
        ]
    );
}
