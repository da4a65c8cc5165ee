//! Generated captures (`cargo xtask gen-pcap`) analysed and checked against the generator's ground truth.
//!
//! Each `test_data/*.pcap` has a `*.truth.json` beside it saying what the generator put
//! in: every call's Call-ID, outcome, who hung up, its SIP messages and its RTP streams
//! with packets written and dropped. The analysis must find exactly that.

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Document, Relation, SessionKind};
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
    check_legs(pcap, &doc, calls);
    calls.len()
}

/// The B2BUA legs the truth lists (`leg_of`, `leg_rule`) are linked both ways with the
/// rule's key, and nothing else is linked.
fn check_legs(pcap: &Path, doc: &Document, calls: &[Value]) {
    let call_id = |id: &str| doc.sessions.iter().find(|s| s.id == id).map_or("?", |s| s.call_id.as_str()).to_string();
    let mut got: Vec<(String, String, String)> = doc
        .sessions
        .iter()
        .flat_map(|s| {
            s.related.iter().filter(|r| r.relation == Relation::Leg).map(|r| {
                let rule = r.key.split(':').next().unwrap_or("").to_string();
                (s.call_id.clone(), call_id(&r.session), rule)
            })
        })
        .collect();
    let mut want: Vec<(String, String, String)> = calls
        .iter()
        .filter_map(|c| {
            let (b, a, rule) = (c["call_id"].as_str()?, c["leg_of"].as_str()?, c["leg_rule"].as_str()?);
            Some([(a.to_string(), b.to_string(), rule.to_string()), (b.to_string(), a.to_string(), rule.to_string())])
        })
        .flatten()
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{}: leg links (A, B, rule)", pcap.display());
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
fn generated_b2bua_legs_are_paired_by_each_rule() {
    let pcap = test_data().join("b2bua.pcap");
    let truth: Value = serde_json::from_slice(&std::fs::read(pcap.with_extension("truth.json")).unwrap()).unwrap();
    let rules: Vec<&str> = truth["calls"].as_array().unwrap().iter().filter_map(|c| c["leg_rule"].as_str()).collect();
    assert_eq!(rules.len(), 5, "5 B legs");
    for rule in ["session-id", "icid", "header", "call-id-suffix", "weak"] {
        assert!(rules.contains(&rule), "a pair joined by {rule}");
    }
    // `check_against_truth` checks every pair and that there is no other link.
    assert_eq!(check_against_truth(&pcap), 15);
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
