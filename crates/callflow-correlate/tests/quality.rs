//! Voice quality with known numbers: synthetic G.711 streams with chosen loss, lateness and jitter run through the whole analysis, and a generated capture with 10 % loss.
//!
//! Each case writes a capture of RTP streams (PCMU, 20 ms packets, 8 kHz timestamps)
//! between address pairs nobody announced, so they come out as media-only sessions, and
//! checks the stream's `quality` and `timeline` against what the inputs predict.

#[path = "common/packets.rs"]
mod packets;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::{Document, MediaStream, Problem};
use packets::{ipv4, udp};
use std::path::Path;

/// One RTP packet to write: when (µs), which stream (0, 1, ...) and its sequence number.
#[derive(Clone, Copy)]
struct Rtp {
    us: u64,
    stream: u8,
    seq: u16,
}

/// A classic pcap (Ethernet) of the packets: stream `n` goes from 10.0.n.1:4000 to
/// 10.0.n.2:5000 with SSRC 1000 + n, PCMU, timestamp 160 per sequence number.
fn pcap(packets: &[Rtp]) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4], 262_144u32.to_le_bytes()] {
        out.extend_from_slice(&word);
    }
    out.extend_from_slice(&1u32.to_le_bytes());
    for p in packets {
        let mut rtp = vec![0x80, 0];
        rtp.extend_from_slice(&p.seq.to_be_bytes());
        rtp.extend_from_slice(&(u32::from(p.seq) * 160).to_be_bytes());
        rtp.extend_from_slice(&(1000 + u32::from(p.stream)).to_be_bytes());
        rtp.extend_from_slice(&[0xff; 160]);
        let ip = ipv4([10, 0, p.stream, 1], [10, 0, p.stream, 2], 17, 1, 0, &udp(4000, 5000, &rtp));
        let mut eth = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00];
        eth.extend_from_slice(&ip);
        let secs = 1_700_000_000 + p.us / 1_000_000;
        out.extend_from_slice(&(secs as u32).to_le_bytes());
        out.extend_from_slice(&((p.us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(eth.len() as u32).to_le_bytes());
        out.extend_from_slice(&(eth.len() as u32).to_le_bytes());
        out.extend_from_slice(&eth);
    }
    out
}

fn analyse_bytes(bytes: Vec<u8>) -> Document {
    let mut reader = CaptureReader::from_bytes(bytes).expect("capture");
    analyze(&mut reader, "test.pcap", AnalyzerOptions::default(), None).expect("analyze")
}

fn streams(doc: &Document) -> Vec<&MediaStream> {
    let mut all: Vec<&MediaStream> = doc.sessions.iter().flat_map(|s| &s.media).collect();
    all.sort_by_key(|m| m.ssrc);
    all
}

/// One stream of `n` packets, 20 ms apart, less those `dropped` says, each displaced by
/// `delay_us(seq)` µs (never reordered when the displacement grows slower than 20 ms).
fn stream(n: u16, dropped: impl Fn(u16) -> bool, delay_us: impl Fn(u16) -> u64) -> Vec<Rtp> {
    let mut packets: Vec<Rtp> = (0..n)
        .filter(|&s| !dropped(s))
        .map(|seq| Rtp { us: u64::from(seq) * 20_000 + delay_us(seq), stream: 0, seq })
        .collect();
    packets.sort_by_key(|p| p.us);
    packets
}

/// The one stream's (MOS, loss %, late %, burst ratio).
fn score(packets: &[Rtp]) -> (f64, f64, f64, f64) {
    let doc = analyse_bytes(pcap(packets));
    let all = streams(&doc);
    assert_eq!(all.len(), 1);
    let q = all[0].quality.as_ref().expect("PCMU is scored");
    assert_eq!((q.method.as_str(), q.codec_ie, q.bpl, q.jitter_buffer_ms), ("e-model g.107", 0.0, 25.1, 60.0));
    (q.mos, q.loss_pct, q.late_pct, q.burst_ratio)
}

/// A deterministic pseudo-random choice of about `per_mille` / 1000 of the numbers.
fn random(seq: u16, per_mille: u32) -> bool {
    let mut x = u32::from(seq).wrapping_mul(0x9E37_79B9) ^ 0x5bd1_e995;
    x ^= x >> 15;
    x = x.wrapping_mul(0x2c1b_3c6d);
    x ^= x >> 12;
    x % 1000 < per_mille
}

#[test]
fn loss_free_low_jitter_g711_scores_at_least_4_3() {
    // Up to 4 ms of displacement, no loss: R = 93.36 - Id(80 ms) 2.27 = 91.09, and
    // MOS = 1 + 0.035 * 91.09 + 91.09 * 31.09 * 8.91 * 7e-6 = 4.36.
    let (mos, loss, late, burst) = score(&stream(1500, |_| false, |s| u64::from(s % 3) * 2_000));
    assert_eq!((loss, late, burst), (0.0, 0.0, 1.0));
    assert!(mos >= 4.3, "{mos}");
    assert_eq!(mos, 4.36);
}

#[test]
fn ten_percent_random_loss_scores_at_most_3_6() {
    let packets = stream(3000, |s| s > 0 && random(s, 100), |_| 0);
    let (mos, loss, late, burst) = score(&packets);
    // About 10 % lost, one at a time or nearly: the burst ratio stays near 1.
    assert!((9.0..=11.0).contains(&loss), "{loss}");
    assert_eq!(late, 0.0);
    assert!(burst < 1.3, "{burst}");
    assert!(mos <= 3.6, "{mos}");
}

#[test]
fn burst_loss_scores_below_the_same_loss_spread_out() {
    // 10 % either way: every tenth packet, or runs of 10 out of every 100.
    let spread = score(&stream(3000, |s| s % 10 == 5, |_| 0));
    let bursty = score(&stream(3000, |s| s % 100 >= 50 && s % 100 < 60, |_| 0));
    assert_eq!((spread.1, bursty.1), (10.0, 10.0));
    // Spread out: mean burst 1 * 0.9, scored as random (1). Bursts of 10: 10 * 0.9 = 9.
    assert_eq!((spread.3, bursty.3), (1.0, 9.0));
    assert!(bursty.0 < spread.0, "bursty {} spread {}", bursty.0, spread.0);
    // By hand: spread, Ie,eff = 95 * 10 / (10 + 25.1) = 27.07, R = 93.36 - 2.27 - 27.07 =
    // 64.02, MOS 3.31; bursty, Ie,eff = 95 * 10 / (10 / 9 + 25.1) = 36.24, R = 54.85, MOS 2.83.
    assert_eq!((spread.0, bursty.0), (3.31, 2.83));
}

#[test]
fn packets_later_than_the_jitter_buffer_count_as_lost() {
    // Every 20th packet 80 ms late (past the 60 ms buffer), the rest on time: 5 % late.
    let (mos, loss, late, _) = score(&stream(2000, |_| false, |s| if s % 20 == 10 { 80_000 } else { 0 }));
    assert_eq!((loss, late), (5.0, 5.0));
    // The same packets 40 ms late are within the buffer: nothing is lost.
    let (clean_mos, loss, late, _) = score(&stream(2000, |_| false, |s| if s % 20 == 10 { 40_000 } else { 0 }));
    assert_eq!((loss, late), (0.0, 0.0));
    assert!(mos < clean_mos);
}

#[test]
fn timeline_shows_when_the_stream_went_bad() {
    // 15 s of packets; between 5 s and 10 s every other packet is lost.
    let doc = analyse_bytes(pcap(&stream(750, |s| (250..500).contains(&s) && s % 2 == 1, |_| 0)));
    let all = streams(&doc);
    let got: Vec<(u64, u64, u64)> = all[0].timeline.iter().map(|i| (i.packets, i.lost, i.late)).collect();
    // A gap is counted when the packet after it arrives: the last one (499) at 10 s.
    assert_eq!(got, vec![(250, 0, 0), (125, 124, 0), (250, 1, 0)]);
}

#[test]
fn generated_call_with_ten_percent_loss_scores_at_most_3_6() {
    // `cargo xtask gen-pcap --calls 1 --duration 12 --loss 0.1 --jitter-ms 5 --seed 7`
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/loss-10.pcap");
    let mut reader = CaptureReader::open(&path).expect("open");
    let doc = analyze(&mut reader, "loss-10.pcap", AnalyzerOptions::default(), None).expect("analyze");
    let all = streams(&doc);
    assert_eq!(all.len(), 2);
    for m in all {
        let q = m.quality.as_ref().expect("scored");
        assert!(q.mos <= 3.6 && q.loss_pct >= 8.0, "{q:?}");
    }
}

/// Six unrelated streams (one address pair each) of 30 s, 3 ms apart in phase, less the
/// packets `dropped(stream, seq, µs)` says.
fn six_streams(dropped: impl Fn(u8, u16, u64) -> bool) -> Vec<Rtp> {
    let mut packets: Vec<Rtp> = (0..6u8)
        .flat_map(|stream| {
            (0..1500u16).map(move |seq| Rtp { us: u64::from(seq) * 20_000 + u64::from(stream) * 3_000, stream, seq })
        })
        .filter(|p| !dropped(p.stream, p.seq, p.us))
        .collect();
    packets.sort_by_key(|p| p.us);
    packets
}

#[test]
fn capture_loss_is_found_when_every_stream_loses_at_once() {
    // The capture drops everything for 20 ms at 10 s, 15 s and 20 s: each stream loses the
    // one packet due then.
    let doc = analyse_bytes(pcap(&six_streams(|_, _, us| {
        [10_000_000, 15_000_000, 20_000_000].iter().any(|&t| (t..t + 20_000).contains(&us))
    })));
    let loss = doc.stats.capture_loss;
    assert_eq!((loss.events, loss.rtp_packets, loss.tcp_unseen_bytes), (3, 18, 0));
    let all = streams(&doc);
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|m| m.capture_loss && m.lost == 3), "every stream is flagged");
    // The loss is the capture's, so no stream has high_loss (1 packet in 500), and every
    // session says capture_loss.
    assert!(all.iter().all(|m| m.problems == [Problem::CaptureLoss]));
    assert!(doc.sessions.iter().all(|s| s.problems == [Problem::CaptureLoss]));
}

#[test]
fn capture_loss_is_not_found_on_independent_loss() {
    // Each stream loses about 3 % of its packets, on its own.
    let doc = analyse_bytes(pcap(&six_streams(|stream, seq, _| random(seq ^ (u16::from(stream) << 11), 30))));
    let all = streams(&doc);
    let lost: i64 = all.iter().map(|m| m.lost).sum();
    assert!(lost > 200, "{lost}");
    assert_eq!(doc.stats.capture_loss.events, 0);
    assert!(all.iter().all(|m| !m.capture_loss && !m.problems.contains(&Problem::CaptureLoss)));
}
