//! `callflow-cli subscribers` through the real binary, on the generated VoLTE capture: the table, the JSON, and the same subscribers in `analyze`'s document and NDJSON summary.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn capture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/callflow-correlate/test_data/volte/volte.pcap")
}

fn truth() -> Value {
    let path = capture().with_extension("truth.json");
    serde_json::from_slice(&std::fs::read(path).expect("truth beside the capture")).expect("truth is JSON")
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_callflow-cli")).args(args).output().expect("run callflow-cli");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn subscribers_json_has_one_subscriber_per_generated_ue() {
    let path = capture();
    let out = run(&["subscribers", path.to_str().unwrap(), "--format", "json", "--no-ndpi"]);
    let subscribers: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let subscribers = subscribers.as_array().unwrap();
    let truth = truth();
    let calls = truth["calls"].as_array().unwrap();
    assert_eq!(subscribers.len(), calls.len(), "{subscribers:#?}");
    for (sub, call) in subscribers.iter().zip(calls) {
        assert_eq!(sub["msisdn"], call["msisdn"]);
        assert_eq!(sub["impu"][0], call["impu"]);
        assert_eq!(sub["impi"][0], call["impi"]);
        let addresses: Vec<&str> =
            sub["ue_addresses"].as_array().unwrap().iter().filter_map(|a| a["address"].as_str()).collect();
        assert!(addresses.contains(&call["ue_address"].as_str().unwrap()), "{addresses:?}");
        let kinds: Vec<&str> = sub["sessions"].as_array().unwrap().iter().filter_map(|s| s["kind"].as_str()).collect();
        assert!(kinds.contains(&"sip_register") && kinds.contains(&"sip_call"), "{kinds:?}");
    }
}

#[test]
fn subscribers_table_names_each_subscriber_and_its_sessions() {
    let path = capture();
    let out = run(&["subscribers", path.to_str().unwrap(), "--no-ndpi"]);
    let table = String::from_utf8(out.stdout).unwrap();
    for call in truth()["calls"].as_array().unwrap() {
        for field in ["msisdn", "ue_address", "call_id", "register_call_id"] {
            let value = call[field].as_str().unwrap();
            assert!(table.contains(value), "{field} {value} missing from\n{table}");
        }
    }
    assert!(table.contains("SUBSCRIBER   sub-4\n"), "{table}");
    assert!(table.contains("  KIND "), "{table}");
}

#[test]
fn analyze_and_its_streaming_output_join_the_same_subscribers() {
    let path = capture();
    let path = path.to_str().unwrap();
    let view: Value =
        serde_json::from_slice(&run(&["subscribers", path, "--format", "json", "--no-ndpi"]).stdout).unwrap();
    let doc: Value = serde_json::from_slice(&run(&["analyze", path, "--no-ndpi"]).stdout).unwrap();
    assert_eq!(doc["subscribers"], view);
    let ndjson = String::from_utf8(run(&["analyze", path, "--format", "ndjson", "--no-ndpi"]).stdout).unwrap();
    let summary: Value = serde_json::from_str(ndjson.lines().last().unwrap()).unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["subscribers"], view, "sessions handed out as they close are joined the same");
    // Every session of a subscriber is in the document, and linked to the one it joined through.
    let ids: Vec<&str> = doc["sessions"].as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
    for sub in view.as_array().unwrap() {
        for s in sub["sessions"].as_array().unwrap() {
            assert!(ids.contains(&s["session"].as_str().unwrap()));
        }
    }
    let linked =
        doc["sessions"].as_array().unwrap().iter().filter(|s| s["related"][0]["relation"] == "subscriber").count();
    assert!(linked >= 4, "each call joins its REGISTER's subscriber: {linked} links");
}
