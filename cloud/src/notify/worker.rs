//! The worker: the work queue → the messaging gateway, one message at a time, manual acks.
//!
//! For each message (a notification id):
//! 1. claim the row with a conditional update (`SCHEDULED`/`PUBLISHED` → `SENDING`, attempts + 1):
//!    a duplicate or redelivered message of a row already `SENT`, `DEAD` or `SKIPPED` is acked
//!    and dropped;
//! 2. send it through the gateway, the notification id as idempotency key;
//! 3. record the outcome: `SENT`; or, after a failure, `PUBLISHED` again with the message put on
//!    the delay queue of its backoff step; or `DEAD` (retries exhausted, or refused for good),
//!    rejected into the dead-letter queue;
//! 4. only then ack.
//!
//! The crash window is between "the gateway accepted" and "recorded `SENT`". A worker that dies
//! there leaves the row `SENDING` and its message unacked, so RabbitMQ delivers it again. The
//! next worker leaves a `SENDING` row to its first worker for [`Settings::send_lease`] (putting
//! the message off through the first delay queue), then asks the gateway by key
//! ([`MessagingGateway::lookup`]): accepted → recorded `SENT` without sending again; not
//! accepted → sent. A gateway call that timed out is settled by the same question. With a
//! gateway that cannot answer (`Lookup::Unknown`: WhatsApp itself, until its status webhooks are
//! recorded) that window is at-least-once: the message may go out twice.

use std::sync::Arc;

use futures_util::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, message::Delivery};
use sqlx::{PgPool, Row as _};
use tokio_util::sync::CancellationToken;

use super::gateway::{GatewayError, Lookup, MessagingGateway, Outgoing};
use super::{METRICS, Metrics, NotifyError, Settings};
use crate::config::NotifyConfig;
use crate::web::error_chain;

/// Messages the broker hands a worker before it acked the earlier ones.
const PREFETCH: u16 = 8;

/// How long the worker waits before connecting again after losing the broker or PostgreSQL.
const RECONNECT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Consumes until `token` is cancelled, reconnecting after failures. Unacked messages go back
/// to the queue whenever a connection is lost.
pub async fn run<G: MessagingGateway>(
    db: PgPool,
    config: NotifyConfig,
    settings: Settings,
    gateway: Arc<G>,
    token: CancellationToken,
) {
    while !token.is_cancelled() {
        match consume(&db, &config, &settings, &*gateway, &token).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "notification worker: reconnecting");
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(RECONNECT_AFTER) => {}
                }
            }
        }
    }
}

async fn consume<G: MessagingGateway>(
    db: &PgPool,
    config: &NotifyConfig,
    settings: &Settings,
    gateway: &G,
    token: &CancellationToken,
) -> Result<(), NotifyError> {
    let (connection, channel) =
        super::connect(config, &settings.queues, "sentra-cloud worker").await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let tag = format!("sentra-cloud-worker-{}", crate::web::random_hex());
    let mut consumer = channel
        .basic_consume(
            settings.queues.work.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %settings.queues.work, "notification worker consuming");
    let result = async {
        loop {
            let next = tokio::select! {
                () = token.cancelled() => return Ok(()),
                next = consumer.next() => next,
            };
            let delivery = next.ok_or(NotifyError::ConsumerEnded)??;
            handle(db, &channel, settings, gateway, &delivery).await?;
        }
    }
    .await;
    // Closing (rather than dropping) hands the unacked messages back to the queue now, before
    // the next connection starts consuming.
    let _ = connection.close(200, "worker stopping".into()).await;
    result
}

/// What to do with a message after its step.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Recorded (sent, or nothing to do): ack.
    Done,
    /// Put it on the delay queue after `failed` failed attempts, then ack.
    Retry { failed: u32 },
    /// Dead: reject it into the dead-letter queue.
    Dead,
}

async fn handle<G: MessagingGateway>(
    db: &PgPool,
    channel: &Channel,
    settings: &Settings,
    gateway: &G,
    delivery: &Delivery,
) -> Result<(), NotifyError> {
    let id = std::str::from_utf8(&delivery.data)
        .ok()
        .filter(|text| uuid::Uuid::parse_str(text).is_ok());
    let Some(id) = id else {
        tracing::warn!(
            bytes = delivery.data.len(),
            "notification worker: a message that is not a notification id; dead-lettered"
        );
        delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await?;
        return Ok(());
    };
    match step(db, settings, gateway, id).await? {
        Step::Done => {
            delivery.acker.ack(BasicAckOptions::default()).await?;
        }
        Step::Retry { failed } => {
            let queue = settings.queues.retry_after(failed);
            let confirm = super::publisher::publish(channel, queue, id).await?.await?;
            if !confirm.is_ack() {
                return Err(NotifyError::NotConfirmed(id.to_owned()));
            }
            delivery.acker.ack(BasicAckOptions::default()).await?;
        }
        Step::Dead => {
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await?;
        }
    }
    Ok(())
}

/// A claimed row.
#[derive(sqlx::FromRow)]
struct Claimed {
    kind: String,
    phone: Option<String>,
    params: String,
    attempts: i32,
}

/// One notification: claim, send, record. Errors are PostgreSQL's (the message is then left
/// unacked and comes back).
async fn step<G: MessagingGateway>(
    db: &PgPool,
    settings: &Settings,
    gateway: &G,
    id: &str,
) -> Result<Step, NotifyError> {
    let row: Option<Claimed> = sqlx::query_as(
        "UPDATE notifications SET state = 'SENDING', attempts = attempts + 1, sending_at = now()
         WHERE id = $1::uuid AND state IN ('SCHEDULED', 'PUBLISHED')
         RETURNING kind, phone, params::text AS params, attempts",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    let lease = settings.send_lease.as_secs_f64();
    let claim = match row {
        Some(claim) => claim,
        None => {
            let current = sqlx::query(
                "SELECT state, sending_at < now() - make_interval(secs => $2) AS stale
                 FROM notifications WHERE id = $1::uuid",
            )
            .bind(id)
            .bind(lease)
            .fetch_optional(db)
            .await?;
            let Some(current) = current else {
                tracing::warn!(notification = %id, "notification worker: no such notification; dropped");
                return Ok(Step::Done);
            };
            let state: String = current.try_get("state")?;
            let stale: Option<bool> = current.try_get("stale")?;
            if state != "SENDING" {
                // SENT, DEAD or SKIPPED: this message is a duplicate.
                return Ok(Step::Done);
            }
            if stale != Some(true) {
                // Its first worker may still be talking to the gateway: ask again later.
                return Ok(Step::Retry { failed: 1 });
            }
            match gateway.lookup(id).await {
                Ok(Lookup::Sent { message_id }) => {
                    tracing::info!(notification = %id, "notification worker: an interrupted send had reached the gateway; recorded");
                    mark_sent(db, id, &message_id).await?;
                    return Ok(Step::Done);
                }
                Ok(Lookup::NotSent | Lookup::Unknown) => {}
                Err(error) => {
                    tracing::warn!(notification = %id, %error, "notification worker: cannot ask the gateway about an interrupted send; later");
                    return Ok(Step::Retry { failed: 1 });
                }
            }
            let taken: Option<Claimed> = sqlx::query_as(
                "UPDATE notifications SET sending_at = now(), attempts = attempts + 1
                 WHERE id = $1::uuid AND state = 'SENDING'
                   AND sending_at < now() - make_interval(secs => $2)
                 RETURNING kind, phone, params::text AS params, attempts",
            )
            .bind(id)
            .bind(lease)
            .fetch_optional(db)
            .await?;
            match taken {
                Some(claim) => claim,
                // Another worker took it over first.
                None => return Ok(Step::Done),
            }
        }
    };

    let params: serde_json::Value =
        serde_json::from_str(&claim.params).unwrap_or(serde_json::Value::Null);
    let (Some((template, parameters)), Some(phone)) =
        (super::template(&claim.kind, &params), claim.phone)
    else {
        let reason = format!("kind {:?} has no template here, or no phone", claim.kind);
        mark_dead(db, id, &reason).await?;
        return Ok(Step::Dead);
    };
    let message = Outgoing {
        key: id.to_owned(),
        to: phone,
        template,
        language: super::TEMPLATE_LANGUAGE,
        parameters,
    };
    let result = match gateway.send(&message).await {
        Err(GatewayError::InDoubt(reason)) => match gateway.lookup(id).await {
            Ok(Lookup::Sent { message_id }) => Ok(message_id),
            _ => Err(GatewayError::InDoubt(reason)),
        },
        other => other,
    };
    match result {
        Ok(message_id) => {
            mark_sent(db, id, &message_id).await?;
            tracing::info!(notification = %id, kind = %claim.kind, "notification sent");
            Ok(Step::Done)
        }
        Err(error) => {
            Metrics::add(&METRICS.failed, 1);
            let failed = u32::try_from(claim.attempts).unwrap_or(u32::MAX);
            let permanent = matches!(error, GatewayError::Permanent(_));
            if permanent || failed >= settings.max_attempts {
                let reason = format!("attempt {failed}: {error}");
                tracing::warn!(notification = %id, kind = %claim.kind, %reason, "notification dead-lettered");
                mark_dead(db, id, &reason).await?;
                return Ok(Step::Dead);
            }
            tracing::info!(notification = %id, kind = %claim.kind, attempt = failed, %error, "notification not sent; will retry");
            sqlx::query(
                "UPDATE notifications SET state = 'PUBLISHED', reason = $2, published_at = now()
                 WHERE id = $1::uuid AND state = 'SENDING'",
            )
            .bind(id)
            .bind(format!("attempt {failed}: {error}"))
            .execute(db)
            .await?;
            Ok(Step::Retry { failed })
        }
    }
}

async fn mark_sent(db: &PgPool, id: &str, message_id: &str) -> Result<(), sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE notifications
         SET state = 'SENT', gateway_message_id = $2, reason = NULL, finished_at = now()
         WHERE id = $1::uuid AND state = 'SENDING'",
    )
    .bind(id)
    .bind(message_id)
    .execute(db)
    .await?;
    if updated.rows_affected() == 1 {
        Metrics::add(&METRICS.sent, 1);
    }
    Ok(())
}

async fn mark_dead(db: &PgPool, id: &str, reason: &str) -> Result<(), sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE notifications SET state = 'DEAD', reason = $2, finished_at = now()
         WHERE id = $1::uuid AND state = 'SENDING'",
    )
    .bind(id)
    .bind(reason)
    .execute(db)
    .await?;
    if updated.rows_affected() == 1 {
        Metrics::add(&METRICS.dead, 1);
    }
    Ok(())
}

/// The gateway the configuration names, and the sandbox's task when it names the sandbox
/// (started on a free loopback port, stopped by `stop`).
pub async fn gateway_from_config(
    config: &NotifyConfig,
    stop: CancellationToken,
) -> Result<
    (
        super::gateway::WhatsAppCloud,
        Option<tokio::task::JoinHandle<()>>,
    ),
    NotifyError,
> {
    use crate::config::GatewayTarget;
    let token = config
        .gateway_token
        .as_ref()
        .map(|secret| String::from_utf8_lossy(secret.expose()).into_owned());
    let (base, lookup, task) = match &config.gateway {
        None => return Err(NotifyError::NoGateway),
        Some(GatewayTarget::Url(url)) => (url.clone(), config.gateway_lookup_url.clone(), None),
        Some(GatewayTarget::Sandbox) => {
            let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let (addr, task) = super::sandbox::start(listen, token.clone(), stop)
                .await
                .map_err(|error| {
                    NotifyError::Gateway(GatewayError::Permanent(format!(
                        "cannot start the sandbox gateway: {error}"
                    )))
                })?;
            tracing::info!(%addr, "sandbox messaging gateway listening");
            let base = format!("http://{addr}");
            let lookup = format!("{base}/_sandbox/messages");
            (base, Some(lookup), Some(task))
        }
    };
    let gateway = super::gateway::WhatsAppCloud::new(
        &base,
        &config.phone_number_id,
        token,
        lookup,
        config.gateway_timeout,
    )?;
    Ok((gateway, task))
}
