//! The rental counter's events at ingest: their projections (`rentals`, `rental_invoices`, `rental_payments`, called by `apply`).
//!
//! Invariants:
//! - every insert is `ON CONFLICT DO NOTHING` and a return only fills a rental not yet returned,
//!   so an event arriving twice changes nothing the second time;
//! - money rows keep their sign (DEPOSIT and PAYMENT positive, REFUND negative: the table's
//!   check refuses anything else), so summed by method they are what the drawer took;
//! - a rental invoice's number is claimed in `document_numbers` like every invoice's (`apply`).

use sentra_protocol::payload::{
    RentalHandedOver, RentalInvoiceIssued, RentalPaymentReceived, RentalReturned,
};
use sqlx::PgConnection;

use crate::event::Prepared;

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
