//! Denial of service against a real server, as an attacker tries it: login floods, idle and slow connections, slow and oversized uploads, WebSocket clients that stop reading or outlive their token, invented HTTP methods.

mod common;
use common::JobIdOf;

use common::{held_upload, next_text, start, upload_example};
use futures_util::{SinkExt, StreamExt};
use std::io::{Read, Write};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

async fn login(client: &reqwest::Client, server: &common::TestServer, user: &str, password: &str) -> reqwest::Response {
    client
        .post(server.url("/api/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

fn with_user(s: &mut callflow_config::Settings) {
    s.auth.enabled = true;
    s.auth.users = [("ann".to_string(), callflow_server::hash_password("s3cret"))].into();
}

#[tokio::test]
async fn login_attempts_past_the_burst_of_an_address_get_429_with_retry_after() {
    let server = start(|s| {
        with_user(s);
        s.auth.login_attempts_per_minute = 6;
        s.auth.login_burst = 3;
    })
    .await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for user in ["nobody", "ann", "eve", "mallory"] {
        statuses.push(login(&client, &server, user, "guess").await);
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, [401, 401, 401, 429]);
    // One attempt every 10 s, less the time the three took.
    let retry: u64 = statuses[3].headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    server.shutdown().await;
}

#[tokio::test]
async fn parallel_logins_past_the_verification_cap_get_503_with_retry_after() {
    let server = start(|s| {
        with_user(s);
        s.auth.login_attempts_per_minute = 0;
        s.auth.max_concurrent_logins = 1;
    })
    .await;
    let client = reqwest::Client::new();
    let attempts = (0..20).map(|i| {
        let (client, url) = (client.clone(), server.url("/api/login"));
        tokio::spawn(async move {
            let body = serde_json::json!({"username": format!("user{i}"), "password": "guess"});
            client.post(url).json(&body).send().await.unwrap()
        })
    });
    let mut busy = None;
    let mut refused = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        let response = attempt.await.unwrap();
        match response.status().as_u16() {
            401 => refused += 1,
            503 => busy = Some(response),
            other => panic!("{other}"),
        }
    }
    let busy = busy.expect("20 at once with one verification allowed: some are turned away");
    assert_eq!(busy.headers()["retry-after"], "1");
    assert!(refused >= 1, "the first is verified");
    server.shutdown().await;
}

#[tokio::test]
async fn a_websocket_is_closed_with_4001_when_its_token_expires_or_is_revoked() {
    let server = start(|s| {
        with_user(s);
        s.auth.token_ttl = Duration::from_secs(1);
        s.websocket.ping_interval = Duration::from_secs(3600);
    })
    .await;
    let client = reqwest::Client::new();
    let v: serde_json::Value = login(&client, &server, "ann", "s3cret").await.json().await.unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/api/v1/ws?token={token}"))).await.unwrap();
    assert!(next_text(&mut ws).await.contains("full_state"));
    assert_eq!(next_text(&mut ws).await, "close 4001", "the token expired after 1 s");
    server.shutdown().await;

    let server = start(|s| {
        with_user(s);
        s.websocket.ping_interval = Duration::from_secs(3600);
    })
    .await;
    let v: serde_json::Value = login(&client, &server, "ann", "s3cret").await.json().await.unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/api/v1/ws?token={token}"))).await.unwrap();
    assert!(next_text(&mut ws).await.contains("full_state"));
    let logout = client.post(server.url("/api/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(next_text(&mut ws).await, "close 4001", "revoked");
    let after = client.get(server.url("/api/v1/jobs")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(after.status(), 401, "the token is gone");
    server.shutdown().await;
}

#[tokio::test]
async fn an_event_stream_ends_when_its_token_is_revoked() {
    let server = start(with_user).await;
    let client = reqwest::Client::new();
    let v: serde_json::Value = login(&client, &server, "ann", "s3cret").await.json().await.unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    // A job to follow, uploaded with the token.
    let body = std::fs::read(common::example()).unwrap();
    let upload = client
        .post(server.url("/api/v1/upload"))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let job = upload.json::<serde_json::Value>().await.unwrap().job_id();
    let events = client.get(server.url(&format!("/api/v1/jobs/{job}/events?token={token}"))).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let mut stream = events.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.unwrap().unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("full_state"));
    let logout = client.post(server.url("/api/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    // Whatever was in flight, then the end.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = stream.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ended");
    server.shutdown().await;
}

/// Reads until the server closes; `None` if our 30 s read timeout came first.
fn closed_by_server(mut conn: impl Read) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    match conn.read_to_end(&mut buf) {
        Ok(_) => Some(buf),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
        // Reset by the server: closed too.
        Err(_) => Some(buf),
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = start(|s| s.server.header_timeout = Duration::from_millis(200)).await;
    let addr = server.addr;
    let idle = tokio::task::spawn_blocking(move || {
        let conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        closed_by_server(conn)
    });
    // A request answered, then nothing on the kept-alive connection: closed as well.
    let kept = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // The Host the server answers to without authentication (its own address).
        conn.write_all(format!("GET /version HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
        closed_by_server(conn).map(|b| String::from_utf8_lossy(&b).into_owned())
    });
    assert_eq!(idle.await.unwrap(), Some(Vec::new()), "closed by the server, without a word");
    let kept = kept.await.unwrap().expect("closed by the server");
    assert!(kept.contains("200 OK"), "{kept}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_tls_connection_that_sends_nothing_after_its_handshake_is_closed() {
    use tokio_rustls::rustls;
    let tls = common::TestCert::localhost();
    let cert = &tls.key;
    let server = start(|s| {
        s.server.header_timeout = Duration::from_millis(300);
        tls.configure(s);
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("the handshake completes");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "closed by the server, not by our timeout");
    assert!(buf.is_empty());
    server.shutdown().await;
}

/// The HTTP/2 client preface followed by an empty SETTINGS frame (length 0, type 4, no
/// flags, stream 0): all a client with prior knowledge need send to open a connection.
const H2_OPENING: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

#[tokio::test]
async fn an_http2_connection_that_opens_no_stream_is_closed_after_the_header_timeout() {
    let server = start(|s| {
        s.server.header_timeout = Duration::from_secs(1);
        s.server.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = server.addr;
    let closed = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        // Ten times the timeout: the idle limit and the grace after the GOAWAY, with room.
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        conn.write_all(H2_OPENING).unwrap();
        closed_by_server(conn)
    });
    let received = closed.await.unwrap().expect("closed by the server, not by our read timeout");
    // The server's SETTINGS frame (type 4) first, then at the end its GOAWAY (type 7).
    assert_eq!(received.get(3), Some(&4), "{received:?}");
    assert!(received.windows(4).any(|w| w == [0, 0, 8, 7]), "a GOAWAY in {received:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_http2_connection_idle_after_its_request_is_closed_after_the_idle_timeout() {
    let server = start(|s| {
        s.server.header_timeout = Duration::from_secs(1);
        s.server.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = server.addr;
    // GET /version on stream 1 in HPACK without Huffman: :method GET (static 2), :scheme
    // http (6), then :path (4) and :authority (1) as literals not indexed.
    let authority = addr.to_string();
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/version");
    block.extend_from_slice(&[0x01, authority.len() as u8]);
    block.extend_from_slice(authority.as_bytes());
    let mut request = H2_OPENING.to_vec();
    // HEADERS (type 1), END_STREAM | END_HEADERS (0x5), stream 1.
    request.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x5, 0, 0, 0, 1]);
    request.extend_from_slice(&block);
    let closed = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        conn.write_all(&request).unwrap();
        closed_by_server(conn)
    });
    let received = closed.await.unwrap().expect("closed by the server, not by our read timeout");
    // The answer's HEADERS on stream 1 with :status 200 (static 8) first, then the GOAWAY.
    let answer = received.windows(10).position(|w| w[3] == 1 && w[5..9] == [0, 0, 0, 1] && w[9] == 0x88);
    let goaway = received.windows(4).position(|w| w == [0, 0, 8, 7]);
    assert!(answer.is_some() && goaway > answer, "a 200 then a GOAWAY in {received:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_event_stream_over_http2_outlives_the_idle_timeout() {
    let server = start(|s| {
        s.server.header_timeout = Duration::from_secs(1);
        s.server.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let client = reqwest::Client::new();
    let job = upload_example(&client, &server).await;
    common::wait_finished(&client, &server, job).await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let events = h2.get(server.url(&format!("/api/v1/jobs/{job}/events"))).send().await.unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.version(), reqwest::Version::HTTP_2);
    let mut stream = events.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.unwrap().unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("full_state"));
    // Three idle timeouts with nothing sent either way, then the job's deletion: the
    // stream, still open, carries it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deleted = client.delete(server.url(&format!("/api/v1/jobs/{job}"))).send().await.unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let mut rest = String::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = stream.next().await {
            rest.push_str(&String::from_utf8_lossy(&chunk.expect("the stream was not cut")));
        }
    })
    .await;
    assert!(read.is_ok(), "the stream ended after the deletion");
    assert!(rest.contains("deleted"), "{rest}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_websocket_outlives_the_idle_timeout() {
    let server = start(|s| {
        s.server.header_timeout = Duration::from_secs(1);
        s.server.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await.unwrap();
    assert!(next_text(&mut ws).await.contains("full_state"));
    // Three idle timeouts with nothing sent either way, then a job: the socket, still
    // open, tells of it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let job = upload_example(&reqwest::Client::new(), &server).await;
    let message = next_text(&mut ws).await;
    assert!(message.contains(&format!("\"job_id\":\"{job}\"")), "{message}");
    server.shutdown().await;
}

/// A pcap's magic number: the start of a valid upload.
const MAGIC: [u8; 4] = [0xd4, 0xc3, 0xb2, 0xa1];

#[tokio::test]
async fn an_upload_trickling_below_its_minimum_rate_is_cut_off_and_frees_its_slot() {
    let server = start(|s| {
        s.limits.max_concurrent_uploads = 1;
        s.server.request_timeout = Duration::from_secs(1);
        s.limits.upload_min_bytes_per_second = 100;
    })
    .await;
    let client = reqwest::Client::new();
    // One byte every 100 ms: each byte would have restarted a stall timer.
    let (tx, slow) = held_upload(&client, &server, MAGIC.to_vec()).await;
    let trickle = tokio::spawn(async move {
        while tx.send(Ok(vec![0])).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Meanwhile the only slot is taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = client
        .post(server.url("/api/v1/upload"))
        .header("content-type", "application/octet-stream")
        .body(MAGIC.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "5");
    let answer = tokio::time::timeout(Duration::from_secs(30), slow).await.expect("cut off").unwrap();
    if let Ok(response) = answer {
        assert_eq!(response.status(), 408);
    }
    trickle.abort();
    upload_example(&client, &server).await;
    assert_eq!(server.uploads().len(), 1, "the slow upload left nothing");
    server.shutdown().await;
}

#[tokio::test]
async fn an_upload_past_its_deadline_is_cut_off_however_fast_it_comes() {
    let server = start(|s| {
        s.server.request_timeout = Duration::from_millis(500);
        s.limits.upload_min_bytes_per_second = 1;
        s.limits.upload_deadline = Duration::from_secs(2);
    })
    .await;
    let client = reqwest::Client::new();
    let (tx, upload) = held_upload(&client, &server, MAGIC.to_vec()).await;
    let feeder = tokio::spawn(async move {
        while tx.send(Ok(vec![0; 1024])).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let answer = tokio::time::timeout(Duration::from_secs(30), upload).await.expect("cut off at the deadline").unwrap();
    if let Ok(response) = answer {
        assert_eq!(response.status(), 408);
        let v: serde_json::Value = response.json().await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("deadline"), "{v}");
    }
    feeder.abort();
    server.shutdown().await;
}

/// Starts a multipart upload whose body is `head` and then nothing; returns the request.
fn stalled_form(
    client: &reqwest::Client,
    server: &common::TestServer,
    head: Vec<u8>,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let body =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(futures_util::stream::pending());
    let request = client
        .post(server.url("/api/v1/upload"))
        .header("content-type", "multipart/form-data; boundary=B")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    tokio::spawn(request)
}

#[tokio::test]
async fn a_multipart_name_field_that_stalls_is_cut_off() {
    let server = start(|s| s.server.request_timeout = Duration::from_millis(500)).await;
    let client = reqwest::Client::new();
    let head = b"--B\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nab".to_vec();
    let answer = tokio::time::timeout(Duration::from_secs(30), stalled_form(&client, &server, head))
        .await
        .expect("cut off")
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 408);
    server.shutdown().await;
}

/// A multipart body: `fields` (name, extra part headers, content), then the end.
fn form(fields: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, headers, content) in fields {
        let file = if *name == "file" { "; filename=\"x.pcap\"" } else { "" };
        write!(body, "--B\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n{headers}\r\n").unwrap();
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--B--\r\n");
    body
}

async fn post_form(client: &reqwest::Client, server: &common::TestServer, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = client
        .post(server.url("/api/v1/upload"))
        .header("content-type", "multipart/form-data; boundary=B")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_name_over_255_bytes_or_a_part_header_of_1_mib_is_refused_with_400() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    let pcap = std::fs::read(common::example()).unwrap();
    let long = "n".repeat(256);
    let (status, v) = post_form(&client, &server, form(&[("name", "", long.as_bytes()), ("file", "", &pcap)])).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("255 bytes"), "{v}");
    let response = client
        .post(server.url(&format!("/api/v1/upload?name={long}")))
        .header("content-type", "application/octet-stream")
        .body(pcap.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "?name= too");
    let pad = format!("X-Pad: {}\r\n", "p".repeat(1 << 20));
    let (status, v) = post_form(&client, &server, form(&[("file", &pad, &pcap)])).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("headers"), "{v}");
    assert!(server.uploads().is_empty(), "nothing kept");
    // 255 bytes is a name.
    let name = "n".repeat(255);
    let (status, v) = post_form(&client, &server, form(&[("name", "", name.as_bytes()), ("file", "", &pcap)])).await;
    assert_eq!((status, v["name"].as_str()), (201, Some(name.as_str())));
    server.shutdown().await;
}

#[tokio::test]
async fn a_websocket_client_that_never_reads_is_dropped_after_the_send_timeout() {
    // Small socket buffers on both ends, so that the server's writes stall after a few KiB.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = common::start_on(socket.listen(64).unwrap(), |s| {
        s.websocket.send_timeout = Duration::from_millis(500);
        s.websocket.ping_interval = Duration::from_secs(3600);
        s.websocket.max_clients = 1;
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(server.ws_url("/api/v1/ws"), stream).await.unwrap();
    let (mut sink, _never_read) = ws.split();
    // Every `ping` is answered with a `pong` the client never reads: the server's writes
    // fill the socket buffers and then wait.
    let pinger = tokio::spawn(async move {
        for _ in 0..100_000 {
            if sink.send(Message::Text("ping".into())).await.is_err() {
                return;
            }
        }
    });
    let mut clients = u64::MAX;
    for _ in 0..1500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.starts_with("callflow_websocket_clients{")).unwrap();
        clients = line.rsplit(' ').next().unwrap().parse().unwrap();
        if clients == 0 {
            break;
        }
    }
    assert_eq!(clients, 0, "the server gave up on the stuck client");
    let again = tokio_tungstenite::connect_async(server.ws_url("/api/v1/ws")).await;
    assert!(again.is_ok(), "its client slot is free again");
    pinger.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn invented_http_methods_are_counted_as_other_in_metrics() {
    let server = start(|_| {}).await;
    let client = reqwest::Client::new();
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        client.request(method, server.url("/version")).send().await.unwrap();
    }
    client.put(server.url("/version")).send().await.unwrap();
    let text = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let requests: Vec<&str> = text.lines().filter(|l| l.starts_with("callflow_http_requests_total{")).collect();
    assert!(!text.contains("INVENTED"), "{requests:?}");
    for line in [
        r#"callflow_http_requests_total{method="other",route="/version",status="405",node="test"} 50"#,
        r#"callflow_http_requests_total{method="PUT",route="/version",status="405",node="test"} 1"#,
    ] {
        assert!(requests.contains(&line), "{line} in {requests:?}");
    }
    server.shutdown().await;
}

/// A connection from `local` (any 127/8 address: Linux routes them all to loopback) to `to`.
async fn connect_from(local: [u8; 4], to: std::net::SocketAddr) -> std::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((std::net::Ipv4Addr::from(local), 0).into()).unwrap();
    let conn = socket.connect(to).await.unwrap().into_std().unwrap();
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn
}

#[tokio::test]
async fn connections_past_the_total_or_per_client_limit_are_closed_at_once_and_counted() {
    // Regression: there was no limit, and a client opening sockets faster than the header
    // timeout closed them took every file descriptor of the process.
    let server = start(|s| {
        s.server.header_timeout = Duration::from_secs(60);
        s.server.max_connections = 6;
        s.server.max_connections_per_client = 3;
    })
    .await;
    let addr = server.addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from([127, 0, 0, 1], addr).await);
    }
    // Each accepted connection is admitted before the next accept, so once a fourth one
    // from the same address is refused the first three are surely counted.
    let fourth = connect_from([127, 0, 0, 1], addr).await;
    let refused = tokio::task::spawn_blocking(move || closed_by_server(fourth)).await.unwrap();
    assert_eq!(refused, Some(Vec::new()), "a fourth connection from one address is closed at once");
    for _ in 0..3 {
        held.push(connect_from([127, 0, 0, 2], addr).await);
    }
    let seventh = connect_from([127, 0, 0, 3], addr).await;
    let refused = tokio::task::spawn_blocking(move || closed_by_server(seventh)).await.unwrap();
    assert_eq!(refused, Some(Vec::new()), "a seventh connection from anywhere is closed at once");

    // The held connections are still served.
    let mut first = held.remove(0);
    let text = tokio::task::spawn_blocking(move || {
        first
            .write_all(format!("GET /version HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        closed_by_server(first).map(|b| String::from_utf8_lossy(&b).into_owned())
    })
    .await
    .unwrap()
    .expect("answered, then closed");
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");

    // A freed slot takes a new client (once the server has seen the close).
    let client = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 3])).build().unwrap();
    let mut metrics = None;
    for _ in 0..100 {
        if let Ok(response) = client.get(server.url("/metrics")).send().await {
            metrics = Some(response.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = metrics.expect("a connection is admitted once one has ended");
    assert!(
        metrics.contains("callflow_connections_refused_total{limit=\"per_client\",node=\"test\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("callflow_connections_refused_total{limit=\"total\",node=\"test\"} 1\n"), "{metrics}");
    // The five held and the one asking.
    assert!(metrics.contains("\ncallflow_connections{node=\"test\"} 6\n"), "{metrics}");
    drop(held);
    server.shutdown().await;
}
