//! Prints one line per SIP call of a capture: how to embed callflowd's analysis in another tool.
//!
//! Run it with `cargo run -p callflow-correlate --example call_summary -- examples/captures/basic-call.pcap`.

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::SessionKind;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: call_summary CAPTURE")?;
    let mut reader = CaptureReader::open(&path)?;
    let doc = analyze(&mut reader, &path, AnalyzerOptions::default(), None)?;
    for call in doc.sessions.iter().filter(|s| s.kind == SessionKind::SipCall) {
        let lost: i64 = call.media.iter().map(|m| m.lost).sum();
        let worst_jitter = call.media.iter().map(|m| m.max_jitter_ms).fold(0.0, f64::max);
        println!(
            "{} {} -> {}: {}, {} messages, {} streams, {lost} lost, max jitter {worst_jitter:.2} ms",
            call.call_id,
            call.from,
            call.to,
            call.state,
            call.messages.len(),
            call.media.len()
        );
    }
    Ok(())
}
