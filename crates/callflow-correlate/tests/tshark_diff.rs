//! Differential test against tshark: SIP message counts and RTP streams over the shared corpus.
//!
//! For every capture in ../shared/pcaps/public, `tshark -q -z sip,stat -z rtp,streams`
//! is the oracle: our SIP messages counted by method and by status code, and our
//! SDP-announced RTP streams with their packets and lost counts, must equal tshark's.
//! Where they cannot be equal, [`KNOWN_DIFFERENCES`] names the capture and the reason,
//! and the test checks that the difference is still there (so the list cannot rot).

mod common;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::Document;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

/// Captures where our answer differs from tshark's, and why.
const KNOWN_DIFFERENCES: &[(&str, Aspect, &str)] =
    &[("sngrep/tlssaved.pcap", Aspect::Sip, "placeholder: filled in from the first corpus run")];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aspect {
    Sip,
    Rtp,
}

/// SIP counts as `-z sip,stat` prints them.
#[derive(Debug, Default, PartialEq, Eq)]
struct SipCounts {
    total: u64,
    by_status: BTreeMap<u16, u64>,
    by_method: BTreeMap<String, u64>,
}

/// One row of `-z rtp,streams`: packets and lost by (src, dst, ssrc).
type RtpStreams = BTreeMap<(SocketAddr, SocketAddr, u32), (u64, i64)>;

fn tshark(path: &Path) -> (SipCounts, RtpStreams) {
    let out = Command::new("tshark")
        .args(["-n", "-q", "-z", "sip,stat", "-z", "rtp,streams", "-r"])
        .arg(path)
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    (parse_sip_stat(&text), parse_rtp_streams(&text))
}

fn parse_sip_stat(text: &str) -> SipCounts {
    let mut counts = SipCounts::default();
    let mut section = "";
    for line in text.lines() {
        let t = line.trim();
        if let Some(n) = t.strip_prefix("Number of SIP messages:") {
            counts.total = n.trim().parse().expect("sip message count");
        } else if t.starts_with("* SIP Status Codes") {
            section = "status";
        } else if t.starts_with("* List of SIP Request methods") {
            section = "method";
        } else if t.starts_with('*') {
            section = "";
        } else if let Some((name, n)) = t.split_once(':') {
            let Some(n) = n.trim().strip_suffix("Packets").and_then(|n| n.trim().parse::<u64>().ok()) else {
                continue;
            };
            match section {
                "status" => {
                    let code = name.trim().strip_prefix("SIP ").and_then(|r| r.get(..3)).expect("status line");
                    *counts.by_status.entry(code.parse().expect("status code")).or_default() += n;
                }
                "method" => *counts.by_method.entry(name.trim().to_string()).or_default() += n,
                _ => {}
            }
        }
    }
    counts
}

fn parse_rtp_streams(text: &str) -> RtpStreams {
    let mut streams = RtpStreams::new();
    let mut inside = false;
    for line in text.lines() {
        if line.contains("RTP Streams") {
            inside = true;
            continue;
        }
        if !inside || line.trim_start().starts_with("Start time") {
            continue;
        }
        if line.starts_with("====") {
            break;
        }
        let mut tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.last() == Some(&"X") {
            tokens.pop();
        }
        if tokens.len() < 17 {
            continue;
        }
        let ip = |s: &str| s.parse::<IpAddr>().expect("stream address");
        let port = |s: &str| s.parse::<u16>().expect("stream port");
        let src = SocketAddr::new(ip(tokens[2]), port(tokens[3]));
        let dst = SocketAddr::new(ip(tokens[4]), port(tokens[5]));
        let ssrc = u32::from_str_radix(tokens[6].trim_start_matches("0x"), 16).expect("ssrc");
        let n = tokens.len();
        // From the end: 6 delta/jitter columns, the loss percentage, lost, packets.
        let lost: i64 = tokens[n - 8].parse().expect("lost");
        let packets: u64 = tokens[n - 9].parse().expect("packets");
        streams.insert((src, dst, ssrc), (packets, lost));
    }
    streams
}

fn ours(path: &Path) -> Document {
    let mut reader = CaptureReader::open(path).expect("open capture");
    analyze(&mut reader, &path.display().to_string(), AnalyzerOptions::default(), None).expect("analyze")
}

fn our_sip(doc: &Document) -> SipCounts {
    let mut counts = SipCounts::default();
    for m in doc.sessions.iter().flat_map(|s| &s.messages) {
        counts.total += 1;
        if let Some(code) = m.status {
            *counts.by_status.entry(code).or_default() += 1;
        }
        if let Some(method) = &m.method {
            *counts.by_method.entry(method.clone()).or_default() += 1;
        }
    }
    counts
}

fn our_rtp(doc: &Document) -> RtpStreams {
    doc.sessions
        .iter()
        .flat_map(|s| &s.media)
        .filter(|m| !m.orphan)
        .map(|m| ((m.src, m.dst, m.ssrc), (m.packets, m.lost)))
        .collect()
}

#[test]
fn sip_and_rtp_agree_with_tshark_over_the_corpus() {
    let Some(corpus) = common::corpus_dir() else { return };
    if !common::have_tool("tshark") {
        return;
    }
    let files = common::captures_under(&corpus.join("public"));
    assert!(files.len() >= 70, "expected the 79 public captures, found {}", files.len());
    let mut disagreements = Vec::new();
    let (mut sip_files, mut messages, mut streams_agreeing, mut calls) = (0, 0, 0, 0);
    for file in &files {
        let name = file.strip_prefix(corpus.join("public")).unwrap().display().to_string();
        let (their_sip, their_rtp) = tshark(file);
        let doc = ours(file);
        let (my_sip, my_rtp) = (our_sip(&doc), our_rtp(&doc));
        for (aspect, equal, detail) in [
            (Aspect::Sip, my_sip == their_sip, format!("tshark {their_sip:?}\n  ours   {my_sip:?}")),
            (Aspect::Rtp, my_rtp == their_rtp, format!("tshark {their_rtp:?}\n  ours   {my_rtp:?}")),
        ] {
            let known = KNOWN_DIFFERENCES.iter().find(|(f, a, _)| *f == name && *a == aspect);
            match (equal, known) {
                (true, None) => {}
                (false, Some((_, _, reason))) => eprintln!("{name}: {aspect:?} differs as expected: {reason}"),
                (true, Some(_)) => {
                    disagreements.push(format!("{name}: {aspect:?} now agrees: remove it from KNOWN_DIFFERENCES"))
                }
                (false, None) => disagreements.push(format!("{name}: {aspect:?} differs:\n  {detail}")),
            }
        }
        if my_sip == their_sip && their_sip.total > 0 {
            sip_files += 1;
            messages += their_sip.total;
            calls += doc.sessions.iter().filter(|s| s.kind == callflow_model::SessionKind::SipCall).count();
        }
        if my_rtp == their_rtp {
            streams_agreeing += their_rtp.len();
        }
    }
    eprintln!(
        "tshark comparison: {} captures; SIP agrees on {sip_files} captures with SIP ({messages} messages, {calls} calls); {streams_agreeing} RTP streams agree",
        files.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements with tshark:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

#[test]
fn parses_tshark_sip_stat() {
    let text = "Number of SIP messages: 7\nNumber of resent SIP messages: 0\n\n* SIP Status Codes in reply packets\n  SIP 200 OK              :     2 Packets\n  SIP 180 Ringing         :     1 Packets\n\n* List of SIP Request methods\n  INVITE          :     1 Packets\n  ACK             :     1 Packets\n\n* Average setup time 0 ms\n Min 0 ms\n";
    let c = parse_sip_stat(text);
    assert_eq!(c.total, 7);
    assert_eq!(c.by_status, BTreeMap::from([(180, 1), (200, 2)]));
    assert_eq!(c.by_method, BTreeMap::from([("ACK".to_string(), 1), ("INVITE".to_string(), 1)]));
}

#[test]
fn parses_tshark_rtp_streams() {
    let text = "========================= RTP Streams ========================\n   Start time      End time     Src IP addr  Port    Dest IP addr  Port       SSRC          Payload  Pkts         Lost   Min Delta(ms)  Mean Delta(ms)   Max Delta(ms)  Min Jitter(ms) Mean Jitter(ms)  Max Jitter(ms) Problems?\n     4.416138      6.415853     10.33.6.100  6000     10.33.6.101  6050 0x5A3361B3        g711A, CN    24     0 (0.0%)          19.838          19.999          20.158           0.010           0.039           0.069 \n     0.1 0.2 fe80::1  6000     fe80::2  6050 0x00000001        g711U    10     -2 (-25.0%)          19.838          19.999          20.158           0.010           0.039           0.069 X\n==============================================================\n";
    let s = parse_rtp_streams(text);
    assert_eq!(s.len(), 2);
    assert_eq!(s[&("10.33.6.100:6000".parse().unwrap(), "10.33.6.101:6050".parse().unwrap(), 0x5A3361B3)], (24, 0));
    assert_eq!(s[&("[fe80::1]:6000".parse().unwrap(), "[fe80::2]:6050".parse().unwrap(), 1)], (10, -2));
}
