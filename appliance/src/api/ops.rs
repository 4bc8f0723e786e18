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
    /// The same token as for the API (it is the one secret the device holds).
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
    let (device, token) = s
        .store
        .write(move |w| devices::redeem(w, &code, &device_name, role))
        .await?;
    tracing::info!(device = %device.id, role = device.role.as_str(), name = %device.name, "device paired");
    let mqtt = s.mqtt_port.map(|port| MqttCredentials {
        username: device.id.clone(),
        password: token.clone(),
        port,
        tls: true,
        plain_port: s.mqtt_plain_port,
        client_id: device.id.clone(),
        topics: format!("sentra/{}/#", s.config.branch.id),
    });
    Ok((
        StatusCode::CREATED,
        Json(PairResponse {
            token,
            device,
            mqtt,
        }),
    )
        .into_response())
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
