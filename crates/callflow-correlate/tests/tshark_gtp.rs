//! Differential test against tshark for GTP: request/response pairs, IMSIs, and SIP messages inside GTP-U, over every capture of the corpus that has GTP.
//!
//! tshark (run with `-2`, two passes, which is what fills `gtp.response_in` and
//! `gtpv2.response_in`) is the oracle: each (request frame, response frame) pair it finds
//! must be one of our transactions and the other way round; the IMSIs it decodes in GTP
//! IEs must be those of our `gtp` sessions; and the SIP messages it decodes inside GTP-U
//! must be as many as the SIP messages of our sessions that came through a GTP-U tunnel.
//! Where we differ, [`KNOWN_DIFFERENCES`] says who is right and why, and the test checks
//! that the difference is still there.

mod common;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Document, SessionKind, TunnelKind};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Captures where our answer differs from tshark's: the capture, what differs, and why.
const KNOWN_DIFFERENCES: &[(&str, Aspect, &str)] = &[
    (
        "zeek/gtp_control_prime.pcap",
        Aspect::Pairs,
        "frames 5-8 are GTPv0 (GSM 09.60: version 0, a 20-byte header) on port 3386, which tshark decodes \
         and pairs; GTPv0 was retired with Release 99 and callflowd does not decode it (its GTPv1 pairs agree)",
    ),
    (
        "zeek/pdp_ctx_messages.pcapng",
        Aspect::Pairs,
        "frames 9-12 are GTPv0 on port 3386 (see zeek/gtp_control_prime.pcap); the GTPv1 pairs agree",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aspect {
    Pairs,
    Imsis,
    SipInGtpU,
}

/// What tshark or callflowd found in one capture.
#[derive(Debug, Default, PartialEq, Eq)]
struct Found {
    /// (request frame, response frame).
    pairs: BTreeSet<(u64, u64)>,
    imsis: BTreeSet<String>,
    sip_in_gtp_u: u64,
    /// GTP messages (control and user-plane signalling, not G-PDUs).
    messages: u64,
}

fn tshark(path: &Path) -> Option<Found> {
    let out = Command::new("tshark")
        .args(["-2", "-n", "-r"])
        .arg(path)
        .args(["-Y", "gtp || gtpv2 || sip", "-T", "fields", "-E", "separator=;", "-E", "aggregator=,"])
        .args(["-e", "frame.number", "-e", "gtp.response_in", "-e", "gtpv2.response_in", "-e", "e212.imsi"])
        .args(["-e", "gtp.message", "-e", "gtpv2.message_type", "-e", "sip.Method", "-e", "sip.Status-Code"])
        .args(["-e", "gtp.teid"])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = Found::default();
    let mut any_gtp = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split(';').collect();
        let frame: u64 = f[0].parse().expect("frame number");
        let list = |i: usize| f.get(i).copied().unwrap_or("").split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>();
        for r in list(1).into_iter().chain(list(2)) {
            found.pairs.insert((frame, r.parse().expect("response frame")));
        }
        let (v1, v2) = (list(4), list(5));
        any_gtp |= !v1.is_empty() || !v2.is_empty();
        if v1.is_empty() && v2.is_empty() {
            continue;
        }
        // GTP-U G-PDUs (0xff) carry user packets, not GTP messages.
        found.messages += v1.iter().filter(|t| **t != "0xff").count() as u64 + v2.len() as u64;
        found.imsis.extend(list(3).into_iter().map(str::to_string));
        if v1.contains(&"0xff") {
            found.sip_in_gtp_u += (list(6).len() + list(7).len()) as u64;
        }
    }
    any_gtp.then_some(found)
}

fn ours(path: &Path) -> Found {
    let mut reader = CaptureReader::open(path).expect("open capture");
    let doc: Document = analyze(&mut reader, "x", AnalyzerOptions::default(), None).expect("analyze");
    let mut found = Found::default();
    for s in &doc.sessions {
        if s.kind == SessionKind::Gtp {
            let g = s.gtp.as_ref().expect("a gtp session has its gtp object");
            found.pairs.extend(g.transactions.iter().filter_map(|t| Some((t.request_frame, t.response_frame?))));
            found.imsis.extend(g.imsi.clone());
            // The IMSI IEs of every message (tshark lists them all, a session keeps the first).
            for m in &s.messages {
                let gm = m.gtp.as_ref().expect("a gtp message has its gtp object");
                found.imsis.extend(gm.ies.iter().filter(|ie| ie.name == "IMSI").filter_map(|ie| ie.value.clone()));
            }
            found.messages += s.messages.len() as u64;
        } else if s.tunnel.is_some_and(|t| t.kind == TunnelKind::GtpU) {
            found.sip_in_gtp_u += s.messages.len() as u64;
        }
    }
    found
}

#[test]
fn gtp_agrees_with_tshark_over_the_corpus() {
    let Some(corpus) = common::corpus_dir() else { return };
    if !common::have_tool("tshark") {
        return;
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in common::captures_under(&corpus.join("public")) {
        let name = path.strip_prefix(corpus.join("public")).unwrap().to_string_lossy().to_string();
        let Some(theirs) = tshark(&path) else { continue };
        checked += 1;
        let ours = ours(&path);
        eprintln!(
            "{name}: pairs {} (tshark {}), IMSIs {} (tshark {}), GTP messages {} (tshark {}), SIP in GTP-U {} (tshark {})",
            ours.pairs.len(),
            theirs.pairs.len(),
            ours.imsis.len(),
            theirs.imsis.len(),
            ours.messages,
            theirs.messages,
            ours.sip_in_gtp_u,
            theirs.sip_in_gtp_u
        );
        let known = |aspect| KNOWN_DIFFERENCES.iter().any(|(n, a, _)| *n == name && *a == aspect);
        for (aspect, equal, detail) in [
            (Aspect::Pairs, ours.pairs == theirs.pairs, format!("{:?} vs tshark {:?}", ours.pairs, theirs.pairs)),
            (Aspect::Imsis, ours.imsis == theirs.imsis, format!("{:?} vs tshark {:?}", ours.imsis, theirs.imsis)),
            (
                Aspect::SipInGtpU,
                ours.sip_in_gtp_u == theirs.sip_in_gtp_u,
                format!("{} vs tshark {}", ours.sip_in_gtp_u, theirs.sip_in_gtp_u),
            ),
        ] {
            match (equal, known(aspect)) {
                (true, true) => failures.push(format!("{name}: {aspect:?} now agrees: drop it from KNOWN_DIFFERENCES")),
                (false, false) => failures.push(format!("{name}: {aspect:?} differs: {detail}")),
                _ => {}
            }
        }
    }
    assert!(checked >= 15, "only {checked} captures with GTP found in the corpus");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
