//! Shared by the integration tests: a real server on an ephemeral loopback port, with its own directories.

#![allow(dead_code)]

pub mod calls;
pub mod webdriver;

use callflow_config::Settings;
use callflow_jobs::{Analysis, Job, JobContext, JobManager, ManagerOptions};
use callflow_model::Document;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A job's id as the API gives it (`job_id`): its UUID, a `Copy` value whose `Display` is
/// the form the API writes.
pub type JobUuid = callflow_jobs::Uuid;

/// The `job_id` of an API answer or event.
pub trait JobIdOf {
    /// `job_id` as a UUID; panics, showing the JSON, when it is none.
    fn job_id(&self) -> JobUuid;
    /// Whether `job_id` is `job`'s.
    fn job_id_is(&self, job: JobUuid) -> bool;
}

impl JobIdOf for serde_json::Value {
    fn job_id(&self) -> JobUuid {
        let text = self["job_id"].as_str().unwrap_or_else(|| panic!("no job_id string: {self}"));
        let uuid = JobUuid::parse_str(text).unwrap_or_else(|e| panic!("job_id {text}: {e}"));
        assert_eq!(uuid.hyphenated().to_string(), text, "the API writes UUIDs hyphenated, in lowercase");
        uuid
    }

    fn job_id_is(&self, job: JobUuid) -> bool {
        self["job_id"].as_str() == Some(job.hyphenated().to_string().as_str())
    }
}

/// The bundled example capture: one call, INVITE to BYE, RTP both ways.
pub fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/captures/basic-call.pcap")
}

/// Settings for a test server: loopback, any port, its own directories, no rate limit.
pub fn settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    s.server.port = 0;
    s.processing.workers = 1;
    s.storage.upload_dir = dir.join("uploads");
    s.storage.results_dir = dir.join("results");
    s.limits.rate_limit_per_second = 0;
    // The name /metrics labels every series with (the default, host:0, says nothing).
    s.cluster.node_name = "test".into();
    s
}

/// A running server; dropping it shuts the server down.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Its directories; `None` only once shut down.
    dir: Option<tempfile::TempDir>,
    pub settings: Settings,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Opened when the server stops, so that its jobs let the workers go even when a
    /// failed assertion skipped the test's own opening.
    gate: Option<Arc<Gate>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Logs `user` in with `password` and returns the session token (panics unless the
    /// server gives one).
    pub async fn login(&self, client: &reqwest::Client, user: &str, password: &str) -> String {
        let body = serde_json::json!({"username": user, "password": password});
        let answer: serde_json::Value =
            client.post(self.url("/api/login")).json(&body).send().await.unwrap().json().await.unwrap();
        answer["token"].as_str().unwrap_or_else(|| panic!("no token in {answer}")).to_string()
    }

    /// GETs `path` and returns the JSON body (whatever the status: callers assert on it).
    pub async fn get_json(&self, client: &reqwest::Client, path: &str) -> serde_json::Value {
        client.get(self.url(path)).send().await.unwrap().json().await.unwrap()
    }

    /// The files in the upload directory, by name, sorted.
    /// The one capture in the upload directory, named after its job's key (the store's
    /// number for it, never what the client sent): `N.capture`.
    pub fn the_upload(&self) -> String {
        let uploads = self.uploads();
        assert_eq!(uploads.len(), 1, "{uploads:?}");
        let key = uploads[0].strip_suffix(".capture").unwrap_or_else(|| panic!("{uploads:?}"));
        assert!(key.parse::<i64>().is_ok_and(|k| k > 0), "{uploads:?}");
        uploads[0].clone()
    }

    pub fn uploads(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.settings.storage.upload_dir) else { return Vec::new() };
        let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    /// Stops accepting and waits for the server to finish; returns its directories, for
    /// [`start_in`] to start it again.
    pub async fn shutdown(mut self) -> tempfile::TempDir {
        if let Some(gate) = &self.gate {
            gate.open();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.dir.take().expect("shut down once")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(gate) = &self.gate {
            gate.open();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a server with `settings` changed by `tweak`.
pub async fn start(tweak: impl FnOnce(&mut Settings)) -> TestServer {
    start_in(tempfile::tempdir().unwrap(), tweak).await
}

/// Starts a server on the directories in `dir` (a restart, given those of a server that
/// was shut down).
pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Settings)) -> TestServer {
    launch(dir, None, None, tweak).await
}

/// Starts a server on a listener the test bound (with socket options of its own).
pub async fn start_on(listener: tokio::net::TcpListener, tweak: impl FnOnce(&mut Settings)) -> TestServer {
    launch(tempfile::tempdir().unwrap(), Some(listener), None, tweak).await
}

/// Starts a server whose jobs wait at `gate` instead of analysing their captures, to hold
/// workers for as long as a test needs; the gate opens when the server stops.
pub async fn start_gated(gate: &Arc<Gate>, tweak: impl FnOnce(&mut Settings)) -> TestServer {
    launch(tempfile::tempdir().unwrap(), None, Some(gate.clone()), tweak).await
}

/// Starts a server whose jobs run `analysis` (sessions made or changed by the test).
pub async fn start_analysing(analysis: Arc<dyn Analysis>, tweak: impl FnOnce(&mut Settings)) -> TestServer {
    launch_with(tempfile::tempdir().unwrap(), None, None, Some(analysis), None, tweak).await
}

/// Starts a server whose live jobs' sources are opened by `sources`.
pub async fn start_live(sources: callflow_server::LiveSources, tweak: impl FnOnce(&mut Settings)) -> TestServer {
    launch_with(tempfile::tempdir().unwrap(), None, None, None, Some(sources), tweak).await
}

async fn launch(
    dir: tempfile::TempDir,
    listener: Option<tokio::net::TcpListener>,
    gate: Option<Arc<Gate>>,
    tweak: impl FnOnce(&mut Settings),
) -> TestServer {
    launch_with(dir, listener, gate, None, None, tweak).await
}

async fn launch_with(
    dir: tempfile::TempDir,
    listener: Option<tokio::net::TcpListener>,
    gate: Option<Arc<Gate>>,
    analysis: Option<Arc<dyn Analysis>>,
    sources: Option<callflow_server::LiveSources>,
    tweak: impl FnOnce(&mut Settings),
) -> TestServer {
    let mut settings = settings(dir.path());
    tweak(&mut settings);
    // SQLite in the test's directory, or the PostgreSQL database a test names.
    let store = callflow_jobs::open_store(&settings.storage).unwrap();
    let opts = ManagerOptions::from_settings(&settings);
    let analysis = analysis.or_else(|| gate.clone().map(|g| g as Arc<dyn Analysis>));
    let (manager, _) = match analysis {
        Some(analysis) => JobManager::start_with(store, opts, analysis),
        None => JobManager::start(store, opts),
    }
    .unwrap();
    let manager = Arc::new(manager);
    let server = match listener {
        Some(listener) => callflow_server::Server::from_listener(listener, settings.clone(), manager).await,
        None => callflow_server::Server::bind(settings.clone(), manager).await,
    }
    .unwrap();
    let server = match sources {
        Some(sources) => server.with_live_sources(sources),
        None => server,
    };
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    TestServer { addr, dir: Some(dir), settings, stop: Some(tx), task: Some(task), gate }
}

/// Uploads `body` as a raw body of `content_type` to `/api/v1/upload{query}` (`query` is
/// `""` or `?name=...`); returns the response, whatever it says.
pub async fn upload_raw(
    client: &reqwest::Client,
    server: &TestServer,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let url = server.url(&format!("/api/v1/upload{query}"));
    client.post(url).header("content-type", content_type).body(body).send().await.unwrap()
}

/// Uploads `body` as a raw pcap body; asserts it was accepted and returns the job id.
pub async fn upload_pcap(client: &reqwest::Client, server: &TestServer, query: &str, body: Vec<u8>) -> JobUuid {
    let response = upload_raw(client, server, query, "application/vnd.tcpdump.pcap", body).await;
    assert_eq!(response.status(), 201);
    let v: serde_json::Value = response.json().await.unwrap();
    assert_eq!(v["status"], "queued");
    v.job_id()
}

/// Uploads the example capture as a raw body; returns the job id.
pub async fn upload_example(client: &reqwest::Client, server: &TestServer) -> JobUuid {
    upload_pcap(client, server, "?name=basic-call.pcap", std::fs::read(example()).unwrap()).await
}

/// The sender side of an upload held open: each item sent is a chunk of its body (an
/// error breaks the upload off); the body ends when the sender is dropped.
pub type BodySender = tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>;

/// Starts a raw upload whose body begins with `first` and then arrives as the test sends
/// it; returns the sender and the request, running on its own task.
pub async fn held_upload(
    client: &reqwest::Client,
    server: &TestServer,
    first: Vec<u8>,
) -> (BodySender, tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(Ok(first)).await.unwrap();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let request = client
        .post(server.url("/api/v1/upload"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    (tx, tokio::spawn(request))
}

/// Polls the job's status until it is finished (bounded).
pub async fn wait_finished(client: &reqwest::Client, server: &TestServer, job: JobUuid) -> serde_json::Value {
    for _ in 0..600 {
        let v: serde_json::Value =
            client.get(server.url(&format!("/api/v1/jobs/{job}/status"))).send().await.unwrap().json().await.unwrap();
        if ["completed", "failed", "cancelled"].contains(&v["status"].as_str().unwrap()) {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("job {job} did not finish");
}

/// Uploads the example capture as a multipart form (field `file`); returns the job id.
pub async fn upload_example_multipart(client: &reqwest::Client, server: &TestServer) -> JobUuid {
    let part = reqwest::multipart::Part::bytes(std::fs::read(example()).unwrap()).file_name("basic-call.pcap");
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = client.post(server.url("/api/v1/upload")).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let v: serde_json::Value = response.json().await.unwrap();
    assert_eq!((v["status"].as_str(), v["name"].as_str()), (Some("queued"), Some("basic-call.pcap")));
    v.job_id()
}

/// What the jobs of a [`Gate`] are doing, for a test to await.
#[derive(Clone, Copy, Debug, Default)]
pub struct GateState {
    /// Jobs may stop once asked to.
    pub open: bool,
    /// Jobs running now.
    pub running: usize,
    /// Jobs asked to stop (cancelled, or the server shutting down) so far.
    pub asked_to_stop: usize,
}

/// An analysis that reads nothing and runs until it is asked to stop and the gate is open:
/// a worker kept busy for as long as a test needs, and, with the gate shut, a job that is
/// slow to stop once cancelled. Its jobs end as failed, "stopped", unless cancelled. See
/// [`start_gated`].
#[derive(Debug)]
pub struct Gate(tokio::sync::watch::Sender<GateState>);

impl Gate {
    /// A shut gate.
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate(tokio::sync::watch::Sender::new(GateState::default())))
    }

    /// Lets the jobs asked to stop (and those asked later) stop.
    pub fn open(&self) {
        self.0.send_modify(|s| s.open = true);
    }

    /// Waits (bounded) until the jobs' state satisfies `ready`.
    pub async fn until(&self, ready: impl FnMut(&GateState) -> bool) {
        let mut rx = self.0.subscribe();
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(ready))
            .await
            .expect("the gated jobs got there in time")
            .unwrap();
    }
}

impl Analysis for Gate {
    fn run(&self, _job: &Job, ctx: &mut JobContext<'_>) -> Result<Document, String> {
        self.0.send_modify(|s| s.running += 1);
        let mut asked = false;
        while !(asked && self.0.borrow().open) {
            if !asked && ctx.should_stop() {
                asked = true;
                self.0.send_modify(|s| s.asked_to_stop += 1);
            }
            // A worker thread, polling as the real analysis does between frames.
            std::thread::sleep(Duration::from_millis(5));
        }
        self.0.send_modify(|s| s.running -= 1);
        Err("stopped".into())
    }
}

/// The next text message of a WebSocket, or `close CODE` when it is closed (bounded wait).
pub async fn next_text<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<
            Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
        > + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("in time") {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Close(frame))) => return format!("close {}", frame.map_or(0, |f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
}

/// A self-signed certificate for `localhost`, written as PEM files for the server's
/// `server.tls` settings; the files live as long as this value.
pub struct TestCert {
    /// The certificate and its key, for the client side (trust roots).
    pub key: rcgen::CertifiedKey<rcgen::KeyPair>,
    /// `cert.pem`.
    pub cert_path: PathBuf,
    /// `key.pem`.
    pub key_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCert {
    /// Generates the certificate and writes its files.
    pub fn localhost() -> TestCert {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, key.cert.pem()).unwrap();
        std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
        TestCert { key, cert_path, key_path, _dir: dir }
    }

    /// Points `settings` at the certificate.
    pub fn configure(&self, settings: &mut Settings) {
        settings.server.tls.cert = Some(self.cert_path.clone());
        settings.server.tls.key = Some(self.key_path.clone());
    }
}

/// How a test's live source replays a capture: its frames at one every `gap`, stamped
/// with the time they are sent, `loops` times over (each pass a new call when
/// `new_call_ids`: the Call-ID's first bytes are the pass number), then the source stays
/// open (quiet) until its job ends.
#[derive(Clone, Debug)]
pub struct Replay {
    pub capture: PathBuf,
    pub gap: Duration,
    pub loops: u64,
    pub new_call_ids: bool,
    /// Sent to the job's notices once the replay is over.
    pub notice: Option<String>,
}

impl Replay {
    /// The example capture once, a frame a millisecond.
    pub fn example() -> Replay {
        Replay { capture: example(), gap: Duration::from_millis(1), loops: 1, new_call_ids: false, notice: None }
    }

    /// Live sources that replay this, whatever source a request names.
    pub fn sources(self) -> callflow_server::LiveSources {
        callflow_server::LiveSources::new(move |_source, settings| {
            let (tx, rx) = callflow_live::channel(settings.live.queue_frames, callflow_server::sources::TICK);
            let (notices_tx, notices_rx) = std::sync::mpsc::channel();
            let replay = self.clone();
            let feeder = tx.clone();
            std::thread::spawn(move || replay.feed(&feeder, &notices_tx));
            // The feed holds a sender: the source stays open, quiet, once the replay is over.
            Ok(Box::new(callflow_server::ChannelFeed::new(rx).holding(tx).with_notices(notices_rx)))
        })
    }

    fn feed(&self, tx: &callflow_live::FrameSender, notices: &std::sync::mpsc::Sender<String>) {
        let frames = read_frames(&self.capture);
        for pass in 0..self.loops {
            for (link_type, data) in &frames {
                let mut data = data.clone();
                if self.new_call_ids {
                    rewrite_call_id(&mut data, pass);
                }
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                let frame = callflow_live::OwnedFrame {
                    ts: callflow_decode::Timestamp::from_nanos(now.as_nanos() as i64),
                    link_type: *link_type,
                    orig_len: data.len() as u32,
                    data,
                    interface: 0,
                };
                if tx.send(frame).is_err() {
                    return;
                }
                std::thread::sleep(self.gap);
            }
        }
        if let Some(notice) = &self.notice {
            let _ = notices.send(notice.clone());
        }
    }
}

/// Every frame of a capture: link type and bytes.
pub fn read_frames(path: &std::path::Path) -> Vec<(callflow_decode::LinkType, Vec<u8>)> {
    let mut reader = callflow_decode::capture::CaptureReader::open(path).unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        frames.push((frame.link_type, frame.data.to_vec()));
    }
    frames
}

/// Makes a SIP message's Call-ID another call's: its first 8 bytes become `pass` in hex
/// (the same length, so every length and offset in the frame stays right).
pub fn rewrite_call_id(data: &mut [u8], pass: u64) {
    let Some(at) = data.windows(9).position(|w| w == b"Call-ID: ") else { return };
    let start = at + 9;
    let end = data[start..].iter().position(|&b| b == b'\r').map_or(data.len(), |n| start + n);
    let tag = format!("{pass:08x}");
    let n = tag.len().min(end - start);
    data[start..start + n].copy_from_slice(&tag.as_bytes()[..n]);
}

/// The next message of type `kind` about `job` on an event WebSocket (bounded wait).
pub async fn next_of<S>(ws: &mut S, job: JobUuid, kind: &str) -> serde_json::Value
where
    S: futures_util::Stream<
            Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
        > + Unpin,
{
    loop {
        let text = next_text(ws).await;
        assert!(!text.starts_with("close"), "the WebSocket closed waiting for {kind}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["type"] == kind && v.job_id_is(job) {
            return v;
        }
    }
}
