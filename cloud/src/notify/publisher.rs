//! The publisher: due rows of the schedule → the work queue.
//!
//! One batch is one PostgreSQL transaction: claim due `SCHEDULED` rows `FOR UPDATE SKIP LOCKED`
//! (replicas publishing together never take the same row), publish each as a persistent
//! message whose id is the notification id, wait for the broker's confirms, mark the confirmed
//! ones `PUBLISHED`, commit. Until that commit the rows stay `SCHEDULED` in PostgreSQL, so a
//! broker that is down, a nack or a crash loses nothing; a crash after the confirm and before the
//! commit publishes the row again, and the worker's claim makes that harmless.
//!
//! "Now" is a parameter ([`publish_due`]), so a test or an operator (`notify publish-due --now`)
//! decides what is due without waiting 90 days.

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Connection};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{METRICS, Metrics, NotifyError, Settings};
use crate::config::NotifyConfig;
use crate::web::error_chain;

/// Rows per batch: one transaction holds their locks while the broker confirms them.
pub const BATCH: i64 = 100;

/// AMQP delivery mode 2: the broker writes the message to disk before it confirms.
const PERSISTENT: u8 = 2;

/// Publishes up to `limit` notifications due at `now`; returns how many the broker confirmed.
pub async fn publish_due(
    db: &PgPool,
    channel: &Channel,
    settings: &Settings,
    now: OffsetDateTime,
    limit: i64,
) -> Result<u64, NotifyError> {
    let mut tx = db.begin().await?;
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM notifications
         WHERE state = 'SCHEDULED' AND due_at <= $1::timestamptz
         ORDER BY due_at
         LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(
        now.format(&time::format_description::well_known::Rfc3339)
            .map_err(|error| sqlx::Error::Encode(Box::new(error)))?,
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut confirms = Vec::with_capacity(due.len());
    for id in &due {
        confirms.push(publish(channel, &settings.queues.work, id).await?);
    }
    let mut confirmed = Vec::with_capacity(due.len());
    for (id, confirm) in due.iter().zip(confirms) {
        if confirm.await?.is_ack() {
            confirmed.push(id.as_str());
        } else {
            tracing::warn!(notification = %id, "the broker refused the message; it stays scheduled");
        }
    }
    sqlx::query(
        "UPDATE notifications SET state = 'PUBLISHED', published_at = now()
         WHERE id::text = ANY($1) AND state = 'SCHEDULED'",
    )
    .bind(&confirmed)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let count = u64::try_from(confirmed.len()).unwrap_or(u64::MAX);
    Metrics::add(&METRICS.published, count);
    Ok(count)
}

/// Publishes one notification id to `queue` as a persistent message; the pending confirm.
pub async fn publish(
    channel: &Channel,
    queue: &str,
    id: &str,
) -> Result<lapin::PublisherConfirm, lapin::Error> {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            id.as_bytes(),
            BasicProperties::default()
                .with_message_id(id.into())
                .with_delivery_mode(PERSISTENT)
                .with_content_type("text/plain".into()),
        )
        .await
}

/// The publisher task of `serve`: every `publish_interval`, publish what is due (all of it, batch
/// after batch). Reconnects to the broker after a failure; stops when `token` is cancelled.
pub async fn run(db: PgPool, config: NotifyConfig, settings: Settings, token: CancellationToken) {
    let mut interval = tokio::time::interval(settings.publish_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut link: Option<(Connection, Channel)> = None;
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = interval.tick() => {}
        }
        if link.is_none() {
            match super::connect(&config, &settings.queues, "sentra-cloud publisher").await {
                Ok(connected) => link = Some(connected),
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "notifications: cannot reach the broker; the schedule waits in PostgreSQL");
                    continue;
                }
            }
        }
        let Some((_, channel)) = &link else { continue };
        loop {
            match publish_due(&db, channel, &settings, OffsetDateTime::now_utc(), BATCH).await {
                Ok(count) if count == u64::try_from(BATCH).unwrap_or(0) => continue,
                Ok(0) => break,
                Ok(count) => {
                    tracing::debug!(count, "notifications published");
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "notifications: publishing failed; will retry");
                    if matches!(error, NotifyError::Amqp(_) | NotifyError::NotConfirmed(_)) {
                        link = None;
                    }
                    break;
                }
            }
        }
    }
    if let Some((connection, _)) = link {
        let _ = connection.close(200, "shutting down".into()).await;
    }
}
