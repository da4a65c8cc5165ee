//! Authentication: API keys from the configuration, users with argon2 password hashes who log in for an expiring token, and the middleware that checks them.

use crate::error::ApiError;
use crate::state::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use callflow_config::AuthSettings;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether the request carried valid credentials; WebSocket handlers read it, since they
/// must accept the upgrade before they may refuse (close code 4001).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authorized(pub bool);

/// Credentials and the tokens handed out by login.
#[derive(Debug)]
pub struct Auth {
    enabled: bool,
    api_keys: Vec<String>,
    users: BTreeMap<String, String>,
    ttl: Duration,
    tokens: Mutex<HashMap<String, Instant>>,
}

/// Hashes `password` for `[auth] users` (argon2id, random salt, PHC string).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).expect("16 bytes is a valid salt length");
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default parameters").to_string()
}

/// `N` bytes from the operating system's generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random generator");
    bytes
}

/// `N` random bytes in hex.
pub fn random_hex<const N: usize>() -> String {
    random_bytes::<N>().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference, so timing says nothing about a key.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// From the `[auth]` settings.
    pub fn new(s: &AuthSettings) -> Auth {
        Auth {
            enabled: s.enabled,
            api_keys: s.api_keys.clone(),
            users: s.users.clone(),
            ttl: s.token_ttl,
            tokens: Mutex::default(),
        }
    }

    /// True when requests need credentials.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// True for a configured API key or an unexpired login token.
    pub fn check(&self, credential: &str, now: Instant) -> bool {
        if self.api_keys.iter().any(|k| same(k.as_bytes(), credential.as_bytes())) {
            return true;
        }
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, expires| *expires > now);
        tokens.contains_key(credential)
    }

    /// A new token for `user` when `password` matches its hash.
    pub fn login(&self, user: &str, password: &str, now: Instant) -> Option<String> {
        let hash = PasswordHash::new(self.users.get(user)?).ok()?;
        Argon2::default().verify_password(password.as_bytes(), &hash).ok()?;
        let token = random_hex::<32>();
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), now + self.ttl);
        Some(token)
    }
}

/// The credential of a request: `Authorization: Bearer X` (the scheme in any case, as
/// RFC 9110 has it), else `?token=X`.
fn credential(req: &Request) -> Option<String> {
    let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim_start().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
    });
    bearer.or_else(|| req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix("token=")).map(|t| t.to_string()))
}

/// The WebSocket routes (`/api/v1/ws`, `/api/v1/jobs/{id}/ws`), whose handlers refuse a
/// bad credential themselves, after the upgrade. Only these: any other path ending in
/// `/ws` (`/api/v1/sessions/ws`) is an ordinary route and needs credentials.
fn websocket_route(path: &str) -> bool {
    path == "/api/v1/ws"
        || path
            .strip_prefix("/api/v1/jobs/")
            .and_then(|rest| rest.strip_suffix("/ws"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Paths anyone may use: liveness, version, the API description, and login itself.
fn public(path: &str) -> bool {
    matches!(path, "/health" | "/version" | "/api/login" | "/api/v1/openapi.json")
}

/// Rejects unauthenticated requests with 401, except on the WebSocket routes, which are
/// upgraded and then closed with 4001 by their handler.
pub async fn require(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ok = !state.auth.enabled()
        || public(req.uri().path())
        || credential(&req).is_some_and(|c| state.auth.check(&c, Instant::now()));
    if !ok && !websocket_route(req.uri().path()) {
        return ApiError::Unauthorized.into_response();
    }
    req.extensions_mut().insert(Authorized(ok));
    next.run(req).await
}

/// `POST /api/login` body.
#[derive(Debug, serde::Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

/// `POST /api/login`: a token for a configured user.
pub async fn login(
    State(state): State<AppState>,
    crate::error::ApiJson(body): crate::error::ApiJson<Login>,
) -> Result<Response, ApiError> {
    let auth = state.auth.clone();
    // Argon2 is deliberately slow: off the async threads.
    let token = tokio::task::spawn_blocking(move || auth.login(&body.username, &body.password, Instant::now()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or(ApiError::BadLogin)?;
    let ttl = state.settings.auth.token_ttl.as_secs();
    Ok(Json(serde_json::json!({"token": token, "token_type": "Bearer", "expires_in": ttl})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_expiring_login_tokens() {
        let settings = AuthSettings {
            enabled: true,
            api_keys: vec!["key-1".into()],
            users: [("ann".to_string(), hash_password("s3cret"))].into(),
            token_ttl: Duration::from_secs(60),
        };
        let auth = Auth::new(&settings);
        let now = Instant::now();
        assert!(auth.check("key-1", now));
        assert!(!auth.check("key-2", now));
        assert!(auth.login("ann", "wrong", now).is_none());
        assert!(auth.login("bob", "s3cret", now).is_none());
        let token = auth.login("ann", "s3cret", now).unwrap();
        assert!(auth.check(&token, now + Duration::from_secs(59)));
        assert!(!auth.check(&token, now + Duration::from_secs(61)), "expired");
    }
}
