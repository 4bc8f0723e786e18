//! The rental counter's arithmetic: the days a rental is charged, the late days of a return, the
//! rental invoice's lines, and how the deposit settles the invoice. Integer rupiah, checked.
//!
//! - A rental is charged for its booked days (first to last, both included) at the agreed daily
//!   rate, whenever it comes back: an early return is not refunded by the day.
//! - Late days are the days between the booked last day and the day the asset came back, both as
//!   the branch's calendar has them (its `branch.utc_offset`): back on the last day is on time,
//!   back at 00:30 the day after is one day late.
//! - The invoice's lines are the rental, the late fee (when late) and the damage lines; PPN and
//!   totals are `billing::totals`'.
//! - The deposit pays the invoice up to its amount; what the invoice needs beyond it the customer
//!   pays, and what the deposit held beyond the invoice is refunded.

use time::Date;

use super::Invalid;
use super::billing::{self, Line, Totals};
use sentra_protocol::rental::{MAX_LATE_DAYS, MAX_RENTAL_AMOUNT};

/// Days charged for the booked days `first..=last`.
pub fn rental_days(first: Date, last: Date) -> i64 {
    (last - first).whole_days() + 1
}

/// Days the asset came back after the booked `last` day (0 when on time or early).
pub fn late_days(last: Date, returned_on: Date) -> i64 {
    (returned_on - last).whole_days().max(0)
}

/// What a return charges, before settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charges {
    pub lines: Vec<Line>,
    pub totals: Totals,
}

/// One damage found at return, as the counter charges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub description: String,
    pub amount: i64,
}

/// The rental invoice's lines and totals. `what` names the asset on the rental line.
pub fn charges(
    what: &str,
    days: i64,
    daily_rate: i64,
    late_days: i64,
    late_fee_per_day: i64,
    damage: &[Damage],
) -> Result<Charges, Invalid> {
    if late_days > MAX_LATE_DAYS {
        return Err(Invalid(format!(
            "{late_days} late days is more than the {MAX_LATE_DAYS} a return counts"
        )));
    }
    let overflow = || Invalid("the rental invoice's total is too large".into());
    let line = |kind: &str, description: String, qty: i64, unit_price: i64| {
        Ok::<_, Invalid>(Line {
            kind: kind.into(),
            description,
            sku: None,
            qty,
            unit_price,
            amount: qty.checked_mul(unit_price).ok_or_else(overflow)?,
        })
    };
    let mut lines = vec![line("rental", format!("Sewa {what}"), days, daily_rate)?];
    if late_days > 0 && late_fee_per_day > 0 {
        lines.push(line(
            "late_fee",
            "Denda keterlambatan".into(),
            late_days,
            late_fee_per_day,
        )?);
    }
    for d in damage {
        lines.push(line(
            "damage",
            format!("Kerusakan: {}", d.description),
            1,
            d.amount,
        )?);
    }
    let totals = billing::totals(&lines)?;
    if totals.total > MAX_RENTAL_AMOUNT {
        return Err(overflow());
    }
    Ok(Charges { lines, totals })
}

/// How the deposit held settles an invoice of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// What of the deposit pays the invoice.
    pub deposit_applied: i64,
    /// What the customer pays beyond the deposit.
    pub customer_pays: i64,
    /// What of the deposit goes back to the customer.
    pub refund: i64,
}

pub fn settle(held: i64, total: i64) -> Settlement {
    let deposit_applied = held.min(total).max(0);
    Settlement {
        deposit_applied,
        customer_pays: total - deposit_applied,
        refund: held - deposit_applied,
    }
}

/// `JKT01-RA-202611-00003`: a rental agreement's number, in the store's number series like
/// invoices (see `billing::invoice_number`).
pub fn agreement_number(branch: &str, period: &str, series: &str, seq: i64) -> String {
    let tag = if series.is_empty() {
        String::new()
    } else {
        format!("{series}-")
    };
    format!("{branch}-RA-{period}-{tag}{seq:05}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn days_and_late_days() {
        assert_eq!(rental_days(date!(2026 - 12 - 01), date!(2026 - 12 - 01)), 1);
        assert_eq!(rental_days(date!(2026 - 12 - 30), date!(2027 - 01 - 02)), 4);
        for (back, late) in [
            (date!(2026 - 12 - 02), 0),
            (date!(2026 - 12 - 03), 0),
            (date!(2026 - 12 - 04), 1),
            (date!(2027 - 01 - 03), 31),
        ] {
            assert_eq!(late_days(date!(2026 - 12 - 03), back), late, "{back}");
        }
    }

    #[test]
    fn charges_add_up_with_ppn() {
        let c = charges(
            "Toyota Avanza (B 1234 SNT)",
            3,
            350_000,
            2,
            100_000,
            &[Damage {
                description: "Baret pintu kiri".into(),
                amount: 150_000,
            }],
        )
        .expect("valid");
        let kinds: Vec<_> = c.lines.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(kinds, ["rental", "late_fee", "damage"]);
        assert_eq!(c.totals.subtotal, 1_050_000 + 200_000 + 150_000);
        assert_eq!(c.totals.tax, 154_000);
        assert_eq!(c.totals.total, 1_554_000);
        let on_time = charges("x", 2, 350_000, 0, 100_000, &[]).expect("valid");
        assert_eq!(on_time.lines.len(), 1);
        assert_eq!(on_time.totals.total, 777_000);
        assert!(charges("x", 2, i64::MAX / 2, 0, 0, &[]).is_err());
        assert!(charges("x", 1, 1, MAX_LATE_DAYS + 1, 1, &[]).is_err());
    }

    #[test]
    fn the_deposit_settles_up_to_the_invoice() {
        assert_eq!(
            settle(1_000_000, 777_000),
            Settlement {
                deposit_applied: 777_000,
                customer_pays: 0,
                refund: 223_000
            }
        );
        assert_eq!(
            settle(500_000, 777_000),
            Settlement {
                deposit_applied: 500_000,
                customer_pays: 277_000,
                refund: 0
            }
        );
        assert_eq!(
            settle(0, 777_000),
            Settlement {
                deposit_applied: 0,
                customer_pays: 777_000,
                refund: 0
            }
        );
        assert_eq!(settle(777_000, 777_000).refund, 0);
        assert_eq!(
            agreement_number("JKT01", "202612", "", 3),
            "JKT01-RA-202612-00003"
        );
        assert_eq!(
            agreement_number("JKT01", "202612", "7KQ2", 3),
            "JKT01-RA-202612-7KQ2-00003"
        );
    }
}
