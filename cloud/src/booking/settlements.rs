//! Settlements: a completed booking's capture and release at the gateway, as PostgreSQL rows
//! (`payment_settlements`, written with the completion in `record::complete`) that the sweeper
//! claims, works through the [`super::payments::PaymentGateway`] and marks done or failed, until
//! the gateway has done both. Beside `payments.rs`, which holds the gateway and its webhook.

use sqlx::{PgConnection, PgPool};

use super::record::TS;

/// Where a completed booking's settlement with the gateway stands.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Settlement {
    pub payment_ref: String,
    pub capture_amount: i64,
    pub captured_at: Option<String>,
    pub release_due_at: String,
    pub released_at: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// The settlement of booking `id`, if it has one.
pub async fn settlement(db: &PgPool, id: &str) -> Result<Option<Settlement>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT payment_ref, capture_amount,
                to_char(captured_at AT TIME ZONE 'UTC', {TS}) AS captured_at,
                to_char(release_due_at AT TIME ZONE 'UTC', {TS}) AS release_due_at,
                to_char(released_at AT TIME ZONE 'UTC', {TS}) AS released_at,
                attempts, last_error
         FROM payment_settlements WHERE booking_id = $1::uuid"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// A settlement step due now, claimed by [`claim_settlements`].
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueSettlement {
    pub booking_id: String,
    pub payment_ref: String,
    pub capture_amount: i64,
    pub capture_key: String,
    pub captured: bool,
    pub release_key: String,
    pub release_due: bool,
}

/// Claims up to `limit` settlements with a step due (a capture, or a release past its time),
/// inside `tx`: the rows stay locked (other replicas skip them) until the caller records the
/// gateway's answers and commits.
pub async fn claim_settlements(
    tx: &mut PgConnection,
    limit: i64,
) -> Result<Vec<DueSettlement>, sqlx::Error> {
    sqlx::query_as(
        "SELECT booking_id::text AS booking_id, payment_ref, capture_amount, capture_key,
                captured_at IS NOT NULL AS captured, release_key,
                release_due_at <= now() AS release_due
         FROM payment_settlements
         WHERE released_at IS NULL AND next_attempt_at <= now()
           AND (captured_at IS NULL OR release_due_at <= now())
         ORDER BY next_attempt_at
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await
}

/// What one settlement step came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Captured,
    Released,
}

/// Records a step the gateway did.
pub async fn settled(tx: &mut PgConnection, id: &str, step: Step) -> Result<(), sqlx::Error> {
    let column = match step {
        Step::Captured => "captured_at",
        Step::Released => "released_at",
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE payment_settlements SET {column} = now(), last_error = NULL
         WHERE booking_id = $1::uuid"
    )))
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records a failed step: tried again after a backoff doubling from 1 s up to 5 minutes.
pub async fn settle_failed(
    tx: &mut PgConnection,
    id: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payment_settlements
         SET attempts = attempts + 1, last_error = $2,
             next_attempt_at = now() + make_interval(secs => least(300, power(2, least(attempts, 9))))
         WHERE booking_id = $1::uuid",
    )
    .bind(id)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
