//! Writes the SVG ladder of every SIP call of a capture, raw messages in the tooltips: how to embed callflowd's pictures in another tool.
//!
//! Run it with `cargo run -p callflow-render --example ladder_svg -- examples/captures/basic-call.pcap /tmp`.

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::SessionKind;
use callflow_render::{read_messages, render_ladder, Format, Ladder};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (capture, dir) = match (args.next(), args.next()) {
        (Some(c), Some(d)) => (PathBuf::from(c), PathBuf::from(d)),
        _ => return Err("usage: ladder_svg CAPTURE OUTPUT_DIR".into()),
    };
    let mut reader = CaptureReader::open(&capture)?;
    let doc = analyze(&mut reader, &capture.display().to_string(), AnalyzerOptions::default(), None)?;
    for call in doc.sessions.iter().filter(|s| s.kind == SessionKind::SipCall) {
        let frames: BTreeSet<u64> = call.messages.iter().map(|m| m.frame).collect();
        let raw = read_messages(&capture, &frames)?;
        let svg = render_ladder(&Ladder::build(&[call]), Format::Svg, Some(&raw));
        let out = Path::new(&dir).join(format!("{}.svg", call.id));
        std::fs::write(&out, svg)?;
        println!("{} {} -> {}: {}", call.call_id, call.from, call.to, out.display());
    }
    Ok(())
}
