//! The earlier callflowd's documents run as written against the real binary on loopback: the milestone report's integration test scenario (curl) and the WebSocket push document's wscat session (a plain WebSocket client), asserting every field they document.
//!
//! The report's scenario: `callflowd --api-server --api-port PORT`, upload with
//! `curl -F file=@CAPTURE`, poll the job's status until it is completed (`job_id`,
//! `status`, `progress`, `session_count`), list its sessions (`sessions`, `total`), fetch
//! one. The WebSocket document's session: log in, `wscat -c ws://HOST/api/ws?token=TOKEN`,
//! receive `full_state`, `ping` answered by `pong`, pushes each with its `type`; a missing
//! or bad token closes with 4001.

mod common;

use common::{bare_command, hash_password, temp_dir, Daemon};
use serde_json::Value;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tungstenite::Message;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")
}

/// Job statuses as the documents spell them.
const STATUSES: [&str; 5] = ["queued", "running", "completed", "failed", "cancelled"];

/// True when curl can be run; without it the test is skipped, except in CI (`CI` set),
/// where it fails (`cargo xtask test` and `.ci/run` install it).
fn curl_or_skip(test: &str) -> bool {
    let found = Command::new("curl").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found || std::env::var_os("CI").is_none(), "curl is missing (CI is set, so {test} fails)");
    if !found {
        eprintln!("{test}: skipped, curl is missing (cargo xtask test installs it)");
    }
    found
}

/// Runs curl with `args` (silent, failing on no answer) and parses its output as JSON.
fn curl(args: &[&str]) -> Value {
    let out = Command::new("curl").args(["-sS", "--max-time", "60"]).args(args).output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("curl {args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `callflowd --api-server --api-port 0` (any free port, read back from its "listening on"
/// line) with `dir`'s directories, one worker, and `extra` arguments.
fn api_server(dir: PathBuf, extra: &[&str]) -> Daemon {
    let mut cmd = bare_command();
    cmd.args(["--api-server", "--api-port", "0", "--workers", "1", "--upload-dir"])
        .arg(dir.join("uploads"))
        .arg("--results-dir")
        .arg(dir.join("results"))
        .args(extra);
    Daemon::spawn(dir, cmd)
}

/// `curl -F file=@CAPTURE` to the upload route, with `extra` curl arguments; the job's id.
fn upload(addr: &str, capture: &Path, extra: &[&str]) -> String {
    let file = format!("file=@{}", capture.display());
    let mut args = vec!["-F", file.as_str()];
    args.extend_from_slice(extra);
    let url = format!("http://{addr}/api/v1/upload");
    args.push(&url);
    let answer = curl(&args);
    assert_eq!(answer["status"], "queued", "{answer}");
    answer["job_id"].as_str().map(str::to_string).unwrap_or_else(|| panic!("no job_id: {answer}"))
}

#[test]
fn the_reports_integration_test_scenario_with_curl() {
    if !curl_or_skip("the_reports_integration_test_scenario_with_curl") {
        return;
    }
    let daemon = api_server(temp_dir("documented-report"), &[]);
    let addr = daemon.addr.clone();
    let job = upload(&addr, &example(), &[]);

    // Polled until completed: every answer has the documented fields.
    let status_url = format!("http://{addr}/api/v1/jobs/{job}/status");
    let mut seen = Vec::new();
    let status = loop {
        let status = curl(&[&status_url]);
        assert_eq!(status["job_id"], job, "{status}");
        let name = status["status"].as_str().unwrap_or_else(|| panic!("no status: {status}")).to_string();
        assert!(STATUSES.contains(&name.as_str()), "{status}");
        let progress = status["progress"].as_u64().unwrap_or_else(|| panic!("no progress: {status}"));
        assert!(progress <= 100, "{status}");
        assert!(status["session_count"].is_u64(), "no session_count: {status}");
        if seen.last() != Some(&name) {
            seen.push(name.clone());
        }
        if name != "queued" && name != "running" {
            break status;
        }
        assert!(seen.len() < 3 && !seen.is_empty(), "{seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (status["status"].as_str(), status["progress"].as_u64(), status["session_count"].as_u64()),
        (Some("completed"), Some(100), Some(1)),
        "{status}"
    );

    let jobs = curl(&[&format!("http://{addr}/api/v1/jobs")]);
    let listed: Vec<(String, &str)> = jobs["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs: {jobs}"))
        .iter()
        .map(|j| (j["job_id"].as_str().unwrap().to_string(), j["status"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [(job.clone(), "completed")]);

    let page = curl(&[&format!("http://{addr}/api/v1/jobs/{job}/sessions")]);
    assert_eq!(page["total"], 1, "{page}");
    let sessions = page["sessions"].as_array().unwrap_or_else(|| panic!("no sessions: {page}"));
    assert_eq!(sessions.len(), 1, "{page}");
    let id = sessions[0]["id"].as_str().unwrap().to_string();
    let call_id = sessions[0]["call_id"].as_str().unwrap().to_string();

    // One session, by the job's route and by the session's own.
    for url in [format!("http://{addr}/api/v1/jobs/{job}/sessions/{id}"), format!("http://{addr}/api/v1/sessions/{id}")]
    {
        let session = curl(&[&url]);
        assert_eq!((session["id"].as_str(), session["call_id"].as_str()), (Some(id.as_str()), Some(call_id.as_str())));
        assert_eq!(session["messages"].as_array().map(Vec::len), Some(7), "INVITE to BYE's 200: {session}");
        assert!(!session["media"].as_array().unwrap().is_empty(), "{session}");
    }
    let (success, rest) = daemon.terminate();
    assert!(success, "{rest}");
}

/// A plain WebSocket client on `ws://ADDR{path}`, reads bounded to 30 s.
fn ws_connect(addr: &str, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tungstenite::client(format!("ws://{addr}{path}"), stream).unwrap_or_else(|e| panic!("{path}: {e}")).0
}

/// The next text message, or `close CODE REASON`.
fn ws_next(ws: &mut tungstenite::WebSocket<TcpStream>) -> String {
    loop {
        match ws.read().expect("a message within 30 s") {
            Message::Text(text) => return text.to_string(),
            Message::Close(frame) => {
                return frame.map_or("close".into(), |f| format!("close {} {}", u16::from(f.code), f.reason))
            }
            _ => {}
        }
    }
}

#[test]
fn the_websocket_documents_wscat_session() {
    if !curl_or_skip("the_websocket_documents_wscat_session") {
        return;
    }
    let dir = temp_dir("documented-ws");
    let config = dir.join("callflowd.toml");
    let users = format!("[auth]\nenabled = true\nusers = {{ ann = \"{}\" }}\n", hash_password("secret"));
    std::fs::write(&config, users).unwrap();
    let daemon = api_server(dir, &["--config", config.to_str().unwrap()]);
    let addr = daemon.addr.clone();

    // Without a token, or with a bad one: closed with 4001, the reason saying why.
    for path in ["/api/ws", "/api/ws?token=nope"] {
        let mut ws = ws_connect(&addr, path);
        let close = ws_next(&mut ws);
        assert!(close.starts_with("close 4001 unauthorized"), "{path}: {close}");
    }

    let login = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"username":"ann","password":"secret"}"#,
        &format!("http://{addr}/api/login"),
    ]);
    let token = login["token"].as_str().unwrap_or_else(|| panic!("no token: {login}")).to_string();
    let mut ws = ws_connect(&addr, &format!("/api/ws?token={token}"));
    let first: Value = serde_json::from_str(&ws_next(&mut ws)).unwrap();
    assert_eq!((first["type"].as_str(), first["jobs"].as_array().map(Vec::len)), (Some("full_state"), Some(0)));
    ws.send(Message::Text("ping".into())).unwrap();
    loop {
        let text = ws_next(&mut ws);
        if text == "pong" {
            break;
        }
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(v["type"], "heartbeat", "only heartbeats before the pong: {v}");
    }

    // A job's pushes, each typed, until its status says completed.
    let job = upload(&addr, &example(), &["-H", &format!("Authorization: Bearer {token}")]);
    let mut types = Vec::new();
    let mut statuses = Vec::new();
    while statuses.last().is_none_or(|s: &String| s != "completed") {
        let text = ws_next(&mut ws);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let kind = v["type"].as_str().unwrap_or_else(|| panic!("a push without a type: {v}")).to_string();
        assert!(["status", "progress", "session", "stats", "heartbeat"].contains(&kind.as_str()), "{v}");
        if kind == "heartbeat" {
            continue;
        }
        assert_eq!(v["job_id"], job, "{v}");
        if kind == "status" {
            let status = v["job"]["status"].as_str().unwrap().to_string();
            assert!(STATUSES.contains(&status.as_str()), "{v}");
            assert!(statuses.len() < 3, "{statuses:?} then {v}");
            statuses.push(status);
        }
        types.push(kind);
    }
    assert_eq!(statuses, ["queued", "running", "completed"]);
    assert!(types.contains(&"session".to_string()) && types.contains(&"stats".to_string()), "{types:?}");
    let _ = ws.close(None);
    let (success, rest) = daemon.terminate();
    assert!(success, "{rest}");
}
