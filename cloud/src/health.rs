//! Liveness and readiness.
//!
//! `GET /healthz` answers 200 whenever the process serves HTTP, and never looks at PostgreSQL or
//! Redis: an orchestrator restarts unhealthy replicas, and a database outage must not restart
//! them all. `GET /readyz` answers 200 only when this replica can do its work now: PostgreSQL
//! answers `SELECT 1` and Redis answers `PING`, each within [`CHECK_TIMEOUT`]; otherwise 503
//! `not_ready` naming every dependency that failed (the cause only in the log). On a Redis
//! Cluster the Redis check is `CLUSTER INFO` saying `cluster_state:ok` (every slot served by a
//! reachable master). A load balancer sends traffic only to ready replicas.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::redis_conn::RedisConn;
use crate::web::ApiError;

/// How long one dependency may take to answer a readiness check. Well under the usual probe
/// timeouts (a few seconds), so a hung dependency gives a clear 503 rather than a probe timeout.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "the process serves HTTP", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "PostgreSQL and Redis answer", body = Object)))]
pub async fn readyz(
    State(db): State<PgPool>,
    State(redis): State<RedisConn>,
) -> Result<Json<Value>, ApiError> {
    let (postgres, redis) = tokio::join!(check_postgres(&db), check_redis(redis));
    let mut failed = Vec::new();
    for (name, result) in [("postgresql", postgres), ("redis", redis)] {
        if let Err(error) = result {
            // The cause (addresses, user names, driver messages) goes to the log only: /readyz
            // is reachable by whoever reaches the replica.
            tracing::warn!(dependency = name, %error, "not ready");
            failed.push(format!(
                "{name}: not answering (the replica's log says why)"
            ));
        }
    }
    if failed.is_empty() {
        Ok(Json(json!({ "status": "ok" })))
    } else {
        Err(ApiError::NotReady(failed.join("; ")))
    }
}

async fn check_postgres(db: &PgPool) -> Result<(), String> {
    let query = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(db);
    match tokio::time::timeout(CHECK_TIMEOUT, query).await {
        Ok(Ok(1)) => Ok(()),
        Ok(Ok(other)) => Err(format!("SELECT 1 returned {other}")),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

async fn check_redis(redis: RedisConn) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, redis.check()).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}
