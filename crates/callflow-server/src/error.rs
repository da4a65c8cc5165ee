//! [`ApiError`]: the one error type of the HTTP API, answered as `{"error": {"code", "message"}}` with its status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use callflow_jobs::{DatabaseErrorKind, JobError, StoreError};

/// Why a request failed. Every variant maps to one status and one stable `code`; the
/// message is written for the client and never carries internal details (those are logged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed (a bad parameter, a missing field).
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or credentials that are wrong or expired.
    #[error("authentication required: send `Authorization: Bearer <key or token>`")]
    Unauthorized,
    /// A login with a wrong user name or password.
    #[error("wrong user name or password")]
    BadLogin,
    /// Nothing of that kind has that id; the code names the kind (`job_not_found`).
    #[error("{what} {id} not found")]
    NotFound {
        /// What was looked for: `job`, `session`, `route`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The job is not in a state that allows this (deleting a running job...).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than its limit (`limits.max_upload_bytes` for uploads,
    /// `limits.max_body_bytes` for others).
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The upload is not a capture file.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// A state-changing request or a WebSocket upgrade from a web page of another origin
    /// (`server.allowed_origins`).
    #[error("cross-site request refused: origin `{origin}` is not allowed (server.allowed_origins)")]
    OriginNotAllowed {
        /// The request's `Origin`, or its `Referer`'s origin.
        origin: String,
    },
    /// Without authentication, a `Host` that is not one of the server's names
    /// (`server.allowed_hosts`): DNS rebinding, or a proxy that needs configuring.
    #[error("host `{host}` is not one of this server's names (server.allowed_hosts)")]
    HostNotAllowed {
        /// The request's `Host`.
        host: String,
    },
    /// A session id that more than one job has: the job-scoped URL says which.
    #[error("session {id} is in several jobs ({jobs}): ask for /api/v1/jobs/{{id}}/sessions/{id}")]
    AmbiguousSession {
        /// The session id.
        id: String,
        /// The jobs that have it, comma-separated.
        jobs: String,
    },
    /// The path exists, but not with this method.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// A plain HTTP request on a WebSocket path.
    #[error("this is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)")]
    UpgradeRequired,
    /// The client sends requests faster than its rate limit.
    #[error("too many requests: retry after {retry_after} s")]
    RateLimited {
        /// Seconds until a request is accepted again.
        retry_after: u64,
    },
    /// The service is at a limit (queue full, too many uploads or clients, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// A disk is full: the message says which (the upload directory, the job store's).
    #[error("{0}")]
    InsufficientStorage(String),
    /// The service is at a limit that frees up soon (upload slots, password checks): 503
    /// with Retry-After.
    #[error("{message}")]
    Busy {
        /// What is busy.
        message: String,
        /// Seconds after which a retry is likely to succeed.
        retry_after: u64,
    },
    /// The client sent its request too slowly (an upload below its minimum rate, or past
    /// its deadline).
    #[error("{0}")]
    TooSlow(String),
    /// The configuration does not allow what was asked (capturing interfaces without
    /// `capture.enabled`); the message names the key.
    #[error("{0}")]
    Forbidden(String),
    /// This build cannot do what was asked (a live source kind not built in).
    #[error("{0}")]
    NotImplemented(String),
    /// What was asked for is no longer kept (a live job's call older than its retained
    /// window); the message names the window.
    #[error("{0}")]
    Gone(String),
    /// Something failed inside the server; the details are logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::BadLogin => StatusCode::UNAUTHORIZED,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::OriginNotAllowed { .. } | ApiError::HostNotAllowed { .. } => StatusCode::FORBIDDEN,
            ApiError::AmbiguousSession { .. } => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> String {
        match self {
            ApiError::BadRequest(_) => "bad_request".into(),
            ApiError::Unauthorized => "unauthorized".into(),
            ApiError::BadLogin => "bad_login".into(),
            ApiError::NotFound { what, .. } => format!("{what}_not_found"),
            ApiError::Conflict(_) => "conflict".into(),
            ApiError::TooLarge { .. } => "payload_too_large".into(),
            ApiError::UnsupportedMedia(_) => "unsupported_media_type".into(),
            ApiError::OriginNotAllowed { .. } => "origin_not_allowed".into(),
            ApiError::HostNotAllowed { .. } => "host_not_allowed".into(),
            ApiError::AmbiguousSession { .. } => "ambiguous_session".into(),
            ApiError::MethodNotAllowed => "method_not_allowed".into(),
            ApiError::UpgradeRequired => "upgrade_required".into(),
            ApiError::RateLimited { .. } => "rate_limited".into(),
            ApiError::Unavailable(_) | ApiError::Busy { .. } => "unavailable".into(),
            ApiError::TooSlow(_) => "request_timeout".into(),
            ApiError::InsufficientStorage(_) => "insufficient_storage".into(),
            ApiError::NotImplemented(_) => "not_implemented".into(),
            ApiError::Forbidden(_) => "forbidden".into(),
            ApiError::Gone(_) => "aged_out".into(),
            ApiError::Internal(_) => "internal".into(),
        }
    }

    /// An I/O error on the upload directory while `doing` something: 507 naming the
    /// directory when its disk is full, else an internal error.
    pub fn upload_io(doing: &str, e: std::io::Error) -> ApiError {
        if e.kind() == std::io::ErrorKind::StorageFull {
            ApiError::InsufficientStorage(format!(
                "the upload directory's disk is full ({doing}); retry once space is freed"
            ))
        } else {
            ApiError::Internal(format!("{doing}: {e}"))
        }
    }

    /// A job that does not exist.
    pub fn job_not_found(id: impl ToString) -> ApiError {
        ApiError::NotFound { what: "job", id: id.to_string() }
    }
}

/// `Query<T>` whose rejection is an [`ApiError`] (400), so a bad parameter gets the same
/// `{"error": ...}` body as every other error.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// `Json<T>` whose rejection is an [`ApiError`]: 413 past the body limit, 400 otherwise.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyLimit>().map_or(0, |l| l.0);
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge { limit }),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// The body limit in force, for the 413 message.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub u64);

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if let StoreError::Unwritable { .. } = e {
            return ApiError::Unavailable(format!(
                "{e}; nothing can be stored until it is fixed and callflowd restarted"
            ));
        }
        if let StoreError::Database { kind: DatabaseErrorKind::Unavailable, .. } = e {
            // A PostgreSQL store restarting or out of reach: the request may be retried. Its
            // address and the driver's words stay in the log.
            tracing::warn!("{e}");
            return ApiError::Unavailable("the job store cannot be reached; retry shortly".into());
        }
        if e.is_disk_full() {
            return ApiError::InsufficientStorage(
                "the job store's disk is full (the database in the results directory, or storage.database); retry \
                 once space is freed"
                    .into(),
            );
        }
        ApiError::Internal(e.to_string())
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        match e {
            JobError::NotFound(id) => ApiError::job_not_found(id),
            JobError::QueueFull { .. } | JobError::ShutDown | JobError::TooManyLive { .. } => {
                ApiError::Unavailable(e.to_string())
            }
            JobError::NotFinished { .. } | JobError::AlreadyFinished { .. } => ApiError::Conflict(e.to_string()),
            JobError::Store(e) => ApiError::from(e),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let ApiError::RateLimited { retry_after } | ApiError::Busy { retry_after, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}
