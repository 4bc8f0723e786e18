//! Device identity: enrolment (`POST /v1/enroll`), revocation (`POST /v1/devices/{id}/revoke`),
//! request authentication ([`auth`]) and the tokens that start it all ([`tokens`]).
//!
//! Invariants:
//! - enrolment burns the token and creates the device, bound to the token's branch with the
//!   device's public key, in one transaction: of two enrolments racing with one token exactly one
//!   wins (the conditional `UPDATE` re-checks `used_at` after the winner commits);
//! - the device's ingest cursor is created with it, so push always finds a row to lock;
//! - the private key never reaches the cloud; an invalid public key is refused before the token
//!   is touched;
//! - the answer carries the release public key (`releases.public_key`) and the device's channel,
//!   which the box pins: its updates are on from its first start;
//! - enrolment is idempotent for the key that won: the same token with the same public key
//!   within [`ENROLL_RETRY_WINDOW_HOURS`] of its use gets the same identity again (the box
//!   retrying after the answer was lost on the way), any other key is refused.

pub mod auth;
pub mod tokens;

use axum::Json;
use axum::extract::{Path, State};
use sentra_protocol::sync::{EnrollRequest, EnrollResponse};
use serde::Serialize;
use sqlx::PgPool;

use crate::web::{ApiError, JsonBody, now_ms};
use auth::Caller;

/// How long after a token's use its winner may ask again and get the same identity: a box whose
/// answer was lost retries within minutes; a day covers a technician who comes back to it.
pub const ENROLL_RETRY_WINDOW_HOURS: i32 = 24;

/// What enrolment needs: the database and the release public key it hands out.
#[derive(Clone)]
pub struct EnrollState {
    pub db: PgPool,
    pub release_public_key: Option<std::sync::Arc<str>>,
}

/// Longest hostname or version string a device may report; these are for people to read.
pub const MAX_LABEL_LEN: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("public_key: expected 64 hex characters of a valid ed25519 public key")]
    BadPublicKey(#[source] sentra_protocol::auth::AuthError),
    #[error("{field}: expected at most {MAX_LABEL_LEN} characters, no control characters")]
    BadLabel { field: &'static str },
    #[error("enrolment refused")]
    Refused,
    #[error("device {0:?} does not exist")]
    NoSuchDevice(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<DeviceError> for ApiError {
    fn from(error: DeviceError) -> Self {
        match error {
            DeviceError::BadPublicKey(_) => ApiError::BadPublicKey(error.to_string()),
            DeviceError::BadLabel { .. } => ApiError::Invalid(error.to_string()),
            DeviceError::Refused => ApiError::EnrollmentRefused,
            DeviceError::NoSuchDevice(_) => ApiError::NotFound(error.to_string()),
            DeviceError::Db(error) => ApiError::database(&error),
        }
    }
}

/// `POST /v1/enroll`: a one-time token and the device's public key for a device identity.
#[utoipa::path(post, path = "/v1/enroll", tag = "devices", request_body = crate::schemas::EnrollRequest, responses((status = 200, description = "the device identity", body = Object), (status = 401, description = "enrollment_refused: the token is unknown, used or expired", body = crate::schemas::ErrorEnvelope), (status = 429, description = "rate_limited: too many enrolments from this address; Retry-After says when to try again", body = crate::schemas::ErrorEnvelope)))]
pub async fn enroll(
    State(state): State<EnrollState>,
    JsonBody(request): JsonBody<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let db = &state.db;
    sentra_protocol::auth::parse_public_key(&request.public_key)
        .map_err(DeviceError::BadPublicKey)?;
    let public_key = hex::decode(&request.public_key)
        .map_err(|_| DeviceError::BadPublicKey(sentra_protocol::auth::AuthError::BadPublicKey))?;
    for (field, value) in [
        ("hostname", &request.hostname),
        ("version", &request.version),
    ] {
        if value.chars().count() > MAX_LABEL_LEN || value.chars().any(char::is_control) {
            return Err(DeviceError::BadLabel { field }.into());
        }
    }

    // The token as the box's technician typed it, read the shared way (case, hyphens, the old
    // hex form); something that is no token cannot match one.
    let Some(token_hash) = tokens::enrollment_hash(&request.token) else {
        tracing::warn!(hostname = %request.hostname, "enrolment refused: not a token");
        return Err(DeviceError::Refused.into());
    };
    let mut tx = db.begin().await.map_err(DeviceError::Db)?;
    let burnt: Option<(String, String)> = sqlx::query_as(
        "UPDATE enrollment_tokens t SET used_at = now()
         FROM branches b
         WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > now() AND b.id = t.branch_id
         RETURNING t.branch_id, b.name",
    )
    .bind(&token_hash)
    .fetch_optional(&mut *tx)
    .await
    .map_err(DeviceError::Db)?;
    let Some((branch_id, branch_name)) = burnt else {
        // The same box again, its first answer lost on the way: the same identity.
        let again: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT d.id::text, t.branch_id, b.name, d.channel
             FROM enrollment_tokens t
             JOIN devices d ON d.id = t.device_id
             JOIN branches b ON b.id = t.branch_id
             WHERE t.token_hash = $1 AND d.public_key = $2 AND d.revoked_at IS NULL
               AND t.used_at > now() - make_interval(hours => $3)",
        )
        .bind(&token_hash)
        .bind(&public_key)
        .bind(ENROLL_RETRY_WINDOW_HOURS)
        .fetch_optional(&mut *tx)
        .await
        .map_err(DeviceError::Db)?;
        let Some((device_id, branch_id, branch_name, channel)) = again else {
            tracing::warn!(hostname = %request.hostname, "enrolment refused");
            return Err(DeviceError::Refused.into());
        };
        tracing::info!(%device_id, %branch_id, "enrolment repeated by the same key; same identity");
        return Ok(answer(&state, device_id, branch_id, branch_name, channel));
    };
    let (device_id, channel): (String, String) = sqlx::query_as(
        "INSERT INTO devices (id, branch_id, public_key, hostname, version)
         VALUES (gen_random_uuid(), $1, $2, $3, $4)
         RETURNING id::text, channel",
    )
    .bind(&branch_id)
    .bind(public_key)
    .bind(&request.hostname)
    .bind(&request.version)
    .fetch_one(&mut *tx)
    .await
    .map_err(DeviceError::Db)?;
    sqlx::query("UPDATE enrollment_tokens SET device_id = $2::uuid WHERE token_hash = $1")
        .bind(&token_hash)
        .bind(&device_id)
        .execute(&mut *tx)
        .await
        .map_err(DeviceError::Db)?;
    sqlx::query("INSERT INTO device_cursors (device_id, branch_id) VALUES ($1::uuid, $2)")
        .bind(&device_id)
        .bind(&branch_id)
        .execute(&mut *tx)
        .await
        .map_err(DeviceError::Db)?;
    tx.commit().await.map_err(DeviceError::Db)?;
    tracing::info!(%device_id, %branch_id, hostname = %request.hostname, version = %request.version, "device enrolled");
    if state.release_public_key.is_none() {
        tracing::warn!(%device_id, "enrolled without a release key (releases.public_key is not set): this box refuses every update until it has one");
    }
    Ok(answer(&state, device_id, branch_id, branch_name, channel))
}

/// The enrolment answer: the identity, the cloud's time, the release key and the channel.
fn answer(
    state: &EnrollState,
    device_id: String,
    branch_id: String,
    branch_name: String,
    channel: String,
) -> Json<EnrollResponse> {
    Json(EnrollResponse {
        device_id,
        branch_id,
        branch_name,
        server_time_ms: now_ms(),
        release_public_key: state.release_public_key.as_deref().map(str::to_owned),
        channel: Some(channel),
    })
}

#[derive(Debug, Serialize)]
pub struct Revoked {
    pub device_id: String,
    pub branch_id: String,
    pub revoked_at: String,
}

/// `POST /v1/devices/{id}/revoke` (operator token): the device's requests get 401 from now on.
/// Revoking twice keeps the first time.
#[utoipa::path(post, path = "/v1/devices/{id}/revoke", tag = "devices", params(("id" = String, Path, description = "a UUID", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")), responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn revoke(
    State(db): State<PgPool>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    let operator = caller.operator()?;
    let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
        return Err(DeviceError::NoSuchDevice(id).into());
    };
    let row: Option<(String, String, String)> = sqlx::query_as(
        "UPDATE devices SET revoked_at = coalesce(revoked_at, now())
         WHERE id = $1::uuid
         RETURNING id::text, branch_id,
                   to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
    )
    .bind(uuid.hyphenated().to_string())
    .fetch_optional(&db)
    .await
    .map_err(DeviceError::Db)?;
    let (device_id, branch_id, revoked_at) = row.ok_or(DeviceError::NoSuchDevice(id))?;
    tracing::warn!(%device_id, %branch_id, by = %operator.name, "device revoked");
    Ok(Json(Revoked {
        device_id,
        branch_id,
        revoked_at,
    }))
}
