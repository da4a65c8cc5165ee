//! Live events: the WebSocket endpoints (`/api/v1/ws`, also served at `/api/ws`, `/api/v1/jobs/{id}/ws`) and Server-Sent Events (`/api/v1/jobs/{id}/events`).

use crate::auth::Authorized;
use crate::error::ApiError;
use crate::hub::{job_json, ClientQueue, Message as HubMessage};
use crate::state::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use callflow_jobs::{JobId, JobQuery};
use futures_util::SinkExt;
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{interval, Instant, MissedTickBehavior};

/// Close code for a missing, bad, expired or revoked token.
const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code when the client is too slow to keep its state changes (RFC 6455 "try again later").
const CLOSE_TRY_AGAIN: u16 = 1013;
/// Read buffer of a WebSocket connection, and the largest message a client may send.
const CLIENT_READ_BUFFER: usize = 4096;
/// Close code for a server going away.
const CLOSE_GOING_AWAY: u16 = 1001;

/// `GET /api/v1/ws` and `GET /api/ws` (the path of the WebSocket push design callflowd
/// adopted, which its clients were written from): every job's events.
pub async fn ws_all(
    State(state): State<AppState>,
    auth: Option<Extension<Authorized>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = login_token(&state, &headers, &uri);
    let resume = last_event_id(&uri)?;
    ws(state, auth, token, upgrade, None, resume).await
}

/// `GET /api/v1/jobs/{id}/ws`: one job's events.
pub async fn ws_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    auth: Option<Extension<Authorized>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let id = state.resolve(&id).await?;
    let token = login_token(&state, &headers, &uri);
    let resume = last_event_id(&uri)?;
    ws(state, auth, token, upgrade, Some(id), resume).await
}

/// A WebSocket's `?last_event_id=N`: resume after event `N` instead of starting with the
/// jobs' state.
fn last_event_id(uri: &Uri) -> Result<Option<u64>, ApiError> {
    let Some(query) = uri.query() else { return Ok(None) };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("last_event_id=") {
            return value.parse().map(Some).map_err(|_| {
                ApiError::BadRequest(format!("last_event_id must be an event id (a whole number), not `{value}`"))
            });
        }
    }
    Ok(None)
}

/// The most events a resume replays; a client further behind gets the jobs' state again.
const REPLAY_MAX: usize = 10_000;

/// What a client resuming after an event is sent first.
enum Resume {
    /// Every event after it, in order.
    Events(Vec<HubMessage>),
    /// Some are no longer kept (or too many to replay): the state again.
    Gap,
}

/// The events of `job` (or of every job) after `after`: from the job's ring when it reaches
/// back that far, else from the store's event log, which every node shares.
async fn resume(state: &AppState, job: Option<JobId>, after: u64) -> Resume {
    if let Some(messages) = job.and_then(|j| state.hub.replay_from_ring(j, after)) {
        return Resume::Events(messages);
    }
    let read = state
        .jobs(move |m| {
            let store = m.store();
            if store.event_ids()?.lost_after(after) {
                return Ok(None);
            }
            Ok(Some(store.events_after(after, job, REPLAY_MAX + 1)?))
        })
        .await;
    match read {
        Ok(Some(events)) if events.len() <= REPLAY_MAX => {
            Resume::Events(events.iter().map(HubMessage::stored).collect())
        }
        // Too old, too many, or a store that keeps no log (or cannot be read now).
        _ => Resume::Gap,
    }
}

/// The login token a stream was opened with, if authentication is on and it was one (an
/// API key does not expire): the stream ends when the token does.
pub(crate) fn login_token(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if !state.auth.enabled() {
        return None;
    }
    let credential = crate::auth::credential(headers, uri)?;
    state.auth.expiry(&credential, std::time::Instant::now()).flatten().map(|_| credential)
}

/// Runs one write to a client, giving up after `limit`: a client that stopped reading
/// fills its socket buffer, and a write without a deadline then waits for ever, holding
/// its client slot, with neither the heartbeat check nor the 1013 close able to run.
pub(crate) async fn within<E>(limit: Duration, write: impl Future<Output = Result<(), E>>) -> bool {
    matches!(tokio::time::timeout(limit, write).await, Ok(Ok(())))
}

async fn ws(
    state: AppState,
    auth: Option<Extension<Authorized>>,
    token: Option<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    job: Option<JobId>,
    resume: Option<u64>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|_| ApiError::UpgradeRequired)?;
    let authorized = auth.is_none_or(|Extension(Authorized(ok))| ok);
    if let (true, Some(id)) = (authorized, job) {
        state.jobs(move |m| m.job(id)).await?;
    }
    let permit = state
        .clients
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable("too many live clients; retry later".into()))?;
    // Every wake-up of a connection polls its read side, and tungstenite zero-fills its
    // whole read buffer for each poll: at the default 128 KiB that memset was a third of
    // the server's time fanning events out to 1,000 clients. Clients only send `ping`.
    let upgrade = upgrade.read_buffer_size(CLIENT_READ_BUFFER).max_message_size(CLIENT_READ_BUFFER);
    Ok(upgrade.on_upgrade(move |socket| async move {
        let _permit = permit;
        if !authorized {
            let mut socket = socket;
            let frame =
                CloseFrame { code: CLOSE_UNAUTHORIZED, reason: "unauthorized: pass ?token=<key or token>".into() };
            within(state.settings.websocket.send_timeout, socket.send(Message::Close(Some(frame)))).await;
            return;
        }
        state.metrics.ws_clients.fetch_add(1, Ordering::Relaxed);
        run_ws(&state, socket, job, token, resume).await;
        state.metrics.ws_clients.fetch_sub(1, Ordering::Relaxed);
    }))
}

/// The jobs' state; with `gap`, saying that events after the one a client resumed from are
/// no longer kept (it should read again what it shows: sessions, statistics).
async fn full_state(state: &AppState, job: Option<JobId>, gap: bool) -> Option<String> {
    let jobs = match job {
        Some(id) => state.jobs(move |m| m.job(id)).await.ok().map(|j| vec![j])?,
        None => state.jobs(|m| m.jobs(&JobQuery { limit: 1000, ..JobQuery::default() })).await.ok()?,
    };
    let jobs: Vec<_> = jobs.iter().map(job_json).collect();
    let mut message = json!({"type": "full_state", "jobs": jobs});
    if gap {
        message["gap"] = json!(true);
    }
    Some(message.to_string())
}

async fn run_ws(
    state: &AppState,
    mut socket: WebSocket,
    job: Option<JobId>,
    token: Option<String>,
    after: Option<u64>,
) {
    let limit = state.settings.websocket.send_timeout;
    let close = |code: u16, reason: &str| Message::Close(Some(CloseFrame { code, reason: reason.to_string().into() }));
    // A stream opened with a login token ends when the token expires or is revoked; told
    // of revocations from before the token is checked, so that none falls in between.
    let mut revocations = state.auth.revocations();
    let expiry = token.as_deref().and_then(|t| state.auth.expiry(t, std::time::Instant::now()).flatten());
    if token.is_some() && expiry.is_none() {
        within(limit, socket.send(close(CLOSE_UNAUTHORIZED, "the token was revoked"))).await;
        return;
    }
    // Subscribed before the snapshot (or the replay), so no change falls between the two;
    // a message in both is sent once (by id).
    let client = state.hub.subscribe(job);
    let (first, seen): (Vec<axum::extract::ws::Utf8Bytes>, u64) = match after {
        Some(after) => match resume(state, job, after).await {
            Resume::Events(replay) => {
                let seen = replay.last().map_or(after, |m| m.id);
                (replay.into_iter().map(|m| m.json).collect(), seen)
            }
            Resume::Gap => {
                let Some(snapshot) = full_state(state, job, true).await else { return };
                (vec![snapshot.into()], after)
            }
        },
        None => {
            let Some(snapshot) = full_state(state, job, false).await else { return };
            (vec![snapshot.into()], 0)
        }
    };
    let replay = async {
        for text in first {
            socket.feed(Message::Text(text)).await?;
        }
        socket.flush().await
    };
    if !within(limit, replay).await {
        return;
    }
    let beat = state.settings.websocket.ping_interval.max(Duration::from_millis(10));
    let mut heartbeat = interval(beat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut last_read = Instant::now();
    let mut shutdown = state.hub.shutdown.subscribe();
    let expired = async move {
        match expiry {
            Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    let close = |code: u16, reason: &str| Message::Close(Some(CloseFrame { code, reason: reason.to_string().into() }));
    loop {
        tokio::select! {
            _ = client.notify.notified() => {
                if client.overflowed() {
                    within(limit, socket.send(close(CLOSE_TRY_AGAIN, "too slow: events would be lost; reconnect"))).await;
                    return;
                }
                // Written together and flushed once: events come in bursts (a job's
                // state, session and stats), and a flush per message is a system call per
                // message per client (with 1,000 clients: p99 delay 92-146 ms before,
                // 59-88 ms after; docs/performance.md).
                let burst = async {
                    for msg in client.drain().into_iter().filter(|m| m.id > seen) {
                        socket.feed(Message::Text(msg.json)).await?;
                    }
                    socket.flush().await
                };
                if !within(limit, burst).await {
                    return;
                }
            }
            incoming = socket.recv() => {
                last_read = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) if text.trim() == "ping" => {
                        if !within(limit, socket.send(Message::Text("pong".into()))).await {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            }
            _ = heartbeat.tick() => {
                // A client that sent nothing (not even the pong to our pings) for two
                // heartbeats is gone or stuck.
                if last_read.elapsed() >= beat * 2 + beat / 2 {
                    within(limit, socket.send(close(CLOSE_GOING_AWAY, "no answer to heartbeats"))).await;
                    return;
                }
                let beat_msg = json!({"type": "heartbeat", "ts": crate::hub::now_seconds()}).to_string();
                let beat = async {
                    socket.feed(Message::Text(beat_msg.into())).await?;
                    socket.feed(Message::Ping(Vec::new().into())).await?;
                    socket.flush().await
                };
                if !within(limit, beat).await {
                    return;
                }
            }
            _ = &mut expired => {
                within(limit, socket.send(close(CLOSE_UNAUTHORIZED, "the token expired"))).await;
                return;
            }
            Ok(()) = revocations.changed(), if token.is_some() => {
                if token.as_deref().is_some_and(|t| state.auth.expiry(t, std::time::Instant::now()).is_none()) {
                    within(limit, socket.send(close(CLOSE_UNAUTHORIZED, "the token was revoked"))).await;
                    return;
                }
            }
            _ = shutdown.changed() => {
                within(limit, socket.send(close(CLOSE_GOING_AWAY, "server shutting down"))).await;
                return;
            }
        }
    }
}

fn sse_event(msg: &HubMessage) -> SseEvent {
    SseEvent::default().id(msg.id.to_string()).event(msg.kind.as_str()).data(msg.json.as_str())
}

/// `GET /api/v1/jobs/{id}/events`: the job's events as Server-Sent Events; after a
/// reconnection with `Last-Event-ID`, the events since then are replayed from the ring.
pub async fn sse(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let id = state.resolve(&id).await?;
    // Told of revocations from before the token is checked, so that none falls in between.
    let revocations = state.auth.revocations();
    let token = login_token(&state, &headers, &uri);
    let expiry = token.as_deref().and_then(|t| state.auth.expiry(t, std::time::Instant::now()).flatten());
    let job = state.jobs(move |m| m.job(id)).await?;
    let permit = state
        .clients
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable("too many live clients; retry later".into()))?;
    let last: Option<u64> =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let client = state.hub.subscribe(Some(id));
    // Subscribed before the replay is read: a message in both is sent once (by id).
    let (mut first, seen): (Vec<SseEvent>, u64) = match last {
        Some(after) => match resume(&state, Some(id), after).await {
            Resume::Events(replay) => {
                let seen = replay.last().map_or(after, |m| m.id);
                (replay.iter().map(sse_event).collect(), seen)
            }
            Resume::Gap => {
                let snapshot = json!({"type": "full_state", "jobs": [job_json(&job)], "gap": true}).to_string();
                (vec![SseEvent::default().event("full_state").data(snapshot)], after)
            }
        },
        None => {
            let snapshot = json!({"type": "full_state", "jobs": [job_json(&job)]}).to_string();
            (vec![SseEvent::default().event("full_state").data(snapshot)], 0)
        }
    };
    first.reverse();
    let shutdown = state.hub.shutdown.subscribe();
    state.metrics.sse_clients.fetch_add(1, Ordering::Relaxed);
    let guard = SseGuard { state: state.clone(), _permit: permit, token, expiry, revocations };
    let stream = futures_util::stream::unfold(
        (first, client, shutdown, seen, guard, Vec::<SseEvent>::new()),
        |(mut first, client, mut shutdown, seen, mut guard, mut pending)| async move {
            if let Some(ev) = first.pop() {
                return Some((Ok::<_, Infallible>(ev), (first, client, shutdown, seen, guard, pending)));
            }
            loop {
                if let Some(ev) = pending.pop() {
                    return Some((Ok(ev), (first, client, shutdown, seen, guard, pending)));
                }
                // `seen` is u64::MAX once the job's deletion was sent: nothing more will come.
                // A stream opened with a login token ends when the token expires or is revoked.
                if client.overflowed() || *shutdown.borrow() || seen == u64::MAX || guard.lapsed() {
                    // The client reconnects with Last-Event-ID and is replayed what it missed.
                    return None;
                }
                let batch = drain_new(&client, seen);
                if !batch.is_empty() {
                    pending = batch.iter().rev().map(sse_event).collect();
                    let deleted = batch.iter().any(|m| m.kind == crate::hub::Kind::Deleted);
                    let seen = if deleted { u64::MAX } else { batch.last().map_or(seen, |m| m.id) };
                    let ev = pending.pop().expect("not empty");
                    return Some((Ok(ev), (first, client, shutdown, seen, guard, pending)));
                }
                let expiry = guard.expiry;
                let expired = async move {
                    match expiry {
                        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                        None => std::future::pending().await,
                    }
                };
                let watching = guard.token.is_some();
                tokio::select! {
                    _ = client.notify.notified() => {}
                    _ = shutdown.changed() => {}
                    _ = expired => {}
                    _ = guard.revocations.changed(), if watching => {}
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// Queued messages newer than `seen` (replay may already have sent some).
fn drain_new(client: &Arc<ClientQueue>, seen: u64) -> Vec<HubMessage> {
    client.drain().into_iter().filter(|m| m.id > seen).collect()
}

struct SseGuard {
    state: AppState,
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// The login token the stream was opened with, when it was one, and its expiry.
    token: Option<String>,
    expiry: Option<std::time::Instant>,
    revocations: tokio::sync::watch::Receiver<u64>,
}

impl SseGuard {
    /// True once the stream's login token has expired or was revoked.
    fn lapsed(&self) -> bool {
        self.token.as_deref().is_some_and(|t| self.state.auth.expiry(t, std::time::Instant::now()).is_none())
    }
}

impl Drop for SseGuard {
    fn drop(&mut self) {
        self.state.metrics.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}
