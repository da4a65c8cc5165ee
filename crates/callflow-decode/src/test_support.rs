//! What this crate's unit tests share: where the shared capture corpus is.

use std::path::{Path, PathBuf};

/// The shared corpus (`../shared/pcaps` beside the repository, or `CALLFLOW_PCAPS`), or
/// `None` with a line saying the corpus checks are skipped. In CI (`CI` set) a missing
/// corpus is a failure, so the checks can never be skipped there unnoticed.
pub(crate) fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CALLFLOW_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "the capture corpus is missing at {}", dir.display());
    eprintln!("capture corpus not found at {}: corpus checks skipped", dir.display());
    None
}
