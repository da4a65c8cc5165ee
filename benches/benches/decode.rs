//! Criterion benchmarks of the decoders: SIP, SDP, RTP (header and statistics), RTCP, and capture record iteration.

use callflow_benches::{pipeline_capture, rtp_packet, sdp, INVITE};
use callflow_decode::capture::CaptureReader;
use callflow_decode::rtp::{RtpPacket, StreamStats};
use callflow_decode::sdp::Sdp;
use callflow_decode::sip::SipMessage;
use callflow_decode::{packet, Timestamp};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn sip(c: &mut Criterion) {
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_invite_and_pick_headers", |b| {
        b.iter(|| {
            let msg = SipMessage::parse(black_box(INVITE)).expect("INVITE parses");
            black_box((msg.call_id(), msg.cseq().map(|c| c.seq), msg.from().map(|f| f.tag), msg.top_via()));
        })
    });
    g.finish();
}

fn sdp_parse(c: &mut Criterion) {
    let body = sdp();
    c.bench_function("sdp/parse_offer", |b| b.iter(|| black_box(Sdp::parse(black_box(body)).expect("SDP parses"))));
}

fn rtp(c: &mut Criterion) {
    let packets: Vec<Vec<u8>> = (0..1000u16).map(|i| rtp_packet(i, u32::from(i) * 160)).collect();
    let mut g = c.benchmark_group("rtp");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.bench_function("parse_and_update_stats_1000", |b| {
        b.iter(|| {
            let mut stats = StreamStats::default();
            for (i, p) in packets.iter().enumerate() {
                let rtp = RtpPacket::parse(p).expect("RTP parses");
                let arrival = Timestamp::from_nanos(i as i64 * 20_000_000);
                stats.update(arrival, rtp.sequence, rtp.timestamp, Some(8000), rtp.marker, rtp.payload_type);
            }
            black_box(stats.lost())
        })
    });
    g.finish();
}

fn capture(c: &mut Criterion) {
    let bytes = std::fs::read(pipeline_capture()).expect("read the benchmark capture");
    let mut g = c.benchmark_group("capture");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("iterate_and_decode_frames", |b| {
        b.iter(|| {
            let mut reader = CaptureReader::from_bytes(bytes.clone()).expect("capture opens");
            let mut udp = 0u64;
            while let Some(frame) = reader.next_frame().expect("capture reads") {
                let p = packet::decode_frame(frame.link_type, frame.data);
                udp += u64::from(matches!(p.transport, packet::Transport::Udp { .. }));
            }
            black_box(udp)
        })
    });
    g.finish();
}

criterion_group!(benches, sip, sdp_parse, rtp, capture);
criterion_main!(benches);
