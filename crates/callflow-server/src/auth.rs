//! Authentication: API keys from the configuration, users with argon2 password hashes who log in for an expiring token, and the middleware that checks them.
//!
//! A login costs an argon2 verification (19 MiB, tens of milliseconds), so it is the
//! cheapest way to load the server: attempts are throttled per client address and per
//! user name (429 with Retry-After), and at most `auth.max_concurrent_logins` verifications
//! run at once (503 past it), which bounds the memory they take. An unknown user name is
//! verified against a dummy hash, so that it takes as long as a wrong password and the
//! answer's timing does not say which names exist. `POST /api/logout` revokes a token;
//! WebSocket streams watch [`Auth::revocations`] and their token's expiry.
//!
//! Tokens are kept in the job store too ([`callflow_jobs::tokens`], by digest), so that
//! every node on one database accepts a token any node issued (a token this node has not
//! seen is looked up there once, then kept in memory) and a logout on any node is seen by
//! all: each node reads the store's revocations every [`REVOCATION_POLL`], drops those
//! tokens and tells its streams. Tokens also survive a restart.

use crate::error::ApiError;
use crate::limit::RateLimiter;
use crate::state::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use callflow_config::AuthSettings;
use callflow_jobs::tokens::{next_cursor, TokenDigest};
use callflow_jobs::JobStore;
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

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
    /// Login tokens (by digest) and when each expires: read by every authenticated
    /// request on every worker thread, so a sharded map rather than one lock.
    tokens: DashMap<TokenDigest, Instant>,
    /// Where tokens are shared with the other nodes (see the module documentation).
    shared: Option<SharedTokens>,
    /// A hash of a random password, verified for unknown user names.
    dummy: OnceLock<String>,
    /// Password verifications running (`auth.max_concurrent_logins` permits).
    verifying: Arc<Semaphore>,
    /// Login attempts by client address...
    by_addr: RateLimiter<IpAddr>,
    /// ...and by user name, keyed by a keyed hash of it, so that invented names cost a
    /// bucket of fixed size each.
    by_user: RateLimiter<u64>,
    user_keys: std::collections::hash_map::RandomState,
    /// Bumped at each logout, for streams to check their token again.
    revoked: watch::Sender<u64>,
    /// Argon2 verifications run so far (a known user's or the dummy).
    verifications: AtomicU64,
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
        // Made now when there are users, so that not even the first unknown name takes
        // longer (a hash more) than a wrong password.
        let dummy = OnceLock::new();
        if !s.users.is_empty() {
            let _ = dummy.set(hash_password(&random_hex::<16>()));
        }
        Auth {
            enabled: s.enabled,
            api_keys: s.api_keys.clone(),
            users: s.users.clone(),
            ttl: s.token_ttl,
            tokens: DashMap::new(),
            shared: None,
            dummy,
            verifying: Arc::new(Semaphore::new(s.max_concurrent_logins.max(1))),
            by_addr: RateLimiter::per_minute(s.login_attempts_per_minute, s.login_burst),
            by_user: RateLimiter::per_minute(s.login_attempts_per_minute, s.login_burst),
            user_keys: Default::default(),
            revoked: watch::Sender::new(0),
            verifications: AtomicU64::new(0),
        }
    }

    /// Shares tokens through `store` (when it keeps them), and starts reading the
    /// revocations other nodes make there; the reading thread ends with the `Auth`.
    pub fn share_through(mut self, store: Arc<dyn JobStore>) -> Arc<Auth> {
        if store.tokens().is_none() {
            return Arc::new(self);
        }
        self.shared = Some(SharedTokens(store.clone()));
        let auth = Arc::new(self);
        let weak = Arc::downgrade(&auth);
        let spawned = std::thread::Builder::new().name("callflow-tokens".into()).spawn(move || {
            let mut cursor = 0;
            let mut swept = Instant::now();
            loop {
                std::thread::sleep(REVOCATION_POLL);
                let Some(auth) = weak.upgrade() else { return };
                let Some(tokens) = store.tokens() else { return };
                let now = unix_millis();
                // An unreachable store is tried again at the next poll: tokens it revoked
                // meanwhile stay valid here until then, as they would on a node that
                // cannot see the store at all.
                if let Ok(read) = tokens.token_revocations(cursor, 10_000) {
                    let dropped = read.iter().filter(|r| auth.tokens.remove(&r.digest).is_some()).count();
                    if dropped > 0 {
                        auth.revoked.send_modify(|n| *n += 1);
                    }
                    cursor = next_cursor(cursor, &read, now);
                }
                if swept.elapsed() >= TOKEN_SWEEP {
                    swept = Instant::now();
                    // Revocations are kept as long as a token lives: a node that cached the
                    // token before the logout must still be able to read it.
                    let keep = auth.ttl.as_millis() as i64 + callflow_jobs::tokens::SETTLED_MS;
                    let _ = tokens.sweep_tokens(now, keep);
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the thread reading token revocations: {e}");
        }
        auth
    }

    /// When `credential` stops being valid: `Some(None)` for an API key (never),
    /// `Some(Some(t))` for a login token, `None` when it is not valid now.
    pub fn expiry(&self, credential: &str, now: Instant) -> Option<Option<Instant>> {
        if self.api_keys.iter().any(|k| same(k.as_bytes(), credential.as_bytes())) {
            return Some(None);
        }
        self.tokens.get(&digest(credential)).map(|e| *e).filter(|expires| *expires > now).map(Some)
    }

    /// Revokes a login token here; false when it was not one this node knew. (The store's
    /// copy is revoked by [`Auth::revoke_shared`].)
    pub fn logout(&self, token: &str) -> bool {
        let removed = self.tokens.remove(&digest(token)).is_some();
        if removed {
            self.revoked.send_modify(|n| *n += 1);
        }
        removed
    }

    /// Revokes `token` in the store, for every node. Blocks: call it off the async threads.
    fn revoke_shared(&self, token: &str) -> Result<(), callflow_jobs::StoreError> {
        match self.shared.as_ref().and_then(|s| s.0.tokens()) {
            Some(tokens) => tokens.revoke_token(&digest(token), unix_millis()),
            None => Ok(()),
        }
    }

    /// Looks `credential` up in the store, as a token another node issued, and keeps it
    /// here when it is valid. Blocks: call it off the async threads.
    fn adopt_shared(&self, credential: &str) -> Result<bool, callflow_jobs::StoreError> {
        let Some(tokens) = self.shared.as_ref().and_then(|s| s.0.tokens()) else { return Ok(false) };
        let digest = digest(credential);
        let (now, now_ms) = (Instant::now(), unix_millis());
        let Some(expires_ms) = tokens.token_expiry(&digest, now_ms)? else { return Ok(false) };
        let left = Duration::from_millis(expires_ms.saturating_sub(now_ms).max(0) as u64).min(self.ttl);
        self.tokens.insert(digest, now + left);
        Ok(true)
    }

    /// Changes at each revocation: a stream opened with a token checks it again then.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revoked.subscribe()
    }

    /// Takes a login attempt for `addr` and `user`, or says how many seconds until one
    /// is allowed.
    fn throttle(&self, addr: Option<IpAddr>, user: &str, now: Instant) -> Result<(), u64> {
        if let Some(addr) = addr {
            self.by_addr.check(addr, now)?;
        }
        self.by_user.check(self.user_keys.hash_one(user), now)
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
        // Expired tokens are swept at each login (which is throttled), not here: a check
        // touches one shard.
        self.tokens.get(&digest(credential)).is_some_and(|expires| *expires > now)
    }

    /// A new token for `user` when `password` matches its hash. An unknown user costs the
    /// same verification, against a dummy hash, so the time taken says nothing of which
    /// user names exist.
    pub fn login(&self, user: &str, password: &str, now: Instant) -> Option<String> {
        let known = self.users.get(user);
        let phc = known.unwrap_or_else(|| self.dummy.get_or_init(|| hash_password(&random_hex::<16>())));
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let verified =
            PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        if !(verified && known.is_some()) {
            return None;
        }
        let token = random_hex::<32>();
        self.tokens.retain(|_, expires| *expires > now);
        self.tokens.insert(digest(&token), now + self.ttl);
        Some(token)
    }

    /// Keeps a token [`Auth::login`] made in the store, for the other nodes. Blocks.
    fn share(&self, token: &str) -> Result<(), callflow_jobs::StoreError> {
        match self.shared.as_ref().and_then(|s| s.0.tokens()) {
            Some(tokens) => tokens.put_token(&digest(token), unix_millis() + self.ttl.as_millis() as i64),
            None => Ok(()),
        }
    }
}

/// The store tokens are shared through.
struct SharedTokens(Arc<dyn JobStore>);

impl std::fmt::Debug for SharedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTokens")
    }
}

/// How often each node reads the revocations other nodes made.
pub const REVOCATION_POLL: Duration = Duration::from_secs(1);

/// How often a node sweeps expired tokens and old revocations from the store.
const TOKEN_SWEEP: Duration = Duration::from_secs(600);

/// A token as the store and the caches know it: its SHA-256 digest.
pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The credential of a request: `Authorization: Bearer X` (the scheme in any case, as
/// RFC 9110 has it), else `?token=X`.
pub fn credential(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim_start().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
    });
    bearer.or_else(|| uri.query()?.split('&').find_map(|kv| kv.strip_prefix("token=")).map(|t| t.to_string()))
}

/// The WebSocket routes (`/api/v1/ws` and its alias `/api/ws`, `/api/v1/jobs/{id}/ws`, `/capture`), whose handlers refuse a
/// bad credential themselves, after the upgrade. Only these: any other path ending in
/// `/ws` (`/api/v1/sessions/ws`) is an ordinary route and needs credentials.
fn websocket_route(path: &str) -> bool {
    path == "/api/v1/ws"
        || path == "/api/ws"
        || path == "/capture"
        || path
            .strip_prefix("/api/v1/jobs/")
            .and_then(|rest| rest.strip_suffix("/ws"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Paths anyone may use: liveness, version, the API description, login itself, and the
/// web UI's page and assets (they hold no data), and share links (their token is checked
/// by their handlers).
fn public(path: &str) -> bool {
    matches!(path, "/health" | "/version" | "/api/login" | "/api/v1/openapi.json")
        || crate::ui::public(path)
        || crate::share::public(path)
}

/// Rejects unauthenticated requests with 401, except on the WebSocket routes, which are
/// upgraded and then closed with 4001 by their handler.
pub async fn require(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let given = credential(req.headers(), req.uri());
    let mut ok = !state.auth.enabled()
        || public(req.uri().path())
        || given.as_deref().is_some_and(|c| state.auth.check(c, Instant::now()));
    // A token this node has not seen may be another node's: one look in the store.
    // Only what looks like a token goes there, so invented API keys cost no query.
    if let (false, Some(given)) = (ok, given.filter(|c| looks_like_token(c))) {
        if state.auth.shared.is_some() {
            let auth = state.auth.clone();
            match tokio::task::spawn_blocking(move || auth.adopt_shared(&given)).await {
                Ok(Ok(found)) => ok = found,
                Ok(Err(e)) => return ApiError::from(e).into_response(),
                Err(e) => return ApiError::Internal(e.to_string()).into_response(),
            }
        }
    }
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
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    crate::error::ApiJson(body): crate::error::ApiJson<Login>,
) -> Result<Response, ApiError> {
    let auth = state.auth.clone();
    let addr = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    auth.throttle(addr, &body.username, Instant::now()).map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    // Each verification holds 19 MiB: 300 at once took the server from 300 MB to 5.9 GB.
    let permit = auth
        .verifying
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy { message: "too many logins in progress; retry shortly".into(), retry_after: 1 })?;
    // Argon2 is deliberately slow: off the async threads.
    let token = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        auth.login(&body.username, &body.password, Instant::now())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .ok_or(ApiError::BadLogin)?;
    let shared = state.auth.clone();
    let token = tokio::task::spawn_blocking(move || shared.share(&token).map(|()| token))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let ttl = state.settings.auth.token_ttl.as_secs();
    Ok(Json(serde_json::json!({"token": token, "token_type": "Bearer", "expires_in": ttl})).into_response())
}

/// `POST /api/logout`: revokes the login token the request carries; the WebSocket streams
/// opened with it are closed (4001).
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Result<StatusCode, ApiError> {
    if let Some(token) = credential(&headers, &uri).filter(|t| looks_like_token(t)) {
        state.auth.logout(&token);
        let auth = state.auth.clone();
        tokio::task::spawn_blocking(move || auth.revoke_shared(&token))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What [`Auth::login`] hands out: 64 lowercase hex digits.
pub(crate) fn looks_like_token(credential: &str) -> bool {
    credential.len() == 64 && credential.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
            ..AuthSettings::default()
        };
        let auth = Auth::new(&settings);
        let now = Instant::now();
        assert!(auth.check("key-1", now));
        assert!(!auth.check("key-2", now));
        assert!(auth.login("ann", "wrong", now).is_none());
        assert!(auth.login("bob", "s3cret", now).is_none());
        let token = auth.login("ann", "s3cret", now).unwrap();
        assert_eq!(auth.expiry(&token, now), Some(Some(now + Duration::from_secs(60))));
        assert_eq!(auth.expiry("key-1", now), Some(None));
        assert!(auth.check(&token, now + Duration::from_secs(59)));
        assert!(!auth.check(&token, now + Duration::from_secs(61)), "expired");
        let token = auth.login("ann", "s3cret", now).unwrap();
        let revocations = auth.revocations();
        assert!(auth.logout(&token) && !auth.check(&token, now) && !auth.logout(&token));
        assert!(revocations.has_changed().unwrap(), "streams are told");
    }

    #[test]
    fn an_unknown_user_costs_the_same_argon2_verification_as_a_wrong_password() {
        let settings =
            AuthSettings { users: [("ann".to_string(), hash_password("s3cret"))].into(), ..AuthSettings::default() };
        let auth = Auth::new(&settings);
        let now = Instant::now();
        assert!(auth.login("ann", "wrong", now).is_none());
        assert_eq!(auth.verifications.load(Ordering::Relaxed), 1);
        assert!(auth.login("bob", "wrong", now).is_none());
        assert!(auth.login("bob", "s3cret", now).is_none());
        assert_eq!(auth.verifications.load(Ordering::Relaxed), 3, "one verification per attempt, known user or not");
        // The dummy is a hash of the same kind as the users' (argon2id, default cost).
        let dummy = PasswordHash::new(auth.dummy.get().unwrap()).unwrap();
        let ann = PasswordHash::new(&settings.users["ann"]).unwrap();
        assert_eq!((dummy.algorithm, dummy.params.to_string()), (ann.algorithm, ann.params.to_string()));
    }

    #[test]
    fn login_attempts_are_throttled_per_address_and_per_user_name() {
        let settings = AuthSettings { login_attempts_per_minute: 6, login_burst: 2, ..AuthSettings::default() };
        let auth = Auth::new(&settings);
        let (a, b) = (Some(IpAddr::from([127, 0, 0, 1])), Some(IpAddr::from([127, 0, 0, 2])));
        let now = Instant::now();
        assert_eq!(auth.throttle(a, "ann", now), Ok(()));
        assert_eq!(auth.throttle(a, "bob", now), Ok(()));
        assert_eq!(auth.throttle(a, "cid", now), Err(10), "the address's burst is spent");
        assert_eq!(auth.throttle(b, "ann", now), Ok(()));
        assert_eq!(auth.throttle(b, "ann", now), Err(10), "ann's burst is spent, from any address");
        assert_eq!(auth.throttle(None, "dan", now + Duration::from_secs(10)), Ok(()));
    }
}
