//! WebSocket fan-out delay: connects 1,000 clients to a running callflowd, uploads a capture a few times, and prints how late the events reached the clients (p50, p99, max over every delivery).
//!
//! Each event carries `ts`, when the server published it; a client subtracts it from the
//! time it read the message (same host, same clock). Run against a release build, the
//! server in one terminal and this in another (about 1,000 sockets each, so `ulimit -n`
//! must allow some 1,100 descriptors; the default soft limit of 1,024 does not):
//!
//! ```sh
//! CALLFLOW_WEBSOCKET__MAX_CLIENTS=1100 CALLFLOW_LIMITS__RATE_LIMIT_PER_SECOND=0 \
//!     cargo run --release -p callflowd -- --upload-dir /tmp/cf/uploads --results-dir /tmp/cf/results
//! cargo run --release -p callflow-server --example fanout -- [ADDR=127.0.0.1:8080] [CLIENTS=1000] [UPLOADS=20] [PACE_MS=0]
//! ```
//!
//! Each upload is the bundled one-call capture (a handful of events: status, session, stats).
//! With `PACE_MS` 0 the next upload starts as soon as the previous job is finished, so the
//! bursts of events follow each other as fast as the 2 cores deliver them and the delays
//! include waiting behind the previous burst; with `PACE_MS` > 0 uploads start that many
//! milliseconds apart (or when the previous job is finished, if later), which measures the
//! delivery of one burst to every client. Prints the figures, asserts nothing.

use futures_util::StreamExt;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The raw text of the first `"name":` value in a message. The clients only find two
/// fields, not parse the JSON, so that their own work (1,000 of them in one process, on
/// the server's cores) weighs as little as possible on the delays they measure.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &text[start..];
    Some(&rest[..rest.find([',', '}']).unwrap_or(rest.len())])
}

/// The clients' WebSocket settings. tungstenite zero-fills its whole read buffer on every
/// read (128 KiB by default, as the server found for itself): with 1,000 clients on the
/// server's 2 cores, that memset would be measured as the server's delay. Messages larger
/// than the buffer are still read whole, in several reads.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: String = arg(1, "127.0.0.1:8080".to_string());
    let (clients, uploads, pace): (usize, usize, u64) = (arg(2, 1000), arg(3, 20), arg(4, 0));
    let capture = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap"))?;

    // Connected 100 at a time (the listen backlog), each past its full_state.
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(clients);
    for first in (0..clients).step_by(100) {
        let batch = (first..(first + 100).min(clients)).map(|_| async {
            let url = format!("ws://{addr}/api/v1/ws");
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true).await?;
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("full_state") => Ok(ws),
                other => Err(format!("no full_state: {other:?}").into()),
            }
        });
        for ws in futures_util::future::join_all(batch).await {
            sockets.push(ws.map_err(|e: Box<dyn std::error::Error>| e.to_string())?);
        }
    }
    println!("{clients} WebSocket clients connected in {:.2?}", started.elapsed());

    // Every client notes the delay of each job event until it has seen `uploads` jobs finish.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let (mut delays, mut finished) = (Vec::new(), 0);
                while finished < uploads {
                    let Some(Ok(msg)) = ws.next().await else { break };
                    let received = now();
                    let Message::Text(text) = msg else { continue };
                    let kind = field(&text, "type");
                    if kind == Some("\"heartbeat\"") {
                        continue;
                    }
                    if let Some(ts) = field(&text, "ts").and_then(|t| t.parse::<f64>().ok()) {
                        delays.push(received - ts);
                    }
                    // A status message holds the job, whose `status` says where it is.
                    let state = field(&text, "status");
                    if kind == Some("\"status\"")
                        && state.is_some_and(|s| ["\"completed\"", "\"failed\"", "\"cancelled\""].contains(&s))
                    {
                        finished += 1;
                    }
                }
                delays
            })
        })
        .collect();

    let http = reqwest::Client::new();
    let started = Instant::now();
    for _ in 0..uploads {
        let next = Instant::now() + Duration::from_millis(pace);
        let response = http
            .post(format!("http://{addr}/api/v1/upload?name=fanout.pcap"))
            .header("content-type", "application/vnd.tcpdump.pcap")
            .body(capture.clone())
            .send()
            .await?;
        let job: Value = response.json().await?;
        let status = format!("http://{addr}/api/v1/jobs/{}/status", job["job_id"]);
        loop {
            let v: Value = http.get(&status).send().await?.json().await?;
            if ["completed", "failed", "cancelled"].iter().any(|s| v["status"] == *s) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep_until(next.into()).await;
    }
    let mut all = Vec::new();
    for reader in readers {
        all.extend(tokio::time::timeout(Duration::from_secs(60), reader).await??);
    }
    let elapsed = started.elapsed();
    if all.is_empty() {
        return Err("no event received".into());
    }
    all.sort_by(f64::total_cmp);
    let at = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize] * 1e3;
    println!(
        "{} deliveries ({:.0} events x {clients} clients) in {elapsed:.2?}: delay p50 {:.2} ms, p99 {:.2} ms, \
         p99.9 {:.2} ms, max {:.2} ms",
        all.len(),
        all.len() as f64 / clients as f64,
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    );
    Ok(())
}
