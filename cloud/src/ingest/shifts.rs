//! The cash drawer's events at ingest: cashier shifts (`staff_shifts`), branch days
//! (`branch_days`) and voided payments (`payment_voids`), called by `apply` after the batch's
//! payments are inserted (a void may follow its payment in the same batch).
//!
//! Invariants: a shift's open inserts `ON CONFLICT DO NOTHING` and its close fills only a shift
//! still open, so either event sent twice changes nothing the second time; a day's close or
//! reopen applies only over an older event of that day (`seq`), so a replay cannot undo a later
//! change; a void inserts `ON CONFLICT DO NOTHING`. Row by row, in event order (a handful a day).

use sentra_protocol::payload::Payload;
use sqlx::PgConnection;

use crate::event::Prepared;

#[derive(Default)]
pub(super) struct Rows {
    events: Vec<(Payload, i64)>,
}

impl Rows {
    pub(super) fn push(&mut self, event: &Prepared, payload: &Payload) {
        self.events.push((
            payload.clone(),
            i64::try_from(event.raw.seq).unwrap_or(i64::MAX),
        ));
    }

    pub(super) async fn write(
        &self,
        tx: &mut PgConnection,
        branch: &str,
        device: &str,
    ) -> Result<(), sqlx::Error> {
        for (payload, seq) in &self.events {
            match payload {
                Payload::ShiftOpened(s) => {
                    sqlx::query(
                        "INSERT INTO staff_shifts (branch_id, id, staff_id, device_id, day, opening_float, opened_at, status, box_id)
                         VALUES ($1, $2, $3, $4, $5::date, $6, $7::timestamptz, 'OPEN', $8::uuid)
                         ON CONFLICT (branch_id, id) DO NOTHING",
                    )
                    .bind(branch)
                    .bind(&s.id)
                    .bind(&s.staff_id)
                    .bind(&s.device_id)
                    .bind(&s.day)
                    .bind(s.opening_float)
                    .bind(&s.opened_at)
                    .bind(device)
                    .execute(&mut *tx)
                    .await?;
                }
                Payload::ShiftClosed(s) => {
                    sqlx::query(
                        "UPDATE staff_shifts SET status = 'CLOSED', closed_at = $3::timestamptz, cash = $4, edc = $5,
                             qris = $6, expected_cash = $7, counted_cash = $8, difference = $9, reason = $10
                         WHERE branch_id = $1 AND id = $2 AND status = 'OPEN'",
                    )
                    .bind(branch)
                    .bind(&s.id)
                    .bind(&s.closed_at)
                    .bind(s.totals.cash)
                    .bind(s.totals.edc)
                    .bind(s.totals.qris)
                    .bind(s.expected_cash)
                    .bind(s.counted_cash)
                    .bind(s.difference)
                    .bind(&s.reason)
                    .execute(&mut *tx)
                    .await?;
                }
                Payload::DayClosed(d) => {
                    sqlx::query(
                        "INSERT INTO branch_days (branch_id, day, status, manager_id, closed_at, shifts, cash, edc, qris,
                                                  expected_cash, counted_cash, difference, reason, seq)
                         VALUES ($1, $2::date, 'CLOSED', $3, $4::timestamptz, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                         ON CONFLICT (branch_id, day) DO UPDATE SET status = 'CLOSED', manager_id = excluded.manager_id,
                             closed_at = excluded.closed_at, shifts = excluded.shifts, cash = excluded.cash,
                             edc = excluded.edc, qris = excluded.qris, expected_cash = excluded.expected_cash,
                             counted_cash = excluded.counted_cash, difference = excluded.difference,
                             reason = excluded.reason, seq = excluded.seq
                         WHERE branch_days.seq < excluded.seq",
                    )
                    .bind(branch)
                    .bind(&d.day)
                    .bind(&d.manager_id)
                    .bind(&d.closed_at)
                    .bind(d.shifts)
                    .bind(d.totals.cash)
                    .bind(d.totals.edc)
                    .bind(d.totals.qris)
                    .bind(d.expected_cash)
                    .bind(d.counted_cash)
                    .bind(d.difference)
                    .bind(&d.reason)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                Payload::DayReopened(d) => {
                    sqlx::query(
                        "UPDATE branch_days SET status = 'REOPENED', reopened_at = $3::timestamptz, reopened_by = $4,
                             reopen_reason = $5, seq = $6
                         WHERE branch_id = $1 AND day = $2::date AND seq < $6",
                    )
                    .bind(branch)
                    .bind(&d.day)
                    .bind(&d.reopened_at)
                    .bind(&d.manager_id)
                    .bind(&d.reason)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                Payload::PaymentVoided(v) => {
                    sqlx::query(
                        "INSERT INTO payment_voids (branch_id, payment_id, invoice_id, manager_id, reason, voided_at, device_id, seq)
                         VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7::uuid, $8)
                         ON CONFLICT (branch_id, payment_id) DO NOTHING",
                    )
                    .bind(branch)
                    .bind(&v.id)
                    .bind(&v.invoice_id)
                    .bind(&v.manager_id)
                    .bind(&v.reason)
                    .bind(&v.voided_at)
                    .bind(device)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}
