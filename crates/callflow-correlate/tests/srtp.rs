//! Encrypted media end to end: SDES keys in the SDP, SRTP streams measured from their clear headers, SRTCP decrypted with the keys.

mod common;
#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{MediaStream, Session, SessionKind, SrtpKeying};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const CALLER: &str = "10.0.0.1:5060";
const CALLEE: &str = "10.0.0.2:5060";
const SDP: &str = "application/sdp";
/// Where the caller's and the callee's media go.
const CALLER_RTP: &str = "10.0.0.1:4000";
const CALLEE_RTP: &str = "10.0.0.2:6000";

/// One packet of a script (`packets::Scripted`).
type Packet = packets::Scripted;

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
    Packet::new(src, dst, text.into_bytes())
}

/// INVITE with `offer`, 200 with `answer`, ACK.
fn setup(offer: &str, answer: &str) -> Vec<Packet> {
    vec![
        sip(true, "INVITE sip:bob@b SIP/2.0", None, "1 INVITE", Some(offer)),
        sip(false, "SIP/2.0 200 OK", Some("b1"), "1 INVITE", Some(answer)),
        sip(true, "ACK sip:bob@b SIP/2.0", Some("b1"), "1 ACK", None),
    ]
}

/// A file of this run in the temporary directory (each test removes its own).
fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("callflow-srtp-{}-{name}", std::process::id()))
}

/// Writes the packets 20 ms apart as a raw-IP pcap at `path`.
fn write_pcap(path: &Path, packets: &[Packet]) {
    let header = PcapHeader { datalink: DataLink::RAW, ..PcapHeader::default() };
    let mut writer = PcapWriter::with_header(std::fs::File::create(path).unwrap(), header).unwrap();
    for (i, p) in packets.iter().enumerate() {
        let data = p.ipv4(i);
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

/// The one call of the packets (in a capture of their own: tests run in parallel; removed
/// once read).
fn call(packets: &[Packet]) -> Session {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let (session, path) = call_in(&format!("call-{}.pcap", CALLS.fetch_add(1, Ordering::Relaxed)), packets);
    let _ = std::fs::remove_file(path);
    session
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
        p.push(Packet::new(CALLER_RTP, CALLEE_RTP, make(seq, 0x1111)));
        p.push(Packet::new(CALLEE_RTP, CALLER_RTP, make(seq, 0x2222)));
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
        let _ = std::fs::remove_file(path);
    }
}

/// Protects each sender's packets with libsrtp (Debian's libsrtp2 through python3-pylibsrtp):
/// `packets` are `(is_rtcp, plaintext)` in sending order, under `profile` (pylibsrtp's
/// number) and `key` (key||salt). `None` when libsrtp is not there (a failure in CI).
fn libsrtp_protect(profile: u32, key: &[u8], packets: &[(bool, Vec<u8>)]) -> Option<Vec<Vec<u8>>> {
    use std::io::Write;
    const SCRIPT: &str = "import sys, pylibsrtp as s\n\
        profile, key = sys.stdin.readline().split()\n\
        policy = s.Policy(key=bytes.fromhex(key), ssrc_type=s.Policy.SSRC_ANY_OUTBOUND, srtp_profile=int(profile))\n\
        session = s.Session(policy=policy)\n\
        for line in sys.stdin:\n    kind, data = line.split()\n    \
        out = session.protect_rtcp(bytes.fromhex(data)) if kind == 'rtcp' else session.protect(bytes.fromhex(data))\n    \
        print(out.hex())\n";
    let python = "/usr/bin/python3";
    let usable =
        std::process::Command::new(python).args(["-c", "import pylibsrtp"]).output().is_ok_and(|o| o.status.success());
    if !usable {
        assert!(std::env::var_os("CI").is_none(), "CI is set but python3-pylibsrtp (libsrtp2) is not installed");
        eprintln!("{python} with pylibsrtp not found: skipping the libsrtp part of this test");
        return None;
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut input = format!("{profile} {}\n", hex(key));
    for (rtcp, p) in packets {
        input.push_str(&format!("{} {}\n", if *rtcp { "rtcp" } else { "rtp" }, hex(p)));
    }
    let mut child = std::process::Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "libsrtp failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let unhex = |l: &str| (0..l.len()).step_by(2).map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap()).collect();
    let protected: Vec<Vec<u8>> = text.lines().map(unhex).collect();
    assert_eq!(protected.len(), packets.len());
    Some(protected)
}

/// A sender report from `ssrc` with NTP time 0x0000_1234_5678_0000 (its LSR: 0x1234_5678).
fn sender_report(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&0x0000_1234_5678_0000u64.to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p
}

/// A receiver report from `ssrc` about `about`, echoing the SR above, held `dlsr` (1/65536 s).
fn receiver_report(ssrc: u32, about: u32, dlsr: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&about.to_be_bytes());
    for w in [3u32, 100, 240, 0x1234_5678, dlsr] {
        p.extend_from_slice(&w.to_be_bytes());
    }
    p
}

/// A call whose caller and callee protect their RTP and RTCP with libsrtp under
/// `profile`, the caller with `keys.0`, the callee with `keys.1`; the SDPs give
/// `sdp_keys` (the same, or others for a wrong key). The caller sends an SR after its
/// 5th packet, the callee an RR about it 580 ms later held 500 ms: 80 ms of round trip.
/// `None` without libsrtp.
fn libsrtp_call(suite: &str, profile: u32, keys: (&[u8], &[u8]), sdp_keys: (&[u8], &[u8])) -> Option<Vec<Packet>> {
    let b64 = |k: &[u8]| base64(k);
    let offer = sdp("10.0.0.1", 4000, "RTP/SAVP", &format!("a=crypto:1 {suite} inline:{}\r\n", b64(sdp_keys.0)));
    let answer = sdp("10.0.0.2", 6000, "RTP/SAVP", &format!("a=crypto:1 {suite} inline:{}\r\n", b64(sdp_keys.1)));
    // The script in plaintext: (from the caller, is RTCP, packet).
    let mut script: Vec<(bool, bool, Vec<u8>)> = Vec::new();
    for seq in 1..=40u16 {
        script.push((true, false, srtp(seq, 0x1111, false, 160, 0)));
        script.push((false, false, srtp(seq, 0x2222, false, 160, 0)));
        if seq == 5 {
            script.push((true, true, sender_report(0x1111)));
        }
    }
    // 580 ms after the SR: 29 packets later, 20 ms apart.
    let sr_at = script.iter().position(|(_, rtcp, _)| *rtcp).unwrap();
    script.insert(sr_at + 29, (false, true, receiver_report(0x2222, 0x1111, 32768)));
    let mut protected = Vec::new();
    for (caller, key) in [(true, keys.0), (false, keys.1)] {
        let mine: Vec<(bool, Vec<u8>)> = script.iter().filter(|s| s.0 == caller).map(|s| (s.1, s.2.clone())).collect();
        protected.push(libsrtp_protect(profile, key, &mine)?.into_iter());
    }
    let mut packets = setup(&offer, &answer);
    for (caller, rtcp, _) in &script {
        let payload = protected[usize::from(!caller)].next().unwrap();
        let (src, dst) = match (caller, rtcp) {
            (true, false) => (CALLER_RTP, CALLEE_RTP),
            (false, false) => (CALLEE_RTP, CALLER_RTP),
            (true, true) => ("10.0.0.1:4001", "10.0.0.2:6001"),
            (false, true) => ("10.0.0.2:6001", "10.0.0.1:4001"),
        };
        packets.push(Packet::new(src, dst, payload));
    }
    Some(packets)
}

/// Standard base64 with padding, for the SDP's inline keys.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ABC[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// `srtcp packets/decrypted/auth_failures/truncated/no_key reports=N rtt=MS` of the
/// caller's stream, and the callee's SRTCP counts.
fn srtcp_outcome(s: &Session) -> (String, String) {
    let of = |src: &str| s.media.iter().find(|m| m.src.to_string() == src).expect("stream");
    let counts = |m: &MediaStream| {
        let c = m.srtp.as_ref().and_then(|s| s.srtcp).unwrap_or_default();
        format!("{}/{}/{}/{}/{}", c.packets, c.decrypted, c.auth_failures, c.truncated, c.no_key)
    };
    let caller = of(CALLER_RTP);
    let rtt = caller.rtcp_summary.as_ref().and_then(|r| r.rtt_ms).map_or("-".to_string(), |r| format!("{r:.0}"));
    (format!("{} reports={} rtt={rtt}", counts(caller), caller.rtcp.len()), counts(of(CALLEE_RTP)))
}

#[test]
fn srtcp_from_libsrtp_is_decrypted_with_the_sdp_keys_into_reports_and_a_round_trip() {
    let suites = [
        ("AES_CM_128_HMAC_SHA1_80", 1, 30),
        ("AES_CM_128_HMAC_SHA1_32", 2, 30),
        ("AEAD_AES_128_GCM", 7, 28),
        ("AEAD_AES_256_GCM", 8, 44),
    ];
    for (suite, profile, len) in suites {
        let caller: Vec<u8> = (0..len).collect();
        let callee: Vec<u8> = (100..100 + len).collect();
        let Some(packets) = libsrtp_call(suite, profile, (&caller, &callee), (&caller, &callee)) else { return };
        let (s, path) = call_in(&format!("libsrtp-{suite}.pcap"), &packets);
        // tshark 4.0 knows the SRTCP from the SDP and decrypts none of it. It reads the index
        // (1 for each sender's first packet) except under _32, where it takes SRTP's 32-bit
        // tag for SRTCP's (RFC 4568 section 6.2.2 keeps 80 bits for SRTCP, as libsrtp does)
        // and reads the index from the wrong bytes, or, the E flag it finds there being 0,
        // takes the RR's ciphertext for a report: the garbage reports we once read too.
        if common::have_tool("tshark") {
            let indexes = tshark_fields(&path, "udp.port == 4001 || udp.port == 6001", "srtcp.index");
            let reports = tshark_fields(&path, "rtcp.timestamp.ntp || rtcp.ssrc.fraction", "frame.number");
            let (expected, garbage) = if suite.ends_with("_32") {
                (vec!["976750694".to_string(), String::new()], vec!["43".to_string()])
            } else {
                (vec!["1".to_string(); 2], vec![])
            };
            assert_eq!((indexes, reports), (expected, garbage), "{suite}: tshark");
        }
        let _ = std::fs::remove_file(path);
        // Both reports are about the caller's stream: its SR, and the RR echoing it.
        assert_eq!(srtcp_outcome(&s), ("1/1/0/0/0 reports=2 rtt=80".to_string(), "1/1/0/0/0".to_string()), "{suite}");
        assert!(s.media.iter().all(|m| m.packets == 40 && m.lost == 0 && m.payload_bytes == 40 * 160), "{suite}");
        // Keys the SDP did not give (the callee's answer names another key): its SRTCP fails
        // authentication, is counted and gives no report, and no round trip.
        let other: Vec<u8> = (200..200 + len).collect();
        let packets = libsrtp_call(suite, profile, (&caller, &callee), (&caller, &other)).unwrap();
        let s = call(&packets);
        assert_eq!(srtcp_outcome(&s), ("1/1/0/0/0 reports=1 rtt=-".to_string(), "1/0/1/0/0".to_string()), "{suite}");
    }
}

/// tshark's `field` of each packet of the capture at `path` that `filter` matches.
fn tshark_fields(path: &Path, filter: &str, field: &str) -> Vec<String> {
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-e", field])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn truncated_and_keyless_srtcp_is_counted_and_never_read() {
    let key: Vec<u8> = (0..30).collect();
    let line = format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n", base64(&key));
    let (offer, answer) = (sdp("10.0.0.1", 4000, "RTP/SAVP", &line), sdp("10.0.0.2", 6000, "RTP/SAVP", &line));
    let mut p = media_call(&offer, &answer, 3, |seq, ssrc| srtp(seq, ssrc, false, 160, 10));
    // An SR cut after 20 bytes: too short for its index word and 80-bit tag.
    p.push(Packet::new("10.0.0.1:4001", "10.0.0.2:6001", sender_report(0x1111)[..20].to_vec()));
    let s = call(&p);
    assert_eq!(srtcp_outcome(&s).0, "1/0/0/1/0 reports=0 rtt=-");
    // DTLS-SRTP: no key in the SDP, the SRTCP is counted as such.
    let fp = "a=fingerprint:sha-256 AB:CD\r\n";
    let (offer, answer) =
        (sdp("10.0.0.1", 4000, "UDP/TLS/RTP/SAVPF", fp), sdp("10.0.0.2", 6000, "UDP/TLS/RTP/SAVPF", fp));
    let mut p = media_call(&offer, &answer, 3, |seq, ssrc| srtp(seq, ssrc, false, 160, 10));
    p.push(Packet::new("10.0.0.1:4001", "10.0.0.2:6001", sender_report(0x1111)));
    let s = call(&p);
    assert_eq!(srtcp_outcome(&s).0, "1/0/0/0/1 reports=0 rtt=-");
}

/// A DTLS 1.2 record (epoch 0) holding a ServerHello whose `use_srtp` (RFC 5764) chose
/// protection profile `profile`.
fn dtls_server_hello(profile: u16) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(&[7; 32]);
    body.extend_from_slice(&[0, 0xc0, 0x2b, 0]);
    let use_srtp = [0, 14, 0, 5, 0, 2, (profile >> 8) as u8, profile as u8, 0];
    body.extend_from_slice(&(use_srtp.len() as u16).to_be_bytes());
    body.extend_from_slice(&use_srtp);
    let len = (body.len() as u32).to_be_bytes();
    let mut record = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1];
    record.extend_from_slice(&(body.len() as u16 + 12).to_be_bytes());
    record.push(2);
    record.extend_from_slice(&len[1..]);
    record.extend_from_slice(&[0, 0, 0, 0, 0]);
    record.extend_from_slice(&len[1..]);
    record.extend_from_slice(&body);
    record
}

#[test]
fn dtls_srtp_takes_its_suite_from_the_server_hello_on_the_media_port() {
    let fp = "a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\n";
    let (offer, answer) =
        (sdp("10.0.0.1", 4000, "UDP/TLS/RTP/SAVPF", fp), sdp("10.0.0.2", 6000, "UDP/TLS/RTP/SAVPF", fp));
    for (profile, tag, expected) in [
        (7, 16, "dtls AEAD_AES_128_GCM tag=16 mki=0"),
        (2, 4, "dtls AES_CM_128_HMAC_SHA1_32 tag=4 mki=0"),
        // A NULL profile is no suite here: the assumption stands, and is said.
        (5, 10, "dtls - tag=10 mki=0 assumed"),
    ] {
        let mut p = setup(&offer, &answer);
        p.push(Packet::new(CALLEE_RTP, CALLER_RTP, dtls_server_hello(profile)));
        for seq in 1..=5 {
            p.push(Packet::new(CALLER_RTP, CALLEE_RTP, srtp(seq, 0x1111, false, 160, tag)));
        }
        let s = call(&p);
        assert_eq!(
            s.media.iter().map(describe).collect::<Vec<_>>(),
            [format!("{CALLER_RTP}>{CALLEE_RTP} packets=5 payload=800 {expected}")],
            "profile {profile}"
        );
    }
}
