//! Rental bookings at the branch: the branch's own bookings (held by the cloud within the
//! request, or `TENTATIVE` while the cloud could not be asked), the cloud's decisions on the
//! tentative ones as pulled, and the calendar of the branch's assets as of the last pull, which
//! answers availability while the link is down.
//!
//! Invariants:
//! - a `TENTATIVE` booking and its `booking:requested` event are one transaction; an online hold
//!   writes no event (the cloud made it and already has it), only the branch's copy;
//! - a decision changes only a booking still `TENTATIVE` (pulled again, it changes nothing), and
//!   every state change is announced as a [`Notice::Booking`] after commit;
//! - the branch never promises days it knows are taken: its own live bookings and the pulled
//!   calendar refuse an overlap before anything is written.

use rusqlite::{Connection, OptionalExtension as _};
use sentra_protocol::EntityKind;
use sentra_protocol::payload::{self as p, op};
use sentra_protocol::sync::{BookingDecision, CalendarSnapshot};
use serde::Serialize;

use super::{DomainError, Notice, OptionalRow as _, Result, WriteTx};
use crate::domain::booking::overlaps;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Booking {
    pub id: String,
    pub asset_id: String,
    pub sku: String,
    /// First rental day, `YYYY-MM-DD`.
    pub from: String,
    /// Last rental day, included.
    pub to: String,
    pub customer: String,
    pub tier: String,
    /// `HELD` (a cloud hold waiting for payment until `expires_at`), `TENTATIVE` (taken offline,
    /// the cloud decides at sync), `CONFIRMED`, `REJECTED` (see `reason`), `CANCELLED` or
    /// `COMPLETED` (the asset came back).
    pub state: String,
    /// `cloud` (decided within the request) or `sync` (taken offline, decided at sync).
    pub source: String,
    /// The cloud's booking id, once it holds one.
    pub cloud_id: Option<String>,
    pub expires_at: Option<String>,
    /// Why the cloud rejected it: a code (`taken`, `no_such_asset`, ...) and words for staff.
    pub reject_code: Option<String>,
    pub reason: Option<String>,
    pub requested_by: String,
    pub created_at: String,
    pub decided_at: Option<String>,
}

/// A booking request, validated by the API.
#[derive(Debug, Clone)]
pub struct NewBooking {
    pub id: String,
    pub asset_id: String,
    pub sku: String,
    pub from: String,
    pub to: String,
    pub customer: String,
    pub tier: String,
}

/// What the cloud answered to an online hold.
#[derive(Debug, Clone)]
pub struct CloudHold {
    pub cloud_id: String,
    pub state: String,
    pub expires_at: Option<String>,
}

const COLUMNS: &str = "id, asset_id, sku, first_day, last_day, customer, tier, state, source, cloud_id, expires_at, reject_code, reason, requested_by, created_at, decided_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Booking> {
    Ok(Booking {
        id: r.get(0)?,
        asset_id: r.get(1)?,
        sku: r.get(2)?,
        from: r.get(3)?,
        to: r.get(4)?,
        customer: r.get(5)?,
        tier: r.get(6)?,
        state: r.get(7)?,
        source: r.get(8)?,
        cloud_id: r.get(9)?,
        expires_at: r.get(10)?,
        reject_code: r.get(11)?,
        reason: r.get(12)?,
        requested_by: r.get(13)?,
        created_at: r.get(14)?,
        decided_at: r.get(15)?,
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<Booking> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM bookings WHERE id = ?1"))?
        .query_row([id], row)
        .or_not_found("booking", id)
}

/// The SKU of asset `id`, if the branch has it.
pub fn asset_sku(conn: &Connection, id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT sku FROM assets WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// The pulled calendar's time and turnover buffer.
pub fn calendar_state(conn: &Connection) -> Result<(Option<String>, u32)> {
    Ok(conn.query_row(
        "SELECT as_of, turnover_buffer_days FROM booking_calendar_state WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Something that takes some of an asset's days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Busy {
    /// `branch` (this branch's own booking) or `cloud` (the pulled calendar).
    pub source: String,
    pub id: String,
    pub state: String,
    pub from: String,
    pub to: String,
}

/// What takes any of the days `[start, end)` of `asset` as the branch knows it: its own live
/// bookings (tentative, held and unexpired, confirmed) and, unless `own_only`, the pulled
/// calendar. `now` is the store's time format, comparable as text with `expires_at`.
pub fn busy(
    conn: &Connection,
    asset: &str,
    (start, end): (&str, &str),
    buffer: u32,
    now: &str,
    own_only: bool,
) -> Result<Vec<Busy>> {
    let mut found = Vec::new();
    let mut own = conn.prepare_cached(
        "SELECT id, state, first_day, last_day, cloud_id FROM bookings
         WHERE asset_id = ?1 AND (state IN ('TENTATIVE', 'CONFIRMED') OR (state = 'HELD' AND expires_at > ?2))",
    )?;
    let rows = own.query_map((asset, now), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
        ))
    })?;
    let mut own_cloud_ids = Vec::new();
    for r in rows {
        let (id, state, from, to, cloud_id) = r?;
        own_cloud_ids.extend(cloud_id);
        let taken = crate::domain::booking::Stay::parse(&from, &to)
            .and_then(|stay| stay.taken_days(buffer))
            .map_err(|e| super::StoreError::Corrupt(format!("booking {id}: {}", e.problem)))?;
        if overlaps((start, end), (&taken.0, &taken.1)) {
            found.push(Busy {
                source: "branch".into(),
                id,
                state,
                from,
                to,
            });
        }
    }
    if own_only {
        return Ok(found);
    }
    let mut cal = conn.prepare_cached(
        "SELECT cloud_id, state, first_day, last_day FROM booking_calendar
         WHERE asset_id = ?1 AND first_day < ?3 AND free_from > ?2
           AND (state = 'CONFIRMED' OR (state = 'HELD' AND (expires_at IS NULL OR expires_at > ?4)))
         ORDER BY first_day",
    )?;
    let rows = cal.query_map((asset, start, end, now), |r| {
        Ok(Busy {
            source: "cloud".into(),
            id: r.get(0)?,
            state: r.get(1)?,
            from: r.get(2)?,
            to: r.get(3)?,
        })
    })?;
    for b in rows {
        let b = b?;
        // The branch's own bookings the cloud holds are in both lists: name them once.
        if !own_cloud_ids.contains(&b.id) {
            found.push(b);
        }
    }
    Ok(found)
}

fn insert(
    w: &WriteTx<'_>,
    new: &NewBooking,
    device: &str,
    state: &str,
    source: &str,
    hold: Option<&CloudHold>,
) -> Result<Booking> {
    let now = w.now_str();
    w.conn()
        .prepare_cached(
            "INSERT INTO bookings (id, asset_id, sku, first_day, last_day, customer, tier, state, source,
                                   cloud_id, expires_at, requested_by, created_at, decided_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(rusqlite::params![
            new.id,
            new.asset_id,
            new.sku,
            new.from,
            new.to,
            new.customer,
            new.tier,
            state,
            source,
            hold.map(|h| &h.cloud_id),
            hold.and_then(|h| h.expires_at.as_ref()),
            device,
            now,
            hold.map(|_| &now),
        ])?;
    get(w.conn(), &new.id)
}

fn notice(w: &mut WriteTx<'_>, b: &Booking) {
    w.notices.push(Notice::Booking(BookingNotice::of(b)));
}

/// The branch's copy of a hold the cloud gave within the request. No outbox event: the cloud
/// made the booking and has it.
pub fn record_held(
    w: &mut WriteTx<'_>,
    device: &str,
    new: &NewBooking,
    hold: &CloudHold,
) -> Result<Booking> {
    let b = insert(w, new, device, &hold.state, "cloud", Some(hold))?;
    notice(w, &b);
    Ok(b)
}

/// A booking taken while the cloud could not be asked: `TENTATIVE`, with its
/// `booking:requested` event in the same transaction. Refused if the branch knows the days are
/// taken (`buffer`: the cloud's turnover days, as last pulled).
pub fn record_tentative(
    w: &mut WriteTx<'_>,
    device: &str,
    new: &NewBooking,
    taken: (&str, &str),
    buffer: u32,
) -> Result<Booking> {
    let now = w.now_str();
    let conflicts = busy(w.conn(), &new.asset_id, taken, buffer, &now, false)?;
    if let Some(c) = conflicts.first() {
        return Err(super::DomainError::conflict(
            "taken",
            format!(
                "asset {} is taken on some of the days {} to {} ({} booking {} from {} to {}, as the branch last heard from the cloud); choose other days or another asset",
                new.asset_id, new.from, new.to, c.state, c.id, c.from, c.to
            ),
        )
        .into());
    }
    let b = insert(w, new, device, "TENTATIVE", "sync", None)?;
    w.emit(
        EntityKind::Booking,
        &b.id,
        op::REQUESTED,
        &p::BookingRequested {
            id: b.id.clone(),
            asset_id: b.asset_id.clone(),
            sku: b.sku.clone(),
            from: b.from.clone(),
            to: b.to.clone(),
            customer: b.customer.clone(),
            tier: b.tier.clone(),
            idempotency_key: p::booking_idempotency_key(&b.id),
            requested_at: b.created_at.clone(),
        },
    )?;
    notice(w, &b);
    Ok(b)
}

/// Apply a pulled decision to a `TENTATIVE` booking; anything else is left as it is (a decision
/// pulled twice, or one for a booking this store does not have). Returns whether it changed.
pub fn apply_decision(w: &mut WriteTx<'_>, d: &BookingDecision) -> Result<bool> {
    let accepted = matches!(d.state.as_str(), "CONFIRMED" | "HELD");
    let state = if accepted {
        d.state.as_str()
    } else {
        "REJECTED"
    };
    let changed = w
        .conn()
        .prepare_cached(
            "UPDATE bookings SET state = ?2, cloud_id = ?3, expires_at = ?4, reject_code = ?5, reason = ?6, decided_at = ?7
             WHERE id = ?1 AND state = 'TENTATIVE'",
        )?
        .execute(rusqlite::params![
            d.booking_id,
            state,
            d.cloud_id,
            d.expires_at,
            d.code,
            d.reason,
            w.now_str()
        ])?;
    if changed == 0 {
        // Taken offline and already returned at the rental counter (COMPLETED here before the
        // decision came): the branch learns the cloud's booking, and its state stays.
        if accepted {
            w.conn()
                .prepare_cached(
                    "UPDATE bookings SET cloud_id = ?2, decided_at = ?3
                     WHERE id = ?1 AND state = 'COMPLETED' AND cloud_id IS NULL AND source = 'sync'",
                )?
                .execute(rusqlite::params![d.booking_id, d.cloud_id, w.now_str()])?;
        }
        return Ok(false);
    }
    let b = get(w.conn(), &d.booking_id)?;
    notice(w, &b);
    Ok(true)
}

/// The asset of booking `id` came back at the rental counter (`store::rentals`): `COMPLETED`
/// here at once, announced; the caller's `booking:completed` event tells the cloud. A booking
/// that is no longer live (rejected, cancelled) keeps its state.
pub fn complete_at_counter(w: &mut WriteTx<'_>, id: &str) -> Result<()> {
    let changed = w
        .conn()
        .prepare_cached(
            "UPDATE bookings SET state = 'COMPLETED'
             WHERE id = ?1 AND state IN ('TENTATIVE', 'HELD', 'CONFIRMED')",
        )?
        .execute([id])?;
    if changed > 0 {
        let b = get(w.conn(), id)?;
        notice(w, &b);
    }
    Ok(())
}

/// The cloud's answer to a counter action (confirm, cancel, complete) on booking `id`: the
/// branch's copy follows the cloud's `state` and `expires_at`. Announced when it changed.
pub fn record_cloud_state(
    w: &mut WriteTx<'_>,
    id: &str,
    state: &str,
    expires_at: Option<&str>,
) -> Result<Booking> {
    let changed = w
        .conn()
        .prepare_cached(
            "UPDATE bookings SET state = ?2, expires_at = coalesce(?3, expires_at), decided_at = coalesce(decided_at, ?4)
             WHERE id = ?1 AND state <> ?2",
        )?
        .execute(rusqlite::params![id, state, expires_at, w.now_str()])?;
    let b = get(w.conn(), id)?;
    if changed > 0 {
        notice(w, &b);
    }
    Ok(b)
}

/// Cancels booking `id` at the counter while the cloud cannot be asked: `CANCELLED` here, and a
/// `booking:cancelled` event the cloud applies at ingest (after the booking's own request, by
/// the outbox's order). A booking already cancelled is answered as it is; one that is not live
/// (rejected, completed) is refused.
pub fn cancel_offline(w: &mut WriteTx<'_>, id: &str) -> Result<Booking> {
    let b = get(w.conn(), id)?;
    match b.state.as_str() {
        "CANCELLED" => return Ok(b),
        "TENTATIVE" | "HELD" | "CONFIRMED" => {}
        other => {
            return Err(super::DomainError::conflict(
                "wrong_state",
                format!("booking {id} is {other}; only a live booking can be cancelled"),
            )
            .into());
        }
    }
    w.conn()
        .prepare_cached("UPDATE bookings SET state = 'CANCELLED' WHERE id = ?1")?
        .execute([id])?;
    let now = w.now_str();
    w.emit(
        EntityKind::Booking,
        id,
        op::CANCELLED,
        &p::BookingCancelled {
            id: id.to_owned(),
            idempotency_key: p::booking_idempotency_key(id),
            cancelled_at: now,
        },
    )?;
    let b = get(w.conn(), id)?;
    notice(w, &b);
    Ok(b)
}

/// Replace the pulled calendar with the cloud's snapshot.
pub fn replace_calendar(w: &mut WriteTx<'_>, snapshot: &CalendarSnapshot) -> Result<()> {
    let max = sentra_protocol::day::MAX_TURNOVER_BUFFER_DAYS;
    if snapshot.turnover_buffer_days > max {
        // Every availability answer adds it to a day: refuse it, keep the calendar we have.
        return Err(DomainError::invalid(
            "turnover_buffer_days",
            format!(
                "the cloud's calendar says {} turnover days; at most {max}",
                snapshot.turnover_buffer_days
            ),
        )
        .into());
    }
    let conn = w.conn();
    conn.execute("DELETE FROM booking_calendar", [])?;
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO booking_calendar (cloud_id, asset_id, sku, first_day, last_day, free_from, state, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for e in &snapshot.bookings {
        insert.execute((
            &e.id,
            &e.asset_id,
            &e.sku,
            &e.from,
            &e.to,
            &e.free_from,
            &e.state,
            &e.expires_at,
        ))?;
    }
    conn.execute(
        "UPDATE booking_calendar_state SET as_of = ?1, turnover_buffer_days = ?2 WHERE id = 1",
        (&snapshot.as_of, snapshot.turnover_buffer_days),
    )?;
    Ok(())
}

/// What the broker bridge publishes when a booking changes state (created online or offline,
/// decided at sync): `{"id", "asset_id", "state", "source", "cloud_id", "reject_code", "reason"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookingNotice {
    pub id: String,
    pub asset_id: String,
    pub from: String,
    pub to: String,
    pub state: String,
    pub source: String,
    pub cloud_id: Option<String>,
    pub reject_code: Option<String>,
    pub reason: Option<String>,
}

impl BookingNotice {
    fn of(b: &Booking) -> Self {
        Self {
            id: b.id.clone(),
            asset_id: b.asset_id.clone(),
            from: b.from.clone(),
            to: b.to.clone(),
            state: b.state.clone(),
            source: b.source.clone(),
            cloud_id: b.cloud_id.clone(),
            reject_code: b.reject_code.clone(),
            reason: b.reason.clone(),
        }
    }
}
