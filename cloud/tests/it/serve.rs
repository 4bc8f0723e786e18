//! `sentra-cloud serve`: health, readiness and shutdown.

use std::time::Duration;

use serde_json::json;

use crate::booking_support::RedisProcess;
use crate::support::{Server, TestDb, closed_port, migrate, redis_url};

/// SIGTERM with no request in flight must not take anywhere near the grace period.
const PROMPT_EXIT: Duration = Duration::from_secs(3);

#[tokio::test]
async fn healthz_and_readyz_are_ok_when_postgres_and_redis_answer() {
    let db = TestDb::create().await;
    migrate(&db).await;
    let redis = redis_url();
    let server = Server::start(&[], &[("DATABASE_URL", db.url()), ("REDIS_URL", &redis)]).await;

    assert_eq!(
        server.get("/healthz").await,
        (200, json!({ "status": "ok" }))
    );
    let body = server.wait_for("/readyz", 200).await;
    assert_eq!(body, json!({ "status": "ok" }));

    let (status, _, _) = server.terminate().await;
    assert!(status.success());
}

/// The service's booking scripts: the lock's acquire and release, the calendar's reserve and
/// release.
const BOOKING_SCRIPTS: i64 = 4;
/// `startup::DB_WARM_CONNECTIONS`.
const DB_WARM_CONNECTIONS: i64 = 4;

#[tokio::test]
async fn a_replica_listens_only_once_its_connections_are_open_and_scripts_loaded() {
    let db = TestDb::create().await;
    migrate(&db).await;
    let redis = RedisProcess::start().await;
    let scripts = || async {
        let client = redis::Client::open(redis.url()).expect("redis url");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis answers");
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut connection)
            .await
            .expect("INFO");
        info.lines()
            .find_map(|line| line.strip_prefix("number_of_cached_scripts:"))
            .and_then(|n| n.trim().parse::<i64>().ok())
            .expect("INFO memory has number_of_cached_scripts")
    };
    assert_eq!(scripts().await, 0, "a new redis-server");

    let server = Server::start(
        &[],
        &[("DATABASE_URL", db.url()), ("REDIS_URL", &redis.url())],
    )
    .await;
    // At `listening on` and before any request: the first herd finds both warm.
    let mut check = db.connect().await;
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut check)
    .await
    .expect("pg_stat_activity");
    assert!(open >= DB_WARM_CONNECTIONS, "{open} connections open");
    assert_eq!(scripts().await, BOOKING_SCRIPTS);

    let (status, _, stderr) = server.terminate().await;
    assert!(status.success());
    assert!(stderr.contains("warmed up"), "{stderr}");
}

#[tokio::test]
async fn readyz_is_503_naming_redis_when_redis_is_down() {
    let db = TestDb::create().await;
    migrate(&db).await;
    let redis = format!("redis://127.0.0.1:{}", closed_port());
    let server = Server::start(&[], &[("DATABASE_URL", db.url()), ("REDIS_URL", &redis)]).await;

    assert_eq!(
        server.get("/healthz").await.0,
        200,
        "liveness ignores dependencies"
    );
    let body = server.wait_for("/readyz", 503).await;
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("redis: "), "{body}");
    assert!(!message.contains("postgresql"), "postgres is fine: {body}");
    assert!(
        !message.contains(&redis[8..]),
        "the dependency's address and error stay in the log: {body}"
    );

    let (status, _, _) = server.terminate().await;
    assert!(status.success());
}

#[tokio::test]
async fn readyz_is_503_naming_postgresql_when_postgres_is_down() {
    let database = format!("postgres://postgres@127.0.0.1:{}/none", closed_port());
    let redis = redis_url();
    let server = Server::start(&[], &[("DATABASE_URL", &database), ("REDIS_URL", &redis)]).await;

    let body = server.wait_for("/readyz", 503).await;
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("postgresql: "), "{body}");
    assert!(!message.contains("redis"), "redis is fine: {body}");
    assert!(
        !message.contains("127.0.0.1") && !message.contains("refused"),
        "the database's address and error stay in the log: {body}"
    );

    let (status, _, _) = server.terminate().await;
    assert!(status.success());
}

#[tokio::test]
async fn readyz_waits_for_migrate_on_a_database_never_migrated() {
    let db = TestDb::create().await;
    let redis = redis_url();
    let server = Server::start(&[], &[("DATABASE_URL", db.url()), ("REDIS_URL", &redis)]).await;

    // A replica of a new release started before its deploy's migration step: alive, not ready,
    // and saying what the deployer must do.
    assert_eq!(server.get("/healthz").await.0, 200);
    let body = server.wait_for("/readyz", 503).await;
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("postgresql: ") && message.contains("sentra-cloud migrate"),
        "{body}"
    );
    assert!(!message.contains("redis"), "redis is fine: {body}");

    migrate(&db).await;
    let body = server.wait_for("/readyz", 200).await;
    assert_eq!(body, json!({ "status": "ok" }));
    let (status, _, _) = server.terminate().await;
    assert!(status.success());
}

#[tokio::test]
async fn readyz_is_503_when_the_database_lacks_this_releases_last_migration() {
    let db = TestDb::create().await;
    migrate(&db).await;
    // The schema an older release left: its newest migration not applied yet.
    let mut connection = db.connect().await;
    let newest: i64 = sqlx::query_scalar(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)
         RETURNING version",
    )
    .fetch_one(&mut connection)
    .await
    .expect("forget the newest migration");
    let redis = redis_url();
    let server = Server::start(&[], &[("DATABASE_URL", db.url()), ("REDIS_URL", &redis)]).await;

    let body = server.wait_for("/readyz", 503).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("[{newest}]")) && message.contains("sentra-cloud migrate"),
        "{body}"
    );
    let (status, _, _) = server.terminate().await;
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_stops_serve_promptly_with_exit_0() {
    let db = TestDb::create().await;
    migrate(&db).await;
    let redis = redis_url();
    let server = Server::start(&[], &[("DATABASE_URL", db.url()), ("REDIS_URL", &redis)]).await;
    server.wait_for("/readyz", 200).await;

    let (status, took, stderr) = server.terminate().await;
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(took < PROMPT_EXIT, "took {took:?} to stop");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}

#[tokio::test]
async fn passwords_never_reach_the_log_or_the_client() {
    let database = format!(
        "postgres://sentra:pg-secret-pw@127.0.0.1:{}/none",
        closed_port()
    );
    let redis = format!("redis://:redis-secret-pw@127.0.0.1:{}", closed_port());
    let server = Server::start(&[], &[("DATABASE_URL", &database), ("REDIS_URL", &redis)]).await;

    let body = server.wait_for("/readyz", 503).await;
    let (_, _, stderr) = server.terminate().await;
    assert!(
        stderr.contains("sentra:***@127.0.0.1"),
        "the config is logged: {stderr}"
    );
    for secret in ["pg-secret-pw", "redis-secret-pw"] {
        assert!(!stderr.contains(secret), "{secret} in the log:\n{stderr}");
        assert!(
            !body.to_string().contains(secret),
            "{secret} in /readyz: {body}"
        );
    }
}
