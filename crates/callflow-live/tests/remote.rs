//! The remote capture client against real WebSocket servers on the loopback: a pcapng
//! stream cut into messages that split its blocks, a server that closes with an error
//! reason, one that drops the connection (reconnection), TLS, a refused upgrade, and the
//! client closing first.

use callflow_correlate::{analyze, AnalyzerOptions};
use callflow_decode::capture::CaptureReader;
use callflow_live::record::Recorder;
use callflow_live::remote::{self, Backoff, RemoteError, RemoteEvent, RemoteSpec};
use callflow_live::{channel, ChannelSource};
use callflow_model::Document;
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

fn capture(name: &str) -> String {
    format!("{}/../../crates/callflow-correlate/test_data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A capture file re-written as the pcapng stream a Packetflix server sends.
fn pcapng_stream(path: &str) -> Vec<u8> {
    let mut reader = CaptureReader::open(path).unwrap();
    let mut recorder = Recorder::new(Vec::new()).unwrap();
    while let Some(frame) = reader.next_frame().unwrap() {
        recorder.write(&frame).unwrap();
    }
    recorder.finish().unwrap()
}

/// What the file analysis and the live one are compared on: each session's Call-ID,
/// kind, state and number of media streams.
fn outline(doc: &Document) -> Vec<String> {
    let mut calls: Vec<String> = doc
        .sessions
        .iter()
        .map(|s| format!("{} {:?} {} streams={}", s.call_id, s.kind, s.state, s.media.len()))
        .collect();
    calls.sort();
    calls
}

fn analyse_file(path: &str) -> Document {
    let mut reader = CaptureReader::open(path).unwrap();
    analyze(&mut reader, path, AnalyzerOptions::default(), None).unwrap()
}

fn analyse_live(source: &mut ChannelSource) -> Result<Document, callflow_decode::capture::CaptureError> {
    analyze(source, "remote", AnalyzerOptions::default(), None)
}

type Stream = Pin<Box<dyn AsyncReadWrite>>;
trait AsyncReadWrite: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncReadWrite for T {}

/// What a test server does with one accepted WebSocket; returns the close frame the
/// client sent, if any.
type Script =
    Box<dyn FnOnce(WebSocketStream<Stream>) -> Pin<Box<dyn Future<Output = Option<CloseFrame>> + Send>> + Send>;

/// A WebSocket server on 127.0.0.1 that plays one script per connection, in order, on
/// its own thread. `tls` wraps each connection first. Returns its port and what each
/// connection's client sent as its close.
fn server(
    scripts: Vec<Script>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (u16, std::thread::JoinHandle<Vec<Option<CloseFrame>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let mut closes = Vec::new();
            for script in scripts {
                let (tcp, _) = listener.accept().await.unwrap();
                let stream: Stream = match &tls {
                    Some(acceptor) => Box::pin(acceptor.accept(tcp).await.unwrap()),
                    None => Box::pin(tcp),
                };
                let ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                closes.push(script(ws).await);
            }
            closes
        })
    });
    (port, thread)
}

/// Sends `bytes` in messages of `chunk` bytes (so blocks are split across messages), then
/// closes with `close` and waits for the client's answer.
fn stream_then_close(bytes: Vec<u8>, chunk: usize, close: Option<(CloseCode, &'static str)>) -> Script {
    Box::new(move |mut ws| {
        Box::pin(async move {
            for piece in bytes.chunks(chunk) {
                ws.send(Message::binary(piece.to_vec())).await.unwrap();
            }
            match close {
                Some((code, reason)) => {
                    ws.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await.unwrap();
                    client_close(&mut ws).await
                }
                None => None,
            }
        })
    })
}

/// Reads until the client's close frame (or the end of the connection).
async fn client_close(ws: &mut WebSocketStream<Stream>) -> Option<CloseFrame> {
    while let Some(Ok(message)) = ws.next().await {
        if let Message::Close(frame) = message {
            return frame;
        }
    }
    None
}

#[test]
fn a_remote_stream_analyses_like_the_file_it_carries() {
    let path = capture("outcomes.pcap");
    let bytes = pcapng_stream(&path);
    // 777-byte messages: the blocks straddle message boundaries, as Packetflix's do.
    let (port, server) =
        server(vec![stream_then_close(bytes, 777, Some((CloseCode::Normal, "capture process terminated")))], None);
    let (tx, mut source) = channel(64, Duration::from_secs(1));
    let spec = RemoteSpec::parse(&format!("packetflix:ws://127.0.0.1:{port}/capture?netns=4026531840")).unwrap();
    let handle = remote::start(&spec, tx).unwrap();
    let live = analyse_live(&mut source).unwrap();
    let file = analyse_file(&path);
    assert!(!outline(&file).is_empty());
    assert_eq!(outline(&live), outline(&file));
    assert_eq!(live.source.packets, file.source.packets);
    assert!(handle.is_finished() || handle.reconnects() == 0);
    handle.stop();
    let closes = server.join().unwrap();
    assert_eq!(closes[0].as_ref().map(|f| f.code), Some(CloseCode::Normal), "the client answers the server's close");
}

#[test]
fn a_close_with_a_reason_ends_the_source_with_an_error_quoting_it() {
    let bytes = pcapng_stream(&capture("outcomes.pcap"));
    // A few packets, then the server gives up with a reason, as on a vanished namespace.
    let script = stream_then_close(
        bytes[..2000].to_vec(),
        500,
        Some((CloseCode::Error, "cannot lock target network stack: no such namespace 4026532999")),
    );
    let (port, server) = server(vec![script], None);
    let (tx, mut source) = channel(64, Duration::from_secs(1));
    let spec = RemoteSpec::parse(&format!("ws://127.0.0.1:{port}/capture?netns=4026532999")).unwrap();
    let handle = remote::start(&spec, tx).unwrap();
    let doc = analyse_live(&mut source).unwrap();
    assert!(!doc.source.complete);
    let warning = doc.source.warnings.join("; ");
    assert!(
        warning.contains(
            "the capture server closed the stream: cannot lock target network stack: no such namespace 4026532999 (close code 1011)"
        ),
        "{warning}"
    );
    handle.stop();
    server.join().unwrap();
}

#[test]
fn packetflixs_1006_close_keeps_its_reason() {
    // Packetflix closes on an error with 1006, which the WebSocket library refuses (it
    // reports a protocol violation): the reason is read from the frame as sent.
    let script = stream_then_close(Vec::new(), 1, Some((CloseCode::Abnormal, "cannot lock target network stack")));
    let (port, server) = server(vec![script], None);
    let (tx, mut source) = channel(64, Duration::from_secs(1));
    let handle = remote::start(&RemoteSpec::parse(&format!("ws://127.0.0.1:{port}/capture")).unwrap(), tx).unwrap();
    let err = analyse_live(&mut source).unwrap_err().to_string();
    assert_eq!(
        err,
        "I/O error: the capture server closed the stream: cannot lock target network stack (close code 1006)"
    );
    handle.stop();
    server.join().unwrap();
}

#[test]
fn a_close_before_any_packet_is_the_error_of_the_whole_analysis() {
    let script = stream_then_close(Vec::new(), 1, Some((CloseCode::Policy, "not permitted: capture is off")));
    let (port, server) = server(vec![script], None);
    let (tx, mut source) = channel(64, Duration::from_secs(1));
    let handle = remote::start(&RemoteSpec::parse(&format!("ws://127.0.0.1:{port}/capture")).unwrap(), tx).unwrap();
    let err = analyse_live(&mut source).unwrap_err().to_string();
    assert_eq!(err, "I/O error: the capture server closed the stream: not permitted: capture is off (close code 1008)");
    handle.stop();
    server.join().unwrap();
}

#[test]
fn stopping_sends_a_normal_close_and_ends_the_source_without_error() {
    let bytes = pcapng_stream(&capture("outcomes.pcap"));
    let first = bytes[..3000].to_vec();
    // The server sends some packets, then waits for the client's close and answers it.
    let script: Script = Box::new(move |mut ws| {
        Box::pin(async move {
            ws.send(Message::binary(first)).await.unwrap();
            let close = client_close(&mut ws).await;
            let _ = ws.close(None).await;
            close
        })
    });
    let (port, server) = server(vec![script], None);
    let (tx, mut source) = channel(64, Duration::from_millis(20));
    let handle = remote::start(&RemoteSpec::parse(&format!("ws://127.0.0.1:{port}/capture")).unwrap(), tx).unwrap();
    // Wait for the first frame, then stop while the stream is open.
    let first_frame = loop {
        match callflow_correlate::FrameSource::next_frame(&mut source).unwrap() {
            Some(callflow_correlate::Pulled::Here(frame)) => break frame.number,
            Some(_) => continue,
            None => panic!("the source ended before any frame"),
        }
    };
    assert_eq!(first_frame, 1);
    handle.stop();
    let doc = analyse_live(&mut source).unwrap();
    assert!(doc.source.complete, "{:?}", doc.source.warnings);
    let closes = server.join().unwrap();
    assert_eq!(closes[0].as_ref().map(|f| (f.code, f.reason.to_string())), Some((CloseCode::Normal, "ciao".into())));
}

#[test]
fn a_lost_connection_is_an_error_without_reconnection_and_is_retried_with_it() {
    let path = capture("outcomes.pcap");
    let bytes = pcapng_stream(&path);
    let half = bytes[..bytes.len() / 2].to_vec();
    // Without reconnection: half a stream, then the connection drops with no close frame.
    let (port, server_one) = server(vec![stream_then_close(half.clone(), 1000, None)], None);
    let (tx, mut source) = channel(64, Duration::from_secs(1));
    let handle = remote::start(&RemoteSpec::parse(&format!("ws://127.0.0.1:{port}/capture")).unwrap(), tx).unwrap();
    let doc = analyse_live(&mut source).unwrap();
    let warning = doc.source.warnings.join("; ");
    assert!(warning.contains(&format!("the capture stream from ws://127.0.0.1:{port}/capture was lost")), "{warning}");
    handle.stop();
    server_one.join().unwrap();

    // With it: the same loss, then a second connection carries the whole capture.
    let scripts = vec![
        stream_then_close(half, 1000, None),
        stream_then_close(bytes.clone(), 4096, Some((CloseCode::Normal, "capture process terminated"))),
    ];
    let (port, server_two) = server(scripts, None);
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut spec = RemoteSpec::parse(&format!("ws://127.0.0.1:{port}/capture")).unwrap();
    spec.reconnect = Some(Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(40) });
    let seen = events.clone();
    spec.on_event = Some(Arc::new(move |event: &RemoteEvent| seen.lock().unwrap().push(event.clone())));
    let (tx, mut source) = channel(64, Duration::from_secs(1));
    let handle = remote::start(&spec, tx).unwrap();
    // The second stream ends normally; with reconnection on, the client would try a third
    // time, so the analysis runs on a thread and the test stops the client once the
    // second connection's frames are all in.
    let file = analyse_file(&path);
    let analysis = std::thread::spawn(move || analyse_live(&mut source).unwrap());
    while handle.reconnects() < 1 || events.lock().unwrap().len() < 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.stop();
    let live = analysis.join().unwrap();
    let events = events.lock().unwrap().clone();
    assert!(
        matches!(&events[0], RemoteEvent::Lost { retry_in, .. } if *retry_in == Duration::from_millis(10)),
        "{events:?}"
    );
    assert_eq!(events[1], RemoteEvent::Reconnected { attempt: 1 });
    assert!(matches!(&events[2], RemoteEvent::Lost { reason, .. } if reason == "the server ended the capture"));
    assert_eq!(live.source.packets, file.source.packets + packets_in(&bytes[..bytes.len() / 2]));
    server_two.join().unwrap();
}

/// The packets whole in a piece of a pcapng stream.
fn packets_in(bytes: &[u8]) -> u64 {
    let mut reader = CaptureReader::from_bytes(bytes.to_vec()).unwrap();
    let mut n = 0;
    while let Ok(Some(_)) = reader.next_frame() {
        n += 1;
    }
    n
}

#[test]
fn a_server_that_refuses_the_upgrade_is_named_with_its_answer() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 2048];
        let _ = conn.read(&mut request).unwrap();
        let body = "this is a websocket service; please use WebSocket";
        // One write: `write!` sent the answer in pieces, and a client that had read the
        // head before the body arrived reported the status alone (CI saw it once).
        let answer =
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        conn.write_all(answer.as_bytes()).unwrap();
    });
    let (tx, _source) = channel(4, Duration::from_secs(1));
    let err = remote::start(&RemoteSpec::parse(&format!("ws://127.0.0.1:{port}/capture")).unwrap(), tx).unwrap_err();
    assert!(matches!(err, RemoteError::Refused { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "ws://127.0.0.1:{port}/capture refused the WebSocket upgrade: HTTP 400 Bad Request: this is a websocket service; please use WebSocket"
        )
    );
    server.join().unwrap();
}

#[test]
fn a_refusal_whose_body_comes_after_its_head_is_quoted_whole() {
    // Regression: the WebSocket library keeps only the body bytes that came with the
    // head, so a server that wrote its refusal in two pieces was reported by status alone.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = "this is a websocket service; please use WebSocket";
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 2048];
        let _ = conn.read(&mut request).unwrap();
        conn.set_nodelay(true).unwrap();
        let head = format!("HTTP/1.1 403 Forbidden\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
        conn.write_all(head.as_bytes()).unwrap();
        conn.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        conn.write_all(&body.as_bytes()[..10]).unwrap();
        conn.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        conn.write_all(&body.as_bytes()[10..]).unwrap();
        // The client is done once it has the body: it must not wait for the close.
        std::thread::sleep(Duration::from_millis(300));
    });
    let (tx, _source) = channel(4, Duration::from_secs(1));
    let err = remote::start(&RemoteSpec::parse(&format!("ws://127.0.0.1:{port}/capture")).unwrap(), tx).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("ws://127.0.0.1:{port}/capture refused the WebSocket upgrade: HTTP 403 Forbidden: {body}")
    );
    server.join().unwrap();
}

#[test]
fn nothing_listening_is_a_connect_error_naming_the_address() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (tx, _source) = channel(4, Duration::from_secs(1));
    let err = remote::start(&RemoteSpec::parse(&format!("ws://127.0.0.1:{port}/capture")).unwrap(), tx).unwrap_err();
    assert!(err.to_string().starts_with(&format!("cannot connect to ws://127.0.0.1:{port}/capture")), "{err}");
}

#[test]
fn wss_streams_through_tls_with_the_given_ca() {
    let path = capture("outcomes.pcap");
    let bytes = pcapng_stream(&path);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("callflow-live-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (port, server) = server(
        vec![stream_then_close(bytes, 1500, Some((CloseCode::Normal, "capture process terminated")))],
        Some(acceptor),
    );
    let mut spec = RemoteSpec::parse(&format!("wss://localhost:{port}/capture")).unwrap();
    spec.ca_file = Some(ca);
    let (tx, mut source) = channel(64, Duration::from_secs(1));
    let handle = remote::start(&spec, tx).unwrap();
    let live = analyse_live(&mut source).unwrap();
    assert_eq!(outline(&live), outline(&analyse_file(&path)));
    handle.stop();
    server.join().unwrap();
    std::fs::remove_dir_all(dir).ok();
}
