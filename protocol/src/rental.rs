//! The rental counter's vocabulary both sides speak: a SKU's tariff (master data the cloud
//! authors and every branch pulls), the bounds every rental amount stays within, and the kinds
//! of money a rental moves. Pure: no I/O.
//!
//! Money a rental moves is one kind of row, summed by method like any payment: a `DEPOSIT`
//! taken at handover (positive), a `PAYMENT` of what the rental invoice needs beyond the
//! deposit (positive), and a `REFUND` of what the deposit held beyond the invoice (negative).
//! For one rental the rows add up to the invoice's total; for a shift they add up to what went
//! into (and out of) the drawer by method.

use serde::{Deserialize, Serialize};

/// Highest daily rate a tariff may set (rupiah).
pub const MAX_DAILY_RATE: i64 = 100_000_000;
/// Highest deposit a tariff may ask, and a counter may take (rupiah).
pub const MAX_DEPOSIT: i64 = 1_000_000_000;
/// Highest late fee per day a tariff may set (rupiah).
pub const MAX_LATE_FEE_PER_DAY: i64 = 100_000_000;
/// Largest single rental money row either way, and largest rental invoice (rupiah): far above
/// any real rental (92 days at the highest rate, years late, twenty damage lines at the line
/// maximum), far below what a branch's sums in PostgreSQL's bigint can hold.
pub const MAX_RENTAL_AMOUNT: i64 = 1_000_000_000_000;
/// Most late days a return may count (the protocol's calendar is 100 years).
pub const MAX_LATE_DAYS: i64 = 40_000;
/// Most damage lines one return takes.
pub const MAX_DAMAGE_LINES: usize = 20;

/// `PUT /v1/branches/{branch}/tariffs/{sku}`: what renting one SKU costs at a branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TariffRecord {
    pub sku: String,
    /// Rupiah per rental day (the booked days, both ends included), before PPN.
    pub daily_rate: i64,
    /// Rupiah the counter takes at handover and settles against the rental invoice at return.
    pub deposit: i64,
    /// Rupiah per day the asset comes back after the booked last day, before PPN.
    pub late_fee_per_day: i64,
}

impl TariffRecord {
    /// The amounts' bounds; the SKU is checked by whoever knows its rules.
    pub fn check_amounts(&self) -> Result<(), (&'static str, String)> {
        for (field, value, min, max) in [
            ("daily_rate", self.daily_rate, 1, MAX_DAILY_RATE),
            ("deposit", self.deposit, 0, MAX_DEPOSIT),
            (
                "late_fee_per_day",
                self.late_fee_per_day,
                0,
                MAX_LATE_FEE_PER_DAY,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err((
                    field,
                    format!("{value} is out of range: whole rupiah from {min} to {max}"),
                ));
            }
        }
        Ok(())
    }
}

/// What a rental money row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RentalMoney {
    /// Taken at handover; positive.
    Deposit,
    /// Paid at return for what the invoice needs beyond the deposit; positive.
    Payment,
    /// Given back at return from what the deposit held beyond the invoice; negative.
    Refund,
}

impl RentalMoney {
    pub const ALL: [RentalMoney; 3] = [
        RentalMoney::Deposit,
        RentalMoney::Payment,
        RentalMoney::Refund,
    ];
    pub const NAMES: [&'static str; 3] = ["DEPOSIT", "PAYMENT", "REFUND"];

    pub fn as_str(self) -> &'static str {
        match self {
            RentalMoney::Deposit => "DEPOSIT",
            RentalMoney::Payment => "PAYMENT",
            RentalMoney::Refund => "REFUND",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether `amount` has this kind's sign and fits the bound.
    pub fn fits(self, amount: i64) -> bool {
        match self {
            RentalMoney::Deposit | RentalMoney::Payment => {
                (1..=MAX_RENTAL_AMOUNT).contains(&amount)
            }
            RentalMoney::Refund => (-MAX_RENTAL_AMOUNT..=-1).contains(&amount),
        }
    }
}

/// The kinds of lines a rental invoice has.
pub const LINE_KINDS: [&str; 3] = ["rental", "late_fee", "damage"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tariff_bounds() {
        let t = |daily_rate, deposit, late_fee_per_day| TariffRecord {
            sku: "AVZ".into(),
            daily_rate,
            deposit,
            late_fee_per_day,
        };
        assert!(t(350_000, 1_000_000, 100_000).check_amounts().is_ok());
        assert!(t(1, 0, 0).check_amounts().is_ok());
        assert_eq!(
            t(0, 0, 0).check_amounts().map_err(|e| e.0),
            Err("daily_rate")
        );
        assert_eq!(t(1, -1, 0).check_amounts().map_err(|e| e.0), Err("deposit"));
        assert_eq!(
            t(1, 0, MAX_LATE_FEE_PER_DAY + 1)
                .check_amounts()
                .map_err(|e| e.0),
            Err("late_fee_per_day")
        );
        assert!(t(MAX_DAILY_RATE + 1, 0, 0).check_amounts().is_err());
    }

    #[test]
    fn money_signs() {
        assert!(RentalMoney::Deposit.fits(1));
        assert!(!RentalMoney::Deposit.fits(0));
        assert!(!RentalMoney::Payment.fits(-5));
        assert!(RentalMoney::Refund.fits(-5));
        assert!(!RentalMoney::Refund.fits(5));
        assert!(!RentalMoney::Payment.fits(MAX_RENTAL_AMOUNT + 1));
        for name in RentalMoney::NAMES {
            assert_eq!(
                RentalMoney::parse(name).map(RentalMoney::as_str),
                Some(name)
            );
        }
    }
}
