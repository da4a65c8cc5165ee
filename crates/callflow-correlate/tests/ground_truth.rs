//! Generated captures (`cargo xtask gen-pcap`) analysed and checked against the generator's ground truth.
//!
//! Each `test_data/*.pcap` has a `*.truth.json` beside it saying what the generator put
//! in: every call's Call-ID, outcome, who hung up, its SIP messages and its RTP streams
//! with packets written and dropped. The analysis must find exactly that.

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Document, SessionKind};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data")
}

fn analyse(path: &Path) -> Document {
    let mut reader = CaptureReader::open(path).expect("open capture");
    analyze(&mut reader, &path.display().to_string(), AnalyzerOptions::default(), None).expect("analyze")
}

fn check_against_truth(pcap: &Path) -> usize {
    let truth: Value = serde_json::from_slice(&std::fs::read(pcap.with_extension("truth.json")).expect("truth file"))
        .expect("truth JSON");
    let doc = analyse(pcap);
    let calls = truth["calls"].as_array().expect("calls");
    let sip_sessions: Vec<_> = doc.sessions.iter().filter(|s| s.kind == SessionKind::SipCall).collect();
    assert_eq!(sip_sessions.len(), calls.len(), "{}: one session per call", pcap.display());
    assert!(doc.sessions.iter().all(|s| s.kind != SessionKind::Rtp), "no orphan media in a generated capture");
    assert_eq!(doc.source.packets, truth["packets"].as_u64().unwrap());
    assert_eq!(doc.stats.malformed, 0);
    for call in calls {
        let call_id = call["call_id"].as_str().unwrap();
        let session =
            sip_sessions.iter().find(|s| s.call_id == call_id).unwrap_or_else(|| panic!("call {call_id} missing"));
        let ctx = format!("{}: call {call_id}", pcap.display());
        assert_eq!(session.state.as_str(), call["expected_state"].as_str().unwrap(), "{ctx}: state");
        let hangup = session.hangup_by.map(|p| serde_json::to_value(p).unwrap()).unwrap_or(Value::Null);
        assert_eq!(hangup, call["hangup_by"], "{ctx}: hangup_by");
        assert_eq!(session.messages.len() as u64, call["sip_messages"].as_u64().unwrap(), "{ctx}: SIP messages");
        assert!(session.messages.iter().all(|m| !m.retransmission), "{ctx}: no retransmissions generated");
        let streams = call["streams"].as_array().unwrap();
        assert_eq!(session.media.len(), streams.len(), "{ctx}: streams");
        for want in streams {
            let (src, dst) = (want["src"].as_str().unwrap(), want["dst"].as_str().unwrap());
            let got = session
                .media
                .iter()
                .find(|m| {
                    m.src.to_string() == src
                        && m.dst.to_string() == dst
                        && u64::from(m.ssrc) == want["ssrc"].as_u64().unwrap()
                })
                .unwrap_or_else(|| panic!("{ctx}: stream {src} -> {dst} missing"));
            assert_eq!(got.packets, want["packets"].as_u64().unwrap(), "{ctx}: {src} -> {dst} packets");
            assert_eq!(got.lost, want["lost"].as_i64().unwrap(), "{ctx}: {src} -> {dst} lost");
            assert_eq!(got.expected, want["expected"].as_u64().unwrap(), "{ctx}: {src} -> {dst} expected");
            assert!(!got.orphan);
            assert!(!got.rtcp.is_empty() || got.packets < 250, "{ctx}: RTCP SR every 5 s is attached");
        }
    }
    calls.len()
}

#[test]
fn generated_captures_match_their_ground_truth() {
    let mut checked = 0;
    for entry in std::fs::read_dir(test_data()).expect("test_data") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pcap") && path.with_extension("truth.json").exists() {
            checked += check_against_truth(&path);
        }
    }
    assert!(checked >= 6, "expected at least 6 generated calls in test_data, found {checked}");
}

#[test]
fn bundled_example_matches_its_ground_truth() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap");
    assert_eq!(check_against_truth(&example), 1);
}

#[test]
fn same_input_same_output() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap");
    let a = serde_json::to_string(&analyse(&example)).unwrap();
    let b = serde_json::to_string(&analyse(&example)).unwrap();
    assert_eq!(a, b);
}
