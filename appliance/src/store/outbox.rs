//! The transactional outbox: `sync_event_logs`. Appended only inside a write's transaction, so an
//! event exists exactly when its change does; sequence numbers are gapless per device because
//! the next one is one past the newest event, read in the same transaction (a rolled-back write
//! leaves no hole). An append writes the event's row and nothing else of the outbox's: the
//! counter, the clock and the byte count are derived (migration 0017, the `outbox_state` view),
//! so a commit seals one page fewer. What the cloud holds is a cursor
//! (`sync_state.last_ack_seq`), not a flag per row, so acknowledging a batch is one small update
//! however long the backlog.

use rusqlite::{Connection, OptionalExtension as _};
use sentra_protocol::{EntityKind, Event, Hlc, HlcClock, SCHEMA_VERSION};
use serde::Serialize;
use time::OffsetDateTime;

use super::{Ctx, Result, StoreError};

/// How many events an append leaves uncounted in `outbox_clock.total_bytes` before it folds them
/// in: the pending bytes `status` reports are at most this many payloads away, and the fold costs
/// one more page once in this many commits.
pub(super) const FOLD_EVERY: i64 = 256;

/// Where the outbox stands, from the view: the next sequence number, the clock (the later of the
/// newest event's stamp and the last one observed), and how far the byte count is folded.
const STANDING: &str = "SELECT next_seq, last_hlc, counted_through FROM outbox_state WHERE id = 1";

fn parse_clock(last: &str) -> Result<Hlc> {
    last.parse()
        .map_err(|e| StoreError::Corrupt(format!("outbox clock: {e}")))
}

pub(super) fn append(
    conn: &Connection,
    ctx: &Ctx,
    now: OffsetDateTime,
    (entity, entity_id, op): (EntityKind, &str, &str),
    payload: &impl Serialize,
    acting: &super::writer::Acting,
) -> Result<(u64, Hlc)> {
    let (seq, last, counted): (i64, String, i64) = conn
        .prepare_cached(STANDING)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    // The HLC follows the cloud's clock as the sync daemon measured it, so a box whose clock is
    // off does not lose (or always win) last-writer-wins against everyone else.
    let hlc = HlcClock::new(parse_clock(&last)?, HlcClock::DEFAULT_MAX_AHEAD_MS)
        .tick(ctx.clock.corrected_ms(now));
    let payload = serde_json::to_string(payload).expect("event payloads always serialise");
    conn.prepare_cached(
        "INSERT INTO sync_event_logs (seq, device_id, hlc, schema_version, entity, entity_id, op, payload, created_at, acting_device, acting_staff)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(rusqlite::params![seq, ctx.device_id, hlc.to_string(), SCHEMA_VERSION, entity.as_str(), entity_id, op, payload, super::format_time(now), acting.device, acting.staff])?;
    if seq.saturating_sub(counted) >= FOLD_EVERY {
        let bytes = payload_bytes(conn, counted, seq)?;
        conn.prepare_cached(
            "UPDATE outbox_clock SET total_bytes = total_bytes + ?1, counted_through = ?2 WHERE id = 1",
        )?
        .execute((bytes, seq))?;
    }
    Ok((seq as u64, hlc))
}

/// The payload bytes (UTF-8, as `payload.len()` counts them) of the events with
/// `after < seq <= through`: what the outbox's byte counts add and acknowledge.
pub(super) fn payload_bytes(conn: &Connection, after: i64, through: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM sync_event_logs
             WHERE seq > ?1 AND seq <= ?2",
        )?
        .query_row((after, through), |r| r.get(0))?)
}

/// Sequence numbers from `fork` on moved up by `shift` (a renumbering after a fork): the byte
/// count's mark moves with the events it counted.
pub(super) fn shifted(conn: &Connection, fork: i64, shift: i64) -> Result<()> {
    conn.execute(
        "UPDATE outbox_clock SET counted_through = counted_through + ?2 WHERE id = 1 AND counted_through >= ?1",
        (fork, shift),
    )?;
    Ok(())
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
    let last: String = conn.prepare_cached(STANDING)?.query_row([], |r| r.get(1))?;
    let mut clock = HlcClock::new(parse_clock(&last)?, HlcClock::DEFAULT_MAX_AHEAD_MS);
    if let Err(error) = clock.observe(remote, ctx.clock.corrected_ms(now)) {
        return Ok(Err(error));
    }
    conn.prepare_cached("UPDATE outbox_clock SET last_hlc = ?1 WHERE id = 1")?
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::Connection;
    use sentra_protocol::EntityKind;
    use time::OffsetDateTime;

    use super::super::{CloudClock, Ctx, writer::Acting};

    fn store() -> Connection {
        let mut conn = Connection::open_in_memory().expect("in-memory database");
        super::super::schema::migrate(&mut conn, Path::new(":memory:")).expect("migrations");
        conn
    }

    fn ctx() -> Ctx {
        Ctx {
            device_id: "box-1".into(),
            branch_id: "branch-1".into(),
            utc_offset: time::UtcOffset::UTC,
            clock: CloudClock::default(),
        }
    }

    /// This build's append, with a payload of `size` bytes (one of them not ASCII).
    fn append(conn: &Connection, size: usize) -> u64 {
        let note = format!("é{}", "x".repeat(size.saturating_sub(12)));
        let payload = serde_json::json!({ "n": note });
        let (seq, _) = super::append(
            conn,
            &ctx(),
            OffsetDateTime::now_utc(),
            (EntityKind::WorkOrder, "wo-1", "updated"),
            &payload,
            &Acting::default(),
        )
        .expect("append");
        seq
    }

    /// A build from before migration 0017 appending, as it did: its statements word for word,
    /// against the view and its trigger.
    fn append_as_older_build(conn: &Connection, payload: &str) -> i64 {
        let (seq, last): (i64, String) = conn
            .query_row(
                "SELECT next_seq, last_hlc FROM outbox_state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("older build reads the counter");
        let last: sentra_protocol::Hlc = last.parse().expect("older build parses the clock");
        let hlc =
            sentra_protocol::HlcClock::new(last, sentra_protocol::HlcClock::DEFAULT_MAX_AHEAD_MS)
                .tick(ctx().clock.corrected_ms(OffsetDateTime::now_utc()));
        conn.execute(
            "INSERT INTO sync_event_logs (seq, device_id, hlc, schema_version, entity, entity_id, op, payload, created_at)
             VALUES (?1, 'box-1', ?2, 1, 'work_order', 'wo-1', 'updated', ?3, '2026-12-07T00:00:00Z')",
            (seq, hlc.to_string(), payload),
        )
        .expect("older build inserts its event");
        conn.execute(
            "UPDATE outbox_state SET next_seq = next_seq + 1, last_hlc = ?1, total_bytes = total_bytes + ?2 WHERE id = 1",
            (hlc.to_string(), payload.len() as i64),
        )
        .expect("older build moves the counter");
        seq
    }

    /// Every event's payload bytes, counted the long way.
    fn all_bytes(conn: &Connection) -> i64 {
        conn.query_row(
            "SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM sync_event_logs",
            [],
            |r| r.get(0),
        )
        .expect("sum")
    }

    /// One column of every event, in sequence order.
    fn events<T: rusqlite::types::FromSql>(conn: &Connection, column: &str) -> Vec<T> {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {column} FROM sync_event_logs ORDER BY seq"
            ))
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("events")
    }

    fn seqs(conn: &Connection) -> Vec<i64> {
        events(conn, "seq")
    }

    fn hlcs(conn: &Connection) -> Vec<String> {
        events(conn, "hlc")
    }

    #[test]
    fn an_append_writes_its_event_and_leaves_the_counter_alone() {
        let conn = store();
        let clock = || -> (String, i64, i64) {
            conn.query_row(
                "SELECT last_hlc, total_bytes, counted_through FROM outbox_clock",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("clock")
        };
        let before = clock();
        assert_eq!(append(&conn, 40), 1);
        assert_eq!(append(&conn, 40), 2);
        assert_eq!(clock(), before, "an append writes no row of outbox_clock");
        let status = super::status(&conn, "box-1").expect("status");
        assert_eq!((status.last_seq, status.pending_events), (2, 2));
        assert_eq!(status.pending_bytes as i64, all_bytes(&conn));
    }

    #[test]
    fn the_byte_count_is_folded_every_few_hundred_events() {
        let conn = store();
        let n = super::FOLD_EVERY * 2 + 7;
        for _ in 0..n {
            append(&conn, 100);
        }
        assert_eq!(seqs(&conn), (1..=n).collect::<Vec<_>>(), "gapless");
        let counted: i64 = conn
            .query_row("SELECT counted_through FROM outbox_clock", [], |r| r.get(0))
            .expect("counted_through");
        assert!(
            counted >= n - super::FOLD_EVERY && counted < n,
            "folded up to {counted} of {n}"
        );
        let status = super::status(&conn, "box-1").expect("status");
        assert_eq!(status.pending_bytes as i64, all_bytes(&conn));
        assert!(hlcs(&conn).windows(2).all(|w| w[0] < w[1]), "stamps rise");
    }

    /// A rollback after an update: a build from before 0017 writes into the store this one
    /// migrated, through the view, and then this build writes again. One gapless sequence, one
    /// rising clock, every byte counted once.
    #[test]
    fn an_older_build_numbers_on_where_this_one_stopped_and_back() {
        let conn = store();
        for _ in 0..3 {
            append(&conn, 60);
        }
        for n in 4..=6 {
            assert_eq!(append_as_older_build(&conn, r#"{"n":"older, ü"}"#), n);
        }
        // The older build's status and acknowledgement reads.
        let (next, total): (i64, i64) = conn
            .query_row(
                "SELECT next_seq, total_bytes FROM outbox_state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("older status");
        assert_eq!((next, total), (7, all_bytes(&conn)));
        // The older build's observing a stamp from the cloud moves the clock this build reads.
        let ahead = format!(
            "{:015}-{:010}",
            OffsetDateTime::now_utc().unix_timestamp() * 1000 + 60_000,
            3
        );
        conn.execute(
            "UPDATE outbox_state SET last_hlc = ?1 WHERE id = 1",
            [&ahead],
        )
        .expect("older observe");
        assert_eq!(append(&conn, 60), 7);
        let stamps = hlcs(&conn);
        assert!(
            stamps.windows(2).all(|w| w[0] < w[1]),
            "stamps rise: {stamps:?}"
        );
        assert!(stamps[6] > ahead, "after the observed stamp");
        assert_eq!(seqs(&conn), (1..=7).collect::<Vec<_>>());
        let status = super::status(&conn, "box-1").expect("status");
        assert_eq!(status.pending_bytes as i64, all_bytes(&conn));
    }

    /// A renumbering after a restored backup's fork, by this build and by an older one: the
    /// next number follows the moved events and no byte is counted twice, even where the fold's
    /// mark is past the fork.
    #[test]
    fn a_renumbering_keeps_the_count_whichever_build_does_it() {
        for older in [false, true] {
            let conn = store();
            let n = super::FOLD_EVERY + 20;
            for _ in 0..n {
                append(&conn, 50);
            }
            let counted: i64 = conn
                .query_row("SELECT counted_through FROM outbox_clock", [], |r| r.get(0))
                .expect("counted");
            let (fork, shift) = (counted - 5, 3);
            for table in ["sync_event_logs", "blob_refs"] {
                conn.execute(
                    &format!("UPDATE {table} SET seq = -(seq + ?1) WHERE seq >= ?2"),
                    (shift, fork),
                )
                .expect("shift");
                conn.execute(&format!("UPDATE {table} SET seq = -seq WHERE seq < 0"), [])
                    .expect("back");
            }
            if older {
                conn.execute(
                    "UPDATE outbox_state SET next_seq = next_seq + ?1 WHERE id = 1",
                    [shift],
                )
                .expect("older renumber");
            } else {
                super::shifted(&conn, fork, shift).expect("renumber");
            }
            let status = super::status(&conn, "box-1").expect("status");
            assert_eq!(status.last_seq as i64, n + shift, "older: {older}");
            assert_eq!(
                status.pending_bytes as i64,
                all_bytes(&conn),
                "older: {older}"
            );
            assert_eq!(append(&conn, 50) as i64, n + shift + 1);
        }
    }
}
