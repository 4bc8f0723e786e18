//! Customer notifications (issue 8): service reminders after an invoice and booking messages,
//! from a PostgreSQL schedule through RabbitMQ to a messaging gateway (WhatsApp Business shape).
//!
//! This module owns the `notifications` table and everything that moves its rows:
//! - scheduling: [`schedule_reminders`] inside the ingest transaction that projects invoices,
//!   and the `bookings_notify` trigger (migration 0008) inside every transaction that holds,
//!   confirms or expires a booking or offers one to the waitlist. Unique `(cause, kind)`: a
//!   re-ingest or a retried transaction schedules once. No phone: the row is `SKIPPED` with
//!   its reason, never an error that blocks ingest or booking;
//! - [`publisher`]: due rows → the work queue, with publisher confirms, marked `PUBLISHED` only
//!   after the broker confirmed (a crash in between publishes again; the worker dedupes);
//! - [`worker`]: the work queue → [`gateway`], claiming each row with a conditional update
//!   before sending, retries through delay queues, the dead-letter queue after the limit;
//! - [`sandbox`]: the gateway stand-in for tests and `demo`;
//! - [`Metrics`]: the counters `/metrics` shows (prometheus-client, registered at each scrape).
//!
//! RabbitMQ topology, all durable, on the default exchange (queue name = routing key), named
//! after `notify.queue` (`Q`): `Q` (work; rejected messages dead-letter to `Q.dead`), `Q.dead`
//! (dead letters, for operators), and `Q.retry.<ms>ms` per backoff step (no consumers; a
//! queue-wide TTL dead-letters each message back to `Q` when its wait is over). One queue per
//! step because RabbitMQ expires only at a queue's head: one queue with per-message TTLs would
//! hold a short wait behind a long one. A message is the notification id and nothing else: the
//! phone number and the text stay in PostgreSQL.

pub mod gateway;
pub mod publisher;
pub mod sandbox;
pub mod worker;

use std::sync::LazyLock;
use std::time::Duration;

use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use sqlx::PgConnection;

use crate::config::NotifyConfig;

/// What the schedule, the publisher and the worker need from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub reminder_after: Duration,
    pub queues: Queues,
    pub max_attempts: u32,
    pub publish_interval: Duration,
    /// How long a send found unfinished (`SENDING`) is left to the worker that started it
    /// before another takes it over: twice the gateway timeout, so a live worker has given up.
    pub send_lease: Duration,
}

impl Settings {
    pub fn new(config: &NotifyConfig) -> Settings {
        Settings {
            reminder_after: config.reminder_after,
            queues: Queues::new(&config.queue, config.retry_base, config.max_attempts),
            max_attempts: config.max_attempts,
            publish_interval: config.publish_interval,
            send_lease: config.gateway_timeout * 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("PostgreSQL")]
    Db(#[from] sqlx::Error),
    #[error("RabbitMQ")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ ended the consumer (connection or channel closed)")]
    ConsumerEnded,
    #[error("RabbitMQ did not confirm the message for notification {0}")]
    NotConfirmed(String),
    #[error("no broker configured: set notify.amqp_url (SENTRA_CLOUD__NOTIFY__AMQP_URL)")]
    NoBroker,
    #[error(
        "no messaging gateway configured: set notify.gateway_url (SENTRA_CLOUD__NOTIFY__GATEWAY_URL)"
    )]
    NoGateway,
    #[error("messaging gateway")]
    Gateway(#[from] gateway::GatewayError),
}

/// The queue names and the backoff steps.
#[derive(Debug, Clone)]
pub struct Queues {
    pub work: String,
    pub dead: String,
    /// `(queue, wait)` per retry: the first retry waits `retry[0].1`, and so on.
    pub retry: Vec<(String, Duration)>,
}

impl Queues {
    pub fn new(work: &str, base: Duration, max_attempts: u32) -> Queues {
        // At least one step: a send found unfinished is put off through the first one.
        let steps = max_attempts.saturating_sub(1).max(1);
        let retry = (0..steps)
            .map(|step| {
                let wait = base.saturating_mul(1 << step.min(20));
                (format!("{work}.retry.{}ms", wait.as_millis()), wait)
            })
            .collect();
        Queues {
            work: work.to_owned(),
            dead: format!("{work}.dead"),
            retry,
        }
    }

    /// The delay queue for the retry after `failed` failed attempts (1-based), the last step
    /// for anything beyond.
    pub fn retry_after(&self, failed: u32) -> &str {
        let index = usize::try_from(failed.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .min(self.retry.len() - 1);
        &self.retry[index].0
    }

    /// Declares every queue (idempotent; both publisher and worker call it).
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = QueueDeclareOptions::durable();
        let mut work_args = FieldTable::default();
        work_args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        work_args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.dead.as_str().into()),
        );
        channel
            .queue_declare(self.work.as_str().into(), durable, work_args)
            .await?;
        channel
            .queue_declare(self.dead.as_str().into(), durable, FieldTable::default())
            .await?;
        for (queue, wait) in &self.retry {
            let mut args = FieldTable::default();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
            );
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(self.work.as_str().into()),
            );
            channel
                .queue_declare(queue.as_str().into(), durable, args)
                .await?;
        }
        Ok(())
    }
}

/// A connection and a channel in confirm mode with the queues declared.
pub async fn connect(
    config: &NotifyConfig,
    queues: &Queues,
    name: &str,
) -> Result<(Connection, Channel), NotifyError> {
    let url = config.amqp_url.as_ref().ok_or(NotifyError::NoBroker)?;
    // amqps:// checks the broker's certificate against the system's trust store, plus the
    // private CA when notify.amqp_ca_file names one (config refuses the file without amqps://).
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: config
            .amqp_ca_file
            .as_ref()
            .map(|ca| String::from_utf8_lossy(ca.pem()).into_owned()),
    };
    let connection = lapin::DefaultConnectionBuilder::new()?
        .with_uri_str(url.expose().to_owned())
        .with_properties(ConnectionProperties::default().with_connection_name(name.into()))
        .with_tls_config(tls)
        .connect()
        .await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    queues.declare(&channel).await?;
    Ok((connection, channel))
}

/// Inside the ingest transaction: a service reminder, due `after` the invoice was issued, for
/// each of `invoices` (ids in `branch`) that is in `invoices` now, to the phone on its work
/// order; skipped with a reason when there is no usable phone. Returns how many it scheduled (a
/// repeat finds its row and changes nothing).
///
/// The reminder is per vehicle: when the work order names its vehicle record, the reminder says
/// so (`params.vehicle_id`), and of the reminders for one vehicle only the newest invoice's
/// stays `SCHEDULED`; an older one still pending is `SKIPPED`, superseded, whichever of the two
/// invoices arrived first. One already handed to the broker is not called back.
///
/// One `INSERT … SELECT` for the whole batch (the same row `schedule_notification` writes), and
/// every invoice and work order found by a `LATERAL … LIMIT 1` primary-key probe: a call of the
/// function per invoice and `id = ANY(…)` cost ~10 ms of a 1000-event push, and `ANY` lets the
/// planner scan the whole branch when its statistics lag the table (docs/benchmarks.md).
pub async fn schedule_reminders(
    tx: &mut PgConnection,
    branch: &str,
    invoices: &[&str],
    after: Duration,
) -> Result<u64, sqlx::Error> {
    if invoices.is_empty() {
        return Ok(0);
    }
    let scheduled = sqlx::query(
        "INSERT INTO notifications (cause, kind, branch_id, phone, params, due_at, state, reason, finished_at)
         SELECT 'invoice:' || $1 || '/' || i.id, 'service_reminder', $1, r.phone,
                jsonb_build_object('invoice_number', i.number, 'customer_name', w.customer_name,
                                   'vehicle_plate', w.vehicle_plate, 'issued_at', i.issued_at)
                || CASE WHEN w.vehicle_id IS NULL THEN '{}'::jsonb
                        ELSE jsonb_build_object('vehicle_id', w.vehicle_id) END,
                i.issued_at + make_interval(secs => $3),
                CASE WHEN r.phone IS NULL THEN 'SKIPPED' ELSE 'SCHEDULED' END,
                CASE WHEN r.phone IS NULL THEN 'the customer has no usable phone number' END,
                CASE WHEN r.phone IS NULL THEN now() END
         FROM unnest($2::text[]) AS l(id)
         CROSS JOIN LATERAL (SELECT id, number, work_order_id, issued_at FROM invoices
                             WHERE branch_id = $1 AND id = l.id LIMIT 1) i
         LEFT JOIN LATERAL (SELECT customer_name, customer_phone, vehicle_plate, vehicle_id FROM work_orders
                            WHERE branch_id = $1 AND id = i.work_order_id LIMIT 1) w ON true
         CROSS JOIN LATERAL (SELECT notification_phone(w.customer_phone) AS phone) r
         ON CONFLICT (cause, kind) DO NOTHING",
    )
    .bind(branch)
    .bind(invoices)
    .bind(after.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    // Of each vehicle's reminders, the newest (by due time, then cause) wins.
    sqlx::query(
        "UPDATE notifications n
         SET state = 'SKIPPED', finished_at = now(),
             reason = 'superseded by the reminder of a newer invoice for the same vehicle ('
                      || coalesce((SELECT m.params ->> 'invoice_number' FROM notifications m
                                   WHERE m.branch_id = n.branch_id AND m.kind = 'service_reminder'
                                     AND m.params ? 'vehicle_id'
                                     AND m.params ->> 'vehicle_id' = n.params ->> 'vehicle_id'
                                   ORDER BY m.due_at DESC, m.cause DESC LIMIT 1), '?') || ')'
         WHERE n.branch_id = $1 AND n.kind = 'service_reminder' AND n.state = 'SCHEDULED'
           AND n.params ? 'vehicle_id'
           AND n.params ->> 'vehicle_id' IN (
               SELECT w.vehicle_id FROM unnest($2::text[]) AS l(id)
               CROSS JOIN LATERAL (SELECT work_order_id FROM invoices
                                   WHERE branch_id = $1 AND id = l.id LIMIT 1) i
               CROSS JOIN LATERAL (SELECT vehicle_id FROM work_orders
                                   WHERE branch_id = $1 AND id = i.work_order_id LIMIT 1) w
               WHERE w.vehicle_id IS NOT NULL)
           AND EXISTS (SELECT 1 FROM notifications m
                       WHERE m.branch_id = n.branch_id AND m.kind = 'service_reminder'
                         AND m.params ? 'vehicle_id'
                         AND m.params ->> 'vehicle_id' = n.params ->> 'vehicle_id'
                         AND (m.due_at, m.cause) > (n.due_at, n.cause))",
    )
    .bind(branch)
    .bind(invoices)
    .execute(&mut *tx)
    .await?;
    Ok(scheduled.rows_affected())
}

/// Puts a dead, skipped or published notification back on the schedule, due now, with its
/// attempts reset. `PUBLISHED` is for a message the broker lost (a wiped broker or a deleted
/// queue): if the message still exists after all, the worker's claim drops the copy that comes
/// second. Returns false when there is no such notification in those states.
pub async fn replay(db: &sqlx::PgPool, id: &str) -> Result<bool, sqlx::Error> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Ok(false);
    }
    let replayed = sqlx::query(
        "UPDATE notifications
         SET state = 'SCHEDULED', due_at = now(), attempts = 0, reason = NULL, finished_at = NULL
         WHERE id = $1::uuid AND state IN ('DEAD', 'SKIPPED', 'PUBLISHED') AND phone IS NOT NULL",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(replayed.rows_affected() == 1)
}

/// The message template and language of a kind, and its body parameters from the row's
/// `params`, in the order the template's placeholders expect. None for a kind this version
/// does not know (a newer replica's row): the worker dead-letters it with the reason.
pub fn template(kind: &str, params: &serde_json::Value) -> Option<(&'static str, Vec<String>)> {
    let text = |name: &str| match &params[name] {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let (name, fields): (&'static str, &[&str]) = match kind {
        "service_reminder" => (
            "sentra_service_reminder",
            &["customer_name", "vehicle_plate", "invoice_number"],
        ),
        "booking_held" => (
            "sentra_booking_held",
            &["asset_id", "first_day", "last_day", "hold_expires_at"],
        ),
        "booking_confirmed" => (
            "sentra_booking_confirmed",
            &["asset_id", "first_day", "last_day"],
        ),
        "booking_expired" => (
            "sentra_booking_expired",
            &["asset_id", "first_day", "last_day"],
        ),
        "waitlist_offer" => (
            "sentra_waitlist_offer",
            &["asset_id", "first_day", "hold_expires_at"],
        ),
        _ => return None,
    };
    Some((name, fields.iter().map(|field| text(field)).collect()))
}

/// The language every template is registered in.
pub const TEMPLATE_LANGUAGE: &str = "id";

/// Counters per process (Prometheus sums replicas).
#[derive(Default)]
pub struct Metrics {
    pub published: Counter,
    pub sent: Counter,
    pub failed: Counter,
    pub dead: Counter,
}

/// The process's counters: the publisher and the worker may run in `serve` or alone.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

impl Metrics {
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// Adds the counters to `registry` (clones share the counts).
    pub fn register(&self, registry: &mut Registry) {
        for (name, help, counter) in [
            (
                "notifications_published",
                "Notifications the broker confirmed (republished ones included)",
                &self.published,
            ),
            (
                "notifications_sent",
                "Notifications the messaging gateway accepted",
                &self.sent,
            ),
            (
                "notifications_failed",
                "Gateway attempts that failed (each retry counts)",
                &self.failed,
            ),
            (
                "notifications_dead",
                "Notifications dead-lettered (retries exhausted or refused for good)",
                &self.dead,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_step_and_the_last_step_repeats() {
        let queues = Queues::new("q", Duration::from_millis(100), 4);
        let names: Vec<&str> = queues.retry.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["q.retry.100ms", "q.retry.200ms", "q.retry.400ms"]);
        assert_eq!(queues.retry_after(1), "q.retry.100ms");
        assert_eq!(queues.retry_after(3), "q.retry.400ms");
        assert_eq!(queues.retry_after(9), "q.retry.400ms");
        assert_eq!(queues.dead, "q.dead");
        // One attempt only: still one step, for putting off an unfinished send.
        assert_eq!(Queues::new("q", Duration::from_secs(1), 1).retry.len(), 1);
    }

    #[test]
    fn every_kind_has_a_template_with_its_parameters() {
        let params = serde_json::json!({"customer_name": "Budi", "vehicle_plate": "B 1 A",
            "invoice_number": "INV-1", "asset_id": "car-1", "first_day": "2027-01-02",
            "last_day": "2027-01-03", "hold_expires_at": "2027-01-01T10:00:00+00:00"});
        for kind in [
            "service_reminder",
            "booking_held",
            "booking_confirmed",
            "booking_expired",
            "waitlist_offer",
        ] {
            let (name, parameters) = template(kind, &params).expect("a known kind");
            assert!(name.starts_with("sentra_"));
            assert!(parameters.iter().all(|text| !text.is_empty()), "{kind}");
        }
        assert_eq!(
            template("service_reminder", &params).map(|(_, p)| p),
            Some(vec!["Budi".into(), "B 1 A".into(), "INV-1".into()])
        );
        assert!(template("birthday", &params).is_none());
    }
}
