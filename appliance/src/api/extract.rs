//! Request extractors: the JSON body (size-limited, parsed into model types with the failing
//! field's path, fingerprinted for idempotency), the `Idempotency-Key` header, and the paired
//! device making the call.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use super::ApiError;
use crate::store::devices::Device;

/// The paired device behind the bearer token; put in the request by the auth layer.
#[derive(Debug, Clone)]
pub struct Caller(pub Device, pub Option<super::StaffSession>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("this path needs Authorization: Bearer <token>"))
    }
}

/// What identifies a write for idempotency: method, path and the canonical JSON body.
#[derive(Debug, Clone)]
pub struct Fingerprint(pub String);

fn fingerprint(method: &Method, path: &str, canonical_body: &[u8]) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(canonical_body);
    Fingerprint(hex::encode(h.finalize()))
}

impl<S: Send + Sync> FromRequestParts<S> for Fingerprint {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(fingerprint(&parts.method, parts.uri.path(), b""))
    }
}

/// A JSON body parsed into `T`.
#[derive(Debug)]
pub struct Body<T> {
    pub value: T,
    pub fingerprint: Fingerprint,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than this appliance accepts (api.max_body_bytes)",
                )
            } else {
                ApiError::bad_request(
                    "unreadable_body",
                    format!("could not read the request body: {e}"),
                )
            }
        })?;
        let mut json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        })?;
        whole_numbers(&mut json);
        if !json.is_object() {
            return Err(ApiError::field("body", "expected a JSON object"));
        }
        // serde_json's map is ordered by key, so equal documents serialise to equal bytes.
        let canonical = serde_json::to_vec(&json).expect("a Value always serialises");
        let fingerprint = fingerprint(&method, &path, &canonical);
        let value = serde_path_to_error::deserialize(json).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            ApiError::field(if path == "." { "body".to_owned() } else { path }, inner)
        })?;
        Ok(Body { value, fingerprint })
    }
}

/// JSON has one number type: `5.0` is the integer 5 (RFC 8259; JSON Schema's `integer` says the
/// same), but serde refuses a float where an integer is due. Integral floats that fit become
/// integers before parsing, so a client whose JSON library writes `5.0` is not refused; any
/// other float stays as it is (and fails where an integer is due).
fn whole_numbers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && (-9.0e15..=9.0e15).contains(&f)
            {
                // Exact: |f| < 2^53, so the cast neither rounds nor saturates.
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *v = Value::from(i);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// The `Idempotency-Key` header, when sent.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

/// Longest key accepted; UUIDs and ULIDs fit with room to spare.
pub(crate) const MAX_KEY_LEN: usize = 128;

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        match v.to_str() {
            Ok(s)
                if !s.is_empty()
                    && s.len() <= MAX_KEY_LEN
                    && s.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(Self(Some(s.to_owned())))
            }
            _ => Err(ApiError::bad_request(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters"),
            )),
        }
    }
}
