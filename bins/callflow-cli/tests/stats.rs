//! `callflow-cli stats` through the real binary: the table, JSON and CSV of a generated capture whose outcomes are known.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kpis_capture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/callflow-correlate/test_data/kpis.pcap")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callflow-cli")).args(args).output().expect("run callflow-cli")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn stats_table_json_and_csv_agree_on_the_generated_outcomes() {
    let pcap = kpis_capture();
    let pcap = pcap.to_str().unwrap();
    // 10 calls: 4 answered, 2 busy, 2 no answer, 1 cancelled while ringing, 1 failed (503).
    let table = ok(&["stats", pcap]);
    let line = |name: &str| table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}:\n{table}"));
    assert!(line("ASR").contains("40.0%") && line("ASR").contains("4 / 10"), "{table}");
    assert!(line("SEER").contains("80.0%") && line("SEER").contains("8 / 10"), "{table}");
    assert!(line("ISA").contains("1 / 10"), "{table}");
    assert!(line("abandoned").contains("CANCEL or 487 after a 18x"), "{table}");

    let json: Value = serde_json::from_str(&ok(&["stats", pcap, "--by", "minute", "--format", "json"])).unwrap();
    assert_eq!(json["by"], serde_json::json!(["bucket"]));
    assert_eq!(json["total"]["ner"]["numerator"], 9);
    let rows = json["rows"].as_array().unwrap();
    let attempts: Vec<u64> = rows.iter().map(|r| r["kpis"]["attempts"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [6, 4], "calls 0-5 in the first minute");

    let csv = ok(&["stats", pcap, "--by", "peer,minute", "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("peer,bucket,attempts,answered,asr_pct"), "{csv}");
    assert_eq!(lines.len(), 1 + 10 + 1, "a row per callee and minute, then the total: {csv}");
    assert!(lines.last().unwrap().starts_with("total,,10,4,40,90,40,80,10,40,"), "{csv}");

    let calls = ok(&["stats", pcap, "--calls", "--format", "csv"]);
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines[0], "session,call_id,start,peer,outcome,code,rule");
    assert_eq!(lines.len(), 11, "{calls}");
    assert!(lines.iter().any(|l| l.contains(",failed,503,final answer 408 or 5xx")), "{calls}");

    let by_peer = ok(&["stats", pcap, "--by", "peer"]);
    assert!(by_peer.lines().next().unwrap().starts_with("PEER"), "{by_peer}");
    assert!(by_peer.lines().last().unwrap().starts_with("TOTAL"), "{by_peer}");
}

#[test]
fn stats_refuses_an_unknown_grouping_naming_it() {
    let out = run(&["stats", kpis_capture().to_str().unwrap(), "--by", "peer,colour"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown grouping `colour`"), "{err}");
}
