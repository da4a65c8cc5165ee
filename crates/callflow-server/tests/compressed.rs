//! Gzip-compressed captures: bounded in what they inflate to and in how long their job runs, with progress by compressed bytes read.

mod common;
use common::JobIdOf;

use common::{start, wait_finished};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

/// A pcap file header (Ethernet): what follows is records.
fn pcap_header() -> Vec<u8> {
    let mut h = Vec::new();
    for field in [0xa1b2_c3d4u32.to_le_bytes().as_slice(), &2u16.to_le_bytes(), &4u16.to_le_bytes()] {
        h.extend_from_slice(field);
    }
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

/// One gzip member of `data`.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A gzip bomb: the pcap header, then `members` gzip members of 64 MiB of zeros each
/// (empty records: endless frames of nothing), about 64 KiB apiece.
fn bomb(members: usize) -> Vec<u8> {
    let mut file = gzip(&pcap_header());
    let zeros = gzip(&vec![0; 64 << 20]);
    for _ in 0..members {
        file.extend_from_slice(&zeros);
    }
    file
}

async fn upload(client: &reqwest::Client, server: &common::TestServer, body: Vec<u8>) -> common::JobUuid {
    let response = common::upload_raw(client, server, "?name=bomb.pcap.gz", "application/gzip", body).await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap().job_id()
}

#[tokio::test]
async fn a_gzip_bomb_fails_its_job_at_max_inflated_bytes() {
    let server = start(|s| s.limits.max_inflated_bytes = 1 << 20).await;
    let client = reqwest::Client::new();
    let job = upload(&client, &server, bomb(1)).await;
    let done = wait_finished(&client, &server, job).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["error"].as_str().unwrap().contains("limits.max_inflated_bytes (1048576 bytes)"), "{done}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_compressed_capture_runs_at_most_max_job_time_and_its_progress_counts_compressed_bytes() {
    let server = start(|s| s.limits.max_job_time = Duration::from_secs(1)).await;
    let client = reqwest::Client::new();
    // 16 GiB once inflated: far more than a second's work.
    let job = upload(&client, &server, bomb(256)).await;
    let done = wait_finished(&client, &server, job).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["error"].as_str().unwrap().contains("limits.max_job_time (1 s)"), "{done}");
    // Part of the compressed file was read: neither nothing nor the 99 % that counting
    // inflated bytes against the compressed size showed from the start.
    let progress = done["progress"].as_u64().unwrap();
    assert!(progress > 0 && progress < 99, "{done}");
    server.shutdown().await;
}
