//! The web UI: a page and its ES module and style sheet, embedded in the binary and served at `/`, with headers that let the page run its own script and nothing else.
//!
//! The UI is plain HTML, CSS and one ES module (`ui/`), no build step: it routes on the
//! URL's fragment (`/#/jobs/3/sessions/ID`), so every view is a link the server answers
//! with the same page. It talks to the API as any client does (a bearer token kept in
//! `sessionStorage`, the WebSocket for job events) and draws everything from a capture
//! with `textContent`, never as markup; the ladder is the server's SVG, parsed as XML and
//! cleaned of anything but drawing elements before it joins the page. The Content-Security-Policy
//! allows scripts from this origin only (no inline script, no `eval`), styles from
//! this origin, images from this origin and from `blob:` URLs (the charts, fetched with the
//! token), connections to this origin, and no framing; the assets are public, since they
//! hold no data.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                       connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// An asset: its path, its type and its bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("../ui/index.html")),
    ("/ui/app.js", "text/javascript; charset=utf-8", include_str!("../ui/app.js")),
    ("/ui/app.css", "text/css; charset=utf-8", include_str!("../ui/app.css")),
    ("/ui/icon.svg", "image/svg+xml", include_str!("../ui/icon.svg")),
];

/// True for the UI's paths, which need no credential: the page and its assets.
pub fn public(path: &str) -> bool {
    ASSETS.iter().any(|(p, _, _)| *p == path)
}

/// The routes of the page and its assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, &(path, content_type, body)| {
        router.route(path, get(move || async move { asset(content_type, body) }))
    })
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            // Embedded in the binary: a new callflowd may bring new assets under the same names.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
