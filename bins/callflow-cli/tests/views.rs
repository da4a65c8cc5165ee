//! End-to-end tests of `ladder`, `export-pcap` and `calls` through the real binary.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")
}

fn outcomes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/callflow-correlate/test_data/outcomes.pcap")
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callflow-cli"))
}

fn run(args: &[&str]) -> Output {
    cli().args(args).output().expect("run callflow-cli")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callflow-cli-views-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn analyse(path: &Path) -> Value {
    serde_json::from_str(&ok(&["analyze", path.to_str().unwrap()])).expect("JSON")
}

fn call_id(path: &Path, n: usize) -> String {
    analyse(path)["sessions"][n]["call_id"].as_str().unwrap().to_string()
}

#[test]
fn ladder_text_shows_every_message_within_100_columns() {
    let call = call_id(&example(), 0);
    let text = ok(&["ladder", example().to_str().unwrap(), "--call", &call]);
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "{line}");
    }
    let order: Vec<usize> = ["INVITE (SDP)", "100 Trying", "180 Ringing", "200 OK (SDP)", "ACK", "BYE"]
        .iter()
        .map(|s| text.find(s).unwrap_or_else(|| panic!("{s} in\n{text}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in time order:\n{text}");
    assert!(text.contains("10.1.0.1") && text.contains("10.2.0.1"), "{text}");
    // A call without legs is its own group.
    assert_eq!(ok(&["ladder", example().to_str().unwrap(), "--call", &call, "--group"]), text);
}

#[test]
fn ladder_svg_and_html_carry_the_raw_messages() {
    let call = call_id(&example(), 0);
    let dir = tmp_dir("svg");
    let svg = dir.join("call.svg");
    ok(&["ladder", example().to_str().unwrap(), "--call", &call, "--format", "svg", "-o", svg.to_str().unwrap()]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(text.contains("<title>INVITE sip:"), "the tooltip is the raw INVITE");
    let html = ok(&["ladder", example().to_str().unwrap(), "--call", &call, "--format", "html"]);
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<pre>INVITE sip:"), "{html}");
    let mermaid = ok(&["ladder", example().to_str().unwrap(), "--call", &call, "--format", "mermaid"]);
    assert!(mermaid.starts_with("sequenceDiagram\n"));
    let plantuml = ok(&["ladder", example().to_str().unwrap(), "--call", &call, "--format", "plantuml"]);
    assert!(plantuml.starts_with("@startuml\n") && plantuml.ends_with("@enduml\n"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_unknown_call_is_an_error_naming_it() {
    let out = run(&["ladder", example().to_str().unwrap(), "--call", "nope@x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no call `nope@x`") && err.contains("calls"), "{err}");
}

#[test]
fn an_exported_call_analysed_again_is_the_same_call() {
    let doc = analyse(&outcomes());
    let call = &doc["sessions"][1];
    let dir = tmp_dir("export");
    let pcap = dir.join("call.pcap");
    let out = run(&[
        "export-pcap",
        outcomes().to_str().unwrap(),
        "--call",
        call["call_id"].as_str().unwrap(),
        "-o",
        pcap.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = analyse(&pcap);
    let sessions = again["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "only the call asked for");
    for field in ["call_id", "state", "from", "to", "start", "end"] {
        assert_eq!(sessions[0][field], call[field], "{field}");
    }
    let summaries =
        |s: &Value| -> Vec<Value> { s["messages"].as_array().unwrap().iter().map(|m| m["summary"].clone()).collect() };
    assert_eq!(summaries(&sessions[0]), summaries(call));
    let packets =
        |s: &Value| -> Vec<Value> { s["media"].as_array().unwrap().iter().map(|m| m["packets"].clone()).collect() };
    assert_eq!(packets(&sessions[0]), packets(call));
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("call.pcap")], "no temporary file left behind");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn calls_lists_one_row_per_call_without_colours_in_a_pipe() {
    let table = ok(&["calls", outcomes().to_str().unwrap()]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TIME") && lines[0].contains("MOS IN") && lines[0].contains("PROBLEMS"), "{table}");
    assert_eq!(lines.len(), 1 + 4, "{table}");
    assert!(!table.contains('\u{1b}'), "no escape codes when stdout is not a terminal");
    let states: Vec<&str> = ["COMPLETED", "REJECTED", "CANCELLED"].into_iter().filter(|s| table.contains(s)).collect();
    assert_eq!(states.len(), 3, "{table}");
    let rejected = ok(&["calls", outcomes().to_str().unwrap(), "--state", "rejected"]);
    assert_eq!(rejected.lines().count(), 2, "{rejected}");
    assert!(rejected.lines().nth(1).unwrap().contains("REJECTED"));
    let none = ok(&["calls", outcomes().to_str().unwrap(), "--q", "no-such-user"]);
    assert_eq!(none.lines().count(), 1, "{none}");
    let bob = ok(&["calls", outcomes().to_str().unwrap(), "--q", "BOB1"]);
    assert_eq!(bob.lines().count(), 2, "{bob}");
    let out = run(&["calls", outcomes().to_str().unwrap(), "--problem", "no_such_problem"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown problem `no_such_problem`"));
}

#[test]
fn calls_into_a_closed_pipe_ends_quietly() {
    let mut child = cli()
        .args(["calls", outcomes().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
}

#[test]
fn analyze_into_a_file_prints_no_progress_when_stderr_is_not_a_terminal() {
    let dir = tmp_dir("quiet");
    let out = run(&["analyze", example().to_str().unwrap(), "--no-ndpi", "-o", dir.join("r.json").to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(dir).ok();
}

fn b2bua() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/callflow-correlate/test_data/b2bua.pcap")
}

#[test]
fn a_b2bua_call_is_drawn_and_exported_with_its_other_leg() {
    let doc = analyse(&b2bua());
    let sessions = doc["sessions"].as_array().unwrap();
    let leg =
        sessions.iter().find(|s| s["related"].as_array().is_some_and(|r| r.iter().any(|l| l["relation"] == "leg")));
    let leg = leg.expect("a call with a leg");
    let other_id = leg["related"][0]["session"].as_str().unwrap();
    let other = sessions.iter().find(|s| s["id"] == other_id).expect("the other leg");
    let call = leg["call_id"].as_str().unwrap();
    let text = ok(&["ladder", b2bua().to_str().unwrap(), "--call", call, "--group"]);
    assert!(text.starts_with("2 legs"), "{text}");
    assert!(text.contains(other["call_id"].as_str().unwrap()), "{text}");
    let alone = ok(&["ladder", b2bua().to_str().unwrap(), "--call", call]);
    assert!(!alone.contains(other["call_id"].as_str().unwrap()), "without --group, the leg alone");

    let dir = tmp_dir("b2bua");
    let pcap = dir.join("group.pcap");
    ok(&["export-pcap", b2bua().to_str().unwrap(), "--call", call, "--group", "-o", pcap.to_str().unwrap()]);
    let again = analyse(&pcap);
    let mut ids: Vec<&str> =
        again["sessions"].as_array().unwrap().iter().map(|s| s["call_id"].as_str().unwrap()).collect();
    ids.sort();
    let mut want = vec![call, other["call_id"].as_str().unwrap()];
    want.sort();
    assert_eq!(ids, want, "both legs, nothing else");
    let linked = again["sessions"][0]["related"].as_array().is_some_and(|r| r.iter().any(|l| l["relation"] == "leg"));
    assert!(linked, "the legs are joined again from the exported file");
    std::fs::remove_dir_all(dir).ok();
}
