//! Per-client rate limiting (a token bucket per client address, or per any key: login attempts are counted per user name too) and the URI length limit.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

/// Token buckets by key (a client address, by default): `rate` tokens a second, at most
/// `burst` saved up.
#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// Past this many buckets, full ones (idle clients) are forgotten, so memory stays bounded.
const MAX_BUCKETS: usize = 100_000;

impl<K: Hash + Eq> RateLimiter<K> {
    /// `per_second` = 0: no limit.
    pub fn new(per_second: u32, burst: u32) -> RateLimiter<K> {
        RateLimiter::with_rate(f64::from(per_second), burst)
    }

    /// `per_minute` = 0: no limit.
    pub fn per_minute(per_minute: u32, burst: u32) -> RateLimiter<K> {
        RateLimiter::with_rate(f64::from(per_minute) / 60.0, burst)
    }

    fn with_rate(rate: f64, burst: u32) -> RateLimiter<K> {
        RateLimiter { rate, burst: f64::from(burst.max(1)), buckets: Mutex::default() }
    }

    /// Takes a token for `client`, or says how many seconds until one is there.
    pub fn check(&self, client: K, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// Refuses over-long URIs (414) and clients over their rate (429 with Retry-After);
/// `/health` is not rate-limited.
pub async fn limits(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > state.settings.server.max_uri_bytes {
        let body = serde_json::json!({"error": {"code": "uri_too_long", "message": "the request URI is too long"}});
        return (StatusCode::URI_TOO_LONG, axum::Json(body)).into_response();
    }
    // A liveness probe (a load balancer, an orchestrator) is not a client to slow down:
    // refusing it would take a healthy server out of service when others are busy.
    let probe = req.uri().path() == "/health";
    if let (false, Some(ConnectInfo(addr))) = (probe, req.extensions().get::<ConnectInfo<SocketAddr>>()) {
        if let Err(retry_after) = state.rate.check(addr.ip(), Instant::now()) {
            return ApiError::RateLimited { retry_after }.into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = RateLimiter::new(2, 3);
        let (ip, t0) = (IpAddr::from([127, 0, 0, 1]), Instant::now());
        assert_eq!((0..4).map(|_| limiter.check(ip, t0).is_ok()).collect::<Vec<_>>(), [true, true, true, false]);
        assert_eq!(limiter.check(ip, t0), Err(1));
        assert!(limiter.check(ip, t0 + Duration::from_millis(500)).is_ok(), "one token after half a second");
        assert!(limiter.check(IpAddr::from([127, 0, 0, 2]), t0).is_ok(), "buckets are per client");
        assert!(RateLimiter::new(0, 0).check(ip, t0).is_ok(), "0: no limit");
        let minute = RateLimiter::per_minute(6, 1);
        assert_eq!((minute.check("ann", t0), minute.check("ann", t0)), (Ok(()), Err(10)), "one every 10 s");
    }
}
