//! The fleet's SQL: a heartbeat stored with its history and its rollout moved on in one
//! transaction, the device list, a device's day, a rollout's devices. Every number the page,
//! `/v1/fleet` and `/metrics` show comes from these queries.

use std::time::Duration;

use sentra_protocol::fleet::Heartbeat;
use sqlx::PgPool;

use crate::web::ApiError;

use super::filter::{Filter, StateFilter};
use super::rollout;
use super::sql::{self, JUDGED, ROW_COLUMNS};
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

/// The filter's page of devices (every matching device with `limit` None), attention first.
async fn list(
    db: &PgPool,
    offline_after: Duration,
    filter: &Filter,
    limit: Option<i64>,
) -> Result<Vec<DeviceView>, sqlx::Error> {
    let rows: Vec<DeviceRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql::page()))
        .bind(secs(offline_after))
        .bind(filter.pattern())
        .bind(&filter.branch)
        .bind(&filter.version)
        .bind(filter.state.map(StateFilter::as_str))
        .bind(&filter.channel)
        .bind(limit)
        .bind(filter.offset())
        .fetch_all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| row.view(offline_after))
        .collect())
}

pub(super) fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Every device (not revoked) with its latest heartbeat, attention first (`devices list`).
pub async fn devices(db: &PgPool, offline_after: Duration) -> Result<Vec<DeviceView>, sqlx::Error> {
    list(db, offline_after, &Filter::default(), None).await
}

/// The fleet's counts, and how many devices match `filter`.
async fn summary(
    db: &PgPool,
    offline_after: Duration,
    filter: &Filter,
) -> Result<(Summary, usize), sqlx::Error> {
    let counts = sqlx::query_as::<_, (i64, i64, i64, i64)>(sqlx::AssertSqlSafe(sql::counts()))
        .bind(secs(offline_after))
        .bind(filter.pattern())
        .bind(&filter.branch)
        .bind(&filter.version)
        .bind(filter.state.map(StateFilter::as_str))
        .bind(&filter.channel)
        .fetch_one(db);
    let groups = sqlx::query_as::<_, (String, String, i64)>(sqlx::AssertSqlSafe(sql::groups()))
        .bind(secs(offline_after))
        .fetch_all(db);
    let ((devices, online, attention, matching), groups) = tokio::try_join!(counts, groups)?;
    let count = |n: i64| usize::try_from(n).unwrap_or(0);
    let mut summary = Summary {
        devices: count(devices),
        online: count(online),
        offline: count(devices - online),
        needing_attention: count(attention),
        ..Summary::default()
    };
    for (kind, key, n) in groups {
        let map = match kind.as_str() {
            "version" => &mut summary.by_version,
            "update" => &mut summary.by_update_state,
            _ => &mut summary.by_channel,
        };
        *map.entry(key).or_default() += count(n);
    }
    Ok((summary, count(matching)))
}

/// The fleet's counts, its recent rollouts, and the page of devices `filter` asks for.
pub async fn fleet_view(
    db: &PgPool,
    offline_after: Duration,
    filter: &Filter,
) -> Result<FleetView, sqlx::Error> {
    let (devices, (summary, matching), rollouts) = tokio::try_join!(
        list(db, offline_after, filter, Some(i64::from(filter.size))),
        summary(db, offline_after, filter),
        rollout::recent(db, 10),
    )?;
    let size = usize::try_from(filter.size).unwrap_or(1).max(1);
    Ok(FleetView {
        offline_after_secs: offline_after.as_secs(),
        summary,
        rollouts,
        page: PageInfo {
            page: filter.page,
            size: filter.size,
            matching,
            pages: matching.div_ceil(size).max(1),
        },
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
        "{JUDGED} {ROW_COLUMNS} FROM judged WHERE id = $2::uuid"
    )))
    .bind(secs(offline_after))
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
        "INSERT INTO device_heartbeats (device_id, received_at, version, update_state, healthy, backlog, backlog_bytes, backlog_oldest_secs, body, attention)
         VALUES ($1::uuid, now(), $2, $3, $4, $5, $6, $7, $8::jsonb, $9)
         ON CONFLICT (device_id) DO UPDATE SET received_at = now(), version = $2, update_state = $3, healthy = $4,
             backlog = $5, backlog_bytes = $6, backlog_oldest_secs = $7, body = $8::jsonb, attention = $9",
    )
    .bind(device_id)
    .bind(&beat.version)
    .bind(beat.update.state.as_str())
    .bind(beat.healthy)
    .bind(clamp(beat.backlog.count))
    .bind(clamp(beat.backlog.bytes))
    .bind(beat.backlog.oldest_age_secs.map(clamp))
    .bind(&body)
    .bind(!concerns(beat).is_empty())
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
