//! Reading ahead on a second thread must not change a single number: every capture, mapped or streamed, gives the same document with 1 and 2 threads.

mod common;

use callflow_correlate::{analyze, analyze_with, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_model::Document;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

fn opts(threads: usize) -> AnalyzerOptions {
    AnalyzerOptions { threads, ..AnalyzerOptions::default() }
}

/// The captures of this crate's test data and the bundled example, then the shared corpus.
fn captures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = common::captures_under(&root.join("test_data"));
    all.extend(common::captures_under(&root.join("../../examples/captures")));
    if let Some(corpus) = common::corpus_dir() {
        all.extend(common::captures_under(&corpus));
    }
    all
}

/// The whole analysis as JSON, with sessions as handed to a sink (in the order they
/// ended) when `sink` is set.
fn run(reader: &mut CaptureReader, threads: usize, sink: bool) -> Option<String> {
    let mut handed = Vec::new();
    let mut collect = |s| handed.push(s);
    let sink: Option<&mut dyn FnMut(_)> = if sink { Some(&mut collect) } else { None };
    let doc = analyze(reader, "x", opts(threads), sink).ok()?;
    Some(serde_json::to_string(&(doc, handed)).expect("documents serialize"))
}

#[test]
fn two_threads_give_the_same_document_as_one_on_every_capture() {
    let captures = captures();
    assert!(captures.len() >= 4, "the test data is there");
    let mut compared = 0;
    for path in &captures {
        for sink in [false, true] {
            let one = CaptureReader::open(path).ok().and_then(|mut r| run(&mut r, 1, sink));
            let two = CaptureReader::open(path).ok().and_then(|mut r| run(&mut r, 2, sink));
            assert_eq!(one, two, "{} (sink: {sink})", path.display());
            compared += usize::from(one.is_some());
        }
    }
    assert!(compared >= 8, "only {compared} captures analysed");
}

#[test]
fn a_stream_read_ahead_gives_the_same_document_as_the_mapped_file() {
    // A stream's frames are copied between the threads rather than shared: the other path.
    for path in captures().iter().take(40) {
        let Ok(mut mapped) = CaptureReader::open(path) else { continue };
        let Some(expected) = run(&mut mapped, 1, false) else { continue };
        let mut bytes = Vec::new();
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).expect("capture reads");
        let mut stream = CaptureReader::from_reader(Box::new(std::io::Cursor::new(bytes))).expect("stream opens");
        // The source block says how the capture was read (a stream has no known size).
        let got = run(&mut stream, 2, false).map(without_source);
        assert_eq!(got, Some(without_source(expected)), "{}", path.display());
    }
}

/// What [`run`] gave, without the document's `source` block.
fn without_source(json: String) -> serde_json::Value {
    let mut value: serde_json::Value = serde_json::from_str(&json).expect("parses back");
    if let Some(doc) = value.get_mut(0).and_then(|d| d.as_object_mut()) {
        doc.remove("source");
    }
    value
}

#[test]
fn stopping_early_stops_both_threads_at_the_same_frame() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/outcomes.pcap");
    for threads in [1, 2] {
        let mut reader = CaptureReader::open(&path).expect("test capture");
        let mut seen = 0;
        let mut control = |frames: u64, _: u64| {
            seen = frames;
            if frames == 50 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let doc = analyze_with(&mut reader, "x", opts(threads), None, &mut control).expect("analysis runs");
        assert_eq!((seen, doc.source.packets, doc.source.complete), (50, 50, false), "threads: {threads}");
    }
}

#[test]
fn progress_reports_the_same_byte_counts_with_two_threads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/tcp-vlan.pcap");
    let reports = |threads| {
        let mut reader = CaptureReader::open(&path).expect("test capture");
        let mut seen = Vec::new();
        let mut control = |frames: u64, bytes: u64| {
            seen.push((frames, bytes));
            ControlFlow::Continue(())
        };
        analyze_with(&mut reader, "x", opts(threads), None, &mut control).expect("analysis runs");
        seen
    };
    let one = reports(1);
    assert!(one.len() > 100);
    assert_eq!(one, reports(2));
}

#[test]
fn a_capture_cut_short_reads_the_same_frames_and_warns_the_same_way() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/loss-jitter.pcap");
    let mut bytes = std::fs::read(path).expect("test capture");
    bytes.truncate(bytes.len() * 2 / 3);
    // In memory (frames shared between the threads) and as a stream (frames copied).
    let open = |stream: bool| {
        if stream {
            CaptureReader::from_reader(Box::new(std::io::Cursor::new(bytes.clone()))).expect("opens")
        } else {
            CaptureReader::from_bytes(bytes.clone()).expect("opens")
        }
    };
    for stream in [false, true] {
        let docs: Vec<Document> = [1, 2]
            .map(|threads| {
                analyze(&mut open(stream), "x", opts(threads), None)
                    .expect("a truncated capture still gives a document")
            })
            .into();
        assert!(!docs[0].source.complete);
        assert_eq!(docs[0].source.warnings.len(), 1, "{:?}", docs[0].source.warnings);
        assert!(docs[0].source.packets > 100);
        let json: Vec<String> = docs.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
        assert_eq!(json[0], json[1], "stream: {stream}");
    }
}
