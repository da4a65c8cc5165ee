//! `GET /capture`, the Packetflix-compatible capture service, with a real WebSocket client against a real namespace: the stream tshark reads, the client's close, the server's end with statistics, a slow client, and each error's close code and reason.

mod common;

#[path = "../../callflow-live/tests/common/netns.rs"]
mod netns;

use common::{start, TestServer};
use futures_util::{SinkExt, StreamExt};
use netns::{root_or_skip, VethPair};
use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::process::Command;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn capture_server() -> TestServer {
    start(|s| s.capture.enabled = true).await
}

/// Connects to `/capture?query` with `headers`.
async fn connect(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> Ws {
    let mut request = server.ws_url(&format!("/capture?{query}")).into_client_request().unwrap();
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The first message, which must be the close: (code, reason). Answers it, as clients do.
async fn closed_with(ws: &mut Ws) -> (u16, String) {
    let message =
        tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("an answer").expect("a message");
    match message.unwrap() {
        Message::Close(Some(CloseFrame { code, reason })) => (u16::from(code), reason.to_string()),
        other => panic!("expected a close, got {other:?}"),
    }
}

/// Reads binary messages into `stream` until it holds `packets` EPBs or the server closes;
/// returns the close, if one came.
async fn read_stream(ws: &mut Ws, stream: &mut Vec<u8>, packets: usize) -> Option<(u16, String)> {
    while count_packets(stream) < packets {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("data in time")?;
        match message.unwrap() {
            Message::Binary(bytes) => stream.extend_from_slice(&bytes),
            Message::Close(Some(CloseFrame { code, reason })) => return Some((u16::from(code), reason.to_string())),
            Message::Close(None) => return Some((1005, String::new())),
            _ => {}
        }
    }
    None
}

fn blocks(stream: &[u8]) -> (String, Vec<Block<'static>>) {
    let mut reader = PcapNgReader::new(stream).unwrap();
    let comment = reader
        .section()
        .options
        .iter()
        .find_map(|o| match o {
            SectionHeaderOption::Comment(c) => Some(c.to_string()),
            _ => None,
        })
        .unwrap_or_default();
    let mut blocks = Vec::new();
    while let Some(block) = reader.next_block() {
        blocks.push(block.unwrap().into_owned());
    }
    (comment, blocks)
}

fn count_packets(stream: &[u8]) -> usize {
    if stream.is_empty() {
        return 0;
    }
    blocks(stream).1.iter().filter(|b| matches!(b, Block::EnhancedPacket(_))).count()
}

/// The packet sockets open in namespace `ns` (lines of its /proc/net/packet after the header).
fn packet_sockets(ns: &str) -> usize {
    let out = Command::new("ip").args(["netns", "exec", ns, "cat", "/proc/net/packet"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count().saturating_sub(1)
}

fn tshark() -> bool {
    let found = Command::new("tshark").arg("-v").output().is_ok_and(|o| o.status.success());
    assert!(found || std::env::var_os("CI").is_none(), "tshark is missing (CI is set, so this fails)");
    found
}

#[tokio::test]
async fn a_stream_from_a_namespace_reads_in_tshark_and_ends_on_the_clients_close() {
    if !root_or_skip("a_stream_from_a_namespace_reads_in_tshark_and_ends_on_the_clients_close") {
        return;
    }
    // An interface name with a comma: why Packetflix separates names with '/'.
    let pair = VethPair::new(Some(&format!("e,{:x}", std::process::id() % 0xfffff)));
    let server = capture_server().await;
    // The headers win over the query, as in Packetflix (Kubernetes' proxy drops queries).
    let query = format!("netns={}&nif=nosuch0&filter=tcp", pair.capture_inode());
    let mut ws = connect(
        &server,
        &query,
        &[
            ("Clustershark-Nif", &pair.capture_if),
            ("Clustershark-Filter", "udp dst port 5060"),
            ("Clustershark-Chaste", ""),
        ],
    )
    .await;
    let mut stream = Vec::new();
    // The header (SHB and IDB) comes before any packet.
    match ws.next().await.unwrap().unwrap() {
        Message::Binary(bytes) => stream.extend_from_slice(&bytes),
        other => panic!("expected the stream's header, got {other:?}"),
    }
    assert_eq!(packet_sockets(&pair.capture_ns), 1);
    pair.send_udp(5070, 5, b"filtered out");
    pair.send_udp(5060, 10, b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n");
    assert_eq!(read_stream(&mut ws, &mut stream, 10).await, None);

    // The client ends the capture; the server stops it, then answers the close.
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "ciao".into() }))).await.unwrap();
    let mut answer = None;
    while let Some(message) = ws.next().await {
        match message {
            Ok(Message::Close(frame)) => answer = Some(frame),
            Ok(Message::Binary(bytes)) => stream.extend_from_slice(&bytes),
            _ => break,
        }
    }
    assert!(answer.is_some(), "the server answers the client's close");
    assert_eq!(packet_sockets(&pair.capture_ns), 0, "the capture is released once the close is answered ({answer:?})");

    let (comment, blocks) = blocks(&stream);
    assert!(comment.contains("---\n# capture target information\n"), "{comment}");
    assert!(comment.contains(&format!("container-name: \"net:[{}]\"", pair.capture_inode())), "{comment}");
    assert!(comment.contains("capture-filter: \"udp dst port 5060\"\nno-promiscuous-mode: true"), "{comment}");
    let idbs: Vec<_> = blocks.iter().filter(|b| matches!(b, Block::InterfaceDescription(_))).collect();
    assert_eq!(idbs.len(), 1);
    assert_eq!(count_packets(&stream), 10);

    if tshark() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stream.pcapng");
        std::fs::write(&file, &stream).unwrap();
        let out = Command::new("tshark")
            .args(["-r", file.to_str().unwrap(), "-T", "fields", "-e", "frame.interface_name", "-e", "udp.dstport"])
            .output()
            .unwrap();
        assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        assert_eq!(lines, vec![format!("{}\t5060", pair.capture_if); 10]);
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_costs_counted_drops_not_memory_and_the_servers_end_brings_statistics() {
    if !root_or_skip("a_slow_client_costs_counted_drops_not_memory_and_the_servers_end_brings_statistics") {
        return;
    }
    const SENT: u64 = 60_000;
    let pair = VethPair::new(None);
    let server = start(|s| {
        s.capture.enabled = true;
        s.capture.queue_packets = 64;
        // The client pauses for as long as the sending takes: do not let it go.
        s.websocket.send_timeout = Duration::from_secs(120);
    })
    .await;
    let query = format!("netns={}&nif={}&filter=udp%20dst%20port%205060", pair.capture_inode(), pair.capture_if);
    let mut ws = connect(&server, &query, &[]).await;
    let mut stream = Vec::new();
    assert_eq!(read_stream(&mut ws, &mut stream, 0).await, None);
    if let Some(Ok(Message::Binary(bytes))) = ws.next().await {
        stream.extend_from_slice(&bytes);
    }
    let before = rss_bytes();
    // 60,000 datagrams of 1,400 bytes (84 MB) while the client reads nothing.
    tokio::task::block_in_place(|| pair.send_udp(5060, SENT as usize, &[b'v'; 1400]));
    let grown = rss_bytes().saturating_sub(before);
    eprintln!("RSS grew by {} KiB while {SENT} packets went to a client that did not read", grown >> 10);
    assert!(grown < 48 << 20, "the server grew by {} MiB for a client that did not read", grown >> 20);

    // The server ends the stream: statistics, then a close (1001), while the client reads.
    let shutdown = tokio::spawn(server.shutdown());
    let close = read_stream(&mut ws, &mut stream, usize::MAX).await;
    assert_eq!(close.as_ref().map(|c| c.0), Some(1001), "{close:?}");
    let _ = ws.send(Message::Close(None)).await;
    drop(ws);
    let _ = shutdown.await;

    let (_, blocks) = blocks(&stream);
    let delivered = blocks.iter().filter(|b| matches!(b, Block::EnhancedPacket(_))).count() as u64;
    let isb = blocks
        .iter()
        .find_map(|b| match b {
            Block::InterfaceStatistics(isb) => Some(isb.clone()),
            _ => None,
        })
        .expect("an interface statistics block at the end");
    let option = |want: fn(&InterfaceStatisticsOption) -> Option<u64>| isb.options.iter().find_map(want);
    let kernel = option(|o| if let InterfaceStatisticsOption::IsbOsDrop(n) = o { Some(*n) } else { None }).unwrap();
    let usrdeliv = option(|o| if let InterfaceStatisticsOption::IsbUsrDeliv(n) = o { Some(*n) } else { None }).unwrap();
    let client_dropped: u64 = isb
        .options
        .iter()
        .find_map(|o| match o {
            InterfaceStatisticsOption::Comment(c) => c.split(' ').next().and_then(|n| n.parse().ok()),
            _ => None,
        })
        .expect("the client drops in the statistics' comment");
    let received = option(|o| if let InterfaceStatisticsOption::IsbIfRecv(n) = o { Some(*n) } else { None }).unwrap();
    assert_eq!(usrdeliv, delivered);
    // Every packet the capture saw is accounted for: delivered, dropped for the slow
    // client, or dropped by the kernel. (The veth's backlog may lose a few before the
    // capture sees them: those are nobody's to count.)
    assert!(received <= SENT, "received {received}");
    assert_eq!(
        delivered + client_dropped + kernel,
        received,
        "delivered {delivered}, dropped {client_dropped}, kernel {kernel}"
    );
    assert!(client_dropped > received / 2, "dropped {client_dropped} of {received}");
}

#[tokio::test]
async fn each_bad_capture_request_closes_with_1008_and_a_reason_naming_it() {
    if !root_or_skip("each_bad_capture_request_closes_with_1008_and_a_reason_naming_it") {
        return;
    }
    let pair = VethPair::new(None);
    let server = capture_server().await;
    let inode = pair.capture_inode();
    let pid = std::process::id();
    let container = |starttime: u64| {
        format!(r#"{{"netns":{inode},"pid":{pid},"starttime":{starttime},"name":"sbc","type":"docker"}}"#)
    };
    let cases: Vec<(String, &str)> = vec![
        (format!("netns={inode}&container=%7B%7D"), "container and netns query parameters are mutually exclusive"),
        ("nif=eth0".into(), "either container or netns query parameter required"),
        ("netns=abc".into(), "invalid netns \"abc\""),
        ("container=%7Bnope".into(), "invalid container/target description: "),
        ("netns=1".into(), "no such network namespace: net:[1]"),
        (format!("netns={inode}&nif=nosuch0"), "unknown network interface \"nosuch0\" in net:["),
        (format!("netns={inode}&filter=udp%20port"), "bad capture filter \"udp port\": "),
    ];
    for (query, want) in cases {
        let mut ws = connect(&server, &query, &[]).await;
        let (code, reason) = closed_with(&mut ws).await;
        assert_eq!(code, 1008, "{query}: {reason}");
        assert!(reason.starts_with(want), "{query}: {reason:?} should start with {want:?}");
        assert!(reason.len() <= 123);
    }
    // A stale namespace id: the PID's start time is not the one given (the PID was reused).
    let mut ws = connect(&server, "", &[("Clustershark-Container", &container(1))]).await;
    let (code, reason) = closed_with(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("stale network namespace reference: process "), "{reason}");
    assert!(reason.contains("the PID was reused"), "{reason}");
    // A process that is in the namespace, with its current start time: the capture starts.
    let mut sleeper = Command::new("ip").args(["netns", "exec", &pair.capture_ns, "sleep", "60"]).spawn().unwrap();
    // `ip netns exec` enters the namespace after it starts: wait until it has.
    let in_namespace = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{}/ns/net", sleeper.id())).is_ok_and(|m| m.ino() == inode)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !in_namespace() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = callflow_live::netns::process_start_time(sleeper.id()).unwrap();
    let current = format!(r#"{{"netns":{inode},"pid":{},"starttime":{start},"name":"sbc"}}"#, sleeper.id());
    let mut ws = connect(&server, "", &[("Clustershark-Container", &current)]).await;
    let first = ws.next().await;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(matches!(first, Some(Ok(Message::Binary(_)))), "{first:?}");
}

#[tokio::test]
async fn plain_http_is_told_to_use_websocket_and_auth_applies_as_elsewhere() {
    let server = capture_server().await;
    let client = reqwest::Client::new();
    let response = client.get(server.url("/capture?netns=1")).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("WebSocket"), "{body}");
    let version: serde_json::Value = client.get(server.url("/version")).send().await.unwrap().json().await.unwrap();
    assert_eq!(version, serde_json::json!({"name": "callflowd", "version": env!("CARGO_PKG_VERSION")}));

    let key = "k".repeat(32);
    let guarded = start(|s| {
        s.capture.enabled = true;
        s.auth.enabled = true;
        s.auth.api_keys = vec![key.clone()];
    })
    .await;
    let mut ws = connect(&guarded, "netns=1", &[]).await;
    assert_eq!(closed_with(&mut ws).await.0, 4001);
    // With the key, the request gets as far as the namespace lookup.
    let mut ws = connect(&guarded, "netns=1", &[("Authorization", &format!("Bearer {key}"))]).await;
    assert_eq!(
        closed_with(&mut ws).await,
        (1008, "no such network namespace: net:[1]: no process, /run/netns entry or bind mount holds it".into())
    );
    // What a standard client reads of a bad request, without root: the code and the reason.
    for (query, want) in [
        ("nif=eth0", "either container or netns query parameter required"),
        ("netns=abc", "invalid netns \"abc\""),
        ("netns=1", "no such network namespace: net:[1]"),
    ] {
        let mut ws = connect(&guarded, &format!("{query}&token={key}"), &[]).await;
        let (code, reason) = closed_with(&mut ws).await;
        assert_eq!(code, 1008, "{query}: {reason}");
        assert!(reason.starts_with(want), "{query}: {reason:?} should start with {want:?}");
    }

    // Off by default: no route at all.
    let off = start(|_| {}).await;
    let response = client.get(off.url("/capture?netns=1")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[test]
fn without_the_capabilities_the_server_refuses_to_start_naming_them() {
    if !root_or_skip("without_the_capabilities_the_server_refuses_to_start_naming_them") {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--bounding-set", "-sys_admin,-net_raw", "--inh-caps", "-sys_admin,-net_raw", "--"])
        .arg(exe)
        .args(["--exact", "child_bind_with_capture_enabled", "--nocapture", "--test-threads=1"])
        .env("CALLFLOW_TEST_CHILD_BIND", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("child outcome: [capture] enabled = true, but callflowd lacks CAP_SYS_ADMIN and CAP_NET_RAW"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The other half of the test above: binds only when it starts it, and reports the outcome.
#[tokio::test]
async fn child_bind_with_capture_enabled() {
    if std::env::var_os("CALLFLOW_TEST_CHILD_BIND").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::settings(dir.path());
    settings.capture.enabled = true;
    let store = std::sync::Arc::new(callflow_jobs::SqliteStore::open(settings.storage.database_path()).unwrap());
    let (manager, _) =
        callflow_jobs::JobManager::start(store, callflow_jobs::ManagerOptions::from_settings(&settings)).unwrap();
    let manager = std::sync::Arc::new(manager);
    match callflow_server::Server::bind(settings, manager).await {
        Ok(_) => println!("child outcome: started"),
        Err(err) => println!("child outcome: {err}"),
    }
}

#[tokio::test]
async fn an_interface_removed_during_the_capture_ends_the_stream_with_statistics_and_a_reason() {
    if !root_or_skip("an_interface_removed_during_the_capture_ends_the_stream_with_statistics_and_a_reason") {
        return;
    }
    let pair = VethPair::new(None);
    let server = capture_server().await;
    let query = format!("netns={}&nif={}", pair.capture_inode(), pair.capture_if);
    let mut ws = connect(&server, &query, &[]).await;
    let mut stream = Vec::new();
    if let Some(Ok(Message::Binary(bytes))) = ws.next().await {
        stream.extend_from_slice(&bytes);
    }
    let out = Command::new("ip").args(["-n", &pair.capture_ns, "link", "del", &pair.capture_if]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let close = read_stream(&mut ws, &mut stream, usize::MAX).await.expect("the server ends the stream");
    assert_eq!(close.0, 1011, "{close:?}");
    assert!(close.1.starts_with(&format!("capture on {} failed: ", pair.capture_if)), "{close:?}");
    let (_, blocks) = blocks(&stream);
    assert!(matches!(blocks.last(), Some(Block::InterfaceStatistics(_))), "{blocks:?}");
}

#[tokio::test]
async fn a_request_shaped_as_csharg_sends_it_gets_the_stream() {
    if !root_or_skip("a_request_shaped_as_csharg_sends_it_gets_the_stream") {
        return;
    }
    let pair = VethPair::new(None);
    let server = capture_server().await;
    // csharg's CaptureServiceHeaders and CaptureServiceQueryParams: the target as JSON (an
    // api.Target, empty fields included), the interfaces joined by '/', in both places.
    let target = format!(
        r#"{{"name":"sbc","type":"docker","netns":{},"network-interfaces":["{}"],"prefix":""}}"#,
        pair.capture_inode(),
        pair.capture_if
    );
    let query = format!(
        "chaste=&container={}&nif={}",
        target.replace('"', "%22").replace('{', "%7B").replace('}', "%7D").replace(',', "%2C").replace(':', "%3A"),
        pair.capture_if
    );
    let mut ws = connect(
        &server,
        &query,
        &[("Clustershark-Container", &target), ("Clustershark-Nif", &pair.capture_if), ("Clustershark-Chaste", "")],
    )
    .await;
    let mut stream = Vec::new();
    match ws.next().await.unwrap().unwrap() {
        Message::Binary(bytes) => stream.extend_from_slice(&bytes),
        other => panic!("expected the stream's header, got {other:?}"),
    }
    let (comment, blocks) = blocks(&stream);
    assert!(comment.contains("container-name: \"sbc\"\ncontainer-type: \"docker\"\n"), "{comment}");
    assert!(comment.contains("no-promiscuous-mode: true"), "{comment}");
    assert_eq!(blocks.len(), 1);
    // csharg's Close: 1000 "ciao", answered.
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "ciao".into() }))).await.unwrap();
    let mut answered = false;
    while let Some(Ok(message)) = ws.next().await {
        answered |= matches!(message, Message::Close(Some(CloseFrame { code: CloseCode::Normal, .. })));
    }
    assert!(answered);
}

#[tokio::test]
async fn a_stream_opened_with_a_login_token_ends_with_4001_when_the_token_is_revoked() {
    if !root_or_skip("a_stream_opened_with_a_login_token_ends_with_4001_when_the_token_is_revoked") {
        return;
    }
    let pair = VethPair::new(None);
    let server = start(|s| {
        s.capture.enabled = true;
        s.auth.enabled = true;
        s.auth.users = [("ann".to_string(), callflow_server::hash_password("s3cret"))].into();
    })
    .await;
    let client = reqwest::Client::new();
    let token = server.login(&client, "ann", "s3cret").await;
    let query = format!("netns={}&nif={}&token={token}", pair.capture_inode(), pair.capture_if);
    let mut ws = connect(&server, &query, &[]).await;
    let mut stream = Vec::new();
    assert_eq!(read_stream(&mut ws, &mut stream, 0).await, None);
    if let Some(Ok(Message::Binary(bytes))) = ws.next().await {
        stream.extend_from_slice(&bytes);
    }
    let status = client.post(server.url("/api/logout")).bearer_auth(&token).send().await.unwrap().status();
    assert_eq!(status, 204);
    let close = read_stream(&mut ws, &mut stream, usize::MAX).await;
    assert_eq!(close, Some((4001, "the token was revoked".to_string())));
    let (_, blocks) = blocks(&stream);
    assert!(matches!(blocks.last(), Some(Block::InterfaceStatistics(_))), "statistics before the close");
}
