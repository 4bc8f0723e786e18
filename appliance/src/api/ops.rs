//! Health, readiness, metrics, pairing, devices, sync status and the OpenAPI document.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Body, Caller, Fingerprint, IdempotencyKey, path_id};
use crate::domain::{Name, Role};
use crate::store::Notice;
use crate::store::devices::{self, Device};
use crate::store::outbox::{self, OutboxStatus};
use crate::store::sync::{self, Rejection, SyncState};
use crate::sync::LinkStatus;

/// How long `/readyz` waits for the store writer to commit an empty write: a commit takes
/// milliseconds, and the updater's probe of `/readyz` gives up after 2 s.
const READY_WRITER_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Rejections listed in the sync status; the rest are counted in `sync.parked_events`.
const MAX_REJECTIONS_SHOWN: u32 = 20;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub uptime_secs: u64,
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: crate::update::RUNNING_VERSION.as_str(),
        uptime_secs: s.started.elapsed().as_secs(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Health), (status = 503, body = super::error::ErrorBody)))]
pub async fn readyz(State(s): State<AppState>) -> Result<Json<Health>, ApiError> {
    let not_ready = |detail: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("store: {detail}"),
        )
    };
    // Every write goes through the writer thread: ready only while it commits (the watchdog's
    // own proof), and while a reader answers.
    crate::watchdog::writer_commits(&s.store, READY_WRITER_LIMIT)
        .await
        .map_err(|e| not_ready(e.to_string()))?;
    s.store
        .read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
        .await
        .map_err(|e| not_ready(e.to_string()))?;
    Ok(Json(Health {
        status: "ready",
        version: crate::update::RUNNING_VERSION.as_str(),
        uptime_secs: s.started.elapsed().as_secs(),
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    let device = s.store.ctx().device_id.clone();
    if let Ok(st) = s.store.read(move |c| outbox::status(c, &device)).await {
        crate::metrics::outbox(st.pending_events, st.pending_bytes, st.last_seq);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::metrics::render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    /// The code shown by `sentra-edge pair` (`XXXX-XXXX`; case and dashes do not matter).
    #[schema(schema_with = super::schemas::pair_code)]
    pub code: String,
    #[schema(example = "Tablet bengkel 1")]
    pub device_name: Name,
    /// Must match the code's role when given.
    #[schema(example = "tablet")]
    pub role: Option<Role>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PairResponse {
    /// The bearer token for every later request. Shown once; store it in the device's keystore.
    pub token: String,
    pub device: Device,
    /// Credentials for the branch MQTT broker; null when the broker is disabled (`mqtt.enabled`).
    pub mqtt: Option<MqttCredentials>,
}

/// How a paired device connects to the branch broker.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MqttCredentials {
    /// The device id.
    pub username: String,
    /// The device's MQTT password (`sem_…`), a secret of its own: the API token is refused as
    /// an MQTT password, and this password as a bearer token. Shown once.
    pub password: String,
    /// MQTT over TLS: the box's certificate, the fingerprint pinned at pairing.
    pub port: u16,
    /// Always true: `port` speaks TLS.
    pub tls: bool,
    /// Plain MQTT, only when the box serves it for legacy clients (`lan.plain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain_port: Option<u16>,
    /// The client id to use: the device id, or the device id followed by `-` and a suffix for
    /// a second connection. Any other client id is refused.
    pub client_id: String,
    /// Topics this device may subscribe to: `sentra/<branch>/#`.
    pub topics: String,
}

use super::schemas::MAX_CODE_LEN;

#[utoipa::path(post, path = "/v1/pair", tag = "devices", request_body = PairRequest,
    responses((status = 201, body = PairResponse), (status = 409, description = "unknown, used or expired code", body = super::error::ErrorBody),
        (status = 429, description = "rate_limited: too many pairing attempts from this address (api.pair_per_minute); Retry-After says when to try again", body = super::error::ErrorBody)))]
pub async fn pair(
    State(s): State<AppState>,
    body: Body<PairRequest>,
) -> Result<Response, ApiError> {
    let PairRequest {
        code,
        device_name,
        role,
    } = body.value;
    if code.is_empty() || code.chars().count() > MAX_CODE_LEN {
        return Err(ApiError::field(
            "code",
            "expected the code shown by `sentra-edge pair`, e.g. 7KQ2-M9XD",
        ));
    }
    let (device, creds) = s
        .store
        .write(move |w| devices::redeem(w, &code, &device_name, role))
        .await?;
    tracing::info!(device = %device.id, role = device.role.as_str(), name = %device.name, "device paired");
    let mqtt = mqtt_credentials(&s, &device, &creds);
    Ok(secret_answer(
        StatusCode::CREATED,
        Json(PairResponse {
            token: creds.token,
            device,
            mqtt,
        }),
    ))
}

/// The broker part of an answer that hands out credentials; None while no broker runs.
fn mqtt_credentials(
    s: &AppState,
    device: &Device,
    creds: &devices::Credentials,
) -> Option<MqttCredentials> {
    s.mqtt_port.map(|port| MqttCredentials {
        username: device.id.clone(),
        password: creds.mqtt_password.clone(),
        port,
        tls: true,
        plain_port: s.mqtt_plain_port,
        client_id: device.id.clone(),
        topics: format!("sentra/{}/#", s.config.branch.id),
    })
}

/// An answer carrying secrets: no cache, proxy or browser keeps it.
fn secret_answer(status: StatusCode, body: impl IntoResponse) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        body,
    )
        .into_response()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotateResponse {
    /// The new bearer token. Pending until its first use: the old token and MQTT password keep
    /// working until then, and stop at that request.
    pub token: String,
    pub device: Device,
    /// The new MQTT credentials (the password is new; refused by the broker until the new token
    /// has been used once); null when the broker is disabled (`mqtt.enabled`).
    pub mqtt: Option<MqttCredentials>,
}

/// Rotate the calling device's credentials without pairing again.
///
/// Answers a new bearer token and a new MQTT password, both shown once. They are pending: the
/// device's current token and MQTT password keep working until the new token is used for the
/// first time; that request switches the device over, the old token and MQTT password stop, and
/// MQTT connections on the old password are closed. An answer lost on the way therefore locks
/// nothing out: keep using the old pair and rotate again, which replaces the pending pair (the
/// unused one never works). The new MQTT password is refused until the new token has been used.
///
/// Not idempotent by key: an `Idempotency-Key` header is ignored here, because a stored answer
/// would keep the secrets on disk and replay them. A retry is a new rotation, which is safe.
#[utoipa::path(post, path = "/v1/devices/self/rotate", tag = "devices",
    responses((status = 200, description = "The new, pending credentials (Cache-Control: no-store)", body = RotateResponse)),
    security(("bearer" = [])))]
pub async fn rotate_credentials(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let device = caller.0;
    let id = device.id.clone();
    // Not `AppState::write`: its stored answer (for an Idempotency-Key) would hold the secrets.
    let creds = s
        .store
        .write(move |w| devices::rotate(w, &id))
        .await?
        .ok_or_else(|| ApiError::unauthorized("this device was revoked; pair it again"))?;
    tracing::info!(device = %device.id, "device credentials rotated; pending until the new token is used");
    let mqtt = mqtt_credentials(&s, &device, &creds);
    Ok(secret_answer(
        StatusCode::OK,
        Json(RotateResponse {
            token: creds.token,
            device,
            mqtt,
        }),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    #[serde(flatten)]
    pub outbox: OutboxStatus,
    /// The link to the cloud as the daemon sees it now.
    pub link: LinkStatus,
    /// Pull cursor, last pull, measured clock skew, parked events, last error.
    pub sync: SyncState,
    /// The most recent events the cloud parked, newest first.
    pub rejections: Vec<Rejection>,
    /// Inspection photos on the box: all, and those the cloud does not have yet.
    pub photos: crate::store::blobs::BlobStats,
}

#[utoipa::path(get, path = "/v1/sync/status", tag = "sync", responses((status = 200, body = SyncStatus)), security(("bearer" = [])))]
pub async fn sync_status(State(s): State<AppState>) -> Result<Json<SyncStatus>, ApiError> {
    let device = s.store.ctx().device_id.clone();
    let (outbox, sync, rejections) = s
        .store
        .read(move |c| {
            Ok((
                outbox::status(c, &device)?,
                sync::state(c)?,
                sync::rejections(c, MAX_REJECTIONS_SHOWN)?,
            ))
        })
        .await?;
    let photos = s.store.blobs().stats().await?;
    crate::metrics::blobs(&photos);
    Ok(Json(SyncStatus {
        outbox,
        link: s.sync.get(),
        sync,
        rejections,
        photos,
    }))
}

#[utoipa::path(get, path = "/v1/devices", tag = "devices", responses((status = 200, body = Vec<Device>)), security(("bearer" = [])))]
pub async fn list_devices(State(s): State<AppState>) -> Result<Json<Vec<Device>>, ApiError> {
    Ok(Json(s.store.read(devices::list).await?))
}

#[utoipa::path(post, path = "/v1/devices/{id}/revoke", tag = "devices", responses((status = 200, body = Vec<Device>)), security(("bearer" = [])))]
pub async fn revoke_device(
    State(s): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    fp: Fingerprint,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let revoked = id.clone();
    let answer = s
        .write(&caller, key, fp, StatusCode::OK, move |w, _| {
            devices::revoke(w, &id)?;
            devices::list(w.conn())
        })
        .await;
    // Committed (or failed): either way the next request of that device must ask the store.
    s.tokens.clear();
    if answer.is_ok() {
        // And its MQTT connections end now (the broker forgets the device).
        s.store.announce(Notice::DeviceRevoked { id: revoked });
    }
    answer
}

pub async fn openapi() -> Response {
    super::json_response(StatusCode::OK, super::openapi::document())
}
