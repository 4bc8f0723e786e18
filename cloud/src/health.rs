//! Liveness and readiness.
//!
//! `GET /healthz` answers 200 whenever the process serves HTTP, and never looks at PostgreSQL or
//! Redis: an orchestrator restarts unhealthy replicas, and a database outage must not restart
//! them all. `GET /readyz` answers 200 only when this replica can do its work now: PostgreSQL
//! answers and holds the schema this binary was built for (every embedded migration applied,
//! unchanged: a replica started before its release's `migrate` step ran waits, unready, instead
//! of failing requests on missing columns), and Redis answers `PING`, each within
//! [`CHECK_TIMEOUT`]; otherwise 503 `not_ready` naming every dependency that failed (the cause
//! only in the log). On a Redis Cluster the Redis check is `CLUSTER INFO` saying
//! `cluster_state:ok` (every slot served by a reachable master). A load balancer sends traffic
//! only to ready replicas.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::migrate::{SchemaState, schema_state};
use crate::redis_conn::RedisConn;
use crate::web::ApiError;

/// How long one dependency may take to answer a readiness check. Well under the usual probe
/// timeouts (a few seconds), so a hung dependency gives a clear 503 rather than a probe timeout.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "the process serves HTTP", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "PostgreSQL answers at this release's schema, Redis answers", body = Object)))]
pub async fn readyz(
    State(db): State<PgPool>,
    State(redis): State<RedisConn>,
) -> Result<Json<Value>, ApiError> {
    let (postgres, redis) = tokio::join!(check_postgres(&db), check_redis(redis));
    let mut failed = Vec::new();
    for (name, result) in [("postgresql", postgres), ("redis", redis)] {
        match result {
            Ok(()) => {}
            Err(Failure::Schema(state)) => {
                // Not a secret, and what the deployer must act on: the answer says it.
                tracing::warn!(dependency = name, ?state, "not ready");
                failed.push(format!("{name}: {}", describe(&state)));
            }
            Err(Failure::Unreachable(error)) => {
                // The cause (addresses, user names, driver messages) goes to the log only:
                // /readyz is reachable by whoever reaches the replica.
                tracing::warn!(dependency = name, %error, "not ready");
                failed.push(format!(
                    "{name}: not answering (the replica's log says why)"
                ));
            }
        }
    }
    if failed.is_empty() {
        Ok(Json(json!({ "status": "ok" })))
    } else {
        Err(ApiError::NotReady(failed.join("; ")))
    }
}

/// Why a dependency is not ready: it does not answer (the cause is for the log only), or
/// PostgreSQL answers with a schema this binary cannot serve.
#[derive(Debug)]
enum Failure {
    Unreachable(String),
    Schema(SchemaState),
}

fn describe(state: &SchemaState) -> String {
    match state {
        SchemaState::Current => "schema current".to_owned(),
        SchemaState::NotMigrated => {
            "the database is not migrated (run `sentra-cloud migrate`)".to_owned()
        }
        SchemaState::Behind { missing } => format!(
            "the schema lacks migration(s) {missing:?} of this release (run `sentra-cloud migrate`)"
        ),
        SchemaState::Changed { versions } => {
            format!("migration(s) {versions:?} were applied from other SQL than this release's")
        }
    }
}

async fn check_postgres(db: &PgPool) -> Result<(), Failure> {
    match tokio::time::timeout(CHECK_TIMEOUT, schema_state(db)).await {
        Ok(Ok(SchemaState::Current)) => Ok(()),
        Ok(Ok(state)) => Err(Failure::Schema(state)),
        Ok(Err(error)) => Err(Failure::Unreachable(error.to_string())),
        Err(_) => Err(Failure::Unreachable(format!(
            "no answer within {CHECK_TIMEOUT:?}"
        ))),
    }
}

async fn check_redis(redis: RedisConn) -> Result<(), Failure> {
    match tokio::time::timeout(CHECK_TIMEOUT, redis.check()).await {
        Ok(result) => result.map_err(Failure::Unreachable),
        Err(_) => Err(Failure::Unreachable(format!(
            "no answer within {CHECK_TIMEOUT:?}"
        ))),
    }
}
