//! Embedded migrations, applied in order at every start inside one transaction each, tracked by
//! `PRAGMA user_version`. A store from a newer build is refused rather than guessed at.

use std::path::Path;

use rusqlite::Connection;

use super::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_sync.sql"),
    include_str!("migrations/0003_shared_records.sql"),
    include_str!("migrations/0004_printing.sql"),
    include_str!("migrations/0005_pick_slips.sql"),
    include_str!("migrations/0006_bookings.sql"),
    include_str!("migrations/0007_blob_refs.sql"),
    include_str!("migrations/0008_booking_states.sql"),
];

/// The newest schema version this build knows.
pub(super) fn known() -> i64 {
    MIGRATIONS.len() as i64
}

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = known();
    if current > known {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let err = |source| StoreError::Migration { version, source };
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(version, "store migrated");
    }
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
