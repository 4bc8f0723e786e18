//! The HTTP surface: the router every endpoint is mounted on, the state handlers share, the JSON
//! error envelope (`{"error": {"code", "message"}}`, CONTRACT.md) every failure is answered with,
//! and the server-time header on every answer.
//!
//! Invariants:
//! - an error reaches a client only as an [`ApiError`], whose status and code are chosen by one
//!   exhaustive match, so a new kind of error forces a decision about both;
//! - every response, errors and 404s included, carries [`SERVER_TIME_HEADER`] with the server's
//!   Unix milliseconds, so a device can measure its clock skew from any answer;
//! - every `/v1` route but `/v1/enroll` sits behind [`auth::authenticate`]; which caller a route
//!   accepts (device, operator token) is decided in its handler through [`auth::Caller`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, middleware};
use redis::aio::ConnectionManager;
use sentra_protocol::sync::{MAX_PUSH_BYTES, SERVER_TIME_HEADER};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;

use crate::devices::{self, auth};
use crate::{blobs, booking, changes, fleet, health, ingest, master, releases, shared};

/// What handlers share, behind one `Arc`: axum clones the state for every request (and again
/// for the authentication middleware), and one reference count is all that clone should cost.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The handles [`AppState`] shares: pools, settings, caches.
pub struct Services {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub booking: booking::Booking,
    pub fleet: crate::config::FleetConfig,
    /// API tokens this replica recently found valid.
    pub tokens: Arc<devices::auth::TokenCache>,
    /// Customer notifications: what ingest needs to schedule service reminders.
    pub notify: Arc<crate::notify::Settings>,
    /// The photo store; None when it could not be opened at start (its routes answer 503).
    pub blobs: Option<crate::blobs::Blobs>,
}

/// Enrolments a minute from one peer address. A token is 256 random bits, so the throttle is not
/// what stops guessing; it keeps one address from making the replica hash and look up tokens
/// without end. Behind a load balancer every client shares the balancer's address, so this is
/// also the replica's rate for the door: a burst of 300 lets a provisioning day (or the fleet
/// test's 120 boxes at once) through.
const ENROLL_PER_MINUTE: u32 = 300;

/// Fleet sign-ins (login page, login links) a minute from one peer address.
const FLEET_LOGIN_PER_MINUTE: u32 = 30;

pub fn router(state: AppState) -> Router {
    // A per-peer-address throttle in front of a route: past the allowance `429 rate_limited`
    // with `Retry-After`, and the handler is not called.
    let throttled = |per_minute| {
        middleware::from_fn_with_state(
            sentra_serve::Throttle::per_minute(per_minute),
            sentra_serve::throttle,
        )
    };
    let authenticated = Router::new()
        .route("/v1/sync/push", post(ingest::push))
        .route("/v1/sync/pull", get(changes::pull))
        .route("/v1/sync/calendar", get(booking::offline::calendar))
        .route("/v1/devices/{id}/revoke", post(devices::revoke))
        .route("/v1/branches/{branch}/parts/{sku}", put(master::put_part))
        .route(
            "/v1/branches/{branch}/mechanics/{id}",
            put(master::put_mechanic),
        )
        .route("/v1/branches/{branch}/assets/{id}", put(master::put_asset))
        .route(
            "/v1/branches/{branch}/customers/{id}",
            get(shared::get_customer).patch(shared::patch_customer),
        )
        .route(
            "/v1/branches/{branch}/vehicles/{id}",
            get(shared::get_vehicle).patch(shared::patch_vehicle),
        )
        .route(
            "/v1/branches/{branch}/documents/{record}/{id}",
            get(shared::get_document).put(shared::put_document),
        )
        .route("/v1/availability", get(booking::http::availability))
        .route("/v1/bookings", post(booking::http::hold))
        .route("/v1/bookings/{id}", get(booking::http::get))
        .route("/v1/bookings/{id}/confirm", post(booking::http::confirm))
        .route("/v1/bookings/{id}/cancel", post(booking::http::cancel))
        .route("/v1/bookings/{id}/complete", post(booking::http::complete))
        .route("/v1/waitlist", post(booking::waitlist::join))
        .route(
            "/v1/customers/{id}",
            put(crate::identity::owner::put_customer).get(crate::identity::owner::get_customer),
        )
        .route(
            "/v1/customers/{id}/identity",
            post(crate::identity::post_check).get(crate::identity::get_check),
        )
        .route("/v1/waitlist/{id}", get(booking::waitlist::get))
        .route("/v1/blobs/{sha256}", get(blobs::get))
        .route("/v1/blobs/{sha256}/uploads", post(blobs::start))
        .route(
            "/v1/blobs/{sha256}/uploads/{id}/parts/{n}",
            put(blobs::put_part),
        )
        .route(
            "/v1/blobs/{sha256}/uploads/{id}/complete",
            post(blobs::complete),
        )
        .route("/v1/devices/heartbeat", post(fleet::heartbeat))
        .route("/v1/devices/{id}/channel", put(fleet::put_channel))
        .route("/v1/fleet", get(fleet::get_fleet))
        .route("/v1/fleet/devices/{id}", get(fleet::get_device))
        .route("/v1/fleet/rollouts/{id}", get(fleet::get_rollout))
        .route(
            "/v1/fleet/rollouts/{id}/{action}",
            post(fleet::post_rollout_action),
        )
        .route(
            "/v1/fleet/login-links",
            post(fleet::page::make_login_link).route_layer(throttled(FLEET_LOGIN_PER_MINUTE)),
        )
        .route(
            "/v1/releases/{version}/manifest",
            get(releases::get_manifest),
        )
        .route(
            "/v1/releases/{version}/artifact",
            get(releases::get_artifact),
        )
        .route("/v1/openapi.json", get(crate::openapi::serve))
        // Prometheus scrapes with an operator token (`authorization` in the scrape config): the
        // counters and the fleet's gauges say how the business runs and are nobody else's.
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        // The fleet page authenticates by operator token or its own session cookie.
        .route("/fleet", get(fleet::page::overview))
        .route("/fleet/devices/{id}", get(fleet::page::device))
        .route("/fleet/rollouts/{id}", get(fleet::page::rollout))
        .route(
            "/fleet/rollouts/{id}/{action}",
            post(fleet::page::rollout_action),
        )
        .route(
            "/fleet/login",
            get(fleet::page::login_link)
                .post(fleet::page::login)
                .route_layer(throttled(FLEET_LOGIN_PER_MINUTE)),
        )
        .route("/fleet/logout", post(fleet::page::logout))
        .route(
            "/v1/enroll",
            post(devices::enroll).route_layer(throttled(ENROLL_PER_MINUTE)),
        )
        // Verified by its HMAC, not by the device or token middleware.
        .route("/v1/payments/webhook", post(booking::payments::webhook))
        .merge(authenticated)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(stamp_server_time))
        .layer(DefaultBodyLimit::max(MAX_PUSH_BYTES))
        .with_state(state)
}

/// `GET /metrics` (operator token): this replica's booking counters and the fleet's gauges (from PostgreSQL; if
/// it does not answer, `sentra_fleet_scrape_ok 0` says so and the rest is still served).
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: auth::Caller,
) -> Result<Response, ApiError> {
    caller.operator()?;
    let mut text = state.booking.metrics.render();
    text.push_str(&crate::notify::METRICS.render());
    match fleet::metrics::render(&state.db, state.fleet.offline_after).await {
        Ok(fleet) => {
            text.push_str(&fleet);
            text.push_str("# HELP sentra_fleet_scrape_ok 1 when the fleet gauges could be read from PostgreSQL.\n# TYPE sentra_fleet_scrape_ok gauge\nsentra_fleet_scrape_ok 1\n");
        }
        Err(error) => {
            tracing::warn!(%error, "fleet metrics: PostgreSQL did not answer");
            text.push_str("# HELP sentra_fleet_scrape_ok 1 when the fleet gauges could be read from PostgreSQL.\n# TYPE sentra_fleet_scrape_ok gauge\nsentra_fleet_scrape_ok 0\n");
        }
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response())
}

/// The server's clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

async fn stamp_server_time(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(SERVER_TIME_HEADER, HeaderValue::from(now_ms()));
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("no such path: {}", request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
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
    /// `409 sequence_gap` only: the seq the cloud expects next (the protocol's `SequenceGap`).
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_seq: Option<u64>,
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
        let expected_seq = match &self {
            ApiError::SequenceGap { expected_seq, .. } => Some(*expected_seq),
            _ => None,
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
            details,
        };
        (status, Json(body)).into_response()
    }
}
