//! `callflow-cli analyze` on live input: a remote Packetflix stream from a real WebSocket
//! server on the loopback, and captures replayed (tcpreplay) into a veth pair inside a
//! network namespace the test makes, analysed with `--interface` and compared with the
//! analysis of the file.

use callflow_decode::capture::CaptureReader;
use callflow_live::record::Recorder;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callflow-cli"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn outcomes() -> PathBuf {
    root().join("crates/callflow-correlate/test_data/outcomes.pcap")
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callflow-cli-live-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The NDJSON lines of a run, parsed.
fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// What live and file analyses are compared on: each session's Call-ID, kind, state and
/// number of media streams, sorted.
fn outline(lines: &[Value]) -> Vec<String> {
    let mut calls: Vec<String> = lines
        .iter()
        .filter(|l| l["type"] == "session")
        .map(|s| {
            format!(
                "{} {} {} streams={}",
                s["call_id"],
                s["kind"],
                s["state"],
                s["media"].as_array().map_or(0, Vec::len)
            )
        })
        .collect();
    calls.sort();
    calls
}

/// The file's sessions as `analyze FILE --format ndjson` gives them.
fn file_outline(path: &Path) -> Vec<String> {
    let out = cli().args(["analyze", "--no-ndpi", "--format", "ndjson"]).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    outline(&lines(&out.stdout))
}

/// A capture file as the pcapng stream a Packetflix server sends.
fn pcapng_stream(path: &Path) -> Vec<u8> {
    let mut reader = CaptureReader::open(path).unwrap();
    let mut recorder = Recorder::new(Vec::new()).unwrap();
    while let Some(frame) = reader.next_frame().unwrap() {
        recorder.write(&frame).unwrap();
    }
    recorder.finish().unwrap()
}

/// What the one-connection test server does after sending its bytes.
enum Then {
    /// Closes with this code and reason.
    Close(CloseCode, &'static str),
    /// Waits for the client to close.
    Wait,
}

/// A WebSocket server on 127.0.0.1 for one connection: sends `bytes` in 1000-byte
/// messages, then does `then`; returns its port and the client's close frame.
fn server(bytes: Vec<u8>, then: Then) -> (u16, std::thread::JoinHandle<Option<CloseFrame>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            for piece in bytes.chunks(1000) {
                ws.send(Message::binary(piece.to_vec())).await.unwrap();
            }
            if let Then::Close(code, reason) = then {
                ws.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await.unwrap();
            }
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Close(frame) = message {
                    return frame;
                }
            }
            None
        })
    });
    (port, thread)
}

#[test]
fn a_remote_stream_gives_the_files_sessions_and_writes_what_it_saw() {
    let dir = tmp_dir("ws");
    let saved = dir.join("saved.pcapng");
    let (port, server) =
        server(pcapng_stream(&outcomes()), Then::Close(CloseCode::Normal, "capture process terminated"));
    let out = cli()
        .args([
            "analyze",
            "--no-ndpi",
            &format!("packetflix:ws://127.0.0.1:{port}/capture?netns=4026531840"),
            "--write",
        ])
        .arg(&saved)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = lines(&out.stdout);
    let expected = file_outline(&outcomes());
    assert!(!expected.is_empty());
    assert_eq!(outline(&lines), expected, "NDJSON is the default for live input");
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["source"]["packets"], 1130);
    assert_eq!(summary["source"]["complete"], true);
    // The summary line is the file's, statistics of the calls included (the live mode once
    // wrote its own lines, and left `kpis` out).
    let file = cli().args(["analyze", "--no-ndpi", "--format", "ndjson"]).arg(outcomes()).output().unwrap();
    let file_summary = self::lines(&file.stdout).pop().unwrap();
    assert!(file_summary["kpis"].is_object(), "{file_summary}");
    assert_eq!(summary["kpis"], file_summary["kpis"]);
    // What was saved is the capture again, for us and for tshark.
    assert_eq!(file_outline(&saved), expected);
    match Command::new("tshark").args(["-n", "-r"]).arg(&saved).args(["-T", "fields", "-e", "frame.number"]).output() {
        Ok(out) => {
            assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1130);
        }
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "tshark is needed in CI: {e}");
            eprintln!("tshark missing: the --write file is not checked with it");
        }
    }
    assert_eq!(server.join().unwrap().map(|f| f.code), Some(CloseCode::Normal));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_remote_close_with_a_reason_fails_naming_it_after_the_summary() {
    let bytes = pcapng_stream(&outcomes());
    let (port, server) =
        server(bytes[..5000].to_vec(), Then::Close(CloseCode::Error, "cannot lock target network stack"));
    let out = cli().args(["analyze", "--no-ndpi", &format!("ws://127.0.0.1:{port}/capture?netns=1")]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the capture server closed the stream: cannot lock target network stack (close code 1011)"),
        "{stderr}"
    );
    assert_eq!(lines(&out.stdout).last().unwrap()["type"], "summary", "what was seen is still summed up");
    server.join().unwrap();
}

#[test]
fn duration_ends_a_live_run_with_the_summary_and_a_normal_close() {
    let bytes = pcapng_stream(&outcomes());
    let (port, server) = server(bytes[..20_000].to_vec(), Then::Wait);
    let out = cli()
        .args(["analyze", "--no-ndpi", &format!("ws://127.0.0.1:{port}/capture"), "--duration", "1s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = lines(&out.stdout);
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert!(summary["source"]["packets"].as_u64().unwrap() > 0);
    assert_eq!(server.join().unwrap().map(|f| f.code), Some(CloseCode::Normal));
}

#[test]
fn stats_lines_come_while_a_live_run_waits() {
    let bytes = pcapng_stream(&outcomes());
    let (port, server) = server(bytes[..20_000].to_vec(), Then::Wait);
    let out = cli()
        .args(["analyze", "--no-ndpi", &format!("ws://127.0.0.1:{port}/capture")])
        .args(["--duration", "2500ms", "--stats-every", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = lines(&out.stdout);
    let stats: Vec<&Value> = lines.iter().filter(|l| l["type"] == "stats").collect();
    assert!(!stats.is_empty(), "{lines:?}");
    let last = stats.last().unwrap();
    assert!(last["packets"].as_u64().unwrap() > 0);
    assert_eq!(last["dropped_queue"], 0);
    for key in ["bytes", "analysed", "dropped_source", "sessions_closed", "elapsed_s"] {
        assert!(last.get(key).is_some(), "{key} missing from {last}");
    }
    let sessions = last["sessions_open"].as_u64().unwrap() + last["sessions_closed"].as_u64().unwrap();
    assert!(sessions >= 1, "the calls begun in the stream are open or closed: {last}");
    server.join().unwrap();
}

// ---- an interface in a network namespace ----

/// Whether the namespace tests can run: root, `ip` and `tcpreplay`. Outside CI a missing
/// piece is reported and the test passes over it; in CI (`CI` set) it fails.
fn can_replay() -> bool {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let tools = ["ip", "tcpreplay"].iter().all(|t| Command::new(t).arg("-V").output().is_ok());
    if root && tools {
        return true;
    }
    let why = if root { "ip or tcpreplay missing" } else { "not root: cannot make network namespaces" };
    assert!(std::env::var_os("CI").is_none(), "in CI the live interface tests must run: {why}");
    eprintln!("skipping the live interface test: {why}");
    false
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A namespace with one end of a veth pair in it; the other end stays outside for tcpreplay.
struct Veth {
    netns: String,
    outside: String,
    inside: String,
}

impl Veth {
    fn new(tag: &str) -> Veth {
        let id = std::process::id() % 100_000;
        let v = Veth {
            netns: format!("cflive{tag}{id}"),
            outside: format!("cfo{tag}{id}"),
            inside: format!("cfi{tag}{id}"),
        };
        sh(&["ip", "netns", "add", &v.netns]);
        sh(&["ip", "link", "add", &v.outside, "type", "veth", "peer", "name", &v.inside]);
        sh(&["ip", "link", "set", &v.inside, "netns", &v.netns]);
        // No IPv6 on either end: its neighbour discovery would add packets of its own.
        let _ = Command::new("sysctl").args(["-qw", &format!("net.ipv6.conf.{}.disable_ipv6=1", v.outside)]).output();
        let _ = Command::new("ip")
            .args(["netns", "exec", &v.netns, "sysctl", "-qw", &format!("net.ipv6.conf.{}.disable_ipv6=1", v.inside)])
            .output();
        sh(&["ip", "link", "set", &v.outside, "up"]);
        sh(&["ip", "netns", "exec", &v.netns, "ip", "link", "set", &v.inside, "up"]);
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.outside]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

/// A running `analyze --interface` with its stdout read line by line on a thread.
struct LiveRun {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl LiveRun {
    fn start(args: &[&str]) -> LiveRun {
        let mut child = cli().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(serde_json::from_str::<Value>(&line).unwrap()).is_err() {
                    break;
                }
            }
        });
        LiveRun { child, lines, seen: Vec::new() }
    }

    /// Waits for a `stats` line that satisfies `done` (a safety bound of a minute turns a
    /// hang into a failure that says what was seen).
    fn wait_for_stats(&mut self, done: impl Fn(&Value) -> bool) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let hit = line["type"] == "stats" && done(&line);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let mut stderr = String::new();
                    let _ = std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut stderr);
                    panic!("no such stats line; seen {:?}; stderr {stderr}", self.seen.last());
                }
            }
        }
    }

    /// Ctrl-C, then every line up to the end and the exit status.
    fn interrupt(mut self) -> (Vec<Value>, Output) {
        sh(&["kill", "-INT", &self.child.id().to_string()]);
        let mut rest: Vec<Value> = self.lines.iter().collect();
        self.seen.append(&mut rest);
        let out = self.child.wait_with_output().unwrap();
        (self.seen, out)
    }
}

/// Packets in a capture file.
fn packets(path: &Path) -> u64 {
    let mut reader = CaptureReader::open(path).unwrap();
    let mut n = 0;
    while reader.next_frame().unwrap().is_some() {
        n += 1;
    }
    n
}

/// The corpus captures of SIP calls (with RTP, over UDP and TCP, a fax call) that are
/// replayed; those of ../shared/pcaps only where the corpus is (in CI it must be). They are
/// replayed at 2000 packets a second, not at their own pace, so a capture whose sessions
/// are told apart by long quiet gaps (sngrep/aaa.pcap: one REGISTER Call-ID refreshed over
/// 26 minutes, split by the idle timeout) would be analysed differently and is not here.
fn replayed_captures() -> Vec<PathBuf> {
    let mut captures = vec![root().join("examples/captures/basic-call.pcap"), outcomes()];
    let corpus = root().join("../shared/pcaps/public");
    if corpus.is_dir() {
        captures.push(corpus.join("heplify/rtp_rtcp_sip_ipv4_udp.pcap"));
        captures.push(corpus.join("heplify/sip_ipv4_tcp.pcap"));
        captures.push(corpus.join("ndpi/FAX-Call-t38-CA-TDM-SIP-FB-1.pcap"));
    } else {
        assert!(std::env::var_os("CI").is_none(), "the corpus ../shared/pcaps is missing");
        eprintln!("../shared/pcaps missing: replaying the repository's captures only");
    }
    captures
}

#[test]
fn captures_replayed_into_a_namespace_analyse_like_the_files() {
    if !can_replay() {
        return;
    }
    let veth = Veth::new("eq");
    let dir = tmp_dir("iface");
    for capture in replayed_captures() {
        let saved = dir.join("saved.pcapng");
        let mut run = LiveRun::start(&[
            "analyze",
            "--no-ndpi",
            "--interface",
            &veth.inside,
            "--netns",
            &format!("/run/netns/{}", veth.netns),
            "--stats-every",
            "1",
            "--write",
            saved.to_str().unwrap(),
        ]);
        // The first stats line: the capture is open.
        run.wait_for_stats(|_| true);
        let total = packets(&capture);
        sh(&["tcpreplay", "-q", "--pps", "2000", "-i", &veth.outside, capture.to_str().unwrap()]);
        run.wait_for_stats(|s| s["packets"].as_u64().unwrap_or(0) >= total);
        let (lines, out) = run.interrupt();
        assert!(out.status.success(), "{}: {}", capture.display(), String::from_utf8_lossy(&out.stderr));
        let summary = lines.last().unwrap();
        assert_eq!(summary["type"], "summary");
        assert_eq!(
            summary["source"]["packets"].as_u64(),
            Some(total),
            "{}: nothing else on the link",
            capture.display()
        );
        let stats: Vec<&Value> = lines.iter().filter(|l| l["type"] == "stats").collect();
        assert_eq!(stats.last().unwrap()["dropped_queue"], 0);
        let expected = file_outline(&capture);
        assert!(!expected.is_empty(), "{}", capture.display());
        assert_eq!(outline(&lines), expected, "{}", capture.display());
        assert_eq!(file_outline(&saved), expected, "{}: the --write file", capture.display());
    }
    std::fs::remove_dir_all(dir).ok();
}

// ---- HEP agents ----

/// The UDP payloads (HEP packets) of a corpus capture of HEP traffic.
fn hep_packets(path: &Path) -> Vec<Vec<u8>> {
    let mut reader = CaptureReader::open(path).unwrap();
    let mut packets = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        let packet = callflow_decode::packet::decode_frame(frame.link_type, frame.data);
        if let callflow_decode::packet::Transport::Udp { payload, .. } = packet.transport {
            packets.push(payload.to_vec());
        }
    }
    packets
}

#[test]
fn hep_packets_sent_to_a_hep_source_come_out_as_sessions_with_their_agent() {
    let capture = root().join("../shared/pcaps/public/hep-wireshark/hep.pcap");
    if !capture.is_file() {
        assert!(std::env::var_os("CI").is_none(), "the corpus ../shared/pcaps is missing");
        eprintln!("skipping: {} missing", capture.display());
        return;
    }
    let packets = hep_packets(&capture);
    assert!(!packets.is_empty());
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut run = LiveRun::start(&["analyze", "--no-ndpi", &format!("hep://127.0.0.1:{port}"), "--stats-every", "1"]);
    run.wait_for_stats(|_| true);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for packet in &packets {
        udp.send_to(packet, ("127.0.0.1", port)).unwrap();
    }
    run.wait_for_stats(|s| s["packets"].as_u64().unwrap_or(0) + s["dropped_source"].as_u64().unwrap_or(0) > 0);
    let (lines, out) = run.interrupt();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sessions: Vec<&Value> = lines.iter().filter(|l| l["type"] == "session").collect();
    assert!(!sessions.is_empty(), "{lines:?}");
    let agents: Vec<&Value> =
        sessions.iter().flat_map(|s| s["messages"].as_array().unwrap()).map(|m| &m["capture_agent"]).collect();
    assert!(agents.iter().all(|a| a.is_u64()), "every message keeps its agent's id: {agents:?}");
    assert_eq!(lines.last().unwrap()["type"], "summary");
}

// ---- callflowd's capture service ----

/// callflowd's server with `[capture] enabled`, in this process on 127.0.0.1 (a job
/// manager on a temporary store beside it); stopped when dropped.
struct CaptureService {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl CaptureService {
    fn start() -> CaptureService {
        use callflow_jobs::{JobManager, ManagerOptions, SqliteStore};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let mut settings = callflow_config::Settings::default();
        settings.server.bind_addr = "127.0.0.1".into();
        settings.server.port = 0;
        settings.processing.workers = 1;
        settings.storage.upload_dir = dir.path().join("uploads");
        settings.storage.results_dir = dir.path().join("results");
        settings.capture.enabled = true;
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let store = Arc::new(SqliteStore::open(settings.storage.database_path()).unwrap());
                let (manager, _) = JobManager::start(store, ManagerOptions::from_settings(&settings)).unwrap();
                let server = callflow_server::Server::bind(settings, Arc::new(manager)).await.unwrap();
                addr_tx.send(server.local_addr()).unwrap();
                server
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().expect("callflowd started");
        CaptureService { addr, stop: Some(stop), thread: Some(thread), _dir: dir }
    }
}

impl Drop for CaptureService {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The inode number of a network namespace file.
fn inode(path: &str) -> String {
    let out = Command::new("stat").args(["-L", "-c", "%i", path]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn callflowds_capture_service_streams_what_analyses_like_the_file() {
    if !can_replay() {
        return;
    }
    let veth = Veth::new("svc");
    let service = CaptureService::start();
    let netns = inode(&format!("/run/netns/{}", veth.netns));
    let capture = outcomes();
    let url = format!("ws://{}/capture?netns={netns}&nif={}", service.addr, veth.inside);
    let mut run = LiveRun::start(&["analyze", "--no-ndpi", &url, "--stats-every", "1"]);
    // The first stats line, a second after the upgrade: the service opens its capture right
    // after answering the upgrade (milliseconds), and a failure would have closed the stream.
    run.wait_for_stats(|_| true);
    let total = packets(&capture);
    sh(&["tcpreplay", "-q", "--pps", "2000", "-i", &veth.outside, capture.to_str().unwrap()]);
    run.wait_for_stats(|s| s["packets"].as_u64().unwrap_or(0) >= total);
    let (lines, out) = run.interrupt();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines.last().unwrap()["source"]["packets"].as_u64(), Some(total));
    assert_eq!(outline(&lines), file_outline(&capture));

    // An error of the service reaches the user with its reason.
    let out = cli().args(["analyze", "--no-ndpi", &format!("ws://{}/capture?netns=1", service.addr)]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the capture server closed the stream: no such network namespace: net:[1]"), "{stderr}");
    assert!(stderr.contains("(close code 1008)"), "{stderr}");
}
