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
    let built_in = callflow_ndpi::NdpiClassifier::is_built_in();
    let expected = if built_in { "classifier ndpi" } else { "classifier heuristic" };
    assert!(table.contains(expected), "{table}");
    assert!(row(&table, "SIP").is_some(), "{table}");
    let out = Command::new(env!("CARGO_BIN_EXE_callflow-cli"))
        .args(["classify", EXAMPLE])
        .env("CALLFLOW_ENABLE_NDPI", "false")
        .output()
        .expect("run callflow-cli");
    assert!(String::from_utf8_lossy(&out.stdout).contains("classifier heuristic"));
}

#[test]
fn a_build_without_ndpi_says_so_and_falls_back_to_the_heuristic() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_callflow-cli"))
            .args(args)
            .env_remove("CALLFLOW_ENABLE_NDPI")
            .output()
            .expect("run callflow-cli")
    };
    let out = run(&["classify", EXAMPLE]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    // A fresh clone builds the `ndpi` feature without the vendored tree: the binary says why
    // it uses the heuristic classifier instead of failing.
    let built_in = callflow_ndpi::NdpiClassifier::is_built_in();
    assert_eq!(stderr.contains("nDPI is not built in"), !built_in, "{stderr}");
    assert_eq!(stdout.contains("classifier heuristic"), !built_in, "{stdout}");
    // Switched off, there is nothing to say.
    let out = run(&["classify", "--no-ndpi", EXAMPLE]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("nDPI"));
}

#[test]
fn a_capture_that_breaks_off_is_counted_up_to_there_with_a_warning() {
    // One UDP packet, then 2 bytes of a record header: ndpiReader counts the packet.
    let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    frame.extend_from_slice(&[0x13, 0xc4, 0x13, 0xc4, 0, 10, 0, 0, b'h', b'i']);
    for v in [1u32, 0, frame.len() as u32, frame.len() as u32] {
        file.extend_from_slice(&v.to_le_bytes());
    }
    file.extend_from_slice(&frame);
    file.extend_from_slice(&[0, 0]);
    let dir = std::env::temp_dir().join(format!("callflow-cli-classify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.pcap");
    std::fs::write(&path, &file).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callflow-cli"))
        .args(["classify", "--no-ndpi"])
        .arg(&path)
        .output()
        .expect("run callflow-cli");
    std::fs::remove_dir_all(&dir).unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("packets: 1 ") && stdout.contains("flows: 1"), "{stdout}");
    assert!(stdout.contains("(incomplete: the capture breaks off"), "{stdout}");
    assert!(stderr.contains("warning") && stderr.contains("truncated"), "{stderr}");
}
