//! `sentra-cloud serve`: health, readiness and shutdown.

use std::time::Duration;

use serde_json::json;

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
