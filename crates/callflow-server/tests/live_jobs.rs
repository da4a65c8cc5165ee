//! Live jobs against a real server: `POST /api/v1/live`, their session, stats and notice events over WebSocket and SSE, sessions while they run, their ends (cancel, DELETE, duration), the retained window and bad bodies.

mod common;
use common::JobIdOf;

use common::{next_of, start, start_live, wait_finished, Replay};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

/// Calls close a second after their BYE, so that a replayed call is reported at once.
fn quick(s: &mut callflow_config::Settings) {
    s.processing.session_linger = Duration::from_secs(1);
    s.live.stats_interval = Duration::from_millis(200);
}

async fn post_live(client: &reqwest::Client, server: &common::TestServer, body: Value) -> (u16, Value) {
    let response = client.post(server.url("/api/v1/live")).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_live_job_streams_sessions_and_stats_lists_them_while_running_and_stops_on_cancel() {
    let server = start_live(
        Replay { notice: Some("stream lost; reconnecting in 1 s".into()), ..Replay::example() }.sources(),
        quick,
    )
    .await;
    let client = reqwest::Client::new();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
    let (status, job) = post_live(&client, &server, json!({"interface": "eth0", "filter": "udp"})).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["status"], "running");
    assert_eq!(
        job["live"]["source"],
        json!({"interface": {"interfaces": ["eth0"], "netns": null, "filter": "udp",
        "promiscuous": true, "snaplen": 262144}})
    );
    let id = job.job_id();

    // The session, the source's notice and counters that include the session, in whatever order.
    let (mut session, mut notice, mut stats) = (None, None, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while session.is_none() || notice.is_none() || stats.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "{session:?} {notice:?} {stats:?}");
        let v: Value = serde_json::from_str(&common::next_text(&mut ws).await).unwrap();
        match v["type"].as_str() {
            Some("session") => session = Some(v),
            Some("notice") => notice = Some(v),
            Some("stats") if v["live"]["sessions"] == 1 => stats = Some(v),
            _ => {}
        }
    }
    let (session, notice, stats) = (session.unwrap(), notice.unwrap(), stats.unwrap());
    assert_eq!(session["session"]["call_id"], "f6e05c1257cfe591-0@10.1.0.1");
    assert_eq!(session["session"]["media"], 2);
    assert_eq!(notice["message"], "stream lost; reconnecting in 1 s");
    assert_eq!(stats["live"]["packets"], 607, "{stats}");
    assert_eq!(stats["live"]["dropped"], 0);
    assert!(stats["live"]["retained_bytes"].as_u64().unwrap() > 140_000, "{stats}");

    // Listed and fetched while the job runs.
    let page = server.get_json(&client, &format!("/api/v1/jobs/{id}/sessions")).await;
    assert_eq!(page["total"], 1, "{page}");
    let sid = page["sessions"][0]["id"].as_str().unwrap().to_string();
    let status = server.get_json(&client, &format!("/api/v1/jobs/{id}/status")).await;
    assert_eq!((status["status"].as_str(), status["session_count"].as_u64()), (Some("running"), Some(1)));
    let doc = server.get_json(&client, &format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(doc["messages"].as_array().unwrap().len(), 7);
    // Its pcap, cut from the files the job keeps: the same packets as cut from the capture
    // replayed (only their times differ, stamped as they were sent).
    let pcap = client.get(server.url(&format!("/api/v1/jobs/{id}/sessions/{sid}/pcap"))).send().await.unwrap();
    assert_eq!(pcap.status(), 200);
    let bytes = pcap.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (live, file) = (dir.path().join("live.pcap"), dir.path().join("file.pcap"));
    std::fs::write(&live, &bytes).unwrap();
    let upload = common::upload_example(&client, &server).await;
    wait_finished(&client, &server, upload).await;
    let uploaded = server.get_json(&client, &format!("/api/v1/jobs/{upload}/sessions")).await;
    let usid = uploaded["sessions"][0]["id"].as_str().unwrap();
    let url = server.url(&format!("/api/v1/jobs/{upload}/sessions/{usid}/pcap"));
    std::fs::write(&file, client.get(url).send().await.unwrap().bytes().await.unwrap()).unwrap();
    let live_frames = common::read_frames(&live);
    assert!(live_frames.len() > 600, "{}", live_frames.len());
    let file_frames = common::read_frames(&file);
    let differ: Vec<usize> = (0..live_frames.len().max(file_frames.len()))
        .filter(|&i| live_frames.get(i) != file_frames.get(i))
        .take(5)
        .collect();
    assert!(
        differ.is_empty(),
        "the live job's pcap differs from the file's: {} frames against {}, first at {differ:?}",
        live_frames.len(),
        file_frames.len()
    );
    let text =
        client.get(server.url(&format!("/api/v1/jobs/{id}/sessions/{sid}/ladder?format=html"))).send().await.unwrap();
    assert_eq!(text.status(), 200);

    let cancelled = client.post(server.url(&format!("/api/v1/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    let done = wait_finished(&client, &server, id).await;
    assert_eq!((done["status"].as_str(), done["session_count"].as_u64()), (Some("completed"), Some(1)), "{done}");
    let page = server.get_json(&client, &format!("/api/v1/jobs/{id}/sessions")).await;
    assert_eq!(page["total"], 1, "a stopped live job keeps its sessions");
    server.shutdown().await;
}

/// Reads SSE blocks until one of type `stop` arrives; returns the event names in order.
async fn sse_until(response: reqwest::Response, stop: &str) -> Vec<String> {
    let mut stream = response.bytes_stream();
    let (mut buf, mut events) = (String::new(), Vec::new());
    loop {
        let chunk =
            tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("in time").unwrap().unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(event) = block.lines().find_map(|l| l.strip_prefix("event:")) {
                events.push(event.trim().to_string());
                if event.trim() == stop {
                    return events;
                }
            }
        }
    }
}

#[tokio::test]
async fn sse_follows_a_live_job_and_delete_stops_it_and_removes_its_files() {
    let server = start_live(Replay::example().sources(), quick).await;
    let client = reqwest::Client::new();
    let (status, job) = post_live(&client, &server, json!({"hep": true})).await;
    assert_eq!(status, 201, "{job}");
    let id = job.job_id();
    let events = client.get(server.url(&format!("/api/v1/jobs/{id}/events"))).send().await.unwrap();
    let seen = sse_until(events, "session").await;
    assert_eq!(seen[0], "full_state");
    assert!(seen.contains(&"stats".to_string()), "{seen:?}");

    let dir = server.settings.live_capture_dir().join(id.to_string());
    assert!(std::fs::read_dir(&dir).unwrap().count() >= 1, "the job keeps its traffic in {}", dir.display());
    let deleted = client.delete(server.url(&format!("/api/v1/jobs/{id}"))).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = client.get(server.url(&format!("/api/v1/jobs/{id}/status"))).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert!(!dir.exists(), "the job's files go with it");
    server.shutdown().await;
}

#[tokio::test]
async fn a_live_job_ends_after_its_duration_with_the_calls_still_open_handed_out() {
    // The default linger (32 s) is longer than the job: the call is handed out at its end.
    let server = start_live(Replay::example().sources(), |_| {}).await;
    let client = reqwest::Client::new();
    let (status, job) = post_live(&client, &server, json!({"url": "ws://127.0.0.1:9/capture", "duration": "2s"})).await;
    assert_eq!(status, 201, "{job}");
    let id = job.job_id();
    let done = wait_finished(&client, &server, id).await;
    assert_eq!((done["status"].as_str(), done["session_count"].as_u64()), (Some("completed"), Some(1)), "{done}");
    assert_eq!(done["packets"], 607);
    server.shutdown().await;
}

#[tokio::test]
async fn the_pcap_of_a_call_aged_out_of_the_retained_window_is_410_naming_the_window() {
    let server = start_live(Replay::example().sources(), |s| {
        quick(s);
        s.live.segment_bytes = 16_384;
        s.live.max_bytes = 32_768;
    })
    .await;
    let client = reqwest::Client::new();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
    let (_, job) = post_live(&client, &server, json!({"interface": "any"})).await;
    let id = job.job_id();
    let session = next_of(&mut ws, id, "session").await;
    let sid = session["session"]["id"].as_str().unwrap();
    let stats = next_of(&mut ws, id, "stats").await;
    assert!(stats["live"]["retained_bytes"].as_u64().unwrap() <= 32_768, "{stats}");
    let response = client.get(server.url(&format!("/api/v1/sessions/{sid}/pcap"))).send().await.unwrap();
    assert_eq!(response.status(), 410);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "aged_out");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("aged out of the live job's retained window")
            && message.contains("it keeps frames ")
            && message.contains("live.max_bytes = 32768 bytes, live.max_age = 1h"),
        "{message}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_live_bodies_and_sources_that_cannot_open_are_400_naming_the_problem() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    for (body, needle) in [
        (json!({"interfce": "eth0"}), "no source"),
        (json!({"interface": "eth0", "fliter": "udp"}), "unknown field `fliter`"),
        (json!({"interface": "eth0", "netns": "relative"}), "`netns` must be"),
        (json!({"url": "http://example.net/"}), "`url` must be a ws://"),
        (json!({"hep": true, "duration": "soon"}), "`duration`: `soon`"),
    ] {
        let (status, v) = post_live(&client, &server, body.clone()).await;
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_request")), "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    let not_json = client
        .post(server.url("/api/v1/live"))
        .header("content-type", "application/json")
        .body("{interface")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    // Interfaces are captured only with [capture] enabled.
    let (status, v) = post_live(&client, &server, json!({"interface": "eth0"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("capture.enabled = true"), "{v}");
    // A source that cannot be opened is this request's error, never a job: nothing listens
    // on the discard port, and the first connection's failure is the answer.
    let (status, v) = post_live(&client, &server, json!({"url": "ws://127.0.0.1:9/capture"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_request")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().starts_with("cannot open the live source: "), "{v}");
    let jobs = server.get_json(&client, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"], json!([]), "no refused request made a job");
    server.shutdown().await;
}

#[tokio::test]
async fn live_jobs_beyond_live_max_jobs_are_refused() {
    let server = start_live(Replay::example().sources(), |s| s.live.max_jobs = 1).await;
    let client = reqwest::Client::new();
    let (status, first) = post_live(&client, &server, json!({"hep": true})).await;
    assert_eq!(status, 201);
    let (status, v) = post_live(&client, &server, json!({"hep": true})).await;
    assert_eq!(status, 503, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("live.max_jobs"), "{v}");
    let id = first.job_id();
    client.post(server.url(&format!("/api/v1/jobs/{id}/cancel"))).send().await.unwrap();
    wait_finished(&client, &server, id).await;
    let (status, _) = post_live(&client, &server, json!({"hep": true})).await;
    assert_eq!(status, 201, "room again once the first has ended");
    server.shutdown().await;
}

/// A Packetflix-like stream server on loopback: each connection gets a pcapng stream of
/// the next `chunks[i]` frames of the example; every connection but the last is then cut
/// without a close frame (a lost stream), the last stays open.
async fn flaky_stream_server(chunks: Vec<std::ops::Range<usize>>) -> std::net::SocketAddr {
    use callflow_live::capture::CapturedInterface;
    use callflow_live::pcapng::{StreamWriter, TargetInfo};
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frames = common::read_frames(&common::example());
    tokio::spawn(async move {
        let last = chunks.len() - 1;
        for (n, range) in chunks.into_iter().enumerate() {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let iface = CapturedInterface { name: "eth0".into(), link_type: frames[0].0, snaplen: 262_144 };
            let (mut writer, head) = StreamWriter::start(&TargetInfo::default(), &[iface]);
            ws.send(Message::binary(head)).await.unwrap();
            for (link_type, data) in &frames[range] {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                let frame = callflow_decode::capture::Frame {
                    number: 0,
                    ts: callflow_decode::Timestamp::from_nanos(now.as_nanos() as i64),
                    link_type: *link_type,
                    data,
                    orig_len: data.len() as u32,
                    interface: 0,
                };
                let mut out = Vec::new();
                writer.packet(&frame, &mut out);
                ws.send(Message::binary(out)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if n == last {
                // Held open until the job stops.
                while ws.next().await.is_some_and(|m| m.is_ok()) {}
            }
            // Dropped without a close frame: the connection is lost.
        }
    });
    addr
}

#[tokio::test]
async fn a_lost_remote_stream_reconnects_and_says_so_in_the_job_s_events() {
    // The call's first 300 frames, the connection lost, then the rest after reconnecting.
    let addr = flaky_stream_server(vec![0..300, 300..607]).await;
    let server = start(quick).await;
    let client = reqwest::Client::new();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
    let (status, job) = post_live(&client, &server, json!({"url": format!("packetflix:ws://{addr}/capture")})).await;
    assert_eq!(status, 201, "{job}");
    let id = job.job_id();
    let lost = next_of(&mut ws, id, "notice").await;
    let lost = lost["message"].as_str().unwrap().to_string();
    assert!(lost.starts_with("the remote stream was lost (") && lost.contains("connecting again in 1.0 s"), "{lost}");
    let back = next_of(&mut ws, id, "notice").await;
    assert_eq!(back["message"], "the remote stream is back (attempt 1)");
    let session = next_of(&mut ws, id, "session").await;
    assert_eq!(session["session"]["call_id"], "f6e05c1257cfe591-0@10.1.0.1");
    client.post(server.url(&format!("/api/v1/jobs/{id}/cancel"))).send().await.unwrap();
    let done = wait_finished(&client, &server, id).await;
    assert_eq!((done["status"].as_str(), done["packets"].as_u64()), (Some("completed"), Some(607)), "{done}");
    server.shutdown().await;
}
