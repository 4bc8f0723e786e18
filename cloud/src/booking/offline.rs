//! Bookings a branch took while it could not reach the cloud (`booking:requested` events), and
//! the calendar a branch keeps for such times (`GET /v1/sync/calendar`).
//!
//! An offline booking is decided inside the push transaction that ingests its event, through the
//! same PostgreSQL hold as an online one ([`record::hold_in`]: the exclusion constraint decides),
//! and the decision goes into the branch's change log in that same transaction, so a branch
//! hears of every decision exactly once, in order, at its next pull.
//!
//! An accepted offline booking is `CONFIRMED` at once, not a `HELD` hold with a payment window:
//! the customer stood at the counter and the branch took the booking (and its deposit) there;
//! the decision reaches the branch whenever its link returns, minutes or hours later, and a
//! 10-minute window starting at ingest would lapse unseen and silently drop a rental staff had
//! already promised. The branch answers for the payment (`payment_ref` `branch-counter:<id>`).
//!
//! A `booking:cancelled` event (staff cancelled at the counter while offline) cancels the
//! device's booking with that idempotency key in the same transaction, if it is still held or
//! confirmed; its days are released by the sweeper like any cancellation.
//!
//! A `booking:completed` event (the asset came back at the branch's rental counter, online or
//! not) completes the device's booking with that key through the same completion as
//! `POST /v1/bookings/{id}/complete` ([`record::complete_in`]), if it is confirmed, with no
//! charges: the counter settled them through its rental invoice and deposit, so a gateway
//! pre-authorisation behind the booking is released whole. Anything else changes nothing.
//!
//! Invariants:
//! - one hold per edge booking, whatever is sent again: the hold is keyed by the device and the
//!   event's `idempotency_key` (the same key the online attempt used), so a re-sent event, or an
//!   online attempt whose answer was lost, finds the existing booking instead of making another;
//! - each attempt runs in a savepoint: a taken slot rolls back only that attempt, and a
//!   deadlock aborts the whole push, which ingest retries.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use sentra_protocol::payload::{BookingRequested, Payload};
use sentra_protocol::sync::{BookingDecision, CalendarEntry, CalendarSnapshot, ChangeBody};
use sqlx::PgConnection;

use super::Booking;
use super::calendar::AssetKey;
use super::record::{self, HoldOutcome, HoldRequest, RecordError};
use super::types::{Stay, Tier, format_day};
use super::{Settings, types};
use crate::devices::auth::Caller;
use crate::event::{Outcome, Prepared};
use crate::web::ApiError;

/// What deciding a batch's offline bookings produced: the change-log entries, and the assets
/// whose calendar must be recomputed after commit.
#[derive(Debug, Default)]
pub struct Decided {
    pub changes: Vec<ChangeBody>,
    pub touched: Vec<AssetKey>,
    pub confirmed: u64,
    /// Bookings cancelled by `booking:cancelled` events.
    pub cancelled: u64,
    /// Bookings completed by `booking:completed` events.
    pub completed: u64,
}

/// Decides every applied `booking:requested` event of a batch inside the push transaction.
pub async fn decide(
    tx: &mut PgConnection,
    settings: &Settings,
    identity: &dyn crate::standing::Standing,
    branch: &str,
    device: &str,
    events: &[Prepared],
    outcomes: &[Outcome],
) -> Result<Decided, sqlx::Error> {
    let mut decided = Decided::default();
    for (event, outcome) in events.iter().zip(outcomes) {
        let (Outcome::Apply, Ok(checked)) = (outcome, &event.checked) else {
            continue;
        };
        let request = match &checked.payload {
            Payload::BookingRequested(request) => request,
            Payload::BookingCancelled(cancel) => {
                let cancelled =
                    record::cancel_by_key(tx, &format!("device:{device}"), &cancel.idempotency_key)
                        .await?;
                if cancelled {
                    decided.cancelled += 1;
                }
                continue;
            }
            Payload::BookingCompleted(done) => {
                // Checked at ingest (`validate`); unreadable here, it changes nothing.
                let Ok(returned_at) = time::OffsetDateTime::parse(
                    &done.returned_at,
                    &time::format_description::well_known::Rfc3339,
                ) else {
                    continue;
                };
                let facts = record::Return {
                    returned_at,
                    damage_charge: 0,
                    late_charge: 0,
                };
                let created_by = format!("device:{device}");
                let which = record::Which::Key {
                    created_by: &created_by,
                    key: &done.idempotency_key,
                };
                if let Some(row) =
                    record::complete_in(tx, which, &facts, settings.release_delay).await?
                {
                    decided.completed += 1;
                    decided.touched.push(AssetKey {
                        sku: row.view.sku.clone(),
                        branch: branch.to_owned(),
                        asset_id: row.view.asset_id.clone(),
                    });
                }
                continue;
            }
            _ => continue,
        };
        let owner = crate::standing::Owner::Branch(branch.to_owned()).key();
        let decision = if identity.cleared_in(tx, &owner, &request.customer).await? {
            decide_one(tx, settings, branch, device, request).await?
        } else {
            rejected(
                request,
                "identity_unverified",
                crate::standing::unverified_reason(&request.customer),
            )
        };
        if decision.state == "CONFIRMED" {
            decided.confirmed += 1;
            decided.touched.push(AssetKey {
                sku: request.sku.clone(),
                branch: branch.to_owned(),
                asset_id: request.asset_id.clone(),
            });
        }
        decided.changes.push(ChangeBody::BookingDecision(decision));
    }
    Ok(decided)
}

fn rejected(request: &BookingRequested, code: &str, reason: String) -> BookingDecision {
    BookingDecision {
        booking_id: request.id.clone(),
        state: "REJECTED".to_owned(),
        cloud_id: None,
        expires_at: None,
        code: Some(code.to_owned()),
        reason: Some(reason),
    }
}

async fn decide_one(
    tx: &mut PgConnection,
    settings: &Settings,
    branch: &str,
    device: &str,
    request: &BookingRequested,
) -> Result<BookingDecision, sqlx::Error> {
    // Checked at ingest (`validate`); a failure here would be a bug, answered as a rejection.
    let parsed = Stay::parse(&request.from, &request.to)
        .and_then(|stay| Ok((stay, Tier::parse(&request.tier)?)));
    let (stay, tier) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return Ok(rejected(request, "invalid", error.to_string())),
    };
    let hold = HoldRequest {
        branch: branch.to_owned(),
        asset_id: request.asset_id.clone(),
        sku: request.sku.clone(),
        stay,
        customer: request.customer.clone(),
        tier,
        created_by: format!("device:{device}"),
        idempotency_key: Some(request.idempotency_key.clone()),
        digest: record::request_digest(
            branch,
            &request.asset_id,
            &request.sku,
            stay,
            &request.customer,
            tier,
        ),
        lock_token: None,
    };
    let outcome = record::hold_in(
        tx,
        &hold,
        settings.turnover_buffer_days,
        settings.hold_window,
    )
    .await;
    let row = match outcome {
        Ok((HoldOutcome::Held(row) | HoldOutcome::Replayed(row), _)) => row,
        Ok((HoldOutcome::Taken, _)) => {
            return Ok(rejected(
                request,
                "taken",
                format!(
                    "asset {} is taken on some of the days {} to {}: it was booked elsewhere (another branch or the web portal) before this booking reached the cloud",
                    request.asset_id,
                    format_day(stay.first),
                    format_day(stay.last)
                ),
            ));
        }
        Err(error @ RecordError::NoSuchAsset { .. }) => {
            return Ok(rejected(request, "no_such_asset", error.to_string()));
        }
        Err(error @ RecordError::KeyReused(_)) => {
            return Ok(rejected(
                request,
                "idempotency_key_reused",
                error.to_string(),
            ));
        }
        Err(error @ RecordError::Invalid(_)) => {
            return Ok(rejected(request, "invalid", error.to_string()));
        }
        Err(RecordError::Db(error)) => return Err(error),
    };
    let payment_ref = format!("branch-counter:{}", request.id);
    let row = record::confirm_in(tx, &row.id, &payment_ref)
        .await?
        .unwrap_or(row);
    Ok(match row.state {
        types::State::Confirmed | types::State::Completed => BookingDecision {
            booking_id: request.id.clone(),
            state: row.state.as_str().to_owned(),
            cloud_id: Some(row.id.clone()),
            expires_at: None,
            code: None,
            reason: None,
        },
        _ => rejected(
            request,
            "hold_expired",
            format!(
                "the cloud booking {} made for this request is {} (its hold lapsed or it was cancelled before the branch's request arrived)",
                row.id, row.state
            ),
        ),
    })
}

/// `GET /v1/sync/calendar` (device): the live bookings of the device's branch's assets.
#[utoipa::path(get, path = "/v1/sync/calendar", tag = "sync", responses((status = 200, description = "the branch's live bookings", body = Object)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn calendar(
    State(booking): State<Arc<Booking>>,
    caller: Caller,
) -> Result<Json<CalendarSnapshot>, ApiError> {
    let device = caller.device()?;
    let limit = i64::try_from(sentra_protocol::sync::MAX_CALENDAR_ENTRIES).unwrap_or(i64::MAX);
    let (as_of, rows) = record::branch_calendar(&booking.db, &device.branch_id, limit)
        .await
        .map_err(|error| ApiError::database(&error))?;
    Ok(Json(CalendarSnapshot {
        as_of,
        turnover_buffer_days: booking.settings.turnover_buffer_days,
        bookings: rows
            .into_iter()
            .map(|row| {
                let row = row.view;
                CalendarEntry {
                    expires_at: (row.state == types::State::Held).then(|| row.expires_at.clone()),
                    id: row.id,
                    asset_id: row.asset_id,
                    sku: row.sku,
                    from: row.from,
                    to: row.to,
                    free_from: row.free_from,
                    state: row.state.as_str().to_owned(),
                }
            })
            .collect(),
    }))
}
