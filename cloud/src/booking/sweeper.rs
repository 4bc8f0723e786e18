//! The hold sweeper, one per replica: every `sweep_interval` it expires due holds
//! (`FOR UPDATE SKIP LOCKED`, so replicas share the work without waiting on one another), does the
//! side effects of ended bookings (calendar and lock release, the waitlist head's offer), settles
//! completed rentals with the payment gateway (capture the charges, release the rest of the
//! pre-authorisation when due), and now and then rebuilds the calendar.
//!
//! It keeps no state of its own: what is due is in PostgreSQL, so holds expire on time after any
//! restart of any replica. Keyspace notifications are never the trigger (Redis may drop them).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Booking;
use super::calendar::AssetKey;
use super::metrics::Metrics;
use super::record;
use super::{lock, settlements, waitlist};

/// Rows handled per statement; a backlog drains over several ticks without long transactions.
const BATCH: i64 = 500;

/// How often a replica checks the calendar is built, and rebuilds it when it is not (Redis
/// restarted or wiped) or when the last full rebuild is older than [`FULL_REBUILD_INTERVAL`].
const FULL_REBUILD_INTERVAL: Duration = Duration::from_secs(300);

/// Runs until `token` is cancelled. A tick in progress is abandoned at cancellation (its
/// transaction rolls back, and everything it does is safe to do again), so a dead PostgreSQL
/// never delays shutdown.
pub async fn run(booking: Booking, token: CancellationToken) {
    let mut interval = tokio::time::interval(booking.settings.sweep_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rebuild: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            _ = interval.tick() => {}
        }
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            () = tick(&booking, &mut last_rebuild) => {}
        }
    }
}

async fn tick(booking: &Booking, last_rebuild: &mut Option<Instant>) {
    if let Err(error) = sweep(booking).await {
        tracing::warn!(%error, "sweeping holds failed; retrying at the next tick");
    }
    let due = last_rebuild.is_none_or(|at| at.elapsed() >= FULL_REBUILD_INTERVAL);
    match booking.calendar.built().await {
        Ok(built) if !built || due => match booking.calendar.rebuild(&booking.db).await {
            Ok(keys) => {
                *last_rebuild = Some(Instant::now());
                tracing::info!(keys, was_built = built, "calendar rebuilt from PostgreSQL");
            }
            Err(error) => {
                tracing::warn!(error = %crate::web::error_chain(&error), "calendar rebuild failed")
            }
        },
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "redis unavailable; calendar not checked"),
    }
}

/// One sweep: expire due holds, then release what ended.
pub async fn sweep(booking: &Booking) -> Result<(), sqlx::Error> {
    loop {
        let expired = record::expire_due(&booking.db, BATCH).await?;
        Metrics::add(&booking.metrics.expired, expired);
        if expired > 0 {
            tracing::info!(expired, "holds expired");
        }
        if expired < u64::try_from(BATCH).unwrap_or(u64::MAX) {
            break;
        }
    }
    while release_ended(booking).await? == BATCH {}
    while settle(booking).await? == BATCH {}
    Ok(())
}

/// Claims the completed rentals with a gateway step due (capture, then release once due), asks
/// the gateway with each step's idempotency key and records the answer, in one transaction;
/// returns how many it claimed. A failure is recorded and retried after a backoff: the row
/// stays until the release is done, so no obligation is lost to a crash or a failing gateway.
pub async fn settle(booking: &Booking) -> Result<i64, sqlx::Error> {
    let mut tx = booking.db.begin().await?;
    let due = settlements::claim_settlements(&mut tx, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    for step in &due {
        let mut captured = step.captured;
        if !captured {
            match booking
                .gateway
                .capture(&step.payment_ref, step.capture_amount, &step.capture_key)
            {
                Ok(_) => {
                    settlements::settled(&mut tx, &step.booking_id, settlements::Step::Captured)
                        .await?;
                    Metrics::inc(&booking.metrics.captures);
                    tracing::info!(booking = %step.booking_id, amount = step.capture_amount, "charges captured");
                    captured = true;
                }
                Err(error) => {
                    Metrics::inc(&booking.metrics.settlement_failures);
                    tracing::warn!(booking = %step.booking_id, %error, "capture failed; retrying later");
                    settlements::settle_failed(&mut tx, &step.booking_id, &error.to_string())
                        .await?;
                    continue;
                }
            }
        }
        if captured && step.release_due {
            match booking
                .gateway
                .release(&step.payment_ref, &step.release_key)
            {
                Ok(_) => {
                    settlements::settled(&mut tx, &step.booking_id, settlements::Step::Released)
                        .await?;
                    Metrics::inc(&booking.metrics.releases);
                    tracing::info!(booking = %step.booking_id, "pre-authorisation released");
                }
                Err(error) => {
                    Metrics::inc(&booking.metrics.settlement_failures);
                    tracing::warn!(booking = %step.booking_id, %error, "release failed; retrying later");
                    settlements::settle_failed(&mut tx, &step.booking_id, &error.to_string())
                        .await?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(i64::try_from(due.len()).unwrap_or(0))
}

/// Claims ended bookings, releases their calendar days and marks them released, in one
/// transaction; returns how many. If Redis is down the rows stay unreleased (and the calendar
/// is rebuilt later), so nothing is lost.
pub async fn release_ended(booking: &Booking) -> Result<i64, sqlx::Error> {
    let mut tx = booking.db.begin().await?;
    let ended = record::claim_ended(&mut tx, BATCH).await?;
    if ended.is_empty() {
        return Ok(0);
    }
    let mut released = Vec::with_capacity(ended.len());
    let mut offers = Vec::new();
    for booking_row in &ended {
        let asset = AssetKey {
            sku: booking_row.sku.clone(),
            branch: booking_row.branch.clone(),
            asset_id: booking_row.asset_id.clone(),
        };
        match booking
            .calendar
            .release(&asset, booking_row.start, booking_row.end)
            .await
        {
            Ok(()) => {
                if let Some(token) = &booking_row.lock_token {
                    let keys = lock::keys(&asset, booking_row.start, booking_row.end);
                    booking.locks.release(&keys, token).await;
                }
                offers.extend(
                    waitlist::promote(
                        &mut tx,
                        booking_row,
                        booking.settings.turnover_buffer_days,
                        booking.settings.hold_window,
                    )
                    .await?,
                );
                released.push(booking_row.id.clone());
            }
            Err(error) => {
                tracing::debug!(%error, id = %booking_row.id, "calendar release failed; retrying later");
                break;
            }
        }
    }
    record::mark_released(&mut tx, &released).await?;
    tx.commit().await?;
    for offer in &offers {
        tracing::info!(entry = %offer.entry_id, booking = %offer.booking_id, day = %offer.day, "waitlist head offered the freed asset");
        Metrics::inc(&booking.metrics.held);
        let _ = booking
            .calendar
            .reserve(&offer.asset, offer.start, offer.end)
            .await;
        let mut redis = booking.calendar.connection();
        let _ = redis::cmd("ZREM")
            .arg(waitlist::key(&offer.asset.sku, offer.day))
            .arg(&offer.entry_id)
            .query_async::<i64>(&mut redis)
            .await;
    }
    Ok(i64::try_from(released.len()).unwrap_or(0))
}
