//! Session ids: unique within a document and the same for the same input, on every capture of the corpus.

mod common;

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use std::collections::HashSet;
use std::path::Path;

#[test]
fn session_ids_are_unique_within_a_document_and_stable_across_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut captures = common::captures_under(&root.join("../../examples/captures"));
    if let Some(corpus) = common::corpus_dir() {
        captures.extend(common::captures_under(&corpus));
    }
    let mut sessions = 0;
    for path in &captures {
        let ids = |_| {
            let mut reader = CaptureReader::open(path).ok()?;
            let doc = analyze(&mut reader, "x", AnalyzerOptions::default(), None).ok()?;
            Some(doc.sessions.into_iter().map(|s| s.id).collect::<Vec<_>>())
        };
        let (Some(first), Some(second)) = (ids(1), ids(2)) else { continue };
        let unique: HashSet<&String> = first.iter().collect();
        assert_eq!(unique.len(), first.len(), "{}: an id is given twice", path.display());
        assert_eq!(first, second, "{}: the ids changed between runs", path.display());
        sessions += first.len();
    }
    assert!(sessions > 0, "some sessions were checked");
}
