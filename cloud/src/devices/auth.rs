//! Who is calling: the middleware in front of every authenticated `/v1` route, and [`Caller`],
//! what handlers learn from it.
//!
//! Two kinds of caller (the contract: ARCHITECTURE.md, "What is fixed"): an enrolled device, by a request signed with its ed25519
//! key (`sentra_protocol::auth`: method, path and query, timestamp, nonce, SHA-256 of the exact
//! body bytes), or a non-device client by `Authorization: Bearer <api token>`.
//!
//! Invariants:
//! - a device's branch comes from its row in `devices`, never from anything it sent;
//! - the signature is checked before the nonce is stored, so unauthenticated requests cannot
//!   fill the nonce table; a nonce is accepted once per device ([`NONCE_RETENTION`] is long
//!   enough that a replay of a pruned nonce already fails the timestamp check);
//! - unknown, revoked, unsigned or badly signed: 401 `unauthorized`; timestamp outside the window:
//!   401 `clock_skew`; nonce seen: 401 `replay`;
//! - an API token found valid is trusted by this replica for [`API_TOKEN_CACHE_TTL`] without
//!   asking PostgreSQL again ([`TokenCache`]), so a revocation (`revoked_at` set) takes effect on
//!   every replica within that time. Unknown or revoked tokens are never cached: each is looked up.
//!   Requests carrying one token that is not cached share one lookup.
//!   A token's expiry is cached with it and checked on every request, so an expired token is
//!   refused at once, cached or not. The lookup that fills the cache stamps `last_used_at`, so
//!   it is exact to within the cache period.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use sentra_protocol::auth::{
    self as protocol_auth, DEVICE_HEADER, MAX_SKEW_MS, NONCE_HEADER, SIGNATURE_HEADER,
    SignedHeaders, TIMESTAMP_HEADER,
};
use sentra_protocol::sync::MAX_PUSH_BYTES;
use sqlx::PgPool;

use super::tokens::{self, Role};
use crate::ttl::TtlMap;
use crate::web::{ApiError, now_ms};

/// What [`authenticate`] needs of the application state.
#[derive(Clone)]
pub struct AuthState {
    pub db: PgPool,
    /// API tokens this replica recently found valid.
    pub tokens: Arc<TokenCache>,
}

/// How long a nonce is remembered: twice the allowed skew. A request accepted at server time t
/// carries a timestamp within t ± MAX_SKEW, so any replay later than t + 2·MAX_SKEW already
/// fails the timestamp check.
pub const NONCE_RETENTION: Duration = Duration::from_millis(2 * MAX_SKEW_MS);

/// How often each replica deletes nonces older than [`NONCE_RETENTION`]. Deleting is idempotent,
/// so replicas need not coordinate.
pub const NONCE_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// How long a replica trusts an API token it found valid. The customer portal and availability
/// checks send thousands of requests a second with a handful of tokens: without the cache each
/// one costs a PostgreSQL round trip before Redis is even asked, and a herd turned away by the
/// calendar would still touch PostgreSQL a thousand times. Five seconds is the longest a revoked
/// token keeps working on a replica.
pub const API_TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// Most tokens a replica remembers; past it, expired entries are dropped, then all of them.
/// Bounds memory whatever the callers send (only valid tokens are ever stored).
pub const API_TOKEN_CACHE_ENTRIES: usize = 4096;

/// API tokens recently found valid, keyed by their SHA-256 (the token itself is not kept), with
/// their expiry (Unix milliseconds) if they have one. A token not cached (a replica just
/// started, or its entry just expired under load) is looked up once however many requests carry
/// it at that moment ([`TtlMap::get_or_fetch`]): a herd of a thousand requests otherwise ran a
/// thousand `UPDATE`s of the token's one row, which PostgreSQL queues on the row's lock (the
/// booking bench's herd on new connections: p99 118-216 ms, against 36-56 ms once cached).
#[derive(Debug)]
pub struct TokenCache(TtlMap<Vec<u8>, (ApiClient, Option<i64>)>);

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache(TtlMap::new(API_TOKEN_CACHE_TTL, API_TOKEN_CACHE_ENTRIES))
    }
}

/// The authenticated caller, put into the request by [`authenticate`].
#[derive(Debug, Clone)]
pub enum Caller {
    Device(DeviceIdentity),
    Client(ApiClient),
}

#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    /// Canonical UUID text, as PostgreSQL prints it.
    pub id: String,
    pub branch_id: String,
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Who made a record (`created_by`, `checked_by`): `device:<id>` or `token:<name>`.
    pub fn name(&self) -> String {
        match self {
            Caller::Device(device) => format!("device:{}", device.id),
            Caller::Client(client) => format!("token:{}", client.name),
        }
    }

    /// The device, for routes only a device may call.
    pub fn device(&self) -> Result<&DeviceIdentity, ApiError> {
        match self {
            Caller::Device(device) => Ok(device),
            Caller::Client(client) => Err(ApiError::Forbidden(format!(
                "API token {:?} ({}) cannot call a device route; sign the request with the device's key",
                client.name, client.role
            ))),
        }
    }

    /// The client, for routes only an operator token may call.
    pub fn operator(&self) -> Result<&ApiClient, ApiError> {
        match self {
            Caller::Client(client) if client.role == Role::Operator => Ok(client),
            Caller::Client(client) => Err(ApiError::Forbidden(format!(
                "API token {:?} has role {}; this needs an operator token",
                client.name, client.role
            ))),
            Caller::Device(device) => Err(ApiError::Forbidden(format!(
                "device {} cannot call an operator route",
                device.id
            ))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "route is not behind the authenticate layer");
            ApiError::Internal
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "this path needs a signed device request ({DEVICE_HEADER}, {TIMESTAMP_HEADER}, {NONCE_HEADER}, {SIGNATURE_HEADER}) or Authorization: Bearer <api token>"
    )]
    NoCredentials,
    #[error("header {0} is missing or not valid")]
    BadHeader(&'static str),
    #[error("device {0:?} is not enrolled")]
    UnknownDevice(String),
    #[error("device {0} is revoked")]
    Revoked(String),
    #[error("device {device}: {source}")]
    Signature {
        device: String,
        source: protocol_auth::AuthError,
    },
    #[error("device {device}: nonce {nonce} was already used; sign every request with a new nonce")]
    Replay { device: String, nonce: String },
    #[error("the API token is unknown, revoked or expired")]
    UnknownToken,
    #[error("body is larger than {MAX_PUSH_BYTES} bytes")]
    TooLarge,
    #[error("reading the body failed: {0}")]
    Body(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Signature {
                source: protocol_auth::AuthError::Skew { .. },
                ..
            } => ApiError::ClockSkew(format!(
                "{error}; correct the clock from the {} header",
                sentra_protocol::sync::SERVER_TIME_HEADER
            )),
            AuthError::Replay { .. } => ApiError::Replay(error.to_string()),
            AuthError::NoCredentials
            | AuthError::BadHeader(_)
            | AuthError::UnknownDevice(_)
            | AuthError::Revoked(_)
            | AuthError::Signature { .. }
            | AuthError::UnknownToken => ApiError::Unauthorized(error.to_string()),
            AuthError::TooLarge => ApiError::PayloadTooLarge {
                limit: MAX_PUSH_BYTES,
            },
            AuthError::Body(message) => ApiError::MalformedBody(message),
            AuthError::Db(error) => ApiError::database(&error),
        }
    }
}

/// The middleware: authenticates the request, then passes it on with its body intact and a
/// [`Caller`] in its extensions.
pub async fn authenticate(
    State(state): State<AuthState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    // Who is calling is settled from the headers before the body is read: anonymous requests,
    // unknown or revoked tokens and unknown or revoked devices are refused without reading a
    // byte of it. Only a known device's signature needs the body (it covers its digest).
    let claimed = if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(AuthError::BadHeader("authorization"))?;
        Claimed::Client(api_client(&state.db, &state.tokens, token.trim()).await?)
    } else if parts.headers.contains_key(DEVICE_HEADER) {
        Claimed::Device(Box::new(known_device(&state.db, &parts.headers).await?))
    } else {
        return Err(AuthError::NoCredentials.into());
    };
    let bytes = match Limited::new(body, MAX_PUSH_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(AuthError::TooLarge.into());
        }
        Err(error) => return Err(AuthError::Body(error.to_string()).into()),
    };
    let caller = match claimed {
        Claimed::Client(client) => Caller::Client(client),
        Claimed::Device(known) => {
            let path_and_query = parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
            Caller::Device(
                verify_device(
                    &state.db,
                    *known,
                    parts.method.as_str(),
                    path_and_query,
                    &bytes,
                )
                .await?,
            )
        }
    };
    parts.extensions.insert(caller);
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

async fn api_client(db: &PgPool, cache: &TokenCache, token: &str) -> Result<ApiClient, AuthError> {
    let hash = tokens::hash(token);
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    let (client, expires_at) = cache
        .0
        .get_or_fetch::<AuthError, _>(hash.clone(), async {
            crate::metrics::api_token_lookup();
            // One statement finds a live token and stamps its use: a write per token per
            // replica per cache period, not per request.
            let row: Option<(String, String, Option<i64>)> = sqlx::query_as(
                "UPDATE api_tokens SET last_used_at = now()
                  WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
                  RETURNING name, role, (extract(epoch FROM expires_at) * 1000)::bigint",
            )
            .bind(&hash)
            .fetch_optional(db)
            .await?;
            let (name, role, expires_at) = row.ok_or(AuthError::UnknownToken)?;
            let role = role.parse().map_err(|_| AuthError::UnknownToken)?;
            Ok((ApiClient { name, role }, expires_at))
        })
        .await?;
    if expires_at.is_some_and(|at| at <= now) {
        return Err(AuthError::UnknownToken);
    }
    Ok(client)
}

/// What the headers claim before the body is read: an API token already checked, or a device
/// that exists, is not revoked and has a key (its signature is checked once the body is in).
enum Claimed {
    Client(ApiClient),
    Device(Box<KnownDevice>),
}

struct KnownDevice {
    id: String,
    branch_id: String,
    key: sentra_protocol::ed25519_dalek::VerifyingKey,
    signed: SignedHeaders,
}

/// The device the signature headers name, from its row: unknown, revoked or keyless is 401
/// before anything else is read.
async fn known_device(db: &PgPool, headers: &HeaderMap) -> Result<KnownDevice, AuthError> {
    let text = |name: &'static str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or(AuthError::BadHeader(name))
    };
    let signed = SignedHeaders {
        device: text(DEVICE_HEADER)?.to_owned(),
        timestamp_ms: text(TIMESTAMP_HEADER)?
            .parse()
            .map_err(|_| AuthError::BadHeader(TIMESTAMP_HEADER))?,
        nonce: text(NONCE_HEADER)?.to_owned(),
        signature: text(SIGNATURE_HEADER)?.to_owned(),
    };
    let id = uuid::Uuid::parse_str(&signed.device)
        .map_err(|_| AuthError::UnknownDevice(signed.device.clone()))?
        .hyphenated()
        .to_string();

    let row: Option<(String, Option<Vec<u8>>, bool)> = sqlx::query_as(
        "SELECT branch_id, public_key, revoked_at IS NOT NULL FROM devices WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_optional(db)
    .await?;
    let (branch_id, public_key, revoked) =
        row.ok_or_else(|| AuthError::UnknownDevice(id.clone()))?;
    if revoked {
        return Err(AuthError::Revoked(id));
    }
    let key = public_key
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .and_then(|bytes| sentra_protocol::ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| AuthError::UnknownDevice(id.clone()))?;
    Ok(KnownDevice {
        id,
        branch_id,
        key,
        signed,
    })
}

/// A known device's signature over the request, then its nonce (stored only once the signature
/// holds, so unauthenticated requests cannot fill the nonce table).
async fn verify_device(
    db: &PgPool,
    known: KnownDevice,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<DeviceIdentity, AuthError> {
    let KnownDevice {
        id,
        branch_id,
        key,
        signed,
    } = known;
    protocol_auth::verify(&key, &signed, method, path_and_query, body, now_ms()).map_err(
        |source| AuthError::Signature {
            device: id.clone(),
            source,
        },
    )?;

    let fresh = sqlx::query(
        "INSERT INTO request_nonces (device_id, nonce) VALUES ($1::uuid, $2) ON CONFLICT DO NOTHING",
    )
    .bind(&id)
    .bind(&signed.nonce)
    .execute(db)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        return Err(AuthError::Replay {
            device: id,
            nonce: signed.nonce,
        });
    }
    Ok(DeviceIdentity { id, branch_id })
}

/// Deletes nonces older than [`NONCE_RETENTION`]; returns how many.
pub async fn prune_nonces(db: &PgPool) -> Result<u64, sqlx::Error> {
    let retention_ms = i64::try_from(NONCE_RETENTION.as_millis()).unwrap_or(i64::MAX);
    Ok(sqlx::query(
        "DELETE FROM request_nonces WHERE seen_at < now() - make_interval(secs => $1::double precision / 1000)",
    )
    .bind(retention_ms)
    .execute(db)
    .await?
    .rows_affected())
}
