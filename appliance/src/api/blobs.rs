//! Inspection photos from the tablets: `PUT /v1/blobs/{sha256}` (content-addressed: the body
//! must hash to the digest in the path), `GET` and `HEAD` (what the box holds, and whether the
//! cloud has it yet). The bytes live in `store::blobs`; the uploader (`sync::blobs`) takes them
//! to the cloud.

use axum::body::Body as RawBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};

use super::{ApiError, AppState};
use crate::domain::Digest;
use crate::store::blobs::{BlobError, BlobMeta, Put};

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Full(message) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "storage_full", message)
            }
            BlobError::Store(e) => e.into(),
        }
    }
}

fn digest(raw: &str) -> Result<String, ApiError> {
    Digest::parse(raw)
        .map(String::from)
        .map_err(|e| ApiError::field("sha256", e.0))
}

/// The blob's state as headers: `x-sentra-blob-state: stored|uploaded`, its size and ETag.
fn meta_headers(meta: &BlobMeta) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&meta.state) {
        h.insert("x-sentra-blob-state", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", meta.digest)) {
        h.insert(header::ETAG, v);
    }
    h
}

/// The photo's bytes, as the document names them.
pub struct PhotoBytes;
impl utoipa::PartialSchema for PhotoBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::new(
                utoipa::openapi::schema::Type::String,
            ))
            .content_media_type("application/octet-stream")
            .description(Some(
                "The photo's bytes; their SHA-256 is the path's digest",
            ))
            .into()
    }
}
impl utoipa::ToSchema for PhotoBytes {}

#[utoipa::path(put, path = "/v1/blobs/{sha256}", tag = "photos",
    params(("sha256" = String, Path, description = "SHA-256 of the body, 64 hex characters")),
    request_body(content = PhotoBytes, content_type = "application/octet-stream"),
    responses((status = 201, body = BlobMeta, description = "stored"), (status = 200, body = BlobMeta, description = "already here"),
        (status = 413, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody, description = "the body does not hash to the digest"),
        (status = 503, body = super::error::ErrorBody, description = "uploads_busy: blobs.max_concurrent_uploads photos are arriving already; send again after Retry-After seconds"),
        (status = 507, body = super::error::ErrorBody, description = "storage_full")),
    security(("bearer" = [])))]
pub async fn put_blob(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    let digest = digest(&raw)?;
    let limit = s.config.blobs.max_photo_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a photo may be at most {limit} bytes (blobs.max_photo_bytes)"),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // Before the body is read: a tablet retries, and the box never holds more photos in flight
    // than it was told it could.
    let Ok(_slot) = s.uploads.clone().try_acquire_owned() else {
        crate::metrics::blob_upload_busy();
        let mut busy = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "uploads_busy",
            format!(
                "the box is receiving {} photos already (blobs.max_concurrent_uploads); send this one again in a few seconds",
                s.config.blobs.max_concurrent_uploads
            ),
        )
        .into_response();
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        return Ok(busy);
    };
    // Hash and write it as it arrives, a part at a time; past the limit stop reading. Whatever
    // goes wrong before `finish`, dropping `staging` deletes what was written.
    let blobs = s.store.blobs().clone();
    let limits = s.config.blobs.limits();
    let mut staging = blobs.stage(limits.part_bytes);
    let mut hasher = Sha256::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "body_interrupted",
                format!(
                    "the photo's body did not arrive whole ({e}); nothing was stored, send it again"
                ),
            )
        })?;
        if staging.size() + chunk.len() as u64 > limit as u64 {
            return Err(too_large());
        }
        hasher.update(&chunk);
        staging.write(&chunk).await?;
    }
    let got = hex::encode(hasher.finalize());
    if got != digest {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "digest_mismatch",
            format!(
                "the body's SHA-256 is {got}, not {digest} as the path says; nothing was stored (was the photo cut short?)"
            ),
        ));
    }
    let put = staging.finish(digest.clone(), limits).await?;
    let meta = blobs
        .meta(digest.clone())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("photo {digest} vanished")))?;
    if put == Put::Created {
        s.sync.wake_uploader();
    }
    let status = match put {
        Put::Created => StatusCode::CREATED,
        Put::Existed => StatusCode::OK,
    };
    Ok((status, meta_headers(&meta), axum::Json(meta)).into_response())
}

fn not_here(digest: &str) -> ApiError {
    ApiError::not_found(format!(
        "photo {digest} is not on this box (never sent, or uploaded to the cloud and evicted)"
    ))
}

#[utoipa::path(get, path = "/v1/blobs/{sha256}", tag = "photos",
    params(("sha256" = String, Path, description = "SHA-256 of the photo")),
    responses((status = 200, description = "the photo; x-sentra-blob-state: stored|uploaded", content_type = "application/octet-stream"), (status = 404, body = super::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_blob(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let digest = digest(&raw)?;
    let blobs = s.store.blobs().clone();
    let meta = blobs
        .meta(digest.clone())
        .await?
        .ok_or_else(|| not_here(&digest))?;
    let data = blobs
        .read(digest.clone())
        .await?
        .ok_or_else(|| not_here(&digest))?;
    let mut headers = meta_headers(&meta);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok((headers, data).into_response())
}

#[utoipa::path(head, path = "/v1/blobs/{sha256}", tag = "photos",
    params(("sha256" = String, Path, description = "SHA-256 of the photo")),
    responses((status = 200, description = "on the box; x-sentra-blob-state: stored|uploaded"), (status = 404, description = "not on the box")),
    security(("bearer" = [])))]
pub async fn head_blob(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let digest = digest(&raw)?;
    let meta = s
        .store
        .blobs()
        .meta(digest.clone())
        .await?
        .ok_or_else(|| not_here(&digest))?;
    let mut headers = meta_headers(&meta);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    Ok((StatusCode::OK, headers).into_response())
}
