//! Event ids from the store's event log: a stream resumes after a restart and on another node with exactly the events it missed, a resume older than the log's retention gets the state again, and two servers on one PostgreSQL database see each other's jobs' events in order.

mod common;

use common::{start, start_in, upload_example, wait_finished};
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// Reads SSE events (`id`, `event`, `data`) from a response until `stop` says so.
async fn read_sse(response: reqwest::Response, mut stop: impl FnMut(&str, &Value) -> bool) -> Vec<(u64, Value)> {
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    // One bound for the whole stream: its keep-alive comments would reset one per chunk.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let chunk = next.unwrap_or_else(|_| panic!("events in time; so far {events:?}")).unwrap().unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
            let (Some(event), Some(data)) = (field("event:"), field("data:")) else { continue };
            let id = field("id:").map_or(0, |id| id.parse().unwrap());
            let data: Value = serde_json::from_str(&data).unwrap();
            let done = stop(&event, &data);
            events.push((id, data));
            if done {
                return events;
            }
        }
    }
}

fn is_completed(kind: &str, data: &Value) -> bool {
    kind == "status" && data["job"]["status"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("completed"))
}

/// Every event of `job` after `after`, through its completion, over SSE.
async fn sse_after(client: &reqwest::Client, base: &str, job: i64, after: u64) -> Vec<(u64, Value)> {
    let url = format!("{base}/api/v1/jobs/{job}/events");
    let response = client.get(url).header("Last-Event-ID", after.to_string()).send().await.unwrap();
    read_sse(response, is_completed).await
}

/// The WebSocket's messages after `?last_event_id=after` until the job completes.
async fn ws_after(ws_base: &str, job: i64, after: u64) -> Vec<Value> {
    let url = format!("{ws_base}/api/v1/jobs/{job}/ws?last_event_id={after}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut out = Vec::new();
    loop {
        let text = common::next_text(&mut ws).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["type"] == "heartbeat" {
            continue;
        }
        let done = is_completed(v["type"].as_str().unwrap(), &v);
        out.push(v);
        if done {
            return out;
        }
    }
}

#[tokio::test]
async fn a_stream_resumes_after_a_restart_with_the_events_it_missed_and_ids_keep_rising() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let job = upload_example(&client, &server).await;
    wait_finished(&client, &server, job).await;
    let base = server.url("");
    let all = sse_after(&client, &base, job, 0).await;
    let ids: Vec<u64> = all.iter().map(|(id, _)| *id).collect();
    assert!(ids.len() >= 4 && ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(all[0].1["type"], "status", "the queued state first");

    let dir = server.shutdown().await;
    let server = start_in(dir, |_| {}).await;
    let base = server.url("");
    // Resumed after the first event, on a server whose memory holds none of them.
    let resumed = sse_after(&client, &base, job, ids[0]).await;
    assert_eq!(resumed, all[1..], "exactly the missed events, as first sent");
    let ws = ws_after(&server.ws_url(""), job, ids[0]).await;
    let ws_ids: Vec<u64> = ws.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ws_ids, ids[1..], "the WebSocket's ?last_event_id= resumes the same way");
    assert_eq!(ws, all[1..].iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());

    // A job after the restart: its events come after every earlier one.
    let second = upload_example(&client, &server).await;
    wait_finished(&client, &server, second).await;
    let later = sse_after(&client, &base, second, 0).await;
    assert!(later[0].0 > *ids.last().unwrap(), "{} after {ids:?}", later[0].0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_resume_from_before_the_event_logs_retention_gets_the_jobs_state_marked_as_a_gap() {
    let server = start(|s| s.websocket.event_log_max = 2).await;
    let client = reqwest::Client::new();
    let job = upload_example(&client, &server).await;
    wait_finished(&client, &server, job).await;
    let all = sse_after(&client, &server.url(""), job, 0).await;
    let last = all.last().unwrap().0;
    // The restart prunes the log to its newest two events.
    let dir = server.shutdown().await;
    let server = start_in(dir, |s| s.websocket.event_log_max = 2).await;
    let url = server.url(&format!("/api/v1/jobs/{job}/events"));
    let response = client.get(&url).header("Last-Event-ID", all[0].0.to_string()).send().await.unwrap();
    let first = read_sse(response, |_, _| true).await;
    assert_eq!(first[0].1["type"], "full_state", "{first:?}");
    assert_eq!(first[0].1["gap"], true);
    assert!(first[0].1["jobs"][0]["status"].as_str().unwrap().eq_ignore_ascii_case("completed"));
    // From the second to last event on, nothing was lost: those are replayed.
    let response = client.get(&url).header("Last-Event-ID", (last - 2).to_string()).send().await.unwrap();
    let tail = read_sse(response, is_completed).await;
    let tail_ids: Vec<u64> = tail.iter().map(|(id, _)| *id).collect();
    assert_eq!(tail_ids, [last - 1, last]);
    server.shutdown().await;
}
