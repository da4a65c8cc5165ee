//! `callflow-cli classify`: the per-protocol table, with the heuristic classifier and (when built in) nDPI.

use std::process::Command;

fn classify(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_callflow-cli"))
        .arg("classify")
        .args(args)
        .env_remove("CALLFLOW_ENABLE_NDPI")
        .output()
        .expect("run callflow-cli");
    assert!(out.status.success(), "classify failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn row<'a>(table: &'a str, proto: &str) -> Option<&'a str> {
    table.lines().find(|l| l.trim_start().starts_with(&format!("{proto} "))).map(str::trim)
}

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/captures/basic-call.pcap");

#[test]
fn heuristic_table_counts_sip_and_rtp_flows() {
    let table = classify(&["--no-ndpi", EXAMPLE]);
    assert!(table.contains("classifier heuristic"), "{table}");
    let sip = row(&table, "SIP").expect("a SIP row");
    assert!(sip.ends_with("flows: 1"), "{sip}");
    let rtp = row(&table, "RTP").expect("an RTP row");
    assert!(rtp.contains("packets: "), "{rtp}");
}

#[test]
fn ndpi_is_used_when_built_in_unless_disabled_by_the_environment() {
    let table = classify(&[EXAMPLE]);
    let expected = if cfg!(feature = "ndpi") { "classifier ndpi" } else { "classifier heuristic" };
    assert!(table.contains(expected), "{table}");
    assert!(row(&table, "SIP").is_some(), "{table}");
    let out = Command::new(env!("CARGO_BIN_EXE_callflow-cli"))
        .args(["classify", EXAMPLE])
        .env("CALLFLOW_ENABLE_NDPI", "false")
        .output()
        .expect("run callflow-cli");
    assert!(String::from_utf8_lossy(&out.stdout).contains("classifier heuristic"));
}
