//! Differential test against tshark: SIP message counts and RTP streams over the shared corpus.
//!
//! For every capture in ../shared/pcaps/public, `tshark -q -z sip,stat -z rtp,streams`
//! is the oracle: our SIP messages counted by method and by status code, the operator
//! statistics' response codes (the document's `kpis`, docs/kpis.md), and our SDP-announced
//! RTP streams with their packets and lost counts, must equal tshark's.
//! Where they cannot be equal, [`KNOWN_DIFFERENCES`] names the capture and the reason,
//! and the test checks that the difference is still there (so the list cannot rot).

mod common;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Document, Protocol};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

/// Captures on which tshark must be told what a port carries, with the options that tell it.
/// tshark decodes SIP over TCP only on port 5060 unless configured; callflowd finds SIP by
/// its signature on any port. With these options tshark's answer is the oracle as usual.
const TSHARK_DECODE_AS: &[(&str, &[&str])] = &[("heplify/sip_ipv4_tcp_fragmented.pcap", &["-d", "tcp.port==6060,sip"])];

/// Captures where our answer differs from tshark's, and why.
const KNOWN_DIFFERENCES: &[(&str, Aspect, &str)] = &[
    (
        "heplify/rtp_rtcp_sip_ipv4_udp.pcap",
        Aspect::RtpSignalledElsewhere,
        "the stream 200.57.7.202:30000 -> 200.57.7.196:40362 was set up by MGCP (CRCX with SDP, frames \
         2945-2946), which callflowd does not decode: it is reported as orphan RTP, with tshark's counts",
    ),
    (
        "ndpi/skinny.pcap",
        Aspect::RtpSignalledElsewhere,
        "all six streams were set up by Cisco Skinny (SCCP), which callflowd does not decode: they are \
         reported as orphan RTP, with tshark's counts (including the negative losses)",
    ),
    (
        "ndpi/FAX-Call-t38-CA-TDM-SIP-FB-1.pcap",
        Aspect::Rtp,
        "the switch to T.38 was signalled by Megaco/H.248 (frames 1434-1435), which callflowd does not \
         decode: the 27 UDPTL packets after it on 10.35.60.100:15580 count as RTP here (159 packets, \
         tshark 132); the lost count (1712) agrees",
    ),
    (
        "ndpi/fuzz-2006-06-26-2594.pcap",
        Aspect::Rtp,
        "fuzzed capture: the RTP (frame 625) arrives 900 s after its call was cancelled; callflowd closes \
         a finished call after 32 s, tshark's SDP conversations never expire, so here it is orphan RTP; \
         tshark's four other streams are single packets with fuzzed addresses or SSRCs",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aspect {
    /// SIP message counts by method and status.
    Sip,
    /// The operator statistics' responses by code (`kpis.total.responses`).
    KpiResponses,
    /// RTP streams that SDP announced, with packets and lost.
    Rtp,
    /// RTP announced by a protocol callflowd does not decode: tshark's streams must then be
    /// found among ours as orphans, with the same packets and lost.
    RtpSignalledElsewhere,
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

fn tshark(path: &Path, extra: &[&str]) -> (SipCounts, RtpStreams) {
    let out = Command::new("tshark")
        .args(extra)
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
    // Only SIP's: the sessions of other protocols (GTP, Diameter) have messages too.
    for m in doc.sessions.iter().flat_map(|s| &s.messages).filter(|m| m.protocol == Protocol::Sip) {
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

/// The responses by code the document's statistics counted (none without SIP).
fn kpi_responses(doc: &Document) -> BTreeMap<u16, u64> {
    let codes = doc.kpis.as_ref().map(|k| k.total.responses.by_code.clone()).unwrap_or_default();
    codes.into_iter().map(|(code, n)| (code.parse().expect("a status code"), n)).collect()
}

/// Every stream of ours, orphans included.
fn all_rtp(doc: &Document) -> RtpStreams {
    doc.sessions.iter().flat_map(|s| &s.media).map(|m| ((m.src, m.dst, m.ssrc), (m.packets, m.lost))).collect()
}

#[test]
fn known_differences_name_corpus_files() {
    let Some(corpus) = common::corpus_dir() else { return };
    for (file, _, reason) in KNOWN_DIFFERENCES {
        assert!(corpus.join("public").join(file).is_file(), "{file} is not in the corpus");
        assert!(reason.len() > 40, "{file}: say why it differs");
    }
    for (file, _) in TSHARK_DECODE_AS {
        assert!(corpus.join("public").join(file).is_file(), "{file} is not in the corpus");
    }
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
    let (mut sip_files, mut messages, mut streams_agreeing, mut streams_total, mut calls) = (0, 0, 0, 0, 0);
    let mut kpi_responses_agreeing = 0;
    for file in &files {
        let name = file.strip_prefix(corpus.join("public")).unwrap().display().to_string();
        let extra = TSHARK_DECODE_AS.iter().find(|(f, _)| *f == name).map_or(&[][..], |(_, args)| *args);
        let (their_sip, their_rtp) = tshark(file, extra);
        let doc = ours(file);
        let (my_sip, my_rtp) = (our_sip(&doc), our_rtp(&doc));
        let signalled_elsewhere =
            KNOWN_DIFFERENCES.iter().any(|(f, a, _)| *f == name && *a == Aspect::RtpSignalledElsewhere);
        let (rtp_aspect, rtp_equal) = if signalled_elsewhere {
            // tshark's streams must all be among ours (the ones we could not attach to a call
            // as orphans) with the same counts.
            let all = all_rtp(&doc);
            (Aspect::RtpSignalledElsewhere, their_rtp.iter().all(|(k, v)| all.get(k) == Some(v)))
        } else {
            (Aspect::Rtp, my_rtp == their_rtp)
        };
        for (aspect, equal, detail) in [
            (Aspect::Sip, my_sip == their_sip, format!("tshark {their_sip:?}\n  ours   {my_sip:?}")),
            (
                Aspect::KpiResponses,
                kpi_responses(&doc) == their_sip.by_status,
                format!("tshark {:?}\n  kpis   {:?}", their_sip.by_status, kpi_responses(&doc)),
            ),
            (rtp_aspect, rtp_equal, format!("tshark {their_rtp:?}\n  ours   {:?}", all_rtp(&doc))),
        ] {
            let known = KNOWN_DIFFERENCES.iter().find(|(f, a, _)| *f == name && *a == aspect);
            match (equal, known) {
                (true, None) => {}
                (true, Some((_, Aspect::RtpSignalledElsewhere, reason))) => {
                    eprintln!("{name}: RTP found as orphans, as expected: {reason}")
                }
                (false, Some((_, Aspect::RtpSignalledElsewhere, _))) => {
                    disagreements.push(format!("{name}: tshark's RTP streams are not all among ours:\n  {detail}"))
                }
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
        if kpi_responses(&doc) == their_sip.by_status {
            kpi_responses_agreeing += their_sip.by_status.values().sum::<u64>();
        }
        let all = all_rtp(&doc);
        streams_total += their_rtp.len();
        streams_agreeing += their_rtp.iter().filter(|(k, v)| all.get(k) == Some(v)).count();
    }
    eprintln!(
        "tshark comparison: {} captures; SIP agrees on {sip_files} captures with SIP ({messages} messages, {calls} calls); \
         the statistics' responses by code agree ({kpi_responses_agreeing} responses); \
         {streams_agreeing} of tshark's {streams_total} RTP streams found with the same packets and lost",
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
