//! Robustness: every decoder entry point fed damaged versions of real captures must not panic.
//!
//! This is the fuzz targets' work (`fuzz/`) done briefly in every test run, without
//! libFuzzer: each captured frame is cut at every length and has bytes flipped by a
//! seeded generator, then handed to the same entry points the fuzz targets call.

use callflow_decode::capture::CaptureReader;
use callflow_decode::diameter::{self, DiameterMessage, Dictionary};
use callflow_decode::dtmf::TelephoneEvent;
use callflow_decode::hep::{self, HepPacket};
use callflow_decode::packet::{decode_frame, Transport};
use callflow_decode::sdp::{Crypto, Sdp};
use callflow_decode::sip::{self, SipMessage};
use callflow_decode::srtp::{self, SrtcpContext, SrtpError, SrtpSuite};
use callflow_decode::{gtp, rtcp, rtp, sctp, tls, websocket, LinkType};
use std::cell::RefCell;
use std::path::Path;

/// The GTP entry points: headers of both versions, every IE, grouped IEs walked down to
/// the depth limit, and the values callflowd reads.
fn gtp_decoders(bytes: &[u8]) {
    fn walk(ie: &gtp::V2Ie<'_>) {
        let _ = (gtp::Paa::parse(ie.value, 0), gtp::Fteid::parse(ie.value, 0), gtp::BearerQos::parse(ie.value, 0));
        let _ = (gtp::Uli::parse(ie.value, 0), gtp::Apn::parse(ie.value, 0).map(|a| a.to_string()));
        if let Ok(group) = ie.group() {
            group.flatten().for_each(|inner| walk(&inner));
        }
    }
    if let Ok(h) = gtp::v1_header(bytes) {
        for ie in gtp::V1Ies::new(bytes.get(h.header_len..).unwrap_or_default(), h.header_len).flatten() {
            let _ = (gtp::EndUserAddress::parse(ie.value, 0), gtp::QosProfile::parse(ie.value, 0));
            let _ = gtp::Digits::tbcd(ie.value, 0);
        }
    }
    for m in gtp::v2_messages(bytes).flatten() {
        m.ies().flatten().for_each(|ie| walk(&ie));
    }
}

/// SplitMix64: a tiny deterministic generator, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Feeds `bytes` to every application decoder.
fn application_decoders(bytes: &[u8]) {
    let _ = sip::looks_like_sip(bytes);
    let _ = sip::frame_message(bytes);
    if let Ok(msg) = SipMessage::parse(bytes) {
        let _ = (msg.call_id(), msg.from(), msg.to(), msg.cseq(), msg.top_via(), msg.content_length());
        let _ = msg.vias().count();
        let _ = msg.headers().count();
        if let Some(body) = sip::sdp_body(&msg) {
            let _ = Sdp::parse(body);
        }
    }
    let _ = Sdp::parse(bytes);
    let _ = rtp::looks_like_rtp(bytes);
    if let Ok(p) = rtp::RtpPacket::parse(bytes) {
        let _ = p.csrcs().count();
        let _ = p.extension();
        let _ = TelephoneEvent::parse(p.payload);
    }
    let _ = rtcp::looks_like_rtcp(bytes);
    for p in rtcp::packets(bytes).take(64) {
        match p {
            Ok(rtcp::RtcpPacket::ExtendedReport { blocks, .. }) => {
                for block in rtcp::xr_blocks(blocks).take(64).flatten() {
                    let _ = rtcp::VoipMetrics::parse(block.body);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = (websocket::is_upgrade_request(bytes), websocket::is_upgrade_response(bytes));
    let _ = (websocket::has_subprotocol(bytes, "sip"), websocket::starts_with_sip_frame(bytes));
    let _ = websocket::frame_http_or_ws(bytes);
    if let Ok(frame) = websocket::WsFrame::parse(bytes) {
        let mut out = Vec::new();
        frame.unmask_into(&mut out);
        let _ = websocket::MessageAssembler::new(1 << 16).push(&frame);
    }
    let _ = (diameter::frame_message(bytes), diameter::looks_like_diameter(bytes));
    if let Ok(msg) = DiameterMessage::parse(bytes) {
        let _ = diameter::avp_tree(&msg, Dictionary::builtin());
    }
    hep_decoders(bytes);
    gtp_decoders(bytes);
    tls_decoders(bytes);
    srtcp_decoders(bytes);
    for c in sctp::chunks(bytes).take(64) {
        match c {
            Ok(c) => {
                let _ = sctp::data_chunk(&c);
            }
            Err(_) => break,
        }
    }
}

/// The SRTP entry points: `a=crypto` values, DTLS-SRTP ServerHellos, and SRTCP decryption under every suite
/// decrypted (keys fixed, one with a 4-byte MKI), so damaged packets reach the tag checks.
fn srtcp_decoders(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = Crypto::parse(text);
    }
    let _ = srtp::dtls_srtp_profile(bytes);
    thread_local! {
        // Made once per thread: deriving keys for every damaged frame would be most of the test's time.
        static CONTEXTS: RefCell<Vec<SrtcpContext>> = RefCell::new(
            [
                SrtcpContext::new(SrtpSuite::AesCm128HmacSha1_80, &[1; 30], Some((7, 4)), 0),
                SrtcpContext::new(SrtpSuite::AesCm256HmacSha1_32, &[2; 46], None, 3),
                SrtcpContext::new(SrtpSuite::AeadAes128Gcm, &[3; 28], None, 0),
                SrtcpContext::new(SrtpSuite::AeadAes256Gcm, &[4; 44], Some((1, 1)), 0),
            ]
            .into_iter()
            .flatten()
            .collect(),
        );
    }
    // What the analysis hands to SRTCP decryption: RTCP's first bytes.
    if !(bytes.len() >= 8 && bytes[0] >> 6 == 2 && (200..=207).contains(&bytes[1])) {
        return;
    }
    let mut out = Vec::new();
    CONTEXTS.with_borrow_mut(|contexts| {
        for ctx in contexts {
            let _ = ctx.decrypt(bytes, &mut out);
        }
    });
}

/// The TLS entry points: framing, records, hellos, key log lines and record decryption
/// (keys of a CBC and an AEAD suite, fixed, so damaged records reach the padding and tag checks).
fn tls_decoders(bytes: &[u8]) {
    let _ = (tls::frame_record(bytes), tls::starts_tls(bytes));
    let _ = tls::keylog::KeyLog::parse(bytes);
    let suites = [tls::crypto::CipherSuite::by_id(0xc013), tls::crypto::CipherSuite::by_id(0x1301)];
    let [Some(cbc), Some(gcm)] = suites else { return };
    let side = tls::crypto::Side::Client;
    let mut keys = [
        tls::crypto::RecordKeys::tls12(cbc, &[1; 48], &[2; 32], &[3; 32], side, bytes.first() == Some(&0)),
        tls::crypto::RecordKeys::tls13(gcm, &[4; 32]),
    ];
    let mut out = Vec::new();
    for record in tls::records(bytes).take(64) {
        let Ok(record) = record else { break };
        for k in keys.iter_mut().flatten() {
            let _ = k.decrypt(&record, &mut out);
        }
        for m in tls::handshake_messages(record.fragment).take(64) {
            let Ok(m) = m else { break };
            let _ = (tls::ClientHello::parse(m.body), tls::ServerHello::parse(m.body));
        }
    }
}

/// The HEP entry points: the TCP framer, the packet of any version, its chunks and its payload.
fn hep_decoders(bytes: &[u8]) {
    let _ = hep::frame_packet(bytes);
    let _ = hep::Chunks::new(bytes).take(64).count();
    if let Ok(p) = HepPacket::parse(bytes) {
        let _ = (p.payload_bytes(), p.timestamp(), p.proto());
    }
}

/// Decodes a frame and every payload in it.
fn whole_frame(link: LinkType, data: &[u8]) {
    let packet = decode_frame(link, data);
    match packet.transport {
        Transport::Udp { payload, .. } => application_decoders(payload),
        Transport::Tcp(seg) => application_decoders(seg.payload),
        Transport::Sctp { chunks, .. } => application_decoders(chunks),
        Transport::Fragment(f) => application_decoders(f.payload),
        Transport::Other { payload, .. } => application_decoders(payload),
        _ => {}
    }
}

fn frames_of(path: &Path) -> Vec<(LinkType, Vec<u8>)> {
    let mut reader = CaptureReader::open(path).expect("open test capture");
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = reader.next_frame() {
        frames.push((frame.link_type, frame.data.to_vec()));
    }
    frames
}

#[test]
fn damaged_frames_of_the_example_never_panic() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap");
    let frames = frames_of(&example);
    assert!(frames.len() > 100, "the example has its frames");
    let mut rng = Rng(0x5eed);
    let links = [LinkType::ETHERNET, LinkType::LINUX_SLL, LinkType::LINUX_SLL2, LinkType::RAW, LinkType::NULL];
    let mut decoded = 0;
    // The SIP frames and a few RTP/RTCP ones: every cut length, and 200 random mutations each.
    for (link, data) in frames.iter().take(12) {
        for len in 0..=data.len() {
            whole_frame(*link, &data[..len]);
        }
        for _ in 0..200 {
            let mut bytes = data.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % bytes.len();
                bytes[at] = rng.next() as u8;
            }
            let other = links[(rng.next() as usize) % links.len()];
            whole_frame(*link, &bytes);
            whole_frame(other, &bytes);
            decoded += 2;
        }
    }
    assert!(decoded >= 4000);
}

#[test]
fn damaged_capture_files_never_panic() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap");
    let bytes = std::fs::read(example).expect("read example");
    let mut rng = Rng(42);
    for round in 0..300 {
        let mut damaged = bytes.clone();
        if round % 3 == 0 {
            damaged.truncate((rng.next() as usize) % bytes.len());
        }
        for _ in 0..1 + rng.next() % 8 {
            let at = (rng.next() as usize) % damaged.len().max(1);
            if let Some(b) = damaged.get_mut(at) {
                *b = rng.next() as u8;
            }
        }
        if let Ok(mut reader) = CaptureReader::from_bytes(damaged) {
            let mut n = 0;
            while let Ok(Some(frame)) = reader.next_frame() {
                whole_frame(frame.link_type, frame.data);
                n += 1;
                assert!(n <= 100_000, "a damaged capture cannot yield more frames than bytes");
            }
        }
    }
}

/// A Diameter AVP (M flag, vendor when given), padded.
fn diameter_avp(code: u32, vendor: Option<u32>, data: &[u8]) -> Vec<u8> {
    let header = if vendor.is_some() { 12 } else { 8 };
    let mut out = code.to_be_bytes().to_vec();
    out.push(if vendor.is_some() { 0xc0 } else { 0x40 });
    out.extend_from_slice(&((header + data.len()) as u32).to_be_bytes()[1..]);
    if let Some(v) = vendor {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

#[test]
fn damaged_diameter_messages_never_panic() {
    // A Gx CCA with grouped AVPs three levels deep (Charging-Rule-Install > -Definition >
    // QoS-Information), a Subscription-Id and an unknown vendor AVP.
    let qos = diameter_avp(1016, Some(10415), &diameter_avp(1028, Some(10415), &[0, 0, 0, 1]));
    let definition = diameter_avp(1003, Some(10415), &[diameter_avp(1005, Some(10415), b"rule"), qos].concat());
    let body = [
        diameter_avp(263, None, b"pcef;1;2"),
        diameter_avp(268, None, &2001u32.to_be_bytes()),
        diameter_avp(
            443,
            None,
            &[diameter_avp(450, None, &[0, 0, 0, 1]), diameter_avp(444, None, b"001010123456789")].concat(),
        ),
        diameter_avp(1001, Some(10415), &definition),
        diameter_avp(9999, Some(4242), b"opaque"),
    ]
    .concat();
    let mut message = vec![1, 0, 0, 0, 0x40, 0, 1, 16, 1, 0, 0, 0x16, 0, 0, 0, 1, 0, 0, 0, 2];
    message.extend_from_slice(&body);
    let len = message.len() as u32;
    message[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    let whole = DiameterMessage::parse(&message).expect("the message is well formed");
    let tree = diameter::avp_tree(&whole, Dictionary::builtin());
    assert!(tree.error.is_none() && tree.avps.len() == 5, "{tree:?}");
    for cut in 0..=message.len() {
        application_decoders(&message[..cut]);
    }
    let mut rng = Rng(0xd1a);
    for _ in 0..3000 {
        let mut bytes = message.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() as usize) % bytes.len();
            bytes[at] = rng.next() as u8;
        }
        application_decoders(&bytes);
    }
}

#[test]
fn damaged_hep_packets_never_panic() {
    let v3 = hep::Hep3Builder::new()
        .ip_family(10)
        .src_ip("2001:db8::1".parse().unwrap())
        .dst_ip("2001:db8::2".parse().unwrap())
        .src_port(5060)
        .dst_port(5060)
        .ts_sec(1)
        .ts_usec(2)
        .capture_id(3)
        .auth_key(b"key")
        .chunk(7, 7, b"vendor")
        .compressed_payload(&[0x78, 0x9c, 0x4b, 0x4c, 0x4a, 0x06, 0x00, 0x02, 0x4d, 0x01, 0x27])
        .build();
    let mut v2 = vec![2, 28, 2, 17, 0x13, 0xc4, 0x13, 0xc4, 10, 0, 0, 1, 10, 0, 0, 2];
    v2.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
    v2.extend_from_slice(b"SIP/2.0 200 OK\r\n\r\n");
    let mut rng = Rng(0x4e9);
    let mut decoded = 0;
    for packet in [v3, v2] {
        for len in 0..=packet.len() {
            hep_decoders(&packet[..len]);
        }
        for _ in 0..2000 {
            let mut bytes = packet.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % bytes.len();
                bytes[at] = rng.next() as u8;
            }
            hep_decoders(&bytes);
            decoded += 1;
        }
    }
    assert_eq!(decoded, 4000);
}

#[test]
fn damaged_tls_records_never_panic_and_a_cut_stream_keeps_its_whole_records() {
    // A ClientHello record, a CBC-sized record (IV, two blocks, no MAC room) and an AEAD-sized one.
    let mut hello = vec![1, 0, 0, 41, 3, 3];
    hello.extend_from_slice(&[0x11; 32]);
    hello.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    let record = |t: u8, body: &[u8]| [&[t, 3, 3][..], &(body.len() as u16).to_be_bytes(), body].concat();
    let parts = [record(22, &hello), record(23, &[0x5a; 48]), record(23, &[0xa5; 40])];
    let stream = parts.concat();
    let mut rng = Rng(0x715);
    for len in 0..=stream.len() {
        tls_decoders(&stream[..len]);
        let whole = parts.iter().scan(0, |end, p| {
            *end += p.len();
            Some(*end)
        });
        let expected = whole.filter(|&end| end <= len).count();
        assert_eq!(tls::records(&stream[..len]).filter(|r| r.is_ok()).count(), expected, "cut at {len}");
    }
    for _ in 0..3000 {
        let mut bytes = stream.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() as usize) % bytes.len();
            bytes[at] = rng.next() as u8;
        }
        tls_decoders(&bytes);
    }
}

/// SRTCP that libsrtp 2.5 protected (AES_CM_128_HMAC_SHA1_80, key 00 01 ... 1d, index 2):
/// an SR with one report block.
const LIBSRTP_SRTCP: &str = "81c8000c12345678f4e419a5fd796df58a21bb125ea2f3b9c7073c6c2bfad9893c14505adfc7ea788837c5d25c014663a026621480000002c2c8c542b9684996a136";

#[test]
fn damaged_srtcp_packets_never_panic_and_never_decrypt() {
    let packet: Vec<u8> = (0..LIBSRTP_SRTCP.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&LIBSRTP_SRTCP[i..i + 2], 16).unwrap())
        .collect();
    let key: Vec<u8> = (0..30).collect();
    let mut ctx = SrtcpContext::new(SrtpSuite::AesCm128HmacSha1_80, &key, None, 0).unwrap();
    let mut out = Vec::new();
    assert!(ctx.decrypt(&packet, &mut out).is_ok());
    // Every cut: truncated below 22 bytes, else a tag that no longer matches.
    for len in 0..packet.len() {
        let got = ctx.decrypt(&packet[..len], &mut out);
        let expected = if len < 22 { SrtpError::Truncated { len, needed: 22 } } else { SrtpError::Authentication };
        assert_eq!(got, Err(expected), "cut at {len}");
        srtcp_decoders(&packet[..len]);
    }
    // Every byte changed: nothing decrypts.
    let mut rng = Rng(0x5157);
    for at in 0..packet.len() {
        let mut bytes = packet.clone();
        bytes[at] ^= 1 + (rng.next() as u8 % 255);
        assert_eq!(ctx.decrypt(&bytes, &mut out), Err(SrtpError::Authentication), "byte {at}");
        assert_eq!(out, []);
        srtcp_decoders(&bytes);
    }
}
