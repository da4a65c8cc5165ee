//! Share links: a read-only, expiring, revocable link to one call, made by a logged-in user and followed by anyone who has it, without a login.
//!
//! `POST /api/v1/shares {"job_id", "session_id"}` makes a link (a random 256-bit token,
//! valid `auth.share_ttl`); `DELETE /api/v1/shares/{token}` revokes it. The link's routes,
//! `GET /api/v1/share/{token}` and its `/ladder`, `/chart`, `/messages/{frame}` and `/pcap`,
//! answer for that session only, never its leg group (which would reach other calls):
//! the token stands for the credential, so they are public paths the authentication
//! layer lets through and these handlers check. Links are kept in the job store, by the
//! token's SHA-256 digest ([`callflow_jobs::tokens::TokenStore`]), so a link made on one
//! node opens on every node, a revocation on any node is seen by all at once, and links
//! outlive a restart; at most `auth.max_shares` are valid at once (expired ones are swept
//! when one is made). A store that keeps no tokens (an embedder's) keeps them in memory.

use crate::api::{ChartParams, LadderParams};
use crate::auth::{looks_like_token, unix_millis};
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
use std::time::Instant;

/// The prefix of the links' routes, which need no credential.
const SHARED: &str = "/api/v1/share/";

/// True for a share link's routes (the handlers check the token).
pub fn public(path: &str) -> bool {
    path.strip_prefix(SHARED).is_some_and(|rest| !rest.is_empty())
}

/// One link kept in memory: what it opens and until when.
#[derive(Clone, Debug)]
struct Share {
    job: JobId,
    session: String,
    expires: Instant,
}

/// The links made and not yet expired or revoked, when the store keeps none.
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
    /// The job's UUID, or the number of a job created before ids were UUIDs (as a string
    /// or a JSON number).
    job_id: serde_json::Value,
    session_id: String,
}

/// `POST /api/v1/shares`: a link to one of a job's sessions (which must exist).
pub async fn create(State(state): State<AppState>, ApiJson(body): ApiJson<NewShare>) -> Result<Response, ApiError> {
    let job = match &body.job_id {
        serde_json::Value::String(id) => state.resolve(id).await?,
        serde_json::Value::Number(n) => state.resolve(&n.to_string()).await?,
        other => return Err(ApiError::BadRequest(format!("job_id must be a job's id (a UUID string), not {other}"))),
    };
    // The session must exist: a link to nothing would only fail later, for someone else.
    crate::api::find_session(&state, Some(job), body.session_id.clone()).await?;
    let ttl = state.settings.auth.share_ttl;
    let max = state.settings.auth.max_shares;
    let token = crate::auth::random_hex::<32>();
    let expires_ms = unix_millis().saturating_add(ttl.as_millis() as i64);
    let (digest, session) = (crate::auth::digest(&token), body.session_id.clone());
    // In the store when it keeps tokens: `None` from it means it keeps none.
    let stored = state
        .jobs(move |m| {
            let Some(tokens) = m.store().tokens() else { return Ok(None) };
            let valid = tokens.sweep_shares(unix_millis())?;
            if valid >= max as u64 {
                return Ok(Some(Err(valid)));
            }
            tokens.put_share(&digest, job, &session, expires_ms)?;
            Ok(Some(Ok(())))
        })
        .await?;
    let full = |valid: u64| ApiError::Busy {
        message: format!(
            "{valid} share links are valid already (auth.max_shares): revoke some or wait for them to expire"
        ),
        retry_after: 60,
    };
    match stored {
        Some(Ok(())) => {}
        Some(Err(valid)) => return Err(full(valid)),
        None => {
            let now = Instant::now();
            let shares = &state.shares;
            shares.links.retain(|_, s| s.expires > now);
            if shares.links.len() >= max {
                return Err(full(shares.links.len() as u64));
            }
            shares.links.insert(token.clone(), Share { job, session: body.session_id.clone(), expires: now + ttl });
        }
    }
    let expires_at = expires_ms as f64 / 1000.0;
    let body = json!({"token": token, "job_id": job, "session_id": body.session_id, "url": format!("/#/share/{token}"),
        "expires_at": expires_at, "expires_in": ttl.as_secs()});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /api/v1/shares/{token}`: revokes a link at once, on every node.
pub async fn revoke(State(state): State<AppState>, Path(token): Path<String>) -> Result<StatusCode, ApiError> {
    if state.shares.links.remove(&token).is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    if !looks_like_token(&token) {
        return Err(share_not_found());
    }
    let digest = crate::auth::digest(&token);
    let revoked = state
        .jobs(move |m| match m.store().tokens() {
            Some(tokens) => Ok(tokens.revoke_share(&digest, unix_millis())?),
            None => Ok(false),
        })
        .await?;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(share_not_found())
    }
}

/// The same answer for a token never made, expired or revoked: none says which.
fn share_not_found() -> ApiError {
    ApiError::NotFound { what: "share link", id: "(expired, revoked or never made)".into() }
}

/// The job and session `token` opens, while it is valid.
async fn opened(state: &AppState, token: &str) -> Result<(JobId, String), ApiError> {
    if let Some(found) = state.shares.get(token, Instant::now()) {
        return Ok(found);
    }
    // What no link can be does not cost a trip to the store.
    if !looks_like_token(token) {
        return Err(share_not_found());
    }
    let digest = crate::auth::digest(token);
    let found = state
        .jobs(move |m| match m.store().tokens() {
            Some(tokens) => Ok(tokens.share(&digest, unix_millis())?),
            None => Ok(None),
        })
        .await?;
    found.ok_or_else(share_not_found)
}

/// `GET /api/v1/share/{token}`: the shared session in the `callflow/v1` shape.
pub async fn session(State(state): State<AppState>, Path(token): Path<String>) -> Result<Json<Value>, ApiError> {
    let (job, sid) = opened(&state, &token).await?;
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
    let (job, sid) = opened(&state, &token).await?;
    crate::api::ladder_response(&state, Some(job), sid, LadderParams { format: p.format, group: false }).await
}

/// `GET /api/v1/share/{token}/chart`.
pub async fn chart(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ApiQuery(p): ApiQuery<ChartParams>,
) -> Result<Response, ApiError> {
    let (job, sid) = opened(&state, &token).await?;
    crate::api::chart_response(crate::api::find_session(&state, Some(job), sid).await?.1, p)
}

/// `GET /api/v1/share/{token}/messages/{frame}`.
pub async fn message(
    State(state): State<AppState>,
    Path((token, frame)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (job, sid) = opened(&state, &token).await?;
    crate::api::message_response(&state, Some(job), sid, frame).await
}

/// `GET /api/v1/share/{token}/pcap`: the session's packets (never its group's).
pub async fn pcap(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let (job, sid) = opened(&state, &token).await?;
    crate::api::pcap_response(&state, Some(job), sid, false).await
}
