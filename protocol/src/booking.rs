//! The booking vocabulary both sides speak: the values a booking request is made of (days,
//! stays, tiers, customer and asset references), parsed and validated where a request enters, so
//! nothing behind it sees a bad date, an inverted range or an unknown tier; the booking states;
//! and the booking contract of `POST /v1/bookings` ([`HoldBody`] in, [`BookingView`] out), which
//! the box sends and reads with the same types the cloud parses and answers with. Pure: no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::Date;

pub use crate::day::format_day;

/// Longest id of master data (an asset, a SKU, a mechanic).
pub const MAX_ID_LEN: usize = 64;

/// Longest customer reference accepted.
pub const MAX_CUSTOMER_LEN: usize = 200;

/// The days `[start, end)` as a PostgreSQL `daterange` literal.
pub fn day_range(start: Date, end: Date) -> String {
    format!("[{},{})", format_day(start), format_day(end))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    pub field: &'static str,
    pub problem: String,
}

pub fn invalid(field: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        field,
        problem: problem.into(),
    }
}

/// A calendar day, written `YYYY-MM-DD` (the protocol's one parser) within the protocol's
/// range (2000-01-01 to 2099-12-31), for request field `field`.
pub fn parse_day(field: &'static str, raw: &str) -> Result<Date, Invalid> {
    crate::day::parse_day(raw).map_err(|e| invalid(field, e.to_string()))
}

/// A day this service computed and stored (the end of a taken range may fall after the
/// protocol's last day): the format is checked, not the range.
pub fn parse_stored_day(field: &'static str, raw: &str) -> Result<Date, Invalid> {
    crate::day::parse_calendar_day(raw).map_err(|e| invalid(field, e.to_string()))
}

/// The rental days asked for: `first` to `last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stay {
    pub first: Date,
    pub last: Date,
}

impl Stay {
    /// The protocol's one stay rule ([`crate::day::parse_stay`]).
    pub fn parse(from: &str, to: &str) -> Result<Stay, Invalid> {
        let (first, last) = crate::day::parse_stay(from, to).map_err(stay_invalid)?;
        Ok(Stay { first, last })
    }

    /// The days the asset is taken: the stay plus `buffer` turnover days, as a half-open range
    /// `[start, end)`, the form PostgreSQL's `daterange` and the calendar use. Refused, not a
    /// panic, when the end would fall off the calendar.
    pub fn taken(&self, buffer: u32) -> Result<(Date, Date), Invalid> {
        let end = crate::day::taken_end(self.last, buffer).map_err(stay_invalid)?;
        Ok((self.first, end))
    }

    /// [`Stay::taken`] as `YYYY-MM-DD` text, which sorts like the dates (the box's store compares
    /// taken ranges as text).
    pub fn taken_days(&self, buffer: u32) -> Result<(String, String), Invalid> {
        let (start, end) = self.taken(buffer)?;
        Ok((format_day(start), format_day(end)))
    }
}

fn stay_invalid(e: crate::day::BadStay) -> Invalid {
    invalid(e.field, e.message)
}

/// Membership tier: who is first in a waitlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Platinum,
    Gold,
    Silver,
    Basic,
}

impl Tier {
    /// Every tier's name, best first.
    pub const NAMES: [&'static str; 4] = ["platinum", "gold", "silver", "basic"];

    pub fn parse(raw: &str) -> Result<Tier, Invalid> {
        match raw {
            "platinum" => Ok(Tier::Platinum),
            "gold" => Ok(Tier::Gold),
            "silver" => Ok(Tier::Silver),
            "basic" => Ok(Tier::Basic),
            other => Err(invalid(
                "tier",
                format!("{other:?} is not a tier; expected platinum, gold, silver or basic"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Platinum => "platinum",
            Tier::Gold => "gold",
            Tier::Silver => "silver",
            Tier::Basic => "basic",
        }
    }

    /// Rank for ordering, best first.
    pub fn rank(self) -> u8 {
        match self {
            Tier::Platinum => 0,
            Tier::Gold => 1,
            Tier::Silver => 2,
            Tier::Basic => 3,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A customer reference (the portal's customer id, or a name at the counter).
/// An asset id or SKU named in a booking request: 1-`max` bytes (for master data
/// [`MAX_ID_LEN`]),
/// no control characters (PostgreSQL's text cannot hold NUL, and an id is never multi-line).
pub fn check_id(field: &'static str, raw: &str, max: usize) -> Result<(), Invalid> {
    if raw.is_empty() || raw.len() > max || raw.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("expected 1-{max} characters without control characters"),
        ));
    }
    Ok(())
}

pub fn check_customer(raw: &str) -> Result<(), Invalid> {
    if raw.trim().is_empty()
        || raw.chars().count() > MAX_CUSTOMER_LEN
        || raw.chars().any(char::is_control)
    {
        return Err(invalid(
            "customer",
            format!("expected 1-{MAX_CUSTOMER_LEN} characters, not blank, no control characters"),
        ));
    }
    Ok(())
}

/// Booking states, as the API spells them (`HELD`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Held,
    Confirmed,
    Completed,
    Expired,
    Cancelled,
}

impl State {
    pub fn parse(raw: &str) -> Option<State> {
        match raw {
            "HELD" => Some(State::Held),
            "CONFIRMED" => Some(State::Confirmed),
            "COMPLETED" => Some(State::Completed),
            "EXPIRED" => Some(State::Expired),
            "CANCELLED" => Some(State::Cancelled),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Held => "HELD",
            State::Confirmed => "CONFIRMED",
            State::Completed => "COMPLETED",
            State::Expired => "EXPIRED",
            State::Cancelled => "CANCELLED",
        }
    }

    /// Whether the booking holds its days: a live hold or a confirmed booking.
    pub fn holds_days(self) -> bool {
        matches!(self, State::Held | State::Confirmed)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/bookings`: the hold a box (for its own branch), a portal or an operator asks for.
/// Checked on arrival with [`Stay::parse`], [`Tier::parse`], [`check_customer`] and [`check_id`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Required for API tokens; a device books its own branch (and may repeat it here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub asset_id: String,
    pub sku: String,
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    pub customer: String,
    /// `platinum`, `gold`, `silver` or `basic` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

/// A booking as the cloud answers it: to a hold (`201`), and to `GET /v1/bookings/{id}`,
/// confirm, cancel and complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingView {
    pub id: String,
    pub state: State,
    pub branch: String,
    pub asset_id: String,
    pub sku: String,
    pub from: String,
    pub to: String,
    /// First day the asset is free again (after the turnover buffer).
    pub free_from: String,
    pub customer: String,
    pub tier: String,
    /// When a hold lapses unless confirmed (RFC 3339, UTC).
    pub expires_at: String,
    pub payment_ref: Option<String>,
    pub refund_due: bool,
    /// Set once `COMPLETED`: when the asset came back, and the charges (rupiah).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage_charge: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_charge: Option<i64>,
}

/// `POST /v1/bookings/{id}/confirm`: the payment the gateway authorised for a live hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// The gateway's reference of the authorised payment.
    pub payment_ref: String,
}

/// `POST /v1/bookings/{id}/complete`: the asset came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// When the asset came back, RFC 3339; its offset decides the return day.
    pub returned_at: String,
    /// Rupiah to capture from the pre-authorisation for damage; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage_charge: Option<i64>,
    /// Rupiah to capture for a late return; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_charge: Option<i64>,
}

/// `POST /v1/waitlist`: wait for a SKU on a day that is taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitlistBody {
    pub sku: String,
    /// The day wanted, `YYYY-MM-DD`.
    pub date: String,
    pub customer: String,
    /// `platinum`, `gold`, `silver` or `basic` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

/// Where a waitlist entry stands: waiting, or offered a hold of its own (`offer_booking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WaitlistState {
    Waiting,
    Offered,
}

impl WaitlistState {
    pub fn parse(raw: &str) -> Option<WaitlistState> {
        match raw {
            "WAITING" => Some(WaitlistState::Waiting),
            "OFFERED" => Some(WaitlistState::Offered),
            _ => None,
        }
    }
}

/// `201` to `POST /v1/waitlist`: the new entry and its place in the queue (1 is next).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistJoined {
    pub id: String,
    pub state: WaitlistState,
    pub sku: String,
    pub date: String,
    pub tier: String,
    pub position: Option<u64>,
}

/// `GET /v1/waitlist/{id}`: the entry, and the booking offered to it once promoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistView {
    pub id: String,
    pub sku: String,
    pub date: String,
    pub tier: String,
    pub state: WaitlistState,
    pub offer_booking: Option<String>,
}

/// The offer a `409 taken` answer to a hold carries in `details.waitlist`: how to wait for the
/// SKU on the days asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistOffer {
    pub offer: bool,
    /// The request that joins the waitlist (`POST /v1/waitlist`).
    pub join: String,
    pub sku: String,
    pub from: String,
    pub to: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_or_say_why() {
        let cases = [
            ("2026-12-31", true),
            ("2028-02-29", true),
            ("2027-02-29", false),
            ("2026-13-01", false),
            ("2026-1-01", false),
            ("26-12-31", false),
            ("2026-12-3x", false),
            ("+026-12-31", false),
            ("", false),
        ];
        for (raw, ok) in cases {
            assert_eq!(parse_day("from", raw).is_ok(), ok, "{raw}");
        }
        let day = parse_day("from", "2026-01-05").expect("valid");
        assert_eq!(format_day(day), "2026-01-05");
    }

    #[test]
    fn stays_are_ordered_bounded_and_buffered() {
        let stay = Stay::parse("2026-12-30", "2027-01-02").expect("valid");
        let (start, end) = stay.taken(0).expect("on the calendar");
        assert_eq!(format_day(start), "2026-12-30");
        assert_eq!(format_day(end), "2027-01-03");
        assert_eq!(
            stay.taken(2).map(|(_, end)| format_day(end)),
            Ok("2027-01-05".into())
        );
        let last = Stay::parse("2099-12-31", "2099-12-31").expect("the last day");
        assert_eq!(
            last.taken(1).map(|(_, end)| format_day(end)),
            Ok("2100-01-02".into())
        );
        assert_eq!(last.taken(u32::MAX).map_err(|e| e.field), Err("to"));
        for far in ["9999-12-31", "2100-01-01", "1999-12-31"] {
            let e = Stay::parse(far, far).expect_err(far);
            assert_eq!(e.field, "from");
            assert!(e.problem.contains("2000-01-01 to 2099-12-31"), "{e}");
        }
        assert!(Stay::parse("2026-12-30", "2026-12-29").is_err());
        assert!(Stay::parse("2026-01-01", "2026-04-02").is_ok());
        assert!(Stay::parse("2026-01-01", "2026-04-03").is_err());
    }

    #[test]
    fn tiers_rank_best_first() {
        let tiers: Vec<Tier> = ["basic", "platinum", "silver", "gold"]
            .iter()
            .map(|raw| Tier::parse(raw).expect("valid"))
            .collect();
        let mut sorted = tiers.clone();
        sorted.sort_by_key(|tier| tier.rank());
        assert_eq!(
            sorted,
            [Tier::Platinum, Tier::Gold, Tier::Silver, Tier::Basic]
        );
        assert!(Tier::parse("Gold").is_err());
        assert!(check_customer("C-1").is_ok());
        assert!(check_customer(" ").is_err());
        assert!(check_customer("a\nb").is_err());
    }
}
