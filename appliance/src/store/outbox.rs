//! The transactional outbox: `sync_event_logs`. Appended only inside a write's transaction, so an
//! event exists exactly when its change does; sequence numbers are gapless per device because the
//! counter moves in the same transaction (a rolled-back write leaves no hole).

use rusqlite::{Connection, OptionalExtension as _};
use sentra_protocol::{EntityKind, Event, Hlc, HlcClock, SCHEMA_VERSION};
use serde::Serialize;
use time::OffsetDateTime;

use super::{Ctx, Result, StoreError};

pub(super) fn append(
    conn: &Connection,
    ctx: &Ctx,
    now: OffsetDateTime,
    entity: EntityKind,
    entity_id: &str,
    op: &str,
    payload: &impl Serialize,
) -> Result<u64> {
    let (seq, last): (i64, String) = conn.query_row(
        "SELECT next_seq, last_hlc FROM outbox_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let last: Hlc = last
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("outbox_state.last_hlc: {e}")))?;
    let now_ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let hlc = HlcClock::new(last, HlcClock::DEFAULT_MAX_AHEAD_MS).tick(now_ms);
    let payload = serde_json::to_string(payload).expect("event payloads always serialise");
    conn.prepare_cached(
        "INSERT INTO sync_event_logs (seq, device_id, hlc, schema_version, entity, entity_id, op, payload, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute((seq, &ctx.device_id, hlc.to_string(), SCHEMA_VERSION, entity.as_str(), entity_id, op, payload, super::format_time(now)))?;
    conn.prepare_cached(
        "UPDATE outbox_state SET next_seq = next_seq + 1, last_hlc = ?1 WHERE id = 1",
    )?
    .execute([hlc.to_string()])?;
    Ok(seq as u64)
}

/// Events from `after_seq` on, in order, at most `limit`.
pub fn events_after(conn: &Connection, after_seq: u64, limit: u32) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, seq, hlc, schema_version, entity, entity_id, op, payload
         FROM sync_event_logs WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map((after_seq as i64, limit), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, u32>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (device_id, seq, hlc, schema_version, entity, entity_id, op, payload) = row?;
        out.push(Event {
            device_id,
            seq: seq as u64,
            hlc: hlc
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("event {seq} hlc: {e}")))?,
            schema_version,
            entity: EntityKind::parse(&entity).ok_or_else(|| {
                StoreError::Corrupt(format!("event {seq}: unknown entity {entity:?}"))
            })?,
            entity_id,
            op,
            payload: super::from_json("sync_event_logs.payload", &payload)?,
        });
    }
    Ok(out)
}

/// What the outbox holds, for `/v1/sync/status`, `status` and metrics.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutboxStatus {
    pub device_id: String,
    /// Events written so far (the last sequence number).
    pub last_seq: u64,
    /// Events not yet acknowledged by the cloud.
    pub pending_events: u64,
    pub pending_bytes: u64,
    /// When the oldest unacknowledged event was written.
    pub oldest_pending_at: Option<String>,
    /// The last sequence number the cloud acknowledged.
    pub last_acked_seq: Option<u64>,
    pub last_acked_at: Option<String>,
}

pub fn status(conn: &Connection, device_id: &str) -> Result<OutboxStatus> {
    let (pending, bytes, oldest): (i64, i64, Option<String>) = conn.query_row(
        "SELECT count(*), coalesce(sum(length(payload)), 0), min(created_at) FROM sync_event_logs WHERE acked_at IS NULL",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let next: i64 = conn.query_row("SELECT next_seq FROM outbox_state WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    let acked: Option<(i64, String)> = conn
        .query_row("SELECT seq, acked_at FROM sync_event_logs WHERE acked_at IS NOT NULL ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(OutboxStatus {
        device_id: device_id.to_owned(),
        last_seq: (next - 1) as u64,
        pending_events: pending as u64,
        pending_bytes: bytes as u64,
        oldest_pending_at: oldest,
        last_acked_seq: acked.as_ref().map(|a| a.0 as u64),
        last_acked_at: acked.map(|a| a.1),
    })
}

/// Check the outbox's own invariants: sequences 1..=last with no gap, counter one past the end.
pub fn check_gapless(conn: &Connection) -> Result<Result<u64, String>> {
    let (count, min, max): (i64, Option<i64>, Option<i64>) = conn.query_row(
        "SELECT count(*), min(seq), max(seq) FROM sync_event_logs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let next: i64 = conn.query_row("SELECT next_seq FROM outbox_state WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    let max = max.unwrap_or(0);
    if count != max || (count > 0 && min != Some(1)) || next != max + 1 {
        return Ok(Err(format!(
            "outbox has {count} events, seq {min:?}..={max}, next_seq {next}"
        )));
    }
    Ok(Ok(count as u64))
}
