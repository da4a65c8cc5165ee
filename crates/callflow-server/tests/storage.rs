//! The server when its storage fails: a full disk, a database deleted under it. Each directory at fault is a small tmpfs the test mounts (tests run as root in CI).

mod common;

use common::{start, start_gated, upload_example, wait_finished, Gate};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (the test then has nothing to check) where mounting is not allowed, outside CI.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = format!("cannot mount a tmpfs (root is needed): {other:?}");
                assert!(std::env::var_os("CI").is_none(), "{why}");
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system up with a file; returns it, for [`Tmpfs::free`].
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 4096, 512] {
            while file.write_all(&vec![0; chunk]).is_ok() {}
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server still shutting down may hold files open in it.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

async fn status(client: &reqwest::Client, server: &common::TestServer, job: common::JobUuid) -> Value {
    server.get_json(client, &format!("/api/v1/jobs/{job}/status")).await
}

#[tokio::test]
async fn a_job_whose_end_the_full_disk_refused_is_recorded_once_space_is_freed_and_cancel_and_delete_work_on_it() {
    let Some(tmpfs) = Tmpfs::mount("8m") else { return };
    let results = tmpfs.path().join("results");
    let gate = Gate::new();
    let server = start_gated(&gate, |s| s.storage.results_dir = results.clone()).await;
    let client = reqwest::Client::new();
    let job = upload_example(&client, &server).await;
    gate.until(|s| s.running == 1).await;

    // The database's disk fills up; the job is cancelled and stops, but its end cannot be
    // written for longer than the worker's retries (10 s).
    let filler = tmpfs.fill();
    let cancel = client.post(server.url(&format!("/api/v1/jobs/{job}/cancel"))).send().await.unwrap();
    assert_eq!(cancel.status(), 200);
    gate.open();
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(status(&client, &server, job).await["status"], "running");
    // Cancelling again says why nothing can be recorded, rather than 200 and nothing.
    let cancel = client.post(server.url(&format!("/api/v1/jobs/{job}/cancel"))).send().await.unwrap();
    assert_eq!(cancel.status(), 507);
    let body: Value = cancel.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("job store's disk is full"), "{body}");

    // Space is freed: the end is recorded without anyone asking, and the job can be deleted.
    std::fs::remove_file(filler).unwrap();
    let done = wait_finished(&client, &server, job).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let deleted = client.delete(server.url(&format!("/api/v1/jobs/{job}"))).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    server.shutdown().await;
}

#[tokio::test]
async fn an_upload_to_a_full_disk_is_507_naming_the_upload_directory() {
    let Some(tmpfs) = Tmpfs::mount("1m") else { return };
    let uploads = tmpfs.path().join("uploads");
    let server = start(|s| s.storage.upload_dir = uploads.clone()).await;
    let client = reqwest::Client::new();
    let mut body = std::fs::read(common::example()).unwrap();
    // Larger than the file system: a valid capture header, then padding.
    body.resize(2 << 20, 0);
    let response = common::upload_raw(&client, &server, "", "application/vnd.tcpdump.pcap", body).await;
    assert_eq!(response.status(), 507);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("upload directory's disk is full"), "{body}");
    assert_eq!(server.uploads(), Vec::<String>::new(), "the partial file is removed");
    server.shutdown().await;
}

#[tokio::test]
async fn a_deleted_database_makes_health_and_uploads_503_instead_of_acknowledging_what_is_then_lost() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(server.url("/health")).send().await.unwrap().status(), 200);
    std::fs::remove_file(server.settings.storage.database_path()).unwrap();

    // The health check is reused for a second: polled (bounded) until it sees the change.
    let mut health = Value::Null;
    for _ in 0..100 {
        let response = client.get(server.url("/health")).send().await.unwrap();
        if response.status() == 503 {
            health = response.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health["storage"], "unwritable", "{health}");
    assert!(health["message"].as_str().unwrap().contains("deleted"), "{health}");

    let response = client
        .post(server.url("/api/v1/upload"))
        .header("content-type", "application/vnd.tcpdump.pcap")
        .body(std::fs::read(common::example()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("cannot be written"), "{body}");
    assert_eq!(server.uploads(), Vec::<String>::new());
    server.shutdown().await;
}
