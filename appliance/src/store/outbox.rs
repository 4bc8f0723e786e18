//! The transactional outbox: `sync_event_logs`. Appended only inside a write's transaction, so an
//! event exists exactly when its change does; sequence numbers are gapless per device because the
//! counter moves in the same transaction (a rolled-back write leaves no hole). What the cloud
//! holds is a cursor (`sync_state.last_ack_seq`), not a flag per row, so acknowledging a batch
//! is one small update however long the backlog.

use rusqlite::{Connection, OptionalExtension as _};
use sentra_protocol::{EntityKind, Event, Hlc, HlcClock, SCHEMA_VERSION};
use serde::Serialize;
use time::OffsetDateTime;

use super::{Ctx, Result, StoreError};

pub(super) fn append(
    conn: &Connection,
    ctx: &Ctx,
    now: OffsetDateTime,
    (entity, entity_id, op): (EntityKind, &str, &str),
    payload: &impl Serialize,
    acting: &super::writer::Acting,
) -> Result<(u64, Hlc)> {
    let (seq, last): (i64, String) = conn
        .prepare_cached("SELECT next_seq, last_hlc FROM outbox_state WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let last: Hlc = last
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("outbox_state.last_hlc: {e}")))?;
    // The HLC follows the cloud's clock as the sync daemon measured it, so a box whose clock is
    // off does not lose (or always win) last-writer-wins against everyone else.
    let hlc = HlcClock::new(last, HlcClock::DEFAULT_MAX_AHEAD_MS).tick(ctx.clock.corrected_ms(now));
    let payload = serde_json::to_string(payload).expect("event payloads always serialise");
    let bytes = payload.len() as i64;
    conn.prepare_cached(
        "INSERT INTO sync_event_logs (seq, device_id, hlc, schema_version, entity, entity_id, op, payload, created_at, acting_device, acting_staff)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(rusqlite::params![seq, ctx.device_id, hlc.to_string(), SCHEMA_VERSION, entity.as_str(), entity_id, op, payload, super::format_time(now), acting.device, acting.staff])?;
    conn.prepare_cached("UPDATE outbox_state SET next_seq = next_seq + 1, last_hlc = ?1, total_bytes = total_bytes + ?2 WHERE id = 1")?
        .execute((hlc.to_string(), bytes))?;
    Ok((seq as u64, hlc))
}

/// Moves the clock past a stamp pulled from the cloud, so this box's next edit of a
/// last-writer-wins field is stamped after it. A stamp too far ahead of the (cloud-corrected)
/// clock is not followed; the error says so.
pub(super) fn observe(
    conn: &Connection,
    ctx: &Ctx,
    now: OffsetDateTime,
    remote: Hlc,
) -> Result<std::result::Result<(), sentra_protocol::HlcError>> {
    let last: String =
        conn.query_row("SELECT last_hlc FROM outbox_state WHERE id = 1", [], |r| {
            r.get(0)
        })?;
    let last: Hlc = last
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("outbox_state.last_hlc: {e}")))?;
    let mut clock = HlcClock::new(last, HlcClock::DEFAULT_MAX_AHEAD_MS);
    if let Err(error) = clock.observe(remote, ctx.clock.corrected_ms(now)) {
        return Ok(Err(error));
    }
    conn.prepare_cached("UPDATE outbox_state SET last_hlc = ?1 WHERE id = 1")?
        .execute([clock.last().to_string()])?;
    Ok(Ok(()))
}

/// Events after `after_seq`, in order: at most `max_events`, and stopping before `max_bytes` of
/// payload (but always at least one event, so an oversized event still moves).
pub fn events_after(
    conn: &Connection,
    after_seq: u64,
    max_events: u32,
    max_bytes: usize,
) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, seq, hlc, schema_version, entity, entity_id, op, payload
         FROM sync_event_logs WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query((after_seq as i64, max_events))?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(1)?;
        let payload: String = r.get(7)?;
        bytes += payload.len();
        if bytes > max_bytes && !out.is_empty() {
            break;
        }
        let hlc: String = r.get(2)?;
        let entity: String = r.get(4)?;
        out.push(Event {
            device_id: r.get(0)?,
            seq: seq as u64,
            hlc: hlc
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("event {seq} hlc: {e}")))?,
            schema_version: r.get(3)?,
            entity: EntityKind::parse(&entity).ok_or_else(|| {
                StoreError::Corrupt(format!("event {seq}: unknown entity {entity:?}"))
            })?,
            entity_id: r.get(5)?,
            op: r.get(6)?,
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
    /// The last sequence number the cloud acknowledged (0: none yet).
    pub last_acked_seq: u64,
    pub last_acked_at: Option<String>,
}

pub fn status(conn: &Connection, device_id: &str) -> Result<OutboxStatus> {
    let (next, total): (i64, i64) = conn.query_row(
        "SELECT next_seq, total_bytes FROM outbox_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (acked, acked_bytes, acked_at): (i64, i64, Option<String>) = conn.query_row(
        "SELECT last_ack_seq, acked_bytes, last_ack_at FROM sync_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let oldest: Option<String> = conn
        .prepare_cached(
            "SELECT created_at FROM sync_event_logs WHERE seq > ?1 ORDER BY seq LIMIT 1",
        )?
        .query_row([acked], |r| r.get(0))
        .optional()?;
    let last_seq = (next - 1) as u64;
    Ok(OutboxStatus {
        device_id: device_id.to_owned(),
        last_seq,
        pending_events: last_seq.saturating_sub(acked as u64),
        pending_bytes: (total - acked_bytes).max(0) as u64,
        oldest_pending_at: oldest,
        last_acked_seq: acked as u64,
        last_acked_at: acked_at,
    })
}
