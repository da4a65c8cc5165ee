//! Share links: a read-only, expiring, revocable link to one call, made by a logged-in user and followed by anyone who has it, without a login.
//!
//! `POST /api/v1/shares {"job_id", "session_id"}` makes a link (a random 256-bit token,
//! valid `auth.share_ttl`); `DELETE /api/v1/shares/{token}` revokes it. The link's routes,
//! `GET /api/v1/share/{token}` and its `/ladder`, `/chart`, `/messages/{frame}` and `/pcap`,
//! answer for that session only, never its leg group (which would reach other calls):
//! the token stands for the credential, so they are public paths the authentication
//! layer lets through and these handlers check. Links are kept in memory, at most
//! `auth.max_shares` at once (expired ones are swept when one is made), and end when
//! callflowd restarts.

use crate::api::{ChartParams, LadderParams};
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use callflow_jobs::JobId;
use dashmap::DashMap;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The prefix of the links' routes, which need no credential.
const SHARED: &str = "/api/v1/share/";

/// True for a share link's routes (the handlers check the token).
pub fn public(path: &str) -> bool {
    path.strip_prefix(SHARED).is_some_and(|rest| !rest.is_empty())
}

/// One link: what it opens and until when.
#[derive(Clone, Debug)]
struct Share {
    job: JobId,
    session: String,
    expires: Instant,
}

/// The links made and not yet expired or revoked.
#[derive(Debug, Default)]
pub struct Shares {
    links: DashMap<String, Share>,
}

impl Shares {
    /// The job and session `token` opens, while it is valid.
    fn get(&self, token: &str, now: Instant) -> Option<(JobId, String)> {
        self.links.get(token).filter(|s| s.expires > now).map(|s| (s.job, s.session.clone()))
    }
}

/// `POST /api/v1/shares` body.
#[derive(Debug, Deserialize)]
pub struct NewShare {
    job_id: i64,
    session_id: String,
}

/// `POST /api/v1/shares`: a link to one of a job's sessions (which must exist).
pub async fn create(State(state): State<AppState>, ApiJson(body): ApiJson<NewShare>) -> Result<Response, ApiError> {
    let job = JobId(body.job_id);
    // The session must exist: a link to nothing would only fail later, for someone else.
    crate::api::find_session(&state, Some(job), body.session_id.clone()).await?;
    let now = Instant::now();
    let shares = &state.shares;
    shares.links.retain(|_, s| s.expires > now);
    if shares.links.len() >= state.settings.auth.max_shares {
        return Err(ApiError::Busy {
            message: format!(
                "{} share links are valid already (auth.max_shares): revoke some or wait for them to expire",
                shares.links.len()
            ),
            retry_after: 60,
        });
    }
    let ttl = state.settings.auth.share_ttl;
    let token = crate::auth::random_hex::<32>();
    shares.links.insert(token.clone(), Share { job, session: body.session_id.clone(), expires: now + ttl });
    let expires_at = SystemTime::now().checked_add(ttl).unwrap_or(SystemTime::now());
    let expires_at = expires_at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64();
    let body = json!({"token": token, "job_id": job, "session_id": body.session_id, "url": format!("/#/share/{token}"),
        "expires_at": expires_at, "expires_in": ttl.as_secs()});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /api/v1/shares/{token}`: revokes a link at once.
pub async fn revoke(State(state): State<AppState>, Path(token): Path<String>) -> Result<StatusCode, ApiError> {
    match state.shares.links.remove(&token) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(share_not_found()),
    }
}

/// The same answer for a token never made, expired or revoked: none says which.
fn share_not_found() -> ApiError {
    ApiError::NotFound { what: "share link", id: "(expired, revoked or never made)".into() }
}

fn opened(state: &AppState, token: &str) -> Result<(JobId, String), ApiError> {
    state.shares.get(token, Instant::now()).ok_or_else(share_not_found)
}

/// `GET /api/v1/share/{token}`: the shared session in the `callflow/v1` shape.
pub async fn session(State(state): State<AppState>, Path(token): Path<String>) -> Result<Json<Value>, ApiError> {
    let (job, sid) = opened(&state, &token)?;
    crate::api::session_json(crate::api::find_session(&state, Some(job), sid).await?)
}

/// `?format=` of a shared ladder (never a group).
#[derive(Debug, Deserialize)]
pub struct FormatParam {
    format: Option<String>,
}

/// `GET /api/v1/share/{token}/ladder`.
pub async fn ladder(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ApiQuery(p): ApiQuery<FormatParam>,
) -> Result<Response, ApiError> {
    let (job, sid) = opened(&state, &token)?;
    crate::api::ladder_response(&state, Some(job), sid, LadderParams { format: p.format, group: false }).await
}

/// `GET /api/v1/share/{token}/chart`.
pub async fn chart(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ApiQuery(p): ApiQuery<ChartParams>,
) -> Result<Response, ApiError> {
    let (job, sid) = opened(&state, &token)?;
    crate::api::chart_response(crate::api::find_session(&state, Some(job), sid).await?.1, p)
}

/// `GET /api/v1/share/{token}/messages/{frame}`.
pub async fn message(
    State(state): State<AppState>,
    Path((token, frame)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (job, sid) = opened(&state, &token)?;
    crate::api::message_response(&state, Some(job), sid, frame).await
}

/// `GET /api/v1/share/{token}/pcap`: the session's packets (never its group's).
pub async fn pcap(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let (job, sid) = opened(&state, &token)?;
    crate::api::pcap_response(&state, Some(job), sid, false).await
}
