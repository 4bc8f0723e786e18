//! Invoices, payments and credit notes. Money is append-only: an invoice is immutable once issued
//! (triggers refuse updates and deletes), payments only add, and corrections are credit notes.
//! The one exception is a void: a payment taken in error, taken back the day it was received
//! (its shift still open) with a manager's approval, moves whole from `payments` to
//! `payment_voids` (a trigger refuses any other delete), so every sum over `payments` is right.
//! Numbers are unique and increasing per branch even offline (see `domain::billing`).

use rusqlite::{Connection, OptionalExtension as _};
use serde::Serialize;

use super::shared::{self, Record};
use super::{DomainError, OptionalRow as _, Result, WriteTx, master, new_id, workshop};
use crate::domain::billing::{self as rules, Line};
use crate::domain::work_order::Status;
use crate::domain::{PaymentMethod, Rupiah, Text};
use sentra_protocol::EntityKind;
use sentra_protocol::payload::{self as p, op};
use sentra_protocol::record::RecordKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Invoice {
    pub id: String,
    /// `<branch>-<YYYYMM>-<seq>`.
    pub number: String,
    pub work_order_id: String,
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<Line>,
    pub subtotal: i64,
    /// PPN 11 %.
    pub tax: i64,
    pub total: i64,
    pub paid: i64,
    pub credited: i64,
    /// total − credited − paid; negative means a refund is due.
    pub balance: i64,
    /// ISSUED, PARTIALLY_PAID, PAID or REFUND_DUE.
    pub status: String,
    pub payments: Vec<Payment>,
    pub credit_notes: Vec<CreditNote>,
    /// Payments taken back (voided): not in `paid`, shown for the record.
    pub voided: Vec<VoidedPayment>,
    pub issued_at: String,
}

/// A payment a manager voided: what it was, and who took it back, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VoidedPayment {
    #[serde(flatten)]
    pub payment: Payment,
    pub voided_at: String,
    /// The staff id of the manager who approved the void.
    pub manager_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Payment {
    pub id: String,
    /// CASH, EDC or QRIS.
    pub method: String,
    pub amount: i64,
    pub reference: Option<String>,
    pub received_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CreditNote {
    pub id: String,
    pub number: String,
    pub amount: i64,
    pub reason: String,
    pub issued_at: String,
}

#[derive(Debug, Clone)]
pub struct LabourLine {
    pub description: Text,
    pub amount: Rupiah,
}

/// The store's number series (`meta`): empty until a restore gives it one of its own.
pub const NUMBER_SERIES_META: &str = "number_series";

/// The next number in `series` for the branch's current local month, with the store's number
/// series.
pub(super) fn next_number(w: &WriteTx<'_>, series: &str) -> Result<(String, String, i64)> {
    let local = w.now().to_offset(w.ctx().utc_offset);
    let last: Option<String> = w.conn().query_row(
        "SELECT max(period) FROM number_counters WHERE series = ?1",
        [series],
        |r| r.get(0),
    )?;
    let period = rules::period(local.year(), local.month() as u8, last.as_deref());
    let seq: i64 = w.conn().query_row(
        "INSERT INTO number_counters (series, period, last_seq) VALUES (?1, ?2, 1)
         ON CONFLICT (series, period) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
        (series, &period),
        |r| r.get(0),
    )?;
    let tag = super::meta(w.conn(), NUMBER_SERIES_META)?.unwrap_or_default();
    Ok((period, tag, seq))
}

pub fn issue(
    w: &mut WriteTx<'_>,
    actor: &str,
    work_order_id: &str,
    labour: &[LabourLine],
) -> Result<Invoice> {
    let status = workshop::status_of(w.conn(), work_order_id)?;
    match status {
        Status::Done => {}
        Status::Invoiced => {
            let number: String = w.conn().query_row(
                "SELECT number FROM invoices WHERE work_order_id = ?1",
                [work_order_id],
                |r| r.get(0),
            )?;
            return Err(DomainError::conflict(
                "already_invoiced",
                format!("work order {work_order_id} is already invoiced as {number}"),
            )
            .into());
        }
        other => {
            return Err(DomainError::conflict(
                "invalid_transition",
                format!(
                    "work order {work_order_id} is {}; only DONE work can be invoiced",
                    other.as_str()
                ),
            )
            .into());
        }
    }
    let mut lines: Vec<Line> = labour
        .iter()
        .map(|l| Line {
            kind: "labour".into(),
            description: l.description.to_string(),
            sku: None,
            qty: 1,
            unit_price: l.amount.get(),
            amount: l.amount.get(),
        })
        .collect();
    for p in workshop::parts_of(w.conn(), work_order_id)? {
        // What came back to the shelf unused is not billed.
        let qty = p.qty - p.returned;
        if qty <= 0 {
            continue;
        }
        let name = master::part(w.conn(), &p.sku)?.name;
        // A price from master data times a dispensed quantity: checked like the totals.
        let amount = qty.checked_mul(p.unit_price).ok_or_else(|| {
            DomainError::invalid(
                "parts",
                format!(
                    "{} × {} of {} does not fit an amount",
                    qty, p.unit_price, p.sku
                ),
            )
        })?;
        lines.push(Line {
            kind: "part".into(),
            description: name,
            sku: Some(p.sku),
            qty,
            unit_price: p.unit_price,
            amount,
        });
    }
    let totals = rules::totals(&lines).map_err(|e| DomainError::invalid("labour", e.0))?;
    let (period, tag, seq) = next_number(w, "INV")?;
    let number = rules::invoice_number(&w.ctx().branch_id, &period, &tag, seq);
    let id = new_id();
    let now = w.now_str();
    w.conn().execute(
        "INSERT INTO invoices (id, number, work_order_id, lines, subtotal, tax, total, issued_at, issued_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        (&id, &number, work_order_id, super::to_json(&lines), totals.subtotal, totals.tax, totals.total, &now, actor),
    )?;
    w.conn().execute(
        "UPDATE work_orders SET status = 'INVOICED', updated_at = ?2 WHERE id = ?1",
        (work_order_id, &now),
    )?;
    let invoice = get(w.conn(), &id)?;
    let issued = p::InvoiceIssued {
        id: invoice.id.clone(),
        number: invoice.number.clone(),
        work_order_id: invoice.work_order_id.clone(),
        lines: invoice.lines.clone(),
        subtotal: invoice.subtotal,
        tax: invoice.tax,
        total: invoice.total,
        issued_at: invoice.issued_at.clone(),
    };
    w.emit(EntityKind::Invoice, &id, op::ISSUED, &issued)?;
    Ok(invoice)
}

pub fn pay(
    w: &mut WriteTx<'_>,
    actor: &str,
    invoice_id: &str,
    method: PaymentMethod,
    amount: Rupiah,
    reference: Option<&Text>,
) -> Result<Invoice> {
    if method.needs_reference() && reference.is_none() {
        return Err(DomainError::invalid(
            "reference",
            format!(
                "a {} payment needs the terminal's reference",
                method.as_str()
            ),
        )
        .into());
    }
    super::staff::refuse_if_closed(w)?;
    let before = get(w.conn(), invoice_id)?;
    if amount.get() > before.balance {
        return Err(DomainError::conflict(
            "overpayment",
            format!(
                "invoice {} has {} rupiah outstanding; a payment of {} is more than that",
                before.number,
                before.balance.max(0),
                amount.get()
            ),
        )
        .into());
    }
    let payment = Payment {
        id: new_id(),
        method: method.as_str().into(),
        amount: amount.get(),
        reference: reference.map(Text::to_string),
        received_at: w.now_str(),
    };
    w.conn().execute(
        "INSERT INTO payments (id, invoice_id, method, amount, reference, received_at, received_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        (&payment.id, invoice_id, &payment.method, payment.amount, &payment.reference, &payment.received_at, actor),
    )?;
    let received = p::PaymentReceived {
        id: payment.id.clone(),
        invoice_id: invoice_id.to_owned(),
        method: payment.method.clone(),
        amount: payment.amount,
        reference: payment.reference.clone(),
        received_at: payment.received_at.clone(),
    };
    w.emit(EntityKind::Payment, &payment.id, op::RECEIVED, &received)?;
    get(w.conn(), invoice_id)
}

pub fn credit(
    w: &mut WriteTx<'_>,
    actor: &str,
    invoice_id: &str,
    amount: Rupiah,
    reason: &Text,
) -> Result<Invoice> {
    let before = get(w.conn(), invoice_id)?;
    let creditable = before.total - before.credited;
    if amount.get() > creditable {
        return Err(DomainError::conflict(
            "over_credit",
            format!(
                "invoice {} can be credited by at most {creditable} rupiah",
                before.number
            ),
        )
        .into());
    }
    let (period, tag, seq) = next_number(w, "CN")?;
    let note = CreditNote {
        id: new_id(),
        number: rules::credit_note_number(&w.ctx().branch_id, &period, &tag, seq),
        amount: amount.get(),
        reason: reason.to_string(),
        issued_at: w.now_str(),
    };
    w.conn().execute(
        "INSERT INTO credit_notes (id, number, invoice_id, amount, reason, issued_at, issued_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        (&note.id, &note.number, invoice_id, note.amount, &note.reason, &note.issued_at, actor),
    )?;
    let issued = p::CreditNoteIssued {
        id: note.id.clone(),
        number: note.number.clone(),
        invoice_id: invoice_id.to_owned(),
        amount: note.amount,
        reason: note.reason.clone(),
        issued_at: note.issued_at.clone(),
    };
    w.emit(EntityKind::CreditNote, &note.id, op::ISSUED, &issued)?;
    get(w.conn(), invoice_id)
}

/// Takes back a payment taken in error (wrong method, wrong invoice, typed twice), with a
/// manager's approval (`manager_id`, checked by the caller). Only on the branch day the payment
/// was received, while that day is open and the shift it was taken in (if any) is still open: a
/// closed drawer's totals are final, and later a correction is a credit note. The payment moves
/// to `payment_voids` whole; `payment:voided` tells the cloud.
pub fn void_payment(
    w: &mut WriteTx<'_>,
    actor: &str,
    payment_id: &str,
    manager_id: &str,
    reason: &Text,
) -> Result<Invoice> {
    let found: Option<(String, String, String)> = w
        .conn()
        .prepare_cached("SELECT invoice_id, received_at, received_by FROM payments WHERE id = ?1")?
        .query_row([payment_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((invoice_id, received_at, received_by)) = found else {
        let voided: Option<String> = w
            .conn()
            .prepare_cached("SELECT voided_at FROM payment_voids WHERE id = ?1")?
            .query_row([payment_id], |r| r.get(0))
            .optional()?;
        return Err(match voided {
            Some(at) => DomainError::conflict(
                "already_voided",
                format!("payment {payment_id} was voided at {at}"),
            ),
            None => DomainError::not_found("payment", payment_id),
        }
        .into());
    };
    super::staff::refuse_if_closed(w)?;
    super::staff::refuse_void_after_close(w, payment_id, &received_at, &received_by)?;
    let voided_at = w.now_str();
    w.conn().execute(
        "INSERT INTO payment_voids (id, invoice_id, method, amount, reference, received_at, received_by, voided_at, voided_by, manager_id, reason)
         SELECT id, invoice_id, method, amount, reference, received_at, received_by, ?2, ?3, ?4, ?5 FROM payments WHERE id = ?1",
        (payment_id, &voided_at, actor, manager_id, reason.as_str()),
    )?;
    w.conn()
        .execute("DELETE FROM payments WHERE id = ?1", [payment_id])?;
    let voided = p::PaymentVoided {
        id: payment_id.to_owned(),
        invoice_id: invoice_id.clone(),
        manager_id: manager_id.to_owned(),
        reason: reason.to_string(),
        voided_at,
    };
    w.emit(EntityKind::Payment, payment_id, op::VOIDED, &voided)?;
    get(w.conn(), &invoice_id)
}

pub fn get(conn: &Connection, id: &str) -> Result<Invoice> {
    let (number, work_order_id, lines, subtotal, tax, total, issued_at): (String, String, String, i64, i64, i64, String) = conn
        .prepare_cached("SELECT number, work_order_id, lines, subtotal, tax, total, issued_at FROM invoices WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .or_not_found("invoice", id)?;
    let payments: Vec<Payment> = conn
        .prepare_cached("SELECT id, method, amount, reference, received_at FROM payments WHERE invoice_id = ?1 ORDER BY received_at, id")?
        .query_map([id], |r| Ok(Payment { id: r.get(0)?, method: r.get(1)?, amount: r.get(2)?, reference: r.get(3)?, received_at: r.get(4)? }))?
        .collect::<rusqlite::Result<_>>()?;
    let credit_notes: Vec<CreditNote> = conn
        .prepare_cached("SELECT id, number, amount, reason, issued_at FROM credit_notes WHERE invoice_id = ?1 ORDER BY issued_at, id")?
        .query_map([id], |r| Ok(CreditNote { id: r.get(0)?, number: r.get(1)?, amount: r.get(2)?, reason: r.get(3)?, issued_at: r.get(4)? }))?
        .collect::<rusqlite::Result<_>>()?;
    let voided: Vec<VoidedPayment> = conn
        .prepare_cached("SELECT id, method, amount, reference, received_at, voided_at, manager_id, reason FROM payment_voids WHERE invoice_id = ?1 ORDER BY voided_at, id")?
        .query_map([id], |r| Ok(VoidedPayment {
            payment: Payment { id: r.get(0)?, method: r.get(1)?, amount: r.get(2)?, reference: r.get(3)?, received_at: r.get(4)? },
            voided_at: r.get(5)?, manager_id: r.get(6)?, reason: r.get(7)?,
        }))?
        .collect::<rusqlite::Result<_>>()?;
    let paid: i64 = payments.iter().map(|p| p.amount).sum();
    let credited: i64 = credit_notes.iter().map(|c| c.amount).sum();
    let balance = total - credited - paid;
    let status = match balance {
        b if b < 0 => "REFUND_DUE",
        0 => "PAID",
        _ if paid > 0 => "PARTIALLY_PAID",
        _ => "ISSUED",
    };
    Ok(Invoice {
        id: id.to_owned(),
        number,
        work_order_id,
        lines: super::from_json("invoices.lines", &lines)?,
        subtotal,
        tax,
        total,
        paid,
        credited,
        balance,
        status: status.into(),
        payments,
        credit_notes,
        voided,
        issued_at,
    })
}

/// One work order on a vehicle, with its invoice once issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Visit {
    pub work_order: workshop::WorkOrder,
    pub invoice: Option<Invoice>,
}

/// A vehicle's service history: its work orders (and their invoices), newest first.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct History {
    pub vehicle: Record,
    pub visits: Vec<Visit>,
    /// Whether older visits exist beyond `limit`.
    pub more: bool,
}

/// A vehicle's work orders, newest first: `work_orders_by_vehicle` read backwards, no sort.
const VEHICLE_WORK_ORDERS: &str =
    "SELECT id FROM work_orders WHERE vehicle_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2";

/// A vehicle's work orders, newest first, at most `limit` (1..=[`super::vehicles::MAX_HISTORY`]), each with its
/// invoice.
pub fn history(conn: &Connection, id: &str, limit: u32) -> Result<History> {
    let vehicle = shared::get(conn, RecordKind::Vehicle, id)?;
    let ids: Vec<String> = conn
        .prepare_cached(VEHICLE_WORK_ORDERS)?
        .query_map((id, i64::from(limit) + 1), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let more = ids.len() > limit as usize;
    let mut visits = Vec::with_capacity(ids.len().min(limit as usize));
    for wo in ids.iter().take(limit as usize) {
        let invoice: Option<String> = conn
            .prepare_cached("SELECT id FROM invoices WHERE work_order_id = ?1")?
            .query_row([wo], |r| r.get(0))
            .optional()?;
        visits.push(Visit {
            work_order: workshop::get(conn, wo)?,
            invoice: invoice.map(|i| get(conn, &i)).transpose()?,
        });
    }
    Ok(History {
        vehicle,
        visits,
        more,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The history reads the vehicle's entries of `work_orders_by_vehicle` backwards: no table
    /// scan and no sort, however the index is ordered on disk (0016 made it ascending).
    #[test]
    fn a_vehicle_history_is_read_from_its_index_without_a_sort() {
        let mut conn = rusqlite::Connection::open_in_memory().expect("in-memory database");
        super::super::schema::migrate(&mut conn, Path::new(":memory:")).expect("migrations");
        let plan: Vec<String> = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                super::VEHICLE_WORK_ORDERS
            ))
            .and_then(|mut stmt| {
                stmt.query_map(("v1", 11), |r| r.get::<_, String>(3))?
                    .collect()
            })
            .expect("query plan");
        assert_eq!(
            plan,
            ["SEARCH work_orders USING COVERING INDEX work_orders_by_vehicle (vehicle_id=?)"],
            "{plan:?}"
        );
    }
}
