//! The rental counter's events: their rules at ingest (pure, called by `validate`; also built
//! into the cloud's fuzz crate beside `validate`, so nothing here may need the database).

use sentra_protocol::day::parse_day;
use sentra_protocol::payload::{
    RentalHandedOver, RentalInvoiceIssued, RentalPaymentReceived, RentalReturned,
};
use sentra_protocol::rental::{
    LINE_KINDS, MAX_DEPOSIT, MAX_LATE_DAYS, MAX_RENTAL_AMOUNT, RentalMoney, TariffRecord,
};
use sentra_protocol::workshop::PaymentMethod;

use super::validate::{id, non_negative, same_id, sha256_hex, text, time, totals_add_up};

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
    totals_add_up(sum, i.subtotal, i.tax, i.total)?;
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
