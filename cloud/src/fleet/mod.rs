//! The fleet: device heartbeats (`POST /v1/devices/heartbeat`), the fleet view the cloud team
//! reads (`GET /v1/fleet`, the page in [`page`], the gauges in [`metrics`]), channels and the
//! operator's hold on rollouts ([`rollout`]).
//!
//! Invariants:
//! - the latest heartbeat of each device is one row, replaced in the transaction that also
//!   appends its history row and moves its rollout on, so the page never shows a device ahead of
//!   its rollout;
//! - history is bounded by time ([`HISTORY_RETENTION`]), pruned by every replica (idempotent);
//! - online/offline is computed at read time from PostgreSQL's clock (`fleet.offline_after_secs`),
//!   never stored, so no sweeper has to flip it;
//! - every number on the page, in `/v1/fleet` and in `/metrics` comes from the same queries here.

pub mod metrics;
pub mod page;
pub mod rollout;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use sentra_protocol::fleet::{Heartbeat, HeartbeatAnswer, UpdateState};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::FleetConfig;
use crate::devices::auth::Caller;
use crate::web::{ApiError, JsonBody, now_ms};

/// What the fleet's handlers (JSON and page) need of the application state.
#[derive(Clone)]
pub struct FleetState {
    pub db: PgPool,
    pub fleet: FleetConfig,
}

/// How long heartbeat history is kept: a day to draw, plus slack for time zones and late looks.
pub const HISTORY_RETENTION: Duration = Duration::from_secs(26 * 3600);
/// How often each replica deletes history older than [`HISTORY_RETENTION`].
pub const HISTORY_PRUNE_INTERVAL: Duration = Duration::from_secs(600);
/// Longest free text (reasons, states) kept from a heartbeat.
pub const MAX_TEXT: usize = 500;
/// Backlog age after which a branch needs attention: its changes are an hour late in the cloud.
pub const BACKLOG_ATTENTION_SECS: u64 = 3600;
/// Clock skew that needs attention (signed requests allow five minutes).
pub const SKEW_ATTENTION_MS: i64 = 60_000;
/// Free disk share under which a box needs attention.
pub const DISK_ATTENTION_PCT: u64 = 10;

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
    ];
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

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
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
    let body = serde_json::to_string(&beat).expect("a heartbeat always serialises");
    let db_error = |error: sqlx::Error| ApiError::database(&error);
    let mut tx = state.db.begin().await.map_err(db_error)?;
    let channel: String =
        sqlx::query_scalar("UPDATE devices SET version = $2 WHERE id = $1::uuid RETURNING channel")
            .bind(&device.id)
            .bind(&beat.version)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
    sqlx::query(
        "INSERT INTO device_heartbeats (device_id, received_at, version, update_state, healthy, backlog, backlog_bytes, backlog_oldest_secs, body)
         VALUES ($1::uuid, now(), $2, $3, $4, $5, $6, $7, $8::jsonb)
         ON CONFLICT (device_id) DO UPDATE SET received_at = now(), version = $2, update_state = $3, healthy = $4,
             backlog = $5, backlog_bytes = $6, backlog_oldest_secs = $7, body = $8::jsonb",
    )
    .bind(&device.id)
    .bind(&beat.version)
    .bind(beat.update.state.as_str())
    .bind(beat.healthy)
    .bind(clamp(beat.backlog.count))
    .bind(clamp(beat.backlog.bytes))
    .bind(beat.backlog.oldest_age_secs.map(clamp))
    .bind(&body)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    sqlx::query(
        "INSERT INTO heartbeat_history (device_id, version, update_state, healthy, backlog, backlog_bytes, skew_ms, disk_free_bytes, mem_available_bytes)
         VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&device.id)
    .bind(&beat.version)
    .bind(beat.update.state.as_str())
    .bind(beat.healthy)
    .bind(clamp(beat.backlog.count))
    .bind(clamp(beat.backlog.bytes))
    .bind(beat.skew_ms)
    .bind(beat.resources.disk_free_bytes.map(clamp))
    .bind(beat.resources.mem_available_bytes.map(clamp))
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    let target = rollout::on_heartbeat(&mut tx, &device.id, &channel, &beat)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(Json(HeartbeatAnswer {
        server_time_ms: now_ms(),
        channel,
        target,
    }))
}

/// One device as the fleet view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub branch_id: String,
    pub branch_name: String,
    pub hostname: Option<String>,
    pub channel: String,
    pub version: Option<String>,
    pub online: bool,
    /// RFC 3339 of the last heartbeat; none if it never sent one.
    pub last_seen: Option<String>,
    /// Seconds since the last heartbeat, when offline.
    pub offline_secs: Option<i64>,
    pub update_state: Option<String>,
    /// The heartbeat as received.
    pub heartbeat: Option<Heartbeat>,
    /// Why a person should look, most urgent first; empty when all is well.
    pub attention: Vec<String>,
}

struct DeviceRow {
    id: String,
    branch_id: String,
    branch_name: String,
    hostname: Option<String>,
    channel: String,
    version: Option<String>,
    last_seen: Option<String>,
    age_secs: Option<i64>,
    update_state: Option<String>,
    body: Option<String>,
}

impl DeviceRow {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            id: row.try_get("id")?,
            branch_id: row.try_get("branch_id")?,
            branch_name: row.try_get("branch_name")?,
            hostname: row.try_get("hostname")?,
            channel: row.try_get("channel")?,
            version: row.try_get("version")?,
            last_seen: row.try_get("last_seen")?,
            age_secs: row.try_get("age_secs")?,
            update_state: row.try_get("update_state")?,
            body: row.try_get("body")?,
        })
    }
}

const DEVICE_SQL: &str = "
    SELECT d.id::text AS id, d.branch_id, b.name AS branch_name, d.hostname, d.channel,
           coalesce(h.version, d.version) AS version,
           to_char(h.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_seen,
           floor(extract(epoch FROM now() - h.received_at))::bigint AS age_secs,
           h.update_state, h.body::text AS body
    FROM devices d JOIN branches b ON b.id = d.branch_id
    LEFT JOIN device_heartbeats h ON h.device_id = d.id
    WHERE d.revoked_at IS NULL";

impl DeviceRow {
    fn view(self, offline_after: Duration) -> DeviceView {
        let limit = i64::try_from(offline_after.as_secs()).unwrap_or(i64::MAX);
        let online = self.age_secs.is_some_and(|age| age <= limit);
        let heartbeat: Option<Heartbeat> = self
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str(body).ok());
        let mut attention = Vec::new();
        match self.age_secs {
            None => attention.push("never sent a heartbeat".to_owned()),
            Some(age) if !online => attention.push(format!("offline for {}", human(age))),
            Some(_) => {}
        }
        if let Some(beat) = &heartbeat {
            attention.extend(concerns(beat));
        }
        DeviceView {
            offline_secs: if online { None } else { self.age_secs },
            id: self.id,
            branch_id: self.branch_id,
            branch_name: self.branch_name,
            hostname: self.hostname,
            channel: self.channel,
            version: self.version,
            online,
            last_seen: self.last_seen,
            update_state: self.update_state,
            heartbeat,
            attention,
        }
    }
}

/// What in a heartbeat needs a person's look.
pub fn concerns(beat: &Heartbeat) -> Vec<String> {
    let mut out = Vec::new();
    if beat.update.state.is_failed() {
        let what = if beat.update.state == UpdateState::RolledBack {
            "update rolled back"
        } else {
            "update failed"
        };
        out.push(match &beat.update.reason {
            Some(reason) => format!("{what}: {reason}"),
            None => what.to_owned(),
        });
    }
    if !beat.healthy {
        out.push("not healthy".to_owned());
    }
    if let Some(age) = beat.backlog.oldest_age_secs
        && age >= BACKLOG_ATTENTION_SECS
    {
        out.push(format!(
            "sync backlog: {} events, oldest {}",
            beat.backlog.count,
            human(clamp(age))
        ));
    }
    if beat.parked > 0 {
        out.push(format!("{} parked events", beat.parked));
    }
    if beat.skew_ms.abs() >= SKEW_ATTENTION_MS {
        out.push(format!("clock off by {} s", beat.skew_ms / 1000));
    }
    if let Some(printer) = &beat.printer
        && !matches!(printer.as_str(), "ready" | "idle" | "disabled")
    {
        out.push(format!("printer {printer}"));
    }
    if let Some(scanner) = &beat.scanner
        && scanner == "error"
    {
        out.push(format!("scanner {scanner}"));
    }
    if let (Some(free), Some(total)) = (
        beat.resources.disk_free_bytes,
        beat.resources.disk_total_bytes,
    ) && total > 0
        && free.saturating_mul(100) / total < DISK_ATTENTION_PCT
    {
        // Figures from a device's heartbeat: no arithmetic that a wild one can overflow.
        out.push(format!("disk {} % free", free.saturating_mul(100) / total));
    }
    out
}

/// A duration for people: "45 s", "12 min", "3 h 5 min", "2 d 4 h".
pub fn human(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// The whole fleet at a glance.
#[derive(Debug, Serialize)]
pub struct FleetView {
    pub offline_after_secs: u64,
    pub summary: Summary,
    pub rollouts: Vec<rollout::RolloutSummary>,
    /// Devices needing attention first (longest offline first), then by branch.
    pub devices: Vec<DeviceView>,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub devices: usize,
    pub online: usize,
    pub offline: usize,
    pub needing_attention: usize,
    pub by_version: BTreeMap<String, usize>,
    pub by_update_state: BTreeMap<String, usize>,
}

/// Every device (not revoked) with its latest heartbeat, attention first.
pub async fn devices(db: &PgPool, offline_after: Duration) -> Result<Vec<DeviceView>, sqlx::Error> {
    let rows: Vec<DeviceRow> = sqlx::query(DEVICE_SQL)
        .fetch_all(db)
        .await?
        .iter()
        .map(DeviceRow::from_row)
        .collect::<Result<_, _>>()?;
    let mut devices: Vec<DeviceView> = rows
        .into_iter()
        .map(|row| row.view(offline_after))
        .collect();
    devices.sort_by(|a, b| {
        a.attention
            .is_empty()
            .cmp(&b.attention.is_empty())
            .then_with(|| {
                b.offline_secs
                    .unwrap_or(-1)
                    .cmp(&a.offline_secs.unwrap_or(-1))
            })
            .then_with(|| a.branch_id.cmp(&b.branch_id))
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(devices)
}

pub async fn fleet_view(db: &PgPool, offline_after: Duration) -> Result<FleetView, sqlx::Error> {
    let devices = devices(db, offline_after).await?;
    let mut summary = Summary {
        devices: devices.len(),
        ..Summary::default()
    };
    for device in &devices {
        if device.online {
            summary.online += 1;
        } else {
            summary.offline += 1;
        }
        if !device.attention.is_empty() {
            summary.needing_attention += 1;
        }
        *summary
            .by_version
            .entry(
                device
                    .version
                    .clone()
                    .unwrap_or_else(|| "unknown".to_owned()),
            )
            .or_default() += 1;
        *summary
            .by_update_state
            .entry(
                device
                    .update_state
                    .clone()
                    .unwrap_or_else(|| "unknown".to_owned()),
            )
            .or_default() += 1;
    }
    let rollouts = rollout::recent(db, 10).await?;
    Ok(FleetView {
        offline_after_secs: offline_after.as_secs(),
        summary,
        rollouts,
        devices,
    })
}

/// `GET /v1/fleet` (operator).
#[utoipa::path(get, path = "/v1/fleet", tag = "fleet", responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn get_fleet(
    State(state): State<FleetState>,
    caller: Caller,
) -> Result<Json<FleetView>, ApiError> {
    caller.operator()?;
    fleet_view(&state.db, state.fleet.offline_after)
        .await
        .map(Json)
        .map_err(|error| ApiError::database(&error))
}

/// One device with its day of history.
#[derive(Debug, Serialize)]
pub struct DeviceDetail {
    pub device: DeviceView,
    pub history: Vec<HistoryPoint>,
    pub rollouts: Vec<DeviceRollout>,
}

#[derive(Debug, Serialize)]
pub struct HistoryPoint {
    pub at: String,
    pub version: String,
    pub update_state: String,
    pub healthy: bool,
    pub backlog: i64,
    pub backlog_bytes: i64,
    pub skew_ms: i64,
    pub disk_free_bytes: Option<i64>,
    pub mem_available_bytes: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct DeviceRollout {
    pub rollout_id: String,
    pub version: String,
    pub wave: Option<i32>,
    pub state: String,
    pub reason: Option<String>,
}

impl HistoryPoint {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            at: row.try_get("at")?,
            version: row.try_get("version")?,
            update_state: row.try_get("update_state")?,
            healthy: row.try_get("healthy")?,
            backlog: row.try_get("backlog")?,
            backlog_bytes: row.try_get("backlog_bytes")?,
            skew_ms: row.try_get("skew_ms")?,
            disk_free_bytes: row.try_get("disk_free_bytes")?,
            mem_available_bytes: row.try_get("mem_available_bytes")?,
        })
    }
}

impl DeviceRollout {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            rollout_id: row.try_get("rollout_id")?,
            version: row.try_get("version")?,
            wave: row.try_get("wave")?,
            state: row.try_get("state")?,
            reason: row.try_get("reason")?,
        })
    }
}

pub async fn device_detail(
    db: &PgPool,
    id: &str,
    offline_after: Duration,
) -> Result<DeviceDetail, ApiError> {
    let db_error = |error: sqlx::Error| ApiError::database(&error);
    let not_found = || ApiError::NotFound(format!("no device {id}"));
    let uuid = uuid::Uuid::parse_str(id)
        .map_err(|_| not_found())?
        .hyphenated()
        .to_string();
    let row: DeviceRow = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{DEVICE_SQL} AND d.id = $1::uuid"
    )))
    .bind(&uuid)
    .fetch_optional(db)
    .await
    .map_err(db_error)?
    .as_ref()
    .map(DeviceRow::from_row)
    .transpose()
    .map_err(db_error)?
    .ok_or_else(not_found)?;
    let history = sqlx::query(
        "SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at,
                version, update_state, healthy, backlog, backlog_bytes, skew_ms, disk_free_bytes, mem_available_bytes
         FROM heartbeat_history WHERE device_id = $1::uuid AND received_at > now() - interval '24 hours'
         ORDER BY received_at",
    )
    .bind(&uuid)
    .fetch_all(db)
    .await
    .map_err(db_error)?
    .iter()
    .map(HistoryPoint::from_row)
    .collect::<Result<_, _>>()
    .map_err(db_error)?;
    let rollouts = sqlx::query(
        "SELECT r.id::text AS rollout_id, r.version, d.wave, d.state, d.reason
         FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id
         WHERE d.device_id = $1::uuid ORDER BY r.created_at DESC LIMIT 10",
    )
    .bind(&uuid)
    .fetch_all(db)
    .await
    .map_err(db_error)?
    .iter()
    .map(DeviceRollout::from_row)
    .collect::<Result<_, _>>()
    .map_err(db_error)?;
    Ok(DeviceDetail {
        device: row.view(offline_after),
        history,
        rollouts,
    })
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

/// A rollout with each device's part in it.
#[derive(Debug, Serialize)]
pub struct RolloutDetail {
    pub rollout: rollout::RolloutSummary,
    pub devices: Vec<RolloutDevice>,
}

#[derive(Debug, Serialize)]
pub struct RolloutDevice {
    pub device_id: String,
    pub branch_id: String,
    pub wave: Option<i32>,
    pub state: String,
    pub reason: Option<String>,
    pub updated_at: String,
}

impl RolloutDevice {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            device_id: row.try_get("device_id")?,
            branch_id: row.try_get("branch_id")?,
            wave: row.try_get("wave")?,
            state: row.try_get("state")?,
            reason: row.try_get("reason")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

pub async fn rollout_detail(db: &PgPool, id: &str) -> Result<RolloutDetail, ApiError> {
    let rollout = rollout::summary(db, id).await?;
    let devices = sqlx::query(
        "SELECT d.device_id::text AS device_id, v.branch_id, d.wave, d.state, d.reason,
                to_char(d.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS updated_at
         FROM rollout_devices d JOIN devices v ON v.id = d.device_id
         WHERE d.rollout_id = $1::uuid
         ORDER BY (d.state = 'failed') DESC, d.wave NULLS LAST, v.branch_id, d.device_id",
    )
    .bind(&rollout.id)
    .fetch_all(db)
    .await
    .and_then(|rows| rows.iter().map(RolloutDevice::from_row).collect())
    .map_err(|error| ApiError::database(&error))?;
    Ok(RolloutDetail { rollout, devices })
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

/// `POST /v1/fleet/rollouts/{id}/{pause|resume|abort}` (operator): the rollout after it.
#[utoipa::path(post, path = "/v1/fleet/rollouts/{id}/{action}", tag = "fleet", params(("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$"), ("action" = String, Path, description = "pause, resume or abort")), responses((status = 200, description = "done", body = Object), (status = 409, description = "the rollout is not in a state for this action", body = crate::schemas::ErrorEnvelope)), security(("bearer" = [])))]
pub async fn post_rollout_action(
    State(state): State<FleetState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<rollout::RolloutSummary>, ApiError> {
    let operator = caller.operator()?;
    let action = rollout::Action::parse(&action).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no rollout action {action:?}; expected pause, resume or abort"
        ))
    })?;
    rollout::act(&state.db, &id, action, &operator.name).await?;
    Ok(Json(rollout::summary(&state.db, &id).await?))
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

/// Deletes history older than [`HISTORY_RETENTION`] every [`HISTORY_PRUNE_INTERVAL`] until
/// `token` is cancelled; also drops expired page sessions.
pub async fn prune(db: PgPool, token: CancellationToken) {
    let mut interval = tokio::time::interval(HISTORY_PRUNE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention = HISTORY_RETENTION.as_secs_f64();
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = interval.tick() => {}
        }
        let history = sqlx::query(
            "DELETE FROM heartbeat_history WHERE received_at < now() - make_interval(secs => $1)",
        )
        .bind(retention)
        .execute(&db)
        .await;
        let sessions = sqlx::query("DELETE FROM fleet_sessions WHERE expires_at < now()")
            .execute(&db)
            .await;
        for result in [history, sessions] {
            if let Err(error) = result {
                tracing::warn!(%error, "pruning fleet history or sessions failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        for (secs, text) in [
            (5, "5 s"),
            (120, "2 min"),
            (3_900, "1 h 5 min"),
            (190_000, "2 d 4 h"),
        ] {
            assert_eq!(human(secs), text);
        }
    }

    #[test]
    fn concerns_name_what_is_wrong() {
        let beat: Heartbeat = serde_json::from_value(serde_json::json!({
            "version": "1.0.0", "uptime_secs": 1, "healthy": false,
            "update": {"state": "rolled-back", "reason": "not ready in 60 s"},
            "backlog": {"count": 10, "bytes": 100, "oldest_age_secs": 7200},
            "parked": 2, "skew_ms": -90000, "printer": "paper_out",
            "resources": {"disk_total_bytes": 100, "disk_free_bytes": 5},
        }))
        .expect("a heartbeat");
        assert_eq!(
            concerns(&beat),
            [
                "update rolled back: not ready in 60 s",
                "not healthy",
                "sync backlog: 10 events, oldest 2 h 0 min",
                "2 parked events",
                "clock off by -90 s",
                "printer paper_out",
                "disk 5 % free",
            ]
        );
    }
}
