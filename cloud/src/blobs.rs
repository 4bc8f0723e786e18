//! Inspection photos (issue 8, cloud half): resumable, content-addressed uploads from the
//! branches into the object store (`object_store`: the local filesystem by default, S3 or any
//! S3-compatible store by `blobs.url`).
//!
//! The protocol, every call signed by the device like sync:
//! - `POST /v1/blobs/{sha256}/uploads` `{"size"}` → `{"state": "stored"}` when the cloud has the
//!   photo already, else `{"state": "uploading", "upload_id", "parts": [{"n", "size"}]}` with the
//!   parts it holds (a device that lost its upload id asks again and gets the same one);
//! - `PUT /v1/blobs/{sha256}/uploads/{id}/parts/{n}`: the part's raw bytes (≤ 1 MiB, the signed
//!   body limit), staged as its own object `uploads/<id>/<n>`. The declared size bounds what is
//!   staged: `n` is below `max(1, ceil(size / MIN_PART_BYTES))` (a box's parts are at least
//!   [`MIN_PART_BYTES`], the last excepted), a part of a non-empty photo is not empty, and the
//!   parts staged never add up to more than the size; anything else is `422 invalid` and stages
//!   nothing;
//! - `POST /v1/blobs/{sha256}/uploads/{id}/complete`: the parts, contiguous from 0, are read in
//!   order, hashed and written through `put_multipart` to `staging/<id>`; only when their size
//!   and SHA-256 are the digest's is it renamed to `blobs/<sha256>` and recorded, otherwise the
//!   upload is dropped (`422 digest_mismatch`) and the device starts again;
//! - `GET /v1/blobs/{sha256}` (operator token, or a device of the branch that sent it): the photo.
//!
//! Abandoned uploads are swept: every start, part and complete sets the upload's `touched_at`, and
//! each replica's [`sweep`] deletes, every [`SWEEP_INTERVAL`], the uploads untouched for
//! [`UPLOAD_ABANDONED_AFTER`] with their staged objects. A box retries within minutes while it is
//! online; one that comes back later starts again and gets a new upload id.
//!
//! Invariants: `blobs/<sha256>` only ever holds bytes whose SHA-256 is that digest; a device may
//! upload only photos an inspection of its own branch references (the event arrives first, so the
//! cloud knows what the photo is for and nobody uses it as free storage); an upload stages at most
//! its declared size, so what one device can park in the store is bounded by
//! [`MAX_BLOB_BYTES`] per photo it was allowed to send, for at most [`UPLOAD_ABANDONED_AFTER`]
//! after it stopped; a part is staged while its upload's row is locked, and an upload is
//! forgotten the same way, so a part never lands in an upload being deleted. The staged parts are
//! objects and rows, not an `object_store` multipart handle, because such a handle cannot be
//! resumed from another process or replica.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::devices::auth::{Caller, DeviceIdentity};
use crate::web::{ApiError, JsonBody};

pub mod backups;

/// What the photo handlers need of the application state.
#[derive(Clone)]
pub struct BlobsState {
    pub db: PgPool,
    /// The photo store; None when it could not be opened at start (its routes answer 503).
    pub blobs: Option<Blobs>,
}

/// The configured object store and the prefix every object lives under.
#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

/// The largest photo the cloud takes: far above a tablet's photo, far below a mistake.
pub const MAX_BLOB_BYTES: u64 = 256 * 1024 * 1024;

/// The smallest part a box sends: its `blobs.part_bytes` (edge.toml) is at least 1024, and every
/// part of a photo but the last is exactly `part_bytes` long. So an upload of `size` bytes has at
/// most [`parts_allowed`]`(size)` parts, numbered from 0, and a higher number is refused before
/// anything is staged. Raising the box's lower bound is safe; lowering it below this needs this
/// constant lowered first (in the cloud, which must be deployed before the boxes).
pub const MIN_PART_BYTES: u64 = 1024;

/// How many parts an upload of `size` bytes may have: `max(1, ceil(size / MIN_PART_BYTES))`, so
/// an empty photo has its one (empty) part.
pub fn parts_allowed(size: u64) -> u64 {
    size.div_ceil(MIN_PART_BYTES).max(1)
}

/// An upload nobody touched (start, part, complete) for this long is abandoned and swept with
/// its staged objects. A box retries a failed part within minutes while it is online, so two
/// days only ever catches a box that went away (replaced, offline for days, its photo deleted);
/// when it comes back it starts again, and `start` hands it a new upload id.
pub const UPLOAD_ABANDONED_AFTER: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// How often each replica sweeps abandoned uploads (and once at start). Sweeping is idempotent,
/// so replicas need not agree on who does it.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, thiserror::Error)]
#[error("blob store {url}: {source}")]
pub struct OpenError {
    url: String,
    #[source]
    source: object_store::Error,
}

impl Blobs {
    /// Open the store at `url`. S3 (and other remote stores) take their settings from the
    /// environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`…
    /// (only with the `s3` cargo feature; without it an `s3://` URL is refused here).
    pub fn open(url: &url::Url) -> Result<Blobs, OpenError> {
        let options = std::env::vars()
            .filter(|(key, _)| key.starts_with("AWS_"))
            .map(|(key, value)| (key.to_ascii_lowercase(), value));
        let fail = |source| OpenError {
            url: url.to_string(),
            source,
        };
        if url.scheme() == "file" {
            // The local store needs its root to exist; make it on first start.
            std::fs::create_dir_all(url.path()).map_err(|e| {
                fail(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                })
            })?;
        }
        let (store, prefix) = object_store::parse_url_opts(url, options).map_err(fail)?;
        Ok(Blobs {
            store: Arc::from(store),
            prefix,
        })
    }

    fn object(&self, digest: &str) -> ObjectPath {
        self.prefix.child("blobs").child(digest)
    }

    /// Where the parts of `upload` are staged: `uploads/<id>/<n>`.
    fn parts(&self, upload: &str) -> ObjectPath {
        self.prefix.child("uploads").child(upload)
    }

    fn part(&self, upload: &str, n: u32) -> ObjectPath {
        self.parts(upload).child(n.to_string())
    }

    fn staging(&self, upload: &str) -> ObjectPath {
        self.prefix.child("staging").child(upload)
    }
}

fn store_error(error: &object_store::Error) -> ApiError {
    tracing::error!(%error, "blob store");
    ApiError::NotReady("the photo store is not answering; retry later".into())
}

/// A SHA-256 in lowercase hex, or 422.
fn digest(raw: &str) -> Result<String, ApiError> {
    if raw.len() == 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::Invalid(format!(
            "digest {raw:?}: expected the photo's SHA-256 as 64 lowercase hex digits"
        )))
    }
}

fn upload_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("no upload {raw:?}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartUpload {
    pub size: u64,
}

#[derive(Debug, Serialize)]
pub struct Part {
    pub n: u32,
    pub size: u32,
}

#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UploadState {
    /// The cloud has the whole photo.
    Stored { digest: String, size: u64 },
    /// Send the parts not listed, then complete.
    Uploading { upload_id: String, parts: Vec<Part> },
}

fn db(error: sqlx::Error) -> ApiError {
    ApiError::database(&error)
}

/// Is the photo referenced by an inspection of this branch (photos or signature)?
async fn referenced(state: &BlobsState, branch: &str, digest: &str) -> Result<bool, ApiError> {
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM inspections WHERE branch_id = $1
                          AND (photos ? $2 OR signature->>'digest' = $2))",
    )
    .bind(branch)
    .bind(digest)
    .fetch_one(&state.db)
    .await
    .map_err(db)
}

fn blobs(state: &BlobsState) -> Result<&Blobs, ApiError> {
    state.blobs.as_ref().ok_or_else(|| {
        ApiError::NotReady(
            "the photo store could not be opened at start (see the server's log and blobs.url)"
                .into(),
        )
    })
}

/// `POST /v1/blobs/{sha256}/uploads`.
#[utoipa::path(post, path = "/v1/blobs/{sha256}/uploads", tag = "blobs", params(("sha256" = String, Path, description = "the photo's SHA-256, lowercase hex", pattern = "^[0-9a-f]{64}$")), request_body = crate::schemas::StartUpload, responses((status = 200, description = "done", body = Object), (status = 201, description = "upload started", body = Object), (status = 409, description = "the photo is already stored, or another upload of it is open", body = crate::schemas::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn start(
    State(state): State<BlobsState>,
    caller: Caller,
    UrlPath(raw): UrlPath<String>,
    JsonBody(body): JsonBody<StartUpload>,
) -> Result<Response, ApiError> {
    let device = caller.device()?;
    let digest = digest(&raw)?;
    let store = blobs(&state)?;
    if body.size > MAX_BLOB_BYTES {
        return Err(ApiError::Invalid(format!(
            "size {}: a photo may be at most {MAX_BLOB_BYTES} bytes",
            body.size
        )));
    }
    let size = i64::try_from(body.size).expect("bounded by MAX_BLOB_BYTES");
    let stored: Option<i64> = sqlx::query_scalar("SELECT size FROM blobs WHERE digest = $1")
        .bind(&digest)
        .fetch_optional(&state.db)
        .await
        .map_err(db)?;
    if let Some(stored) = stored {
        return Ok(axum::Json(UploadState::Stored {
            digest,
            size: u64::try_from(stored).unwrap_or(0),
        })
        .into_response());
    }
    if !referenced(&state, &device.branch_id, &digest).await?
        && !backups::recorded(&state.db, device, &digest, size)
            .await
            .map_err(db)?
    {
        return Err(ApiError::Conflict {
            code: "not_referenced",
            message: format!(
                "no inspection of branch {} references photo {digest}, and this device recorded no backup of it at {size} bytes; send the inspection (or POST /v1/backups) first",
                device.branch_id
            ),
            details: None,
        });
    }
    // The device's open upload for this photo, or a new one; a changed size starts over, and the
    // parts staged for the old size go with it (deleting only the rows would leave their
    // objects where no sweep finds them).
    let stale: Option<String> = sqlx::query_scalar(
        "SELECT id::text FROM blob_uploads WHERE device_id = $1::uuid AND digest = $2 AND size <> $3",
    )
    .bind(&device.id)
    .bind(&digest)
    .bind(size)
    .fetch_optional(&state.db)
    .await
    .map_err(db)?;
    if let Some(stale) = stale {
        forget_upload(&state.db, store, &stale, None)
            .await
            .map_err(|error| error.into_api())?;
    }
    // Deleted again in the transaction only for a start with another size racing this one (a
    // device sends one at a time): the insert below must never resize an upload with parts.
    let mut tx = state.db.begin().await.map_err(db)?;
    sqlx::query(
        "DELETE FROM blob_uploads WHERE device_id = $1::uuid AND digest = $2 AND size <> $3",
    )
    .bind(&device.id)
    .bind(&digest)
    .bind(size)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let id: String = sqlx::query_scalar(
        "INSERT INTO blob_uploads (id, branch_id, device_id, digest, size)
         VALUES (gen_random_uuid(), $1, $2::uuid, $3, $4)
         ON CONFLICT (device_id, digest) DO UPDATE SET size = EXCLUDED.size, touched_at = now()
         RETURNING id::text",
    )
    .bind(&device.branch_id)
    .bind(&device.id)
    .bind(&digest)
    .bind(size)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let parts: Vec<(i32, i32)> = sqlx::query_as(
        "SELECT n, size FROM blob_upload_parts WHERE upload_id = $1::uuid ORDER BY n",
    )
    .bind(&id)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok((
        StatusCode::OK,
        axum::Json(UploadState::Uploading {
            upload_id: id,
            parts: parts
                .into_iter()
                .map(|(n, size)| Part {
                    n: u32::try_from(n).unwrap_or(0),
                    size: u32::try_from(size).unwrap_or(0),
                })
                .collect(),
        }),
    )
        .into_response())
}

/// The upload `id` of `device` for `digest`, with its size; touched (the device is still at
/// it, so the sweep leaves it alone). Being an UPDATE it also locks the row until `db`'s
/// transaction ends: a part staged inside one holds off other parts of the upload and its
/// deletion.
async fn own_upload<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    device: &DeviceIdentity,
    id: uuid::Uuid,
    digest: &str,
) -> Result<i64, ApiError> {
    sqlx::query_scalar(
        "UPDATE blob_uploads SET touched_at = now()
         WHERE id = $1::uuid AND device_id = $2::uuid AND digest = $3
         RETURNING size",
    )
    .bind(id.to_string())
    .bind(&device.id)
    .bind(digest)
    .fetch_optional(executor)
    .await
    .map_err(db)?
    .ok_or_else(|| {
        ApiError::NotFound(format!(
            "no upload {id} of photo {digest} by this device; start one with POST /v1/blobs/{digest}/uploads"
        ))
    })
}

/// `PUT /v1/blobs/{sha256}/uploads/{id}/parts/{n}`: stage one part (sending it again replaces it).
/// `n`'s maximum in the annotation is the highest part number of any upload, that of the largest
/// photo in the smallest parts (`parts_allowed(MAX_BLOB_BYTES) - 1`); utoipa takes only a
/// literal there, and a unit test keeps the two equal.
#[utoipa::path(put, path = "/v1/blobs/{sha256}/uploads/{id}/parts/{n}", tag = "blobs", params(("sha256" = String, Path, description = "the photo's SHA-256, lowercase hex", pattern = "^[0-9a-f]{64}$"), ("id" = String, Path, description = "a UUID", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"), ("n" = u32, Path, description = "the part's number, from 0; below max(1, ceil(size / 1024)) for the upload's declared size", minimum = 0, maximum = 262143)), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, description = "done", body = Object)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn put_part(
    State(state): State<BlobsState>,
    caller: Caller,
    path: Result<UrlPath<(String, String, u32)>, axum::extract::rejection::PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // A part number that is not a number is no such path, in the error envelope.
    let UrlPath((raw, id, n)) =
        path.map_err(|rejection| ApiError::NotFound(rejection.body_text()))?;
    let device = caller.device()?;
    let digest = digest(&raw)?;
    let id = upload_id(&id)?;
    let store = blobs(&state)?;
    let upload = id.to_string();
    // One transaction, the upload's row locked (and touched) from the first statement: the
    // parts of one upload are staged one at a time, so the sum below cannot be raced past the
    // size, and the upload cannot be dropped or swept while a part is staged. Every refusal
    // returns before anything is written; dropping `tx` rolls the touch back.
    let mut tx = state.db.begin().await.map_err(db)?;
    let size = own_upload(&mut *tx, device, id, &digest).await?;
    let declared = u64::try_from(size).unwrap_or(0);
    let allowed = parts_allowed(declared);
    if u64::from(n) >= allowed {
        return Err(ApiError::Invalid(format!(
            "part {n}: a photo of {size} bytes has at most {allowed} part(s), numbered from 0 \
             (every part but the last is at least {MIN_PART_BYTES} bytes)"
        )));
    }
    if body.is_empty() && declared > 0 {
        return Err(ApiError::Invalid(format!(
            "part {n} is empty; every part of a photo of {size} bytes holds at least one byte"
        )));
    }
    let n_db = i32::try_from(n).expect("below parts_allowed(MAX_BLOB_BYTES)");
    let others: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(size), 0)::bigint FROM blob_upload_parts
         WHERE upload_id = $1::uuid AND n <> $2",
    )
    .bind(&upload)
    .bind(n_db)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let staged = others.saturating_add(i64::try_from(body.len()).unwrap_or(i64::MAX));
    if staged > size {
        return Err(ApiError::Invalid(format!(
            "part {n} of {} bytes would stage {staged} bytes of a photo of {size} bytes \
             ({others} staged in its other parts); send each part of the photo once",
            body.len()
        )));
    }
    let len = i32::try_from(body.len()).expect("at most the size, at most MAX_BLOB_BYTES");
    // The object first, the row after it, and the row committed only once the object is stored:
    // a failed put leaves nothing (the transaction rolls back), so no committed row ever claims
    // a part the store does not hold. The one failure left is a commit failing after the put:
    // then the row is what it was (none, or the part's previous size) next to the new object,
    // which is harmless: an object without a row is deleted with the rest of `uploads/<id>/`
    // when the upload goes, the device sends a part it got no answer for again, and `complete`
    // hashes the bytes the store holds, so a stale row can never put a wrong photo in
    // `blobs/`. The row stays locked across the put (one part, at most the signed body limit):
    // only this upload's other parts and its deletion wait.
    store
        .store
        .put(&store.part(&upload, n), PutPayload::from(body))
        .await
        .map_err(|e| store_error(&e))?;
    sqlx::query(
        "INSERT INTO blob_upload_parts (upload_id, n, size) VALUES ($1::uuid, $2, $3)
         ON CONFLICT (upload_id, n) DO UPDATE SET size = EXCLUDED.size,
             received = blob_upload_parts.received + 1",
    )
    .bind(&upload)
    .bind(n_db)
    .bind(len)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(axum::Json(Part {
        n,
        size: u32::try_from(len).unwrap_or(0),
    })
    .into_response())
}

/// `POST /v1/blobs/{sha256}/uploads/{id}/complete`: verify the whole and keep it.
#[utoipa::path(post, path = "/v1/blobs/{sha256}/uploads/{id}/complete", tag = "blobs", params(("sha256" = String, Path, description = "the photo's SHA-256, lowercase hex", pattern = "^[0-9a-f]{64}$"), ("id" = String, Path, description = "a UUID", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")), responses((status = 200, description = "done", body = Object), (status = 409, description = "parts missing", body = crate::schemas::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn complete(
    State(state): State<BlobsState>,
    caller: Caller,
    UrlPath((raw, id)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let device = caller.device()?;
    let digest = digest(&raw)?;
    let id = upload_id(&id)?;
    let store = blobs(&state)?;
    let size = own_upload(&state.db, device, id, &digest).await?;
    let parts: Vec<(i32, i32)> = sqlx::query_as(
        "SELECT n, size FROM blob_upload_parts WHERE upload_id = $1::uuid ORDER BY n",
    )
    .bind(id.to_string())
    .fetch_all(&state.db)
    .await
    .map_err(db)?;
    let contiguous = parts
        .iter()
        .enumerate()
        .all(|(i, (n, _))| usize::try_from(*n).is_ok_and(|n| n == i));
    let total: i64 = parts.iter().map(|(_, s)| i64::from(*s)).sum();
    if !contiguous || total != size {
        return Err(ApiError::Conflict {
            code: "upload_incomplete",
            message: format!(
                "upload {id} holds {} part(s), {total} of {size} bytes; send the missing parts first",
                parts.len()
            ),
            details: None,
        });
    }
    let upload = id.to_string();
    let staging = store.staging(&upload);
    let mut hasher = Sha256::new();
    let mut writer = WriteMultipart::new(
        store
            .store
            .put_multipart(&staging)
            .await
            .map_err(|e| store_error(&e))?,
    );
    for (n, _) in &parts {
        let n = u32::try_from(*n).expect("checked contiguous from 0");
        let bytes = match store.store.get(&store.part(&upload, n)).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => {
                // A row without its object (a deletion that failed halfway, an operator's
                // clean-up): forget the row, so the device is told to send the part again
                // instead of failing here on every attempt.
                let _ = writer.abort().await;
                sqlx::query("DELETE FROM blob_upload_parts WHERE upload_id = $1::uuid AND n = $2")
                    .bind(&upload)
                    .bind(i32::try_from(n).expect("from an i32"))
                    .execute(&state.db)
                    .await
                    .map_err(db)?;
                tracing::warn!(%id, n, "a staged part was missing from the store; asked again");
                return Err(ApiError::Conflict {
                    code: "upload_incomplete",
                    message: format!(
                        "part {n} of upload {id} is missing from the store; send it again"
                    ),
                    details: None,
                });
            }
            Err(e) => {
                let _ = writer.abort().await;
                return Err(store_error(&e));
            }
        };
        hasher.update(&bytes);
        writer.write(&bytes);
    }
    let got = hex::encode(hasher.finalize());
    if got != digest {
        let _ = writer.abort().await;
        drop_upload(&state, store, id).await;
        tracing::warn!(device = %device.id, %digest, %got, "photo upload refused: digest mismatch");
        return Err(ApiError::DigestMismatch(format!(
            "the parts of upload {id} hash to {got}, not {digest}; the upload was dropped, start again"
        )));
    }
    writer.finish().await.map_err(|e| store_error(&e))?;
    store
        .store
        .rename(&staging, &store.object(&digest))
        .await
        .map_err(|e| store_error(&e))?;
    sqlx::query(
        "INSERT INTO blobs (digest, size, branch_id, device_id) VALUES ($1, $2, $3, $4::uuid)
         ON CONFLICT (digest) DO NOTHING",
    )
    .bind(&digest)
    .bind(size)
    .bind(&device.branch_id)
    .bind(&device.id)
    .execute(&state.db)
    .await
    .map_err(db)?;
    drop_upload(&state, store, id).await;
    tracing::info!(device = %device.id, %digest, size, "photo stored");
    Ok((
        StatusCode::CREATED,
        axum::Json(UploadState::Stored {
            digest,
            size: u64::try_from(size).unwrap_or(0),
        }),
    )
        .into_response())
}

/// Forget a finished (stored or refused) upload. Best effort: a failure is logged, and the
/// upload, no longer touched, is swept later.
async fn drop_upload(state: &BlobsState, store: &Blobs, id: uuid::Uuid) {
    if let Err(error) = forget_upload(&state.db, store, &id.to_string(), None).await {
        tracing::warn!(%error, %id, "could not drop a finished upload; the sweep will");
    }
}

/// Why an upload could not be forgotten.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    #[error("photo store: {0}")]
    Store(#[from] object_store::Error),
}

impl SweepError {
    fn into_api(self) -> ApiError {
        match self {
            SweepError::Database(error) => db(error),
            SweepError::Store(error) => store_error(&error),
        }
    }
}

/// Forget upload `id`, the one piece of code that deletes uploads (a finished one, one whose
/// size changed, an abandoned one): its staged objects (`uploads/<id>/…`, every object there,
/// and `staging/<id>`), then its rows, in one transaction that holds the upload's row lock
/// throughout. With `untouched_for`, only if nobody touched it for that long: the lock waits for
/// a part being staged, and PostgreSQL checks the age again on the row that part left. Whether it
/// was forgotten.
///
/// Objects first, rows last, under the lock: no part can be staged meanwhile (a part locks the
/// row first), and a failure rolls the rows back, so the upload is tried again (the sweep) or
/// resumed (the device; `complete` asks again for a part whose object is gone). Rows first would
/// leave, on a failure after them, objects no row names, which nothing would ever delete.
async fn forget_upload(
    db: &PgPool,
    store: &Blobs,
    id: &str,
    untouched_for: Option<Duration>,
) -> Result<bool, SweepError> {
    let mut tx = db.begin().await?;
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM blob_uploads
         WHERE id = $1::uuid
           AND ($2::float8 IS NULL OR touched_at < now() - make_interval(secs => $2))
         FOR UPDATE",
    )
    .bind(id)
    .bind(untouched_for.map(|age| age.as_secs_f64()))
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_none() {
        return Ok(false);
    }
    let staged: Vec<ObjectMeta> = store
        .store
        .list(Some(&store.parts(id)))
        .try_collect()
        .await?;
    let staging = store.staging(id);
    for location in staged
        .iter()
        .map(|object| &object.location)
        .chain([&staging])
    {
        match store.store.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    sqlx::query("DELETE FROM blob_uploads WHERE id = $1::uuid")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Forget every upload untouched for `older_than`, with its staged objects; how many. An
/// upload that cannot be forgotten (the store failing) is logged and left for the next sweep;
/// only failing to read the candidates is an error.
pub async fn sweep_once(
    db: &PgPool,
    blobs: &Blobs,
    older_than: Duration,
) -> Result<u64, SweepError> {
    let abandoned: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM blob_uploads
         WHERE touched_at < now() - make_interval(secs => $1)
         ORDER BY touched_at",
    )
    .bind(older_than.as_secs_f64())
    .fetch_all(db)
    .await?;
    let mut swept = 0;
    for id in abandoned {
        match forget_upload(db, blobs, &id, Some(older_than)).await {
            Ok(true) => swept += 1,
            Ok(false) => {} // touched meanwhile, or forgotten by another replica
            Err(error) => {
                tracing::warn!(%error, upload = %id, "sweeping an abandoned photo upload failed")
            }
        }
    }
    Ok(swept)
}

/// Sweeps abandoned uploads at start and every [`SWEEP_INTERVAL`] until `token` is cancelled
/// (mid-sweep too: an upload being forgotten is rolled back and tried again next time). Failures
/// are logged and retried at the next tick.
pub async fn sweep(db: PgPool, blobs: Blobs, token: CancellationToken) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = interval.tick() => {}
        }
        let result = tokio::select! {
            () = token.cancelled() => return,
            result = sweep_once(&db, &blobs, UPLOAD_ABANDONED_AFTER) => result,
        };
        match result {
            Ok(0) => {}
            Ok(swept) => tracing::info!(swept, "abandoned photo uploads deleted"),
            Err(error) => tracing::warn!(%error, "sweeping abandoned photo uploads failed"),
        }
    }
}

/// `GET /v1/blobs/{sha256}`: the photo, for an operator or a device of the branch that sent it.
#[utoipa::path(get, path = "/v1/blobs/{sha256}", tag = "blobs", params(("sha256" = String, Path, description = "the photo's SHA-256, lowercase hex", pattern = "^[0-9a-f]{64}$")), responses((status = 200, description = "the photo", content_type = "application/octet-stream", body = Vec<u8>)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<BlobsState>,
    caller: Caller,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, ApiError> {
    let digest = digest(&raw)?;
    let store = blobs(&state)?;
    let branch: Option<String> =
        sqlx::query_scalar("SELECT branch_id FROM blobs WHERE digest = $1")
            .bind(&digest)
            .fetch_optional(&state.db)
            .await
            .map_err(db)?;
    let missing = || ApiError::NotFound(format!("no photo {digest}"));
    let branch = branch.ok_or_else(missing)?;
    match &caller {
        Caller::Device(device) if device.branch_id == branch => {}
        Caller::Device(_) => return Err(missing()),
        Caller::Client(_) => {
            caller.operator()?;
        }
    }
    // Streamed, not read whole: a box's backup is up to 256 MiB.
    let got = match store.store.get(&store.object(&digest)).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => {
            tracing::error!(%digest, "photo recorded in PostgreSQL but missing from the store");
            return Err(missing());
        }
        Err(e) => return Err(store_error(&e)),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, got.meta.size.to_string()),
            (header::ETAG, format!("\"{digest}\"")),
        ],
        axum::body::Body::from_stream(got.into_stream()),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_numbers_are_bounded_by_the_declared_size() {
        for (size, parts) in [
            (0, 1),
            (1, 1),
            (1024, 1),
            (1025, 2),
            (3000, 3),
            (MAX_BLOB_BYTES, 262_144),
        ] {
            assert_eq!(parts_allowed(size), parts, "size {size}");
        }
    }

    /// The OpenAPI document states the highest part number any upload may use.
    #[test]
    fn the_documented_part_number_maximum_is_the_largest_photos() {
        let doc: serde_json::Value =
            serde_json::from_str(&crate::openapi::document()).expect("JSON");
        let parameters =
            doc["paths"]["/v1/blobs/{sha256}/uploads/{id}/parts/{n}"]["put"]["parameters"]
                .as_array()
                .expect("parameters");
        let n = parameters
            .iter()
            .find(|p| p["name"] == "n")
            .expect("parameter n");
        assert_eq!(n["schema"]["minimum"], 0);
        assert_eq!(
            n["schema"]["maximum"].as_u64(),
            Some(parts_allowed(MAX_BLOB_BYTES) - 1)
        );
    }
}
