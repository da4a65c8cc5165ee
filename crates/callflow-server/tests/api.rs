//! The REST API against a real server on loopback: the end-to-end scenario, and every error status.

mod common;

use callflow_decode::capture::CaptureReader;
use common::{example, start, upload_example, upload_pcap, wait_finished, JobIdOf};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("a message in time");
        match msg.expect("open").expect("no error") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn upload_follow_over_websocket_list_fetch_download_and_delete() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "full_state");
    assert_eq!(first["jobs"], serde_json::json!([]));

    let job = upload_example(&client, &server).await;
    let mut seen = Vec::new();
    loop {
        let msg = next_json(&mut ws).await;
        assert!(msg.job_id_is(job), "{msg}");
        seen.push(msg["type"].as_str().unwrap().to_string());
        if msg["type"] == "status" && msg["job"]["status"] == "completed" {
            break;
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("status"), "queued first: {seen:?}");
    assert!(seen.contains(&"session".to_string()) && seen.contains(&"stats".to_string()), "{seen:?}");
    ws.send(Message::Text("ping".into())).await.unwrap();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) if t.as_str() == "pong" => break,
            _ => {}
        }
    }

    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("callflow_packets_analysed_total{node=\"test\"} 607\n"), "{metrics}");
    assert!(metrics.contains("callflow_upload_bytes_total{node=\"test\"} 140777\n"), "{metrics}");
    assert!(metrics.contains("callflow_websocket_clients{node=\"test\"} 1\n"), "{metrics}");
    let status: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/status")).await;
    assert_eq!(
        (status["status"].as_str(), status["progress"].as_u64(), status["session_count"].as_u64()),
        (Some("completed"), Some(100), Some(1))
    );
    // Times are seconds since the epoch, as in callflow/v1, and in order.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let times: Vec<f64> =
        ["created_at", "started_at", "completed_at"].iter().map(|t| status[t].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && (now - times[0]).abs() < 600.0, "{times:?} at {now}");
    // The OpenAPI document's Job schema is what the status says: the same fields, the same types.
    let doc: Value = server.get_json(&client, "/api/v1/openapi.json").await;
    let schema = doc["components"]["schemas"]["Job"]["properties"].as_object().unwrap();
    let mut fields: Vec<&String> = status.as_object().unwrap().keys().collect();
    fields.sort();
    let mut documented: Vec<&String> = schema.keys().collect();
    documented.sort();
    assert_eq!(fields, documented);
    for (name, prop) in schema {
        let value = &status[name];
        let fits = match prop["type"].as_str().unwrap() {
            _ if value.is_null() => prop["nullable"] == true,
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_f64(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "array" => value.as_array().is_some_and(|items| items.iter().all(Value::is_string)),
            other => panic!("{other}"),
        };
        assert!(fits, "{name}: {value} is not {prop}");
    }
    let op = &doc["paths"]["/api/v1/jobs/{id}/status"]["get"]["responses"]["200"];
    assert_eq!(op["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Job");
    let jobs: Value = server.get_json(&client, "/api/v1/jobs?status=completed&limit=10").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1);
    let none: Value = server.get_json(&client, "/api/v1/jobs?status=running").await;
    assert_eq!(none["jobs"], serde_json::json!([]));

    let page: Value =
        server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions?limit=10&kind=sip_call&problem=false")).await;
    assert_eq!(page["total"], 1);
    let sid = page["sessions"][0]["id"].as_str().unwrap().to_string();
    let call_id = page["sessions"][0]["call_id"].as_str().unwrap().to_string();
    let q: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions?q={}", &call_id[..4])).await;
    assert_eq!(q["total"], 1);
    let other: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions?kind=rtp")).await;
    assert_eq!(other["total"], 0);

    let session: Value = server.get_json(&client, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(session["call_id"], call_id.as_str());
    let messages = session["messages"].as_array().unwrap();
    assert!(!messages.is_empty() && !session["media"].as_array().unwrap().is_empty());

    let response = client.get(server.url(&format!("/api/v1/sessions/{sid}/pcap"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/vnd.tcpdump.pcap");
    let pcap = response.bytes().await.unwrap().to_vec();
    let mut reader = CaptureReader::from_bytes(pcap).unwrap();
    let mut frames = 0u64;
    while reader.next_frame().unwrap().is_some() {
        frames += 1;
    }
    let rtp: u64 = session["media"].as_array().unwrap().iter().map(|m| m["packets"].as_u64().unwrap()).sum();
    // An RTCP compound packet is listed under each stream it reports on: count frames once.
    let rtcp: std::collections::BTreeSet<u64> = session["media"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["rtcp"].as_array().cloned().unwrap_or_default())
        .map(|r| r["frame"].as_u64().unwrap())
        .collect();
    let rtcp = rtcp.len();
    assert_eq!(frames, messages.len() as u64 + rtp + rtcp as u64, "every SIP, RTP and RTCP frame of the call");
    let mut whole = CaptureReader::open(example()).unwrap();
    let mut all = 0u64;
    while whole.next_frame().unwrap().is_some() {
        all += 1;
    }
    assert!(frames <= all);

    let response = client.delete(server.url(&format!("/api/v1/jobs/{job}"))).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let response = client.get(server.url(&format!("/api/v1/jobs/{job}/status"))).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(server.uploads(), Vec::<String>::new(), "the upload is deleted");
    let deleted = next_json(&mut ws).await;
    assert_eq!(deleted["type"], "deleted");
    server.shutdown().await;
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let v: Value = response.json().await.unwrap();
    (status, v["error"]["code"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn each_error_status_with_its_code() {
    let server = start(|s| s.limits.max_upload_bytes = 1000).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(server.url(path)).send();

    let html = client
        .post(server.url("/api/v1/upload"))
        .header("content-type", "application/octet-stream")
        .body("<html>nope</html>");
    assert_eq!(error_of(html.send().await.unwrap()).await, (415, "unsupported_media_type".into()));
    let text = client.post(server.url("/api/v1/upload")).header("content-type", "text/plain").body("x");
    assert_eq!(error_of(text.send().await.unwrap()).await, (415, "unsupported_media_type".into()));
    let big = client
        .post(server.url("/api/v1/upload"))
        .header("content-type", "application/octet-stream")
        .body(std::fs::read(example()).unwrap());
    assert_eq!(error_of(big.send().await.unwrap()).await, (413, "payload_too_large".into()));
    // Without a Content-Length the limit is found while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        std::fs::read(example()).unwrap().chunks(300).map(|c| Ok(c.to_vec())).collect();
    let streamed = client
        .post(server.url("/api/v1/upload"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)));
    assert_eq!(error_of(streamed.send().await.unwrap()).await, (413, "payload_too_large".into()));
    let form = reqwest::multipart::Form::new().text("name", "x");
    let no_file = client.post(server.url("/api/v1/upload")).multipart(form);
    assert_eq!(error_of(no_file.send().await.unwrap()).await, (400, "bad_request".into()));
    assert_eq!(server.uploads(), Vec::<String>::new(), "partial files removed");

    assert_eq!(error_of(get("/api/v1/jobs/42/status").await.unwrap()).await, (404, "job_not_found".into()));
    assert_eq!(error_of(get("/api/v1/jobs/abc/status").await.unwrap()).await, (404, "job_not_found".into()));
    assert_eq!(error_of(get("/api/v1/sessions/nope").await.unwrap()).await, (404, "session_not_found".into()));
    assert_eq!(error_of(get("/nowhere").await.unwrap()).await, (404, "route_not_found".into()));
    assert_eq!(error_of(get("/api/v1/jobs?status=NAPPING").await.unwrap()).await, (400, "bad_request".into()));
    assert_eq!(error_of(get("/api/v1/ws").await.unwrap()).await, (426, "upgrade_required".into()));

    // A small capture fits under the limit as a multipart upload.
    let small = tiny_pcap();
    let part = reqwest::multipart::Part::bytes(small).file_name("../../etc/evil.pcap");
    let response = client
        .post(server.url("/api/v1/upload"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let v: Value = response.json().await.unwrap();
    let job = v.job_id();
    assert_eq!(v["name"], "../../etc/evil.pcap", "kept as a label only");
    server.the_upload();
    wait_finished(&client, &server, job).await;
    assert_eq!(
        error_of(get(&format!("/api/v1/jobs/{job}/sessions?limit=1001")).await.unwrap()).await,
        (400, "bad_request".into())
    );
    assert_eq!(
        error_of(get(&format!("/api/v1/jobs/{job}/sessions?kind=fax")).await.unwrap()).await,
        (400, "bad_request".into())
    );
    let cancel = client.post(server.url(&format!("/api/v1/jobs/{job}/cancel"))).send().await.unwrap();
    assert_eq!(error_of(cancel).await, (409, "conflict".into()));
    server.shutdown().await;
}

/// A valid pcap holding one small UDP frame.
fn tiny_pcap() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let frame = [0u8; 60];
    for v in [1u32, 0, 60, 60] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&frame);
    out
}

#[tokio::test]
async fn auth_keys_login_tokens_rate_limit_and_the_4001_close() {
    let server = start(|s| {
        s.auth.enabled = true;
        s.auth.api_keys = vec!["k3y-k3y-k3y-k3y-".into()];
        s.auth.users = [("ann".to_string(), callflow_server::hash_password("pw"))].into();
        s.limits.rate_limit_per_second = 1;
        s.limits.rate_limit_burst = 15;
    })
    .await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(server.url("/health")).send().await.unwrap().status(), 200, "public");
    assert_eq!(
        error_of(client.get(server.url("/api/v1/jobs")).send().await.unwrap()).await,
        (401, "unauthorized".into())
    );
    let wrong = client.get(server.url("/api/v1/jobs")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        client.get(server.url("/api/v1/jobs")).bearer_auth("k3y-k3y-k3y-k3y-").send().await.unwrap().status(),
        200
    );
    let bad = client
        .post(server.url("/api/login"))
        .json(&serde_json::json!({"username": "ann", "password": "no"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(bad).await, (401, "bad_login".into()));
    let token = server.login(&client, "ann", "pw").await;
    assert_eq!(client.get(server.url("/api/v1/jobs")).bearer_auth(&token).send().await.unwrap().status(), 200);
    assert_eq!(
        client.get(server.url("/api/v1/jobs?token=k3y-k3y-k3y-k3y-")).send().await.unwrap().status(),
        200,
        "?token= works too"
    );
    let sse = client.get(server.url("/api/v1/jobs/1/events")).send().await.unwrap();
    assert_eq!(sse.status(), 401, "SSE without a token");
    let sse = client.get(server.url(&format!("/api/v1/jobs/1/events?token={token}"))).send().await.unwrap();
    assert_eq!(error_of(sse).await, (404, "job_not_found".into()), "authorized, and there is no job 1");

    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("{other:?}"),
    }
    let (mut ws, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/api/v1/ws?token={token}"))).await.unwrap();
    let Message::Text(first) = ws.next().await.unwrap().unwrap() else { panic!() };
    assert!(first.contains("full_state"));

    // Most of the burst (15) is spent by now (12 requests), and one token a second comes back.
    let mut limited = None;
    for _ in 0..40 {
        let r = client.get(server.url("/version")).send().await.unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("rate limited");
    assert!(limited.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(error_of(limited).await, (429, "rate_limited".into()));
    server.shutdown().await;
}

#[tokio::test]
async fn deleting_a_running_job_cancels_it_first() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    // 200,000 small frames: long enough to be caught running.
    let mut capture = tiny_pcap();
    let frame = capture[24..].to_vec();
    for _ in 1..200_000 {
        capture.extend_from_slice(&frame);
    }
    let job = common::upload_pcap(&client, &server, "", capture).await;
    for _ in 0..500 {
        let v: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/status")).await;
        if v["status"] != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let response = client.delete(server.url(&format!("/api/v1/jobs/{job}"))).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(client.get(server.url(&format!("/api/v1/jobs/{job}/status"))).send().await.unwrap().status(), 404);
    assert_eq!(server.uploads(), Vec::<String>::new());
    server.shutdown().await;
}

/// Deleting a running job waited for it to stop on a blocking thread, up to 10 s; with
/// the pool's threads all taken (here its only one), every request needing the store
/// waited as long.
#[test]
fn deleting_a_job_slow_to_stop_holds_no_blocking_thread_while_it_waits() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let gate = common::Gate::new();
        let server = common::start_gated(&gate, |_| {}).await;
        let client = reqwest::Client::new();
        let job = upload_example(&client, &server).await;
        gate.until(|s| s.running == 1).await;
        let delete = tokio::spawn(client.delete(server.url(&format!("/api/v1/jobs/{job}"))).send());
        // Cancelled, and stopping only once the gate opens.
        gate.until(|s| s.asked_to_stop == 1).await;
        let list = server.get_json(&client, "/api/v1/jobs");
        let jobs = tokio::time::timeout(Duration::from_secs(30), list).await.expect("the blocking thread is free");
        assert_eq!(jobs["jobs"][0]["status"], "running");
        assert!(!delete.is_finished(), "the delete waits for the job to stop");
        gate.open();
        assert_eq!(delete.await.unwrap().unwrap().status(), 204);
        let status = client.get(server.url(&format!("/api/v1/jobs/{job}/status"))).send().await.unwrap();
        assert_eq!(status.status(), 404);
        assert_eq!(server.uploads(), Vec::<String>::new(), "the upload is deleted");
        server.shutdown().await;
    });
}

#[tokio::test]
async fn a_job_that_does_not_stop_within_10_s_of_its_delete_is_kept_and_409_says_why() {
    let gate = common::Gate::new();
    let server = common::start_gated(&gate, |_| {}).await;
    let client = reqwest::Client::new();
    let job = upload_example(&client, &server).await;
    gate.until(|s| s.running == 1).await;
    let response = client.delete(server.url(&format!("/api/v1/jobs/{job}"))).send().await.unwrap();
    assert_eq!(response.status(), 409);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "conflict");
    assert_eq!(
        v["error"]["message"],
        format!("job {job} was cancelled but is still running after 10 s; delete it again once it has stopped")
    );
    server.the_upload();
    // Once it has stopped, the same request deletes it.
    gate.open();
    assert_eq!(wait_finished(&client, &server, job).await["status"], "cancelled");
    let response = client.delete(server.url(&format!("/api/v1/jobs/{job}"))).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(server.uploads(), Vec::<String>::new());
    server.shutdown().await;
}

#[tokio::test]
async fn an_upload_is_named_by_its_job_id_an_aborted_one_leaves_nothing_and_a_restart_clears_partial_files() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    // While it arrives, the file is named by the id reserved for its job; no job shows yet.
    let (tx, aborted) = common::held_upload(&client, &server, tiny_pcap()).await;
    let mut uploading = Vec::new();
    for _ in 0..500 {
        uploading = server.uploads();
        if !uploading.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reserved: i64 = uploading[0].strip_suffix(".capture.part").expect("a .part file").parse().unwrap();
    assert_eq!(uploading.len(), 1);
    let jobs: Value = server.get_json(&client, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"], serde_json::json!([]), "no job until the upload is complete");
    // The client breaks off: the partial file goes, and no job ever appears.
    tx.send(Err(std::io::Error::other("client gave up"))).await.unwrap();
    assert!(aborted.await.unwrap().is_err());
    for _ in 0..500 {
        if server.uploads().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.uploads(), Vec::<String>::new());

    let job = upload_example(&client, &server).await;
    wait_finished(&client, &server, job).await;
    // Named by the store's key for the job (not the UUID clients see).
    let placed = server.uploads();
    assert_eq!(placed.len(), 1, "{placed:?}");
    let key: i64 = placed[0].strip_suffix(".capture").expect("a placed capture").parse().unwrap();
    assert!(key > reserved, "the aborted upload's key is not reused");

    // A crash mid-upload leaves a .part file, or a placed file whose job was never created:
    // the next start removes the .part file of an id this store reserved and nothing else
    // (a capture without a job, or a .part file of an id it never handed out, may be
    // another store's: reported, and removed only by `--remove-orphan-captures`).
    let dir = server.shutdown().await;
    let uploads = dir.path().join("uploads");
    let (ours, foreign) = (format!("{reserved}.capture.part"), format!("{}.capture.part", key + 1));
    for name in [ours, foreign.clone(), format!("{}.capture", key + 2), "notes.txt".into()] {
        std::fs::write(uploads.join(name), b"x").unwrap();
    }
    let server = common::start_in(dir, |_| {}).await;
    let kept = [format!("{key}.capture"), foreign, format!("{}.capture", key + 2), "notes.txt".into()];
    assert_eq!(server.uploads(), kept);
    let jobs: Value = server.get_json(&client, "/api/v1/jobs").await;
    let ids: Vec<common::JobUuid> = jobs["jobs"].as_array().unwrap().iter().map(|j| j.job_id()).collect();
    assert_eq!(ids, [job], "no half upload became a job");
    server.shutdown().await;
}

#[tokio::test]
async fn sessions_filtered_by_problem_and_the_parameter_in_openapi() {
    // A call with 10 % loss both ways (high_loss, low_mos); [quality] min_mos lowered to 3.0
    // in the configuration takes low_mos away.
    let capture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../callflow-correlate/test_data/loss-10.pcap");
    let body = std::fs::read(&capture).unwrap();
    let client = reqwest::Client::new();
    for (min_mos, low_mos) in [(3.6, 1), (3.0, 0)] {
        let server = start(|s| s.quality.min_mos = min_mos).await;
        let job = upload_pcap(&client, &server, "", body.clone()).await;
        wait_finished(&client, &server, job).await;
        let total = |query: &'static str| {
            let (client, server) = (&client, &server);
            async move {
                let page: Value = server.get_json(client, &format!("/api/v1/jobs/{job}/sessions?{query}")).await;
                page["total"].as_u64().unwrap()
            }
        };
        assert_eq!(total("problem=true").await, 1);
        assert_eq!(total("problem=false").await, 0);
        assert_eq!(total("problem=high_loss").await, 1);
        assert_eq!(total("problem=low_mos").await, low_mos, "min_mos {min_mos}");
        assert_eq!(total("problem=no_ack").await, 0);
        let response = client.get(server.url(&format!("/api/v1/jobs/{job}/sessions?problem=loud"))).send().await;
        assert_eq!(response.unwrap().status(), 400);
    }
    let server = start(|_| {}).await;
    let doc: Value = server.get_json(&client, "/api/v1/openapi.json").await;
    let params = doc["paths"]["/api/v1/jobs/{id}/sessions"]["get"]["parameters"].as_array().unwrap();
    let problem = params.iter().find(|p| p["name"] == "problem").expect("problem parameter");
    let values: Vec<&str> = problem["schema"]["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(values.len(), 14);
    assert!(values.contains(&"true") && values.contains(&"capture_loss") && values.contains(&"one_way_audio"));
}

/// The first SSE event named `event` of a response, as JSON (bounded wait).
async fn first_sse_data(response: reqwest::Response, event: &str) -> Value {
    let mut stream = response.bytes_stream();
    let mut buf = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("in time");
        buf.push_str(std::str::from_utf8(&chunk.expect("open").unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if block.lines().any(|l| l.strip_prefix("event:").is_some_and(|e| e.trim() == event)) {
                let data = block.lines().find_map(|l| l.strip_prefix("data:")).expect("data");
                return serde_json::from_str(data.trim()).unwrap();
            }
        }
    }
}

#[tokio::test]
async fn job_status_is_one_lowercase_spelling_everywhere_and_filters_take_either_case() {
    const STATES: [&str; 5] = ["queued", "running", "completed", "failed", "cancelled"];
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "full_state");
    // The upload's answer says "queued" (asserted by the helper), as it always did.
    let job = upload_example(&client, &server).await;
    let mut pushed = Vec::new();
    while !pushed.last().is_some_and(|s: &String| s.eq_ignore_ascii_case("completed")) {
        let msg = next_json(&mut ws).await;
        if msg["type"] == "status" {
            pushed.push(msg["job"]["status"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(pushed, ["queued", "running", "completed"], "WebSocket status pushes");
    let status = server.get_json(&client, &format!("/api/v1/jobs/{job}/status")).await;
    assert_eq!(status["status"], "completed", "/status");
    for filter in ["completed", "COMPLETED", "Completed"] {
        let jobs = server.get_json(&client, &format!("/api/v1/jobs?status={filter}")).await;
        let statuses: Vec<&Value> = jobs["jobs"].as_array().unwrap().iter().map(|j| &j["status"]).collect();
        assert_eq!(statuses, [&Value::from("completed")], "listing with ?status={filter}");
    }
    for filter in ["running", "RUNNING"] {
        assert_eq!(server.get_json(&client, &format!("/api/v1/jobs?status={filter}")).await["jobs"], json!([]));
    }
    let unknown = client.get(server.url("/api/v1/jobs?status=done")).send().await.unwrap();
    assert_eq!(unknown.status(), 400);
    let message = unknown.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("queued, running, completed, failed, cancelled"), "{message}");
    let sse = client.get(server.url(&format!("/api/v1/jobs/{job}/events"))).send().await.unwrap();
    assert_eq!(first_sse_data(sse, "full_state").await["jobs"][0]["status"], "completed", "SSE");
    let stats = server.get_json(&client, &format!("/api/v1/jobs/{job}/stats")).await;
    assert_eq!(stats["status"], "completed", "/stats");
    let metrics = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for state in STATES {
        let n = if state == "completed" { 1 } else { 0 };
        assert!(
            metrics.contains(&format!("callflow_jobs{{state=\"{state}\",node=\"test\"}} {n}\n")),
            "{state}: {metrics}"
        );
    }
    let doc = server.get_json(&client, "/api/v1/openapi.json").await;
    assert_eq!(doc["components"]["schemas"]["Job"]["properties"]["status"]["enum"], json!(STATES));
    let params = doc["paths"]["/api/v1/jobs"]["get"]["parameters"].as_array().unwrap();
    let param = params.iter().find(|p| p["name"] == "status").expect("the listing's status parameter");
    assert_eq!(param["schema"]["enum"], json!(STATES));
    server.shutdown().await;
}

#[tokio::test]
async fn nodes_lists_this_one_node_alive_and_a_job_names_the_node_that_ran_it() {
    let server = start(|s| {
        s.cluster.node_name = "node-1".into();
        s.cluster.advertise_url = "http://node-1.example:8080".into();
        s.processing.workers = 2;
    })
    .await;
    let client = reqwest::Client::new();
    let job = upload_example(&client, &server).await;
    let done = wait_finished(&client, &server, job).await;
    assert_eq!(
        (done["status"].as_str(), done["node"].as_str(), done["attempts"].as_u64()),
        (Some("completed"), Some("node-1"), Some(1))
    );
    let nodes = server.get_json(&client, "/api/v1/nodes").await;
    assert_eq!(nodes["node"], "node-1");
    let list = nodes["nodes"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{nodes}");
    let node = &list[0];
    assert_eq!(
        (&node["name"], &node["advertise_url"], &node["version"], &node["workers"], &node["running"], &node["alive"]),
        (
            &json!("node-1"),
            &json!("http://node-1.example:8080"),
            &json!(env!("CARGO_PKG_VERSION")),
            &json!(2),
            &json!(0),
            &json!(true)
        )
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let last_seen = node["last_seen"].as_f64().unwrap();
    assert!(last_seen <= now + 1.0 && last_seen > now - 60.0, "{last_seen} vs {now}");
}

/// A job made before ids were UUIDs keeps answering at its number after the upgrade, and
/// gets a UUID that names it too; jobs made after have UUIDs only. The database is made by
/// this build and taken back to the schema before UUIDs (what an older callflowd left).
#[tokio::test]
async fn a_job_made_before_uuids_answers_at_its_old_number_and_at_its_new_uuid() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let job = upload_example(&client, &server).await;
    wait_finished(&client, &server, job).await;
    let sessions: Value = server.get_json(&client, &format!("/api/v1/jobs/{job}/sessions")).await;
    let dir = server.shutdown().await;
    let db = dir.path().join("results/callflow.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "DROP INDEX jobs_by_uuid; DROP INDEX jobs_by_alias; ALTER TABLE jobs DROP COLUMN uuid;
             ALTER TABLE jobs DROP COLUMN alias; ALTER TABLE events DROP COLUMN job_uuid; PRAGMA user_version = 8;",
        )
        .unwrap();
    let server = common::start_in(dir, |_| {}).await;
    let old: Value = server.get_json(&client, "/api/v1/jobs/1/status").await;
    let uuid = old.job_id();
    assert_eq!((old["status"].as_str(), uuid.get_version_num()), (Some("completed"), 7), "{old}");
    assert_ne!(uuid, job, "a UUID of its own, made by the upgrade");
    for id in ["1".to_string(), uuid.to_string()] {
        let page: Value = server.get_json(&client, &format!("/api/v1/jobs/{id}/sessions")).await;
        assert_eq!(page["sessions"], sessions["sessions"], "{id}: the same sessions");
        assert!(page.job_id_is(uuid), "{page}");
    }
    let jobs: Value = server.get_json(&client, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"][0].job_id(), uuid);
    // A job made now has no number: its key is not a name clients can count through.
    let new = upload_example(&client, &server).await;
    wait_finished(&client, &server, new).await;
    let missing = client.get(server.url("/api/v1/jobs/2/status")).send().await.unwrap();
    assert_eq!(error_of(missing).await, (404, "job_not_found".into()));
    server.shutdown().await;
}
