//! Criterion benchmark of the whole analysis: capture file in, `callflow/v1` document out.
//!
//! Set `CALLFLOW_BENCH_PCAP` to a generated capture to measure at size, e.g.
//! `cargo xtask gen-pcap --calls 40 --duration 60 --out /tmp/bench.pcap` (about 50 MB),
//! then `CALLFLOW_BENCH_PCAP=/tmp/bench.pcap cargo bench -p callflow-benches --bench pipeline`.

use callflow_benches::pipeline_capture;
use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn pipeline(c: &mut Criterion) {
    let path = pipeline_capture();
    let size = std::fs::metadata(&path).expect("benchmark capture exists").len();
    let packets = {
        let mut reader = CaptureReader::open(&path).expect("capture opens");
        std::iter::from_fn(|| reader.next_frame().ok().flatten().map(|_| ())).count() as u64
    };
    // Criterion reports one throughput per group: bytes/s in one, packets/s in the other.
    for (name, throughput) in
        [("pipeline", Throughput::Bytes(size)), ("pipeline_packets", Throughput::Elements(packets))]
    {
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        g.throughput(throughput);
        for threads in [1, 2] {
            g.bench_function(format!("analyze_threads_{threads}"), |b| {
                b.iter(|| {
                    let mut reader = CaptureReader::open(&path).expect("capture opens");
                    let opts = AnalyzerOptions { threads, ..AnalyzerOptions::default() };
                    let doc = analyze(&mut reader, "bench", opts, None).expect("analysis runs");
                    black_box(doc.sessions.len())
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
