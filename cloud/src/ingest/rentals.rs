//! The rental counter's events at ingest: their rules (pure, called by `validate`) and their
//! projections (`rentals`, `rental_invoices`, `rental_payments`, called by `apply`).
//!
//! Invariants:
//! - every insert is `ON CONFLICT DO NOTHING` and a return only fills a rental not yet returned,
//!   so an event arriving twice changes nothing the second time;
//! - money rows keep their sign (DEPOSIT and PAYMENT positive, REFUND negative: the table's
//!   check refuses anything else), so summed by method they are what the drawer took;
//! - a rental invoice's number is claimed in `document_numbers` like every invoice's (`apply`).

use sentra_protocol::day::parse_day;
use sentra_protocol::payload::{
    RentalHandedOver, RentalInvoiceIssued, RentalPaymentReceived, RentalReturned,
};
use sentra_protocol::rental::{
    LINE_KINDS, MAX_DEPOSIT, MAX_LATE_DAYS, MAX_RENTAL_AMOUNT, RentalMoney, TariffRecord,
};
use sentra_protocol::workshop::PaymentMethod;
use sqlx::PgConnection;

use super::validate::{id, non_negative, same_id, sha256_hex, text, time};
use crate::event::Prepared;

fn bounded(field: &str, value: i64, max: i64) -> Result<(), String> {
    non_negative(field, value)?;
    if value > max {
        return Err(format!("{field} {value} is more than {max}"));
    }
    Ok(())
}

pub(super) fn handed_over(entity_id: &str, r: &RentalHandedOver) -> Result<(), String> {
    same_id(&r.booking_id, entity_id)?;
    text("agreement_number", &r.agreement_number)?;
    id("asset_id", &r.asset_id)?;
    id("sku", &r.sku)?;
    sentra_protocol::booking::check_customer(&r.customer).map_err(|e| e.to_string())?;
    let first = parse_day(&r.from).map_err(|e| format!("from: {e}"))?;
    let last = parse_day(&r.to).map_err(|e| format!("to: {e}"))?;
    if last < first {
        return Err(format!("to {} is before from {}", r.to, r.from));
    }
    TariffRecord {
        sku: r.sku.clone(),
        daily_rate: r.daily_rate,
        deposit: r.deposit,
        late_fee_per_day: r.late_fee_per_day,
    }
    .check_amounts()
    .map_err(|(field, problem)| format!("{field}: {problem}"))?;
    id("inspection_id", &r.inspection_id)?;
    sha256_hex("inspection_hash", &r.inspection_hash)?;
    bounded("photo_count", r.photo_count, 1_000)?;
    time("handed_over_at", &r.handed_over_at)
}

pub(super) fn returned(entity_id: &str, r: &RentalReturned) -> Result<(), String> {
    same_id(&r.booking_id, entity_id)?;
    id("inspection_id", &r.inspection_id)?;
    sha256_hex("inspection_hash", &r.inspection_hash)?;
    bounded("photo_count", r.photo_count, 1_000)?;
    time("returned_at", &r.returned_at)?;
    parse_day(&r.return_day).map_err(|e| format!("return_day: {e}"))?;
    bounded("late_days", r.late_days, MAX_LATE_DAYS)?;
    id("invoice_id", &r.invoice_id)?;
    bounded("deposit_applied", r.deposit_applied, MAX_DEPOSIT)?;
    bounded("paid", r.paid, MAX_RENTAL_AMOUNT)?;
    bounded("refunded", r.refunded, MAX_DEPOSIT)
}

pub(super) fn invoice(entity_id: &str, i: &RentalInvoiceIssued) -> Result<(), String> {
    same_id(&i.id, entity_id)?;
    text("number", &i.number)?;
    id("booking_id", &i.booking_id)?;
    if i.lines.is_empty() || i.lines.len() > sentra_protocol::rental::MAX_DAMAGE_LINES + 2 {
        return Err("a rental invoice has its rental line, a late fee and the damage lines".into());
    }
    let mut sum: i64 = 0;
    for (index, line) in i.lines.iter().enumerate() {
        if !LINE_KINDS.contains(&line.kind.as_str()) {
            return Err(format!(
                "lines[{index}].kind {:?}: expected one of {LINE_KINDS:?}",
                line.kind
            ));
        }
        bounded(&format!("lines[{index}].qty"), line.qty, MAX_LATE_DAYS)?;
        bounded(
            &format!("lines[{index}].unit_price"),
            line.unit_price,
            MAX_RENTAL_AMOUNT,
        )?;
        if line.qty.checked_mul(line.unit_price) != Some(line.amount) {
            return Err(format!(
                "lines[{index}].amount {} is not qty {} × unit_price {}",
                line.amount, line.qty, line.unit_price
            ));
        }
        sum = sum
            .checked_add(line.amount)
            .ok_or_else(|| "invoice total overflows".to_owned())?;
    }
    if i.subtotal != sum {
        return Err(format!(
            "subtotal {} is not the sum of the lines ({sum})",
            i.subtotal
        ));
    }
    non_negative("tax", i.tax)?;
    if i.subtotal.checked_add(i.tax) != Some(i.total) {
        return Err(format!(
            "total {} is not subtotal {} + tax {}",
            i.total, i.subtotal, i.tax
        ));
    }
    bounded("total", i.total, MAX_RENTAL_AMOUNT)?;
    time("issued_at", &i.issued_at)
}

pub(super) fn payment(entity_id: &str, pay: &RentalPaymentReceived) -> Result<(), String> {
    same_id(&pay.id, entity_id)?;
    id("booking_id", &pay.booking_id)?;
    if let Some(invoice) = &pay.invoice_id {
        id("invoice_id", invoice)?;
    }
    let kind = RentalMoney::parse(&pay.kind).ok_or_else(|| {
        format!(
            "kind {:?}: expected one of {:?}",
            pay.kind,
            RentalMoney::NAMES
        )
    })?;
    if PaymentMethod::parse(&pay.method).is_none() {
        return Err(format!(
            "method {:?}: expected one of {:?}",
            pay.method,
            PaymentMethod::NAMES
        ));
    }
    if !kind.fits(pay.amount) {
        return Err(format!(
            "amount {} does not fit a {} (DEPOSIT and PAYMENT 1 to {MAX_RENTAL_AMOUNT}, REFUND negative)",
            pay.amount, pay.kind
        ));
    }
    if kind == RentalMoney::Deposit && pay.invoice_id.is_some() {
        return Err("a DEPOSIT is taken before the invoice: no invoice_id".into());
    }
    time("received_at", &pay.received_at)
}

/// The rental projection rows of a batch, one set of columns per statement.
#[derive(Default)]
pub(super) struct Rows {
    handed: Vec<(RentalHandedOver, i64)>,
    returned: Vec<RentalReturned>,
    invoices: Vec<(RentalInvoiceIssued, i64)>,
    payments: Vec<(RentalPaymentReceived, i64)>,
}

impl Rows {
    pub(super) fn handed_over(&mut self, event: &Prepared, r: &RentalHandedOver) {
        self.handed.push((r.clone(), seq(event)));
    }

    pub(super) fn returned(&mut self, r: &RentalReturned) {
        self.returned.push(r.clone());
    }

    pub(super) fn invoice(&mut self, event: &Prepared, i: &RentalInvoiceIssued) {
        self.invoices.push((i.clone(), seq(event)));
    }

    pub(super) fn payment(&mut self, event: &Prepared, pay: &RentalPaymentReceived) {
        self.payments.push((pay.clone(), seq(event)));
    }

    /// Rentals are a counter's pace (a handful a day): row by row, in event order, so a
    /// handover and its return in one batch land in that order.
    pub(super) async fn write(
        &self,
        tx: &mut PgConnection,
        branch: &str,
        device: &str,
    ) -> Result<(), sqlx::Error> {
        for (r, seq) in &self.handed {
            sqlx::query(
                "INSERT INTO rentals (branch_id, booking_id, agreement_number, asset_id, sku, customer, first_day,
                                      last_day, daily_rate, deposit, late_fee_per_day, handover_inspection_id,
                                      handover_hash, handover_photos, handed_over_at, device_id, seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7::date, $8::date, $9, $10, $11, $12, $13, $14,
                         $15::timestamptz, $16::uuid, $17)
                 ON CONFLICT (branch_id, booking_id) DO NOTHING",
            )
            .bind(branch)
            .bind(&r.booking_id)
            .bind(&r.agreement_number)
            .bind(&r.asset_id)
            .bind(&r.sku)
            .bind(&r.customer)
            .bind(&r.from)
            .bind(&r.to)
            .bind(r.daily_rate)
            .bind(r.deposit)
            .bind(r.late_fee_per_day)
            .bind(&r.inspection_id)
            .bind(&r.inspection_hash)
            .bind(r.photo_count)
            .bind(&r.handed_over_at)
            .bind(device)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        for (i, seq) in &self.invoices {
            let lines = serde_json::to_string(&i.lines).unwrap_or_else(|_| "[]".to_owned());
            sqlx::query(
                "INSERT INTO rental_invoices (branch_id, id, number, booking_id, lines, subtotal, tax, total,
                                              issued_at, device_id, seq)
                 VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9::timestamptz, $10::uuid, $11)
                 ON CONFLICT (branch_id, id) DO NOTHING",
            )
            .bind(branch)
            .bind(&i.id)
            .bind(&i.number)
            .bind(&i.booking_id)
            .bind(lines)
            .bind(i.subtotal)
            .bind(i.tax)
            .bind(i.total)
            .bind(&i.issued_at)
            .bind(device)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        for r in &self.returned {
            sqlx::query(
                "UPDATE rentals
                 SET return_inspection_id = $3, return_hash = $4, return_photos = $5,
                     returned_at = $6::timestamptz, return_day = $7::date, late_days = $8, invoice_id = $9,
                     deposit_applied = $10, paid = $11, refunded = $12
                 WHERE branch_id = $1 AND booking_id = $2 AND returned_at IS NULL",
            )
            .bind(branch)
            .bind(&r.booking_id)
            .bind(&r.inspection_id)
            .bind(&r.inspection_hash)
            .bind(r.photo_count)
            .bind(&r.returned_at)
            .bind(&r.return_day)
            .bind(r.late_days)
            .bind(&r.invoice_id)
            .bind(r.deposit_applied)
            .bind(r.paid)
            .bind(r.refunded)
            .execute(&mut *tx)
            .await?;
        }
        for (pay, seq) in &self.payments {
            sqlx::query(
                "INSERT INTO rental_payments (branch_id, id, booking_id, invoice_id, kind, method, amount, reference,
                                              received_at, device_id, seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::timestamptz, $10::uuid, $11)
                 ON CONFLICT (branch_id, id) DO NOTHING",
            )
            .bind(branch)
            .bind(&pay.id)
            .bind(&pay.booking_id)
            .bind(&pay.invoice_id)
            .bind(&pay.kind)
            .bind(&pay.method)
            .bind(pay.amount)
            .bind(&pay.reference)
            .bind(&pay.received_at)
            .bind(device)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

fn seq(event: &Prepared) -> i64 {
    i64::try_from(event.raw.seq).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay(kind: &str, amount: i64, invoice: Option<&str>) -> RentalPaymentReceived {
        RentalPaymentReceived {
            id: "p1".into(),
            booking_id: "b1".into(),
            invoice_id: invoice.map(Into::into),
            kind: kind.into(),
            method: "CASH".into(),
            amount,
            reference: None,
            received_at: "2026-12-06T03:00:00.000Z".into(),
        }
    }

    #[test]
    fn money_rows_keep_their_sign() {
        assert!(payment("p1", &pay("DEPOSIT", 1_000_000, None)).is_ok());
        assert!(payment("p1", &pay("DEPOSIT", 1_000_000, Some("i1"))).is_err());
        assert!(payment("p1", &pay("REFUND", -223_000, Some("i1"))).is_ok());
        assert!(payment("p1", &pay("REFUND", 223_000, Some("i1"))).is_err());
        assert!(payment("p1", &pay("PAYMENT", 0, Some("i1"))).is_err());
        assert!(payment("p1", &pay("TIP", 5, Some("i1"))).is_err());
        assert!(payment("p2", &pay("DEPOSIT", 5, None)).is_err());
    }
}
