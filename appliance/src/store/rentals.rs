//! The rental counter: tariffs per SKU (master data pulled from the cloud) and one rental per
//! booking, from handover to settlement (rules in `domain::rental`).
//!
//! - Handover ties the booking's handover inspection to it, takes the deposit (a `DEPOSIT`
//!   money row), records the agreement (its number in the store's number series, the tariff as
//!   agreed) and queues the rental agreement and the surat jalan on the printer: one
//!   transaction, with its events (`rental:handed_over`, `rental_payment:received`,
//!   `print_job:queued` ×2).
//! - Return ties the return inspection, counts the late days in the branch's time zone, issues
//!   the rental invoice (the branch's invoice numbers, PPN as every invoice), settles the deposit
//!   against it (a `PAYMENT` row for what the customer pays beyond it, or a `REFUND` row,
//!   negative, for what goes back) and completes the booking here, telling the cloud through
//!   the outbox (`booking:completed`): one transaction with its events, online or not.
//!
//! Invariants: money rows and rental invoices are append-only (triggers); an inspection is tied
//! to one rental at most (unique keys); every refusal happens before the first write, so a
//! refused request changes nothing.

use rusqlite::{Connection, OptionalExtension as _};
use serde::Serialize;
use time::OffsetDateTime;

use super::{DomainError, OptionalRow as _, Result, StoreError, WriteTx, billing, new_id};
use super::{bookings, inspections, print_jobs};
use crate::domain::PaymentMethod;
use crate::domain::billing::{self as billing_rules, Line};
use crate::domain::booking::{Stay, format_day};
use crate::domain::rental::{self as rules, Damage};
use sentra_protocol::EntityKind;
use sentra_protocol::payload::{self as p, op};
use sentra_protocol::rental::{RentalMoney, TariffRecord};

/// What renting a SKU costs at this branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Tariff {
    pub sku: String,
    /// Rupiah per booked day, before PPN.
    pub daily_rate: i64,
    /// Rupiah taken at handover.
    pub deposit: i64,
    /// Rupiah per day late, before PPN.
    pub late_fee_per_day: i64,
    pub updated_at: String,
}

/// The documents a handover prints, by print-job name.
pub const DOCUMENTS: [&str; 2] = ["rental_agreement", "rental_delivery_note"];

/// What prints at a rental's return: its invoice with the deposit settled.
pub const RETURN_DOCUMENT: &str = "rental_invoice";

/// A tariff pulled from the cloud (the cloud's value wins). One whose amounts this build cannot
/// take is skipped (false) rather than stalling every change behind it.
pub fn upsert_tariff(w: &mut WriteTx<'_>, t: &TariffRecord) -> Result<bool> {
    if let Err((field, problem)) = t.check_amounts() {
        tracing::warn!(sku = %t.sku, field, %problem, "pulled tariff skipped");
        return Ok(false);
    }
    w.conn()
        .prepare_cached(
            "INSERT INTO tariffs (sku, daily_rate, deposit, late_fee_per_day, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (sku) DO UPDATE SET daily_rate = excluded.daily_rate, deposit = excluded.deposit,
                 late_fee_per_day = excluded.late_fee_per_day, updated_at = excluded.updated_at",
        )?
        .execute((&t.sku, t.daily_rate, t.deposit, t.late_fee_per_day, w.now_str()))?;
    Ok(true)
}

fn tariff_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tariff> {
    Ok(Tariff {
        sku: r.get(0)?,
        daily_rate: r.get(1)?,
        deposit: r.get(2)?,
        late_fee_per_day: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

pub fn tariffs(conn: &Connection) -> Result<Vec<Tariff>> {
    Ok(conn
        .prepare_cached(
            "SELECT sku, daily_rate, deposit, late_fee_per_day, updated_at FROM tariffs ORDER BY sku",
        )?
        .query_map([], tariff_row)?
        .collect::<rusqlite::Result<_>>()?)
}

pub fn tariff(conn: &Connection, sku: &str) -> Result<Option<Tariff>> {
    Ok(conn
        .prepare_cached(
            "SELECT sku, daily_rate, deposit, late_fee_per_day, updated_at FROM tariffs WHERE sku = ?1",
        )?
        .query_row([sku], tariff_row)
        .optional()?)
}

/// Money the counter takes (a deposit, or what the invoice needs beyond it). Validated by the
/// API (method, amount bounds, reference text); the reference rule is checked here.
#[derive(Debug, Clone)]
pub struct MoneyIn {
    pub method: PaymentMethod,
    /// None: exactly what is due.
    pub amount: Option<i64>,
    pub reference: Option<String>,
}

/// How a refund leaves: the method (and, for EDC or QRIS, the terminal's reference).
#[derive(Debug, Clone)]
pub struct MoneyOut {
    pub method: PaymentMethod,
    pub reference: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Handover {
    pub inspection_id: String,
    pub deposit: Option<MoneyIn>,
}

#[derive(Debug, Clone)]
pub struct Return {
    pub inspection_id: String,
    /// None: now.
    pub returned_at: Option<OffsetDateTime>,
    pub damage: Vec<Damage>,
    pub payment: Option<MoneyIn>,
    /// None: cash.
    pub refund: Option<MoneyOut>,
}

/// A rental as the counter sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rental {
    pub booking_id: String,
    pub agreement_number: String,
    /// `OUT` (handed over) or `RETURNED` (settled).
    pub status: String,
    pub asset_id: String,
    pub sku: String,
    pub customer: String,
    /// First and last booked day (included), `YYYY-MM-DD`.
    pub from: String,
    pub to: String,
    /// Booked days charged.
    pub days: i64,
    /// The tariff as agreed at handover (rupiah).
    pub daily_rate: i64,
    pub deposit: i64,
    pub late_fee_per_day: i64,
    pub handover: InspectionLink,
    /// Set once returned.
    #[serde(rename = "return")]
    pub return_: Option<ReturnFacts>,
    /// What the deposit rows hold (rupiah).
    pub deposit_held: i64,
    /// Every money row: DEPOSIT and PAYMENT positive, REFUND negative.
    pub payments: Vec<RentalPayment>,
    pub invoice: Option<RentalInvoice>,
    pub settlement: Option<SettlementView>,
    /// The rental agreement and surat jalan queued at handover, the rental invoice at return, and
    /// any reprint asked for since.
    pub print_jobs: Vec<print_jobs::PrintJob>,
}

/// An inspection tied to a rental.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InspectionLink {
    pub inspection_id: String,
    pub tamper_proof_hash: String,
    pub photo_count: i64,
    pub odometer_km: Option<i64>,
    pub fuel_percent: Option<i64>,
    /// When the asset left (handover) or came back (return).
    pub at: String,
    /// The paired device that recorded it at the counter.
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReturnFacts {
    pub inspection: InspectionLink,
    /// The return's day in the branch's time zone.
    pub return_day: String,
    pub late_days: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RentalPayment {
    pub id: String,
    /// DEPOSIT, PAYMENT or REFUND.
    pub kind: String,
    /// CASH, EDC or QRIS.
    pub method: String,
    /// Rupiah; a refund is negative.
    pub amount: i64,
    pub reference: Option<String>,
    pub invoice_id: Option<String>,
    pub received_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RentalInvoice {
    pub id: String,
    /// In the branch's invoice series, `<branch>-<YYYYMM>-<seq>`.
    pub number: String,
    /// `rental`, `late_fee` and `damage` lines.
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<Line>,
    pub subtotal: i64,
    /// PPN 11 %.
    pub tax: i64,
    pub total: i64,
    /// The rental's money rows summed: deposit + payment − refund.
    pub paid: i64,
    pub balance: i64,
    /// PAID once settled.
    pub status: String,
    pub issued_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SettlementView {
    /// What of the deposit paid the invoice.
    pub deposit_applied: i64,
    /// What the customer paid beyond the deposit.
    pub paid_by_customer: i64,
    /// What of the deposit went back (a positive figure; its row is negative).
    pub refunded: i64,
}

fn conflict(code: &'static str, message: String) -> StoreError {
    DomainError::conflict(code, message).into()
}

fn invalid(field: &str, message: String) -> StoreError {
    DomainError::invalid(field, message).into()
}

/// The booking's days as dates (stored validated).
fn stay(b: &bookings::Booking) -> Result<Stay> {
    Stay::parse(&b.from, &b.to)
        .map_err(|e| StoreError::Corrupt(format!("booking {}: {}", b.id, e.problem)))
}

/// The inspection `id` for the booking's asset, of `kind`, not tied to a rental yet.
fn usable_inspection(
    conn: &Connection,
    id: &str,
    kind: &str,
    asset: &str,
) -> Result<inspections::Inspection> {
    let ins = inspections::get(conn, id).map_err(|e| match e {
        StoreError::Domain(DomainError::NotFound { .. }) => invalid(
            "inspection_id",
            format!("no inspection {id:?}; record it first (POST /v1/inspections)"),
        ),
        other => other,
    })?;
    if ins.kind != kind {
        return Err(invalid(
            "inspection_id",
            format!(
                "inspection {id} is a {} inspection; this needs a {kind} one",
                ins.kind
            ),
        ));
    }
    if ins.asset_id != asset {
        return Err(invalid(
            "inspection_id",
            format!(
                "inspection {id} is of asset {}; this booking rents {asset}",
                ins.asset_id
            ),
        ));
    }
    let used: Option<String> = conn
        .prepare_cached(
            "SELECT booking_id FROM rentals WHERE handover_inspection_id = ?1 OR return_inspection_id = ?1",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if let Some(other) = used {
        return Err(conflict(
            "inspection_used",
            format!("inspection {id} is already tied to the rental of booking {other}"),
        ));
    }
    Ok(ins)
}

fn check_reference(field: &str, method: PaymentMethod, reference: Option<&String>) -> Result<()> {
    if method.needs_reference() && reference.is_none() {
        return Err(invalid(
            field,
            format!(
                "a {} payment needs the terminal's reference (the EDC approval code or the QRIS transaction id)",
                method.as_str()
            ),
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn insert_money(
    w: &mut WriteTx<'_>,
    actor: &str,
    booking_id: &str,
    invoice_id: Option<&str>,
    kind: RentalMoney,
    method: PaymentMethod,
    amount: i64,
    reference: Option<&String>,
) -> Result<()> {
    super::staff::refuse_if_closed(w)?;
    let id = new_id();
    let now = w.now_str();
    w.conn()
        .prepare_cached(
            "INSERT INTO rental_payments (id, booking_id, invoice_id, kind, method, amount, reference, received_at, received_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(rusqlite::params![
            id,
            booking_id,
            invoice_id,
            kind.as_str(),
            method.as_str(),
            amount,
            reference,
            now,
            actor
        ])?;
    w.emit(
        EntityKind::RentalPayment,
        &id,
        op::RECEIVED,
        &p::RentalPaymentReceived {
            id: id.clone(),
            booking_id: booking_id.to_owned(),
            invoice_id: invoice_id.map(str::to_owned),
            kind: kind.as_str().to_owned(),
            method: method.as_str().to_owned(),
            amount,
            reference: reference.cloned(),
            received_at: now,
        },
    )?;
    Ok(())
}

/// Hands over booking `booking_id`'s asset at the counter.
pub fn hand_over(
    w: &mut WriteTx<'_>,
    actor: &str,
    booking_id: &str,
    h: &Handover,
) -> Result<Rental> {
    let conn = w.conn();
    let booking = bookings::get(conn, booking_id)?;
    if let Some(status) = status_of(conn, booking_id)? {
        return Err(conflict(
            "already_handed_over",
            format!("booking {booking_id} was already handed over (the rental is {status})"),
        ));
    }
    match booking.state.as_str() {
        "CONFIRMED" | "TENTATIVE" => {}
        "HELD" => {
            return Err(conflict(
                "wrong_state",
                format!(
                    "booking {booking_id} is HELD: confirm it first (POST /v1/bookings/{booking_id}/confirm with the payment reference), then hand over"
                ),
            ));
        }
        other => {
            return Err(conflict(
                "wrong_state",
                format!(
                    "booking {booking_id} is {other}; only a confirmed booking (or one taken offline, TENTATIVE) is handed over"
                ),
            ));
        }
    }
    let days = stay(&booking)?;
    let today = w.now().to_offset(w.ctx().utc_offset).date();
    if today < days.first {
        return Err(conflict(
            "too_early",
            format!(
                "booking {booking_id} starts on {}; today is {} at this branch, so the asset is not the customer's yet",
                booking.from,
                format_day(today)
            ),
        ));
    }
    let tariff = tariff(conn, &booking.sku)?.ok_or_else(|| {
        conflict(
            "no_tariff",
            format!(
                "no tariff for SKU {} at this branch yet; the cloud's master data sets it (PUT /v1/branches/<branch>/tariffs/{})",
                booking.sku, booking.sku
            ),
        )
    })?;
    let ins = usable_inspection(conn, &h.inspection_id, "HANDOVER", &booking.asset_id)?;
    if ins.created_at < booking.created_at {
        return Err(invalid(
            "inspection_id",
            format!(
                "inspection {} was recorded before booking {booking_id} was made; inspect the asset for this handover",
                ins.id
            ),
        ));
    }
    let deposit = match (&h.deposit, tariff.deposit) {
        (None, 0) => None,
        (None, due) => {
            return Err(invalid(
                "deposit",
                format!(
                    "the tariff of {} asks a deposit of {due} rupiah; take it at handover",
                    booking.sku
                ),
            ));
        }
        (Some(d), due) => {
            let amount = d.amount.unwrap_or(due);
            if amount < due {
                return Err(invalid(
                    "deposit.amount",
                    format!(
                        "the deposit is short: {amount} rupiah taken, the tariff of {} asks {due}",
                        booking.sku
                    ),
                ));
            }
            if amount <= 0 {
                return Err(invalid(
                    "deposit",
                    format!(
                        "the tariff of {} asks no deposit; leave it out",
                        booking.sku
                    ),
                ));
            }
            check_reference("deposit.reference", d.method, d.reference.as_ref())?;
            Some((d.clone(), amount))
        }
    };

    let (period, tag, seq) = billing::next_number(w, "RA")?;
    let agreement_number = rules::agreement_number(&w.ctx().branch_id, &period, &tag, seq);
    let now = w.now_str();
    w.conn().execute(
        "INSERT INTO rentals (booking_id, agreement_number, asset_id, sku, customer, first_day, last_day, daily_rate,
                              deposit, late_fee_per_day, handover_inspection_id, handed_over_at, handed_over_by, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'OUT')",
        rusqlite::params![
            booking_id,
            agreement_number,
            booking.asset_id,
            booking.sku,
            booking.customer,
            booking.from,
            booking.to,
            tariff.daily_rate,
            tariff.deposit,
            tariff.late_fee_per_day,
            ins.id,
            now,
            actor
        ],
    )?;
    w.emit(
        EntityKind::Rental,
        booking_id,
        op::HANDED_OVER,
        &p::RentalHandedOver {
            booking_id: booking_id.to_owned(),
            agreement_number,
            asset_id: booking.asset_id.clone(),
            sku: booking.sku.clone(),
            customer: booking.customer.clone(),
            from: booking.from.clone(),
            to: booking.to.clone(),
            daily_rate: tariff.daily_rate,
            deposit: tariff.deposit,
            late_fee_per_day: tariff.late_fee_per_day,
            inspection_id: ins.id.clone(),
            inspection_hash: ins.tamper_proof_hash.clone(),
            photo_count: ins.photos.len() as i64,
            handed_over_at: now,
        },
    )?;
    if let Some((d, amount)) = deposit {
        insert_money(
            w,
            actor,
            booking_id,
            None,
            RentalMoney::Deposit,
            d.method,
            amount,
            d.reference.as_ref(),
        )?;
    }
    for document in DOCUMENTS {
        print_jobs::enqueue(w, document, booking_id)?;
    }
    get(w.conn(), booking_id)
}

/// Takes booking `booking_id`'s asset back: the return inspection, the invoice, the settlement.
pub fn take_back(w: &mut WriteTx<'_>, actor: &str, booking_id: &str, r: &Return) -> Result<Rental> {
    let conn = w.conn();
    let booking = bookings::get(conn, booking_id)?;
    let rental = match status_of(conn, booking_id)? {
        None => {
            return Err(conflict(
                "not_handed_over",
                format!(
                    "booking {booking_id} was never handed over; a return follows a handover (POST /v1/bookings/{booking_id}/handover)"
                ),
            ));
        }
        Some(status) if status != "OUT" => {
            return Err(conflict(
                "already_returned",
                format!("the rental of booking {booking_id} is already {status}"),
            ));
        }
        Some(_) => get(conn, booking_id)?,
    };
    let ins = usable_inspection(conn, &r.inspection_id, "RETURN", &rental.asset_id)?;
    if ins.created_at < rental.handover.at {
        return Err(invalid(
            "inspection_id",
            format!(
                "inspection {} was recorded before the asset was handed over ({}); inspect it on its return",
                ins.id, rental.handover.at
            ),
        ));
    }
    let handed_over = super::parse_time(&rental.handover.at)?;
    let returned_at = r.returned_at.unwrap_or_else(|| w.now());
    if returned_at < handed_over || returned_at > w.now() {
        return Err(invalid(
            "returned_at",
            format!(
                "expected a time between the handover ({}) and now",
                rental.handover.at
            ),
        ));
    }
    let offset = w.ctx().utc_offset;
    let return_day = returned_at.to_offset(offset).date();
    let days = stay(&booking)?;
    let late_days = rules::late_days(days.last, return_day);
    let asset = asset_label(conn, &rental.asset_id)?;
    let charges = rules::charges(
        &asset,
        rules::rental_days(days.first, days.last),
        rental.daily_rate,
        late_days,
        rental.late_fee_per_day,
        &r.damage,
    )
    .map_err(|e| invalid("damage", e.0))?;
    let settlement = rules::settle(rental.deposit_held, charges.totals.total);
    let pay = match (&r.payment, settlement.customer_pays) {
        (None, 0) => None,
        (None, due) => {
            return Err(invalid(
                "payment",
                format!(
                    "the invoice comes to {} rupiah and the deposit holds {}: take the {due} rupiah due",
                    charges.totals.total, rental.deposit_held
                ),
            ));
        }
        (Some(_), 0) => {
            return Err(invalid(
                "payment",
                format!(
                    "nothing is due beyond the deposit ({} rupiah held, the invoice comes to {}); leave the payment out",
                    rental.deposit_held, charges.totals.total
                ),
            ));
        }
        (Some(m), due) => {
            if let Some(amount) = m.amount
                && amount != due
            {
                return Err(invalid(
                    "payment.amount",
                    format!("{due} rupiah is due beyond the deposit, not {amount}"),
                ));
            }
            check_reference("payment.reference", m.method, m.reference.as_ref())?;
            Some((m.method, due, m.reference.clone()))
        }
    };
    let refund = r.refund.clone().unwrap_or(MoneyOut {
        method: PaymentMethod::Cash,
        reference: None,
    });
    if settlement.refund > 0 {
        check_reference("refund.reference", refund.method, refund.reference.as_ref())?;
    }

    let (period, tag, seq) = billing::next_number(w, "INV")?;
    let number = billing_rules::invoice_number(&w.ctx().branch_id, &period, &tag, seq);
    let invoice_id = new_id();
    let now = w.now_str();
    let returned_at = super::format_time(returned_at);
    let return_day = format_day(return_day);
    w.conn().execute(
        "INSERT INTO rental_invoices (id, number, booking_id, lines, subtotal, tax, total, issued_at, issued_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        rusqlite::params![
            invoice_id,
            number,
            booking_id,
            super::to_json(&charges.lines),
            charges.totals.subtotal,
            charges.totals.tax,
            charges.totals.total,
            now,
            actor
        ],
    )?;
    w.emit(
        EntityKind::RentalInvoice,
        &invoice_id,
        op::ISSUED,
        &p::RentalInvoiceIssued {
            id: invoice_id.clone(),
            number,
            booking_id: booking_id.to_owned(),
            lines: charges.lines.clone(),
            subtotal: charges.totals.subtotal,
            tax: charges.totals.tax,
            total: charges.totals.total,
            issued_at: now.clone(),
        },
    )?;
    let damage: Vec<serde_json::Value> = r
        .damage
        .iter()
        .map(|d| serde_json::json!({"description": d.description, "amount": d.amount}))
        .collect();
    w.conn().execute(
        "UPDATE rentals SET status = 'RETURNED', return_inspection_id = ?2, returned_at = ?3, return_day = ?4,
                            late_days = ?5, damage = ?6, invoice_id = ?7, returned_by = ?8
         WHERE booking_id = ?1 AND status = 'OUT'",
        rusqlite::params![
            booking_id,
            ins.id,
            returned_at,
            return_day,
            late_days,
            super::to_json(&damage),
            invoice_id,
            actor
        ],
    )?;
    w.emit(
        EntityKind::Rental,
        booking_id,
        op::RETURNED,
        &p::RentalReturned {
            booking_id: booking_id.to_owned(),
            inspection_id: ins.id.clone(),
            inspection_hash: ins.tamper_proof_hash.clone(),
            photo_count: ins.photos.len() as i64,
            returned_at: returned_at.clone(),
            return_day,
            late_days,
            invoice_id: invoice_id.clone(),
            deposit_applied: settlement.deposit_applied,
            paid: settlement.customer_pays,
            refunded: settlement.refund,
        },
    )?;
    if let Some((method, amount, reference)) = pay {
        insert_money(
            w,
            actor,
            booking_id,
            Some(&invoice_id),
            RentalMoney::Payment,
            method,
            amount,
            reference.as_ref(),
        )?;
    }
    if settlement.refund > 0 {
        insert_money(
            w,
            actor,
            booking_id,
            Some(&invoice_id),
            RentalMoney::Refund,
            refund.method,
            -settlement.refund,
            refund.reference.as_ref(),
        )?;
    }
    // The booking is done here at once; the cloud completes its own at sync.
    let returned_local = super::parse_time(&returned_at)?
        .to_offset(offset)
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::Corrupt(format!("returned_at: {e}")))?;
    bookings::complete_at_counter(w, booking_id)?;
    w.emit(
        EntityKind::Booking,
        booking_id,
        op::COMPLETED,
        &p::BookingCompleted {
            id: booking_id.to_owned(),
            idempotency_key: p::booking_idempotency_key(booking_id),
            returned_at: returned_local,
        },
    )?;
    // The customer leaves with the invoice and what was settled.
    print_jobs::enqueue(w, RETURN_DOCUMENT, booking_id)?;
    get(w.conn(), booking_id)
}

/// The rental's status (`OUT`, `RETURNED`), if booking `booking_id` was handed over.
pub fn status_of(conn: &Connection, booking_id: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT status FROM rentals WHERE booking_id = ?1")?
        .query_row([booking_id], |r| r.get(0))
        .optional()?)
}

/// Prints one of a rental's papers again (a jammed printer, a customer's lost copy): the
/// agreement or surat jalan once handed over, the invoice once returned.
pub fn reprint(
    w: &mut WriteTx<'_>,
    booking_id: &str,
    document: &str,
) -> Result<print_jobs::PrintJob> {
    let conn = w.conn();
    if status_of(conn, booking_id)?.is_none() {
        bookings::get(conn, booking_id)?;
        return Err(conflict(
            "not_handed_over",
            format!("booking {booking_id} was never handed over at the counter: it has no papers"),
        ));
    }
    if document == RETURN_DOCUMENT && get(conn, booking_id)?.invoice.is_none() {
        return Err(conflict(
            "not_returned",
            format!("booking {booking_id} has not been returned: it has no invoice yet"),
        ));
    }
    print_jobs::enqueue(w, document, booking_id)
}

/// How the printed papers and the invoice name the asset: its name and plate.
fn asset_label(conn: &Connection, asset_id: &str) -> Result<String> {
    let found: Option<(String, String)> = conn
        .prepare_cached("SELECT name, plate FROM assets WHERE id = ?1")?
        .query_row([asset_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match found {
        Some((name, plate)) => format!("{name} ({plate})"),
        None => asset_id.to_owned(),
    })
}

fn link(conn: &Connection, id: &str, at: String, by: String) -> Result<InspectionLink> {
    let ins = inspections::get(conn, id)?;
    Ok(InspectionLink {
        inspection_id: ins.id,
        tamper_proof_hash: ins.tamper_proof_hash,
        photo_count: ins.photos.len() as i64,
        odometer_km: ins.odometer_km,
        fuel_percent: ins.fuel_percent,
        at,
        by,
    })
}

type RentalRow = (
    [String; 10],
    [i64; 3],
    (Option<String>, Option<String>, Option<String>, Option<i64>),
    Option<String>,
);

pub fn get(conn: &Connection, booking_id: &str) -> Result<Rental> {
    let (
        [agreement_number, status, asset_id, sku, customer, from, to, ho_ins, ho_at, ho_by],
        [daily_rate, deposit, late_fee_per_day],
        (ret_ins, returned_at, return_day, late_days),
        returned_by,
    ): RentalRow = conn
        .prepare_cached(
            "SELECT agreement_number, status, asset_id, sku, customer, first_day, last_day, handover_inspection_id,
                    handed_over_at, handed_over_by, daily_rate, deposit, late_fee_per_day,
                    return_inspection_id, returned_at, return_day, late_days, returned_by
             FROM rentals WHERE booking_id = ?1",
        )?
        .query_row([booking_id], |r| {
            Ok((
                [
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ],
                [r.get(10)?, r.get(11)?, r.get(12)?],
                (r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?),
                r.get(17)?,
            ))
        })
        .or_not_found("rental", booking_id)?;
    let payments: Vec<RentalPayment> = conn
        .prepare_cached(
            "SELECT id, kind, method, amount, reference, invoice_id, received_at FROM rental_payments
             WHERE booking_id = ?1 ORDER BY received_at, rowid",
        )?
        .query_map([booking_id], |r| {
            Ok(RentalPayment {
                id: r.get(0)?,
                kind: r.get(1)?,
                method: r.get(2)?,
                amount: r.get(3)?,
                reference: r.get(4)?,
                invoice_id: r.get(5)?,
                received_at: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let sum = |kind: &str| -> i64 {
        payments
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.amount)
            .sum()
    };
    let deposit_held = sum("DEPOSIT");
    let invoice = conn
        .prepare_cached(
            "SELECT id, number, lines, subtotal, tax, total, issued_at FROM rental_invoices WHERE booking_id = ?1",
        )?
        .query_row([booking_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
            ))
        })
        .optional()?;
    let (invoice, settlement) = match invoice {
        None => (None, None),
        Some((id, number, lines, subtotal, tax, total, issued_at)) => {
            let paid: i64 = payments.iter().map(|p| p.amount).sum();
            let refunded = -sum("REFUND");
            let balance = total - paid;
            (
                Some(RentalInvoice {
                    id,
                    number,
                    lines: super::from_json("rental_invoices.lines", &lines)?,
                    subtotal,
                    tax,
                    total,
                    paid,
                    balance,
                    status: if balance == 0 { "PAID" } else { "ISSUED" }.into(),
                    issued_at,
                }),
                Some(SettlementView {
                    deposit_applied: deposit_held - refunded,
                    paid_by_customer: sum("PAYMENT"),
                    refunded,
                }),
            )
        }
    };
    let return_ = match (ret_ins, returned_at, return_day, late_days) {
        (Some(ins), Some(at), Some(day), Some(late)) => Some(ReturnFacts {
            inspection: link(conn, &ins, at, returned_by.unwrap_or_default())?,
            return_day: day,
            late_days: late,
        }),
        _ => None,
    };
    let job_ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM print_jobs WHERE ref_id = ?1 AND document IN ('rental_agreement', 'rental_delivery_note', 'rental_invoice')
             ORDER BY rowid",
        )?
        .query_map([booking_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let print_jobs = job_ids
        .iter()
        .map(|id| print_jobs::get(conn, id))
        .collect::<Result<_>>()?;
    let days = match (
        crate::domain::booking::parse_day(&from),
        crate::domain::booking::parse_day(&to),
    ) {
        (Ok(first), Ok(last)) => rules::rental_days(first, last),
        _ => return Err(StoreError::Corrupt(format!("rental {booking_id}: days"))),
    };
    Ok(Rental {
        booking_id: booking_id.to_owned(),
        agreement_number,
        status,
        asset_id,
        sku,
        customer,
        from,
        to,
        days,
        daily_rate,
        deposit,
        late_fee_per_day,
        handover: link(conn, &ho_ins, ho_at, ho_by)?,
        return_,
        deposit_held,
        payments,
        invoice,
        settlement,
        print_jobs,
    })
}

/// What the rental agreement and the surat jalan print, from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paper {
    pub rental: Rental,
    pub asset_name: String,
    pub plate: String,
}

pub fn paper(conn: &Connection, booking_id: &str) -> Result<Paper> {
    let rental = get(conn, booking_id)?;
    let (asset_name, plate) = conn
        .prepare_cached("SELECT name, plate FROM assets WHERE id = ?1")?
        .query_row([&rental.asset_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or_else(|| (rental.asset_id.clone(), String::new()));
    Ok(Paper {
        rental,
        asset_name,
        plate,
    })
}

/// The demo branch's tariffs: its two rental SKUs.
pub fn demo_tariffs() -> Vec<TariffRecord> {
    vec![
        TariffRecord {
            sku: "AVANZA-2024".into(),
            daily_rate: 350_000,
            deposit: 1_000_000,
            late_fee_per_day: 100_000,
        },
        TariffRecord {
            sku: "XPANDER-2023".into(),
            daily_rate: 400_000,
            deposit: 1_500_000,
            late_fee_per_day: 125_000,
        },
    ]
}
