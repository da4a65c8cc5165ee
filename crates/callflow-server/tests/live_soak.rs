//! A live job under a steady generated load for a bounded time: resident memory, open files and the bytes it keeps must stay within their bounds.
//!
//! The load is the example call replayed over and over, each pass a new call (its Call-ID
//! rewritten), a frame every 500 µs, stamped as sent. The run lasts `CALLFLOW_SOAK_SECS`
//! seconds (60 by default; the note's longer run sets it), sampling every 5 s; after the
//! first quarter (warm-up: the store, the hub's rings and the allocator reach their
//! working size) memory and descriptors must not grow beyond a small margin, and what the
//! job keeps must never pass `live.max_bytes`.

mod common;
use common::JobIdOf;

use common::{start_live, Replay};
use serde_json::json;
use std::time::{Duration, Instant};

const MAX_BYTES: u64 = 1 << 20;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn kept_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_job_under_steady_load_keeps_memory_files_and_disk_flat() {
    let secs: u64 = std::env::var("CALLFLOW_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let replay = Replay { gap: Duration::from_micros(500), loops: u64::MAX, new_call_ids: true, ..Replay::example() };
    let server = start_live(replay.sources(), |s| {
        s.processing.session_linger = Duration::from_secs(1);
        s.live.stats_interval = Duration::from_secs(1);
        s.live.segment_bytes = 256 << 10;
        s.live.max_bytes = MAX_BYTES;
    })
    .await;
    let client = reqwest::Client::new();
    let response = client.post(server.url("/api/v1/live")).json(&json!({"interface": "eth0"})).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let job: serde_json::Value = response.json().await.unwrap();
    let id = job.job_id();
    let dir = server.settings.live_capture_dir().join(id.to_string());

    let started = Instant::now();
    let warm = Duration::from_secs(secs / 4);
    let mut baseline: Option<(u64, usize, u64)> = None;
    let (mut max_rss, mut max_files, mut max_kept) = (0u64, 0usize, 0u64);
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let status = server.get_json(&client, &format!("/api/v1/jobs/{id}/status")).await;
        assert_eq!(status["status"], "running", "{status}");
        let (rss, files, kept) = (rss_kib(), open_files(), kept_bytes(&dir));
        let sessions = status["session_count"].as_u64().unwrap();
        samples.push((started.elapsed().as_secs(), rss, files, kept, status["packets"].as_u64().unwrap(), sessions));
        max_kept = max_kept.max(kept);
        if started.elapsed() >= warm {
            match baseline {
                None => baseline = Some((rss, files, sessions)),
                Some(_) => {
                    max_rss = max_rss.max(rss);
                    max_files = max_files.max(files);
                }
            }
        }
    }
    eprintln!("secs rss_kib open_files kept_bytes packets sessions");
    for s in &samples {
        eprintln!("{} {} {} {} {} {}", s.0, s.1, s.2, s.3, s.4, s.5);
    }
    let (base_rss, base_files, base_sessions) = baseline.expect("sampled after the warm-up");
    let last = samples.last().unwrap();
    assert!(last.5 > base_sessions + 10, "the load made calls all along: {samples:?}");
    assert!(max_kept <= MAX_BYTES, "kept {max_kept} bytes, over live.max_bytes = {MAX_BYTES}");
    assert!(max_files <= base_files + 8, "open files grew from {base_files} to {max_files}");
    assert!(max_rss <= base_rss + 32 * 1024, "resident memory grew from {base_rss} KiB to {max_rss} KiB");

    let deleted = client.delete(server.url(&format!("/api/v1/jobs/{id}"))).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(!dir.exists());
    server.shutdown().await;
}
