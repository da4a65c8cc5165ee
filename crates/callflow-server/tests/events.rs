//! Event ids from the store's event log: a stream resumes after a restart and on another node with exactly the events it missed, a resume older than the log's retention gets the state again, and two servers on one PostgreSQL database see each other's jobs' events in order.

mod common;
use common::JobIdOf;

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
async fn sse_after(client: &reqwest::Client, base: &str, job: common::JobUuid, after: u64) -> Vec<(u64, Value)> {
    let url = format!("{base}/api/v1/jobs/{job}/events");
    let response = client.get(url).header("Last-Event-ID", after.to_string()).send().await.unwrap();
    read_sse(response, is_completed).await
}

/// The WebSocket's messages after `?last_event_id=after` until the job completes.
async fn ws_after(ws_base: &str, job: common::JobUuid, after: u64) -> Vec<Value> {
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

#[path = "../../callflow-jobs/tests/common/pg.rs"]
mod pg;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket following every job, its `full_state` read.
async fn follow_all(server: &common::TestServer) -> Socket {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
    let first: Value = serde_json::from_str(&common::next_text(&mut ws).await).unwrap();
    assert_eq!(first["type"], "full_state");
    ws
}

/// Every message about `job` on `ws` until the job completes; every message's id (all
/// jobs') is pushed onto `ids`.
async fn until_completed(ws: &mut Socket, job: common::JobUuid, ids: &mut Vec<u64>) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let text = common::next_text(ws).await;
        assert!(!text.starts_with("close"), "closed: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["type"] == "heartbeat" {
            continue;
        }
        ids.push(v["id"].as_u64().unwrap());
        if !v.job_id_is(job) {
            continue;
        }
        let done = is_completed(v["type"].as_str().unwrap(), &v);
        out.push(v);
        if done {
            return out;
        }
    }
}

fn increasing(ids: &[u64]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

/// Node A's clients follow a job node B runs: every event, in order, through its
/// completion, over the store's LISTEN/NOTIFY; a resume on the other node gets exactly the
/// events missed; and with every listener's connection terminated, the next job's events
/// all arrive still, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_one_node_follow_a_job_another_node_runs_and_resume_on_either_node() {
    let Some(cluster) = pg::shared("two_nodes_events") else { return };
    let url = cluster.create_database();
    let db = url.rsplit('/').next().unwrap().to_string();
    let node = |name: &'static str| {
        let url = url.clone();
        move |s: &mut callflow_config::Settings| {
            s.storage.database = Some(url);
            s.cluster.node_name = name.into();
        }
    };
    let a = start(node("a")).await;
    let b = start(node("b")).await;
    let client = reqwest::Client::new();
    let (mut on_a, mut on_b) = (follow_all(&a).await, follow_all(&b).await);
    let (mut ids_a, mut ids_b) = (Vec::new(), Vec::new());

    // Uploaded to B, whose worker is woken at once: B runs it (A's idle workers look for
    // work once a second, so whichever node ran it, the other heard of it from the log).
    let job = upload_example(&client, &b).await;
    let seen_on_a = until_completed(&mut on_a, job, &mut ids_a).await;
    let seen_on_b = until_completed(&mut on_b, job, &mut ids_b).await;
    let states: Vec<String> = seen_on_a
        .iter()
        .filter(|v| v["type"] == "status")
        .map(|v| v["job"]["status"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(states, ["queued", "running", "completed"], "{seen_on_a:?}");
    let running = seen_on_a.iter().find(|v| v["type"] == "status" && v["job"]["status"] == "running").unwrap();
    assert!(["a", "b"].contains(&running["job"]["node"].as_str().unwrap_or_default()), "{running}");
    assert!(seen_on_a.iter().any(|v| v["type"] == "session"), "{seen_on_a:?}");
    assert_eq!(seen_on_a, seen_on_b, "node A heard what node B published, as B's own clients did");
    assert!(increasing(&ids_a), "{ids_a:?}");

    // SSE on A: the job's events from the log, the same ones.
    let sse = sse_after(&client, &a.url(""), job, 0).await;
    assert_eq!(sse.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), seen_on_a);
    // Seen on A up to the job's first event, resumed on B: exactly the rest.
    let first = seen_on_a[0]["id"].as_u64().unwrap();
    let resumed = sse_after(&client, &b.url(""), job, first).await;
    assert_eq!(resumed.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), seen_on_a[1..]);
    let ws = ws_after(&a.ws_url(""), job, first).await;
    assert_eq!(ws, seen_on_a[1..], "the WebSocket resumes on A the same way");

    // Every node's listener connection terminated: each reconnects and reads the log from
    // the last id it queued, so the next job's events all reach A, once each and in order.
    let killed = cluster.psql(
        &db,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND application_name = '{}'",
            callflow_jobs::PG_LISTENER_NAME
        ),
    );
    assert_eq!(killed, "2", "one listener per node");
    let second = upload_example(&client, &b).await;
    let again_on_a = until_completed(&mut on_a, second, &mut ids_a).await;
    let again_on_b = until_completed(&mut on_b, second, &mut ids_b).await;
    assert_eq!(again_on_a, again_on_b);
    assert!(increasing(&ids_a), "none twice, none out of order: {ids_a:?}");
    let logged = sse_after(&client, &a.url(""), second, 0).await;
    assert_eq!(logged.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), again_on_a, "none lost");
    // Each node's /metrics names it on every series.
    let metrics = client.get(a.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("\ncallflow_websocket_clients{node=\"a\"} 1\n"), "{metrics}");
    a.shutdown().await;
    b.shutdown().await;
}
