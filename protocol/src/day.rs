//! Rental days on the wire: `YYYY-MM-DD`, one parser and one formatter for both sides, and the
//! longest stay a booking may cover. The branch checks a booking it takes offline with the same
//! rules the cloud decides it by, so a day the edge accepts is a day the cloud can read. Pure.

use time::{Date, Month};

/// The longest stay one booking (or one availability question) may cover, in days.
pub const MAX_STAY_DAYS: i64 = 92;

/// The longest turnover buffer (days an asset stays taken after a rental) the cloud applies and
/// a branch accepts in a pulled calendar.
pub const MAX_TURNOVER_BUFFER_DAYS: u32 = 14;

/// The first day a request, an event or a batch may name: nothing the business does is dated
/// before it, and day arithmetic near the ends of `time`'s calendar cannot overflow.
pub const FIRST_DAY: Date = match Date::from_calendar_date(2000, Month::January, 1) {
    Ok(day) => day,
    Err(_) => panic!("2000-01-01 is a date"),
};

/// The last day a request, an event or a batch may name (a stay ending here plus any turnover
/// buffer is still far from the end of `time`'s calendar, year 9999).
pub const LAST_DAY: Date = match Date::from_calendar_date(2099, Month::December, 31) {
    Ok(day) => day,
    Err(_) => panic!("2099-12-31 is a date"),
};

/// Why a text is not a day; says what was given and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDay {
    #[error("{0:?} is not a date; expected YYYY-MM-DD")]
    Malformed(String),
    #[error("{0} is out of range; expected a day from 2000-01-01 to 2099-12-31")]
    OutOfRange(String),
}

/// A day a client, an event or a batch names: `YYYY-MM-DD` (as [`parse_calendar_day`]) and
/// within [`FIRST_DAY`]..=[`LAST_DAY`].
pub fn parse_day(raw: &str) -> Result<Date, BadDay> {
    let day = parse_calendar_day(raw)?;
    if !(FIRST_DAY..=LAST_DAY).contains(&day) {
        return Err(BadDay::OutOfRange(raw.to_owned()));
    }
    Ok(day)
}

/// Any calendar day written `YYYY-MM-DD` (exactly ten characters, digits where digits belong,
/// a date that exists), without the range check: for days the system computed itself and
/// stored (the end of a taken range, turnover buffer included, may fall after [`LAST_DAY`]).
pub fn parse_calendar_day(raw: &str) -> Result<Date, BadDay> {
    let bad = || BadDay::Malformed(raw.to_owned());
    let bytes = raw.as_bytes();
    if bytes.len() != 10 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Result<u32, BadDay> {
        let text = raw.get(range).ok_or_else(bad)?;
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

/// Why two days are not a stay: the field at fault (`from` or `to`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadStay {
    pub field: &'static str,
    pub message: String,
}

/// The rental days `from` to `to`, both included: two days in range ([`parse_day`]), `to` not
/// before `from`, at most [`MAX_STAY_DAYS`] days. The one rule the branch (offline) and the
/// cloud decide a booking by.
pub fn parse_stay(from: &str, to: &str) -> Result<(Date, Date), BadStay> {
    let bad = |field, message: String| BadStay { field, message };
    let first = parse_day(from).map_err(|e| bad("from", e.to_string()))?;
    let last = parse_day(to).map_err(|e| bad("to", e.to_string()))?;
    if last < first {
        return Err(bad("to", format!("{to} is before from {from}")));
    }
    // Both days are in range: at most a century apart, no overflow.
    let days = (last - first).whole_days() + 1;
    if days > MAX_STAY_DAYS {
        return Err(bad(
            "to",
            format!("{days} days from {from}; at most {MAX_STAY_DAYS}"),
        ));
    }
    Ok((first, last))
}

/// The first day after a stay ending on `last` and its `buffer` turnover days: the end of the
/// half-open range `[first, end)` the stay takes. Refused (field `to`), not a panic, when it
/// would fall off the calendar.
pub fn taken_end(last: Date, buffer: u32) -> Result<Date, BadStay> {
    last.next_day()
        .and_then(|day| day.checked_add(time::Duration::days(i64::from(buffer))))
        .ok_or_else(|| BadStay {
            field: "to",
            message: format!(
                "{} plus {buffer} turnover days is past the end of the calendar",
                format_day(last)
            ),
        })
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
        for good in [
            "2027-03-01",
            "2028-02-29",
            "2000-01-01",
            "2026-12-31",
            "2099-12-31",
        ] {
            assert_eq!(format_day(parse_day(good).expect(good)), good);
        }
        for far in ["1999-12-31", "2100-01-01", "9999-12-31", "0001-01-01"] {
            let e = parse_day(far).expect_err(far);
            assert_eq!(
                e.to_string(),
                format!("{far} is out of range; expected a day from 2000-01-01 to 2099-12-31")
            );
            assert_eq!(format_day(parse_calendar_day(far).expect(far)), far);
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
