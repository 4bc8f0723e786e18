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
//!   retrying after the answer was lost on the way), any other key is refused;
//! - an enrolment that names the device it `replaces` (a dead box of the same branch) retires
//!   that device in the same transaction: revoked (its signed calls get 401 from the commit on),
//!   `replaced_by` the new one, each device replaced at most once. A device of another branch, an
//!   unknown one or one already replaced refuses the enrolment whole, the token unused;
//! - every box but a branch's first gets a number series of its own (`devices.number_series`,
//!   unique in the branch), so no two boxes of a branch issue the same invoice number.

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
    #[error("replaces: {0:?} is not a device id (a UUID)")]
    BadReplaces(String),
    #[error(
        "replaces: device {0} is not enrolled in this cloud; check the id (`sentra-cloud devices list` or the fleet page)"
    )]
    UnknownPredecessor(String),
    #[error(
        "replaces: device {device} belongs to another branch than the token's {branch}; a box can only succeed a box of its own branch"
    )]
    ForeignPredecessor { device: String, branch: String },
    #[error(
        "replaces: device {device} was already replaced by device {by} at {at}; if that box never came up, enrol with --replaces {by}"
    )]
    AlreadyReplaced {
        device: String,
        by: String,
        at: String,
    },
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
            DeviceError::BadReplaces(_) => ApiError::Invalid(error.to_string()),
            DeviceError::UnknownPredecessor(_) => ApiError::Refused {
                code: "unknown_device",
                message: error.to_string(),
            },
            DeviceError::ForeignPredecessor { .. } => ApiError::Refused {
                code: "foreign_device",
                message: error.to_string(),
            },
            DeviceError::AlreadyReplaced { .. } => ApiError::Conflict {
                code: "already_replaced",
                message: error.to_string(),
                details: None,
            },
            DeviceError::Db(error) => ApiError::database(&error),
        }
    }
}

/// `POST /v1/enroll`: a one-time token and the device's public key for a device identity; with
/// `replaces`, the identity of a successor to a dead box of the same branch.
#[utoipa::path(post, path = "/v1/enroll", tag = "devices", request_body = crate::schemas::EnrollRequest, responses((status = 200, description = "the device identity", body = Object), (status = 401, description = "enrollment_refused: the token is unknown, used or expired", body = crate::schemas::ErrorEnvelope), (status = 409, description = "already_replaced: the device named in replaces already has a successor (the token is not used)", body = crate::schemas::ErrorEnvelope), (status = 422, description = "unknown_device or foreign_device: replaces names no device, or one of another branch (the token is not used)", body = crate::schemas::ErrorEnvelope), (status = 429, description = "rate_limited: too many enrolments from this address; Retry-After says when to try again", body = crate::schemas::ErrorEnvelope)))]
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
    let replaces = match &request.replaces {
        None => None,
        Some(raw) => Some(
            uuid::Uuid::parse_str(raw)
                .map_err(|_| DeviceError::BadReplaces(raw.chars().take(64).collect()))?
                .hyphenated()
                .to_string(),
        ),
    };

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
        let again: Option<Again> = sqlx::query_as(
            "SELECT d.id::text, t.branch_id, b.name, d.channel, d.replaces::text, d.number_series
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
        let Some(again) = again else {
            tracing::warn!(hostname = %request.hostname, "enrolment refused");
            return Err(DeviceError::Refused.into());
        };
        tracing::info!(device_id = %again.0, branch_id = %again.1, "enrolment repeated by the same key; same identity");
        return Ok(answer(&state, again));
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
    if let Some(old) = &replaces {
        retire(&mut tx, old, &device_id, &branch_id).await?;
    }
    let number_series = assign_number_series(&mut tx, &device_id, &branch_id).await?;
    tx.commit().await.map_err(DeviceError::Db)?;
    tracing::info!(%device_id, %branch_id, hostname = %request.hostname, version = %request.version, replaces = replaces.as_deref().unwrap_or(""), number_series = number_series.as_deref().unwrap_or(""), "device enrolled");
    if state.release_public_key.is_none() {
        tracing::warn!(%device_id, "enrolled without a release key (releases.public_key is not set): this box refuses every update until it has one");
    }
    Ok(answer(
        &state,
        (
            device_id,
            branch_id,
            branch_name,
            channel,
            replaces,
            number_series,
        ),
    ))
}

/// A device's enrolment as answered: id, branch, branch name, channel, the device it replaces,
/// its number series.
type Again = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// Retires `old` in favour of `new` (the enrolment's transaction): `old` must be a device of
/// `branch` without a successor. Revoked from the commit on (a device revoked before, as a dead
/// box may have been, stays revoked from then), and the two name each other.
async fn retire(
    tx: &mut sqlx::PgConnection,
    old: &str,
    new: &str,
    branch: &str,
) -> Result<(), DeviceError> {
    let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT branch_id, replaced_by::text,
                to_char(replaced_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
         FROM devices WHERE id = $1::uuid FOR UPDATE",
    )
    .bind(old)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((old_branch, replaced_by, replaced_at)) = row else {
        return Err(DeviceError::UnknownPredecessor(old.to_owned()));
    };
    if old_branch != branch {
        tracing::warn!(device = %old, token_branch = %branch, "enrolment refused: replaces a device of another branch");
        return Err(DeviceError::ForeignPredecessor {
            device: old.to_owned(),
            branch: branch.to_owned(),
        });
    }
    if let Some(by) = replaced_by {
        return Err(DeviceError::AlreadyReplaced {
            device: old.to_owned(),
            by,
            at: replaced_at.unwrap_or_default(),
        });
    }
    // Waits for a push of the old device that holds its cursor: that push is in before the
    // revocation (and so in the successor's snapshot); one that comes after finds the device
    // revoked when it moves the cursor, and changes nothing (`ingest`).
    sqlx::query("SELECT 1 FROM device_cursors WHERE device_id = $1::uuid FOR UPDATE")
        .bind(old)
        .fetch_optional(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE devices SET revoked_at = coalesce(revoked_at, now()), replaced_by = $2::uuid,
                replaced_at = now()
         WHERE id = $1::uuid",
    )
    .bind(old)
    .bind(new)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE devices SET replaces = $2::uuid WHERE id = $1::uuid")
        .bind(new)
        .bind(old)
        .execute(&mut *tx)
        .await?;
    tracing::warn!(device = %old, successor = %new, %branch, "device replaced and revoked");
    Ok(())
}

/// How many random series enrolment tries before giving up (a branch would need hundreds of
/// thousands of boxes for one try in two to collide).
const SERIES_TRIES: usize = 16;

/// Gives `device` a number series of its own unless it is its branch's first device. A series is
/// unique among the branch's devices (a unique index) and never appears in a number the branch
/// already holds (a restored store makes up its own series; one of those is not handed out).
async fn assign_number_series(
    tx: &mut sqlx::PgConnection,
    device: &str,
    branch: &str,
) -> Result<Option<String>, DeviceError> {
    let first: bool = sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM devices WHERE branch_id = $1 AND id <> $2::uuid)",
    )
    .bind(branch)
    .bind(device)
    .fetch_one(&mut *tx)
    .await?;
    if first {
        return Ok(None);
    }
    for _ in 0..SERIES_TRIES {
        let mut random = [0u8; sentra_protocol::successor::SERIES_LEN];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut random);
        let series = sentra_protocol::successor::number_series(random);
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE branch_id = $1 AND number_series = $2)
                 OR EXISTS (SELECT 1 FROM document_numbers
                             WHERE branch_id = $1 AND strpos(number, '-' || $2 || '-') > 0)",
        )
        .bind(branch)
        .bind(&series)
        .fetch_one(&mut *tx)
        .await?;
        if taken {
            continue;
        }
        sqlx::query("UPDATE devices SET number_series = $2 WHERE id = $1::uuid")
            .bind(device)
            .bind(&series)
            .execute(&mut *tx)
            .await?;
        return Ok(Some(series));
    }
    tracing::error!(%branch, "no free number series after {SERIES_TRIES} tries");
    Err(DeviceError::Db(sqlx::Error::Protocol(
        "no free number series".into(),
    )))
}

/// The enrolment answer: the identity, the cloud's time, the release key and the channel, the
/// device it replaces and its number series.
fn answer(
    state: &EnrollState,
    (device_id, branch_id, branch_name, channel, replaces, number_series): Again,
) -> Json<EnrollResponse> {
    Json(EnrollResponse {
        device_id,
        branch_id,
        branch_name,
        server_time_ms: now_ms(),
        release_public_key: state.release_public_key.as_deref().map(str::to_owned),
        channel: Some(channel),
        replaces,
        number_series,
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
