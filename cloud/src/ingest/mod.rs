//! Ingest: `POST /v1/sync/push`, a device's outbox events into the record.
//!
//! A batch is applied in ONE PostgreSQL transaction that first locks the device's cursor row, so
//! pushes of one device are serialised and a retry of a committed batch finds its events at or
//! below the cursor (duplicates, nothing written). A batch that starts after `cursor + 1` is
//! answered `409 sequence_gap` with the expected seq. A re-sent event is a duplicate only if the
//! cloud holds the same content under its seq; otherwise the device forked (a box restored from
//! a backup numbers its new events from the backup's seq) and gets `409 sequence_fork` with the
//! first differing seq and the expected one, to renumber its events after the cursor. Each event is then applied, recognised as
//! a re-sent record, or parked with its reason ([`validate`]); parked events are also appended to
//! the branch's change log as rejections, so the branch hears of them at its next pull. The cursor
//! moves to the batch's last seq either way: a parked event never blocks the ones behind it.
//!
//! An invoice applied here schedules its service reminder in the same transaction
//! ([`notify::schedule_reminders`]).
//!
//! The branch is the authenticated device's; nothing in the batch can name another.
//! Parsing and checking (pure CPU) run on the blocking pool before the transaction starts, so the
//! transaction holds its locks only for the SQL ([`apply`]).

mod apply;
mod rental_rules;
mod rentals;
mod shifts;
pub mod validate;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use sentra_protocol::EntityKind;
use sentra_protocol::sync::{ChangeBody, Parked, PushAck};

use crate::booking::Booking;
use crate::booking::metrics::Metrics;
use crate::booking::offline::{self, Decided};

use crate::changes::{self, ChangeError};
use crate::devices::auth::{Caller, DeviceIdentity};
use crate::notify;
use crate::shared;
use crate::web::{ApiError, now_ms};
use validate::{BatchError, Lookup, Outcome, Prepared};

/// How often a push transaction is retried when PostgreSQL aborts it to break a deadlock or a
/// serialisation conflict with a concurrent push of the same branch. Such an abort changed
/// nothing, so retrying is safe; a few attempts make it vanishingly rare for the device to see.
pub const TRANSIENT_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("expected seq {expected}, got {got}")]
    Gap { expected: u64, got: u64 },
    #[error("seq {fork_seq} is held with other content; expected seq {expected}")]
    Fork { expected: u64, fork_seq: u64 },
    #[error("device {0} has no ingest cursor")]
    NoCursor(String),
    #[error("device {0} is revoked")]
    Revoked(String),
    #[error("checking the batch failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::Batch(batch) => match batch {
                BatchError::Malformed(_) => ApiError::MalformedBody(batch.to_string()),
                BatchError::Shape(_) | BatchError::SeqRange(_) => {
                    ApiError::Invalid(batch.to_string())
                }
                BatchError::Protocol(got) => ApiError::UnsupportedProtocol {
                    got,
                    supported: sentra_protocol::PROTOCOL_VERSION,
                },
                BatchError::Foreign { .. } => ApiError::ForeignEvent(batch.to_string()),
                BatchError::NotContiguous { .. } => ApiError::NotContiguous(batch.to_string()),
            },
            IngestError::Gap { expected, got } => ApiError::SequenceGap {
                expected_seq: expected,
                got,
            },
            IngestError::Fork { expected, fork_seq } => ApiError::SequenceFork {
                expected_seq: expected,
                fork_seq,
            },
            IngestError::Revoked(_) => ApiError::Unauthorized(error.to_string()),
            IngestError::NoCursor(_) | IngestError::Join(_) => {
                tracing::error!(%error, "push");
                ApiError::Internal
            }
            IngestError::Change(error) => error.into(),
            IngestError::Db(error) => ApiError::database(&error),
        }
    }
}

/// `POST /v1/sync/push` (device): a `PushBatch`, answered with a `PushAck`.
#[utoipa::path(post, path = "/v1/sync/push", tag = "sync", request_body = crate::schemas::PushBatch, responses((status = 200, description = "PushAck", body = Object), (status = 409, description = "sequence_gap (with expected_seq), or sequence_fork (with expected_seq and fork_seq: renumber from fork_seq on to start at expected_seq)", body = crate::schemas::ErrorEnvelope)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn push(
    State(booking): State<Arc<Booking>>,
    State(notify): State<Arc<notify::Settings>>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<PushAck>, ApiError> {
    let device = caller.device()?.clone();
    crate::metrics::ingest_batch();
    let device_id = device.id.clone();
    let events = tokio::task::spawn_blocking(move || validate::prepare(&device_id, &body))
        .await
        .map_err(IngestError::from)?
        .map_err(IngestError::from)?;
    let ack = ingest(&booking, &notify, &device, &events).await?;
    if !ack.parked.is_empty() {
        tracing::warn!(device = %device.id, branch = %device.branch_id, parked = ack.parked.len(), "events parked");
    }
    Ok(Json(ack))
}

/// Applies a prepared batch, retrying transient aborts. Offline bookings in it are decided in the
/// same transaction (`booking::offline`); their assets' calendars are recomputed after commit.
pub async fn ingest(
    booking: &Booking,
    notify: &notify::Settings,
    device: &DeviceIdentity,
    events: &[Prepared],
) -> Result<PushAck, IngestError> {
    let mut attempt = 1;
    loop {
        match ingest_once(booking, notify, device, events).await {
            Err(error) if attempt < TRANSIENT_RETRIES && error.is_transient() => {
                tracing::info!(%error, attempt, device = %device.id, "push aborted by PostgreSQL; retrying");
                attempt += 1;
            }
            Ok((ack, decided)) => {
                crate::metrics::ingest_events(
                    u64::from(ack.applied),
                    u64::from(ack.duplicates),
                    ack.parked.len() as u64,
                );
                if decided.confirmed > 0 {
                    Metrics::add(&booking.metrics.held, decided.confirmed);
                    Metrics::add(&booking.metrics.confirmed, decided.confirmed);
                }
                for asset in &decided.touched {
                    // The calendar is a fast path: a failed repair only costs a slower answer.
                    if let Err(error) = booking.calendar.repair(&booking.db, asset).await {
                        tracing::warn!(%error, asset = %asset.tag(), "calendar repair after an offline booking failed");
                    }
                }
                return Ok(ack);
            }
            Err(error) => return Err(error),
        }
    }
}

impl IngestError {
    /// Deadlock detected, a serialisation failure, or a number another push of the branch
    /// claimed while this one ran (`document_numbers`; the retry parks this batch's document):
    /// the transaction was rolled back whole.
    fn is_transient(&self) -> bool {
        let error = match self {
            IngestError::Db(error) | IngestError::Change(ChangeError::Db(error)) => error,
            _ => return false,
        };
        let Some(error) = error.as_database_error() else {
            return false;
        };
        match error.code().as_deref() {
            Some("40P01" | "40001") => true,
            Some("23505") => error.constraint() == Some("document_numbers_pkey"),
            _ => false,
        }
    }
}

async fn ingest_once(
    booking: &Booking,
    notify: &notify::Settings,
    device: &DeviceIdentity,
    events: &[Prepared],
) -> Result<(PushAck, Decided), IngestError> {
    let mut tx = booking.db.begin().await?;
    let cursor: Option<i64> = sqlx::query_scalar(
        "SELECT last_seq FROM device_cursors WHERE device_id = $1::uuid FOR UPDATE",
    )
    .bind(&device.id)
    .fetch_optional(&mut *tx)
    .await?;
    let cursor = cursor
        .and_then(|cursor| u64::try_from(cursor).ok())
        .ok_or_else(|| IngestError::NoCursor(device.id.clone()))?;

    let (seen, fresh) = events.split_at(
        events
            .iter()
            .take_while(|event| event.raw.seq <= cursor)
            .count(),
    );
    if let Some(fork_seq) = apply::first_fork(&mut tx, &device.branch_id, &device.id, seen).await? {
        tracing::warn!(device = %device.id, branch = %device.branch_id, fork_seq, cursor, "pushed events differ from the ones held under their seq (a restored box?); asking it to renumber");
        return Err(IngestError::Fork {
            expected: cursor + 1,
            fork_seq,
        });
    }
    let duplicates = count(events.len() - fresh.len());
    let Some(first) = fresh.first() else {
        return Ok((ack(cursor, 0, duplicates, Vec::new()), Decided::default()));
    };
    if first.raw.seq != cursor + 1 {
        return Err(IngestError::Gap {
            expected: cursor + 1,
            got: first.raw.seq,
        });
    }
    let last = fresh.last().map_or(cursor, |event| event.raw.seq);

    let mut known = apply::known(&mut tx, &device.branch_id, &Lookup::of(fresh)).await?;
    let mut outcomes = validate::resolve(&device.branch_id, fresh, &mut known);
    shared::merge_events(&mut tx, &device.branch_id, &device.id, fresh, &mut outcomes).await?;
    apply::write(&mut tx, &device.branch_id, &device.id, fresh, &outcomes).await?;
    let invoices: Vec<&str> = fresh
        .iter()
        .zip(&outcomes)
        .filter(|(event, outcome)| {
            matches!(outcome, Outcome::Apply) && event.raw.entity == EntityKind::Invoice.as_str()
        })
        .map(|(event, _)| event.raw.entity_id.as_str())
        .collect();
    notify::schedule_reminders(&mut tx, &device.branch_id, &invoices, notify.reminder_after)
        .await?;
    let decided = offline::decide(
        &mut tx,
        &booking.settings,
        &*booking.identity,
        &device.branch_id,
        &device.id,
        fresh,
        &outcomes,
    )
    .await?;

    let mut applied = 0;
    let mut record_duplicates = 0;
    let mut parked = Vec::new();
    for (event, outcome) in fresh.iter().zip(&outcomes) {
        match outcome {
            Outcome::Apply => applied += 1,
            Outcome::Duplicate => record_duplicates += 1,
            // NUL is the one character PostgreSQL text (and so the change log) cannot hold.
            Outcome::Park(reason) => parked.push(Parked {
                seq: event.raw.seq,
                entity: event.raw.entity.replace('\0', "\u{fffd}"),
                entity_id: event.raw.entity_id.replace('\0', "\u{fffd}"),
                reason: reason.replace('\0', "\u{fffd}"),
            }),
        }
    }
    // Last: appending locks the branch's counter row until commit.
    let mut changes: Vec<ChangeBody> = parked.iter().cloned().map(ChangeBody::Rejection).collect();
    changes.extend(decided.changes.iter().cloned());
    changes::append(&mut tx, &device.branch_id, &changes).await?;

    // A fresh snapshot (this statement's): a device revoked while this batch waited for its
    // cursor (replaced by a successor, which locks the cursor to revoke it) moves nothing.
    let moved = sqlx::query(
        "UPDATE device_cursors SET last_seq = $2, updated_at = now()
         WHERE device_id = $1::uuid
           AND NOT EXISTS (SELECT 1 FROM devices WHERE id = $1::uuid AND revoked_at IS NOT NULL)",
    )
    .bind(&device.id)
    .bind(i64::try_from(last).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Err(IngestError::Revoked(device.id.clone()));
    }
    tx.commit().await?;
    // How far the record trails the branch: the batch's oldest new event, from the box's stamp
    // to this commit (a box clock running ahead counts as no lag).
    if let Some(oldest) = fresh
        .iter()
        .filter_map(|event| event.checked.as_ref().ok())
        .map(|checked| checked.hlc.wall_ms)
        .min()
    {
        crate::metrics::ingest_lag(now_ms().saturating_sub(oldest));
    }
    Ok((
        ack(last, applied, duplicates + record_duplicates, parked),
        decided,
    ))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn ack(cursor: u64, applied: u32, duplicates: u32, parked: Vec<Parked>) -> PushAck {
    PushAck {
        cursor,
        applied,
        duplicates,
        parked,
        server_time_ms: now_ms(),
    }
}
