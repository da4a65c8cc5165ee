//! Live events and transports against a real server: SSE with replay, many WebSocket clients, HTTP/2 with prior knowledge, TLS.

mod common;
use common::JobIdOf;

use common::{start, upload_example, upload_example_multipart, wait_finished};
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Reads SSE events (`id`, `event`) from a response until `stop` says so.
async fn read_sse(response: reqwest::Response, mut stop: impl FnMut(&str, &str) -> bool) -> Vec<(String, String)> {
    let mut stream = response.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    loop {
        let chunk =
            tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("in time").unwrap().unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
            };
            let (id, event) = (field("id:"), field("event:"));
            if event.is_empty() {
                continue;
            }
            let done = stop(&id, &event);
            events.push((id, event));
            if done {
                return events;
            }
        }
    }
}

#[tokio::test]
async fn sse_streams_a_job_and_replays_after_last_event_id() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    // Multipart this time, larger than the 64 KiB limit of other bodies.
    let job = upload_example_multipart(&client, &server).await;
    wait_finished(&client, &server, job).await;
    let url = server.url(&format!("/api/v1/jobs/{job}/events"));
    // Fresh: the state as it is now.
    let fresh = client.get(&url).send().await.unwrap();
    assert_eq!(fresh.headers()["content-type"], "text/event-stream");
    let first = read_sse(fresh, |_, _| true).await;
    assert_eq!(first[0].1, "full_state");
    // Reconnecting after event 1 (the queued state change): everything since, in order.
    let replay = client.get(&url).header("Last-Event-ID", "1").send().await.unwrap();
    let events = read_sse(replay, |_, e| e == "status").await;
    assert_eq!(events[0], ("2".to_string(), "status".to_string()), "running");
    let replay = client.get(&url).header("Last-Event-ID", "2").send().await.unwrap();
    let events = read_sse(replay, |_, e| e == "status").await;
    let kinds: Vec<&str> = events.iter().map(|(_, e)| e.as_str()).collect();
    assert!(kinds.contains(&"session") && kinds.contains(&"stats") && kinds.last() == Some(&"status"), "{kinds:?}");
    let ids: Vec<u64> = events.iter().map(|(id, _)| id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids[0] == 3, "{ids:?}");

    // A live stream ends with the job's deletion.
    let live = client.get(&url).send().await.unwrap();
    let reader = tokio::spawn(async move {
        let mut body = String::new();
        let mut stream = live.bytes_stream();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("in time") {
            body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        body
    });
    let response = client.delete(server.url(&format!("/api/v1/jobs/{job}"))).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let body = reader.await.unwrap();
    assert!(body.contains("event: full_state") && body.contains("event: deleted"), "{body}");
    let gone = client.get(&url).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn a_hundred_websocket_clients_all_receive_the_same_events() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
        let Some(Ok(Message::Text(first))) = ws.next().await else { panic!("no full_state") };
        assert!(first.contains("full_state"));
        sockets.push(ws);
    }
    let job = upload_example(&client, &server).await;
    let readers = sockets.into_iter().map(|mut ws| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(60), ws.next()).await.expect("in time");
                let Some(Ok(Message::Text(text))) = msg else { panic!("closed early: {msg:?}") };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "heartbeat" {
                    continue;
                }
                got.push((v["id"].as_u64().unwrap(), v["type"].as_str().unwrap().to_string()));
                if v["type"] == "status" && v["job"]["status"] == "completed" {
                    return got;
                }
            }
        })
    });
    let all: Vec<_> = futures_util::future::join_all(readers).await.into_iter().map(Result::unwrap).collect();
    assert!(all.iter().all(|got| got == &all[0]), "every client saw the same events in the same order");
    assert!(all[0].len() >= 4, "{:?}", all[0]);
    let _ = job;
    server.shutdown().await;
}

#[tokio::test]
async fn http2_with_prior_knowledge() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = client.get(server.url("/version")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn tls_with_a_generated_certificate_negotiates_h2_and_http1() {
    let tls = common::TestCert::localhost();
    let server = start(|s| tls.configure(s)).await;
    let root = reqwest::Certificate::from_pem(tls.key.cert.pem().as_bytes()).unwrap();
    let url = format!("https://localhost:{}/version", server.addr.port());
    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    let response = h2.get(&url).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, reqwest::Version::HTTP_2));
    let h1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", server.addr)
        .http1_only()
        .build()
        .unwrap();
    let response = h1.get(&url).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, reqwest::Version::HTTP_11));
    // Plain HTTP on the TLS port gets nothing useful.
    assert!(reqwest::get(format!("http://{}/version", server.addr)).await.map_or(true, |r| r.status() != 200));
    server.shutdown().await;
}

#[tokio::test]
async fn binding_a_public_address_without_auth_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::settings(dir.path());
    settings.server.bind_addr = "0.0.0.0".into();
    let store = std::sync::Arc::new(callflow_jobs::SqliteStore::open(settings.storage.database_path()).unwrap());
    let (manager, _) = callflow_jobs::JobManager::start(store, Default::default()).unwrap();
    let err = callflow_server::Server::bind(settings, std::sync::Arc::new(manager)).await.unwrap_err();
    assert!(err.to_string().contains("--insecure-no-auth"), "{err}");
}

/// What a client of `/api/v1/ws` sees, checked on `path`: with authentication on, a
/// missing or bad token is a 4001 close; a login token gets `full_state` first, then typed
/// pushes about an upload until it completes, and `pong` for `ping`.
async fn events_socket_as_documented(server: &common::TestServer, path: &str, key: &str, token: &str) {
    use futures_util::SinkExt;
    for bad in [path.to_string(), format!("{path}?token=not-a-token")] {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(&bad)).await.unwrap();
        assert_eq!(common::next_text(&mut ws).await, "close 4001", "{bad}");
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url(&format!("{path}?token={token}"))).await.unwrap();
    let first: serde_json::Value = serde_json::from_str(&common::next_text(&mut ws).await).unwrap();
    assert_eq!(first["type"], "full_state", "{path}: {first}");
    assert!(first["jobs"].is_array(), "{path}: {first}");
    let client = reqwest::Client::new();
    let part = reqwest::multipart::Part::bytes(std::fs::read(common::example()).unwrap()).file_name("basic-call.pcap");
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = client.post(server.url("/api/v1/upload")).bearer_auth(key).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let job = response.json::<serde_json::Value>().await.unwrap().job_id();
    let mut types = Vec::new();
    loop {
        let text = common::next_text(&mut ws).await;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {text}: {e}"));
        let kind = v["type"].as_str().unwrap_or_else(|| panic!("{path}: a push without a type: {v}")).to_string();
        if kind == "heartbeat" {
            continue;
        }
        assert!(v.job_id_is(job), "{path}: {v}");
        types.push(kind);
        if v["type"] == "status" && v["job"]["status"].as_str().is_some_and(|s| s.eq_ignore_ascii_case("completed")) {
            break;
        }
    }
    for kind in ["status", "session", "stats"] {
        assert!(types.iter().any(|t| t == kind), "{path}: no {kind} push in {types:?}");
    }
    ws.send(Message::Text("ping".into())).await.unwrap();
    loop {
        let text = common::next_text(&mut ws).await;
        assert!(!text.starts_with("close"), "{path}: closed before pong: {text}");
        if text == "pong" {
            break;
        }
    }
}

#[tokio::test]
async fn the_websocket_documents_path_api_ws_behaves_as_api_v1_ws() {
    let key = "k3y-0123456789abcdef";
    let server = start(|s| {
        s.auth.enabled = true;
        s.auth.api_keys = vec![key.into()];
        s.auth.users = [("ann".to_string(), callflow_server::hash_password("pw"))].into();
    })
    .await;
    let client = reqwest::Client::new();
    let token = &server.login(&client, "ann", "pw").await;
    for path in ["/api/v1/ws", "/api/ws"] {
        events_socket_as_documented(&server, path, key, token).await;
    }
    // Both are in the OpenAPI document, as WebSocket upgrades.
    let doc = server.get_json(&client, "/api/v1/openapi.json").await;
    for path in ["/api/v1/ws", "/api/ws"] {
        assert!(doc["paths"][path]["get"]["responses"]["101"].is_object(), "{path} in {}", doc["paths"]);
    }
    server.shutdown().await;
}
