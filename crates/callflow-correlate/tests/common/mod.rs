//! Helpers shared by this crate's integration tests: finding the shared corpus and the oracle tools.

use std::path::{Path, PathBuf};

/// The shared capture corpus (../shared/pcaps beside the repository), or `None` with a
/// line saying the corpus part is skipped. In CI (env `CI` set) a missing corpus fails.
// Some test binaries only need the oracle tools.
#[allow(dead_code)]
pub fn corpus_dir() -> Option<PathBuf> {
    // `CALLFLOW_PCAPS` points elsewhere, for a checkout that does not sit beside shared/.
    let dir = std::env::var_os("CALLFLOW_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "CI is set but the corpus {} is missing", dir.display());
    eprintln!("corpus {} not found: skipping the corpus part of this test", dir.display());
    None
}

/// True when `tool` runs; otherwise says the test part is skipped (failing in CI).
// Each test binary compiles this module, and not every one needs an oracle tool.
#[allow(dead_code)]
pub fn have_tool(tool: &str) -> bool {
    let ok = std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI is set but {tool} is not installed");
        eprintln!("{tool} not found: skipping the part of this test that needs it");
    }
    ok
}

/// Every capture file below `dir` (pcap, pcapng, cap, gz), sorted, skipping `expected/` folders.
// Not every test binary walks the corpus; some read one capture of it.
#[allow(dead_code)]
pub fn captures_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "expected") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| ["pcap", "pcapng", "cap", "gz"].iter().any(|x| e == *x)) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
