//! The operator statistics of generated captures against figures computed by hand from the generator's truth (every message's time and each call's outcome).

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Delay, Document, KpiSet, Ratio, Timestamp};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn test_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data").join(name)
}

fn analyse(path: &Path) -> Document {
    let mut reader = CaptureReader::open(path).expect("open capture");
    analyze(&mut reader, &path.display().to_string(), AnalyzerOptions::default(), None).expect("analyze")
}

fn ratio(r: &Ratio) -> (u64, u64, Option<f64>) {
    (r.numerator, r.denominator, r.percent)
}

/// The time (ms since the epoch) of `step` in a truth call's timeline.
fn at(call: &Value, step: &str) -> Option<f64> {
    let timeline = call["timeline_us"].as_array().expect("timeline");
    timeline.iter().find(|e| e[0] == step).map(|e| e[1].as_u64().unwrap() as f64 / 1_000.0)
}

/// Count, mean and nearest-rank p50/p90/p99 over the values rounded to whole ms.
fn summary(values: &[f64]) -> (u64, f64, [f64; 3]) {
    let mut units: Vec<f64> = values.iter().map(|v| v.round()).collect();
    units.sort_by(f64::total_cmp);
    let n = units.len();
    let rank = |p: usize| units[(p * n).div_ceil(100).max(1) - 1];
    let mean = (values.iter().sum::<f64>() / n as f64 * 1_000.0).round() / 1_000.0;
    (n as u64, mean, [rank(50), rank(90), rank(99)])
}

fn delay(d: &Delay) -> (u64, f64, [f64; 3]) {
    (d.count, d.mean.unwrap(), [d.p50.unwrap(), d.p90.unwrap(), d.p99.unwrap()])
}

#[test]
fn generated_outcomes_give_the_hand_computed_figures() {
    let pcap = test_data("kpis.pcap");
    let truth: Value = serde_json::from_slice(&std::fs::read(pcap.with_extension("truth.json")).unwrap()).unwrap();
    let calls = truth["calls"].as_array().unwrap();
    let doc = analyse(&pcap);
    let kpis = doc.kpis.as_deref().expect("kpis");
    let k: &KpiSet = &kpis.total;

    // `cargo xtask gen-pcap --calls 10 --duration 2 --window 100 --busy 0.2 --cancel 0.1
    // --no-answer 0.2 --failed 0.1 --seed 21`: 4 answered and hung up, 2 busy (486 after
    // 180), 2 no answer (480 after 180), 1 cancelled after the 180, 1 failed (503, no 180).
    let outcome = |name: &str| calls.iter().filter(|c| c["outcome"] == name).count() as u64;
    assert_eq!([outcome("completed"), outcome("busy"), outcome("no_answer"), outcome("cancelled")], [4, 2, 2, 1]);
    let got: Vec<(&str, u64)> = k.outcomes.iter().map(|o| (o.outcome.as_str(), o.count)).collect();
    assert_eq!(got, [("answered", 4), ("busy", 2), ("no_answer", 2), ("abandoned", 1), ("failed", 1)]);
    assert_eq!(k.attempts, 10);
    assert_eq!(ratio(&k.asr), (4, 10, Some(40.0)), "ASR: answered / attempts");
    assert_eq!(ratio(&k.ner), (9, 10, Some(90.0)), "NER: all but the 503");
    assert_eq!(ratio(&k.ser), (4, 10, Some(40.0)), "SER: no 3xx to take out");
    assert_eq!(ratio(&k.seer), (8, 10, Some(80.0)), "SEER: 200, 486, 480");
    assert_eq!(ratio(&k.isa), (1, 10, Some(10.0)), "ISA: the 503");
    assert_eq!(ratio(&k.scr), (4, 10, Some(40.0)), "SCR: every answered call ended by an answered BYE");
    assert_eq!(ratio(&k.ira), (0, 0, None), "no REGISTER");

    // Delays from the truth's timeline, by the definitions.
    let pairs = |from: &str, to: &[&str]| -> Vec<f64> {
        calls.iter().filter_map(|c| Some(to.iter().find_map(|s| at(c, s))? - at(c, from)?)).collect::<Vec<f64>>()
    };
    let pdd = pairs("invite", &["ringing"]);
    let setup = pairs("invite", &["answer", "busy", "no_answer", "terminated", "failure"]);
    let duration = pairs("answer", &["bye"]);
    let disconnect = pairs("bye", &["bye_ok"]);
    assert_eq!(delay(&k.pdd_ms), summary(&pdd), "PDD");
    assert_eq!(delay(&k.srd_ok_ms), summary(&pdd), "SRD (successful setup): the 180 comes first");
    assert_eq!(delay(&k.setup_ms), summary(&setup), "setup time");
    assert_eq!(delay(&k.acd_ms), summary(&duration), "ACD");
    assert_eq!(delay(&k.sdd_ms), summary(&disconnect), "SDD");
    let failure = pairs("invite", &["failure"]);
    assert_eq!(delay(&k.srd_failed_ms), summary(&failure), "SRD (failed setup): the 503 only");
    // The same, worked out by hand from the truth (docs/kpis.md shows the working).
    assert_eq!(delay(&k.pdd_ms), (9, 125.264, [122.0, 203.0, 203.0]));
    assert_eq!(delay(&k.setup_ms), (10, 2708.058, [2453.0, 5127.0, 5425.0]));
    assert_eq!(delay(&k.acd_ms), (4, 2059.105, [2046.0, 2266.0, 2266.0]));

    // Responses: 100 in every call, 180 in 9, 200 to 4 INVITEs, 4 BYEs and the CANCEL,
    // 480 x2, 486 x2, 487, 503.
    assert_eq!((k.responses.total, k.responses.retransmitted), (34, 0));
    let classes: Vec<(&str, u64)> = k.responses.by_class.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    assert_eq!(classes, [("1xx", 19), ("2xx", 9), ("4xx", 5), ("5xx", 1)]);

    // Per minute: calls 0-5 start in the first minute, 6-9 in the second.
    assert_eq!(kpis.bucket_secs, 60);
    let minutes: Vec<(Timestamp, u64, Option<f64>)> =
        kpis.by_bucket.iter().map(|r| (r.bucket.unwrap(), r.kpis.attempts, r.kpis.asr.percent)).collect();
    let epoch = Timestamp::from_parts(1_704_067_200, 0);
    assert_eq!(minutes, [(epoch, 6, Some(33.33)), (Timestamp::from_parts(1_704_067_260, 0), 4, Some(50.0))]);
    // Per peer: every callee has an address of its own.
    assert_eq!(kpis.by_peer.len(), 10);
    assert!(kpis.by_peer.iter().all(|r| r.kpis.attempts == 1 && r.peer.as_deref().unwrap().starts_with("10.2.0.")));
    // Hops: one Via on every INVITE, as generated.
    assert_eq!((k.hops.count, k.hops.p99), (10, Some(1.0)));
}

#[test]
fn volte_calls_have_kpis_in_the_json_document() {
    let doc = analyse(&test_data("volte/volte.pcap"));
    assert!(doc.kpis.is_some(), "VoLTE calls are SIP");
    let json = serde_json::to_value(&doc).unwrap();
    assert!(json["kpis"]["total"]["asr"]["numerator"].is_u64());
}
