//! Limits and lifecycle against a real server: client caps (503), heartbeats, slow clients (1013), CORS, and event streams closed on shutdown.

mod common;

use common::{next_text, start, upload_example, wait_finished};
use futures_util::StreamExt;
use std::io::{Read, Write};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn heartbeats_a_job_socket_a_client_cap_and_close_on_shutdown() {
    let server = start(|s| {
        s.websocket.ping_interval = Duration::from_millis(100);
        s.websocket.max_clients = 1;
    })
    .await;
    let plain = reqwest::get(server.url("/api/v1/ws")).await.unwrap();
    assert_eq!(plain.status(), 426, "plain HTTP");
    let missing = reqwest::get(server.url("/api/v1/jobs/77/ws")).await.unwrap();
    assert_eq!(missing.status(), 404, "no such job, whatever the protocol");
    let err = tokio_tungstenite::connect_async(server.ws_url("/api/v1/jobs/77/ws")).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");

    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
    assert!(next_text(&mut ws).await.contains("full_state"));
    assert!(next_text(&mut ws).await.contains(r#""type":"heartbeat""#));
    let err = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap_err();
    assert!(err.to_string().contains("503"), "one client at most: {err}");

    server.shutdown().await;
    let mut last = String::new();
    while !last.starts_with("close") {
        last = next_text(&mut ws).await;
    }
    assert_eq!(last, "close 1001");
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_cut_off() {
    let server = start(|s| s.server.header_timeout = Duration::from_millis(200)).await;
    let addr = server.addr;
    let read = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        conn.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n").unwrap();
        // Never finishes the head: the server closes the connection.
        let mut buf = Vec::new();
        conn.read_to_end(&mut buf).map(|_| String::from_utf8_lossy(&buf).to_string())
    })
    .await
    .unwrap();
    let text = read.expect("closed by the server, not by our read timeout");
    assert!(!text.contains("200 OK"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn too_many_uploads_at_once_get_503() {
    let server = start(|s| s.limits.max_concurrent_uploads = 1).await;
    let client = reqwest::Client::new();
    // An upload that sends a capture's first bytes and then waits.
    let (tx, slow) = common::held_upload(&client, &server, vec![0xd4, 0xc3, 0xb2, 0xa1]).await;
    let mut refused = None;
    for _ in 0..200 {
        let r = client
            .post(server.url("/api/v1/upload"))
            .header("content-type", "application/octet-stream")
            .body(vec![0xd4, 0xc3, 0xb2, 0xa1])
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v: serde_json::Value = refused.expect("a 503 while the first upload is open").json().await.unwrap();
    assert_eq!(v["error"]["code"], "unavailable");
    drop(tx);
    let _ = slow.await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_upload_is_refused_before_its_body_is_read_when_the_queue_is_full() {
    let gate = common::Gate::new();
    let server = common::start_gated(&gate, |s| s.limits.max_queued_jobs = 1).await;
    let client = reqwest::Client::new();
    // One job holds the only worker and another fills the queue.
    let running = upload_example(&client, &server).await;
    gate.until(|s| s.running == 1).await;
    let queued = upload_example(&client, &server).await;
    // A capture's first bytes, then nothing, ever: only an answer given before the body
    // ends can end this request (a stalled body is otherwise cut off after 30 s).
    let endless = futures_util::stream::once(async { Ok::<_, std::io::Error>(vec![0xd4, 0xc3, 0xb2, 0xa1]) })
        .chain(futures_util::stream::pending());
    let upload = client
        .post(server.url("/api/v1/upload"))
        .header("content-type", "application/vnd.tcpdump.pcap")
        .body(reqwest::Body::wrap_stream(endless))
        .send();
    let response =
        tokio::time::timeout(Duration::from_secs(10), upload).await.expect("answered before the body ended").unwrap();
    assert_eq!(response.status(), 503);
    let v: serde_json::Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unavailable");
    assert_eq!(v["error"]["message"], "the job queue is full (1 jobs waiting)");
    assert_eq!(server.uploads().len(), 2, "no file was begun beside the two jobs' ({running}, {queued})");
    server.shutdown().await;
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let server = start(|s| s.server.cors_origins = vec!["https://ui.example".into()]).await;
    let client = reqwest::Client::new();
    let allowed = client.get(server.url("/version")).header("origin", "https://ui.example").send().await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://ui.example");
    let other = client.get(server.url("/version")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    server.shutdown().await;
    let closed = start(|_| {}).await;
    let none = client.get(closed.url("/version")).header("origin", "https://ui.example").send().await.unwrap();
    assert!(none.headers().get("access-control-allow-origin").is_none(), "none by default");
    closed.shutdown().await;
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_closed_after_two_heartbeats() {
    let server = start(|s| s.websocket.ping_interval = Duration::from_millis(50)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
    assert!(next_text(&mut ws).await.contains("full_state"));
    // Not reading means not answering the server's pings either.
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The server has closed: its close frame (1001) is read, unless answering the pings
    // queued before it already fails on the closed socket.
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("closed in time") {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        }
    }
    // The server counts the client out just after closing it.
    let mut clients = u64::MAX;
    for _ in 0..500 {
        clients = server_clients(&server).await;
        if clients == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(clients, 0, "the server let the client go");
    server.shutdown().await;
}

async fn server_clients(server: &common::TestServer) -> u64 {
    let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("callflow_websocket_clients{")).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let server = start(|s| s.server.max_header_bytes = 8192).await;
    let response = reqwest::Client::new()
        .get(server.url("/version"))
        .header("x-padding", "p".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    server.shutdown().await;
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_closed_with_1013_rather_than_lose_a_state_change() {
    // Small socket buffers on both ends: a client that does not read stalls the server's
    // writes after a few KiB, where loopback's autotuned buffers would absorb megabytes.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap(); // accepted connections inherit it
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = common::start_on(socket.listen(64).unwrap(), |s| s.websocket.client_queue = 4).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url("/api/v1/ws"), stream).await.unwrap();
    assert!(next_text(&mut ws).await.contains("full_state"));

    // The client stops reading while 40 jobs run, each with three state changes among
    // its other events (some 100 KiB in all): the server's writes stall after a few KiB,
    // and its queue of 4 overflows with state changes.
    let client = reqwest::Client::new();
    let mut jobs = Vec::new();
    for _ in 0..40 {
        jobs.push(upload_example(&client, &server).await);
    }
    for job in jobs {
        assert_eq!(wait_finished(&client, &server, job).await["status"], "completed");
    }

    // Reading again: what was in flight, then the close.
    let mut received = 0;
    let last = loop {
        let text = next_text(&mut ws).await;
        if text.starts_with("close") {
            break text;
        }
        received += 1;
    };
    assert_eq!(last, "close 1013", "after {received} messages");
    assert!(received < 40 * 3, "the server gave up before sending every state change ({received} messages)");
    server.shutdown().await;
}
