//! The fleet's JSON handlers: heartbeats in, the fleet, a device, a rollout out, channel and
//! rollout controls (operator).

use axum::Json;
use axum::extract::{Path, State};
use sentra_protocol::fleet::{Heartbeat, HeartbeatAnswer};
use serde::Deserialize;

use crate::devices::auth::Caller;
use crate::web::{ApiError, JsonBody, now_ms};

use super::*;
use super::{record, rollout};

fn check_heartbeat(beat: &Heartbeat) -> Result<(), ApiError> {
    sentra_protocol::fleet::ReleaseVersion::parse(&beat.version)
        .map_err(|error| ApiError::Invalid(format!("version: {error}")))?;
    let texts = [
        ("update.reason", beat.update.reason.as_deref()),
        (
            "update.target_version",
            beat.update.target_version.as_deref(),
        ),
        ("printer", beat.printer.as_deref()),
        ("scanner", beat.scanner.as_deref()),
        ("broker", beat.broker.as_deref()),
    ];
    // Counters are stored as PostgreSQL bigint: a value beyond it is refused, not clamped.
    let counters = [
        ("uptime_secs", Some(beat.uptime_secs)),
        ("parked", Some(beat.parked)),
        ("paired_clients", beat.paired_clients),
        ("backlog.count", Some(beat.backlog.count)),
        ("backlog.bytes", Some(beat.backlog.bytes)),
        ("backlog.oldest_age_secs", beat.backlog.oldest_age_secs),
        (
            "resources.disk_total_bytes",
            beat.resources.disk_total_bytes,
        ),
        ("resources.disk_free_bytes", beat.resources.disk_free_bytes),
        ("resources.mem_total_bytes", beat.resources.mem_total_bytes),
        (
            "resources.mem_available_bytes",
            beat.resources.mem_available_bytes,
        ),
        ("resources.store_bytes", beat.resources.store_bytes),
        (
            "backup.age_secs",
            beat.backup.as_ref().and_then(|b| b.age_secs),
        ),
        (
            "download.received_bytes",
            beat.download.map(|d| d.received_bytes),
        ),
        ("download.total_bytes", beat.download.map(|d| d.total_bytes)),
    ];
    if let Some(download) = beat.download
        && download.received_bytes > download.total_bytes
    {
        return Err(ApiError::Invalid(
            "download: received_bytes is more than total_bytes".to_owned(),
        ));
    }
    if let Some(key) = beat.release_key.as_deref()
        && key != sentra_protocol::fleet::NO_RELEASE_KEY
        && !(key.len() == 16
            && key
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        return Err(ApiError::Invalid(
            "release_key: expected a key id (16 lowercase hex characters) or \"none\"".to_owned(),
        ));
    }
    for (field, value) in counters {
        if value.is_some_and(|value| i64::try_from(value).is_err()) {
            return Err(ApiError::Invalid(format!(
                "{field}: expected 0 to {}",
                i64::MAX
            )));
        }
    }
    for (field, value) in texts {
        if let Some(value) = value
            && (value.chars().count() > MAX_TEXT || value.chars().any(char::is_control))
        {
            return Err(ApiError::Invalid(format!(
                "{field}: expected at most {MAX_TEXT} characters, no control characters"
            )));
        }
    }
    Ok(())
}

/// `POST /v1/devices/heartbeat` (device): records the heartbeat; answers what to install.
#[utoipa::path(post, path = "/v1/devices/heartbeat", tag = "fleet", request_body = crate::schemas::Heartbeat, responses((status = 200, description = "done", body = Object)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn heartbeat(
    State(state): State<FleetState>,
    caller: Caller,
    JsonBody(raw): JsonBody<serde_json::Value>,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let device = caller.device()?;
    // serde reads a struct from a JSON array too (`"resources": []`); the contract says objects.
    for field in ["update", "backlog", "resources"] {
        if raw.get(field).is_some_and(|value| !value.is_object()) {
            return Err(ApiError::Invalid(format!("{field}: expected an object")));
        }
    }
    let beat: Heartbeat =
        serde_json::from_value(raw).map_err(|error| ApiError::Invalid(format!("body: {error}")))?;
    check_heartbeat(&beat)?;
    let (channel, target) = record::store_heartbeat(&state.db, &device.id, &beat)
        .await
        .map_err(|error| ApiError::database(&error))?;
    Ok(Json(HeartbeatAnswer {
        server_time_ms: now_ms(),
        channel,
        target,
    }))
}

/// `GET /v1/fleet?q=&branch=&version=&state=&channel=&page=&size=` (operator): the fleet's
/// counts, recent rollouts and one page of the devices the filter matches ([`filter`]).
#[utoipa::path(get, path = "/v1/fleet", tag = "fleet", params(
    ("q" = Option<String>, Query, description = "part of a branch id, branch name or hostname (case-insensitive)", max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"),
    ("branch" = Option<String>, Query, description = "a branch id", pattern = "^([0-9A-Za-z][0-9A-Za-z_-]{0,31})?$"),
    ("version" = Option<String>, Query, description = "a release version, or unknown", pattern = r"^(unknown|[0-9]{1,18}\.[0-9]{1,18}\.[0-9]{1,18}(-[0-9A-Za-z.-]+)?)?$"),
    ("state" = Option<String>, Query, description = "online, offline (includes never-seen), never-seen or attention", pattern = "^(online|offline|never-seen|attention)?$"),
    ("channel" = Option<String>, Query, description = "a channel", pattern = "^[a-z0-9-]{0,32}$"),
    ("page" = Option<i64>, Query, description = "1-based page of the matching devices", minimum = 1, maximum = 10000),
    ("size" = Option<i64>, Query, description = "devices a page (default 50)", minimum = 1, maximum = 200)),
    responses((status = 200, description = "done", body = Object),
        (status = 400, description = "bad_query: an unknown parameter or a value out of bounds", body = crate::schemas::ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn get_fleet(
    State(state): State<FleetState>,
    caller: Caller,
    query: filter::RawQuery,
) -> Result<Json<FleetView>, ApiError> {
    caller.operator()?;
    let filter = filter::Filter::from_query(query)?;
    fleet_view(&state.db, state.fleet.offline_after, &filter)
        .await
        .map(Json)
        .map_err(|error| ApiError::database(&error))
}

/// `GET /v1/fleet/devices/{id}` (operator).
#[utoipa::path(get, path = "/v1/fleet/devices/{id}", tag = "fleet", params(("id" = String, Path, description = "a UUID", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")), responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn get_device(
    State(state): State<FleetState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeviceDetail>, ApiError> {
    caller.operator()?;
    device_detail(&state.db, &id, state.fleet.offline_after)
        .await
        .map(Json)
}

/// `GET /v1/fleet/rollouts/{id}` (operator).
#[utoipa::path(get, path = "/v1/fleet/rollouts/{id}", tag = "fleet", params(("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn get_rollout(
    State(state): State<FleetState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RolloutDetail>, ApiError> {
    caller.operator()?;
    rollout_detail(&state.db, &id).await.map(Json)
}

/// `POST /v1/fleet/rollouts/{id}/{pause|resume|abort}` (operator), optionally with
/// `{"reason": "…"}` (required to resume a halted rollout): the rollout after it.
#[utoipa::path(post, path = "/v1/fleet/rollouts/{id}/{action}", tag = "fleet", params(("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"), ("action" = String, Path, description = "pause, resume or abort")), request_body(content = Option<crate::schemas::RolloutActionBody>, description = "why (required to resume a halted rollout)"), responses((status = 200, description = "done", body = Object), (status = 409, description = "the rollout is not in a state for this action", body = crate::schemas::ErrorEnvelope)), security(("bearer" = [])))]
pub async fn post_rollout_action(
    State(state): State<FleetState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<rollout::RolloutSummary>, ApiError> {
    let operator = caller.operator()?;
    let action = rollout::Action::parse(&action).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no rollout action {action:?}; expected pause, resume or abort"
        ))
    })?;
    // No body (as before reasons existed) is no reason.
    let body: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        crate::web::parse_json(&body)?
    };
    rollout::act(
        &state.db,
        &id,
        action,
        &operator.name,
        body.reason.as_deref(),
    )
    .await?;
    Ok(Json(rollout::summary(&state.db, &id).await?))
}

/// The optional body of a rollout action.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    pub channel: String,
}

/// `PUT /v1/devices/{id}/channel` `{"channel": "canary"}` (operator).
#[utoipa::path(put, path = "/v1/devices/{id}/channel", tag = "fleet", params(("id" = String, Path, description = "a UUID", pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")), request_body = crate::schemas::ChannelBody, responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn put_channel(
    State(state): State<FleetState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ChannelBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let operator = caller.operator()?;
    sentra_protocol::fleet::check_channel(&body.channel).map_err(ApiError::Invalid)?;
    let uuid = uuid::Uuid::parse_str(&id)
        .map_err(|_| ApiError::NotFound(format!("no device {id}")))?
        .hyphenated()
        .to_string();
    let changed = sqlx::query("UPDATE devices SET channel = $2 WHERE id = $1::uuid")
        .bind(&uuid)
        .bind(&body.channel)
        .execute(&state.db)
        .await
        .map_err(|error| ApiError::database(&error))?
        .rows_affected();
    if changed == 0 {
        return Err(ApiError::NotFound(format!("no device {id}")));
    }
    tracing::info!(device = %uuid, channel = %body.channel, by = %operator.name, "device channel set");
    Ok(Json(
        serde_json::json!({"device_id": uuid, "channel": body.channel}),
    ))
}
