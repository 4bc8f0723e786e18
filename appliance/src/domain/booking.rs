//! Rental booking values at the branch, parsed at the API edge: rental days (`YYYY-MM-DD`, the
//! last day included, at most [`MAX_STAY_DAYS`]), membership tiers, booking states, and whether
//! two sets of taken days overlap. The stay and tier rules are the protocol's
//! (`sentra_protocol::booking`), the cloud's too, so what the branch accepts offline the cloud
//! can decide. Pure.

use time::Date;

use super::Invalid;

pub use sentra_protocol::day::{MAX_STAY_DAYS, format_day};

/// A calendar day, written `YYYY-MM-DD` (the protocol's one parser).
pub fn parse_day(raw: &str) -> Result<Date, Invalid> {
    sentra_protocol::day::parse_day(raw).map_err(|e| Invalid(e.to_string()))
}

/// The rental days asked for (the protocol's one stay rule), and why a stay is refused.
pub use sentra_protocol::booking::{Invalid as StayError, Stay, Tier};

/// Membership tiers, as the cloud's waitlist ranks them.
pub const TIERS: [&str; 4] = Tier::NAMES;

pub fn parse_tier(raw: &str) -> Result<&'static str, Invalid> {
    Tier::parse(raw)
        .map(Tier::as_str)
        .map_err(|e| Invalid(e.problem))
}

/// Whether `[a_start, a_end)` and `[b_start, b_end)` share a day (`YYYY-MM-DD` text).
pub fn overlaps(a: (&str, &str), b: (&str, &str)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_parse_or_say_which_field() {
        let cases: &[(&str, &str, Result<(), &str>)] = &[
            ("2027-03-01", "2027-03-03", Ok(())),
            ("2027-03-01", "2027-03-01", Ok(())),
            ("2028-02-29", "2028-03-01", Ok(())),
            ("2027-02-29", "2027-03-01", Err("from")),
            ("2027-3-01", "2027-03-03", Err("from")),
            ("2027-03-01", "03/03/2027", Err("to")),
            ("2027-03-05", "2027-03-01", Err("to")),
            ("2027-01-01", "2027-04-02", Ok(())),
            ("2027-01-01", "2027-04-03", Err("to")),
            ("", "", Err("from")),
        ];
        for (from, to, want) in cases {
            let got = Stay::parse(from, to).map(|_| ()).map_err(|e| e.field);
            assert_eq!(&got, want, "{from} {to}");
        }
    }

    #[test]
    fn taken_days_are_half_open_with_buffer() {
        let stay = Stay::parse("2026-12-30", "2027-01-02").expect("valid");
        assert_eq!(
            stay.taken_days(0),
            Ok(("2026-12-30".into(), "2027-01-03".into()))
        );
        assert_eq!(stay.taken_days(2).map(|t| t.1), Ok("2027-01-05".into()));
        let last = Stay::parse("2099-12-31", "2099-12-31").expect("the last day");
        assert_eq!(last.taken_days(1).map(|t| t.1), Ok("2100-01-02".into()));
        assert_eq!(last.taken_days(u32::MAX).map_err(|e| e.field), Err("to"));
        for far in ["9999-12-31", "2100-01-01", "1999-12-31"] {
            let e = Stay::parse(far, far).expect_err(far);
            assert_eq!(e.field, "from");
            assert!(
                e.problem.contains("2000-01-01 to 2099-12-31"),
                "{}",
                e.problem
            );
        }
    }

    #[test]
    fn overlap_table() {
        let cases = [
            (
                ("2027-03-01", "2027-03-04"),
                ("2027-03-03", "2027-03-05"),
                true,
            ),
            (
                ("2027-03-01", "2027-03-03"),
                ("2027-03-03", "2027-03-05"),
                false,
            ),
            (
                ("2027-03-05", "2027-03-06"),
                ("2027-03-01", "2027-03-05"),
                false,
            ),
            (
                ("2027-03-01", "2027-03-10"),
                ("2027-03-04", "2027-03-05"),
                true,
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlaps(a, b), want, "{a:?} {b:?}");
            assert_eq!(overlaps(b, a), want, "{b:?} {a:?}");
        }
    }

    #[test]
    fn tiers() {
        assert_eq!(parse_tier("gold").ok(), Some("gold"));
        assert!(parse_tier("Gold").is_err());
    }
}
