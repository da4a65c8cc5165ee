//! An upload with a TLS key log (multipart part `keylog`): the job decrypts SIP over TLS with it; a key log without any secret is refused before a job exists.

mod common;
use common::JobIdOf;

use common::{start, wait_finished};
use serde_json::Value;
use std::path::PathBuf;

fn tls_capture() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../callflow-correlate/test_data");
    (dir.join("sip-tls13.pcap"), dir.join("sip-tls13.keys"))
}

fn form(capture: &PathBuf, keylog: Vec<u8>) -> reqwest::multipart::Form {
    let file = reqwest::multipart::Part::bytes(std::fs::read(capture).unwrap()).file_name("sip-tls13.pcap");
    let keys = reqwest::multipart::Part::bytes(keylog).file_name("sslkeys.log");
    reqwest::multipart::Form::new().part("file", file).part("keylog", keys)
}

#[tokio::test]
async fn an_upload_with_a_keylog_part_is_decrypted() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let (capture, keys) = tls_capture();
    let response =
        client.post(server.url("/api/v1/upload")).multipart(form(&capture, std::fs::read(&keys).unwrap())).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), 201);
    let job = response.json::<Value>().await.unwrap().job_id();
    let status = wait_finished(&client, &server, job).await;
    assert!(status["status"].as_str().unwrap().eq_ignore_ascii_case("completed"), "{status}");
    let page: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions?kind=sip_call")).await;
    assert_eq!(page["total"], 1, "{page}");
    let none: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions?kind=tls")).await;
    assert_eq!(none["total"], 0, "{none}");

    // A key log with no secret at all: refused, no job, nothing left in the upload directory.
    let before = server.uploads();
    let response =
        client.post(server.url("/api/v1/upload")).multipart(form(&capture, b"not a key log\n".to_vec())).send().await;
    let response = response.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("keylog") && message.contains("line 1"), "{message}");
    assert_eq!(server.uploads(), before);
    server.shutdown().await;
}

/// Regression: file jobs shared the manager's one key log, so the secrets a pcapng carried
/// (Decryption Secrets Blocks) decrypted every later job's capture, and stayed in memory.
#[tokio::test]
async fn the_secrets_one_upload_carries_do_not_decrypt_another_jobs_capture() {
    let (capture, keys) = tls_capture();
    let have_editcap = std::process::Command::new("editcap").arg("-h").output().is_ok_and(|o| o.status.success());
    if !have_editcap {
        assert!(std::env::var_os("CI").is_none(), "editcap (tshark's package) is missing");
        eprintln!("skipped: editcap is missing");
        return;
    }
    let dir = std::env::temp_dir().join(format!("callflow-tls-bleed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let with_secrets = dir.join("with-secrets.pcapng");
    let status = std::process::Command::new("editcap")
        .arg("--inject-secrets")
        .arg(format!("tls,{}", keys.display()))
        .arg(&capture)
        .arg(&with_secrets)
        .status()
        .unwrap();
    assert!(status.success());
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let mut kinds = Vec::new();
    for (path, name) in [(&with_secrets, "with-secrets.pcapng"), (&capture, "no-secrets.pcap")] {
        let part = reqwest::multipart::Part::bytes(std::fs::read(path).unwrap()).file_name(name);
        let form = reqwest::multipart::Form::new().part("file", part);
        let response = client.post(server.url("/api/v1/upload")).multipart(form).send().await.unwrap();
        assert_eq!(response.status(), 201);
        let job = response.json::<Value>().await.unwrap().job_id();
        wait_finished(&client, &server, job).await;
        let count = |kind: &'static str| {
            let (client, server) = (&client, &server);
            async move {
                let page: Value = server.get_json(client, &format!("/api/v1/jobs/{job}/sessions?kind={kind}")).await;
                page["total"].as_u64().unwrap()
            }
        };
        kinds.push((count("sip_call").await, count("tls").await));
    }
    assert_eq!(kinds, [(1, 0), (0, 1)], "decrypted with its own secrets; the next capture has none");
    server.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
