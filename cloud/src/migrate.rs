//! PostgreSQL schema migrations: the SQL files in `cloud/migrations/`, embedded in the binary,
//! and `sentra-cloud migrate`, which applies the ones a database lacks.
//!
//! `serve` never migrates. Several replicas start at once behind the load balancer, and during a
//! rollout old and new versions run side by side: if every replica migrated at start they would
//! race for the schema, an old replica could find a schema it does not know, and a migration
//! that fails would crash-loop every replica instead of failing one deploy step. Migrating is one
//! deliberate step of a deploy, run once before the new replicas start. (sqlx also takes an
//! advisory lock while it migrates, so two `migrate` runs at once are still safe.)
//!
//! The files are listed in [`MIGRATIONS`] by hand rather than found by `sqlx::migrate!`: that
//! macro needs sqlx's `migrate` and `macros` features, which pull SQLite into Cargo.lock where it
//! clashes with sentra-edge's SQLCipher (see cloud/Cargo.toml). Versions, descriptions and
//! checksums are computed exactly as the macro does, so the `_sqlx_migrations` table is the same
//! either way, and a unit test fails when a file in `migrations/` is missing from the list.

use std::borrow::Cow;
use std::time::Duration;

use sqlx::{Connection as _, PgConnection, SqlSafeStr as _};
use sqlx_core::migrate::{Migration, MigrationType, Migrator};

use crate::config::DatabaseConfig;

/// Every migration, in order: the file name (`<version>_<description>.sql`, as sqlx names them)
/// and its SQL, embedded at compile time.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init.sql", include_str!("../migrations/0001_init.sql")),
    ("0002_sync.sql", include_str!("../migrations/0002_sync.sql")),
    (
        "0003_booking.sql",
        include_str!("../migrations/0003_booking.sql"),
    ),
    (
        "0004_shared_records.sql",
        include_str!("../migrations/0004_shared_records.sql"),
    ),
    (
        "0006_fleet.sql",
        include_str!("../migrations/0006_fleet.sql"),
    ),
    (
        "0007_blobs.sql",
        include_str!("../migrations/0007_blobs.sql"),
    ),
    (
        "0008_notifications.sql",
        include_str!("../migrations/0008_notifications.sql"),
    ),
    (
        "0009_completion.sql",
        include_str!("../migrations/0009_completion.sql"),
    ),
    (
        "0010_identity.sql",
        include_str!("../migrations/0010_identity.sql"),
    ),
    (
        "0011_notify_plpgsql.sql",
        include_str!("../migrations/0011_notify_plpgsql.sql"),
    ),
    (
        "0013_owners_and_token_expiry.sql",
        include_str!("../migrations/0013_owners_and_token_expiry.sql"),
    ),
    (
        "0014_blob_upload_touched.sql",
        include_str!("../migrations/0014_blob_upload_touched.sql"),
    ),
    (
        "0015_successors.sql",
        include_str!("../migrations/0015_successors.sql"),
    ),
    (
        "0016_fleet_week_and_resume.sql",
        include_str!("../migrations/0016_fleet_week_and_resume.sql"),
    ),
    (
        "0017_fleet_attention.sql",
        include_str!("../migrations/0017_fleet_attention.sql"),
    ),
    (
        "0018_device_backups.sql",
        include_str!("../migrations/0018_device_backups.sql"),
    ),
    (
        "0019_rentals.sql",
        include_str!("../migrations/0019_rentals.sql"),
    ),
    (
        "0020_staff_and_day_close.sql",
        include_str!("../migrations/0020_staff_and_day_close.sql"),
    ),
    (
        "0021_stock_adjustments.sql",
        include_str!("../migrations/0021_stock_adjustments.sql"),
    ),
    (
        "0022_vehicles.sql",
        include_str!("../migrations/0022_vehicles.sql"),
    ),
    (
        "0023_payment_voids.sql",
        include_str!("../migrations/0023_payment_voids.sql"),
    ),
];

/// How long `migrate` waits for PostgreSQL to accept the connection: long enough for a database
/// that is still starting in the same deploy, short enough that a wrong URL fails the step.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("migration file name {0:?} is not <version>_<description>.sql")]
    FileName(&'static str),
    #[error("cannot connect to PostgreSQL at {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to PostgreSQL at {url}: no answer within {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("applying migrations failed")]
    Apply(#[source] sqlx_core::migrate::MigrateError),
}

/// Applies every migration the database lacks; returns the schema version it is now at.
pub async fn run(database: &DatabaseConfig) -> Result<i64, MigrateError> {
    let migrator = migrator()?;
    let url = format!("{:?}", database.url);
    let options = database.url.connect_options();
    let mut connection =
        tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| MigrateError::ConnectTimeout {
                url: url.clone(),
                timeout: CONNECT_TIMEOUT,
            })?
            .map_err(|source| MigrateError::Connect { url, source })?;
    migrator
        .run(&mut connection)
        .await
        .map_err(MigrateError::Apply)?;
    if let Err(error) = connection.close().await {
        tracing::warn!(%error, "closing the migration connection failed");
    }
    Ok(migrator
        .iter()
        .map(|migration| migration.version)
        .max()
        .unwrap_or(0))
}

/// Whether the database's schema is at this binary's version: every migration it embeds is
/// applied, successfully, with the same checksum. Migrations the database has beyond those are
/// fine: during a rollout the replicas of the release before still serve against the schema the
/// new release migrated, which the expand/contract rule (docs/deploy.md) keeps readable for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// Every embedded migration is applied.
    Current,
    /// `sentra-cloud migrate` has never run on this database.
    NotMigrated,
    /// These embedded versions are missing or failed: `migrate` has not run for this release.
    Behind { missing: Vec<i64> },
    /// These versions were applied from different SQL than this binary embeds.
    Changed { versions: Vec<i64> },
}

/// Reads `_sqlx_migrations` and compares it with the embedded migrations (one small query).
pub async fn schema_state(db: &sqlx::PgPool) -> Result<SchemaState, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(db)
            .await?;
    if !exists {
        return Ok(SchemaState::NotMigrated);
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(db)
            .await?;
    let Ok(migrator) = migrator() else {
        // The embedded names are checked by a unit test; a bad one means nothing can be current.
        return Ok(SchemaState::NotMigrated);
    };
    Ok(compare(&migrator, &applied))
}

fn compare(migrator: &Migrator, applied: &[(i64, Vec<u8>)]) -> SchemaState {
    if applied.is_empty() {
        return SchemaState::NotMigrated;
    }
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    for migration in migrator.iter() {
        match applied
            .iter()
            .find(|(version, _)| *version == migration.version)
        {
            None => missing.push(migration.version),
            Some((_, checksum)) if checksum[..] != migration.checksum[..] => {
                changed.push(migration.version)
            }
            Some(_) => {}
        }
    }
    if !changed.is_empty() {
        SchemaState::Changed { versions: changed }
    } else if !missing.is_empty() {
        SchemaState::Behind { missing }
    } else {
        SchemaState::Current
    }
}

/// The embedded migrations as sqlx's migrator, built the way `sqlx::migrate!` builds it.
fn migrator() -> Result<Migrator, MigrateError> {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(file_name, sql)| {
            let (version, description) =
                parse_file_name(file_name).ok_or(MigrateError::FileName(file_name))?;
            Ok(Migration::new(
                version,
                Cow::Owned(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                sql.starts_with("-- no-transaction"),
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Migrator::with_migrations(migrations))
}

/// `0001_init_tables.sql` → `(1, "init tables")`, as sqlx reads a migration's file name.
fn parse_file_name(file_name: &str) -> Option<(i64, String)> {
    let (version, rest) = file_name.split_once('_')?;
    let description = rest.strip_suffix(".sql")?;
    if description.ends_with(".up") || description.ends_with(".down") {
        return None; // reversible migrations are not used here
    }
    Some((version.parse().ok()?, description.replace('_', " ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_like_sqlx() {
        let cases = [
            ("0001_init.sql", Some((1, "init"))),
            ("0012_booking_holds.sql", Some((12, "booking holds"))),
            ("0002_x.up.sql", None),
            ("init.sql", None),
            ("0001_init.txt", None),
            ("v1_init.sql", None),
        ];
        for (name, expected) in cases {
            let expected = expected.map(|(version, description)| (version, description.to_owned()));
            assert_eq!(parse_file_name(name), expected, "{name}");
        }
    }

    #[test]
    fn the_schema_is_current_only_with_every_embedded_migration_applied_unchanged() {
        let migrator = migrator().expect("listed names parse");
        let all: Vec<(i64, Vec<u8>)> = migrator
            .iter()
            .map(|m| (m.version, m.checksum.to_vec()))
            .collect();
        assert_eq!(compare(&migrator, &all), SchemaState::Current);
        assert_eq!(compare(&migrator, &[]), SchemaState::NotMigrated);

        let mut newer = all.clone();
        newer.push((9999, vec![1, 2, 3]));
        assert_eq!(
            compare(&migrator, &newer),
            SchemaState::Current,
            "a schema the next release expanded still serves this one"
        );

        let last = all.last().expect("migrations exist").0;
        let behind: Vec<_> = all[..all.len() - 1].to_vec();
        assert_eq!(
            compare(&migrator, &behind),
            SchemaState::Behind {
                missing: vec![last]
            }
        );

        let mut edited = all.clone();
        edited[0].1 = vec![0; 48];
        assert_eq!(
            compare(&migrator, &edited),
            SchemaState::Changed {
                versions: vec![all[0].0]
            }
        );
    }

    #[test]
    fn every_file_in_migrations_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("cloud/migrations exists")
            .map(|entry| {
                entry
                    .expect("cloud/migrations is readable")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        on_disk.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        assert_eq!(
            listed, on_disk,
            "MIGRATIONS must list cloud/migrations/*.sql in order"
        );

        let migrator = migrator().expect("listed names parse");
        let versions: Vec<i64> = migrator.iter().map(|migration| migration.version).collect();
        assert!(
            versions.windows(2).all(|pair| pair[0] < pair[1]),
            "{versions:?}"
        );
    }
}
