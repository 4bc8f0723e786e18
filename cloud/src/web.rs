//! HTTP plumbing every handler stands on (the ground floor): the JSON error envelope
//! (`{"error": {"code", "message"}}`) every failure is answered with, JSON bodies with errors in
//! that envelope, the server's clock and the server-time header on every answer, and the
//! answers for unknown paths and methods. Nothing here knows a domain or the application state.
//!
//! Invariants:
//! - an error reaches a client only as an [`ApiError`], whose status and code are chosen by one
//!   exhaustive match, so a new kind of error forces a decision about both;
//! - every response, errors and 404s included, carries [`SERVER_TIME_HEADER`] with the server's
//!   Unix milliseconds, so a device can measure its clock skew from any answer.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sentra_protocol::sync::{MAX_PUSH_BYTES, SERVER_TIME_HEADER};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The whole error chain on one line, for logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// 128 random bits as hex: a reference or tag nobody can guess (message ids, consumer tags,
/// sandbox references).
pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// The server's clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

pub async fn stamp_server_time(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(SERVER_TIME_HEADER, HeaderValue::from(now_ms()));
    response
}

pub async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("no such path: {}", request.uri().path()))
}

pub async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    ))
}

/// A JSON body whatever its content type, with errors in the envelope: bad JSON is 400
/// `malformed_body`, JSON of the wrong shape 422 `invalid`, naming the field.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge {
                        limit: MAX_PUSH_BYTES,
                    },
                    _ => ApiError::MalformedBody(rejection.body_text()),
                })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON body: syntax errors are 400 `malformed_body`, shape errors 422 `invalid`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => ApiError::Invalid(format!("body: {error}")),
        serde_json::error::Category::Io
        | serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof => {
            ApiError::MalformedBody(format!("body is not JSON: {error}"))
        }
    })
}

/// Every error a client can get.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A dependency (PostgreSQL, Redis) does not answer; the message says which and why.
    #[error("{0}")]
    NotReady(String),
    /// PostgreSQL gave no connection in time; retry later.
    #[error("the database is busy or unreachable; retry later")]
    Unavailable,
    /// A bug or an unexpected database failure; the details are in the server's log only.
    #[error("internal error; the details are in the server's log")]
    Internal,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    MalformedBody(String),
    #[error("{0}")]
    BadQuery(String),
    /// A Range request that starts beyond the end of the artifact.
    #[error("{0}")]
    RangeNotSatisfiable(String),
    /// Missing, malformed or unknown credentials, a bad signature, a revoked device.
    #[error("{0}")]
    Unauthorized(String),
    /// A signed request's timestamp is outside the window; the server time header says ours.
    #[error("{0}")]
    ClockSkew(String),
    /// A signed request's nonce was seen before for that device.
    #[error("{0}")]
    Replay(String),
    #[error(
        "the enrolment token is unknown, already used or expired; ask for a new one (sentra-cloud enrollment-token --branch B)"
    )]
    EnrollmentRefused,
    /// Authenticated, but this caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadPublicKey(String),
    #[error("protocol version {got} is not supported; this cloud speaks {supported}")]
    UnsupportedProtocol { got: u32, supported: u32 },
    /// A push batch carries an event of another device.
    #[error("{0}")]
    ForeignEvent(String),
    #[error("{0}")]
    NotContiguous(String),
    #[error("{0}")]
    Invalid(String),
    /// Uploaded bytes do not hash to the digest they were sent as.
    #[error("{0}")]
    DigestMismatch(String),
    #[error("expected seq {expected_seq}, got {got}; resend from {expected_seq}")]
    SequenceGap { expected_seq: u64, got: u64 },
    /// A re-sent event differs from the one held under its seq: the device forked (restored).
    #[error(
        "the cloud holds other events from seq {fork_seq} on; renumber yours from {expected_seq}"
    )]
    SequenceFork { expected_seq: u64, fork_seq: u64 },
    /// The request conflicts with the record (a taken slot, a lapsed hold, a reused key);
    /// `details` are extra top-level fields of the answer (the waitlist offer, the booking).
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: Option<serde_json::Value>,
    },
    /// Well-formed, but a business rule refuses it (an unverified customer's booking): 422 with
    /// its own code, so a client can tell staff what to do.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// A provider we depend on (the identity provider) failed or is not configured: 502/503.
    #[error("{message}")]
    Upstream {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::MalformedBody(_) => (StatusCode::BAD_REQUEST, "malformed_body"),
            ApiError::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_query"),
            ApiError::RangeNotSatisfiable(_) => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::ClockSkew(_) => (StatusCode::UNAUTHORIZED, "clock_skew"),
            ApiError::Replay(_) => (StatusCode::UNAUTHORIZED, "replay"),
            ApiError::EnrollmentRefused => (StatusCode::UNAUTHORIZED, "enrollment_refused"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadPublicKey(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bad_public_key"),
            ApiError::UnsupportedProtocol { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unsupported_protocol")
            }
            ApiError::ForeignEvent(_) => (StatusCode::UNPROCESSABLE_ENTITY, "foreign_event"),
            ApiError::NotContiguous(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_contiguous"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::DigestMismatch(_) => (StatusCode::UNPROCESSABLE_ENTITY, "digest_mismatch"),
            ApiError::SequenceGap { .. } => (StatusCode::CONFLICT, "sequence_gap"),
            ApiError::SequenceFork { .. } => (StatusCode::CONFLICT, "sequence_fork"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::Refused { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Upstream { status, code, .. } => (*status, code),
        }
    }

    /// A database failure: logged in full here, answered without details.
    pub fn database(error: &sqlx::Error) -> ApiError {
        if matches!(error, sqlx::Error::PoolTimedOut) {
            tracing::warn!(%error, "no database connection in time");
            ApiError::Unavailable
        } else {
            tracing::error!(%error, "database error");
            ApiError::Internal
        }
    }
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
    /// `409 sequence_gap` and `sequence_fork` only: the seq the cloud expects next (the
    /// protocol's `SequenceGap`).
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_seq: Option<u64>,
    /// `409 sequence_fork` only: the first seq the cloud holds with other content.
    #[serde(skip_serializing_if = "Option::is_none")]
    fork_seq: Option<u64>,
    /// `409` conflicts only: extra fields (see [`ApiError::Conflict`]).
    #[serde(flatten)]
    details: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let (expected_seq, fork_seq) = match &self {
            ApiError::SequenceGap { expected_seq, .. } => (Some(*expected_seq), None),
            ApiError::SequenceFork {
                expected_seq,
                fork_seq,
            } => (Some(*expected_seq), Some(*fork_seq)),
            _ => (None, None),
        };
        let details = match &self {
            ApiError::Conflict {
                details: Some(serde_json::Value::Object(details)),
                ..
            } => details.clone(),
            _ => serde_json::Map::new(),
        };
        let body = ErrorEnvelope {
            error: ErrorBody {
                code,
                message: self.to_string(),
            },
            expected_seq,
            fork_seq,
            details,
        };
        (status, Json(body)).into_response()
    }
}
