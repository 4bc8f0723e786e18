//! Stock that matches the shelf: adjustments with a reason (COUNT, DAMAGE, RETURN_TO_SUPPLIER),
//! unused parts a work order gives back (WORK_ORDER_RETURN), and cycle counts.
//!
//! Every adjustment is a `stock_movements` row with reason `ADJUSTMENT`, its kind in
//! `adjustment`, the level kept by [`workshop::add_to_level`] and one `stock_movement:adjusted`
//! outbox event, in the caller's transaction; the rules are `domain::stock`. A cycle count is
//! store-room working state like a pick slip (not synced, no events of its own): applying it
//! writes one COUNT adjustment per differing SKU, all in one transaction, each naming the count.

use rusqlite::Connection;
use serde::Serialize;

use super::workshop::{self, StockLevel, WorkOrder};
use super::{DomainError, OptionalRow as _, Result, WriteTx, master, new_id, pick_slips};
use crate::domain::stock::{self as rules, ReturnableLine, StockRefusal};
use crate::domain::work_order::Status;
use crate::domain::{Note, Qty, Sku};
use sentra_protocol::EntityKind;
use sentra_protocol::payload::{self as p, op};
use sentra_protocol::workshop::{StockAdjustment, StockReason};

/// The most SKUs a count may be opened for; a count of everything names none.
pub const COUNT_SKUS_MAX: usize = 500;
/// The most a counted line may say the shelf holds.
pub const COUNTED_MAX: i64 = Qty::MAX * 10;

/// One adjustment made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Adjustment {
    pub movement_id: String,
    pub sku: String,
    /// COUNT, DAMAGE, RETURN_TO_SUPPLIER or WORK_ORDER_RETURN.
    pub adjustment: String,
    pub delta: i64,
    pub note: Option<String>,
    pub work_order_id: Option<String>,
    pub count_id: Option<String>,
    pub at: String,
}

/// An adjustment's answer: what moved and the stock after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Adjusted {
    pub adjustment: Adjustment,
    pub stock: StockLevel,
}

/// A return's answer: the movements (one per work-order line it gave back from), the work order
/// as it now stands and the stock after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Returned {
    pub movements: Vec<Adjustment>,
    pub work_order: WorkOrder,
    pub stock: StockLevel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StockCount {
    pub id: String,
    /// OPEN, APPLIED or CANCELLED.
    pub status: String,
    /// The SKUs this count is limited to; null for a count of every part.
    pub skus: Option<Vec<String>>,
    pub note: Option<String>,
    pub opened_at: String,
    pub opened_by: String,
    pub closed_at: Option<String>,
    /// What was counted, by SKU.
    pub lines: Vec<CountLine>,
    /// SKUs of a limited count not counted yet (applying leaves them as they are).
    pub uncounted: Vec<String>,
    /// How many lines differ from what the box expected.
    pub differing: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CountLine {
    pub sku: String,
    pub name: String,
    /// What the shelf held.
    pub counted: i64,
    /// The box's level when this SKU was first counted in this count.
    pub expected: i64,
    /// `counted - expected`: what applying adds to the level.
    pub difference: i64,
    /// The box's level now.
    pub on_hand: i64,
    /// `on_hand - expected`: movements since the SKU was counted, kept when applied.
    pub moved_since: i64,
    /// The COUNT adjustment applying made, when the line differed.
    pub movement_id: Option<String>,
}

/// How a counted line names its part.
#[derive(Debug, Clone)]
pub enum CountedPart {
    Sku(Sku),
    /// A scanned barcode: the code as read and the catalogue values to look for.
    Barcode {
        code: String,
        keys: Vec<String>,
    },
}

fn refused(sku: &str, r: StockRefusal) -> super::StoreError {
    let code = match r {
        StockRefusal::BelowZero { .. } => "insufficient_stock",
        StockRefusal::NoDifference => "no_difference",
        StockRefusal::NotDirect => {
            return DomainError::invalid("reason", r.message(sku)).into();
        }
        StockRefusal::MoreThanDispensed { .. } => "more_than_dispensed",
    };
    DomainError::conflict(code, r.message(sku)).into()
}

struct NewMovement<'a> {
    sku: &'a str,
    delta: i64,
    kind: StockAdjustment,
    note: Option<&'a str>,
    work_order_id: Option<&'a str>,
    line_id: Option<&'a str>,
    count_id: Option<&'a str>,
}

/// The one place an ADJUSTMENT is written: its row, the level and its outbox event.
fn insert(w: &mut WriteTx<'_>, actor: &str, m: NewMovement<'_>) -> Result<Adjustment> {
    debug_assert!(m.kind.sign_ok(m.delta));
    let id = new_id();
    let now = w.now_str();
    w.conn().execute(
        "INSERT INTO stock_movements (id, sku, delta, reason, work_order_id, created_at, created_by, adjustment, note, count_id)
         VALUES (?1, ?2, ?3, 'ADJUSTMENT', ?4, ?5, ?6, ?7, ?8, ?9)",
        (&id, m.sku, m.delta, m.work_order_id, &now, actor, m.kind.as_str(), m.note, m.count_id),
    )?;
    workshop::add_to_level(w.conn(), m.sku, m.delta)?;
    let moved = p::StockMoved {
        sku: m.sku.to_owned(),
        delta: m.delta,
        reason: StockReason::Adjustment.as_str().into(),
        work_order_id: m.work_order_id.map(str::to_owned),
        line_id: m.line_id.map(str::to_owned),
        unit_price: None,
        reference: None,
        at: now.clone(),
        adjustment: Some(m.kind.as_str().into()),
        note: m.note.map(str::to_owned),
        count_id: m.count_id.map(str::to_owned),
    };
    w.emit(EntityKind::StockMovement, &id, op::ADJUSTED, &moved)?;
    Ok(Adjustment {
        movement_id: id,
        sku: m.sku.to_owned(),
        adjustment: m.kind.as_str().into(),
        delta: m.delta,
        note: m.note.map(str::to_owned),
        work_order_id: m.work_order_id.map(str::to_owned),
        count_id: m.count_id.map(str::to_owned),
        at: now,
    })
}

/// A direct adjustment: `amount` is what was removed (DAMAGE, RETURN_TO_SUPPLIER) or what the
/// shelf holds (COUNT).
pub fn adjust(
    w: &mut WriteTx<'_>,
    actor: &str,
    sku: &Sku,
    kind: StockAdjustment,
    amount: i64,
    note: Option<&Note>,
) -> Result<Adjusted> {
    let part = master::part_named(w.conn(), sku.as_str())?;
    let on_hand = workshop::on_hand(w.conn(), &part.sku)?;
    let delta =
        rules::adjustment_delta(kind, on_hand, amount).map_err(|r| refused(&part.sku, r))?;
    let adjustment = insert(
        w,
        actor,
        NewMovement {
            sku: &part.sku,
            delta,
            kind,
            note: note.map(Note::as_str),
            work_order_id: None,
            line_id: None,
            count_id: None,
        },
    )?;
    let stock = workshop::stock_level(w.conn(), &part.sku)?;
    Ok(Adjusted { adjustment, stock })
}

/// Unused parts back to the shelf from a work order: at most what was dispensed to it minus
/// earlier returns, newest lines first, one movement per line; refused once it is invoiced.
pub fn return_parts(
    w: &mut WriteTx<'_>,
    actor: &str,
    wo_id: &str,
    sku: &Sku,
    qty: Qty,
) -> Result<Returned> {
    let status = workshop::status_of(w.conn(), wo_id)?;
    if status == Status::Invoiced {
        return Err(DomainError::conflict(
            "already_invoiced",
            format!(
                "work order {wo_id} is invoiced; its parts were billed, so a return is a credit note at the cashier and a RECEIPT at the store"
            ),
        )
        .into());
    }
    let part = master::part_named(w.conn(), sku.as_str())?;
    let lines: Vec<ReturnableLine> = w
        .conn()
        .prepare_cached(
            "SELECT id, qty, returned FROM work_order_parts WHERE work_order_id = ?1 AND sku = ?2 ORDER BY created_at, id",
        )?
        .query_map((wo_id, &part.sku), |r| {
            Ok(ReturnableLine {
                id: r.get(0)?,
                qty: r.get(1)?,
                returned: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let taken = rules::allocate_return(&lines, qty.get()).map_err(|r| refused(&part.sku, r))?;
    let mut movements = Vec::with_capacity(taken.len());
    for (line_id, take) in taken {
        w.conn().execute(
            "UPDATE work_order_parts SET returned = returned + ?2 WHERE id = ?1",
            (&line_id, take),
        )?;
        movements.push(insert(
            w,
            actor,
            NewMovement {
                sku: &part.sku,
                delta: take,
                kind: StockAdjustment::WorkOrderReturn,
                note: None,
                work_order_id: Some(wo_id),
                line_id: Some(&line_id),
                count_id: None,
            },
        )?);
    }
    Ok(Returned {
        movements,
        work_order: workshop::get(w.conn(), wo_id)?,
        stock: workshop::stock_level(w.conn(), &part.sku)?,
    })
}

/// Open a count of `skus` (every part when None). One count is open at a time.
pub fn open_count(
    w: &mut WriteTx<'_>,
    actor: &str,
    skus: Option<&[Sku]>,
    note: Option<&Note>,
) -> Result<StockCount> {
    if let Some(open) = w
        .conn()
        .prepare_cached("SELECT id FROM stock_counts WHERE status = 'OPEN' LIMIT 1")?
        .query_row([], |r| r.get::<_, String>(0))
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?
    {
        return Err(DomainError::conflict(
            "count_open",
            format!("count {open} is still open; apply or cancel it first"),
        )
        .into());
    }
    let id = new_id();
    let now = w.now_str();
    w.conn().execute(
        "INSERT INTO stock_counts (id, status, scoped, note, opened_at, opened_by) VALUES (?1, 'OPEN', ?2, ?3, ?4, ?5)",
        (&id, skus.is_some(), note.map(Note::as_str), &now, actor),
    )?;
    for sku in skus.unwrap_or_default() {
        let part = master::part_named(w.conn(), sku.as_str())?;
        w.conn().execute(
            "INSERT OR IGNORE INTO stock_count_skus (count_id, sku) VALUES (?1, ?2)",
            (&id, &part.sku),
        )?;
    }
    get_count(w.conn(), &id)
}

fn count_status(conn: &Connection, id: &str) -> Result<String> {
    conn.prepare_cached("SELECT status FROM stock_counts WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .or_not_found("stock count", id)
}

fn must_be_open(conn: &Connection, id: &str, doing: &str) -> Result<String> {
    let status = count_status(conn, id)?;
    if status != "OPEN" {
        return Err(DomainError::conflict(
            "count_closed",
            format!("count {id} is {status}; only an OPEN count can be {doing}"),
        )
        .into());
    }
    Ok(status)
}

/// Add `qty` counted units of a part (0 records "counted, none on the shelf").
pub fn add_count_line(
    w: &mut WriteTx<'_>,
    id: &str,
    part: &CountedPart,
    qty: i64,
) -> Result<StockCount> {
    must_be_open(w.conn(), id, "counted")?;
    let part = match part {
        CountedPart::Sku(sku) => master::part_named(w.conn(), sku.as_str())?,
        CountedPart::Barcode { code, keys } => pick_slips::part_by_barcode(w.conn(), keys)?
            .ok_or_else(|| {
                DomainError::invalid(
                    "barcode",
                    format!("no part in the catalogue has barcode {code}"),
                )
            })?,
    };
    let scoped: bool =
        w.conn()
            .query_row("SELECT scoped FROM stock_counts WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
    if scoped {
        let listed: bool = w.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM stock_count_skus WHERE count_id = ?1 AND sku = ?2)",
            (id, &part.sku),
            |r| r.get(0),
        )?;
        if !listed {
            return Err(DomainError::invalid(
                "sku",
                format!(
                    "{} is not one of the SKUs count {id} was opened for",
                    part.sku
                ),
            )
            .into());
        }
    }
    let counted: i64 = w
        .conn()
        .query_row(
            "SELECT counted FROM stock_count_lines WHERE count_id = ?1 AND sku = ?2",
            (id, &part.sku),
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?
        .unwrap_or(0);
    let total = counted.saturating_add(qty);
    if total > COUNTED_MAX {
        return Err(DomainError::invalid(
            "qty",
            format!(
                "{total} of {} is more than a count records ({COUNTED_MAX})",
                part.sku
            ),
        )
        .into());
    }
    let on_hand = workshop::on_hand(w.conn(), &part.sku)?;
    let now = w.now_str();
    w.conn().execute(
        "INSERT INTO stock_count_lines (count_id, sku, counted, expected, first_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT (count_id, sku) DO UPDATE SET counted = excluded.counted, updated_at = excluded.updated_at",
        (id, &part.sku, total, on_hand, &now),
    )?;
    get_count(w.conn(), id)
}

/// Apply an OPEN count: one COUNT adjustment per differing line, all or none. Applying an
/// APPLIED count again changes nothing and answers the same count.
pub fn apply_count(w: &mut WriteTx<'_>, actor: &str, id: &str) -> Result<StockCount> {
    if count_status(w.conn(), id)? == "APPLIED" {
        return get_count(w.conn(), id);
    }
    must_be_open(w.conn(), id, "applied")?;
    let lines: Vec<(String, i64, i64)> = w
        .conn()
        .prepare_cached(
            "SELECT sku, expected, counted FROM stock_count_lines WHERE count_id = ?1 ORDER BY sku",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (sku, expected, counted) in lines {
        let current = workshop::on_hand(w.conn(), &sku)?;
        let delta = rules::count_apply_delta(expected, counted, current).map_err(|r| {
            DomainError::conflict(
                "count_stale",
                format!(
                    "{}; {sku} moved since it was counted: count it again in a new count",
                    r.message(&sku)
                ),
            )
        })?;
        if delta == 0 {
            continue;
        }
        let adjustment = insert(
            w,
            actor,
            NewMovement {
                sku: &sku,
                delta,
                kind: StockAdjustment::Count,
                note: None,
                work_order_id: None,
                line_id: None,
                count_id: Some(id),
            },
        )?;
        w.conn().execute(
            "UPDATE stock_count_lines SET movement_id = ?3 WHERE count_id = ?1 AND sku = ?2",
            (id, &sku, &adjustment.movement_id),
        )?;
    }
    close_count(w, actor, id, "APPLIED")
}

/// Cancel an OPEN count: nothing it counted changes stock.
pub fn cancel_count(w: &mut WriteTx<'_>, actor: &str, id: &str) -> Result<StockCount> {
    must_be_open(w.conn(), id, "cancelled")?;
    close_count(w, actor, id, "CANCELLED")
}

fn close_count(w: &mut WriteTx<'_>, actor: &str, id: &str, to: &str) -> Result<StockCount> {
    let now = w.now_str();
    w.conn().execute(
        "UPDATE stock_counts SET status = ?2, closed_at = ?3, closed_by = ?4 WHERE id = ?1",
        (id, to, &now, actor),
    )?;
    get_count(w.conn(), id)
}

pub fn get_count(conn: &Connection, id: &str) -> Result<StockCount> {
    let (status, scoped, note, opened_at, opened_by, closed_at): (
        String,
        bool,
        Option<String>,
        String,
        String,
        Option<String>,
    ) = conn
        .prepare_cached(
            "SELECT status, scoped, note, opened_at, opened_by, closed_at FROM stock_counts WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .or_not_found("stock count", id)?;
    let lines: Vec<CountLine> = conn
        .prepare_cached(
            "SELECT l.sku, p.name, l.counted, l.expected, coalesce(s.on_hand, 0), l.movement_id
             FROM stock_count_lines l JOIN parts p ON p.sku = l.sku
             LEFT JOIN stock_levels s ON s.sku = l.sku
             WHERE l.count_id = ?1 ORDER BY l.sku",
        )?
        .query_map([id], |r| {
            let counted: i64 = r.get(2)?;
            let expected: i64 = r.get(3)?;
            let on_hand: i64 = r.get(4)?;
            Ok(CountLine {
                sku: r.get(0)?,
                name: r.get(1)?,
                counted,
                expected,
                difference: rules::count_difference(expected, counted),
                on_hand,
                moved_since: on_hand.saturating_sub(expected),
                movement_id: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let skus: Option<Vec<String>> = if scoped {
        Some(
            conn.prepare_cached(
                "SELECT sku FROM stock_count_skus WHERE count_id = ?1 ORDER BY sku",
            )?
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?,
        )
    } else {
        None
    };
    let uncounted = skus
        .iter()
        .flatten()
        .filter(|s| !lines.iter().any(|l| &l.sku == *s))
        .cloned()
        .collect();
    Ok(StockCount {
        id: id.to_owned(),
        status,
        skus,
        note,
        opened_at,
        opened_by,
        closed_at,
        differing: lines.iter().filter(|l| l.difference != 0).count(),
        lines,
        uncounted,
    })
}
