//! Staff pulled from the cloud, and the cash drawer's day: a cashier's shift (opened with a
//! float, closed with the cash counted against what the box expected) and the branch day a
//! manager closes once every shift is closed, or reopens. A closed day takes no payment
//! ([`refuse_if_closed`], called inside every payment's transaction).
//!
//! Totals are sums of the money rows, by method: workshop `payments` and rental
//! `rental_payments` (signed: a refund counts against its method). A shift's money is what its
//! device took between open and close; a day's is what the branch took in its local day.

use rusqlite::{Connection, OptionalExtension as _};
use sentra_protocol::EntityKind;
use sentra_protocol::payload::{self as p, op};
use sentra_protocol::staff::{MethodTotals, StaffRecord, StaffRole};
use serde::Serialize;
use time::{Date, OffsetDateTime, Time};

use super::{DomainError, Result, WriteTx, format_time, new_id};

/// A staff member as the box knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    pub id: String,
    pub name: String,
    pub role: StaffRole,
    pub active: bool,
    pub pin_hash: String,
}

/// A pulled staff record; false (skipped, logged) when it is not usable.
pub fn upsert_staff(w: &mut WriteTx<'_>, s: &StaffRecord) -> Result<bool> {
    if s.id.is_empty()
        || s.id.len() > sentra_protocol::staff::MAX_STAFF_ID_LEN
        || s.name.len() > sentra_protocol::staff::MAX_STAFF_NAME_LEN
        || s.pin_hash.len() > sentra_protocol::staff::MAX_PIN_HASH_LEN
    {
        tracing::warn!(staff = %s.id, "pulled staff record out of bounds; skipped");
        return Ok(false);
    }
    w.conn()
        .prepare_cached(
            "INSERT INTO staff (id, name, role, active, pin_hash, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role,
                 active = excluded.active, pin_hash = excluded.pin_hash, updated_at = excluded.updated_at",
        )?
        .execute((&s.id, &s.name, s.role.as_str(), s.active, &s.pin_hash, w.now_str()))?;
    Ok(true)
}

pub fn get_staff(conn: &Connection, id: &str) -> Result<Option<Staff>> {
    let row = conn
        .prepare_cached("SELECT id, name, role, active, pin_hash FROM staff WHERE id = ?1")?
        .query_row([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .optional()?;
    row.map(|(id, name, role, active, pin_hash)| {
        let role = StaffRole::parse(&role)
            .ok_or_else(|| super::StoreError::Corrupt(format!("staff {id}: role {role:?}")))?;
        Ok(Staff {
            id,
            name,
            role,
            active,
            pin_hash,
        })
    })
    .transpose()
}

/// A shift as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Shift {
    pub id: String,
    pub staff_id: String,
    pub device_id: String,
    /// The branch day it opened on, `YYYY-MM-DD`.
    pub day: String,
    pub opening_float: i64,
    pub opened_at: String,
    /// OPEN or CLOSED.
    pub status: String,
    pub closed_at: Option<String>,
    /// Closed shifts: money taken by method (rupiah).
    pub totals: Option<Totals>,
    pub expected_cash: Option<i64>,
    pub counted_cash: Option<i64>,
    pub difference: Option<i64>,
    pub reason: Option<String>,
}

/// Money by method (rupiah; rental refunds count against theirs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub cash: i64,
    pub edc: i64,
    pub qris: i64,
}

impl From<&Totals> for MethodTotals {
    fn from(t: &Totals) -> Self {
        MethodTotals {
            cash: t.cash,
            edc: t.edc,
            qris: t.qris,
        }
    }
}

/// A branch day's close as the API shows it (and the Z-report prints).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Day {
    pub day: String,
    /// OPEN (never closed), CLOSED, or REOPENED.
    pub status: String,
    pub manager_id: Option<String>,
    pub closed_at: Option<String>,
    pub shifts: Vec<Shift>,
    pub totals: Totals,
    pub expected_cash: i64,
    pub counted_cash: i64,
    pub difference: i64,
    pub reason: Option<String>,
    pub reopened_at: Option<String>,
    pub reopened_by: Option<String>,
}

/// The branch's local day of `t`.
pub fn local_day(w_offset: time::UtcOffset, t: OffsetDateTime) -> Date {
    t.to_offset(w_offset).date()
}

/// The UTC bounds `[from, to)` of a local day, as stored times (they sort as text).
fn day_bounds(offset: time::UtcOffset, day: Date) -> (String, String) {
    let start = day.with_time(Time::MIDNIGHT).assume_offset(offset);
    let end = start + time::Duration::days(1);
    (format_time(start), format_time(end))
}

pub use sentra_protocol::day::format_day;

/// A `YYYY-MM-DD` day within the protocol's calendar.
pub fn parse_day(s: &str) -> std::result::Result<Date, DomainError> {
    sentra_protocol::day::parse_day(s).map_err(|e| DomainError::invalid("date", e.to_string()))
}

/// Money received between `from` (included) and `to` (excluded), by method; `device` limits it
/// to what that device took.
fn totals(conn: &Connection, from: &str, to: &str, device: Option<&str>) -> Result<Totals> {
    let mut t = Totals::default();
    let mut stmt = conn.prepare_cached(
        "SELECT method, sum(amount) FROM (
             SELECT method, amount FROM payments
              WHERE received_at >= ?1 AND received_at < ?2 AND (?3 IS NULL OR received_by = ?3)
             UNION ALL
             SELECT method, amount FROM rental_payments
              WHERE received_at >= ?1 AND received_at < ?2 AND (?3 IS NULL OR received_by = ?3))
         GROUP BY method",
    )?;
    let mut rows = stmt.query((from, to, device))?;
    while let Some(r) = rows.next()? {
        let method: String = r.get(0)?;
        let sum: i64 = r.get(1)?;
        match method.as_str() {
            "CASH" => t.cash = sum,
            "EDC" => t.edc = sum,
            "QRIS" => t.qris = sum,
            _ => {}
        }
    }
    Ok(t)
}

/// Refuses a payment when the branch's day (now, its time zone) is closed.
pub fn refuse_if_closed(w: &WriteTx<'_>) -> Result<()> {
    let day = format_day(local_day(w.ctx().utc_offset, w.now()));
    let closed: Option<String> = w
        .conn()
        .prepare_cached("SELECT day FROM branch_days WHERE day = ?1 AND status = 'CLOSED'")?
        .query_row([&day], |r| r.get(0))
        .optional()?;
    match closed {
        Some(day) => Err(DomainError::conflict(
            "day_closed",
            format!(
                "the branch day {day} is closed; it takes no payment until a manager reopens it (POST /v1/days/{day}/reopen)"
            ),
        )
        .into()),
        None => Ok(()),
    }
}

/// Refuses to void a payment received on another branch day than today (a later correction is a
/// credit note), or one taken in a shift that has closed (its totals are final).
pub fn refuse_void_after_close(
    w: &WriteTx<'_>,
    payment_id: &str,
    received_at: &str,
    received_by: &str,
) -> Result<()> {
    let offset = w.ctx().utc_offset;
    let today = local_day(offset, w.now());
    let (from, to) = day_bounds(offset, today);
    if received_at < from.as_str() || received_at >= to.as_str() {
        return Err(DomainError::conflict(
            "void_too_late",
            format!(
                "payment {payment_id} was received at {received_at}, not on the branch day {}; a void is for the same day, later a credit note corrects the invoice",
                format_day(today)
            ),
        )
        .into());
    }
    let shift: Option<String> = w
        .conn()
        .prepare_cached(
            "SELECT id FROM shifts WHERE device_id = ?1 AND status = 'CLOSED'
                 AND opened_at <= ?2 AND closed_at > ?2",
        )?
        .query_row([received_by, received_at], |r| r.get(0))
        .optional()?;
    match shift {
        Some(shift) => Err(DomainError::conflict(
            "shift_closed",
            format!(
                "payment {payment_id} was taken in shift {shift}, which is closed; its totals are final (issue a credit note)"
            ),
        )
        .into()),
        None => Ok(()),
    }
}

fn check_reason(difference: i64, reason: Option<&str>) -> Result<Option<String>> {
    match reason.map(str::trim).filter(|r| !r.is_empty()) {
        None if difference != 0 => Err(DomainError::invalid(
            "reason",
            format!("the cash counted is {difference} rupiah off what was expected; say why"),
        )
        .into()),
        r => Ok(r.map(str::to_owned)),
    }
}

const SHIFT_COLUMNS: &str = "id, staff_id, device_id, day, opening_float, opened_at, status, closed_at, cash, edc, qris, expected_cash, counted_cash, difference, reason";

fn shift_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Shift> {
    let cash: Option<i64> = r.get(8)?;
    let edc: Option<i64> = r.get(9)?;
    let qris: Option<i64> = r.get(10)?;
    Ok(Shift {
        id: r.get(0)?,
        staff_id: r.get(1)?,
        device_id: r.get(2)?,
        day: r.get(3)?,
        opening_float: r.get(4)?,
        opened_at: r.get(5)?,
        status: r.get(6)?,
        closed_at: r.get(7)?,
        totals: match (cash, edc, qris) {
            (Some(cash), Some(edc), Some(qris)) => Some(Totals { cash, edc, qris }),
            _ => None,
        },
        expected_cash: r.get(11)?,
        counted_cash: r.get(12)?,
        difference: r.get(13)?,
        reason: r.get(14)?,
    })
}

pub fn get_shift(conn: &Connection, id: &str) -> Result<Shift> {
    conn.prepare_cached(&format!("SELECT {SHIFT_COLUMNS} FROM shifts WHERE id = ?1"))?
        .query_row([id], shift_row)
        .optional()?
        .ok_or_else(|| DomainError::not_found("shift", id).into())
}

/// Opens `staff_id`'s shift on `device` with `opening_float` in the drawer.
pub fn open_shift(
    w: &mut WriteTx<'_>,
    staff_id: &str,
    device: &str,
    opening_float: i64,
) -> Result<Shift> {
    refuse_if_closed(w)?;
    let open: Option<String> = w
        .conn()
        .prepare_cached("SELECT id FROM shifts WHERE device_id = ?1 AND status = 'OPEN'")?
        .query_row([device], |r| r.get(0))
        .optional()?;
    if let Some(open) = open {
        return Err(DomainError::conflict(
            "shift_open",
            format!("this device already has shift {open} open; close it first"),
        )
        .into());
    }
    let id = new_id();
    let day = format_day(local_day(w.ctx().utc_offset, w.now()));
    let now = w.now_str();
    w.conn().execute(
        "INSERT INTO shifts (id, staff_id, device_id, day, opening_float, opened_at, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'OPEN')",
        (&id, staff_id, device, &day, opening_float, &now),
    )?;
    let opened = p::ShiftOpened {
        id: id.clone(),
        staff_id: staff_id.to_owned(),
        device_id: device.to_owned(),
        day,
        opening_float,
        opened_at: now,
    };
    w.emit(EntityKind::Shift, &id, op::OPENED, &opened)?;
    get_shift(w.conn(), &id)
}

/// Closes a shift with the cash counted; the reason is required when it differs.
pub fn close_shift(
    w: &mut WriteTx<'_>,
    id: &str,
    counted_cash: i64,
    reason: Option<&str>,
) -> Result<Shift> {
    let shift = get_shift(w.conn(), id)?;
    if shift.status != "OPEN" {
        return Err(
            DomainError::conflict("shift_closed", format!("shift {id} is already closed")).into(),
        );
    }
    let now = w.now_str();
    // Up to and including this millisecond (a payment of the same group commit has this `now`).
    let until = format_time(w.now() + time::Duration::milliseconds(1));
    let t = totals(w.conn(), &shift.opened_at, &until, Some(&shift.device_id))?;
    let expected = shift.opening_float.saturating_add(t.cash);
    let difference = counted_cash.saturating_sub(expected);
    let reason = check_reason(difference, reason)?;
    w.conn().execute(
        "UPDATE shifts SET status = 'CLOSED', closed_at = ?2, cash = ?3, edc = ?4, qris = ?5,
             expected_cash = ?6, counted_cash = ?7, difference = ?8, reason = ?9 WHERE id = ?1",
        rusqlite::params![
            id,
            now,
            t.cash,
            t.edc,
            t.qris,
            expected,
            counted_cash,
            difference,
            reason
        ],
    )?;
    let closed = p::ShiftClosed {
        id: id.to_owned(),
        staff_id: shift.staff_id.clone(),
        device_id: shift.device_id.clone(),
        day: shift.day.clone(),
        totals: (&t).into(),
        expected_cash: expected,
        counted_cash,
        difference,
        reason,
        closed_at: now,
    };
    w.emit(EntityKind::Shift, id, op::CLOSED, &closed)?;
    get_shift(w.conn(), id)
}

/// The day as it stands: its close if any, its shifts, and its money so far.
pub fn get_day(conn: &Connection, offset: time::UtcOffset, day: Date) -> Result<Day> {
    let key = format_day(day);
    let shifts = conn
        .prepare_cached(&format!(
            "SELECT {SHIFT_COLUMNS} FROM shifts WHERE day = ?1 ORDER BY opened_at"
        ))?
        .query_map([&key], shift_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let row = conn
        .prepare_cached(
            "SELECT status, manager_id, closed_at, cash, edc, qris, expected_cash, counted_cash, difference, reason, reopened_at, reopened_by
             FROM branch_days WHERE day = ?1",
        )?
        .query_row([&key], |r| {
            Ok(Day {
                day: key.clone(),
                status: r.get(0)?,
                manager_id: r.get(1)?,
                closed_at: r.get(2)?,
                shifts: Vec::new(),
                totals: Totals { cash: r.get(3)?, edc: r.get(4)?, qris: r.get(5)? },
                expected_cash: r.get(6)?,
                counted_cash: r.get(7)?,
                difference: r.get(8)?,
                reason: r.get(9)?,
                reopened_at: r.get(10)?,
                reopened_by: r.get(11)?,
            })
        })
        .optional()?;
    Ok(match row {
        Some(mut d) if d.status == "CLOSED" => {
            d.shifts = shifts;
            d
        }
        other => {
            // Open or reopened: the figures as they stand now.
            let (from, to) = day_bounds(offset, day);
            let totals = totals(conn, &from, &to, None)?;
            let (expected, counted, difference) = sums(&shifts);
            Day {
                day: key,
                status: other.as_ref().map_or("OPEN", |_| "REOPENED").to_owned(),
                manager_id: other.as_ref().and_then(|d| d.manager_id.clone()),
                closed_at: other.as_ref().and_then(|d| d.closed_at.clone()),
                shifts,
                totals,
                expected_cash: expected,
                counted_cash: counted,
                difference,
                reason: other.as_ref().and_then(|d| d.reason.clone()),
                reopened_at: other.as_ref().and_then(|d| d.reopened_at.clone()),
                reopened_by: other.and_then(|d| d.reopened_by),
            }
        }
    })
}

fn sums(shifts: &[Shift]) -> (i64, i64, i64) {
    shifts.iter().fold((0, 0, 0), |(e, c, d), s| {
        (
            e.saturating_add(s.expected_cash.unwrap_or(0)),
            c.saturating_add(s.counted_cash.unwrap_or(0)),
            d.saturating_add(s.difference.unwrap_or(0)),
        )
    })
}

/// Closes the branch day once every shift of it is closed; queues its Z-report.
pub fn close_day(
    w: &mut WriteTx<'_>,
    day: Date,
    manager_id: &str,
    reason: Option<&str>,
) -> Result<Day> {
    let offset = w.ctx().utc_offset;
    if day > local_day(offset, w.now()) {
        return Err(DomainError::invalid("date", "a day in the future cannot be closed").into());
    }
    let current = get_day(w.conn(), offset, day)?;
    if current.status == "CLOSED" {
        return Err(DomainError::conflict(
            "day_closed",
            format!("the day {} is already closed", current.day),
        )
        .into());
    }
    if let Some(open) = current.shifts.iter().find(|s| s.status == "OPEN") {
        return Err(DomainError::conflict(
            "shift_open",
            format!(
                "shift {} (staff {}) is still open; close every shift first",
                open.id, open.staff_id
            ),
        )
        .into());
    }
    let reason = check_reason(current.difference, reason)?;
    let now = w.now_str();
    let t = &current.totals;
    w.conn().execute(
        "INSERT INTO branch_days (day, status, manager_id, closed_at, shifts, cash, edc, qris, expected_cash, counted_cash, difference, reason)
         VALUES (?1, 'CLOSED', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (day) DO UPDATE SET status = 'CLOSED', manager_id = excluded.manager_id,
             closed_at = excluded.closed_at, shifts = excluded.shifts, cash = excluded.cash, edc = excluded.edc,
             qris = excluded.qris, expected_cash = excluded.expected_cash, counted_cash = excluded.counted_cash,
             difference = excluded.difference, reason = excluded.reason",
        rusqlite::params![
            current.day,
            manager_id,
            now,
            current.shifts.len() as i64,
            t.cash,
            t.edc,
            t.qris,
            current.expected_cash,
            current.counted_cash,
            current.difference,
            reason
        ],
    )?;
    let closed = p::DayClosed {
        day: current.day.clone(),
        manager_id: manager_id.to_owned(),
        shifts: current.shifts.len() as i64,
        totals: t.into(),
        expected_cash: current.expected_cash,
        counted_cash: current.counted_cash,
        difference: current.difference,
        reason,
        closed_at: now,
    };
    w.emit(EntityKind::BranchDay, &current.day, op::CLOSED, &closed)?;
    super::print_jobs::enqueue(w, "z_report", &current.day)?;
    get_day(w.conn(), offset, day)
}

/// Opens a closed day again (a manager's decision, with its reason).
pub fn reopen_day(w: &mut WriteTx<'_>, day: Date, manager_id: &str, reason: &str) -> Result<Day> {
    let offset = w.ctx().utc_offset;
    let key = format_day(day);
    let now = w.now_str();
    let n = w.conn().execute(
        "UPDATE branch_days SET status = 'REOPENED', reopened_at = ?2, reopened_by = ?3, reopen_reason = ?4
         WHERE day = ?1 AND status = 'CLOSED'",
        (&key, &now, manager_id, reason),
    )?;
    if n == 0 {
        return Err(DomainError::conflict(
            "day_not_closed",
            format!("the day {key} is not closed"),
        )
        .into());
    }
    let reopened = p::DayReopened {
        day: key.clone(),
        manager_id: manager_id.to_owned(),
        reason: reason.to_owned(),
        reopened_at: now,
    };
    w.emit(EntityKind::BranchDay, &key, op::REOPENED, &reopened)?;
    get_day(w.conn(), offset, day)
}

/// The demo's staff (README): a manager and a cashier, with their PINs.
pub const DEMO_STAFF: [(&str, &str, StaffRole, &str); 2] = [
    ("mgr-rina", "Rina (manager)", StaffRole::Manager, "2468"),
    ("kasir-budi", "Budi (kasir)", StaffRole::Cashier, "1357"),
];

pub fn demo_staff() -> Vec<StaffRecord> {
    DEMO_STAFF
        .iter()
        .map(|(id, name, role, pin)| StaffRecord {
            id: (*id).into(),
            name: (*name).into(),
            role: *role,
            active: true,
            // The demo's own constant PINs (4 digits) and a 16-byte salt: argon2 cannot refuse them.
            pin_hash: sentra_protocol::staff::hash_pin(pin, &rand::random())
                .expect("the demo's PINs hash"),
        })
        .collect()
}
