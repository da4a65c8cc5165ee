//! The documented invocations of the earlier C++ callflowd, which operators migrating from it type as they are: `--api-server --api-port N` serves the API, `--input X --output Y --workers N` analyses one capture.

mod common;

use common::{bare_command, request, temp_dir, Daemon};
use serde_json::Value;
use std::path::PathBuf;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")
}

#[test]
fn the_earlier_callflowds_api_server_and_api_port_flags_serve_the_api() {
    let dir = temp_dir("seed-api");
    let mut cmd = bare_command();
    cmd.args(["--api-server", "--api-port", "0", "--workers", "1", "--upload-dir"])
        .arg(dir.join("uploads"))
        .arg("--results-dir")
        .arg(dir.join("results"));
    let daemon = Daemon::spawn(dir, cmd);
    let (status, body) = request(&daemon.addr, "GET /version HTTP/1.1", |_| {});
    assert_eq!(status, 200, "{body}");
    let (success, rest) = daemon.terminate();
    assert!(success, "{rest}");
}

#[test]
fn the_earlier_callflowds_batch_flags_write_the_results_file() {
    let dir = temp_dir("seed-batch");
    let target = dir.join("results.json");
    let out = bare_command()
        .arg("--input")
        .arg(example())
        .arg("--output")
        .arg(&target)
        .args(["--workers", "8"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("listening"), "analysed, not served: {stderr}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap();
    assert_eq!((doc["format"].as_str(), doc["source"]["complete"].as_bool()), (Some("callflow/v1"), Some(true)));
    let sessions = doc["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    let summaries: Vec<&str> =
        sessions[0]["messages"].as_array().unwrap().iter().map(|m| m["summary"].as_str().unwrap()).collect();
    assert_eq!(summaries, ["INVITE (SDP)", "100 Trying", "180 Ringing", "200 OK (SDP)", "ACK", "BYE", "200 OK"]);
    let mut left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["results.json"], "no temporary file, no store, no upload directory");
    // Serving flags make no sense with it.
    let both = bare_command().arg("--api-server").arg("--input").arg(example()).output().unwrap();
    assert_eq!(both.status.code(), Some(2), "{}", String::from_utf8_lossy(&both.stderr));
    std::fs::remove_dir_all(dir).ok();
}
