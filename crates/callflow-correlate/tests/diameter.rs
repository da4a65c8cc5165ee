//! Diameter sessions: requests paired with answers over TCP and SCTP, subscriber identities, connection-level counts, the TLS port, bad input, and the real captures of the corpus.

mod common;
#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::{analyze, Analyzer, AnalyzerOptions};
use callflow_decode::capture::{CaptureReader, Frame};
use callflow_decode::diameter::Dictionary;
use callflow_decode::{LinkType, Timestamp};
use callflow_model::{CallState, Problem, Session, SessionKind, Stats, SubscriberKeyKind as K};
use packets::{ipv4, tcp, udp};
use std::sync::Arc;

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];
const V3GPP: Option<u32> = Some(10415);

fn avp(code: u32, vendor: Option<u32>, data: &[u8]) -> Vec<u8> {
    let header = if vendor.is_some() { 12 } else { 8 };
    let mut out = code.to_be_bytes().to_vec();
    out.push(if vendor.is_some() { 0xc0 } else { 0x40 });
    out.extend_from_slice(&((header + data.len()) as u32).to_be_bytes()[1..]);
    if let Some(v) = vendor {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out
}

fn u32avp(code: u32, vendor: Option<u32>, value: u32) -> Vec<u8> {
    avp(code, vendor, &value.to_be_bytes())
}

/// A message: request or answer, command, application, hop-by-hop id (the end-to-end id
/// is derived from it), AVPs.
fn message(request: bool, code: u32, app: u32, hbh: u32, avps: &[Vec<u8>]) -> Vec<u8> {
    let body = avps.concat();
    let mut out = vec![1];
    out.extend_from_slice(&((20 + body.len()) as u32).to_be_bytes()[1..]);
    out.push(if request { 0xc0 } else { 0x40 });
    out.extend_from_slice(&code.to_be_bytes()[1..]);
    out.extend_from_slice(&app.to_be_bytes());
    out.extend_from_slice(&hbh.to_be_bytes());
    out.extend_from_slice(&(hbh ^ 0xffff).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Feeds raw IPv4 packets to an analyzer, one every 10 ms, and finishes it.
fn run_with(opts: AnalyzerOptions, packets: &[Vec<u8>]) -> (Vec<Session>, Stats) {
    let mut analyzer = Analyzer::new(opts);
    for (i, p) in packets.iter().enumerate() {
        let ts = Timestamp::from_nanos(1_700_000_000_000_000_000 + i as i64 * 10_000_000);
        let frame = Frame {
            number: i as u64 + 1,
            ts,
            link_type: LinkType::IPV4,
            data: p,
            orig_len: p.len() as u32,
            interface: 0,
        };
        analyzer.process(&frame);
    }
    analyzer.finish()
}

fn run(packets: &[Vec<u8>]) -> (Vec<Session>, Stats) {
    run_with(AnalyzerOptions::default(), packets)
}

/// A TCP connection client:40000 <-> server:`port`, each direction's sequence counted.
struct Conn {
    port: u16,
    seq: [u32; 2],
}

impl Conn {
    fn new(port: u16) -> Conn {
        Conn { port, seq: [1000, 5000] }
    }

    fn send(&mut self, from_client: bool, payload: &[u8]) -> Vec<u8> {
        let i = usize::from(!from_client);
        let seq = self.seq[i];
        self.seq[i] = seq.wrapping_add(payload.len() as u32);
        let (src, dst, sport, dport) =
            if from_client { (CLIENT, SERVER, 40000, self.port) } else { (SERVER, CLIENT, self.port, 40000) };
        ipv4(src, dst, 6, 1, 0, &tcp(sport, dport, seq, 0x18, payload))
    }
}

/// An SCTP packet client:`sport` -> server:`dport` with one whole DATA chunk per
/// (PPID, payload).
fn sctp(sport: u16, dport: u16, chunks: &[(u32, &[u8])]) -> Vec<u8> {
    sctp_between((CLIENT, sport), (SERVER, dport), chunks)
}

fn sctp_between((src, sport): ([u8; 4], u16), (dst, dport): ([u8; 4], u16), chunks: &[(u32, &[u8])]) -> Vec<u8> {
    let mut out = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
    out.extend_from_slice(&[0; 8]);
    for (i, (ppid, payload)) in chunks.iter().enumerate() {
        out.extend_from_slice(&[0, 0x03]);
        out.extend_from_slice(&((16 + payload.len()) as u16).to_be_bytes());
        out.extend_from_slice(&(i as u32 + 1).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, i as u8]);
        out.extend_from_slice(&ppid.to_be_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    ipv4(src, dst, 132, 1, 0, &out)
}

fn summaries(s: &Session) -> Vec<&str> {
    s.messages.iter().map(|m| m.summary.as_str()).collect()
}

fn keys(s: &Session) -> Vec<(K, &str)> {
    s.subscriber_keys.iter().map(|k| (k.kind, k.value.as_str())).collect()
}

fn diameter_sessions(sessions: &[Session]) -> Vec<&Session> {
    sessions.iter().filter(|s| s.kind == SessionKind::Diameter).collect()
}

#[test]
fn a_gx_session_over_tcp_pairs_requests_with_answers_and_carries_the_subscriber() {
    const GX: u32 = 16_777_238;
    let sid = avp(263, None, b"pcef.example;1;42");
    let subscription =
        |kind: u32, data: &[u8]| avp(443, None, &[u32avp(450, None, kind), avp(444, None, data)].concat());
    let ccr_i = message(
        true,
        272,
        GX,
        1,
        &[
            sid.clone(),
            avp(264, None, b"pcef.example"),
            avp(296, None, b"example"),
            avp(283, None, b"pcrf.example"),
            u32avp(416, None, 1),
            subscription(1, b"001010123456789"),
            subscription(0, b"+33612345678"),
            avp(8, None, &[10, 45, 0, 2]),
        ],
    );
    let rule = avp(
        1001,
        V3GPP,
        &avp(1003, V3GPP, &[avp(1005, V3GPP, b"volte-voice"), avp(1016, V3GPP, &u32avp(1028, V3GPP, 1))].concat()),
    );
    let cca_i = message(
        false,
        272,
        GX,
        1,
        &[sid.clone(), avp(264, None, b"pcrf.example"), u32avp(268, None, 2001), u32avp(416, None, 1), rule],
    );
    let ccr_t = message(true, 272, GX, 2, &[sid.clone(), u32avp(416, None, 3)]);
    let cca_t = message(false, 272, GX, 2, &[sid.clone(), u32avp(268, None, 2001), u32avp(416, None, 3)]);
    let dwr = message(true, 280, 0, 3, &[avp(264, None, b"pcef.example")]);
    let dwa = message(false, 280, 0, 3, &[u32avp(268, None, 2001), avp(264, None, b"pcrf.example")]);
    let mut c = Conn::new(3868);
    let packets = vec![
        c.send(true, &ccr_i),
        c.send(false, &cca_i),
        // Two messages in one segment, and one cut over two segments.
        c.send(true, &[ccr_t, dwr].concat()),
        c.send(false, &cca_t[..10]),
        c.send(false, &[&cca_t[10..], &dwa[..]].concat()),
    ];
    let (sessions, stats) = run(&packets);
    let dia = diameter_sessions(&sessions);
    assert_eq!(dia.len(), 1, "{sessions:#?}");
    let s = dia[0];
    assert_eq!(summaries(s), ["CCR-I (Gx)", "CCA-I 2001 (Gx)", "CCR-T (Gx)", "CCA-T 2001 (Gx)"]);
    assert_eq!(s.messages.iter().map(|m| m.frame).collect::<Vec<_>>(), [1, 2, 3, 5]);
    assert_eq!(s.state, CallState::Completed);
    assert!(s.problems.is_empty() && s.anomalies.is_empty(), "{:?}", s.anomalies);
    assert_eq!((s.from.as_str(), s.to.as_str()), ("pcef.example", "pcrf.example"));
    assert_eq!(
        keys(s),
        [
            (K::DiameterSessionId, "pcef.example;1;42"),
            (K::Imsi, "001010123456789"),
            (K::Msisdn, "33612345678"),
            (K::UeAddress, "10.45.0.2"),
        ]
    );
    let d = s.diameter.as_ref().unwrap();
    assert_eq!((d.application.as_str(), d.application_id, d.session_id.as_str()), ("Gx", GX, "pcef.example;1;42"));
    assert_eq!(d.destination_realm.as_deref(), Some("pcrf.example"));
    let pairs: Vec<_> =
        d.transactions.iter().map(|t| (t.command.as_str(), t.request_frame, t.answer_frame, t.result_code)).collect();
    assert_eq!(pairs, [("CCR-I", Some(1), Some(2), Some(2001)), ("CCR-T", Some(3), Some(5), Some(2001))]);
    assert_eq!(d.transactions[0].response_time_ms, Some(10.0));
    assert_eq!(d.transactions[0].result.as_deref(), Some("DIAMETER_SUCCESS"));
    assert_eq!(d.charging_rules.len(), 1);
    assert_eq!(
        (d.charging_rules[0].names.as_slice(), d.charging_rules[0].qci),
        (&["volte-voice".to_string()][..], Some(1))
    );
    // The message's detail: the AVP tree with names and values.
    let m = s.messages[1].diameter.as_ref().unwrap();
    assert_eq!((m.command.as_str(), m.flags.as_str(), m.result_code), ("Credit-Control", "-P--", Some(2001)));
    let result = m.avps.iter().find(|a| a.code == 268).unwrap();
    assert_eq!(result.value.as_deref(), Some("DIAMETER_SUCCESS (2001)"));
    let install = m.avps.iter().find(|a| a.code == 1001).unwrap();
    assert_eq!(install.name.as_deref(), Some("Charging-Rule-Install"));
    assert_eq!(install.avps[0].avps[1].avps[0].value.as_deref(), Some("QCI_1 (1)"));
    // The watchdog is counted against the peers, not made a session.
    assert_eq!(stats.diameter_peers.len(), 1);
    let peers = &stats.diameter_peers[0];
    assert_eq!((peers.pairs, peers.unanswered, peers.encrypted), (1, 0, false));
    assert_eq!(peers.messages.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), [("DWA", 1), ("DWR", 1)]);
    assert_eq!(peers.hosts, ["pcef.example", "pcrf.example"]);
    assert_eq!(stats.malformed, 0);
    assert_eq!(stats.by_protocol["diameter"].packets, 5);
}

#[test]
fn unanswered_requests_and_error_results_are_flagged() {
    const RX: u32 = 16_777_236;
    const S6A: u32 = 16_777_251;
    let aar = message(
        true,
        265,
        RX,
        7,
        &[avp(263, None, b"pcscf;7"), avp(505, V3GPP, b"icid-0001"), avp(601, V3GPP, b"sip:+33612345678@ims.example")],
    );
    let ulr =
        message(true, 316, S6A, 8, &[avp(263, None, b"mme;8"), avp(1, None, b"001010000000001"), u32avp(277, None, 1)]);
    let ula = message(
        false,
        316,
        S6A,
        8,
        &[avp(263, None, b"mme;8"), avp(297, None, &[u32avp(266, None, 10415), u32avp(298, None, 5001)].concat())],
    );
    let mut c = Conn::new(3868);
    let (sessions, stats) = run(&[c.send(true, &aar), c.send(true, &ulr), c.send(false, &ula)]);
    // Counted with every kind's problems.
    assert_eq!(stats.problems.by_kind.get("unanswered_request"), Some(&1), "{:?}", stats.problems);
    let dia = diameter_sessions(&sessions);
    assert_eq!(dia.len(), 2);
    let (rx, s6a) = (dia[0], dia[1]);
    assert_eq!(summaries(rx), ["AAR (Rx)"]);
    assert_eq!(rx.state, CallState::CallSetup);
    assert_eq!(rx.problems, [Problem::UnansweredRequest]);
    assert_eq!(rx.anomalies, ["unanswered_request: AAR in frame 1 got no answer"]);
    assert_eq!(
        keys(rx),
        [(K::DiameterSessionId, "pcscf;7"), (K::Icid, "icid-0001"), (K::Impu, "sip:+33612345678@ims.example")]
    );
    assert_eq!(summaries(s6a), ["ULR (S6a)", "ULA 5001 (S6a)"]);
    assert_eq!(s6a.state, CallState::Rejected);
    assert_eq!(s6a.anomalies, ["error result: ULA 5001 (S6a) in frame 3"]);
    assert_eq!(keys(s6a), [(K::DiameterSessionId, "mme;8"), (K::Imsi, "001010000000001")]);
    let t = &s6a.diameter.as_ref().unwrap().transactions[0];
    assert_eq!((t.experimental_result_code, t.result.as_deref()), (Some(5001), Some("DIAMETER_ERROR_USER_UNKNOWN")));
}

#[test]
fn diameter_on_the_tls_port_is_counted_as_encrypted() {
    // A TLS ClientHello record header and a few bytes, each way, on port 5868.
    let hello = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00];
    let mut c = Conn::new(5868);
    let (sessions, stats) = run(&[c.send(true, &hello), c.send(false, &hello)]);
    assert!(diameter_sessions(&sessions).is_empty());
    assert_eq!(stats.diameter_peers.len(), 1);
    let p = &stats.diameter_peers[0];
    assert_eq!((p.encrypted, p.packets, p.pairs), (true, 2, 0));
    assert_eq!(p.bytes, 2 * (20 + 20 + hello.len() as u64));
    // DTLS over SCTP (PPID 47): a packet with two DATA chunks is one encrypted packet.
    let (sessions, stats) = run(&[sctp(9000, 9001, &[(47, &hello[..]), (47, &hello[..])])]);
    assert!(diameter_sessions(&sessions).is_empty());
    let p = &stats.diameter_peers[0];
    assert_eq!((p.encrypted, p.packets), (true, 1));
    // Plain Diameter on the TLS port is read, not guessed to be encrypted.
    let mut c = Conn::new(5868);
    let (_, stats) =
        run(&[c.send(true, &message(true, 280, 0, 1, &[])), c.send(false, &message(false, 280, 0, 1, &[]))]);
    let p = &stats.diameter_peers[0];
    assert_eq!((p.encrypted, p.pairs), (false, 1));
}

#[test]
fn bad_input_is_counted_as_malformed_and_the_stream_goes_on() {
    let mut huge = message(true, 272, 4, 1, &[]);
    huge[1..4].copy_from_slice(&20_000_000u32.to_be_bytes()[1..]);
    // An AVP whose length runs past the message, after the Session-Id.
    let mut lying = message(true, 272, 4, 2, &[avp(263, None, b"gy;2"), avp(1, None, b"abcd")]);
    let at = lying.len() - 12 + 5;
    lying[at..at + 3].copy_from_slice(&[0, 0, 200]);
    // Failed-AVP (Grouped) nested far deeper than the limit.
    let mut deep = avp(263, None, b"x");
    for _ in 0..40 {
        deep = avp(279, None, &deep);
    }
    let deep = message(true, 272, 4, 3, &[avp(263, None, b"gy;3"), deep]);
    let dwr = message(true, 280, 0, 4, &[]);
    let mut c = Conn::new(3868);
    let packets = vec![c.send(true, &huge), c.send(true, &lying), c.send(true, &deep), c.send(true, &dwr)];
    let (sessions, stats) = run(&packets);
    assert_eq!(stats.malformed, 3, "the 20 MB header, the lying AVP length, the nesting");
    let dia = diameter_sessions(&sessions);
    let ids: Vec<&str> = dia.iter().map(|s| s.diameter.as_ref().unwrap().session_id.as_str()).collect();
    assert_eq!(ids, ["gy;2", "gy;3"], "messages with bad AVPs keep what decoded");
    assert!(
        dia[0].anomalies[0].starts_with("malformed AVPs in frame 2: diameter: truncated at offset 32"),
        "{:?}",
        dia[0].anomalies
    );
    assert!(dia[1].anomalies[0].contains("nested deeper than the limit"), "{:?}", dia[1].anomalies);
    // The watchdog after them was still found.
    assert_eq!(stats.diameter_peers[0].messages.get("DWR"), Some(&1));
    // Diameter over UDP does not exist (RFC 6733): a datagram on port 3868 is not Diameter.
    let (sessions, stats) =
        run(&[ipv4(CLIENT, SERVER, 17, 1, 0, &udp(40000, 3868, &message(true, 272, 4, 9, &[avp(263, None, b"u")])))]);
    assert!(diameter_sessions(&sessions).is_empty() && stats.diameter_peers.is_empty());
}

#[test]
fn an_extension_dictionary_names_what_the_built_in_one_does_not() {
    let private = message(true, 272, 4, 1, &[avp(263, None, b"gy;1"), avp(7777, Some(4242), b"hello")]);
    let mut c = Conn::new(3868);
    let packets = [c.send(true, &private)];
    let detail = |sessions: &[Session]| sessions[0].messages[0].diameter.as_ref().unwrap().avps[1].clone();
    // Unknown: kept by code and vendor, with its data in hex.
    let unknown = detail(&run(&packets).0);
    assert_eq!(
        (unknown.code, unknown.vendor, unknown.name, unknown.hex.as_deref()),
        (7777, Some(4242), None, Some("68656c6c6f"))
    );
    let mut dict = Dictionary::builtin().clone();
    dict.extend_from_str(
        "[[avp]]\ncode = 7777\nvendor = 4242\nname = \"Greeting\"\ntype = \"UTF8String\"\n",
        "ext.toml",
    )
    .unwrap();
    let opts = AnalyzerOptions { diameter_dictionary: Some(Arc::new(dict)), ..AnalyzerOptions::default() };
    let known = detail(&run_with(opts, &packets).0);
    assert_eq!((known.name.as_deref(), known.value.as_deref(), known.hex), (Some("Greeting"), Some("hello"), None));
}

fn corpus_doc(name: &str) -> Option<callflow_model::Document> {
    let corpus = common::corpus_dir()?;
    let path = corpus.join("public").join(name);
    let mut reader = CaptureReader::open(&path).expect("the capture opens");
    Some(analyze(&mut reader, name, AnalyzerOptions::default(), None).expect("analyze"))
}

#[test]
fn real_gy_over_tcp() {
    let Some(doc) = corpus_doc("ndpi/diameter.pcap") else { return };
    let dia = diameter_sessions(&doc.sessions);
    assert_eq!(dia.len(), 1);
    assert_eq!(dia[0].diameter.as_ref().unwrap().session_id, "nxl;api;1263278878147");
    assert_eq!(
        summaries(dia[0]),
        ["CCR-I (Gy)", "CCA-I 2001 (Gy)", "CCR-U (Gy)", "CCA-U 2001 (Gy)", "CCR-T (Gy)", "CCA-T 2001 (Gy)"]
    );
    assert_eq!(dia[0].state, CallState::Completed);
}

#[test]
fn real_s6a_over_sctp_and_cx_over_tcp() {
    let Some(doc) = corpus_doc("diafuzzer/S6a.pcap") else { return };
    let dia = diameter_sessions(&doc.sessions);
    assert_eq!(dia.len(), 1);
    assert_eq!(summaries(dia[0]), ["AIR (S6a)", "AIA 2001 (S6a)"]);
    assert!(keys(dia[0]).contains(&(K::Imsi, "312420000021337")), "{:?}", keys(dia[0]));
    let Some(doc) = corpus_doc("diafuzzer/Cx.pcap") else { return };
    let dia = diameter_sessions(&doc.sessions);
    assert_eq!(dia.len(), 7);
    assert_eq!(summaries(dia[0]), ["UAR (Cx)", "UAA 2001 (Cx)"]);
    assert!(dia[0].subscriber_keys.iter().any(|k| k.kind == K::Impi), "{:?}", keys(dia[0]));
    assert!(dia[0].subscriber_keys.iter().any(|k| k.kind == K::Impu), "{:?}", keys(dia[0]));
    let Some(doc) = corpus_doc("diafuzzer/S6a_perso.pcap") else { return };
    assert!(diameter_sessions(&doc.sessions).is_empty());
    let p = &doc.stats.diameter_peers;
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].pairs, p[0].messages.values().sum::<u64>()), (2, 4));
}

#[test]
fn answers_without_their_request_type_and_stateless_applications() {
    // Arkime's synthetic capture: a Gx CCA without CC-Request-Type (its CCR-I says it), an
    // S6a ULR/ULA without Auth-Session-State and with an NAI User-Name, an accounting
    // exchange; TCP and SCTP.
    let Some(doc) = corpus_doc("arkime/diameter_synthetic.pcap") else { return };
    let dia = diameter_sessions(&doc.sessions);
    let got: Vec<(Vec<&str>, CallState)> = dia.iter().map(|s| (summaries(s), s.state)).collect();
    assert_eq!(
        got,
        [
            (vec!["CCR-I (Gx)", "CCA-I 2001 (Gx)"], CallState::InCall),
            (vec!["ULR (S6a)", "ULA 2001 (S6a)"], CallState::Completed),
            (vec!["ACR (Acct)", "ACA 2001 (Acct)"], CallState::Completed),
        ]
    );
    assert!(keys(dia[1]).contains(&(K::Imsi, "310260123456789")), "{:?}", keys(dia[1]));
    let p = &doc.stats.diameter_peers;
    assert_eq!((p.len(), p[0].pairs, p[0].hosts.len()), (1, 1, 2), "{p:?}");
}

#[test]
fn over_sctp_an_answer_from_another_address_of_the_peer_is_paired() {
    // PPID 46 on ports that are not Diameter's; the answer leaves from the server's second
    // address (a multi-homed association).
    let ulr = message(true, 316, 16_777_251, 5, &[avp(263, None, b"mme;5"), avp(1, None, b"001010000000005")]);
    let ula = message(false, 316, 16_777_251, 5, &[avp(263, None, b"mme;5"), u32avp(268, None, 2001)]);
    let (sessions, stats) = run(&[
        sctp(36412, 36413, &[(46, &ulr[..])]),
        sctp_between(([10, 0, 0, 3], 36413), (CLIENT, 36412), &[(46, &ula[..])]),
    ]);
    let dia = diameter_sessions(&sessions);
    assert_eq!(summaries(dia[0]), ["ULR (S6a)", "ULA 2001 (S6a)"]);
    let t = &dia[0].diameter.as_ref().unwrap().transactions[0];
    assert_eq!((t.request_frame, t.answer_frame, dia[0].state), (Some(1), Some(2), CallState::Completed));
    assert_eq!(stats.by_protocol["diameter"].packets, 2);
}
