//! What the nDPI tests share: the corpora, and a capture classified as `callflow-cli classify` does.

// Each test binary uses only some of these helpers.
#![allow(dead_code)]

use callflow_classify::{AppProtocol, Classifier, HeuristicClassifier};
use callflow_decode::capture::CaptureReader;
use callflow_ndpi::{FlowKey, FrameInput, NdpiClassifier, Options};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// nDPI 4.2's own test captures (../shared/pcaps/ndpi-4.2); the public corpus is beside it.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps/ndpi-4.2")
}

/// Skips outside CI, fails in CI.
pub fn unavailable(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("nDPI comparison cannot run in CI: {what}");
    }
    eprintln!("skipped: {what}");
}

/// One capture as our side sees it: every UDP/TCP packet through the nDPI flow cache
/// (and the heuristic classifier, for its flow's first decisive verdict). Flows of other
/// IP protocols (ICMP, IGMP...) are left out: these tests compare UDP and TCP flows.
pub fn ours(path: &Path) -> (BTreeMap<FlowKey, String>, BTreeMap<FlowKey, AppProtocol>) {
    let mut ndpi = NdpiClassifier::new(Options::capture_report()).expect("nDPI module");
    let mut heuristic = HeuristicClassifier;
    let mut heur: BTreeMap<FlowKey, AppProtocol> = BTreeMap::new();
    let mut reader = CaptureReader::open(path).expect("open capture");
    while let Ok(Some(frame)) = reader.next_frame() {
        // What `callflow-cli classify` does: ndpiReader's reading of the frame.
        let Some(input) = FrameInput::of(&frame) else { continue };
        ndpi.detect_input(&input);
        let key = input.key();
        if let Some(payload) = input.payload().filter(|p| !p.bytes.is_empty()) {
            let verdict = heuristic.classify(&payload).protocol;
            let slot = heur.entry(key).or_insert(AppProtocol::Unknown);
            if *slot == AppProtocol::Unknown {
                *slot = verdict;
            }
        }
    }
    let flows = ndpi
        .final_verdicts()
        .iter()
        .filter(|(k, _)| matches!(k.protocol, 6 | 17))
        .map(|(k, d)| (*k, ndpi.label(d)))
        .collect();
    (flows, heur)
}

/// The capture files of `dir` and, with `nested`, of its subdirectories (sorted).
pub fn captures_in(dir: &Path, nested: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && nested {
            out.extend(captures_in(&path, false));
        } else if path.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
            out.push(path);
        }
    }
    out.sort();
    out
}
