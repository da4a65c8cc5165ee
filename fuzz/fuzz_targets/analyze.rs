//! Fuzz target: a whole capture run through the analyzer (fragments, TCP, dialogs, media, sweeps), not only the decoders.
#![no_main]
use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = CaptureReader::from_bytes(data.to_vec()) {
        let _ = analyze(&mut reader, "fuzz", AnalyzerOptions::default(), None);
    }
});
