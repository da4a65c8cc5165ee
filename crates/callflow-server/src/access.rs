//! Where requests may come from: the `Host` header checked against the server's names when there is no authentication (DNS rebinding), and the `Origin` (or `Referer`) of state-changing requests and WebSocket upgrades checked against the server's own origin and the configured ones (cross-site requests).
//!
//! A browser attaches no credential of ours to a cross-site request (they are bearer
//! tokens, never cookies), but without authentication none is needed: any page the user
//! opens could post a form to `http://127.0.0.1:8080/api/v1/upload`, cancel jobs, or open
//! the WebSocket and read every event, callers' numbers included. Loopback is no boundary
//! against the browser on the same machine. So:
//!
//! - A request whose method changes something (anything but GET, HEAD and OPTIONS) or
//!   that upgrades to a WebSocket must come from an allowed origin when it names one: its
//!   `Origin` (else the origin of its `Referer`) is the server's own (its authority is the
//!   request's `Host`) or one of `server.allowed_origins` (empty: `http://` and `https://`
//!   with each default host) or of `server.cors_origins`. Browsers send `Origin` on every cross-site POST and on every
//!   WebSocket handshake; a request with neither header is not a browser's (curl, a
//!   script) and is let through.
//! - Such a request, except an upload (whose multipart form is what `curl -F` sends), may
//!   not carry a body type a plain HTML form can send (`application/x-www-form-urlencoded`,
//!   `multipart/form-data`, `text/plain`): 415. The endpoints take JSON or nothing.
//! - Without authentication, every request's `Host` must be one of `server.allowed_hosts`
//!   (empty: the bind address, `localhost`, `127.0.0.1` and `[::1]`, with the port): a
//!   page on `evil.example` whose name an attacker re-points at 127.0.0.1 (DNS rebinding)
//!   is same-origin for the browser, but its requests say `Host: evil.example`.
//!   With authentication the attacker has no credential to send, and a reverse proxy may
//!   pass on whatever name it serves.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use callflow_config::ServerSettings;
use std::net::SocketAddr;

/// The body types an HTML form can send without a CORS preflight.
const FORM_TYPES: &[&str] = &["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"];

/// The one state-changing route a form may call: uploads are multipart forms (`curl -F`).
const UPLOAD: &str = "/api/v1/upload";

/// The allowed hosts and origins, lower case. `None`: any (`*`).
#[derive(Clone, Debug)]
pub struct Access {
    /// Checked only without authentication.
    hosts: Option<Vec<String>>,
    origins: Option<Vec<String>>,
}

impl Access {
    /// From the `[server]` settings; `local` is the address actually bound (its port
    /// replaces `server.port`, which may be 0), and `auth` whether requests need
    /// credentials (then the `Host` is not checked).
    pub fn new(server: &ServerSettings, auth: bool, local: Option<SocketAddr>) -> Access {
        let port = local.map_or(server.port, |a| a.port());
        let mut names = vec![bracketed(&server.bind_addr)];
        if let Some(local) = local {
            names.push(bracketed(&local.ip().to_string()));
        }
        names.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
        names.sort();
        names.dedup();
        let mut defaults: Vec<String> = names.iter().map(|n| format!("{n}:{port}")).collect();
        // Browsers leave the scheme's default port out of Host and Origin.
        if port == 80 || port == 443 {
            defaults.extend(names);
        }
        let list = |configured: &[String], default: Vec<String>, normal: fn(&str) -> String| {
            if configured.iter().any(|v| v.trim() == "*") {
                return None;
            }
            let configured: Vec<String> = configured.iter().map(|v| normal(v)).collect();
            Some(if configured.is_empty() { default } else { configured })
        };
        let default_origins = defaults.iter().flat_map(|h| [format!("http://{h}"), format!("https://{h}")]).collect();
        let hosts = if auth { None } else { list(&server.allowed_hosts, defaults, bracketed) };
        let origin = |v: &str| v.trim().trim_end_matches('/').to_ascii_lowercase();
        // An origin trusted to call the API cross-origin through CORS is trusted here too.
        let cors = list(&server.cors_origins, Vec::new(), origin);
        let origins = list(&server.allowed_origins, default_origins, origin)
            .zip(cors)
            .map(|(allowed, cors)| allowed.into_iter().chain(cors).collect());
        Access { hosts, origins }
    }

    /// Why the request is refused, if it is.
    fn refuse(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<ApiError> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).or_else(|| uri.authority()?.as_str().into());
        if let (Some(hosts), Some(host)) = (&self.hosts, host) {
            if !host_allowed(hosts, host) {
                return Some(ApiError::HostNotAllowed { host: host.to_string() });
            }
        }
        let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let upgrade = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
        if !changes && !upgrade {
            return None;
        }
        if let Some(origin) = request_origin(headers) {
            if !self.origin_allowed(&origin, host) {
                return Some(ApiError::OriginNotAllowed { origin });
            }
        }
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        match media {
            Some(media) if changes && uri.path() != UPLOAD && FORM_TYPES.contains(&media.as_str()) => {
                Some(ApiError::UnsupportedMedia(format!(
                    "Content-Type `{media}` is refused here (an HTML form could send it): send application/json, or no body"
                )))
            }
            _ => None,
        }
    }

    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let Some(origins) = &self.origins else { return true };
        let origin = origin.to_ascii_lowercase();
        // The server's own origin: the page was served from the address it calls.
        // Browsers leave the scheme's default port out of `Origin`, while a `Host` may carry
        // it (`name:443` from a proxy passing `$http_host`): compare with the ports filled in.
        let own = host.is_some_and(|host| {
            let Ok(uri) = origin.parse::<Uri>() else { return false };
            let (Some(authority), Some(scheme)) = (uri.authority(), uri.scheme_str()) else { return false };
            let default = if scheme == "https" { 443 } else { 80 };
            let Ok(host) = host.parse::<axum::http::uri::Authority>() else { return false };
            authority.host().eq_ignore_ascii_case(host.host())
                && authority.port_u16().unwrap_or(default) == host.port_u16().unwrap_or(default)
        });
        own || origins.contains(&origin)
    }
}

/// A name as a `Host` header writes it: lower case, an IPv6 address in brackets.
fn bracketed(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    if name.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{name}]")
    } else {
        name
    }
}

/// `host` (a `Host` header: `name` or `name:port`) is in `hosts`, where an entry without
/// a port allows the name with any port.
fn host_allowed(hosts: &[String], host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = match host.rfind(':') {
        // `[::1]:8080`, `name:8080`, but not the colons inside `[::1]`.
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host.as_str(),
    };
    hosts.iter().any(|h| *h == host || *h == name)
}

/// The request's `Origin`, else its `Referer`'s `scheme://authority`; `null` (an opaque
/// origin: a sandboxed frame, a `data:` page) stays `null`, which no list holds.
fn request_origin(headers: &HeaderMap) -> Option<String> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        return Some(String::from_utf8_lossy(origin.as_bytes()).trim().to_string());
    }
    let referer = headers.get(header::REFERER)?;
    let text = String::from_utf8_lossy(referer.as_bytes()).trim().to_string();
    Some(match text.parse::<Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => text,
        },
        Err(_) => text,
    })
}

/// Refuses requests from a host or origin that is not allowed (403) and form bodies where
/// only JSON belongs (415); see the module documentation.
pub async fn check(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match state.access.refuse(req.method(), req.uri(), req.headers()) {
        Some(refused) => refused.into_response(),
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(tweak: impl FnOnce(&mut ServerSettings)) -> Access {
        let mut s = ServerSettings::default();
        tweak(&mut s);
        Access::new(&s, false, Some("127.0.0.1:8080".parse().unwrap()))
    }

    fn check(access: &Access, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<&'static str> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let method: Method = method.parse().unwrap();
        access.refuse(&method, &path.parse().unwrap(), &map).map(|e| match e {
            ApiError::HostNotAllowed { .. } => "host",
            ApiError::OriginNotAllowed { .. } => "origin",
            ApiError::UnsupportedMedia(_) => "form",
            _ => "other",
        })
    }

    #[test]
    fn hosts_origins_and_form_bodies() {
        let a = access(|_| {});
        let own = ("host", "127.0.0.1:8080");
        assert_eq!(check(&a, "GET", "/api/v1/jobs", &[own]), None);
        assert_eq!(check(&a, "GET", "/api/v1/jobs", &[("host", "LOCALHOST:8080")]), None);
        assert_eq!(check(&a, "GET", "/api/v1/jobs", &[("host", "[::1]:8080")]), None);
        assert_eq!(check(&a, "GET", "/api/v1/jobs", &[("host", "localhost:9999")]), Some("host"));
        assert_eq!(check(&a, "GET", "/api/v1/jobs", &[("host", "evil.example:8080")]), Some("host"));
        assert_eq!(check(&a, "GET", "/api/v1/jobs", &[]), None, "no Host: not a browser");
        let post = |headers: &[(&str, &str)]| check(&a, "POST", "/api/v1/jobs/1/cancel", headers);
        assert_eq!(post(&[own]), None, "neither Origin nor Referer: curl");
        assert_eq!(post(&[own, ("origin", "http://127.0.0.1:8080")]), None);
        assert_eq!(post(&[own, ("origin", "http://localhost:8080")]), None, "a default name");
        assert_eq!(post(&[own, ("origin", "http://evil.example")]), Some("origin"));
        assert_eq!(post(&[own, ("origin", "null")]), Some("origin"));
        assert_eq!(post(&[own, ("referer", "http://evil.example/page?x=1")]), Some("origin"));
        assert_eq!(post(&[own, ("referer", "http://127.0.0.1:8080/ui/")]), None);
        // The scheme's default port, left out of the Origin as browsers do, written in the Host.
        let any_host = access(|s| s.allowed_hosts = vec!["*".into()]);
        let proxied_post = |headers: &[(&str, &str)]| check(&any_host, "POST", "/api/v1/jobs/1/cancel", headers);
        assert_eq!(proxied_post(&[("host", "callflow.example:443"), ("origin", "https://callflow.example")]), None);
        assert_eq!(proxied_post(&[("host", "callflow.example"), ("origin", "https://callflow.example:443")]), None);
        assert_eq!(
            proxied_post(&[("host", "callflow.example:8443"), ("origin", "https://callflow.example")]),
            Some("origin"),
            "another port is another origin"
        );
        assert_eq!(post(&[own, ("content-type", "text/plain;charset=UTF-8")]), Some("form"));
        assert_eq!(post(&[own, ("content-type", "application/json")]), None);
        let upload = |ct: &str| check(&a, "POST", UPLOAD, &[own, ("content-type", ct)]);
        assert_eq!(upload("multipart/form-data; boundary=x"), None, "curl -F");
        let ws = [own, ("upgrade", "websocket"), ("origin", "http://evil.example")];
        assert_eq!(check(&a, "GET", "/api/v1/ws", &ws), Some("origin"));

        let proxied = access(|s| {
            s.allowed_hosts = vec!["callflow.example".into()];
            s.allowed_origins = vec!["https://ui.example/".into()];
        });
        let host = ("host", "callflow.example");
        assert_eq!(check(&proxied, "GET", "/", &[host]), None);
        assert_eq!(check(&proxied, "GET", "/", &[("host", "callflow.example:8443")]), None, "any port");
        assert_eq!(check(&proxied, "GET", "/", &[own]), Some("host"), "the list replaces the defaults");
        let from = |origin: &str| check(&proxied, "DELETE", "/api/v1/jobs/1", &[host, ("origin", origin)]);
        assert_eq!(from("https://ui.example"), None);
        assert_eq!(from("https://callflow.example"), None, "its own origin");
        assert_eq!(from("http://localhost:8080"), Some("origin"));

        let cors = access(|s| s.cors_origins = vec!["https://app.example".into()]);
        let from = |origin: &str| check(&cors, "POST", "/api/v1/jobs/1/cancel", &[own, ("origin", origin)]);
        assert_eq!(from("https://app.example"), None, "a CORS origin may call the API");
        assert_eq!(from("http://localhost:8080"), None, "and the defaults stay");
        assert_eq!(from("https://evil.example"), Some("origin"));

        let open = access(|s| {
            s.allowed_hosts = vec!["*".into()];
            s.allowed_origins = vec!["*".into()];
        });
        assert_eq!(check(&open, "POST", "/x", &[("host", "evil.example"), ("origin", "http://evil.example")]), None);
        let v6 = access(|s| s.allowed_hosts = vec!["::1".into(), "CallFlow.example:8443".into()]);
        assert_eq!(check(&v6, "GET", "/", &[("host", "[::1]:8080")]), None, "an IPv6 address as configured");
        assert_eq!(check(&v6, "GET", "/", &[("host", "callflow.example:8443")]), None);
        assert_eq!(check(&v6, "GET", "/", &[("host", "callflow.example:8444")]), Some("host"), "that port only");
        let authed = Access::new(&ServerSettings::default(), true, None);
        assert_eq!(check(&authed, "GET", "/", &[("host", "callflow.example")]), None, "no Host check with auth");
    }
}
