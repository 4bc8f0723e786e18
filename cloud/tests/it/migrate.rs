//! `sentra-cloud migrate` against a fresh database.

use sqlx::Row as _;

use crate::support::{TestDb, closed_port, migrate, run};

/// Every pod of a deploy may run `migrate` at once (an init container in each, say): sqlx's
/// advisory lock makes them take turns, so all succeed and each migration is applied once.
#[tokio::test]
async fn four_migrate_runs_at_once_all_succeed_and_apply_each_migration_once() {
    let db = TestDb::create().await;
    let env = [("DATABASE_URL", db.url())];
    let runs = (0..4).map(|_| run(&["migrate"], &env));
    for output in futures_util::future::join_all(runs).await {
        assert!(output.status.success(), "migrate failed: {}", output.stderr);
    }
    let mut connection = db.connect().await;
    let (rows, versions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT version) FROM _sqlx_migrations WHERE success",
    )
    .fetch_one(&mut connection)
    .await
    .expect("read _sqlx_migrations");
    assert_eq!(rows, versions, "no migration recorded twice");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations dir")
        .count();
    assert_eq!(usize::try_from(rows).ok(), Some(files));
}

#[tokio::test]
async fn migrate_creates_the_tables_and_can_run_twice() {
    let db = TestDb::create().await;
    migrate(&db).await;
    migrate(&db).await;

    let mut connection = db.connect().await;
    let columns = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name IN ('branches', 'devices')
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut connection)
    .await
    .expect("read information_schema");
    let columns: Vec<String> = columns
        .iter()
        .map(|row| {
            format!(
                "{}.{} {} {}",
                row.get::<String, _>(0),
                row.get::<String, _>(1),
                row.get::<String, _>(2),
                row.get::<String, _>(3)
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            "branches.id text NO",
            "branches.name text NO",
            "branches.created_at timestamp with time zone NO",
            "branches.change_seq bigint NO",
            "devices.id uuid NO",
            "devices.branch_id text NO",
            "devices.public_key bytea YES",
            "devices.created_at timestamp with time zone NO",
            "devices.revoked_at timestamp with time zone YES",
            "devices.hostname text YES",
            "devices.version text YES",
            "devices.channel text NO",
            "devices.replaces uuid YES",
            "devices.replaced_by uuid YES",
            "devices.replaced_at timestamp with time zone YES",
            "devices.number_series text YES",
        ]
    );

    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut connection)
            .await
            .expect("read _sqlx_migrations");
    let mut files: Vec<i64> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations dir")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.split_once('_')?.0.parse().ok()
        })
        .collect();
    files.sort_unstable();
    assert_eq!(
        applied, files,
        "every migration file applied once, not twice"
    );

    let partitions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")
            .fetch_one(&mut connection)
            .await
            .expect("read pg_inherits");
    assert_eq!(partitions, 8, "events is partitioned by branch");

    let orphan = sqlx::query(
        "INSERT INTO devices (id, branch_id) VALUES ('00000000-0000-0000-0000-000000000001', 'nowhere')",
    )
    .execute(&mut connection)
    .await;
    assert!(
        orphan.is_err(),
        "a device must belong to an existing branch"
    );
}

#[tokio::test]
async fn migrate_without_postgres_exits_1() {
    let url = format!("postgres://postgres@127.0.0.1:{}/none", closed_port());
    let output = run(&["migrate"], &[("DATABASE_URL", &url)]).await;
    assert_eq!(output.status.code(), Some(1), "stderr: {}", output.stderr);
    assert!(
        output
            .stderr
            .contains("cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:"),
        "{}",
        output.stderr
    );
}
