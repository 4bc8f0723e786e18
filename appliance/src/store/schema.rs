//! Embedded migrations, applied in order at every start inside one transaction each, tracked by
//! `PRAGMA user_version`.
//!
//! Each migration says the oldest schema version whose build can still use a store it migrated
//! (`readable_by`): its own version for a change older builds would misread (a rebuilt table),
//! an earlier one for an additive change (a new table, a new column with a default) that older
//! builds simply do not see. The store keeps the highest of them as `meta.min_reader_version`.
//! A build opens a store from a newer one when that minimum is not above what it knows, without
//! migrating anything, so an update that migrated and then failed its health window rolls back
//! to a release that serves again, and what the newer release wrote stays in the file (its
//! outbox events included). A newer store below that line is refused rather than guessed at.

use std::path::Path;

use rusqlite::Connection;

use super::{Result, StoreError};

/// Each migration with its `readable_by`: the oldest schema version that can use a store it
/// migrated. Up to 8 each changed what older builds would read, so each names its own version;
/// 9 only adds nullable columns to `devices` that builds from 8 ignore, so it keeps 8; 10 only
/// adds the rental counter's tables, so it keeps 8 too. The stock adjustments' migration adds
/// `work_order_parts.returned`, which older builds would not subtract when invoicing: its own.
/// 0013 (vehicles) adds nullable columns and indexes, so it names no newer version; 0014 (voids)
/// adds a table a void moves a payment into, so older builds, summing `payments`, read it right.
/// 0015 (the broker's persistent sessions) adds tables only older builds never read: it keeps 8.
/// 0016 rebuilds an index in ascending order under its old name and columns: it keeps 8.
/// 0017 derives the outbox counter from the events and leaves `outbox_state` as a view whose
/// trigger takes older builds' updates with the same meaning: it keeps 8.
const MIGRATIONS: &[(&str, i64)] = &[
    (include_str!("migrations/0001_init.sql"), 1),
    (include_str!("migrations/0002_sync.sql"), 2),
    (include_str!("migrations/0003_shared_records.sql"), 3),
    (include_str!("migrations/0004_printing.sql"), 4),
    (include_str!("migrations/0005_pick_slips.sql"), 5),
    (include_str!("migrations/0006_bookings.sql"), 6),
    (include_str!("migrations/0007_blob_refs.sql"), 7),
    (include_str!("migrations/0008_booking_states.sql"), 8),
    (include_str!("migrations/0009_device_credentials.sql"), 8),
    (include_str!("migrations/0010_rentals.sql"), 8),
    (include_str!("migrations/0011_staff_day.sql"), 8),
    (include_str!("migrations/0012_stock_adjustments.sql"), 12),
    (include_str!("migrations/0013_vehicles.sql"), 8),
    (include_str!("migrations/0014_payment_voids.sql"), 8),
    (include_str!("migrations/0015_mqtt_sessions.sql"), 8),
    (include_str!("migrations/0016_vehicle_history_index.sql"), 8),
    (
        include_str!("migrations/0017_outbox_counter_derived.sql"),
        8,
    ),
];

/// Where [`MIGRATIONS`]' `readable_by` accumulates.
const MIN_READER: &str = "min_reader_version";

/// The newest schema version this build knows.
pub(super) fn known() -> i64 {
    MIGRATIONS.len() as i64
}

/// Whether this build can use a store at schema `version`: refused (`TooNew`) when it is newer
/// and its migrations say older builds would misread it.
pub(super) fn check_readable(conn: &Connection, version: i64, path: &Path) -> Result<()> {
    let known = known();
    if version <= known {
        return Ok(());
    }
    let min_reader = super::meta(conn, MIN_READER)?
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(version);
    if min_reader > known {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
            known,
        });
    }
    tracing::warn!(
        version,
        known,
        min_reader,
        "the store is from a newer release whose migrations this one can read; using it as it is"
    );
    Ok(())
}

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    check_readable(conn, current, path)?;
    let pending: Vec<_> = MIGRATIONS
        .iter()
        .enumerate()
        .skip(current.max(0) as usize)
        .map(|(i, step)| (i as i64 + 1, step))
        .collect();
    // A new store is made in one transaction: one commit (and fsync) instead of one per
    // migration, which is most of a new box's first start. An existing store moves one step per
    // transaction. Either way each transaction is all or nothing.
    let per_transaction = if current == 0 {
        pending.len().max(1)
    } else {
        1
    };
    for steps in pending.chunks(per_transaction) {
        let (Some((first, _)), Some((version, _))) = (steps.first(), steps.last()) else {
            continue;
        };
        let tx = conn.transaction().map_err(|source| StoreError::Migration {
            version: *first,
            source,
        })?;
        for (v, step) in steps {
            apply(&tx, *v, step)?;
        }
        tx.commit().map_err(|source| StoreError::Migration {
            version: *version,
            source,
        })?;
        tracing::info!(version, "store migrated");
    }
    Ok(())
}

/// One migration inside the caller's transaction: its SQL, the oldest binary that can still read
/// the result, and the store's version.
fn apply(conn: &Connection, version: i64, (sql, readable_by): &(&str, i64)) -> Result<()> {
    let err = |source| StoreError::Migration { version, source };
    conn.execute_batch(sql).map_err(err)?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE
         SET value = CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
        (MIN_READER, readable_by.to_string()),
    )
    .map_err(err)?;
    conn.pragma_update(None, "user_version", version)
        .map_err(err)?;
    Ok(())
}

/// This box's device id, made once when the store is created.
pub(super) fn device_id(conn: &Connection) -> Result<String> {
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('device_id', ?1)",
        [super::new_id()],
    )?;
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'device_id'", [], |r| {
            r.get(0)
        })?,
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::Connection;

    /// A store at 0016 with events and a clock moved past them by the cloud: after 0017 the
    /// view says what the table said, and the next event follows the last.
    #[test]
    fn the_outbox_counter_carries_over_into_0017() {
        let mut conn = Connection::open_in_memory().expect("in-memory database");
        for (v, step) in super::MIGRATIONS[..16].iter().enumerate() {
            super::apply(&conn, v as i64 + 1, step).expect("migration up to 0016");
        }
        conn.execute_batch(
            "INSERT INTO sync_event_logs (seq, device_id, hlc, schema_version, entity, entity_id, op, payload, created_at)
             VALUES (1, 'box-1', '001765000000000-0000000000', 1, 'work_order', 'wo-1', 'created', '{\"n\":\"ü\"}', 't'),
                    (2, 'box-1', '001765000000001-0000000000', 1, 'work_order', 'wo-1', 'updated', '{}', 't');
             UPDATE outbox_state SET next_seq = 3, last_hlc = '001765000000009-0000000002', total_bytes = 12;",
        )
        .expect("a store's outbox at 0016");
        super::migrate(&mut conn, Path::new(":memory:")).expect("0017");
        let standing: (i64, String, i64) = conn
            .query_row(
                "SELECT next_seq, last_hlc, total_bytes FROM outbox_state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("the view");
        assert_eq!(standing, (3, "001765000000009-0000000002".to_owned(), 12));
    }
}
