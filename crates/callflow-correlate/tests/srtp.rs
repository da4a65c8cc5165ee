//! Encrypted media end to end: SDES keys in the SDP, SRTP streams measured from their clear headers, SRTCP decrypted with the keys.

mod common;
#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{MediaStream, Session, SessionKind, SrtpKeying};
use packets::{ipv4, udp};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const CALLER: &str = "10.0.0.1:5060";
const CALLEE: &str = "10.0.0.2:5060";
const SDP: &str = "application/sdp";
/// Where the caller's and the callee's media go.
const CALLER_RTP: &str = "10.0.0.1:4000";
const CALLEE_RTP: &str = "10.0.0.2:6000";

/// One packet of a script: a UDP payload from and to an address.
struct Packet {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: Vec<u8>,
}

fn addr(a: &str) -> SocketAddrV4 {
    a.parse().unwrap()
}

fn packet(src: &str, dst: &str, payload: Vec<u8>) -> Packet {
    Packet { src: addr(src), dst: addr(dst), payload }
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
    packet(src, dst, text.into_bytes())
}

/// INVITE with `offer`, 200 with `answer`, ACK.
fn setup(offer: &str, answer: &str) -> Vec<Packet> {
    vec![
        sip(true, "INVITE sip:bob@b SIP/2.0", None, "1 INVITE", Some(offer)),
        sip(false, "SIP/2.0 200 OK", Some("b1"), "1 INVITE", Some(answer)),
        sip(true, "ACK sip:bob@b SIP/2.0", Some("b1"), "1 ACK", None),
    ]
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callflow-srtp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Writes the packets 20 ms apart as a raw-IP pcap at `path`.
fn write_pcap(path: &Path, packets: &[Packet]) {
    let header = PcapHeader { datalink: DataLink::RAW, ..PcapHeader::default() };
    let mut writer = PcapWriter::with_header(std::fs::File::create(path).unwrap(), header).unwrap();
    for (i, p) in packets.iter().enumerate() {
        let data = ipv4(
            p.src.ip().octets(),
            p.dst.ip().octets(),
            17,
            i as u16,
            0x4000,
            &udp(p.src.port(), p.dst.port(), &p.payload),
        );
        let t = Duration::from_secs(1_700_000_000) + Duration::from_millis(20 * i as u64);
        writer.write_packet(&PcapPacket::new(t, data.len() as u32, &data)).unwrap();
    }
}

/// Writes the packets to a capture called `name` and returns its one call.
fn call_in(name: &str, packets: &[Packet]) -> (Session, PathBuf) {
    let path = temp(name);
    write_pcap(&path, packets);
    let mut reader = CaptureReader::open(&path).unwrap();
    let doc = analyze(&mut reader, name, AnalyzerOptions::default(), None).unwrap();
    let mut calls: Vec<Session> = doc.sessions.into_iter().filter(|s| s.kind == SessionKind::SipCall).collect();
    assert_eq!(calls.len(), 1, "{name}");
    (calls.remove(0), path)
}

/// The one call of the packets (in a capture of their own: tests run in parallel).
fn call(packets: &[Packet]) -> Session {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    call_in(&format!("call-{}.pcap", CALLS.fetch_add(1, Ordering::Relaxed)), packets).0
}

/// An RTP header (PCMU, sequence `seq`, SSRC `ssrc`, the P bit if `padding`), then
/// `payload` bytes of 0xaa and `trailer` bytes of 0xee (an SRTP packet's MKI and tag).
fn srtp(seq: u16, ssrc: u32, padding: bool, payload: usize, trailer: usize) -> Vec<u8> {
    let mut p = vec![if padding { 0xa0 } else { 0x80 }, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(0xaa, payload));
    p.extend(std::iter::repeat_n(0xee, trailer));
    p
}

/// A call set up with `offer` and `answer`, then `n` packets each way made by `make(seq, ssrc)`.
fn media_call(offer: &str, answer: &str, n: u16, make: impl Fn(u16, u32) -> Vec<u8>) -> Vec<Packet> {
    let mut p = setup(offer, answer);
    for seq in 1..=n {
        p.push(packet(CALLER_RTP, CALLEE_RTP, make(seq, 0x1111)));
        p.push(packet(CALLEE_RTP, CALLER_RTP, make(seq, 0x2222)));
    }
    p
}

/// `stream src>dst packets=N payload=N keying suite tag=N mki=N [assumed]`.
fn describe(m: &MediaStream) -> String {
    let srtp = m.srtp.as_ref().map_or("rtp".to_string(), |s| {
        let keying = match s.keying {
            SrtpKeying::Sdes => "sdes",
            SrtpKeying::Dtls => "dtls",
            SrtpKeying::Other => "other",
        };
        let assumed = if s.tag_assumed { " assumed" } else { "" };
        format!("{keying} {} tag={} mki={}{assumed}", s.suite.as_deref().unwrap_or("-"), s.tag_len, s.mki_len)
    });
    format!("{}>{} packets={} payload={} {srtp}", m.src, m.dst, m.packets, m.payload_bytes)
}

const KEY_30: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";
const KEY_28: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==";
const KEY_44: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKis=";

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

#[test]
fn srtp_payload_sizes_exclude_the_negotiated_suites_tag_and_mki() {
    let line = |tag: u32, suite: &str, key: &str| format!("a=crypto:{tag} {suite} inline:{key}\r\n");
    let fp = "a=fingerprint:sha-256 AB:CD\r\n";
    // (offer's lines, answer's lines, profile, trailer bytes per packet, expected)
    let cases = [
        // The answer accepts the second offered line: its 32-bit tag is what the packets carry.
        (
            line(1, "AES_CM_128_HMAC_SHA1_80", KEY_30) + &line(2, "AES_CM_128_HMAC_SHA1_32", KEY_30),
            line(2, "AES_CM_128_HMAC_SHA1_32", KEY_30),
            "RTP/SAVP",
            4,
            "sdes AES_CM_128_HMAC_SHA1_32 tag=4 mki=0",
        ),
        (
            line(1, "AES_CM_128_HMAC_SHA1_80", KEY_30),
            line(1, "AES_CM_128_HMAC_SHA1_80", KEY_30),
            "RTP/SAVP",
            10,
            "sdes AES_CM_128_HMAC_SHA1_80 tag=10 mki=0",
        ),
        (
            line(1, "AEAD_AES_128_GCM", KEY_28),
            line(1, "AEAD_AES_128_GCM", KEY_28),
            "RTP/SAVPF",
            16,
            "sdes AEAD_AES_128_GCM tag=16 mki=0",
        ),
        (
            line(1, "AEAD_AES_256_GCM", KEY_44),
            line(1, "AEAD_AES_256_GCM", KEY_44),
            "RTP/SAVP",
            16,
            "sdes AEAD_AES_256_GCM tag=16 mki=0",
        ),
        // A 4-byte MKI before the tag; and best effort, SDES under RTP/AVP.
        (
            format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_30}|2^20|1:4\r\n"),
            format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_30}|2^20|7:4\r\n"),
            "RTP/AVP",
            14,
            "sdes AES_CM_128_HMAC_SHA1_80 tag=10 mki=4",
        ),
        // DTLS-SRTP: the suite is in the handshake, 80 bits of tag are assumed and said so.
        (fp.to_string(), fp.to_string(), "UDP/TLS/RTP/SAVPF", 10, "dtls - tag=10 mki=0 assumed"),
        // A secure profile with a suite this build does not know: the same assumption.
        (line(1, "FANCY_SUITE", KEY_30), line(1, "FANCY_SUITE", KEY_30), "RTP/SAVP", 10, "sdes - tag=10 mki=0 assumed"),
    ];
    for (offer, answer, proto, trailer, expected) in cases {
        let offer = sdp("10.0.0.1", 4000, proto, &offer);
        let answer = sdp("10.0.0.2", 6000, proto, &answer);
        let s = call(&media_call(&offer, &answer, 5, |seq, ssrc| srtp(seq, ssrc, false, 160, trailer)));
        let got: Vec<String> = s.media.iter().map(describe).collect();
        assert_eq!(
            got,
            [
                format!("{CALLER_RTP}>{CALLEE_RTP} packets=5 payload=800 {expected}"),
                format!("{CALLEE_RTP}>{CALLER_RTP} packets=5 payload=800 {expected}"),
            ],
            "{proto} {offer}"
        );
    }
    // Plain RTP: the padding is not payload.
    let (offer, answer) = (sdp("10.0.0.1", 4000, "RTP/AVP", ""), sdp("10.0.0.2", 6000, "RTP/AVP", ""));
    let s = call(&media_call(&offer, &answer, 5, |seq, ssrc| {
        let mut p = srtp(seq, ssrc, true, 160, 3);
        *p.last_mut().unwrap() = 3;
        p
    }));
    assert_eq!(
        s.media.iter().map(describe).collect::<Vec<_>>()[0],
        format!("{CALLER_RTP}>{CALLEE_RTP} packets=5 payload=800 rtp")
    );
}

#[test]
fn an_srtp_packet_with_the_padding_bit_is_counted() {
    // The padding of SRTP is encrypted: the last byte is the tag's (0xee, more than the
    // packet), which read as a padding count made the packet "not RTP" and lost it.
    let key = format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_30}\r\n");
    let (offer, answer) = (sdp("10.0.0.1", 4000, "RTP/SAVP", &key), sdp("10.0.0.2", 6000, "RTP/SAVP", &key));
    let s = call(&media_call(&offer, &answer, 6, |seq, ssrc| srtp(seq, ssrc, seq % 2 == 0, 160, 10)));
    assert_eq!(s.media.iter().map(|m| (m.packets, m.lost, m.payload_bytes)).collect::<Vec<_>>(), [(6, 0, 960); 2]);
    // Plain RTP with such padding is still no RTP.
    let (offer, answer) = (sdp("10.0.0.1", 4000, "RTP/AVP", ""), sdp("10.0.0.2", 6000, "RTP/AVP", ""));
    let s = call(&media_call(&offer, &answer, 6, |seq, ssrc| srtp(seq, ssrc, seq % 2 == 0, 160, 10)));
    assert_eq!(s.media.iter().map(|m| (m.packets, m.lost)).collect::<Vec<_>>(), [(3, 2); 2]);
}

/// tshark's SRTP payload bytes (`srtp.enc_payload`) summed over the packets to `dst`.
fn tshark_payload_bytes(path: &Path, dst_port: u16) -> Option<usize> {
    if !common::have_tool("tshark") {
        return None;
    }
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-Y",
            &format!("rtp && udp.dstport == {dst_port}"),
            "-T",
            "fields",
            "-e",
            "srtp.enc_payload",
            "-e",
            "rtp.payload",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    Some(text.lines().map(|l| l.replace(['\t', ':'], "").len() / 2).sum())
}

#[test]
fn srtp_payload_sizes_against_tshark() {
    // tshark 4.0 reads a=crypto's HMAC-SHA1 suites (SRTP Encrypted Payload, then the tag),
    // not RFC 7714's AEAD suites: there it counts the 16-byte GCM tag as payload, which it
    // is not (RFC 7714 section 9.2: the tag follows the ciphertext). DTLS-SRTP it reads as
    // plain RTP, the tag in the payload.
    let cases = [
        ("AES_CM_128_HMAC_SHA1_80", KEY_30, "RTP/SAVP", 10, 0),
        ("AES_CM_128_HMAC_SHA1_32", KEY_30, "RTP/SAVP", 4, 0),
        ("AEAD_AES_128_GCM", KEY_28, "RTP/SAVP", 16, 16),
        ("-", "", "UDP/TLS/RTP/SAVPF", 10, 10),
    ];
    for (suite, key, proto, tag, tshark_extra) in cases {
        let line = if suite == "-" {
            "a=fingerprint:sha-256 AB:CD\r\n".to_string()
        } else {
            format!("a=crypto:1 {suite} inline:{key}\r\n")
        };
        let (offer, answer) = (sdp("10.0.0.1", 4000, proto, &line), sdp("10.0.0.2", 6000, proto, &line));
        let (s, path) = call_in(
            &format!("tshark-{suite}.pcap"),
            &media_call(&offer, &answer, 5, |seq, ssrc| srtp(seq, ssrc, false, 160, tag)),
        );
        let ours = s.media.iter().find(|m| m.dst.port() == 6000).map(|m| m.payload_bytes as usize);
        assert_eq!(ours, Some(800), "{suite}");
        if let Some(theirs) = tshark_payload_bytes(&path, 6000) {
            assert_eq!(theirs, 800 + 5 * tshark_extra, "{suite}: tshark's payload bytes");
        }
    }
}
