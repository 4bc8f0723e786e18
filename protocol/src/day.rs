//! Rental days on the wire: `YYYY-MM-DD`, one parser and one formatter for both sides, and the
//! longest stay a booking may cover. The branch checks a booking it takes offline with the same
//! rules the cloud decides it by, so a day the edge accepts is a day the cloud can read. Pure.

use time::{Date, Month};

/// The longest stay one booking (or one availability question) may cover, in days.
pub const MAX_STAY_DAYS: i64 = 92;

/// Why a text is not a day; says what was given and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a date; expected YYYY-MM-DD")]
pub struct BadDay(pub String);

/// A calendar day written `YYYY-MM-DD` (exactly ten characters, digits where digits belong, a
/// date that exists).
pub fn parse_day(raw: &str) -> Result<Date, BadDay> {
    let bad = || BadDay(raw.to_owned());
    let bytes = raw.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<u32, BadDay> {
        let text = &raw[range];
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        text.parse().map_err(|_| bad())
    };
    let year = i32::try_from(number(0..4)?).map_err(|_| bad())?;
    let month = u8::try_from(number(5..7)?)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day = u8::try_from(number(8..10)?).map_err(|_| bad())?;
    Date::from_calendar_date(year, month, day).map_err(|_| bad())
}

/// `YYYY-MM-DD`, as the API, the events and PostgreSQL write dates.
pub fn format_day(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_bad_ones_say_what_was_given() {
        for good in ["2027-03-01", "2028-02-29", "0001-01-01", "2026-12-31"] {
            assert_eq!(format_day(parse_day(good).expect(good)), good);
        }
        for bad in [
            "",
            "2027-3-01",
            "2027-02-29",
            "2027-13-01",
            "2027-00-10",
            "2027-01-32",
            "27-01-01",
            "2027/01/01",
            "2027-01-01T",
            "+027-01-01",
            "2027-0a-01",
            "２０２７-01-01",
        ] {
            let e = parse_day(bad).expect_err(bad);
            assert_eq!(
                e.to_string(),
                format!("{bad:?} is not a date; expected YYYY-MM-DD")
            );
        }
    }
}
