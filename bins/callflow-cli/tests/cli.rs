//! End-to-end tests of the `callflow-cli` binary: arguments, output files, formats and error reporting.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callflow-cli"))
}

fn run(args: &[&str]) -> Output {
    cli().args(args).output().expect("run callflow-cli")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callflow-cli-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

#[test]
fn analyze_writes_the_example_call_to_stdout() {
    let out = run(&["analyze", example().to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(doc["format"], "callflow/v1");
    assert_eq!(doc["source"]["complete"], true);
    assert_eq!(doc["source"]["link_types"], serde_json::json!(["ETHERNET"]));
    let sessions = doc["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let call = &sessions[0];
    assert_eq!(call["kind"], "sip_call");
    assert_eq!(call["state"], "COMPLETED");
    assert_eq!(call["media"].as_array().unwrap().len(), 2);
    let summaries: Vec<&str> =
        call["messages"].as_array().unwrap().iter().map(|m| m["summary"].as_str().unwrap()).collect();
    assert_eq!(summaries, ["INVITE (SDP)", "100 Trying", "180 Ringing", "200 OK (SDP)", "ACK", "BYE", "200 OK"]);
}

#[test]
fn seed_spelling_writes_the_output_file() {
    let dir = tmp_dir("seed");
    let target = dir.join("results.json");
    let out = run(&["--input", example().to_str().unwrap(), "--output", target.to_str().unwrap(), "--workers", "8"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let doc: Value = serde_json::from_slice(&std::fs::read(&target).unwrap()).unwrap();
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("results.json")], "no temporary file is left behind");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn ndjson_is_one_session_per_line_then_a_summary() {
    let out = run(&["analyze", example().to_str().unwrap(), "--format", "ndjson"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["type"], "session");
    assert_eq!(lines[0]["kind"], "sip_call");
    assert_eq!(lines[1]["type"], "summary");
    assert_eq!(lines[1]["format"], "callflow/v1");
    assert!(lines[1]["source"]["packets"].as_u64().unwrap() > 10);
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let mut child = cli().args(["analyze", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(example()).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["source"]["path"], "-");
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 1);
}

#[test]
fn not_a_capture_is_one_line_naming_file_and_offset() {
    let dir = tmp_dir("html");
    let file = dir.join("page.pcap");
    std::fs::write(&file, b"<html><body>not a capture</body></html>").unwrap();
    let out = run(&["analyze", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(err.contains("not a capture file: bad magic 0x3c68746d at offset 0"), "{err}");
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn missing_file_names_the_path() {
    let out = run(&["analyze", "/nonexistent/capture.pcap"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/capture.pcap"), "{}", stderr(&out));
}

#[test]
fn truncated_capture_gives_partial_results_marked_incomplete() {
    let bytes = std::fs::read(example()).unwrap();
    let dir = tmp_dir("cut");
    let file = dir.join("cut.pcap");
    // Cut in the middle of a record near the end: everything before it still counts.
    std::fs::write(&file, &bytes[..bytes.len() - 30]).unwrap();
    let out = run(&["analyze", file.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["source"]["complete"], false);
    let warning = doc["source"]["warnings"][0].as_str().unwrap();
    assert!(warning.contains("offset"), "{warning}");
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 1);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn closed_output_pipe_ends_quietly() {
    let mut child = cli()
        .args(["analyze", example().to_str().unwrap(), "--format", "ndjson"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
}

#[test]
fn no_input_is_a_usage_error() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing to do"), "{}", stderr(&out));
    let out = run(&["analyze", "--format", "xml", "x.pcap"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn analyze_classifies_with_ndpi_when_built_in_and_not_switched_off() {
    let with = run(&["analyze", example().to_str().unwrap()]);
    let without = run(&["analyze", example().to_str().unwrap(), "--no-ndpi"]);
    assert!(with.status.success() && without.status.success(), "{} {}", stderr(&with), stderr(&without));
    let with: Value = serde_json::from_slice(&with.stdout).unwrap();
    let without: Value = serde_json::from_slice(&without.stdout).unwrap();
    // The same build of callflow-ndpi as the binary's: nDPI is built in when the feature is
    // on (the default) and nDPI was found at build time.
    let expected = if callflow_ndpi::NdpiClassifier::is_built_in() { "ndpi" } else { "heuristic" };
    assert_eq!(with["stats"]["classifier"], expected);
    assert_eq!(without["stats"]["classifier"], "heuristic");
    // SDP announces every stream of the example: the classifier cannot change a session.
    assert_eq!(with["sessions"], without["sessions"]);
    let env_off = cli()
        .args(["analyze", example().to_str().unwrap()])
        .env("CALLFLOW_ENABLE_NDPI", "false")
        .output()
        .expect("run callflow-cli");
    let env_off: Value = serde_json::from_slice(&env_off.stdout).unwrap();
    assert_eq!(env_off["stats"]["classifier"], "heuristic");
}

#[test]
fn every_flow_is_listed_with_its_protocol_and_who_decided_it() {
    let out = run(&["analyze", example().to_str().unwrap(), "--no-ndpi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let flows: Vec<(String, String, String, String, u64)> = doc["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_string();
            (s("transport"), s("protocol"), s("confidence"), s("classifier"), f["packets"].as_u64().unwrap())
        })
        .collect();
    let f = |t: &str, p: &str, c: &str, by: &str, n| (t.to_string(), p.to_string(), c.to_string(), by.to_string(), n);
    // SIP by its signature; the RTP and RTCP flows (both directions each) by the SDP.
    assert_eq!(
        flows,
        [
            f("udp", "sip", "signature", "heuristic", 7),
            f("udp", "rtp", "announced", "sdp", 598),
            f("udp", "rtcp", "announced", "sdp", 2)
        ]
    );
    let total: u64 = flows.iter().map(|f| f.4).sum();
    assert_eq!(total, doc["source"]["packets"].as_u64().unwrap(), "every packet is in a flow");
    // The NDJSON summary line carries the same list.
    let out = run(&["analyze", example().to_str().unwrap(), "--no-ndpi", "--format", "ndjson"]);
    let last: Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!(last["flows"], doc["flows"]);
}

/// `-o /dev/null` once renamed the temporary file over `/dev/null`, leaving a regular file
/// there (and every later reader of `/dev/null` reading our output). A named pipe stands
/// in for the device here: a regression must not break the machine that runs the test.
#[test]
fn output_to_what_is_not_a_file_writes_to_it_and_leaves_it_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tmp_dir("fifo");
    let fifo = dir.join("results.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success());
    // Opening a pipe for reading waits for a writer: on its own thread, with a deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    let reading = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(&reading));
    });
    let out = run(&["analyze", example().to_str().unwrap(), "-o", fifo.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let read = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the pipe was written to").unwrap();
    let doc: Value = serde_json::from_slice(&read).expect("JSON through the pipe");
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 1);
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "still a named pipe, not {kind:?}");
    std::fs::remove_dir_all(dir).ok();
}

/// A symbolic link stays a link; the file it names gets the result.
#[test]
fn output_through_a_symbolic_link_replaces_the_file_not_the_link() {
    let dir = tmp_dir("link");
    let (real, link) = (dir.join("real.json"), dir.join("link.json"));
    std::fs::write(&real, "old").unwrap();
    std::os::unix::fs::symlink("real.json", &link).unwrap();
    let out = run(&["analyze", example().to_str().unwrap(), "-o", link.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let doc: Value = serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 1);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_diameter_dictionary_with_a_mistake_is_named_with_its_line() {
    let dir = tmp_dir("dict-bad");
    let dict = dir.join("vendor.toml");
    std::fs::write(&dict, "[[avp]]\ncode = 1\nname = \"X\"\ntype = \"Strng\"\n").unwrap();
    let out = run(&["analyze", example().to_str().unwrap(), "--diameter-dictionary", dict.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:4: unknown variant `Strng`", dict.display())), "{err}");
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_diameter_dictionary_file_overrides_the_built_in_names() {
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps/public/ndpi/diameter.pcap");
    if !capture.is_file() {
        assert!(std::env::var_os("CI").is_none(), "CI is set but {} is missing", capture.display());
        return;
    }
    let dir = tmp_dir("dict-good");
    let dict = dir.join("names.toml");
    std::fs::write(&dict, "[[avp]]\ncode = 263\nname = \"Sitzungs-Id\"\ntype = \"UTF8String\"\n").unwrap();
    let out = run(&["analyze", capture.to_str().unwrap(), "--diameter-dictionary", dict.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let session = &doc["sessions"][0];
    assert_eq!(session["kind"], "diameter");
    assert_eq!(session["messages"][0]["summary"], "CCR-I (Gy)");
    let first_avp = &session["messages"][0]["diameter"]["avps"][0];
    assert_eq!((first_avp["code"].as_u64(), first_avp["name"].as_str()), (Some(263), Some("Sitzungs-Id")));
    std::fs::remove_dir_all(dir).ok();
}

fn tls_capture() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/callflow-correlate/test_data");
    (dir.join("sip-tls13.pcap"), dir.join("sip-tls13.keys"))
}

#[test]
fn tls_keylog_decrypts_sip_over_tls_and_without_it_the_connection_says_no_key() {
    let (capture, keys) = tls_capture();
    let out = run(&["analyze", capture.to_str().unwrap(), "--tls-keylog", keys.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sessions = doc["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let messages = sessions[0]["messages"].as_array().unwrap();
    let got: Vec<(&str, &str)> =
        messages.iter().map(|m| (m["transport"].as_str().unwrap(), m["summary"].as_str().unwrap())).collect();
    let want = ["INVITE", "100 Trying", "180 Ringing", "200 OK", "ACK", "BYE", "200 OK"].map(|s| ("tls", s));
    assert_eq!(got, want);

    let out = run(&["analyze", capture.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sessions = doc["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    assert_eq!(sessions[0]["kind"], "tls");
    let tls = &sessions[0]["tls"];
    assert_eq!((tls["reason"].as_str(), tls["sni"].as_str()), (Some("no_key"), Some("sip.example.com")));
    assert_eq!(
        (tls["version"].as_str(), tls["cipher_suite"].as_str()),
        (Some("TLS 1.3"), Some("TLS_AES_128_GCM_SHA256"))
    );
}

#[test]
fn a_tls_keylog_without_any_secret_is_an_error_naming_the_line() {
    let (capture, _) = tls_capture();
    let dir = tmp_dir("keylog");
    let bad = dir.join("bad.keys");
    std::fs::write(&bad, "# keys\nCLIENT_RANDOM 1234 abcd\n").unwrap();
    let out = run(&["analyze", capture.to_str().unwrap(), "--tls-keylog", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad TLS key log") && err.contains("line 2: client random is not 64 hex digits"), "{err}");
    let out = run(&["analyze", capture.to_str().unwrap(), "--tls-keylog", dir.join("missing.keys").to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("cannot read the TLS key log"), "{}", stderr(&out));
    std::fs::remove_dir_all(dir).ok();
}
