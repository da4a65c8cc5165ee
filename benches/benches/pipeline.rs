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
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(size));
    g.bench_function("analyze", |b| {
        b.iter(|| {
            let mut reader = CaptureReader::open(&path).expect("capture opens");
            let doc = analyze(&mut reader, "bench", AnalyzerOptions::default(), None).expect("analysis runs");
            black_box(doc.sessions.len())
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
