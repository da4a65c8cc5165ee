//! Differential test against tshark: Diameter request/answer pairs, Session-Ids and result codes over the shared corpus.
//!
//! For every capture of ../shared/pcaps/public, tshark (two passes, so that a request
//! knows its answer: `diameter.answer_in`) is the oracle:
//! - every request/answer pair of ours (sessions' transactions and the per-peer counts of
//!   connection-level messages) is one of tshark's, and we find as many as it does;
//! - the Session-Ids of our sessions are the ones tshark shows;
//! - the Result-Code / Experimental-Result-Code of every answer with a Session-Id is
//!   tshark's, frame by frame.
//!
//! Where we cannot agree, [`KNOWN_DIFFERENCES`] says why, and the test checks that the
//! difference is still there.

mod common;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Document, SessionKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Captures where our Diameter differs from tshark's, and why.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// What tshark or we found in one capture.
#[derive(Debug, Default, PartialEq, Eq)]
struct Found {
    /// Request/answer pairs, as (request frame, answer frame).
    pairs: BTreeSet<(u64, u64)>,
    /// Session-Ids.
    session_ids: BTreeSet<String>,
    /// The result code of each answer that has a Session-Id, by frame.
    results: BTreeMap<u64, Vec<u32>>,
}

fn tshark(path: &Path) -> Found {
    let out = Command::new("tshark")
        .args(["-2", "-n", "-Y", "diameter", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a"])
        .args(["-e", "frame.number", "-e", "diameter.flags.request", "-e", "diameter.answer_in"])
        .args(["-e", "diameter.Session-Id", "-e", "diameter.Result-Code", "-e", "diameter.Experimental-Result-Code"])
        .arg("-r")
        .arg(path)
        .output()
        .expect("run tshark");
    parse_tshark(&String::from_utf8_lossy(&out.stdout))
}

/// Reads tshark's field lines: frame, request flags, answer_in, Session-Ids, Result-Codes,
/// Experimental-Result-Codes (several messages in a frame give comma-separated lists).
fn parse_tshark(text: &str) -> Found {
    let mut found = Found::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let list = |i: usize| -> Vec<&str> {
            f.get(i).map_or(Vec::new(), |s| s.split(',').filter(|x| !x.is_empty()).collect())
        };
        let Ok(frame) = f[0].parse::<u64>() else { continue };
        for answer in list(2) {
            if let Ok(answer) = answer.parse() {
                found.pairs.insert((frame, answer));
            }
        }
        let ids = list(3);
        found.session_ids.extend(ids.iter().map(|s| s.to_string()));
        let is_answer = list(1).iter().any(|r| *r == "0" || *r == "False");
        if is_answer && !ids.is_empty() {
            let codes: Vec<u32> = list(4).iter().chain(list(5).iter()).filter_map(|c| c.parse().ok()).collect();
            if !codes.is_empty() {
                found.results.insert(frame, codes);
            }
        }
    }
    found
}

fn ours(path: &Path) -> (Found, u64) {
    let mut reader = CaptureReader::open(path).expect("open capture");
    let doc: Document =
        analyze(&mut reader, &path.display().to_string(), AnalyzerOptions::default(), None).expect("analyze");
    let mut found = Found::default();
    for s in doc.sessions.iter().filter(|s| s.kind == SessionKind::Diameter) {
        let d = s.diameter.as_ref().expect("a diameter session has its diameter object");
        found.session_ids.insert(d.session_id.clone());
        for t in &d.transactions {
            if let (Some(req), Some(ans)) = (t.request_frame, t.answer_frame) {
                found.pairs.insert((req, ans));
            }
            if let (Some(ans), Some(code)) = (t.answer_frame, t.result_code.or(t.experimental_result_code)) {
                found.results.entry(ans).or_default().push(code);
            }
        }
    }
    let peer_pairs = doc.stats.diameter_peers.iter().map(|p| p.pairs).sum();
    (found, peer_pairs)
}

#[test]
fn known_differences_name_corpus_files() {
    let Some(corpus) = common::corpus_dir() else { return };
    for (file, reason) in KNOWN_DIFFERENCES {
        assert!(corpus.join("public").join(file).is_file(), "{file} is not in the corpus");
        assert!(reason.len() > 40, "{file}: say why it differs");
    }
}

#[test]
fn diameter_agrees_with_tshark_over_the_corpus() {
    let Some(corpus) = common::corpus_dir() else { return };
    if !common::have_tool("tshark") {
        return;
    }
    let files = common::captures_under(&corpus.join("public"));
    assert!(files.len() >= 70, "expected the public captures, found {}", files.len());
    let (mut disagreements, mut report) = (Vec::new(), Vec::new());
    let (mut total_theirs, mut total_ours) = (0, 0);
    for file in &files {
        let name = file.strip_prefix(corpus.join("public")).unwrap().display().to_string();
        let theirs = tshark(file);
        let (mine, peer_pairs) = ours(file);
        if theirs == Found::default() && mine == Found::default() && peer_pairs == 0 {
            continue;
        }
        let our_pairs = mine.pairs.len() as u64 + peer_pairs;
        total_theirs += theirs.pairs.len();
        total_ours += our_pairs as usize;
        report.push(format!("{name}: {our_pairs} pairs (tshark {})", theirs.pairs.len()));
        // Our session pairs must be tshark's; the connection-level ones are only counted.
        let equal = mine.pairs.is_subset(&theirs.pairs)
            && our_pairs == theirs.pairs.len() as u64
            && mine.session_ids == theirs.session_ids
            && mine.results == theirs.results;
        let known = KNOWN_DIFFERENCES.iter().find(|(f, _)| *f == name);
        match (equal, known) {
            (true, None) => {}
            (false, Some((_, reason))) => eprintln!("{name}: differs as expected: {reason}"),
            (true, Some(_)) => disagreements.push(format!("{name}: now agrees: remove it from KNOWN_DIFFERENCES")),
            (false, None) => disagreements.push(format!(
                "{name}: differs:\n  tshark {theirs:?}\n  ours   {mine:?} and {peer_pairs} connection-level pairs"
            )),
        }
    }
    eprintln!("Diameter against tshark:\n  {}", report.join("\n  "));
    assert!(report.len() >= 5, "the corpus has at least five captures with Diameter, found {}", report.len());
    assert!(total_ours >= 17 && total_theirs >= 17, "pairs: ours {total_ours}, tshark {total_theirs}");
    assert!(
        disagreements.is_empty(),
        "{} disagreements with tshark:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

#[test]
fn parses_tshark_fields() {
    let text = "1\t1\t2\tgx;1\t\t\n2\t0\t\tgx;1\t2001\t\n3\t1,0\t5\ta;1,b;2\t,5003\t\n4\t0\t\t\t\t2001\n";
    let found = parse_tshark(text);
    assert_eq!(found.pairs, BTreeSet::from([(1, 2), (3, 5)]));
    assert_eq!(found.session_ids, BTreeSet::from(["gx;1".to_string(), "a;1".into(), "b;2".into()]));
    assert_eq!(found.results, BTreeMap::from([(2, vec![2001]), (3, vec![5003])]));
}
