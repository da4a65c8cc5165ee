//! Helpers shared by the job tests: temporary directories and captures of any length made from the bundled example.

#![allow(dead_code)]

pub mod pg;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The bundled example: one call, INVITE to BYE, with RTP both ways.
pub fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")
}

/// A fresh directory under the system temp dir, removed with what it holds when the
/// returned guard is dropped (at the end of the test that made it): each test run used to
/// leave some tens of MB behind.
pub fn temp_dir(name: &str) -> TempDir {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "callflow-jobs-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A directory [`temp_dir`] made; it reads as its path.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a pcap of the example call repeated `copies` times, each copy a minute after
/// the previous one ends (so each becomes its own session), and returns its path.
pub fn long_capture(dir: &Path, copies: u32) -> PathBuf {
    let bytes = std::fs::read(example()).unwrap();
    assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian microsecond pcap");
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        records.push(&bytes[at..at + 16 + caplen]);
        at += 16 + caplen;
    }
    let secs = |r: &[u8]| u32::from_le_bytes(r[..4].try_into().unwrap());
    let span = secs(records.last().unwrap()) - secs(records[0]) + 60;
    let mut out = Vec::with_capacity(24 + (bytes.len() - 24) * copies as usize);
    out.extend_from_slice(&bytes[..24]);
    for copy in 0..copies {
        for r in &records {
            out.extend_from_slice(&(secs(r) + copy * span).to_le_bytes());
            out.extend_from_slice(&r[4..]);
        }
    }
    let path = dir.join(format!("long-{copies}.pcap"));
    std::fs::write(&path, out).unwrap();
    path
}
