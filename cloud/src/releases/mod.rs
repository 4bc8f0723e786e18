//! Releases: the signing key (`sentra-cloud release keygen`), publishing an artifact with its
//! signed manifest (`sentra-cloud release publish`), and serving both to devices
//! (`GET /v1/releases/{version}/manifest`, `GET /v1/releases/{version}/artifact` with Range).
//!
//! Invariants:
//! - nothing unsigned is ever stored: `publish` refuses without a signing key, and the manifest
//!   is signed before the row is written (one insert: artifact, manifest and signature together);
//! - a version is published once: the manifest of a version never changes, so a device that
//!   resumes a download after a crash gets the same bytes (the artifact's SHA-256 is its ETag);
//! - artifacts live in PostgreSQL (`releases.artifact`, stored out of line uncompressed), so every
//!   stateless replica serves every release without shared disks, and a Range request reads only
//!   the 1 MiB chunks it covers;
//! - the private key is read only by `publish`; replicas never hold it.

use std::io::Write as _;
use std::path::Path;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sentra_protocol::ed25519_dalek::SigningKey;
use sentra_protocol::fleet::{self as wire, Manifest, ReleaseVersion, SignedManifest};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

use sentra_protocol::fleet::{artifact_path, check_channel};

use crate::devices::auth::Caller;
use crate::web::ApiError;

/// The largest artifact `publish` accepts: a static `sentra-edge` is ~15 MB; a bytea holds up
/// to 1 GB, but an update this size would be a mistake.
pub const MAX_ARTIFACT_BYTES: u64 = 256 * 1024 * 1024;
/// How long a manifest is valid by default; an updater refuses it after that, so a captured old
/// manifest cannot be replayed forever.
pub const DEFAULT_EXPIRES_DAYS: u32 = 90;
/// How much of an artifact one database read fetches while streaming it.
pub const CHUNK_BYTES: i64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(
        "no release signing key is configured: set releases.signing_key_file (env SENTRA_CLOUD__RELEASES__SIGNING_KEY_FILE); make one with `sentra-cloud release keygen FILE`"
    )]
    NoKey,
    #[error("signing key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("{path} already exists; refusing to overwrite a key (devices trust its public half)")]
    KeyExists { path: String },
    #[error("artifact {path}: {reason}")]
    Artifact { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("release {0} already exists; versions are immutable, publish a new version")]
    Exists(String),
    #[error("storing the release failed (has `sentra-cloud migrate` run?)")]
    Db(#[from] sqlx::Error),
}

/// `release keygen FILE`: a new key (64 hex characters, mode 0600, never overwriting); returns
/// the public key in hex, which appliances are configured with.
pub fn keygen(path: &Path) -> Result<String, ReleaseError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut seed = [0_u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut seed);
    let key = SigningKey::from_bytes(&seed);
    let display = path.display().to_string();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => ReleaseError::KeyExists {
                path: display.clone(),
            },
            _ => ReleaseError::Key {
                path: display.clone(),
                reason: error.to_string(),
            },
        })?;
    file.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| ReleaseError::Key {
            path: display,
            reason: error.to_string(),
        })?;
    Ok(hex::encode(key.verifying_key().to_bytes()))
}

/// Reads the signing key written by [`keygen`].
pub fn load_key(path: &Path) -> Result<SigningKey, ReleaseError> {
    let bad = |reason: String| ReleaseError::Key {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|error| bad(error.to_string()))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| bad("expected 64 hex characters (made by release keygen)".to_owned()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// What `publish` stored.
#[derive(Debug)]
pub struct Published {
    pub manifest: Manifest,
    pub key_id: String,
}

/// `release publish FILE --version V --channel C`: signs and stores the artifact.
pub async fn publish(
    db: &PgPool,
    key: &SigningKey,
    artifact: &Path,
    version: &str,
    channel: &str,
    expires_days: u32,
) -> Result<Published, ReleaseError> {
    ReleaseVersion::parse(version).map_err(ReleaseError::Invalid)?;
    check_channel(channel).map_err(ReleaseError::Invalid)?;
    if !(1..=3650).contains(&expires_days) {
        return Err(ReleaseError::Invalid(format!(
            "--expires-days {expires_days}: expected 1 to 3650"
        )));
    }
    let bad = |reason: String| ReleaseError::Artifact {
        path: artifact.display().to_string(),
        reason,
    };
    let size = std::fs::metadata(artifact)
        .map_err(|error| bad(error.to_string()))?
        .len();
    if size > MAX_ARTIFACT_BYTES {
        return Err(bad(format!(
            "{size} bytes; the limit is {MAX_ARTIFACT_BYTES}"
        )));
    }
    let path = artifact.to_owned();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .map_err(|error| bad(error.to_string()))?
        .map_err(|error| bad(error.to_string()))?;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let expires = now + time::Duration::days(i64::from(expires_days));
    let rfc3339 = |at: time::OffsetDateTime| {
        at.format(&time::format_description::well_known::Rfc3339)
            .expect("a UTC time always formats as RFC 3339")
    };
    let manifest = Manifest {
        version: version.to_owned(),
        channel: channel.to_owned(),
        created: rfc3339(now),
        expires: rfc3339(expires),
        expires_unix: u64::try_from(expires.unix_timestamp()).unwrap_or(0),
        sha256: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
        url: artifact_path(version),
    };
    let signed = wire::sign_manifest(key, &manifest);
    let inserted = sqlx::query(
        "INSERT INTO releases (version, channel, created_at, expires_at, sha256, size, manifest, signature, key_id, artifact)
         VALUES ($1, $2, to_timestamp($3), to_timestamp($4), $5, $6, $7, $8, $9, $10)
         ON CONFLICT (version) DO NOTHING",
    )
    .bind(version)
    .bind(channel)
    .bind(now.unix_timestamp() as f64)
    .bind(expires.unix_timestamp() as f64)
    .bind(&manifest.sha256)
    .bind(i64::try_from(manifest.size).unwrap_or(i64::MAX))
    .bind(&signed.manifest)
    .bind(&signed.signature)
    .bind(&signed.key_id)
    .bind(bytes)
    .execute(db)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ReleaseError::Exists(version.to_owned()));
    }
    Ok(Published {
        manifest,
        key_id: signed.key_id,
    })
}

fn no_release(version: &str) -> ApiError {
    ApiError::NotFound(format!("no release {version:?}"))
}

/// `GET /v1/releases/{version}/manifest` (device or operator): the manifest as signed.
#[utoipa::path(get, path = "/v1/releases/{version}/manifest", tag = "releases", params(("version" = String, Path, max_length = 64)), responses((status = 200, description = "done", body = Object)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn get_manifest(
    State(db): State<PgPool>,
    caller: Caller,
    UrlPath(version): UrlPath<String>,
) -> Result<axum::Json<SignedManifest>, ApiError> {
    allowed(&caller)?;
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT manifest, signature, key_id FROM releases WHERE version = $1")
            .bind(&version)
            .fetch_optional(&db)
            .await
            .map_err(|error| ApiError::database(&error))?;
    let (manifest, signature, key_id) = row.ok_or_else(|| no_release(&version))?;
    Ok(axum::Json(SignedManifest {
        manifest,
        signature,
        key_id,
    }))
}

fn allowed(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Device(_) => Ok(()),
        Caller::Client(_) => caller.operator().map(|_| ()),
    }
}

/// A single byte range, resolved against the artifact's size: `start..end` (end exclusive).
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No Range header, or one this server ignores (several ranges, another unit, bad syntax):
    /// the whole artifact, 200.
    Whole,
    Part {
        start: u64,
        end: u64,
    },
    /// Starts at or beyond the end: 416.
    Unsatisfiable,
}

/// Parses a `Range` header value for an artifact of `size` bytes (RFC 9110 §14.2).
pub fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|value| value.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            text.parse().ok()
        }
    };
    match (number(first), number(last), first.is_empty()) {
        // bytes=-N: the last N bytes.
        (None, Some(suffix), true) => {
            if suffix == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Part {
                    start: size.saturating_sub(suffix),
                    end: size,
                }
            }
        }
        (Some(start), last, false) if last.is_some() || last.is_none() && spec.ends_with('-') => {
            if start >= size {
                return RangeRequest::Unsatisfiable;
            }
            match last {
                Some(last) if last < start => RangeRequest::Whole,
                Some(last) => RangeRequest::Part {
                    start,
                    end: last.saturating_add(1).min(size),
                },
                None => RangeRequest::Part { start, end: size },
            }
        }
        _ => RangeRequest::Whole,
    }
}

/// `GET /v1/releases/{version}/artifact` (device or operator): the artifact, whole or one byte
/// range (resume), streamed from PostgreSQL in [`CHUNK_BYTES`] reads.
#[utoipa::path(get, path = "/v1/releases/{version}/artifact", tag = "releases", params(("version" = String, Path, max_length = 64), ("Range" = Option<String>, Header, description = "bytes=N- to resume")), responses((status = 200, description = "the artifact", content_type = "application/octet-stream", body = Vec<u8>), (status = 206, description = "the rest from the range", content_type = "application/octet-stream", body = Vec<u8>), (status = 416, description = "range_not_satisfiable", body = crate::schemas::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = []), ("bearer" = [])))]
pub async fn get_artifact(
    State(db): State<PgPool>,
    caller: Caller,
    UrlPath(version): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    allowed(&caller)?;
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT sha256, size FROM releases WHERE version = $1")
            .bind(&version)
            .fetch_optional(&db)
            .await
            .map_err(|error| ApiError::database(&error))?;
    let (sha256, size) = row.ok_or_else(|| no_release(&version))?;
    let size = u64::try_from(size).unwrap_or(0);
    let etag = format!("\"{sha256}\"");
    // If-Range: resume only while the artifact is the one the client started with.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|value| value.as_bytes() == etag.as_bytes());
    let range = if if_range_ok {
        parse_range(
            headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
            size,
        )
    } else {
        RangeRequest::Whole
    };
    let (status, start, end) = match range {
        RangeRequest::Whole => (StatusCode::OK, 0, size),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeRequest::Unsatisfiable => {
            let mut response = ApiError::RangeNotSatisfiable(format!(
                "release {version} is {size} bytes; the requested range starts beyond it"
            ))
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    let db = db.clone();
    let stream = futures_util::stream::unfold(start, move |offset| {
        let db = db.clone();
        let version = version.clone();
        async move {
            if offset >= end {
                return None;
            }
            let length = i64::try_from(end - offset)
                .unwrap_or(i64::MAX)
                .min(CHUNK_BYTES);
            let chunk: Result<Vec<u8>, sqlx::Error> = sqlx::query_scalar(
                "SELECT substring(artifact FROM $2::integer FOR $3::integer) FROM releases WHERE version = $1",
            )
            .bind(&version)
            .bind(i64::try_from(offset).unwrap_or(i64::MAX) + 1)
            .bind(length)
            .fetch_one(&db)
            .await;
            match chunk {
                Ok(bytes) if !bytes.is_empty() => {
                    let next = offset + bytes.len() as u64;
                    Some((Ok::<Bytes, std::io::Error>(Bytes::from(bytes)), next))
                }
                Ok(_) => Some((Err(std::io::Error::other("artifact ended early")), end)),
                Err(error) => {
                    tracing::warn!(%error, %version, offset, "reading an artifact chunk failed");
                    Some((Err(std::io::Error::other(error.to_string())), end))
                }
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end.saturating_sub(1)))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        use RangeRequest::{Part, Unsatisfiable, Whole};
        for (value, expected) in [
            (None, Whole),
            (Some("bytes=0-99"), Part { start: 0, end: 100 }),
            (
                Some("bytes=100-"),
                Part {
                    start: 100,
                    end: 1000,
                },
            ),
            (
                Some("bytes=900-5000"),
                Part {
                    start: 900,
                    end: 1000,
                },
            ),
            (
                Some("bytes=-10"),
                Part {
                    start: 990,
                    end: 1000,
                },
            ),
            (
                Some("bytes=-5000"),
                Part {
                    start: 0,
                    end: 1000,
                },
            ),
            (Some("bytes=1000-"), Unsatisfiable),
            (Some("bytes=-0"), Unsatisfiable),
            (Some("bytes=5-1"), Whole),
            (Some("bytes=0-1,5-6"), Whole),
            (Some("items=0-1"), Whole),
            (Some("bytes=a-b"), Whole),
            (Some("bytes=-"), Whole),
        ] {
            assert_eq!(parse_range(value, 1000), expected, "{value:?}");
        }
    }

    #[test]
    fn channels() {
        assert!(check_channel("stable").is_ok());
        assert!(check_channel("canary-2").is_ok());
        for bad in ["", "Stable", "a b", &"x".repeat(33)] {
            assert!(check_channel(bad).is_err(), "{bad}");
        }
    }
}
