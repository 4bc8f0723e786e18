//! Which devices a fleet view lists: the query string of `GET /fleet`, `GET /fleet/live` and
//! `GET /v1/fleet` (`q`, `branch`, `version`, `state`, `channel`, `page`, `size`), checked once
//! here. An empty value is the same as no value (the page's GET form sends every field); an
//! unknown parameter, a repeated one or a value out of bounds is a 400 that says which and what
//! is expected, never a panic.
//!
//! Pages are by offset, not by keyset: the order (attention first, longest offline first) depends
//! on the time of the read, so a keyset cursor would point at a row that has moved by the next
//! read, and no index can hand out that order anyway: every read sorts the matching devices
//! (10 000 narrow rows, a top-N sort in PostgreSQL). Page numbers also make links people can
//! share ("page 3 of the offline ones").

use std::fmt::Write as _;

use sentra_protocol::fleet::{ReleaseVersion, check_channel};

use crate::branches::BranchId;
use crate::web::ApiError;

/// Devices a page shows unless `size` says otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// The most devices a page shows.
pub const MAX_PAGE_SIZE: u32 = 200;
/// The highest page number asked for (10 000 pages of 200 are two million devices).
pub const MAX_PAGE: u32 = 10_000;
/// Longest search text.
pub const MAX_SEARCH: usize = 64;

/// `state=`: the device's link state, or "needs attention".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Online,
    /// Not online: silent longer than `fleet.offline_after_secs`, or never seen.
    Offline,
    NeverSeen,
    Attention,
}

impl StateFilter {
    pub const ALL: [StateFilter; 4] = [
        StateFilter::Online,
        StateFilter::Offline,
        StateFilter::NeverSeen,
        StateFilter::Attention,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Online => "online",
            StateFilter::Offline => "offline",
            StateFilter::NeverSeen => "never-seen",
            StateFilter::Attention => "attention",
        }
    }

    /// What the page's select shows for it.
    pub fn label(self) -> &'static str {
        match self {
            StateFilter::Online => "online",
            StateFilter::Offline => "offline (or never seen)",
            StateFilter::NeverSeen => "never seen",
            StateFilter::Attention => "needs attention",
        }
    }
}

/// A checked fleet query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Part of a branch id, a branch name or a hostname (case-insensitive).
    pub q: Option<String>,
    pub branch: Option<String>,
    /// A release version, or "unknown" for devices that never said.
    pub version: Option<String>,
    pub state: Option<StateFilter>,
    pub channel: Option<String>,
    /// 1-based.
    pub page: u32,
    pub size: u32,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            q: None,
            branch: None,
            version: None,
            state: None,
            channel: None,
            page: 1,
            size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// At most 40 characters of what was sent, for an error message.
fn shown(value: &str) -> String {
    value.chars().take(40).collect()
}

fn bad(message: String) -> ApiError {
    ApiError::BadQuery(message)
}

fn number(name: &str, value: &str, max: u32) -> Result<u32, ApiError> {
    match value.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(bad(format!(
            "{name} {:?}: expected a whole number from 1 to {max}",
            shown(value)
        ))),
    }
}

/// The query string as the handlers get it.
pub type RawQuery =
    Result<axum::extract::Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

impl Filter {
    /// Checks a handler's query string.
    pub fn from_query(query: RawQuery) -> Result<Filter, ApiError> {
        let axum::extract::Query(pairs) = query.map_err(|rejection| bad(rejection.body_text()))?;
        Filter::parse(&pairs)
    }

    /// Checks the query string's pairs.
    pub fn parse(pairs: &[(String, String)]) -> Result<Filter, ApiError> {
        let mut filter = Filter::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in pairs {
            if seen.contains(&name.as_str()) {
                return Err(bad(format!("{} is given twice", shown(name))));
            }
            seen.push(name);
            // The page's form sends its empty text fields: an empty filter is no filter. `page`
            // and `size` are numbers (the OpenAPI document says integer, and the form never
            // sends them empty): an empty one is refused like any other bad number.
            if value.is_empty() && !matches!(name.as_str(), "page" | "size") {
                continue;
            }
            match name.as_str() {
                "q" => {
                    if value.chars().count() > MAX_SEARCH || value.chars().any(char::is_control) {
                        return Err(bad(format!(
                            "q: expected at most {MAX_SEARCH} characters, no control characters"
                        )));
                    }
                    filter.q = Some(value.trim().to_owned()).filter(|q| !q.is_empty());
                }
                "branch" => {
                    let branch = BranchId::parse(value).map_err(|_| {
                        bad(format!(
                            "branch {:?}: expected a branch id (1-{} ASCII letters, digits, '-' or '_')",
                            shown(value),
                            crate::branches::MAX_BRANCH_ID_LEN
                        ))
                    })?;
                    filter.branch = Some(branch.as_str().to_owned());
                }
                "version" => {
                    if value != "unknown" {
                        ReleaseVersion::parse(value).map_err(|_| {
                            bad(format!(
                                "version {:?}: expected MAJOR.MINOR.PATCH[-PRE] or unknown",
                                shown(value)
                            ))
                        })?;
                    }
                    filter.version = Some(value.clone());
                }
                "state" => {
                    let state = StateFilter::ALL
                        .into_iter()
                        .find(|s| s.as_str() == value)
                        .ok_or_else(|| {
                            bad(format!(
                                "state {:?}: expected online, offline, never-seen or attention",
                                shown(value)
                            ))
                        })?;
                    filter.state = Some(state);
                }
                "channel" => {
                    check_channel(value).map_err(|_| {
                        bad(format!(
                            "channel {:?}: expected 1-32 of a-z, 0-9 and -, such as stable or canary",
                            shown(value)
                        ))
                    })?;
                    filter.channel = Some(value.clone());
                }
                "page" => filter.page = number("page", value, MAX_PAGE)?,
                "size" => filter.size = number("size", value, MAX_PAGE_SIZE)?,
                other => {
                    return Err(bad(format!(
                        "unknown parameter {:?}: expected q, branch, version, state, channel, page or size",
                        shown(other)
                    )));
                }
            }
        }
        Ok(filter)
    }

    /// Rows to skip for this page.
    pub fn offset(&self) -> i64 {
        i64::from(self.page.saturating_sub(1)) * i64::from(self.size)
    }

    /// The `q` as an `ILIKE` pattern: its `\`, `%` and `_` taken literally.
    pub fn pattern(&self) -> Option<String> {
        self.q.as_ref().map(|q| {
            let mut pattern = String::from("%");
            for c in q.chars() {
                if matches!(c, '\\' | '%' | '_') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('%');
            pattern
        })
    }

    /// This filter's query string for `page` (empty fields and defaults left out), with its `?`,
    /// or "" when there is nothing to say.
    pub fn query_string(&self, page: u32) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("q", self.q.as_deref()),
            ("branch", self.branch.as_deref()),
            ("version", self.version.as_deref()),
            ("state", self.state.map(StateFilter::as_str)),
            ("channel", self.channel.as_deref()),
        ] {
            if let Some(value) = value {
                out.append_pair(name, value);
            }
        }
        if self.size != DEFAULT_PAGE_SIZE {
            out.append_pair("size", &self.size.to_string());
        }
        if page != 1 {
            out.append_pair("page", &page.to_string());
        }
        let query = out.finish();
        if query.is_empty() {
            String::new()
        } else {
            let mut with = String::with_capacity(query.len() + 1);
            let _ = write!(with, "?{query}");
            with
        }
    }

    /// Whether anything narrows the list.
    pub fn narrows(&self) -> bool {
        self.q.is_some()
            || self.branch.is_some()
            || self.version.is_some()
            || self.state.is_some()
            || self.channel.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Filter, String> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        Filter::parse(&pairs).map_err(|error| error.to_string())
    }

    #[test]
    fn a_full_query_is_read_and_written_back() {
        let filter = parse(
            "q=Bengkel+5%25&branch=BR001&version=2.0.0&state=offline&channel=canary&page=3&size=20",
        )
        .expect("valid");
        assert_eq!(filter.q.as_deref(), Some("Bengkel 5%"));
        assert_eq!(filter.pattern().as_deref(), Some("%Bengkel 5\\%%"));
        assert_eq!(filter.state, Some(StateFilter::Offline));
        assert_eq!(filter.offset(), 40);
        assert_eq!(
            filter.query_string(4),
            "?q=Bengkel+5%25&branch=BR001&version=2.0.0&state=offline&channel=canary&size=20&page=4"
        );
        assert_eq!(parse("").expect("empty"), Filter::default());
        // The GET form sends every text field, empty ones too (its size is a select: never empty).
        assert_eq!(
            parse("q=&branch=&version=&state=&channel=&size=50").expect("blank"),
            Filter::default()
        );
        assert_eq!(Filter::default().query_string(1), "");
        assert!(parse("version=unknown").is_ok());
    }

    #[test]
    fn bad_values_are_named_with_what_is_expected() {
        for (query, says) in [
            (
                "page=0",
                "page \"0\": expected a whole number from 1 to 10000",
            ),
            ("page=-1", "page \"-1\""),
            ("page=99999999999999999999", "page"),
            (
                "size=201",
                "size \"201\": expected a whole number from 1 to 200",
            ),
            ("state=asleep", "state \"asleep\": expected online, offline"),
            ("version=latest", "version \"latest\""),
            ("channel=Not%20a%20channel", "channel \"Not a channel\""),
            ("branch=%3Cscript%3E", "branch \"<script>\""),
            ("sort=name", "unknown parameter \"sort\""),
            ("page=1&page=2", "page is given twice"),
            ("size=", "size \"\": expected a whole number from 1 to 200"),
            ("page=", "page \"\": expected a whole number"),
            ("q=a%00b", "no control characters"),
        ] {
            let error = parse(query).expect_err(query);
            assert!(error.contains(says), "{query}: {error}");
        }
        let long = "x".repeat(MAX_SEARCH + 1);
        assert!(parse(&format!("q={long}")).is_err());
        let echoed = parse(&format!("state={}", "y".repeat(1000))).expect_err("long state");
        assert!(echoed.len() < 200, "the echo is cut short: {echoed}");
    }
}
