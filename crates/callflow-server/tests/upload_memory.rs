//! A large upload is streamed to disk: the process's peak memory does not grow with it. (Its own test binary, so that no other test shares the process.)

mod common;

/// The process's peak resident set (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_upload_keeps_memory_flat_and_is_removed_with_its_job() {
    const MIB: usize = 1 << 20;
    const TOTAL_MIB: usize = 256;
    let server = common::start(|_| {}).await;
    let client = reqwest::Client::new();
    let before = peak_rss();
    // A pcap header, then 0xff bytes: a record whose length is impossible, so the
    // analysis stops at once (a capture that breaks off) instead of reading 256 MiB.
    let chunks = futures_util::stream::iter((0..TOTAL_MIB).map(|i| {
        let mut chunk = vec![0xffu8; MIB];
        if i == 0 {
            chunk[..4].copy_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1]);
        }
        Ok::<_, std::io::Error>(chunk)
    }));
    let response = client
        .post(server.url("/api/v1/upload"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let v: serde_json::Value = response.json().await.unwrap();
    assert_eq!(v["bytes"], (TOTAL_MIB * MIB) as u64);
    let grown = peak_rss().saturating_sub(before);
    assert!(grown < 64 * MIB as u64, "peak memory grew by {} MiB for a {TOTAL_MIB} MiB upload", grown / MIB as u64);

    let job = v["job_id"].as_i64().unwrap();
    common::wait_finished(&client, &server, job).await;
    let response = client.delete(server.url(&format!("/api/v1/jobs/{job}"))).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(server.uploads(), Vec::<String>::new());
    server.shutdown().await;
}
