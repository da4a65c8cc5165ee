//! A live job on a network interface inside a test-made network namespace: the example call replayed onto a veth pair is found as from the file.
//!
//! Needs root (namespaces, veth, packet sockets): without it the test says so and returns,
//! except when `CI` is set, where it fails.

mod common;
use common::JobIdOf;
// The namespaces and veth pair of callflow-live's capture tests.
#[path = "../../callflow-live/tests/common/netns.rs"]
mod netns;

use common::{start, upload_example, wait_finished};
use netns::{root_or_skip, VethPair};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_live_job_on_an_interface_in_a_namespace_finds_the_call_replayed_onto_it_as_the_file_does() {
    if !root_or_skip("a_live_job_on_an_interface_in_a_namespace") {
        return;
    }
    let veth = VethPair::new(None);
    let server = start(|s| {
        s.processing.session_linger = Duration::from_secs(1);
        s.capture.enabled = true;
    })
    .await;
    let client = reqwest::Client::new();
    // An interface that is not there: the request's error, naming it.
    let body = json!({"interface": "nosuchif0", "netns": format!("/run/netns/{}", veth.capture_ns)});
    let response = client.post(server.url("/api/v1/live")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let v: Value = response.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("unknown network interface \"nosuchif0\""), "{v}");
    let body = json!({"interface": veth.capture_if, "netns": format!("/run/netns/{}", veth.capture_ns),
                      "filter": "udp"});
    let response = client.post(server.url("/api/v1/live")).json(&body).send().await.unwrap();
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["status"], "running", "{job}");
    let id = job.job_id();

    let frames: Vec<Vec<u8>> = common::read_frames(&common::example()).into_iter().map(|(_, data)| data).collect();
    // Kept until the job has ended: an interface that disappears fails the job.
    let _veth = tokio::task::spawn_blocking(move || {
        veth.send_frames(frames, Duration::from_millis(1));
        veth
    })
    .await
    .unwrap();
    // The call closes a second after its BYE; then the job is stopped.
    let mut live = Value::Null;
    for _ in 0..300 {
        live = server.get_json(&client, &format!("/api/v1/jobs/{id}/sessions")).await;
        if live["total"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live["total"], 1, "{live}");
    client.post(server.url(&format!("/api/v1/jobs/{id}/cancel"))).send().await.unwrap();
    let done = wait_finished(&client, &server, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["packets"], 607, "every frame replayed was captured: {done}");

    let upload = upload_example(&client, &server).await;
    wait_finished(&client, &server, upload).await;
    let file = server.get_json(&client, &format!("/api/v1/jobs/{upload}/sessions")).await;
    let summary = |page: &Value| {
        let s = &page["sessions"][0];
        (s["call_id"].clone(), s["state"].clone(), s["messages"].clone(), s["media"].clone())
    };
    assert_eq!(summary(&live), summary(&file), "live {live}\nfile {file}");
    server.shutdown().await;
}
