//! The boxes' backups in the object store: `POST /v1/backups` records a backup a device is about
//! to upload (`sentra_protocol::backup::BackupRecord`), after which the photo upload protocol
//! takes its bytes (`start` accepts a digest a backup record of the same device declares, at the
//! declared size). `sentra-cloud backups list` shows them, `sentra-cloud backups get` fetches
//! one (still encrypted with its box's store key, which the cloud never has).
//!
//! Invariants: a device uploads only what it recorded, at the size it recorded, and records at
//! most its own backups; the cloud keeps each device's newest
//! [`KEPT_PER_DEVICE`](sentra_protocol::backup::KEPT_PER_DEVICE) records by `taken_at`, and the
//! object of a record it drops is deleted only when nothing else (an inspection's photo, another
//! record) names the same digest.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sentra_protocol::backup::{BackupRecord, KEPT_PER_DEVICE};
use sqlx::PgPool;

use super::{Blobs, BlobsState, SweepError, blobs, db};
use crate::devices::auth::{Caller, DeviceIdentity};
use crate::web::{ApiError, JsonBody, now_ms};

/// `POST /v1/backups` (device): record a backup before uploading it.
#[utoipa::path(post, path = "/v1/backups", tag = "blobs", request_body = crate::schemas::BackupRecord,
    responses((status = 201, description = "recorded (again: the same answer); upload it through /v1/blobs/{sha256}/uploads", body = Object),
        (status = 422, description = "a field out of its bounds", body = crate::schemas::ErrorEnvelope)),
    security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn record(
    State(state): State<BlobsState>,
    caller: Caller,
    JsonBody(body): JsonBody<BackupRecord>,
) -> Result<Response, ApiError> {
    let device = caller.device()?;
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    let taken_ms = body.check(now).map_err(ApiError::Invalid)?;
    let store = blobs(&state)?;
    let size = i64::try_from(body.size).map_err(|_| ApiError::Invalid("size".into()))?;
    // The same digest recorded again (a box that lost the answer) keeps its first record.
    sqlx::query(
        "INSERT INTO device_backups (device_id, branch_id, digest, size, taken_at, events)
         VALUES ($1::uuid, $2, $3, $4, to_timestamp($5::float8 / 1000), $6)
         ON CONFLICT (device_id, digest) DO NOTHING",
    )
    .bind(&device.id)
    .bind(&device.branch_id)
    .bind(&body.sha256)
    .bind(size)
    .bind(taken_ms as f64)
    .bind(body.events)
    .execute(&state.db)
    .await
    .map_err(db)?;
    let dropped = prune(&state.db, store, device)
        .await
        .map_err(|error| error.into_api())?;
    if dropped > 0 {
        tracing::info!(device = %device.id, dropped, "older backups of the device deleted");
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"state": "recorded", "sha256": body.sha256})),
    )
        .into_response())
}

/// Whether `device` recorded a backup `digest` of exactly `size` bytes (so may upload it).
pub(super) async fn recorded(
    db: &PgPool,
    device: &DeviceIdentity,
    digest: &str,
    size: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM device_backups
                        WHERE device_id = $1::uuid AND digest = $2 AND size = $3)",
    )
    .bind(&device.id)
    .bind(digest)
    .bind(size)
    .fetch_one(db)
    .await
}

/// Drops the device's records beyond its newest [`KEPT_PER_DEVICE`], with their objects and open
/// uploads where nothing else names the digest. Returns how many records it dropped.
async fn prune(db: &PgPool, store: &Blobs, device: &DeviceIdentity) -> Result<usize, SweepError> {
    let dropped: Vec<String> = sqlx::query_scalar(
        "DELETE FROM device_backups
         WHERE device_id = $1::uuid AND digest IN (
             SELECT digest FROM device_backups WHERE device_id = $1::uuid
             ORDER BY taken_at DESC, digest DESC OFFSET $2)
         RETURNING digest",
    )
    .bind(&device.id)
    .bind(i64::try_from(KEPT_PER_DEVICE).unwrap_or(i64::MAX))
    .fetch_all(db)
    .await?;
    for digest in &dropped {
        let uploads: Vec<String> = sqlx::query_scalar(
            "SELECT id::text FROM blob_uploads WHERE device_id = $1::uuid AND digest = $2",
        )
        .bind(&device.id)
        .bind(digest)
        .fetch_all(db)
        .await?;
        for upload in uploads {
            super::forget_upload(db, store, &upload, None).await?;
        }
        let mut tx = db.begin().await?;
        let gone: Option<String> = sqlx::query_scalar(
            "DELETE FROM blobs WHERE digest = $1
               AND NOT EXISTS (SELECT 1 FROM device_backups WHERE digest = $1)
               AND NOT EXISTS (SELECT 1 FROM inspections
                               WHERE photos ? $1 OR signature->>'digest' = $1)
             RETURNING digest",
        )
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
        if gone.is_some() {
            match store.store.delete(&store.object(digest)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        tx.commit().await?;
    }
    Ok(dropped.len())
}

/// One backup as `sentra-cloud backups list` shows it.
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
pub struct BackupRow {
    pub device_id: String,
    pub branch_id: String,
    pub sha256: String,
    pub size: i64,
    /// RFC 3339, UTC.
    pub taken_at: String,
    pub events: i64,
    /// Whether the whole backup is in the object store (else its upload is under way or lost).
    pub stored: bool,
}

/// Every recorded backup, newest first; of one branch with `branch`.
pub async fn list(db: &PgPool, branch: Option<&str>) -> Result<Vec<BackupRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT b.device_id::text AS device_id, b.branch_id, b.digest AS sha256, b.size,
                to_char(b.taken_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS taken_at,
                b.events, EXISTS (SELECT 1 FROM blobs s WHERE s.digest = b.digest) AS stored
         FROM device_backups b
         WHERE $1::text IS NULL OR b.branch_id = $1
         ORDER BY b.taken_at DESC, b.digest",
    )
    .bind(branch)
    .fetch_all(db)
    .await
}

impl Blobs {
    /// Copies the stored object `digest` into `out` (for the command line: the writes block),
    /// checking its SHA-256 on the way; the bytes written. A part of it is written before a
    /// mismatch is found: write to a temporary file.
    pub async fn fetch_into(
        &self,
        digest: &str,
        out: &mut impl std::io::Write,
    ) -> anyhow::Result<u64> {
        use futures_util::TryStreamExt as _;
        use sha2::Digest as _;
        let mut stream = self.store.get(&self.object(digest)).await?.into_stream();
        let (mut hash, mut written) = (sha2::Sha256::new(), 0u64);
        while let Some(chunk) = stream.try_next().await? {
            hash.update(&chunk);
            out.write_all(&chunk)?;
            written += chunk.len() as u64;
        }
        out.flush()?;
        let got = hex::encode(hash.finalize());
        anyhow::ensure!(
            got == digest,
            "the stored object's SHA-256 is {got}, not {digest}: the store is damaged"
        );
        Ok(written)
    }
}
