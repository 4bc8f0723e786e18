//! The fleet's SQL: a heartbeat stored with its history and its rollout moved on in one
//! transaction, the device list, a device's day, a rollout's devices. Every number the page,
//! `/v1/fleet` and `/metrics` show comes from these queries.

use std::time::Duration;

use sentra_protocol::fleet::Heartbeat;
use sqlx::PgPool;

use crate::web::ApiError;

use super::rollout;
use super::*;

#[derive(sqlx::FromRow)]
struct DeviceRow {
    id: String,
    branch_id: String,
    branch_name: String,
    hostname: Option<String>,
    replaces: Option<String>,
    channel: String,
    version: Option<String>,
    last_seen: Option<String>,
    age_secs: Option<i64>,
    update_state: Option<String>,
    body: Option<String>,
}

const DEVICE_SQL: &str = "
    SELECT d.id::text AS id, d.branch_id, b.name AS branch_name, d.hostname,
           d.replaces::text AS replaces, d.channel,
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
            replaces: self.replaces,
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

/// Every device (not revoked) with its latest heartbeat, attention first.
pub async fn devices(db: &PgPool, offline_after: Duration) -> Result<Vec<DeviceView>, sqlx::Error> {
    let rows: Vec<DeviceRow> = sqlx::query_as(DEVICE_SQL).fetch_all(db).await?;
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
    let row: DeviceRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{DEVICE_SQL} AND d.id = $1::uuid"
    )))
    .bind(&uuid)
    .fetch_optional(db)
    .await
    .map_err(db_error)?
    .ok_or_else(not_found)?;
    let history = sqlx::query_as(
        "SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at,
                version, update_state, healthy, backlog, backlog_bytes, skew_ms, disk_free_bytes, mem_available_bytes,
                backlog_oldest_secs
         FROM heartbeat_history WHERE device_id = $1::uuid AND received_at > now() - interval '24 hours'
         ORDER BY received_at",
    )
    .bind(&uuid)
    .fetch_all(db)
    .await
    .map_err(db_error)?;
    let rollouts = sqlx::query_as(
        "SELECT r.id::text AS rollout_id, r.version, d.wave, d.state, d.reason
         FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id
         WHERE d.device_id = $1::uuid ORDER BY r.created_at DESC LIMIT 10",
    )
    .bind(&uuid)
    .fetch_all(db)
    .await
    .map_err(db_error)?;
    Ok(DeviceDetail {
        device: row.view(offline_after),
        history,
        rollouts,
    })
}

pub async fn rollout_detail(db: &PgPool, id: &str) -> Result<RolloutDetail, ApiError> {
    let rollout = rollout::summary(db, id).await?;
    let devices = sqlx::query_as(
        "SELECT d.device_id::text AS device_id, v.branch_id, d.wave, d.state, d.reason,
                to_char(d.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS updated_at
         FROM rollout_devices d JOIN devices v ON v.id = d.device_id
         WHERE d.rollout_id = $1::uuid
         ORDER BY (d.state = 'failed') DESC, d.wave NULLS LAST, v.branch_id, d.device_id",
    )
    .bind(&rollout.id)
    .fetch_all(db)
    .await
    .map_err(|error| ApiError::database(&error))?;
    Ok(RolloutDetail { rollout, devices })
}

/// Stores `beat` of `device_id` in one transaction: the device's version, its latest heartbeat
/// (replaced), a history row, and its rollout moved on. Returns the device's channel and what it
/// should install.
pub async fn store_heartbeat(
    db: &PgPool,
    device_id: &str,
    beat: &Heartbeat,
) -> Result<(String, Option<sentra_protocol::fleet::TargetRelease>), sqlx::Error> {
    let body = serde_json::to_string(beat).expect("a heartbeat always serialises");
    let mut tx = db.begin().await?;
    let channel: String =
        sqlx::query_scalar("UPDATE devices SET version = $2 WHERE id = $1::uuid RETURNING channel")
            .bind(device_id)
            .bind(&beat.version)
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query(
        "INSERT INTO device_heartbeats (device_id, received_at, version, update_state, healthy, backlog, backlog_bytes, backlog_oldest_secs, body)
         VALUES ($1::uuid, now(), $2, $3, $4, $5, $6, $7, $8::jsonb)
         ON CONFLICT (device_id) DO UPDATE SET received_at = now(), version = $2, update_state = $3, healthy = $4,
             backlog = $5, backlog_bytes = $6, backlog_oldest_secs = $7, body = $8::jsonb",
    )
    .bind(device_id)
    .bind(&beat.version)
    .bind(beat.update.state.as_str())
    .bind(beat.healthy)
    .bind(clamp(beat.backlog.count))
    .bind(clamp(beat.backlog.bytes))
    .bind(beat.backlog.oldest_age_secs.map(clamp))
    .bind(&body)
    .execute(&mut *tx)
    .await
    ?;
    sqlx::query(
        "INSERT INTO heartbeat_history (device_id, version, update_state, healthy, backlog, backlog_bytes, skew_ms, disk_free_bytes, mem_available_bytes, backlog_oldest_secs)
         VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(device_id)
    .bind(&beat.version)
    .bind(beat.update.state.as_str())
    .bind(beat.healthy)
    .bind(clamp(beat.backlog.count))
    .bind(clamp(beat.backlog.bytes))
    .bind(beat.skew_ms)
    .bind(beat.resources.disk_free_bytes.map(clamp))
    .bind(beat.resources.mem_available_bytes.map(clamp))
    .bind(beat.backlog.oldest_age_secs.map(clamp))
    .execute(&mut *tx)
    .await
    ?;
    let target = rollout::on_heartbeat(&mut tx, device_id, &channel, beat).await?;
    tx.commit().await?;
    Ok((channel, target))
}
