//! Inspection photos (issue 8, cloud half): resumable, content-addressed uploads from the
//! branches into the object store (`object_store`: the local filesystem by default, S3 or any
//! S3-compatible store by `blobs.url`).
//!
//! The protocol, every call signed by the device like sync:
//! - `POST /v1/blobs/{sha256}/uploads` `{"size"}` → `{"state": "stored"}` when the cloud has the
//!   photo already, else `{"state": "uploading", "upload_id", "parts": [{"n", "size"}]}` with the
//!   parts it holds (a device that lost its upload id asks again and gets the same one);
//! - `PUT /v1/blobs/{sha256}/uploads/{id}/parts/{n}`: the part's raw bytes (≤ 1 MiB, the signed
//!   body limit), staged as its own object `uploads/<id>/<n>`;
//! - `POST /v1/blobs/{sha256}/uploads/{id}/complete`: the parts, contiguous from 0, are read in
//!   order, hashed and written through `put_multipart` to `staging/<id>`; only when their size
//!   and SHA-256 are the digest's is it renamed to `blobs/<sha256>` and recorded, otherwise the
//!   upload is dropped (`422 digest_mismatch`) and the device starts again;
//! - `GET /v1/blobs/{sha256}` (operator token, or a device of the branch that sent it): the photo.
//!
//! Invariants: `blobs/<sha256>` only ever holds bytes whose SHA-256 is that digest; a device may
//! upload only photos an inspection of its own branch references (the event arrives first, so the
//! cloud knows what the photo is for and nobody uses it as free storage); the staged parts are
//! objects and rows, not an `object_store` multipart handle, because such a handle cannot be
//! resumed from another process or replica.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

use crate::devices::auth::{Caller, DeviceIdentity};
use crate::http::{ApiError, AppState, JsonBody};

/// The configured object store and the prefix every object lives under.
#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

/// The largest photo the cloud takes: far above a tablet's photo, far below a mistake.
pub const MAX_BLOB_BYTES: u64 = 256 * 1024 * 1024;

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

    fn part(&self, upload: &str, n: u32) -> ObjectPath {
        self.prefix
            .child("uploads")
            .child(upload)
            .child(n.to_string())
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
async fn referenced(state: &AppState, branch: &str, digest: &str) -> Result<bool, ApiError> {
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

fn blobs(state: &AppState) -> Result<&Blobs, ApiError> {
    state.blobs.as_ref().ok_or_else(|| {
        ApiError::NotReady(
            "the photo store could not be opened at start (see the server's log and blobs.url)"
                .into(),
        )
    })
}

/// `POST /v1/blobs/{sha256}/uploads`.
#[utoipa::path(post, path = "/v1/blobs/{sha256}/uploads", tag = "blobs", params(("sha256" = String, Path, description = "the photo's SHA-256, lowercase hex", pattern = "^[0-9a-f]{64}$")), request_body = crate::openapi::schemas::StartUpload, responses((status = 200, description = "done", body = Object), (status = 201, description = "upload started", body = Object), (status = 409, description = "the photo is already stored, or another upload of it is open", body = crate::openapi::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath(raw): UrlPath<String>,
    JsonBody(body): JsonBody<StartUpload>,
) -> Result<Response, ApiError> {
    let device = caller.device()?;
    let digest = digest(&raw)?;
    blobs(&state)?;
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
    if !referenced(&state, &device.branch_id, &digest).await? {
        return Err(ApiError::Conflict {
            code: "not_referenced",
            message: format!(
                "no inspection of branch {} references photo {digest}; send the inspection first",
                device.branch_id
            ),
            details: None,
        });
    }
    // The device's open upload for this photo, or a new one; a changed size starts over.
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
         ON CONFLICT (device_id, digest) DO UPDATE SET size = EXCLUDED.size
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

/// The upload `id` of `device` for `digest`, with its size.
async fn own_upload(
    state: &AppState,
    device: &DeviceIdentity,
    id: uuid::Uuid,
    digest: &str,
) -> Result<i64, ApiError> {
    sqlx::query_scalar(
        "SELECT size FROM blob_uploads WHERE id = $1::uuid AND device_id = $2::uuid AND digest = $3",
    )
    .bind(id.to_string())
    .bind(&device.id)
    .bind(digest)
    .fetch_optional(&state.db)
    .await
    .map_err(db)?
    .ok_or_else(|| {
        ApiError::NotFound(format!(
            "no upload {id} of photo {digest} by this device; start one with POST /v1/blobs/{digest}/uploads"
        ))
    })
}

/// `PUT /v1/blobs/{sha256}/uploads/{id}/parts/{n}`: stage one part (sending it again replaces it).
#[utoipa::path(put, path = "/v1/blobs/{sha256}/uploads/{id}/parts/{n}", tag = "blobs", params(("sha256" = String, Path, description = "the photo's SHA-256, lowercase hex", pattern = "^[0-9a-f]{64}$"), ("id" = String, Path, description = "a UUID", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"), ("n" = u32, Path, minimum = 0, maximum = 1000000)), request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 200, description = "done", body = Object)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn put_part(
    State(state): State<AppState>,
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
    let size = own_upload(&state, device, id, &digest).await?;
    if n > 1_000_000 || i64::try_from(body.len()).unwrap_or(i64::MAX) > size {
        return Err(ApiError::Invalid(format!(
            "part {n} of {} bytes does not fit a photo of {size} bytes",
            body.len()
        )));
    }
    let len = i32::try_from(body.len()).expect("bounded by the 1 MiB body limit");
    store
        .store
        .put(&store.part(&id.to_string(), n), PutPayload::from(body))
        .await
        .map_err(|e| store_error(&e))?;
    sqlx::query(
        "INSERT INTO blob_upload_parts (upload_id, n, size) VALUES ($1::uuid, $2, $3)
         ON CONFLICT (upload_id, n) DO UPDATE SET size = EXCLUDED.size,
             received = blob_upload_parts.received + 1",
    )
    .bind(id.to_string())
    .bind(i32::try_from(n).expect("bounded above"))
    .bind(len)
    .execute(&state.db)
    .await
    .map_err(|e| match &e {
        // The upload was completed or dropped meanwhile.
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            ApiError::NotFound(format!("upload {id} is no longer open"))
        }
        _ => db(e),
    })?;
    Ok(axum::Json(Part {
        n,
        size: u32::try_from(len).unwrap_or(0),
    })
    .into_response())
}

/// `POST /v1/blobs/{sha256}/uploads/{id}/complete`: verify the whole and keep it.
#[utoipa::path(post, path = "/v1/blobs/{sha256}/uploads/{id}/complete", tag = "blobs", params(("sha256" = String, Path, description = "the photo's SHA-256, lowercase hex", pattern = "^[0-9a-f]{64}$"), ("id" = String, Path, description = "a UUID", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")), responses((status = 200, description = "done", body = Object), (status = 409, description = "parts missing", body = crate::openapi::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    UrlPath((raw, id)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let device = caller.device()?;
    let digest = digest(&raw)?;
    let id = upload_id(&id)?;
    let store = blobs(&state)?;
    let size = own_upload(&state, device, id, &digest).await?;
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
        drop_upload(&state, store, id, &parts).await;
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
    drop_upload(&state, store, id, &parts).await;
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

/// Forget an upload: its row (and parts' rows) and its staged objects. Best effort on the
/// objects: a leftover part is garbage, never a photo.
async fn drop_upload(state: &AppState, store: &Blobs, id: uuid::Uuid, parts: &[(i32, i32)]) {
    if let Err(error) = sqlx::query("DELETE FROM blob_uploads WHERE id = $1::uuid")
        .bind(id.to_string())
        .execute(&state.db)
        .await
    {
        tracing::warn!(%error, %id, "could not drop a finished upload's rows");
    }
    let upload = id.to_string();
    for (n, _) in parts {
        if let Ok(n) = u32::try_from(*n) {
            let _ = store.store.delete(&store.part(&upload, n)).await;
        }
    }
}

/// `GET /v1/blobs/{sha256}`: the photo, for an operator or a device of the branch that sent it.
#[utoipa::path(get, path = "/v1/blobs/{sha256}", tag = "blobs", params(("sha256" = String, Path, description = "the photo's SHA-256, lowercase hex", pattern = "^[0-9a-f]{64}$")), responses((status = 200, description = "the photo", content_type = "application/octet-stream", body = Vec<u8>)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
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
    let bytes = match store.store.get(&store.object(&digest)).await {
        Ok(got) => got.bytes().await.map_err(|e| store_error(&e))?,
        Err(object_store::Error::NotFound { .. }) => {
            tracing::error!(%digest, "photo recorded in PostgreSQL but missing from the store");
            return Err(missing());
        }
        Err(e) => return Err(store_error(&e)),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::ETAG, format!("\"{digest}\"")),
        ],
        bytes,
    )
        .into_response())
}
