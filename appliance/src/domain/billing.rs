//! Invoice arithmetic and numbering. Integer rupiah throughout; PPN is 11 % of the subtotal,
//! rounded half up to the rupiah. Invoice numbers are `<branch>-<YYYYMM>-<seq>`, the month in the
//! branch's local time, the sequence restarting each month and never going back, even when the
//! box's clock does.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// PPN (Pajak Pertambahan Nilai) rate in percent.
pub const PPN_PERCENT: i64 = 11;

/// One line of an invoice: the wire type, so the invoice event carries exactly what was issued.
pub use sentra_protocol::payload::InvoiceLine as Line;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
}

/// Sum lines and add PPN. Refuses an empty invoice and any overflow.
pub fn totals(lines: &[Line]) -> Result<Totals, Invalid> {
    if lines.is_empty() {
        return Err(Invalid(
            "an invoice needs at least one labour or part line".into(),
        ));
    }
    let overflow = || Invalid("invoice total is too large".into());
    let mut subtotal: i64 = 0;
    for l in lines {
        let amount = l.qty.checked_mul(l.unit_price).ok_or_else(overflow)?;
        if amount != l.amount {
            return Err(Invalid(format!(
                "line {:?}: amount {} is not qty × unit price",
                l.description, l.amount
            )));
        }
        subtotal = subtotal.checked_add(amount).ok_or_else(overflow)?;
    }
    let tax = ppn(subtotal).ok_or_else(overflow)?;
    Ok(Totals {
        subtotal,
        tax,
        total: subtotal.checked_add(tax).ok_or_else(overflow)?,
    })
}

/// PPN on a non-negative subtotal, rounded half up.
pub fn ppn(subtotal: i64) -> Option<i64> {
    Some(subtotal.checked_mul(PPN_PERCENT)?.checked_add(50)? / 100)
}

/// The period key (`YYYYMM`) an invoice issued now belongs to. `last` is the newest period already
/// used: a clock that stepped back never makes numbers go back.
pub fn period(now_local_year: i32, now_local_month: u8, last: Option<&str>) -> String {
    let now = format!("{now_local_year:04}{now_local_month:02}");
    match last {
        Some(l) if l > now.as_str() => l.to_owned(),
        _ => now,
    }
}

/// `JKT01-202611-00007`; a store restored from a backup numbers in a series of its own
/// (`JKT01-202611-7KQ2-00007`), so it never repeats a number the store it replaced issued after
/// the backup.
pub fn invoice_number(branch: &str, period: &str, series: &str, seq: i64) -> String {
    format!("{branch}-{period}-{}{seq:05}", tag(series))
}

pub fn credit_note_number(branch: &str, period: &str, series: &str, seq: i64) -> String {
    format!("{branch}-CN-{period}-{}{seq:05}", tag(series))
}

fn tag(series: &str) -> String {
    if series.is_empty() {
        String::new()
    } else {
        format!("{series}-")
    }
}

/// A new series from 4 random bytes: 4 Crockford base-32 characters (no I, L, O, U, so a series
/// read aloud or copied by hand from a receipt is not mistaken), about a million series. The
/// cloud makes a successor box's series the same way.
pub fn number_series(random: [u8; 4]) -> String {
    sentra_protocol::successor::number_series(random)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(qty: i64, unit_price: i64) -> Line {
        Line {
            kind: "part".into(),
            description: "x".into(),
            sku: None,
            qty,
            unit_price,
            amount: qty * unit_price,
        }
    }

    #[test]
    fn ppn_rounding_table() {
        // (subtotal, tax)
        for (s, t) in [
            (0, 0),
            (100, 11),
            (4, 0),
            (5, 1),
            (45, 5),
            (50, 6),
            (150_000, 16_500),
            (99_999, 11_000),
        ] {
            assert_eq!(ppn(s), Some(t), "ppn({s})");
        }
    }

    #[test]
    fn totals_add_up() {
        let t = totals(&[line(2, 45_000), line(1, 150_000)]).expect("valid");
        assert_eq!(
            t,
            Totals {
                subtotal: 240_000,
                tax: 26_400,
                total: 266_400
            }
        );
        assert!(totals(&[]).is_err());
        let mut bad = line(2, 10);
        bad.amount = 21;
        assert!(totals(&[bad]).is_err());
        assert!(totals(&[line(1, i64::MAX / 2), line(1, i64::MAX / 2), line(1, 10)]).is_err());
    }

    #[test]
    fn periods_never_go_back() {
        assert_eq!(period(2026, 11, None), "202611");
        assert_eq!(period(2026, 12, Some("202611")), "202612");
        assert_eq!(
            period(2026, 1, Some("202611")),
            "202611",
            "clock stepped back a year"
        );
        assert_eq!(
            invoice_number("JKT01", "202611", "", 7),
            "JKT01-202611-00007"
        );
        assert_eq!(
            credit_note_number("JKT01", "202611", "", 7),
            "JKT01-CN-202611-00007"
        );
        assert_eq!(
            invoice_number("JKT01", "202611", "7KQ2", 7),
            "JKT01-202611-7KQ2-00007"
        );
        assert_eq!(
            credit_note_number("JKT01", "202611", "7KQ2", 7),
            "JKT01-CN-202611-7KQ2-00007"
        );
        assert_eq!(number_series([0, 31, 32, 255]), "0Z0Z");
    }
}
