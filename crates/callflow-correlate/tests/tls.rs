//! SIP over TLS read with a key log, end to end: real TLS sessions made here (rustls in this binary), their bytes laid in TCP segments of a capture, decrypted by the analysis and by tshark, message for message.
//!
//! Each case runs a rustls client and server in memory with one cipher suite, exchanges
//! SIP messages through them (a KeyUpdate between two when asked), and writes the TLS
//! bytes each side sent as the TCP segments of one connection (pcap-file, pnet_packet).
//! The analysis, given the client's key log, must find exactly the SIP messages sent, in
//! order, with transport `tls` (or `wss`); tshark with the same key log must find the
//! same. Without the key, with a wrong one, or with a record the capture lost, no wrong
//! SIP comes out and the connection is a `tls` session saying why.

// Only the oracle-tool helper of the shared module.
#[allow(dead_code)]
mod common;
#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_decode::tls::keylog::{KeyLog, SharedKeyLog};
use callflow_model::{Document, SessionKind, TlsReason, Transport};
use packets::{ipv4, tcp, udp};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;
use rustls::crypto::ring::{cipher_suite as cs, default_provider};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, SupportedCipherSuite};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key log rustls writes (the client's; the server logs the same secrets).
#[derive(Debug, Default)]
struct Log(Mutex<String>);

impl rustls::KeyLog for Log {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        self.0.lock().unwrap().push_str(&line);
    }
}

/// TLS bytes as they went over the wire: (sent by the client?, bytes), in order.
type Flights = Vec<(bool, Vec<u8>)>;

/// What happens on one connection.
#[derive(Clone, Copy)]
enum Step<'a> {
    /// A SIP message (or any bytes) from the client (true) or the server.
    Send(bool, &'a [u8]),
    /// The client (true) or server refreshes its traffic keys (TLS 1.3 KeyUpdate).
    KeyUpdate(bool),
}

struct Peers {
    client: ClientConfig,
    server: Arc<ServerConfig>,
    log: Arc<Log>,
}

fn peers(suite: SupportedCipherSuite, tls13: bool) -> Peers {
    let key = rcgen::generate_simple_self_signed(vec!["sip.example.com".to_string()]).unwrap();
    let mut provider = default_provider();
    provider.cipher_suites = vec![suite];
    let provider = Arc::new(provider);
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls13 { &[&rustls::version::TLS13] } else { &[&rustls::version::TLS12] };
    let der = key.cert.der().clone();
    let private = PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], private)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let log = Arc::new(Log::default());
    client.key_log = log.clone();
    Peers { client, server: Arc::new(server), log }
}

/// Moves whatever either side has to send to the other until both are quiet.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection, flights: &mut Flights) {
    loop {
        let mut moved = false;
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut &buf[..]).unwrap();
            server.process_new_packets().unwrap();
            flights.push((true, buf));
            moved = true;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut &buf[..]).unwrap();
            client.process_new_packets().unwrap();
            flights.push((false, buf));
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// Runs one connection of `peers` through `steps`; returns its flights and what each side
/// read (client's, server's).
fn connect(peers: &Peers, steps: &[Step<'_>]) -> (Flights, Vec<u8>, Vec<u8>) {
    let name = ServerName::try_from("sip.example.com").unwrap();
    let mut client = ClientConnection::new(Arc::new(peers.client.clone()), name).unwrap();
    let mut server = ServerConnection::new(peers.server.clone()).unwrap();
    let mut flights = Flights::new();
    pump(&mut client, &mut server, &mut flights);
    assert!(!client.is_handshaking() && !server.is_handshaking());
    let (mut client_read, mut server_read) = (Vec::new(), Vec::new());
    for step in steps {
        match *step {
            Step::Send(true, bytes) => client.writer().write_all(bytes).unwrap(),
            Step::Send(false, bytes) => server.writer().write_all(bytes).unwrap(),
            Step::KeyUpdate(true) => client.refresh_traffic_keys().unwrap(),
            Step::KeyUpdate(false) => server.refresh_traffic_keys().unwrap(),
        }
        pump(&mut client, &mut server, &mut flights);
        let _ = client.reader().read_to_end(&mut client_read);
        let _ = server.reader().read_to_end(&mut server_read);
    }
    (flights, client_read, server_read)
}

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

/// Writes `flights` as one TCP connection CLIENT:40000 -> SERVER:`port` (handshake, then
/// each flight in segments of at most 1000 bytes, 10 ms apart) to a pcap at `path`.
/// `drop_segment` leaves one data segment out, as a capture that lost it.
fn write_pcap(path: &Path, port: u16, connections: &[&Flights], drop_segment: Option<usize>) {
    let header = PcapHeader { datalink: DataLink::RAW, ..PcapHeader::default() };
    let mut writer = PcapWriter::with_header(std::fs::File::create(path).unwrap(), header).unwrap();
    let mut t = Duration::from_secs(1_700_000_000);
    let mut data_segments = 0;
    for (n, flights) in connections.iter().enumerate() {
        let client_port = 40000 + n as u16;
        let (mut cseq, mut sseq) = (1000u32 + n as u32 * 100_000, 5000u32);
        let mut frame = |from_client: bool, seq: u32, flags: u8, payload: &[u8], t: &mut Duration| {
            *t += Duration::from_millis(10);
            let (src, dst, sp, dp) =
                if from_client { (CLIENT, SERVER, client_port, port) } else { (SERVER, CLIENT, port, client_port) };
            let packet = ipv4(src, dst, 6, 0, 0x4000, &tcp(sp, dp, seq, flags, payload));
            writer.write_packet(&PcapPacket::new(*t, packet.len() as u32, &packet)).unwrap();
        };
        frame(true, cseq, SYN, b"", &mut t);
        frame(false, sseq, SYN | ACK, b"", &mut t);
        cseq += 1;
        sseq += 1;
        frame(true, cseq, ACK, b"", &mut t);
        for (from_client, bytes) in flights.iter() {
            for chunk in bytes.chunks(1000) {
                let seq = if *from_client { &mut cseq } else { &mut sseq };
                if Some(data_segments) != drop_segment {
                    frame(*from_client, *seq, PSH_ACK, chunk, &mut t);
                }
                data_segments += 1;
                *seq = seq.wrapping_add(chunk.len() as u32);
            }
        }
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callflow-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn analyse(path: &Path, keylog: &str) -> Document {
    let (log, _) = KeyLog::parse(keylog.as_bytes());
    let opts = AnalyzerOptions { tls_keys: SharedKeyLog::new(log), ..AnalyzerOptions::default() };
    let mut reader = CaptureReader::open(path).unwrap();
    analyze(&mut reader, &path.display().to_string(), opts, None).unwrap()
}

/// The SIP messages found, in frame order: (transport, method or status).
fn sip_messages(doc: &Document) -> Vec<(Transport, String)> {
    let mut out: Vec<_> = doc
        .sessions
        .iter()
        .flat_map(|s| &s.messages)
        .map(|m| (m.frame, m.transport, m.method.clone().unwrap_or_else(|| m.status.unwrap_or(0).to_string())))
        .collect();
    out.sort_by_key(|m| m.0);
    out.into_iter().map(|(_, t, m)| (t, m)).collect()
}

/// What tshark decrypts with the key log: SIP methods and statuses, in frame order.
fn tshark_sip(path: &Path, keylog: &str, port: u16) -> Option<Vec<String>> {
    if !common::have_tool("tshark") {
        return None;
    }
    let log = path.with_extension("keys");
    std::fs::write(&log, keylog).unwrap();
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-o", &format!("tls.keylog_file:{}", log.display())])
        .args(["-o", &format!("sip.tls.port:{port}")])
        .args(["-Y", "sip", "-T", "fields", "-E", "occurrence=a", "-e", "sip.Method", "-e", "sip.Status-Code"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    // One line per frame; a frame may carry several messages (comma-separated per field).
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .flat_map(|line| {
                let (methods, statuses) = line.split_once('\t').unwrap_or((line, ""));
                methods
                    .split(',')
                    .chain(statuses.split(','))
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect(),
    )
}

fn sip(method_line: &str, cseq: &str, call: &str) -> Vec<u8> {
    format!(
        "{method_line}\r\nVia: SIP/2.0/TLS 10.0.0.1:40000;branch=z9hG4bK-{cseq}\r\nFrom: <sips:alice@example.com>;tag=a1\r\n\
         To: <sips:bob@example.com>\r\nCall-ID: {call}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A call's messages, who sends each in turn (client?, index), and their methods/statuses.
type Call = (Vec<Vec<u8>>, Vec<(bool, usize)>, Vec<&'static str>);

/// A call: INVITE, 100, 180, 200, ACK, BYE, 200.
fn call(call_id: &str) -> Call {
    let messages = vec![
        sip("INVITE sips:bob@example.com SIP/2.0", "1 INVITE", call_id),
        sip("SIP/2.0 100 Trying", "1 INVITE", call_id),
        sip("SIP/2.0 180 Ringing", "1 INVITE", call_id),
        sip("SIP/2.0 200 OK", "1 INVITE", call_id),
        sip("ACK sips:bob@example.com SIP/2.0", "1 ACK", call_id),
        sip("BYE sips:bob@example.com SIP/2.0", "2 BYE", call_id),
        sip("SIP/2.0 200 OK", "2 BYE", call_id),
    ];
    let order = vec![(true, 0), (false, 1), (false, 2), (false, 3), (true, 4), (true, 5), (false, 6)];
    (messages, order, vec!["INVITE", "100", "180", "200", "ACK", "BYE", "200"])
}

fn steps<'a>(messages: &'a [Vec<u8>], order: &[(bool, usize)], key_update: bool) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    for (i, &(from_client, m)) in order.iter().enumerate() {
        if key_update && i == 3 {
            steps.push(Step::KeyUpdate(true));
            steps.push(Step::KeyUpdate(false));
        }
        steps.push(Step::Send(from_client, &messages[m]));
    }
    steps
}

/// One suite end to end: our messages equal what was sent and what tshark finds.
fn check_suite(name: &str, suite: SupportedCipherSuite, tls13: bool, key_update: bool) {
    let peers = peers(suite, tls13);
    let (messages, order, expected) = call(&format!("{name}@example.com"));
    let (flights, client_read, server_read) = connect(&peers, &steps(&messages, &order, key_update));
    // The peers themselves read what was sent.
    let to_server: Vec<u8> = order.iter().filter(|o| o.0).flat_map(|o| messages[o.1].clone()).collect();
    assert_eq!(server_read, to_server);
    assert!(!client_read.is_empty());
    let path = temp(&format!("{name}.pcap"));
    write_pcap(&path, 5061, &[&flights], None);
    let keylog = peers.log.0.lock().unwrap().clone();
    let doc = analyse(&path, &keylog);
    let ours = sip_messages(&doc);
    let want: Vec<_> = expected.iter().map(|m| (Transport::Tls, m.to_string())).collect();
    assert_eq!(ours, want, "{name}");
    assert!(doc.sessions.iter().all(|s| s.kind != SessionKind::Tls), "{name}: {:?}", doc.sessions);
    if let Some(theirs) = tshark_sip(&path, &keylog, 5061) {
        let ours: Vec<String> = ours.into_iter().map(|m| m.1).collect();
        assert_eq!(ours, theirs, "{name}: ours and tshark's");
    }
}

#[test]
fn tls13_aes_128_gcm_with_key_updates() {
    check_suite("tls13-aes128gcm", cs::TLS13_AES_128_GCM_SHA256, true, true);
}

#[test]
fn tls13_aes_256_gcm() {
    check_suite("tls13-aes256gcm", cs::TLS13_AES_256_GCM_SHA384, true, false);
}

#[test]
fn tls13_chacha20_poly1305_with_key_updates() {
    check_suite("tls13-chacha", cs::TLS13_CHACHA20_POLY1305_SHA256, true, true);
}

#[test]
fn tls12_ecdhe_aes_128_gcm() {
    check_suite("tls12-aes128gcm", cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false, false);
}

#[test]
fn tls12_ecdhe_aes_256_gcm() {
    check_suite("tls12-aes256gcm", cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, false, false);
}

#[test]
fn tls12_ecdhe_chacha20_poly1305() {
    check_suite("tls12-chacha", cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, false, false);
}

/// A `tls` session as the tests compare it: reason, SNI, version, suite.
type TlsSummary = (Option<TlsReason>, Option<String>, Option<String>, Option<String>);

/// The `tls` sessions of a document.
fn tls_sessions(doc: &Document) -> Vec<TlsSummary> {
    doc.sessions
        .iter()
        .filter(|s| s.kind == SessionKind::Tls)
        .filter_map(|s| s.tls.as_ref())
        .map(|t| (t.reason, t.sni.clone(), t.version.clone(), t.cipher_suite.clone()))
        .collect()
}

/// A TLS 1.3 call's capture, its key log and the expected messages.
fn tls13_call(name: &str, drop_segment: Option<usize>) -> (PathBuf, String) {
    let peers = peers(cs::TLS13_AES_128_GCM_SHA256, true);
    let (messages, order, _) = call(&format!("{name}@example.com"));
    let (flights, _, _) = connect(&peers, &steps(&messages, &order, false));
    let path = temp(&format!("{name}.pcap"));
    write_pcap(&path, 5061, &[&flights], drop_segment);
    let keylog = peers.log.0.lock().unwrap().clone();
    (path, keylog)
}

#[test]
fn without_the_key_a_connection_is_a_tls_session_saying_so() {
    let (path, _) = tls13_call("nokey", None);
    let doc = analyse(&path, "");
    assert_eq!(sip_messages(&doc), []);
    let tls13 = (Some("sip.example.com".to_string()), Some("TLS 1.3".to_string()));
    assert_eq!(
        tls_sessions(&doc),
        [(Some(TlsReason::NoKey), tls13.0, tls13.1, Some("TLS_AES_128_GCM_SHA256".to_string()))]
    );
    let tls = doc.sessions[0].tls.as_ref().unwrap();
    assert_eq!((tls.decrypted_records, doc.sessions[0].participants.len()), (0, 2));
    assert!(tls.records >= 8, "{tls:?}");
}

#[test]
fn a_wrong_key_yields_no_sip_and_says_decryption_failed() {
    let (path, keylog) = tls13_call("wrongkey", None);
    // Every secret's first byte changed: the client random still matches.
    let wrong: String = keylog
        .lines()
        .map(|line| {
            let (head, secret) = line.rsplit_once(' ').unwrap();
            let flipped = if secret.starts_with('0') { "1" } else { "0" };
            format!("{head} {flipped}{}\n", &secret[1..])
        })
        .collect();
    let doc = analyse(&path, &wrong);
    assert_eq!(sip_messages(&doc), []);
    assert_eq!(tls_sessions(&doc)[0].0, Some(TlsReason::DecryptionFailed));
}

#[test]
fn a_record_the_capture_lost_stops_decryption_without_wrong_sip() {
    // Each SIP message is one segment, the last five 180, 200, ACK, BYE, 200: the 180's
    // record is lost.
    let (path, keylog) = tls13_call("lost", None);
    let full = analyse(&path, &keylog);
    assert_eq!(sip_messages(&full).len(), 7);
    let segments = {
        let mut reader = CaptureReader::open(&path).unwrap();
        let mut n = 0;
        while let Some(f) = reader.next_frame().unwrap() {
            n += usize::from(f.data.len() > 40);
        }
        n
    };
    let (path, keylog) = tls13_call("lost2", Some(segments - 5));
    let doc = analyse(&path, &keylog);
    let got: Vec<String> = sip_messages(&doc).into_iter().map(|m| m.1).collect();
    // The server's records after the lost one wait behind the hole; the client's go on.
    assert_eq!(got, ["INVITE", "100", "ACK", "BYE"]);
    if let Some(theirs) = tshark_sip(&path, &keylog, 5061) {
        assert_eq!(got, theirs, "ours and tshark's");
    }
}

#[test]
fn sip_over_tls_on_any_port_and_the_secrets_inside_the_capture() {
    let peers = peers(cs::TLS13_AES_256_GCM_SHA384, true);
    let (messages, order, expected) = call("anyport@example.com");
    let (flights, _, _) = connect(&peers, &steps(&messages, &order, false));
    let path = temp("anyport.pcap");
    write_pcap(&path, 15061, &[&flights], None);
    let keylog = peers.log.0.lock().unwrap().clone();
    let want: Vec<_> = expected.iter().map(|m| (Transport::Tls, m.to_string())).collect();
    assert_eq!(sip_messages(&analyse(&path, &keylog)), want);
    // The key log injected into the capture as a pcapng Decryption Secrets Block (as
    // editcap writes it): read without any key log given.
    if common::have_tool("editcap") {
        let keys = path.with_extension("keys");
        std::fs::write(&keys, &keylog).unwrap();
        let with_secrets = path.with_extension("pcapng");
        let status = std::process::Command::new("editcap")
            .arg("--inject-secrets")
            .arg(format!("tls,{}", keys.display()))
            .arg(&path)
            .arg(&with_secrets)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(sip_messages(&analyse(&with_secrets, "")), want);
    }
}

/// A WebSocket frame (RFC 6455) carrying `payload` as text, masked when from the client.
fn ws_frame(payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![0x81];
    let mask = [0x12, 0x34, 0x56, 0x78];
    let m = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if masked {
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

#[test]
fn sip_over_secure_websocket() {
    let peers = peers(cs::TLS13_CHACHA20_POLY1305_SHA256, true);
    let (messages, order, expected) = call("wss@example.com");
    let upgrade = b"GET / HTTP/1.1\r\nHost: sip.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: sip\r\n\r\n";
    let frames: Vec<Vec<u8>> = order.iter().map(|&(c, m)| ws_frame(&messages[m], c)).collect();
    let mut all = vec![Step::Send(true, upgrade), Step::Send(false, switching)];
    all.extend(order.iter().zip(&frames).map(|(&(c, _), f)| Step::Send(c, f)));
    let (flights, _, _) = connect(&peers, &all);
    let path = temp("wss.pcap");
    write_pcap(&path, 443, &[&flights], None);
    let keylog = peers.log.0.lock().unwrap().clone();
    let want: Vec<_> = expected.iter().map(|m| (Transport::Wss, m.to_string())).collect();
    let doc = analyse(&path, &keylog);
    assert_eq!(sip_messages(&doc), want);
    assert_eq!(tls_sessions(&doc), []);
}

#[test]
fn resumed_sessions_are_read_with_their_own_secrets() {
    for (name, suite, tls13) in [
        ("resume13", cs::TLS13_AES_128_GCM_SHA256, true),
        ("resume12", cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false),
    ] {
        let peers = peers(suite, tls13);
        let (m1, order, expected) = call(&format!("{name}-1@example.com"));
        let (m2, _, _) = call(&format!("{name}-2@example.com"));
        // The same client config keeps the session, so the second connection resumes it.
        let (first, _, _) = connect(&peers, &steps(&m1, &order, false));
        let (second, _, _) = connect(&peers, &steps(&m2, &order, false));
        let path = temp(&format!("{name}.pcap"));
        write_pcap(&path, 5061, &[&first, &second], None);
        let keylog = peers.log.0.lock().unwrap().clone();
        let doc = analyse(&path, &keylog);
        let want: Vec<_> = expected.iter().chain(&expected).map(|m| (Transport::Tls, m.to_string())).collect();
        assert_eq!(sip_messages(&doc), want, "{name}");
        assert_eq!(tls_sessions(&doc), [], "{name}");
        if !tls13 {
            // TLS 1.2 resumes by session id: without the resumed connection's line, its
            // master secret is the first connection's.
            let lines: Vec<&str> = keylog.lines().collect();
            assert_eq!(lines.len(), 2, "{keylog}");
            let doc = analyse(&path, lines[0]);
            assert_eq!(sip_messages(&doc), want, "{name} without the second line");
            assert_eq!(tls_sessions(&doc), [], "{name} without the second line");
        }
        if let Some(theirs) = tshark_sip(&path, &keylog, 5061) {
            let ours: Vec<String> = want.into_iter().map(|m| m.1).collect();
            assert_eq!(ours, theirs, "{name}: ours and tshark's");
        }
    }
}

/// Bytes a child process wrote to its standard output so far, read on a thread of its own.
fn collect(mut out: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    seen
}

/// Waits (bounded) until `seen` holds `needle`.
fn wait_for(seen: &Mutex<Vec<u8>>, needle: &[u8], what: &str) {
    for _ in 0..500 {
        if seen.lock().unwrap().windows(needle.len()).any(|w| w == needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{what}: {:?} never came", String::from_utf8_lossy(needle));
}

/// A TLS 1.2 session between Debian's `openssl s_client` and `s_server` over loopback with
/// `cipher` (and encrypt-then-MAC unless `no_etm`), through a relay here that records what
/// each side sent; the call's messages are written to their standard inputs in turn.
/// Returns the flights and the client's key log.
fn openssl_call(dir: &Path, cipher: &str, no_etm: bool, call_id: &str) -> (Flights, String, Vec<&'static str>) {
    use std::net::{TcpListener, TcpStream};
    use std::process::{Command, Stdio};
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() {
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sip.example.com"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cipher = format!("{cipher}@SECLEVEL=0");
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-naccept", "1", "-tls1_2", "-cipher", &cipher])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .args(if no_etm { &["-no_etm"][..] } else { &[] })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server_out = collect(server.stdout.take().unwrap());
    // The relay: the client connects here, the bytes go on to s_server and are recorded.
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let flights: Arc<Mutex<Flights>> = Arc::default();
    let recorded = flights.clone();
    let relay_thread = std::thread::spawn(move || {
        let (from_client, _) = relay.accept().unwrap();
        let to_server = (0..200)
            .find_map(|_| {
                TcpStream::connect(("127.0.0.1", port)).ok().or_else(|| {
                    std::thread::sleep(Duration::from_millis(10));
                    None
                })
            })
            .expect("s_server listens");
        let pipe = |mut a: TcpStream, mut b: TcpStream, client: bool, log: Arc<Mutex<Flights>>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = a.read(&mut buf) {
                    if n == 0 {
                        let _ = b.shutdown(std::net::Shutdown::Write);
                        break;
                    }
                    // Recorded before it is passed on, so the order is the order of sending.
                    log.lock().unwrap().push((client, buf[..n].to_vec()));
                    if b.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            })
        };
        let up = pipe(from_client.try_clone().unwrap(), to_server.try_clone().unwrap(), true, recorded.clone());
        let down = pipe(to_server, from_client, false, recorded);
        let _ = (up.join(), down.join());
    });
    let keylog = dir.join(format!("{call_id}.keys"));
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-tls1_2", "-cipher", &cipher, "-servername", "sip.example.com"])
        .args(["-connect", &format!("127.0.0.1:{relay_port}")])
        .arg("-keylogfile")
        .arg(&keylog)
        .args(if no_etm { &["-no_etm"][..] } else { &[] })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client_out = collect(client.stdout.take().unwrap());
    let (messages, order, expected) = call(call_id);
    for &(from_client, m) in &order {
        let (input, seen_by) = if from_client {
            (client.stdin.as_mut().unwrap(), &server_out)
        } else {
            (server.stdin.as_mut().unwrap(), &client_out)
        };
        input.write_all(&messages[m]).unwrap();
        input.flush().unwrap();
        // Each message is through before the next is written: one flight each.
        wait_for(seen_by, &messages[m], "the peer's output");
    }
    let _ = (client.kill(), server.kill(), client.wait(), server.wait());
    let _ = relay_thread.join();
    let flights = std::mem::take(&mut *flights.lock().unwrap());
    (flights, std::fs::read_to_string(keylog).unwrap(), expected)
}

#[test]
fn tls12_aes_cbc_with_hmac_sha1_sha256_sha384_with_and_without_encrypt_then_mac() {
    // `openssl` answers `version`, not `--version`.
    let have = std::process::Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    if !have {
        assert!(std::env::var_os("CI").is_none(), "CI is set but openssl is not installed");
        eprintln!("openssl not found: skipping the TLS 1.2 CBC sessions");
        return;
    }
    let dir = temp("openssl");
    std::fs::create_dir_all(&dir).unwrap();
    for (cipher, no_etm, suite) in [
        ("AES128-SHA", false, "TLS_RSA_WITH_AES_128_CBC_SHA"),
        ("AES128-SHA", true, "TLS_RSA_WITH_AES_128_CBC_SHA"),
        ("ECDHE-RSA-AES256-SHA", true, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
        ("ECDHE-RSA-AES128-SHA256", false, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
        ("ECDHE-RSA-AES128-SHA256", true, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
        ("ECDHE-RSA-AES256-SHA384", false, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
        ("AES256-SHA256", true, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    ] {
        let name = format!("{cipher}-{}", if no_etm { "mte" } else { "etm" });
        let (flights, keylog, expected) = openssl_call(&dir, cipher, no_etm, &name);
        let path = dir.join(format!("{name}.pcap"));
        write_pcap(&path, 5061, &[&flights], None);
        // Without the key: the suite and version are named.
        let doc = analyse(&path, "");
        let tls = tls_sessions(&doc);
        assert_eq!(tls.len(), 1, "{name}");
        assert_eq!(
            (tls[0].0, tls[0].2.as_deref(), tls[0].3.as_deref()),
            (Some(TlsReason::NoKey), Some("TLS 1.2"), Some(suite)),
            "{name}"
        );
        let doc = analyse(&path, &keylog);
        let want: Vec<_> = expected.iter().map(|m| (Transport::Tls, m.to_string())).collect();
        assert_eq!(sip_messages(&doc), want, "{name}");
        assert_eq!(tls_sessions(&doc), [], "{name}");
        if let Some(theirs) = tshark_sip(&path, &keylog, 5061) {
            let ours: Vec<String> = want.into_iter().map(|m| m.1).collect();
            assert_eq!(ours, theirs, "{name}: ours and tshark's");
        }
    }
}

/// A UDP datagram: source and destination addresses and ports, payload.
type Datagram = ([u8; 4], [u8; 4], u16, u16, Vec<u8>);

/// Adds `datagrams` after the frames of the capture at `path`, 10 ms apart.
fn append_udp(path: &Path, datagrams: &[Datagram]) {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = PcapReader::new(&bytes[..]).unwrap();
    let header = PcapHeader { datalink: DataLink::RAW, ..PcapHeader::default() };
    let mut writer = PcapWriter::with_header(std::fs::File::create(path).unwrap(), header).unwrap();
    let mut t = Duration::ZERO;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap();
        t = packet.timestamp;
        writer.write_packet(&packet).unwrap();
    }
    for (src, dst, sport, dport, payload) in datagrams {
        t += Duration::from_millis(10);
        let data = ipv4(*src, *dst, 17, 0, 0x4000, &udp(*sport, *dport, payload));
        writer.write_packet(&PcapPacket::new(t, data.len() as u32, &data)).unwrap();
    }
}

#[test]
fn sdes_keys_of_the_decrypted_sdp_decrypt_the_calls_srtcp() {
    // The caller's key is 00 01 ... 1d: the key libsrtp protected this SRTCP with (an SR
    // from SSRC 0x12345678, AES_CM_128_HMAC_SHA1_80; callflow-decode's srtp unit tests).
    const SRTCP: &str = "81c8000c12345678f4e419a5fd796df58a21bb125ea2f3b9c7073c6c2bfad9893c14505adfc7ea788837c5d25c014663a026621480000002c2c8c542b9684996a136";
    let srtcp: Vec<u8> =
        (0..SRTCP.len()).step_by(2).map(|i| u8::from_str_radix(&SRTCP[i..i + 2], 16).unwrap()).collect();
    let sdp = |ip: &str, port: u16, key: &str| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/SAVP 0\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
        )
    };
    let with_body = |message: Vec<u8>, body: &str| {
        let text = String::from_utf8(message).unwrap();
        let head = text.trim_end().strip_suffix("Content-Length: 0").unwrap().to_string();
        format!("{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    let call_id = "sdes@example.com";
    let messages = vec![
        with_body(
            sip("INVITE sips:bob@example.com SIP/2.0", "1 INVITE", call_id),
            &sdp("10.0.0.1", 4000, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"),
        ),
        with_body(
            sip("SIP/2.0 200 OK", "1 INVITE", call_id),
            &sdp("10.0.0.2", 6000, "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CB"),
        ),
        sip("ACK sips:bob@example.com SIP/2.0", "1 ACK", call_id),
    ];
    let peers = peers(cs::TLS13_AES_128_GCM_SHA256, true);
    let (flights, _, _) = connect(&peers, &steps(&messages, &[(true, 0), (false, 1), (true, 2)], false));
    let path = temp("sdes.pcap");
    write_pcap(&path, 5061, &[&flights], None);
    // SRTP from the caller (SSRC 0x12345678, a 10-byte tag after 160 bytes), then its SRTCP.
    let mut datagrams: Vec<_> = (1..=3u16)
        .map(|seq| {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            p.extend_from_slice(&[0xaa; 170]);
            (CLIENT, SERVER, 4000, 6000, p)
        })
        .collect();
    datagrams.push((CLIENT, SERVER, 4001, 6001, srtcp));
    append_udp(&path, &datagrams);
    let keylog = peers.log.0.lock().unwrap().clone();
    let doc = analyse(&path, &keylog);
    let calls: Vec<_> = doc.sessions.iter().filter(|s| s.kind == SessionKind::SipCall).collect();
    assert_eq!(calls.len(), 1);
    let stream = &calls[0].media[0];
    let srtp = stream.srtp.as_ref().expect("an SRTP stream");
    assert_eq!((stream.packets, stream.payload_bytes, srtp.tag_len), (3, 480, 10));
    let counts = srtp.srtcp.expect("its SRTCP");
    assert_eq!((counts.packets, counts.decrypted, counts.auth_failures), (1, 1, 0));
    assert_eq!(stream.rtcp.iter().map(|r| (r.ssrc, r.blocks.len())).collect::<Vec<_>>(), [(0x1234_5678, 1)]);
    // Without the key log, no SIP, no SDP: the media is orphan RTP, not known to be SRTP,
    // and its SRTCP, which is no RTCP past its first report, gives no (ciphertext) report.
    let doc = analyse(&path, "");
    assert!(doc.sessions.iter().all(|s| s.kind != SessionKind::SipCall));
    let media: Vec<_> = doc.sessions.iter().flat_map(|s| &s.media).collect();
    assert_eq!(media.iter().map(|m| (m.packets, m.rtcp.len(), m.srtp.is_some())).collect::<Vec<_>>(), [(3, 0, false)]);
}
