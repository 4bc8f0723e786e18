//! The HTTP surface: the router every endpoint is mounted on, the state handlers share, and the
//! JSON error envelope (`{"error": {"code", "message"}}`, CONTRACT.md) every failure is answered
//! with.
//!
//! Invariant: an error reaches a client only as an [`ApiError`], whose status and code are chosen
//! by one exhaustive match, so a new kind of error forces a decision about both.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;

use crate::health;

/// What handlers share. Cheap to clone: both fields are handles to pools.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub redis: ConnectionManager,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state)
}

/// Every error a client can get.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A dependency (PostgreSQL, Redis) does not answer; the message says which and why.
    #[error("{0}")]
    NotReady(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
        }
    }
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = ErrorEnvelope {
            error: ErrorBody {
                code,
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}
