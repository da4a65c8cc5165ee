//! The REST handlers: uploads, jobs, sessions, a session's pcap, ladder, quality chart and raw messages, health, version, metrics and the OpenAPI document.

use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::hub::{job_json, status_json};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use callflow_correlate::kpis::{BadGrouping, Grouping, KpiAccumulator};
use callflow_decode::tls::keylog::KeyLog;
use callflow_jobs::{JobError, JobId, JobQuery, JobState, JobStore, NewJob, SessionCursor, SessionQuery, SessionSort};
use callflow_model::{Problem, Session, SessionKind, Subscriber};
use callflow_render::CapturePart;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{self, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// An `offset` the store can take: it counts in SQLite's signed 64 bits, where 2^63 and
/// beyond wrapped to a negative offset, i.e. the first page.
fn check_offset(offset: u64) -> Result<u64, ApiError> {
    if offset > i64::MAX as u64 {
        return Err(ApiError::BadRequest(format!("offset must be at most {}", i64::MAX)));
    }
    Ok(offset)
}

/// `?name=` of an upload.
#[derive(Debug, Deserialize)]
pub struct UploadParams {
    name: Option<String>,
}

/// Content types accepted as a raw capture body.
const RAW_TYPES: &[&str] = &[
    "application/vnd.tcpdump.pcap",
    "application/octet-stream",
    "application/x-pcapng",
    "application/x-pcap",
    "application/gzip",
];

/// True when `head` (at least 4 bytes) starts like pcap, pcapng or gzip.
fn capture_magic(head: &[u8]) -> bool {
    const MAGICS: [[u8; 4]; 7] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        [0x0a, 0x0d, 0x0d, 0x0a],
        [0x1f, 0x8b, 0x08, 0x00],
        [0x1f, 0x8b, 0x08, 0x08],
    ];
    head.len() >= 4 && (MAGICS.iter().any(|m| head[..4] == m[..]) || head[..2] == [0x1f, 0x8b])
}

/// Where an upload is written while it arrives (`42.capture.part`) and where it stays once
/// its job exists (`42.capture`): both named by the id reserved for the job, never by
/// anything the client sent. The job is created only once the file is complete and in
/// place, so a half upload is never a job, not even after a restart; the server removes
/// the `.part` files a crash left when it starts (see [`remove_interrupted_uploads`]).
fn upload_paths(dir: &path::Path, id: JobId) -> (PathBuf, PathBuf) {
    let key = id.key();
    (dir.join(format!("{key}.capture.part")), dir.join(format!("{key}.capture")))
}

/// The job key ([`JobId::key`], the store's number, not the UUID clients see: a store can
/// tell whether it handed one out) an upload file is named after, and whether it is a
/// `.part` file.
fn upload_file_id(name: &str) -> Option<(i64, bool)> {
    match name.strip_suffix(".capture.part") {
        Some(id) => Some((id.parse().ok()?, true)),
        None => Some((name.strip_suffix(".capture")?.parse().ok()?, false)),
    }
}

/// Removes the `.part` files of this store's interrupted uploads from `dir`: files named
/// after a key the store reserved (at most [`JobStore::last_key`]) that no job has. Returns
/// how many. Nothing else is removed: a complete `N.capture` without a job, or a `.part`
/// file of an id this store never handed out, may be another store's (a results
/// directory mistyped, a database lost), so [`orphan_captures`] only lists those. The
/// caller holds the upload directory's lock (`callflow_jobs::DirLock`), so no other
/// process is uploading into it.
pub(crate) fn remove_interrupted_uploads(dir: &path::Path, store: &dyn JobStore) -> usize {
    // Nodes sharing the store share the directory: a `.part` file without a job may be
    // an upload another node is receiving now.
    if store.is_shared() {
        return 0;
    }
    let Ok(last) = store.last_key() else { return 0 };
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some((id, true)) = entry.file_name().to_str().and_then(upload_file_id) else { continue };
        if id <= last && matches!(store.job_by_key(id), Ok(None)) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The upload files in `dir` (`N.capture`, and `N.capture.part` once this store's own
/// were removed at start) that no job of `store` has, sorted: left by a process stopped
/// between placing an upload and creating its job, or belonging to another store. Reported at start, removed only when an operator asks
/// (`callflowd --remove-orphan-captures`).
pub fn orphan_captures(dir: &path::Path, store: &dyn JobStore) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut orphans: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| match e.file_name().to_str().and_then(upload_file_id) {
            // On a shared store a `.part` file may be another node's upload in progress.
            Some((_, true)) if store.is_shared() => false,
            Some((key, _)) => matches!(store.job_by_key(key), Ok(None)),
            None => false,
        })
        .map(|e| e.path())
        .collect();
    orphans.sort();
    orphans
}

/// An upload's `.part` file: removed on drop unless kept, so that a refused, broken or
/// abandoned upload leaves nothing behind.
struct PartFile {
    path: PathBuf,
    kept: bool,
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A file being uploaded.
struct Incoming {
    part: PartFile,
    /// Buffered: a body arrives in chunks of a few KiB, and each unbuffered write would be
    /// one trip to the blocking pool.
    file: tokio::io::BufWriter<tokio::fs::File>,
    written: u64,
    limit: u64,
    head: Vec<u8>,
}

impl Incoming {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(ApiError::TooLarge { limit: self.limit });
        }
        if self.head.len() < 4 {
            let take = (4 - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            if self.head.len() == 4 && !capture_magic(&self.head) {
                return Err(not_a_capture(&self.head));
            }
        }
        self.file.write_all(chunk).await.map_err(|e| ApiError::upload_io("writing the upload", e))
    }

    /// The complete file, written out of the buffer but not yet synced: [`place`] does that
    /// on the blocking task that renames it.
    async fn finish(mut self) -> Result<(PartFile, std::fs::File, u64), ApiError> {
        if self.head.len() < 4 {
            return Err(not_a_capture(&self.head));
        }
        self.file.flush().await.map_err(|e| ApiError::upload_io("writing the upload", e))?;
        let file = self.file.into_inner().into_std().await;
        Ok((self.part, file, self.written))
    }
}

/// Puts a complete upload in place as `stored`, durably: its data reaches the disk before
/// the rename, and the rename before the caller creates the job, so that a crash or a power
/// loss can leave a `.part` file or a job-less `N.capture` (both removed at the next start)
/// but never a job whose capture is empty or cut short. Blocks.
fn place(mut part: PartFile, file: std::fs::File, stored: &path::Path) -> Result<(), ApiError> {
    let failed = |e: std::io::Error| ApiError::upload_io("placing the upload", e);
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&part.path, stored).map_err(failed)?;
    part.kept = true;
    // The rename is an entry in the directory, made durable by syncing the directory.
    let dir = stored.parent().unwrap_or(path::Path::new("."));
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        let _ = std::fs::remove_file(stored);
        return Err(failed(e));
    }
    Ok(())
}

fn not_a_capture(head: &[u8]) -> ApiError {
    let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
    ApiError::UnsupportedMedia(format!(
        "not a capture file (first bytes 0x{hex}): upload pcap, pcapng, or either compressed with gzip"
    ))
}

/// `POST /api/v1/upload`: a capture as the raw body or a multipart `file` field, streamed
/// to the upload directory; answers 201 with the queued job.
pub async fn upload(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<UploadParams>,
    req: Request,
) -> Result<Response, ApiError> {
    let _permit = state.uploads.clone().try_acquire_owned().map_err(|_| ApiError::Busy {
        message: "too many uploads in progress; retry shortly".into(),
        retry_after: 5,
    })?;
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let limit = state.settings.limits.max_upload_bytes;
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        // A raw body's declared size is the file's; a multipart one's also holds the form.
        if len > limit.saturating_add(64 * 1024) {
            return Err(ApiError::TooLarge { limit });
        }
    }
    let mut name = params.name.map(checked_name).transpose()?;
    // A TLS key log sent with the capture (multipart part `keylog`), kept beside it.
    let mut keylog: Option<Vec<u8>> = None;
    let raw = RAW_TYPES.iter().any(|t| content_type.starts_with(t));
    if !raw && !content_type.starts_with("multipart/form-data") {
        return Err(ApiError::UnsupportedMedia(format!(
            "unsupported Content-Type `{content_type}`: send the capture as multipart/form-data (field `file`) or as \
             application/vnd.tcpdump.pcap or application/octet-stream"
        )));
    }
    let dir = state.settings.storage.upload_dir.clone();
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ApiError::upload_io("creating the upload directory", e))?;
    // A full queue refuses the upload before its body is read rather than after it was
    // all received (gigabytes, for a big capture); `submit` decides again at the end, the
    // queue being free to fill meanwhile. On the blocking pool with the reservation, as
    // the check waits for the queue's lock, which `submit` holds while it writes the store.
    let (id, (path, stored)) = state
        .jobs(move |m| {
            m.check_room()?;
            // A database deleted or read-only would acknowledge the upload and then lose it.
            m.check_writable()?;
            // An id whose file is there already (a capture kept from another store, see
            // `orphan_captures`) is skipped: the rename would overwrite that capture.
            loop {
                let id = m.reserve_id()?;
                let paths = upload_paths(&dir, id);
                if !paths.0.exists() && !paths.1.exists() {
                    return Ok((id, paths));
                }
            }
        })
        .await?;
    let file = tokio::fs::File::create(&path).await.map_err(|e| ApiError::upload_io("creating the upload file", e))?;
    let file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let part = PartFile { path, kept: false };
    let mut incoming = Incoming { part, file, written: 0, limit, head: Vec::new() };
    let l = &state.settings.limits;
    let mut pace = Pace::new(state.settings.server.request_timeout, l.upload_min_bytes_per_second, l.upload_deadline);
    if raw {
        let mut body = req.into_body();
        while let Some(frame) = pace.wait("body", body.frame()).await? {
            let frame = frame.map_err(|e| ApiError::BadRequest(format!("reading the upload: {e}")))?;
            if let Some(data) = frame.data_ref() {
                pace.got(data.len())?;
                incoming.write(data).await?;
            }
        }
    } else {
        let (parts, body) = req.into_parts();
        // What arrives while the form looks for its next part (boundaries, part headers,
        // fields we skip) is bounded: multer buffers a part's headers whole, and a 50 MB
        // one was accepted. The slack is a body chunk, in which the headers end and the
        // part's data begins.
        let budget = (state.settings.server.max_header_bytes + 64 * 1024) as u64;
        let between = Arc::new(BetweenParts::default());
        let meter = between.clone();
        let body = body.into_data_stream().map(move |chunk| {
            let chunk = chunk?;
            meter.count(chunk.len() as u64, budget)?;
            Ok::<_, axum::Error>(chunk)
        });
        let req = Request::from_parts(parts, Body::from_stream(body));
        let mut form = Multipart::from_request(req, &state).await.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let form_error = |e: axum::extract::multipart::MultipartError| {
            if between.exceeded() {
                ApiError::BadRequest(format!(
                    "a part's headers (or the fields skipped before it) exceed {budget} bytes"
                ))
            } else {
                multipart_error(e, limit)
            }
        };
        let mut found = false;
        loop {
            between.start();
            let next = pace.wait("form", form.next_field()).await?;
            between.stop();
            let Some(mut field) = next.map_err(form_error)? else { break };
            match field.name() {
                Some("file") if !found => {
                    found = true;
                    if name.is_none() {
                        name = field.file_name().map(|n| checked_name(n.to_string())).transpose()?;
                    }
                    while let Some(chunk) = pace.wait("file", field.chunk()).await?.map_err(form_error)? {
                        pace.got(chunk.len())?;
                        incoming.write(&chunk).await?;
                    }
                }
                Some("name") if name.is_none() => {
                    let mut text = Vec::new();
                    while let Some(chunk) = pace.wait("name", field.chunk()).await?.map_err(form_error)? {
                        pace.got(chunk.len())?;
                        if text.len() + chunk.len() > MAX_NAME_BYTES {
                            return Err(name_too_long(text.len() + chunk.len()));
                        }
                        text.extend_from_slice(&chunk);
                    }
                    let text = String::from_utf8(text)
                        .map_err(|_| ApiError::BadRequest("the `name` field is not UTF-8 text".into()))?;
                    name = Some(text);
                }
                Some("keylog") if keylog.is_none() => {
                    let mut text = Vec::new();
                    while let Some(chunk) = pace.wait("keylog", field.chunk()).await?.map_err(form_error)? {
                        pace.got(chunk.len())?;
                        if text.len() + chunk.len() > MAX_KEYLOG_BYTES {
                            return Err(ApiError::BadRequest(format!(
                                "the `keylog` part is longer than {MAX_KEYLOG_BYTES} bytes"
                            )));
                        }
                        text.extend_from_slice(&chunk);
                    }
                    KeyLog::parse_given(&text).map_err(|e| ApiError::BadRequest(format!("the `keylog` part: {e}")))?;
                    keylog = Some(text);
                }
                _ => {}
            }
        }
        if !found {
            return Err(ApiError::BadRequest("the form has no `file` field".into()));
        }
    }
    let label = name.unwrap_or_else(|| "upload".into());
    let (part, file, bytes) = incoming.finish().await?;
    state.metrics.upload_bytes.fetch_add(bytes, Ordering::Relaxed);
    // Synced, placed and submitted on one blocking task, spawned with no await in between:
    // it runs to its end even if the client goes away now, so the file ends up either in
    // place with its job or removed.
    let manager = state.manager.clone();
    let job = tokio::task::spawn_blocking(move || {
        place(part, file, &stored)?;
        if let Some(text) = keylog {
            std::fs::write(callflow_jobs::job_key_log_path(&stored), text).map_err(|e| {
                let _ = std::fs::remove_file(&stored);
                ApiError::upload_io("writing the key log", e)
            })?;
        }
        manager.submit(NewJob::upload(&stored, label).with_id(id)).map_err(|e| {
            let _ = std::fs::remove_file(&stored);
            ApiError::from(e)
        })
    })
    .await
    .map_err(|e| ApiError::Internal(format!("upload task failed: {e}")))??;
    let body = json!({"job_id": job.id, "status": JobState::Queued, "name": job.label, "bytes": bytes});
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/api/v1/jobs/{}/status", job.id))], Json(body))
        .into_response())
}

/// The longest TLS key log an upload may carry: a key log line is about 200 bytes, so this
/// holds some 80,000 connections' secrets.
const MAX_KEYLOG_BYTES: usize = 16 << 20;

/// The longest job name, in bytes: the name is sent in every status, listing and event,
/// and a 20 MiB one made 8 listings take 940 MB.
const MAX_NAME_BYTES: usize = 255;

fn name_too_long(len: usize) -> ApiError {
    ApiError::BadRequest(format!("the name is longer than {MAX_NAME_BYTES} bytes ({len} or more)"))
}

/// `name` if it is short enough to be a job's name.
fn checked_name(name: String) -> Result<String, ApiError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(name_too_long(name.len()));
    }
    Ok(name)
}

/// Counts what a multipart body delivers while the form is between parts (see `upload`).
#[derive(Debug, Default)]
struct BetweenParts {
    /// Bytes since the form began looking for its next part, or `u64::MAX` while it reads a part.
    bytes: AtomicU64,
    over: std::sync::atomic::AtomicBool,
}

impl BetweenParts {
    fn start(&self) {
        self.bytes.store(0, Ordering::Relaxed);
    }

    fn stop(&self) {
        self.bytes.store(u64::MAX, Ordering::Relaxed);
    }

    /// Counts `n` bytes; an error past `budget`.
    fn count(&self, n: u64, budget: u64) -> Result<(), axum::Error> {
        let before = self.bytes.load(Ordering::Relaxed);
        if before == u64::MAX {
            return Ok(());
        }
        self.bytes.store(before + n, Ordering::Relaxed);
        if before + n > budget {
            self.over.store(true, Ordering::Relaxed);
            return Err(axum::Error::new("part headers too large"));
        }
        Ok(())
    }

    fn exceeded(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }
}

/// How fast an upload must arrive: in each `window` (`server.request_timeout`) at least
/// `min_rate` bytes a second on average (and at least one byte), and all of it before
/// `deadline` (`limits.upload_deadline`). A timer restarted by every chunk let one byte
/// every 2 s hold an upload slot for ever, and four such uploads blocked every other.
#[derive(Debug)]
struct Pace {
    window: Duration,
    need: u64,
    deadline: tokio::time::Instant,
    window_start: tokio::time::Instant,
    window_bytes: u64,
}

impl Pace {
    fn new(window: Duration, min_rate: u64, total: Duration) -> Pace {
        let now = tokio::time::Instant::now();
        let window = window.max(Duration::from_millis(1));
        let need = ((min_rate as f64 * window.as_secs_f64()) as u64).max(1);
        Pace { window, need, deadline: now + total, window_start: now, window_bytes: 0 }
    }

    /// Waits for `read` (the next part of `what`) within the pace.
    async fn wait<T>(&mut self, what: &str, read: impl std::future::Future<Output = T>) -> Result<T, ApiError> {
        tokio::pin!(read);
        loop {
            let until = (self.window_start + self.window).min(self.deadline);
            if let Ok(value) = tokio::time::timeout_at(until, &mut read).await {
                return Ok(value);
            }
            self.roll(what)?;
        }
    }

    /// Counts `n` bytes received.
    fn got(&mut self, n: usize) -> Result<(), ApiError> {
        self.window_bytes += n as u64;
        if tokio::time::Instant::now() >= self.window_start + self.window {
            self.roll("body")?;
        }
        Ok(())
    }

    /// Ends the current window: an error if the upload is past its deadline or the window
    /// got too little, else a new window.
    fn roll(&mut self, what: &str) -> Result<(), ApiError> {
        let now = tokio::time::Instant::now();
        if now >= self.deadline {
            return Err(ApiError::TooSlow(format!("the upload took longer than its deadline ({what})")));
        }
        if now >= self.window_start + self.window {
            if self.window_bytes < self.need {
                return Err(ApiError::TooSlow(format!(
                    "the upload is too slow: {} bytes in {:?}, at least {} needed ({what})",
                    self.window_bytes, self.window, self.need
                )));
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        Ok(())
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge { limit }
    } else {
        ApiError::BadRequest(e.body_text())
    }
}

/// `GET /api/v1/jobs` parameters.
#[derive(Debug, Deserialize)]
pub struct JobsParams {
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
    status: Option<String>,
}

/// `GET /api/v1/jobs`: newest first.
pub async fn jobs(State(state): State<AppState>, ApiQuery(p): ApiQuery<JobsParams>) -> Result<Json<Value>, ApiError> {
    let max = state.settings.limits.max_page_size as u64;
    let limit = p.limit.unwrap_or(100).clamp(1, max);
    let status = match p.status.as_deref() {
        None | Some("") => None,
        // Either spelling: clients written before statuses were lowercase send `COMPLETED`.
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_api_str()).collect();
            ApiError::BadRequest(format!("unknown status `{s}` ({}, in either case)", names.join(", ")))
        })?),
    };
    let offset = check_offset(p.offset)?;
    let jobs = state.jobs(move |m| m.jobs(&JobQuery { state: status, offset, limit })).await?;
    let jobs: Vec<Value> = jobs.iter().map(job_json).collect();
    Ok(Json(json!({"offset": offset, "limit": limit, "jobs": jobs})))
}

/// `GET /api/v1/jobs/{id}/status`.
///
/// Clients poll this, so it is answered on the async thread from the job manager's
/// memory (a lock and a lookup): the trip to the blocking pool that every store call
/// takes was half of the server's time. Only a job the manager has not seen since it
/// started goes to the store, once.
pub async fn job_status(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = state.resolve(&id).await?;
    let status = state.status(id).await?;
    Ok(Json(status_json(&status)))
}

/// `POST /api/v1/jobs/{id}/cancel`.
pub async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = state.resolve(&id).await?;
    let job = state.jobs(move |m| m.cancel(id)).await?;
    Ok(Json(job_json(&job)))
}

/// `POST /api/v1/live`: starts a live job on the source the body names (see
/// [`crate::sources`]); answers 201 with the job, RUNNING.
pub async fn start_live(State(state): State<AppState>, body: ApiJson<Value>) -> Result<Response, ApiError> {
    let request = crate::sources::parse_live_request(&body.0)?;
    let (sources, settings) = (state.live_sources.clone(), state.settings.clone());
    let description = serde_json::to_string(&json!({
        "source": request.source,
        "duration": request.duration.map(|d| d.as_secs_f64()),
    }))
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    // Opened here, before the job exists, so that a source that cannot be opened is this
    // request's error (a 400 naming the problem) and never a job.
    let feed = tokio::task::spawn_blocking(move || sources.open(&request.source, &settings).map(|f| (f, request)))
        .await
        .map_err(|e| ApiError::Internal(format!("opening the live source: {e}")))??;
    let (feed, request) = feed;
    let live = callflow_jobs::LiveJob { label: request.name, source: description, duration: request.duration, feed };
    let job = state.jobs(move |m| m.start_live(live)).await?;
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/api/v1/jobs/{}/status", job.id))], Json(job_json(&job)))
        .into_response())
}

/// How long `DELETE` of a running job waits for it to stop once cancelled.
const DELETE_STOP_WAIT: Duration = Duration::from_secs(10);

/// `DELETE /api/v1/jobs/{id}`: a running job is cancelled first, then deleted with its files.
///
/// The store calls go to the blocking pool, but the wait for the cancelled job to stop
/// (within 100 ms, longer when its store is slow) is spent here, reading its status from
/// the manager's memory: a blocking thread held meanwhile is one fewer for every other
/// request.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let id = state.resolve(&id).await?;
    let stopping = state
        .jobs(move |m| {
            if m.status(id)?.state.is_finished() {
                return Ok(false);
            }
            match m.cancel(id) {
                // A queued job is cancelled at once; a running one stops soon after.
                Ok(job) => Ok(!job.state.is_finished()),
                Err(JobError::AlreadyFinished { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await?;
    if stopping {
        wait_finished(&state, id).await?;
    }
    state.jobs(move |m| m.delete(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Waits for job `id` to be finished, at most [`DELETE_STOP_WAIT`]; then a 409 says it
/// still runs.
async fn wait_finished(state: &AppState, id: JobId) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + DELETE_STOP_WAIT;
    loop {
        let status = state.status(id).await?;
        if status.state.is_finished() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::Conflict(format!(
                "job {id} was cancelled but is still {} after {} s; delete it again once it has stopped",
                status.state,
                DELETE_STOP_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /api/v1/jobs/{id}/sessions` parameters.
#[derive(Debug, Deserialize)]
pub struct SessionsParams {
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
    kind: Option<String>,
    state: Option<String>,
    q: Option<String>,
    /// `true`, `false`, or a problem's name (`high_loss`...).
    problem: Option<String>,
    cursor: Option<String>,
    /// `start` (default), `duration`, `from`, `to`, `state`, `messages`; `-` before: descending.
    sort: Option<String>,
    /// Each row also gets its setup time, duration, problems and streams' MOS (the web UI's table).
    #[serde(default)]
    detail: bool,
}

/// `problem=true|false` (any problem, or none), or `problem=NAME` (that one).
fn problem_param(value: Option<String>) -> Result<(Option<bool>, Option<Problem>), ApiError> {
    match value.as_deref() {
        None | Some("") => Ok((None, None)),
        Some("true") => Ok((Some(true), None)),
        Some("false") => Ok((Some(false), None)),
        Some(_) => Ok((None, enum_param("problem", value)?)),
    }
}

fn enum_param<T: serde::de::DeserializeOwned>(name: &str, value: Option<String>) -> Result<Option<T>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            serde_json::from_value(Value::String(v.clone()))
                .map_err(|_| ApiError::BadRequest(format!("unknown {name} `{v}`")))
        })
        .transpose()
}

/// `GET /api/v1/jobs/{id}/sessions`: a page of summaries with the total matching.
pub async fn sessions(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<SessionsParams>,
) -> Result<Response, ApiError> {
    let max = state.settings.limits.max_page_size as u64;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > max {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {max}")));
    }
    let after = p
        .cursor
        .filter(|c| !c.is_empty())
        .map(|c| c.parse::<SessionCursor>().map_err(ApiError::BadRequest))
        .transpose()?;
    let (problem, problem_kind) = problem_param(p.problem)?;
    let sort: SessionSort =
        p.sort.as_deref().filter(|s| !s.is_empty()).unwrap_or("start").parse().map_err(ApiError::BadRequest)?;
    if after.is_some() && !sort.is_default() {
        return Err(ApiError::BadRequest("a cursor pages through the default order only: use offset with sort".into()));
    }
    let query = SessionQuery {
        kind: enum_param("kind", p.kind)?,
        state: enum_param("state", p.state.map(|s| s.to_ascii_uppercase()))?,
        text: p.q,
        problem,
        problem_kind,
        after,
        offset: check_offset(p.offset)?,
        limit,
        sort,
        documents: p.detail,
        ..SessionQuery::default()
    };
    // The parameters are checked first: a bad request costs no store query.
    let id = state.resolve(&id).await?;
    let (total, sessions) = state
        .jobs(move |m| {
            // The status says whether the job exists, from memory when the manager has it;
            // reading the job itself would parse its capture statistics for nothing.
            m.status(id)?;
            let total = m.store().count_sessions(id, &query)?;
            Ok((total, m.sessions(id, &query)?))
        })
        .await?;
    let next_cursor = (sort.is_default() && sessions.len() as u64 == limit)
        .then(|| sessions.last().map(|r| r.cursor.to_string()))
        .flatten();
    let sessions = if p.detail {
        SessionRows::Detailed(sessions.into_iter().map(DetailedRow::from).collect())
    } else {
        SessionRows::Plain(sessions)
    };
    Ok(Json(SessionsPage { job_id: id, limit, next_cursor, offset: p.offset, sessions, total }).into_response())
}

/// The rows of a sessions page, with `detail=true` or without.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum SessionRows {
    Plain(Vec<callflow_jobs::SessionRow>),
    Detailed(Vec<DetailedRow>),
}

/// A row with `detail=true`: the summary, and from the document what a table of calls
/// shows, without the document itself.
#[derive(serde::Serialize)]
struct DetailedRow {
    #[serde(flatten)]
    row: callflow_jobs::SessionRow,
    setup_time_ms: Option<f64>,
    duration_ms: Option<f64>,
    problems: Vec<Problem>,
    anomalies: usize,
    /// Each stream's direction and MOS (null when it has none), in the session's order.
    streams: Vec<Value>,
}

impl From<callflow_jobs::SessionRow> for DetailedRow {
    fn from(mut row: callflow_jobs::SessionRow) -> DetailedRow {
        let doc = row.document.take();
        let Some(doc) = doc else {
            return DetailedRow {
                row,
                setup_time_ms: None,
                duration_ms: None,
                problems: Vec::new(),
                anomalies: 0,
                streams: Vec::new(),
            };
        };
        let streams = doc
            .media
            .iter()
            .map(|m| json!({"src": m.src, "dst": m.dst, "codec": m.codec, "mos": m.quality.as_ref().map(|q| q.mos)}))
            .collect();
        DetailedRow {
            row,
            setup_time_ms: doc.setup_time_ms,
            duration_ms: doc.duration_ms,
            problems: doc.problems,
            anomalies: doc.anomalies.len(),
            streams,
        }
    }
}

/// A page of `GET /api/v1/jobs/{id}/sessions`, serialized as it is: building it as a
/// `serde_json::Value` first (a map per row, a string per field) was most of the
/// endpoint's time. Fields in alphabetical order, as the `Value` had them.
#[derive(serde::Serialize)]
struct SessionsPage {
    job_id: JobId,
    limit: u64,
    next_cursor: Option<String>,
    offset: u64,
    sessions: SessionRows,
    total: u64,
}

/// `GET /api/v1/jobs/{id}/subscribers` parameters.
#[derive(Debug, Deserialize)]
pub struct SubscribersParams {
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
    imsi: Option<String>,
    msisdn: Option<String>,
    q: Option<String>,
}

/// A `limit` of 1 to `limits.max_page_size`, 100 when not given.
fn page_limit(state: &AppState, limit: Option<u64>) -> Result<u64, ApiError> {
    let max = state.settings.limits.max_page_size as u64;
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > max {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {max}")));
    }
    Ok(limit)
}

/// Job `id`'s subscriber view; a conflict while it is not known (the job has not
/// completed, or completed before callflowd kept subscribers).
async fn job_subscribers(state: &AppState, id: JobId) -> Result<Vec<Subscriber>, ApiError> {
    let (job_state, subscribers) = state.jobs(move |m| Ok((m.status(id)?.state, m.store().subscribers(id)?))).await?;
    match (subscribers, job_state) {
        (Some(subscribers), _) => Ok(subscribers),
        (None, JobState::Completed) => Err(ApiError::Conflict(format!(
            "job {id} was analysed before callflowd kept subscribers: upload its capture again"
        ))),
        (None, other) if other.is_finished() => {
            Err(ApiError::Conflict(format!("job {id} is {other}: only a completed job has subscribers")))
        }
        (None, other) => {
            Err(ApiError::Conflict(format!("job {id} is {other}: its subscribers are known once it has completed")))
        }
    }
}

/// True when `text` is a substring, ASCII case aside, of any key of the subscriber: its
/// identities, its UE addresses, and the keys that joined its sessions.
fn subscriber_matches(sub: &Subscriber, text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    let found = |value: &str| value.to_ascii_lowercase().contains(&text);
    sub.imsi.iter().chain(&sub.msisdn).chain(&sub.imei).chain(&sub.impu).chain(&sub.impi).any(|v| found(v))
        || sub.ue_addresses.iter().any(|a| found(&a.address))
        || sub.sessions.iter().any(|s| found(&s.key.value))
}

/// `GET /api/v1/jobs/{id}/subscribers`: a page of a completed job's subscribers (the
/// document's `subscribers`), filtered by IMSI, MSISDN, or a substring of any key.
pub async fn subscribers(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<SubscribersParams>,
) -> Result<Json<Value>, ApiError> {
    let id = state.resolve(&id).await?;
    let limit = page_limit(&state, p.limit)?;
    let offset = check_offset(p.offset)?;
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let (imsi, msisdn, q) = (nonempty(p.imsi), nonempty(p.msisdn), nonempty(p.q));
    let matching: Vec<Subscriber> = job_subscribers(&state, id)
        .await?
        .into_iter()
        .filter(|s| imsi.as_ref().is_none_or(|i| s.imsi.as_ref() == Some(i)))
        .filter(|s| msisdn.as_ref().is_none_or(|m| s.msisdn.as_ref() == Some(m)))
        .filter(|s| q.as_deref().is_none_or(|q| subscriber_matches(s, q)))
        .collect();
    let total = matching.len();
    let page: Vec<&Subscriber> =
        matching.iter().skip(usize::try_from(offset).unwrap_or(usize::MAX)).take(limit as usize).collect();
    Ok(Json(json!({"job_id": id, "offset": offset, "limit": limit, "total": total, "subscribers": page})))
}

/// `GET /api/v1/jobs/{id}/subscribers/{sub_id}` parameters: the page of its sessions.
#[derive(Debug, Deserialize)]
pub struct SubscriberParams {
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
}

/// `GET /api/v1/jobs/{id}/subscribers/{sub_id}`: one subscriber, each of its sessions
/// (a page of them: `offset`, `limit`) with its `document` in the `callflow/v1` shape.
pub async fn subscriber(
    State(state): State<AppState>,
    Path((id, sub_id)): Path<(String, String)>,
    ApiQuery(p): ApiQuery<SubscriberParams>,
) -> Result<Json<Value>, ApiError> {
    let id = state.resolve(&id).await?;
    let limit = page_limit(&state, p.limit)?;
    let offset = check_offset(p.offset)?;
    let mut sub = job_subscribers(&state, id)
        .await?
        .into_iter()
        .find(|s| s.id == sub_id)
        .ok_or_else(|| ApiError::NotFound { what: "subscriber", id: sub_id.clone() })?;
    let total = sub.sessions.len();
    sub.sessions =
        sub.sessions.into_iter().skip(usize::try_from(offset).unwrap_or(usize::MAX)).take(limit as usize).collect();
    let wanted: Vec<String> = sub.sessions.iter().map(|s| s.session.clone()).collect();
    let documents = state
        .jobs(move |m| wanted.iter().map(|sid| Ok(m.store().session(id, sid)?)).collect::<Result<Vec<_>, _>>())
        .await?;
    let mut value = serde_json::to_value(&sub).map_err(|e| ApiError::Internal(e.to_string()))?;
    for (entry, document) in value["sessions"].as_array_mut().into_iter().flatten().zip(documents) {
        // A session the store does not have (none should be missing) is shown without it.
        if let Some(document) = document {
            entry["document"] = serde_json::to_value(&document).map_err(|e| ApiError::Internal(e.to_string()))?;
        }
    }
    value["job_id"] = json!(id);
    value["session_offset"] = json!(offset);
    value["session_limit"] = json!(limit);
    value["session_total"] = json!(total);
    Ok(Json(value))
}

/// Job `job`'s session `sid`; `None` for the session routes without a job, which find the
/// job by the session id when exactly one job has it (session ids are derived from the
/// capture, so uploading a capture again, or one crafted to match, gives another job the
/// same id: that job must not take over the first one's URL).
pub(crate) async fn find_session(
    state: &AppState,
    job: Option<JobId>,
    sid: String,
) -> Result<(JobId, Session), ApiError> {
    let key = sid.clone();
    let found = state
        .jobs(move |m| match job {
            Some(job) => {
                m.status(job)?;
                Ok(m.store().session(job, &key)?.map(|s| (job, s)).ok_or(None))
            }
            None => {
                let jobs = m.store().session_jobs(&key, 5)?;
                match jobs[..] {
                    [] => Ok(Err(None)),
                    [job] => Ok(m.store().session(job, &key)?.map(|s| (job, s)).ok_or(None)),
                    _ => Ok(Err(Some(jobs))),
                }
            }
        })
        .await?;
    found.map_err(|ambiguous| match ambiguous {
        None => ApiError::NotFound { what: "session", id: sid.clone() },
        Some(jobs) => ApiError::AmbiguousSession {
            jobs: jobs.iter().map(|j| j.to_string()).collect::<Vec<_>>().join(", "),
            id: sid.clone(),
        },
    })
}

/// `GET /api/v1/jobs/{id}/sessions/{session_id}`: the full session in the `callflow/v1`
/// shape, with its `job_id`.
pub async fn job_session(
    State(state): State<AppState>,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let job = state.resolve(&id).await?;
    session_json(find_session(&state, Some(job), sid).await?)
}

/// `GET /api/v1/sessions/{session_id}`: as [`job_session`], for a session id that only
/// one job has (409 `ambiguous_session` otherwise).
pub async fn session(State(state): State<AppState>, Path(sid): Path<String>) -> Result<Json<Value>, ApiError> {
    session_json(find_session(&state, None, sid).await?)
}

pub(crate) fn session_json((job, session): (JobId, Session)) -> Result<Json<Value>, ApiError> {
    let mut value = serde_json::to_value(&session).map_err(|e| ApiError::Internal(e.to_string()))?;
    value["job_id"] = json!(job);
    Ok(Json(value))
}

/// `GET /api/v1/jobs/{id}/sessions/{session_id}/pcap`: the session's frames (with
/// `group=true`, its leg group's) as a pcap download.
pub async fn job_session_pcap(
    State(state): State<AppState>,
    Path((id, sid)): Path<(String, String)>,
    ApiQuery(p): ApiQuery<GroupParams>,
) -> Result<Response, ApiError> {
    let job = state.resolve(&id).await?;
    pcap_response(&state, Some(job), sid, p.group).await
}

/// `GET /api/v1/sessions/{session_id}/pcap`: as [`job_session_pcap`], for a session id
/// that only one job has.
pub async fn session_pcap(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    ApiQuery(p): ApiQuery<GroupParams>,
) -> Result<Response, ApiError> {
    pcap_response(&state, None, sid, p.group).await
}

/// `?group=true`: the session's whole leg group instead of the session alone.
#[derive(Debug, Default, Deserialize)]
pub struct GroupParams {
    #[serde(default)]
    group: bool,
}

/// The session, or its leg group (the legs it links to, and theirs, read from the same
/// job), with the job's capture file.
async fn find_sessions(
    state: &AppState,
    job: Option<JobId>,
    sid: String,
    group: bool,
) -> Result<(Vec<Session>, Vec<CapturePart>), ApiError> {
    let (job, session) = find_session(state, job, sid).await?;
    let (sessions, input, live) = state
        .jobs(move |m| {
            let found = m.job(job)?;
            let sessions = if group {
                callflow_render::collect_group(session, |id| m.store().session(job, id))?
            } else {
                vec![session]
            };
            Ok((sessions, found.input.clone(), found.live.is_some()))
        })
        .await?;
    if !live {
        return Ok((sessions, vec![CapturePart::whole(&input)]));
    }
    let settings = state.settings.clone();
    let parts = tokio::task::spawn_blocking(move || live_parts(&input, &sessions, &settings).map(|p| (sessions, p)))
        .await
        .map_err(|e| ApiError::Internal(format!("capture task failed: {e}")))??;
    Ok((parts.0, parts.1))
}

/// The files a live job keeps (`dir`), once it is checked that `sessions` are all in them:
/// a call whose first packets were deleted has aged out, and the error names the window.
fn live_parts(
    dir: &path::Path,
    sessions: &[Session],
    settings: &callflow_config::Settings,
) -> Result<Vec<CapturePart>, ApiError> {
    let parts: Vec<CapturePart> = callflow_jobs::retained_parts(dir)
        .map_err(|e| ApiError::Internal(format!("listing {}: {e}", dir.display())))?
        .into_iter()
        .map(|p| CapturePart { path: p.path, first_frame: p.first_frame })
        .collect();
    // The oldest packet kept: the first frame of the oldest file.
    let oldest = parts.first().and_then(|p| {
        let mut reader = callflow_decode::capture::CaptureReader::open(&p.path).ok()?;
        let ts = reader.next_frame().ok()??.ts;
        Some((p.first_frame, ts))
    });
    let limits = format!(
        "live.max_bytes = {} bytes, live.max_age = {}",
        settings.live.max_bytes,
        callflow_config::duration::format(settings.live.max_age)
    );
    for s in sessions {
        let first_frame =
            s.messages.iter().map(|m| m.frame).chain(s.media.iter().flat_map(|m| m.rtcp.iter().map(|r| r.frame))).min();
        let aged = match (oldest, first_frame) {
            (None, _) => true,
            (Some((kept, _)), Some(frame)) => frame < kept,
            (Some((_, since)), None) => s.start < since,
        };
        if aged {
            let window = match oldest {
                Some((frame, since)) => format!(
                    "it keeps frames {frame} on, captured since {} s after the Unix epoch",
                    since.as_nanos() as f64 / 1e9
                ),
                None => "it keeps no packets now".to_string(),
            };
            return Err(ApiError::Gone(format!(
                "session {} (started {} s after the Unix epoch) has aged out of the live job's retained window:                  {window} ({limits})",
                s.id,
                s.start.as_nanos() as f64 / 1e9
            )));
        }
    }
    Ok(parts)
}

/// Runs `f` (which reads the job's capture again) on the blocking pool: it is not a store
/// call, so it does not hold one of their places (`AppState::jobs`). A capture that can no
/// longer be read is a 409.
async fn with_capture<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, callflow_render::ExportError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("capture task failed: {e}")))?
        .map_err(|e| ApiError::Conflict(format!("the job's capture can no longer be read: {}", error_chain(&e))))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The session id as a file name: letters, digits, `-` and `_` only.
fn safe_name(sid: &str) -> String {
    sid.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect()
}

pub(crate) async fn pcap_response(
    state: &AppState,
    job: Option<JobId>,
    sid: String,
    group: bool,
) -> Result<Response, ApiError> {
    let (sessions, parts) = find_sessions(state, job, sid.clone(), group).await?;
    let pcap = with_capture(move || {
        let refs: Vec<&Session> = sessions.iter().collect();
        let mut out = Vec::new();
        callflow_render::export_pcap_parts(&parts, &refs, &mut out)?;
        Ok(out)
    })
    .await?;
    let suffix = if group { "-group" } else { "" };
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.tcpdump.pcap".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}{suffix}.pcap\"", safe_name(&sid))),
        ],
        Body::from(pcap),
    )
        .into_response())
}

/// A picture or text drawn from capture content: its type, and headers that keep a
/// browser from running or sniffing anything in it, should escaping ever miss something.
fn drawn(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
        ],
        body,
    )
        .into_response()
}

/// `?format=` and `?group=` of a ladder.
#[derive(Debug, Deserialize)]
pub struct LadderParams {
    pub(crate) format: Option<String>,
    #[serde(default)]
    pub(crate) group: bool,
}

/// `GET /api/v1/jobs/{id}/sessions/{session_id}/ladder`: the session's (or with
/// `group=true` its leg group's) ladder diagram as `format` (svg, the default; html,
/// text, mermaid, plantuml).
pub async fn job_session_ladder(
    State(state): State<AppState>,
    Path((id, sid)): Path<(String, String)>,
    ApiQuery(p): ApiQuery<LadderParams>,
) -> Result<Response, ApiError> {
    let job = state.resolve(&id).await?;
    ladder_response(&state, Some(job), sid, p).await
}

/// `GET /api/v1/sessions/{session_id}/ladder`: as [`job_session_ladder`], for a session
/// id that only one job has.
pub async fn session_ladder(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    ApiQuery(p): ApiQuery<LadderParams>,
) -> Result<Response, ApiError> {
    ladder_response(&state, None, sid, p).await
}

pub(crate) async fn ladder_response(
    state: &AppState,
    job: Option<JobId>,
    sid: String,
    p: LadderParams,
) -> Result<Response, ApiError> {
    let format: callflow_render::Format = match p.format.as_deref().filter(|f| !f.is_empty()) {
        None => callflow_render::Format::Svg,
        Some(f) => f.parse().map_err(|e: callflow_render::UnknownFormat| ApiError::BadRequest(e.to_string()))?,
    };
    let (sessions, parts) = find_sessions(state, job, sid, p.group).await?;
    let body = with_capture(move || {
        let refs: Vec<&Session> = sessions.iter().collect();
        let raw = if format.wants_raw_messages() {
            let frames = refs.iter().flat_map(|s| s.messages.iter().map(|m| m.frame)).collect();
            Some(callflow_render::read_messages_parts(&parts, &frames)?)
        } else {
            None
        };
        Ok(callflow_render::render_ladder(&callflow_render::Ladder::build(&refs), format, raw.as_ref()))
    })
    .await?;
    Ok(drawn(format.content_type(), body))
}

/// `?stream=N` of a chart: one stream (0-based, in the session's `media` order), or all.
#[derive(Debug, Deserialize)]
pub struct ChartParams {
    pub(crate) stream: Option<usize>,
}

/// `GET /api/v1/jobs/{id}/sessions/{session_id}/chart`: the quality chart (SVG: jitter,
/// loss and MOS over time) of the session's streams, or of stream `stream`.
pub async fn job_session_chart(
    State(state): State<AppState>,
    Path((id, sid)): Path<(String, String)>,
    ApiQuery(p): ApiQuery<ChartParams>,
) -> Result<Response, ApiError> {
    let job = state.resolve(&id).await?;
    chart_response(find_session(&state, Some(job), sid).await?.1, p)
}

/// `GET /api/v1/sessions/{session_id}/chart`: as [`job_session_chart`], for a session id
/// that only one job has.
pub async fn session_chart(
    State(state): State<AppState>,
    Path(sid): Path<String>,
    ApiQuery(p): ApiQuery<ChartParams>,
) -> Result<Response, ApiError> {
    chart_response(find_session(&state, None, sid).await?.1, p)
}

pub(crate) fn chart_response(session: Session, p: ChartParams) -> Result<Response, ApiError> {
    let streams: Vec<&callflow_model::MediaStream> = match p.stream {
        None => session.media.iter().collect(),
        Some(n) => vec![session.media.get(n).ok_or_else(|| ApiError::NotFound {
            what: "stream",
            id: format!("{n} (the session has {})", session.media.len()),
        })?],
    };
    let title = match p.stream {
        Some(n) => format!("stream {n} of {}", session.call_id),
        None => format!("call {}", session.call_id),
    };
    Ok(drawn("image/svg+xml", callflow_render::chart::render(&title, &streams)))
}

/// `GET /api/v1/jobs/{id}/sessions/{session_id}/messages/{frame}`: the raw text of one of
/// the session's messages (or RTCP reports), read back from the job's capture: SIP as it
/// is, a binary protocol as a hex dump.
pub async fn job_session_message(
    State(state): State<AppState>,
    Path((id, sid, frame)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let job = state.resolve(&id).await?;
    message_response(&state, Some(job), sid, frame).await
}

/// `GET /api/v1/sessions/{session_id}/messages/{frame}`: as [`job_session_message`], for
/// a session id that only one job has.
pub async fn session_message(
    State(state): State<AppState>,
    Path((sid, frame)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    message_response(&state, None, sid, frame).await
}

pub(crate) async fn message_response(
    state: &AppState,
    job: Option<JobId>,
    sid: String,
    frame: String,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound { what: "message", id: format!("frame {frame} of session {sid}") };
    let number: u64 = frame.parse().map_err(|_| not_found())?;
    let (sessions, parts) = find_sessions(state, job, sid.clone(), false).await?;
    // Only the session's own frames: this is not a way to read any packet of the capture.
    let known = sessions.iter().any(|s| {
        s.messages.iter().any(|m| m.frame == number)
            || s.media.iter().any(|st| st.rtcp.iter().any(|r| r.frame == number))
    });
    if !known {
        return Err(not_found());
    }
    let mut raw =
        with_capture(move || callflow_render::read_messages_parts(&parts, &std::collections::BTreeSet::from([number])))
            .await?;
    let text = raw
        .remove(&number)
        .ok_or_else(|| ApiError::Conflict(format!("frame {number} is no longer in the job's capture")))?;
    Ok(drawn("text/plain; charset=utf-8", text))
}

/// `GET /api/v1/jobs/{id}/stats` parameters.
#[derive(Debug, Deserialize)]
pub struct StatsParams {
    /// The grouping: `peer`, `domain`, `caller-domain`, `callee-domain`, `minute`, or
    /// several joined by commas; absent: the whole capture only.
    by: Option<String>,
    /// Also list every call with its outcome and the rule that gave it.
    #[serde(default)]
    calls: bool,
}

/// Stored sessions read per page while the statistics are computed.
const STATS_PAGE: u64 = 1_000;

/// `GET /api/v1/jobs/{id}/stats`: a job's operator statistics (docs/kpis.md), the whole
/// capture's and per group, computed from its stored SIP sessions: a running job's (a live
/// one's) so far, `complete` saying whether the job has finished.
pub async fn job_stats(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<StatsParams>,
) -> Result<Json<Value>, ApiError> {
    let id = state.resolve(&id).await?;
    let grouping: Grouping =
        p.by.as_deref().unwrap_or("").parse().map_err(|e: BadGrouping| ApiError::BadRequest(e.to_string()))?;
    let opts = callflow_jobs::kpi_options(&state.settings.kpis);
    let bucket_secs = opts.bucket.as_secs();
    let wanted = grouping.clone();
    let (job, acc) = state
        .jobs(move |m| {
            let job = m.job(id)?;
            let mut acc = KpiAccumulator::new(opts, vec![wanted]);
            if p.calls {
                acc = acc.keep_calls();
            }
            for kind in [SessionKind::SipCall, SessionKind::SipRegister, SessionKind::SipOther] {
                let mut after = None;
                loop {
                    let query = SessionQuery {
                        kind: Some(kind),
                        after,
                        limit: STATS_PAGE,
                        documents: true,
                        ..SessionQuery::default()
                    };
                    let rows = m.sessions(id, &query)?;
                    for doc in rows.iter().filter_map(|r| r.document.as_ref()) {
                        acc.add(doc);
                    }
                    match rows.last() {
                        Some(last) if rows.len() as u64 == STATS_PAGE => after = Some(last.cursor),
                        _ => break,
                    }
                }
            }
            Ok((job, acc))
        })
        .await?;
    // Calls with no final answer are judged against the end of the capture when known.
    let end = job.source.as_ref().and_then(|s| s.last_ts);
    let by: Vec<&str> = grouping.0.iter().map(|d| d.as_str()).collect();
    let rows = if grouping.0.is_empty() { Vec::new() } else { acc.rows(0, end) };
    let mut body = json!({
        "job_id": id,
        "status": job.state,
        "complete": job.state == JobState::Completed,
        "by": by,
        "bucket_secs": bucket_secs,
        "total": acc.total(end),
        "rows": rows,
    });
    if p.calls {
        body["calls"] = json!(acc.calls(end));
    }
    Ok(Json(body))
}

/// `GET /health`: alive, and the store can be written (checked at most once a second).
pub async fn health(State(state): State<AppState>) -> Response {
    match state.storage_check().await {
        Ok(()) => Json(json!({"status": "ok", "storage": "ok"})).into_response(),
        Err(message) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "storage": "unwritable", "message": message})),
        )
            .into_response(),
    }
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    Json(json!({"name": "callflowd", "version": env!("CARGO_PKG_VERSION")}))
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Counted by the store: reading every job (and parsing its statistics) to count them
    // made a scrape cost as much as listing them all.
    let counts = state.jobs(|m| m.job_counts()).await?;
    let mut text = state.metrics.render(&counts);
    state.manager.kpi_series().render(&mut text);
    // Every series names its node, so that one Prometheus scraping every node of a store
    // (or a dashboard summing them) keeps them apart.
    let text = crate::state::label_with_node(&text, &state.node_name);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// `GET /api/v1/nodes`: every node of the job store (this one included), with the jobs
/// each runs and whether it is alive (heard from within `cluster.lease`).
pub async fn nodes(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let nodes = state.jobs(|m| m.nodes()).await?;
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.row.info.name,
                "advertise_url": n.row.info.advertise_url,
                "version": n.row.info.version,
                "workers": n.row.info.workers,
                "running": n.row.running,
                "started_at": crate::hub::seconds(n.row.info.started_at),
                "last_seen": crate::hub::seconds(n.row.last_seen),
                "alive": n.alive,
            })
        })
        .collect();
    Ok(Json(json!({"node": state.node_name, "nodes": nodes})))
}

/// Every route of the API: method, path (OpenAPI syntax), summary. The OpenAPI document
/// is built from it and a test checks each against the router.
pub const ROUTES: &[(&str, &str, &str)] = &[
    ("post", "/api/v1/upload", "Upload a capture (raw body or multipart `file`, with an optional TLS key log part `keylog`); queues a job"),
    ("get", "/api/v1/jobs", "List jobs, newest first (offset, limit, status)"),
    ("get", "/api/v1/jobs/{id}/status", "A job's status and progress"),
    ("delete", "/api/v1/jobs/{id}", "Delete a job and its files (cancelling it first)"),
    ("post", "/api/v1/jobs/{id}/cancel", "Cancel a queued or running job (a live job: stop it, keeping its sessions)"),
    (
        "post",
        "/api/v1/live",
        "Start a live job on a source (interface in a netns, remote ws:// stream, or HEP); it runs until cancelled, \
         deleted or its duration ends",
    ),
    (
        "get",
        "/api/v1/jobs/{id}/sessions",
        "A page of a job's sessions (offset, limit, kind, state, q, problem=true|false|NAME, cursor, sort, detail)",
    ),
    (
        "get",
        "/api/v1/jobs/{id}/subscribers",
        "A page of a completed job's subscribers (offset, limit, imsi, msisdn, q: a substring of any key)",
    ),
    (
        "get",
        "/api/v1/jobs/{id}/subscribers/{sub_id}",
        "One of a job's subscribers, with a page of its sessions' documents (offset, limit)",
    ),
    (
        "get",
        "/api/v1/jobs/{id}/stats",
        "A job's operator statistics (ASR, NER, RFC 6076 ratios and delays, response codes; by: peer, domain, minute...)",
    ),
    ("get", "/api/v1/jobs/{id}/ws", "WebSocket: one job's events (?last_event_id=N resumes after event N)"),
    (
        "get",
        "/api/v1/jobs/{id}/events",
        "Server-Sent Events: one job's events, with Last-Event-ID replay (on any node, from the store's event log)",
    ),
    ("get", "/api/v1/ws", "WebSocket: every job's events (?last_event_id=N resumes after event N)"),
    ("get", "/api/ws", "WebSocket: every job's events (the same as /api/v1/ws, at the WebSocket push document's path)"),
    ("get", "/api/v1/jobs/{id}/sessions/{session_id}", "A job's session in the callflow/v1 shape"),
    ("get", "/api/v1/jobs/{id}/sessions/{session_id}/pcap", "A job's session's packets as a pcap file (group)"),
    (
        "get",
        "/api/v1/jobs/{id}/sessions/{session_id}/ladder",
        "A job's session's ladder diagram (format: svg, html, text, mermaid, plantuml; group)",
    ),
    ("get", "/api/v1/jobs/{id}/sessions/{session_id}/chart", "A job's session's quality chart, SVG (stream)"),
    (
        "get",
        "/api/v1/jobs/{id}/sessions/{session_id}/messages/{frame}",
        "The raw text of one of a job's session's messages, read back from the capture",
    ),
    (
        "get",
        "/api/v1/sessions/{session_id}",
        "A session in the callflow/v1 shape, when only one job has its id (else 409)",
    ),
    (
        "get",
        "/api/v1/sessions/{session_id}/pcap",
        "A session's packets as a pcap file (group), when only one job has its id",
    ),
    (
        "get",
        "/api/v1/sessions/{session_id}/ladder",
        "A session's ladder diagram (format: svg, html, text, mermaid, plantuml; group)",
    ),
    ("get", "/api/v1/sessions/{session_id}/chart", "A session's quality chart, SVG (stream)"),
    (
        "get",
        "/api/v1/sessions/{session_id}/messages/{frame}",
        "The raw text of one of a session's messages, read back from the capture",
    ),
    (
        "post",
        "/api/v1/shares",
        "Make a read-only link to one session ({job_id, session_id}), valid auth.share_ttl, no login needed to follow",
    ),
    ("delete", "/api/v1/shares/{token}", "Revoke a share link"),
    ("get", "/api/v1/share/{token}", "The shared session in the callflow/v1 shape (no credential: the token is one)"),
    (
        "get",
        "/api/v1/share/{token}/ladder",
        "The shared session's ladder diagram (format: svg, html, text, mermaid, plantuml)",
    ),
    ("get", "/api/v1/share/{token}/chart", "The shared session's quality chart, SVG (stream)"),
    ("get", "/api/v1/share/{token}/messages/{frame}", "The raw text of one of the shared session's messages"),
    ("get", "/api/v1/share/{token}/pcap", "The shared session's packets as a pcap file"),
    ("post", "/api/login", "Log in with a configured user; returns an expiring token"),
    ("post", "/api/logout", "Revoke the login token the request carries"),
    (
        "get",
        "/api/v1/nodes",
        "The nodes sharing this job store: name, advertise_url, version, workers, running, last_seen, alive",
    ),
    ("get", "/api/v1/openapi.json", "This document"),
    ("get", "/health", "Liveness, and whether the store can be written"),
    ("get", "/version", "Name and version"),
    ("get", "/metrics", "Prometheus metrics"),
];

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// The OpenAPI 3 description of [`ROUTES`].
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ROUTES {
        let mut params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| match name {
                // A UUID; a job created before ids were UUIDs also answers at its number.
                "id" if path.starts_with("/api/v1/jobs/") => json!({"name": name, "in": "path", "required": true,
                    "schema": {"type": "string"},
                    "description": "the job's id (a UUID), or the number of a job created before ids were UUIDs"}),
                _ => json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}),
            })
            .chain(picture_query(path))
            .collect();
        if *path == "/api/v1/jobs/{id}/sessions" {
            params.push(problem_parameter());
            params.extend(sessions_query());
        }
        params.extend(subscriber_query(path));
        if *path == "/api/v1/jobs" {
            params.push(json!({"name": "status", "in": "query", "required": false,
                "schema": {"type": "string", "enum": job_states()},
                "description": "only jobs with this status (either case: COMPLETED works too)"}));
        }
        if *path == "/api/v1/jobs/{id}/stats" {
            params.push(json!({"name": "by", "in": "query", "required": false, "schema": {"type": "string"},
                "description": "group by peer, domain (the callee's), caller-domain, callee-domain or minute \
                                (the time bucket, kpis.bucket), several joined by commas (peer,minute); \
                                absent: the whole capture only"}));
            params.push(json!({"name": "calls", "in": "query", "required": false,
                "schema": {"type": "boolean", "default": false},
                "description": "also list every call with its outcome and the rule that gave it"}));
        }
        let ok = match (*method, *path) {
            ("post", "/api/v1/upload" | "/api/v1/live" | "/api/v1/shares") => "201",
            ("delete", _) | ("post", "/api/logout") => "204",
            (_, p) if p.ends_with("/ws") => "101",
            _ => "200",
        };
        let job = json!({"$ref": "#/components/schemas/Job"});
        let body = match *path {
            "/api/v1/jobs/{id}/status" | "/api/v1/jobs/{id}/cancel" | "/api/v1/live" => Some(job),
            "/api/v1/jobs" => Some(json!({"type": "object", "properties": {"offset": {"type": "integer"},
                "limit": {"type": "integer"}, "jobs": {"type": "array", "items": job}}})),
            _ => None,
        };
        let success = match (body, picture_types(path)) {
            (Some(schema), _) => json!({"description": "success", "content": {"application/json": {"schema": schema}}}),
            (None, Some(types)) => {
                let content: serde_json::Map<String, Value> =
                    types.iter().map(|t| (t.to_string(), json!({"schema": {"type": "string"}}))).collect();
                json!({"description": "success", "content": content})
            }
            (None, None) => json!({"description": "success"}),
        };
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "security": [{"bearer": []}],
            "responses": {ok: success, "default": {"description": "an error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
        });
        if *path == "/api/v1/shares" {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object",
                "required": ["job_id", "session_id"],
                "properties": {"job_id": {"type": "string", "format": "uuid"}, "session_id": {"type": "string"}}}}}});
        }
        if path.starts_with("/api/v1/share/") {
            // The token is the credential.
            op["security"] = json!([]);
        }
        if *path == "/api/v1/live" {
            op["requestBody"] = json!({"required": true,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LiveSource"}}}});
        }
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "callflowd", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Job": job_schema(),
                "LiveSource": live_source_schema(),
                "LiveStats": live_stats_schema(),
            },
        },
    })
}

/// The query parameters of the subscriber routes.
fn subscriber_query(path: &str) -> Vec<Value> {
    let param = |name: &str, kind: &str, description: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": kind}, "description": description});
    let page = [
        param("offset", "integer", "skip this many (subscribers, or the subscriber's sessions)"),
        param("limit", "integer", "at most this many, 1 to limits.max_page_size (default 100)"),
    ];
    match path {
        "/api/v1/jobs/{id}/subscribers" => page
            .into_iter()
            .chain([
                param("imsi", "string", "only the subscriber with this IMSI"),
                param("msisdn", "string", "only the subscriber with this MSISDN"),
                param("q", "string", "only subscribers with a key (identity, UE address, joining key) containing this"),
            ])
            .collect(),
        "/api/v1/jobs/{id}/subscribers/{sub_id}" => page.into(),
        _ => Vec::new(),
    }
}

/// The sessions listing's `sort` and `detail` parameters.
fn sessions_query() -> [Value; 2] {
    let sorts: Vec<String> = SessionSort::NAMES.iter().flat_map(|n| [n.to_string(), format!("-{n}")]).collect();
    [
        json!({"name": "sort", "in": "query", "required": false, "schema": {"type": "string", "enum": sorts, "default": "start"},
               "description": "the order, then arrival; a leading - for descending. A cursor pages through the \
                               default order only: with another, page with offset"}),
        json!({"name": "detail", "in": "query", "required": false, "schema": {"type": "boolean", "default": false},
               "description": "each row also gets setup_time_ms, duration_ms, problems, anomalies (a count) and \
                               streams (src, dst, codec, mos)"}),
    ]
}

/// The sessions listing's `problem` parameter, with every value it takes.
fn problem_parameter() -> Value {
    let mut values = vec!["true".to_string(), "false".to_string()];
    values.extend(PROBLEMS.iter().map(|p| p.as_str().to_string()));
    json!({"name": "problem", "in": "query", "required": false,
           "description": "true: sessions with any problem (a flagged one, an anomaly, a failed call); \
                           false: without; a problem's name: sessions flagged with it (docs/quality.md)",
           "schema": {"type": "string", "enum": values}})
}

/// Every problem, for the OpenAPI document.
const PROBLEMS: [Problem; 12] = [
    Problem::OneWayAudio,
    Problem::NoRtp,
    Problem::RtpAfterBye,
    Problem::SsrcChange,
    Problem::PayloadChange,
    Problem::HighJitter,
    Problem::HighLoss,
    Problem::LowMos,
    Problem::LateAnswer,
    Problem::NoAck,
    Problem::UnansweredRequest,
    Problem::CaptureLoss,
];
/// The query parameters of the picture and export routes of a session.
fn picture_query(path: &str) -> Vec<Value> {
    let group = json!({"name": "group", "in": "query", "schema": {"type": "boolean", "default": false},
        "description": "the session's whole leg group (B2BUA and proxy legs linked to it)"});
    // A share link opens its session only, never the group.
    let group: Vec<Value> = if path.starts_with("/api/v1/share/") { Vec::new() } else { vec![group] };
    if path.ends_with("/ladder") {
        let formats: Vec<&str> = callflow_render::Format::ALL.iter().map(|f| f.as_str()).collect();
        vec![json!({"name": "format", "in": "query", "schema": {"type": "string", "enum": formats, "default": "svg"}})]
            .into_iter()
            .chain(group)
            .collect()
    } else if path.ends_with("/chart") {
        vec![json!({"name": "stream", "in": "query", "schema": {"type": "integer", "minimum": 0},
            "description": "one stream, by its place in the session's media (default: every stream)"})]
    } else if path.ends_with("/pcap") {
        group
    } else {
        Vec::new()
    }
}

/// The content types a picture or export route answers with.
fn picture_types(path: &str) -> Option<&'static [&'static str]> {
    if path.ends_with("/ladder") {
        Some(&["image/svg+xml", "text/html; charset=utf-8", "text/plain; charset=utf-8"])
    } else if path.ends_with("/chart") {
        Some(&["image/svg+xml"])
    } else if path.ends_with("/pcap") {
        Some(&["application/vnd.tcpdump.pcap"])
    } else if path.ends_with("/messages/{frame}") {
        Some(&["text/plain; charset=utf-8"])
    } else {
        None
    }
}

/// Every job status as clients see it (`queued`, `running`, ...).
fn job_states() -> Vec<&'static str> {
    JobState::ALL.iter().map(|s| s.as_api_str()).collect()
}

/// The `Job` schema: [`crate::hub::job_json`]'s fields. Times are seconds since the Unix
/// epoch with a fraction, as in the `callflow/v1` document.
fn job_schema() -> Value {
    let time = |what: &str, nullable: bool| {
        json!({"type": "number", "format": "double", "nullable": nullable,
               "description": format!("{what}, in seconds since the Unix epoch")})
    };
    let int = |description: &str| json!({"type": "integer", "minimum": 0, "description": description});
    json!({"type": "object", "properties": {
        "job_id": {"type": "string", "format": "uuid"},
        "name": {"type": "string", "description": "the uploaded file's name, or the name given"},
        "status": {"type": "string", "enum": job_states(),
            "description": "where the job is in its life (filters accept the upper-case names too)"},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100, "description": "percent of the capture read"},
        "packets": int("packets analysed"),
        "bytes": int("bytes of the capture read"),
        "session_count": int("sessions found"),
        "created_at": time("when it was submitted", false),
        "started_at": time("when a worker last started it", true),
        "completed_at": time("when it finished", true),
        "error": {"type": "string", "nullable": true, "description": "why it failed"},
        "attempts": int("how many times a worker started it"),
        "node": {"type": "string", "nullable": true,
            "description": "the node running it, or that last ran it (GET /api/v1/nodes)"},
        "complete": {"type": "boolean", "nullable": true,
            "description": "once completed: whether the whole capture was read (false: truncated or damaged)"},
        "warnings": {"type": "array", "items": {"type": "string"},
            "description": "once completed: the capture's warnings (why reading stopped early...)"},
        "live": {"type": "object", "nullable": true,
            "description": "a live job's source ({\"source\": {kind: fields}, \"duration\": seconds or null}); null for a capture file"},
    }})
}

/// The `POST /api/v1/live` body: one source (`interface`, `url` or `hep`), with
/// `duration` and `name` (see `crate::sources`).
fn live_source_schema() -> Value {
    json!({"type": "object", "description": "exactly one of interface, url, hep; netns, filter, promiscuous and \
        snaplen go with interface only. A bad field, or a source that cannot be opened, is a 400 naming \
        it; an interface without capture.enabled, 403",
        "properties": {
        "interface": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "an interface, several separated by / (or a list); \"any\" or empty: all of the namespace"},
        "netns": {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 1}],
            "description": "the network namespace: an absolute path (/run/netns/NAME, /proc/PID/ns/net) or its inode"},
        "filter": {"type": "string", "description": "a BPF capture filter"},
        "promiscuous": {"type": "boolean", "default": true},
        "snaplen": {"type": "integer", "minimum": 64, "maximum": 262144, "default": 262144},
        "url": {"type": "string", "description": "a Packetflix-compatible stream: ws://, wss:// or packetflix:ws://"},
        "hep": {"type": "boolean", "enum": [true], "description": "the HEP listener of [hep]"},
        "duration": {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 1}],
            "description": "stop after this long: \"90s\", \"10m\", \"2h\" or seconds; absent: until cancelled or deleted"},
        "name": {"type": "string", "maxLength": 255},
    }})
}

/// A live job's `stats` event (`{"type": "stats", "job_id", "live": LiveStats}`), every
/// `live.stats_interval`; a `notice` event (`{"type": "notice", "job_id", "message"}`)
/// says what happened to its source.
fn live_stats_schema() -> Value {
    let int = |description: &str| json!({"type": "integer", "minimum": 0, "description": description});
    json!({"type": "object", "properties": {
        "packets": int("frames analysed"),
        "bytes": int("bytes of those frames"),
        "dropped": int("frames dropped because the analysis was behind (live.queue_frames full)"),
        "source_dropped": int("frames the source lost before the analysis (kernel drops, malformed HEP)"),
        "sessions": int("sessions completed and stored"),
        "retained_bytes": int("bytes kept for pcap downloads (at most live.max_bytes)"),
        "retained_files": int("files they are kept in"),
        "retained_since": {"type": "number", "nullable": true,
            "description": "capture time of the oldest packet kept (seconds since the Unix epoch): calls begun \
                            before it have aged out, their pcap is a 410 aged_out"},
        "elapsed_ms": int("milliseconds since the job started"),
    }})
}

/// A known path with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Any other path.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound { what: "route", id: req.uri().path().to_string() }
}
