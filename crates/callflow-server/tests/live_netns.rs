//! A live job on a network interface inside a test-made network namespace: the example call replayed onto a veth pair is found as from the file.
//!
//! Needs root (namespaces, veth, packet sockets): without it the test says so and returns,
//! except when `CI` is set, where it fails.

mod common;

use common::{start, upload_example, wait_finished};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

fn root_or_skip(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    let has_ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if root && has_ip {
        return true;
    }
    let why = if root { "the `ip` command (iproute2) is missing" } else { "not root: network namespaces need root" };
    assert!(std::env::var_os("CI").is_none(), "{test}: {why} (CI is set, so this fails instead of skipping)");
    eprintln!("{test}: skipped: {why}");
    false
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("running ip");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

/// Two namespaces joined by a veth pair, both ends up; removed on drop.
struct Veth {
    sender_ns: String,
    capture_ns: String,
    sender_if: String,
    capture_if: String,
}

impl Veth {
    fn new() -> Veth {
        let tag = format!("{:x}", std::process::id());
        let veth = Veth {
            sender_ns: format!("cflj-{tag}-s"),
            capture_ns: format!("cflj-{tag}-c"),
            sender_if: format!("lj{tag}s"),
            capture_if: format!("lj{tag}c"),
        };
        ip(&["netns", "add", &veth.sender_ns]);
        ip(&["netns", "add", &veth.capture_ns]);
        ip(&[
            "link",
            "add",
            &veth.sender_if,
            "netns",
            &veth.sender_ns,
            "type",
            "veth",
            "peer",
            "name",
            &veth.capture_if,
            "netns",
            &veth.capture_ns,
        ]);
        for (ns, dev) in [(&veth.sender_ns, &veth.sender_if), (&veth.capture_ns, &veth.capture_if)] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        veth
    }

    /// Sends every frame of `frames` as it is from the sender's end, a frame a millisecond.
    fn replay(&self, frames: Vec<Vec<u8>>) {
        let (ns, dev) = (format!("/run/netns/{}", self.sender_ns), self.sender_if.clone());
        std::thread::spawn(move || {
            let target = callflow_live::netns::NetnsTarget::Path(ns.into());
            callflow_live::netns::resolve(&target).unwrap().enter().unwrap();
            let mut out = pcap::Capture::from_device(dev.as_str()).unwrap().open().unwrap();
            for frame in frames {
                out.sendpacket(frame).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .join()
        .unwrap();
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and so its peer.
        for ns in [&self.sender_ns, &self.capture_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[tokio::test]
async fn a_live_job_on_an_interface_in_a_namespace_finds_the_call_replayed_onto_it_as_the_file_does() {
    if !root_or_skip("a_live_job_on_an_interface_in_a_namespace") {
        return;
    }
    let veth = Veth::new();
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
    assert_eq!(job["status"], "RUNNING", "{job}");
    let id = job["job_id"].as_i64().unwrap();

    let frames: Vec<Vec<u8>> = common::read_frames(&common::example()).into_iter().map(|(_, data)| data).collect();
    // Kept until the job has ended: an interface that disappears fails the job.
    let _veth = tokio::task::spawn_blocking(move || {
        veth.replay(frames);
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
    assert_eq!(done["status"], "COMPLETED", "{done}");
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
