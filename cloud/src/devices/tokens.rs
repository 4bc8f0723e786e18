//! Secret tokens: one-time enrolment tokens for appliances and API tokens for non-device clients
//! (the customer portal, the cloud team's operators), and the two commands that issue them.
//!
//! Invariant: a token is printed once, by the command that made it, and never stored: the
//! database holds its SHA-256 only, so a leaked database cannot enrol a box or call the API.
//! API tokens are 256 random bits from the operating system's generator, hex-encoded. Enrolment
//! tokens are typed by technicians: 80 random bits in the short form of
//! `sentra_protocol::enrol_token` (`7KQ2-M9XW-3HDP-R5TA-3`, a check character catching typos at
//! the box), stored as the SHA-256 of its canonical form; tokens issued as 64 hex characters
//! before it stay valid until they expire, hashed as they always were.
//!
//! API tokens are managed by name (`api-token list`, `api-token revoke NAME`): a name is unique
//! among live (unrevoked) tokens, and a token may carry an expiry, after which it is refused like
//! a revoked one (`devices::auth` checks it on every request, cached or not).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng as _;
use sentra_protocol::enrol_token::{self, EnrolToken};
use sha2::{Digest as _, Sha256};
use sqlx::{Connection as _, PgConnection};

use crate::branches::{self, BranchId};
use crate::config::DatabaseConfig;
use crate::migrate::CONNECT_TIMEOUT;

/// How long an enrolment token stays valid by default: a technician flashes and enrols a box
/// within a few days of asking for its token.
pub const DEFAULT_ENROLLMENT_TTL_HOURS: u32 = 72;

/// The longest an enrolment token may live: an unused token is a standing invitation.
pub const MAX_ENROLLMENT_TTL_HOURS: u32 = 30 * 24;

const TOKEN_BYTES: usize = 32;

/// What an API token may do. Portal tokens serve the customer web portal (bookings);
/// operator tokens the cloud team (master data, revoking devices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Portal,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Portal => "portal",
            Role::Operator => "operator",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "portal" => Ok(Role::Portal),
            "operator" => Ok(Role::Operator),
            other => Err(format!(
                "unknown role {other:?}; expected portal or operator"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot connect to PostgreSQL at {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to PostgreSQL at {url}: no answer within {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("--ttl-hours {0}: expected 1 to {MAX_ENROLLMENT_TTL_HOURS}")]
    Ttl(u32),
    #[error("--name: expected 1 to {MAX_NAME_LEN} characters without control characters")]
    BadName,
    #[error(
        "a live API token is already named {0:?}; pick another name, or revoke it first (sentra-cloud api-token revoke {0:?})"
    )]
    DuplicateName(String),
    #[error("no live API token is named {0:?} (sentra-cloud api-token list shows them)")]
    UnknownName(String),
    #[error("--expires-in {0:?}: {1}")]
    Expiry(String, String),
    #[error("storing the token failed (has `sentra-cloud migrate` run?)")]
    Store(#[source] sqlx::Error),
    #[error(
        "--svg {path}: cannot write there ({source}); no token was issued: name a file in a directory you can write"
    )]
    SvgFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the enrolment QR code cannot hold {0} characters; is http.public_url that long?")]
    QrTooLong(usize),
}

/// Longest API token name: it is shown in logs and `created_by` columns.
pub const MAX_NAME_LEN: usize = 64;

/// Longest expiry a token may be given at creation: ten years (no expiry is also allowed).
pub const MAX_EXPIRY_DAYS: i64 = 3650;

impl TokenError {
    /// Whether the operator asked for something that cannot be done as asked (exit code 2), as
    /// opposed to a failure of the database (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            TokenError::Ttl(_)
                | TokenError::BadName
                | TokenError::DuplicateName(_)
                | TokenError::UnknownName(_)
                | TokenError::Expiry(..)
                | TokenError::SvgFile { .. }
                | TokenError::QrTooLong(_)
        )
    }
}

/// `--expires-in`: a duration (`90m`, `12h`, `30d`, `8w`) from `now`, or an RFC 3339 time; the
/// result is in the future and at most [`MAX_EXPIRY_DAYS`] away.
pub fn parse_expiry(
    raw: &str,
    now: time::OffsetDateTime,
) -> Result<time::OffsetDateTime, TokenError> {
    let bad = |why: &str| TokenError::Expiry(raw.to_owned(), why.to_owned());
    let raw_trimmed = raw.trim();
    let at = if let Ok(at) =
        time::OffsetDateTime::parse(raw_trimmed, &time::format_description::well_known::Rfc3339)
    {
        at
    } else {
        let split = raw_trimmed
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| bad("expected a number with a unit (m, h, d, w) or an RFC 3339 time"))?;
        let (number, unit) = raw_trimmed.split_at(split);
        let number: i64 = number
            .parse()
            .map_err(|_| bad("expected a number with a unit (m, h, d, w) or an RFC 3339 time"))?;
        let minutes = match unit {
            "m" => Some(number),
            "h" => number.checked_mul(60),
            "d" => number.checked_mul(24 * 60),
            "w" => number.checked_mul(7 * 24 * 60),
            _ => None,
        }
        .ok_or_else(|| bad("expected a number with a unit (m, h, d, w) or an RFC 3339 time"))?;
        if minutes > MAX_EXPIRY_DAYS * 24 * 60 {
            return Err(bad(&format!("at most {MAX_EXPIRY_DAYS} days")));
        }
        now.checked_add(time::Duration::minutes(minutes))
            .ok_or_else(|| bad("out of range"))?
    };
    if at <= now {
        return Err(bad("the expiry must be in the future"));
    }
    if at - now > time::Duration::days(MAX_EXPIRY_DAYS) {
        return Err(bad(&format!("at most {MAX_EXPIRY_DAYS} days from now")));
    }
    Ok(at)
}

fn check_name(name: &str) -> Result<&str, TokenError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(TokenError::BadName);
    }
    Ok(name)
}

/// A fresh random token.
pub fn generate() -> String {
    let mut bytes = [0_u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database stores in place of a token.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A fresh enrolment token: 80 bits from the operating system's generator.
pub fn generate_enrollment() -> EnrolToken {
    let mut random = [0_u8; enrol_token::RANDOM_BYTES];
    rand::rng().fill_bytes(&mut random);
    EnrolToken::from_random(random)
}

/// What the database stores in place of an enrolment token, from what a box sent: the hash of
/// its canonical form (so `7kq2 m9xw…` and `7KQ2-M9XW-…` are the same token), or `None` when it
/// is no token at all.
pub fn enrollment_hash(sent: &str) -> Option<Vec<u8>> {
    EnrolToken::parse(sent)
        .ok()
        .map(|token| hash(token.canonical()))
}

/// An enrolment token just issued.
#[derive(Debug)]
pub struct IssuedEnrollment {
    pub token: EnrolToken,
    pub branch_name: String,
    pub expires_at: String,
}

/// `sentra-cloud enrollment-token`: creates the branch if missing (named `branch_name`, or its
/// id), stores the new token's hash with its expiry, and returns the token.
pub async fn issue_enrollment_token(
    database: &DatabaseConfig,
    branch: &BranchId,
    branch_name: Option<&str>,
    ttl_hours: u32,
) -> Result<IssuedEnrollment, TokenError> {
    if !(1..=MAX_ENROLLMENT_TTL_HOURS).contains(&ttl_hours) {
        return Err(TokenError::Ttl(ttl_hours));
    }
    let mut conn = connect(database).await?;
    let token = generate_enrollment();
    let mut tx = conn.begin().await.map_err(TokenError::Store)?;
    let branch_name = branches::ensure(&mut tx, branch, branch_name)
        .await
        .map_err(TokenError::Store)?;
    let expires_at: String = sqlx::query_scalar(
        "INSERT INTO enrollment_tokens (token_hash, branch_id, expires_at)
         VALUES ($1, $2, now() + make_interval(hours => $3))
         RETURNING to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
    )
    .bind(hash(token.canonical()))
    .bind(branch.as_str())
    .bind(i32::try_from(ttl_hours).map_err(|_| TokenError::Ttl(ttl_hours))?)
    .fetch_one(&mut *tx)
    .await
    .map_err(TokenError::Store)?;
    tx.commit().await.map_err(TokenError::Store)?;
    close(conn).await;
    Ok(IssuedEnrollment {
        token,
        branch_name,
        expires_at,
    })
}

/// The enrolment QR of `content` ([`enrol_token::qr_content`]) for a terminal: two modules a
/// character cell (Unicode half blocks), light on dark as most terminals are, with its quiet
/// zone, so a phone or a hand scanner reads it off the screen; a URI with a cloud URL of 40
/// characters is 45 cells wide, well inside 80 columns.
pub fn qr_terminal(content: &str) -> Result<String, TokenError> {
    use qrcode::render::unicode::Dense1x2;
    Ok(qr_code(content)?
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// The enrolment sheet's SVG: the QR of `content`, and under it the token, the branch and the
/// expiry in text, for the technician who types instead of scanning.
pub fn qr_svg(
    content: &str,
    issued: &IssuedEnrollment,
    branch: &BranchId,
) -> Result<String, TokenError> {
    use qrcode::render::svg;
    let code = qr_code(content)?;
    // Whole pixels a module, about 440 across with the 4-module quiet zone each side: as wide as
    // the text lines under it.
    let modules = u32::try_from(code.width()).unwrap_or(177) + 8;
    let module = (440 / modules).max(4);
    let side = module * modules;
    let code = code
        .render::<svg::Color<'_>>()
        .module_dimensions(module, module)
        .quiet_zone(true)
        .build();
    // The renderer writes a whole document; nested `<svg>` elements are valid SVG, so its root
    // element goes in as is, below nothing and above the text.
    let inner = code
        .find("<svg")
        .and_then(|start| code.get(start..))
        .unwrap_or(&code);
    let lines = [
        format!("Sentra enrolment token: {}", issued.token.grouped()),
        format!("Branch {} ({})", branch.as_str(), issued.branch_name),
        format!("One use, valid until {}", issued.expires_at),
    ];
    let mut text = String::new();
    for (index, line) in lines.iter().enumerate() {
        // Below the quiet zone, which a scanner needs clear.
        let y = side + 24 + 24 * u32::try_from(index).unwrap_or(0);
        text.push_str(&format!(
            "<text x=\"{}\" y=\"{y}\" text-anchor=\"middle\" font-family=\"monospace\" font-size=\"16\">{}</text>",
            side / 2,
            xml_escape(line)
        ));
    }
    let height = side + 24 * 4;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{side}\" height=\"{height}\" viewBox=\"0 0 {side} {height}\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>{inner}{text}</svg>\n"
    ))
}

/// The QR of `content` (level M), shared by the enrolment sheet and the fleet page's phone link.
pub(crate) fn qr_code(content: &str) -> Result<qrcode::QrCode, TokenError> {
    // Level M (15 % of the code may be unreadable): a printed sheet gets folded and smudged.
    qrcode::QrCode::with_error_correction_level(content.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| TokenError::QrTooLong(content.chars().count()))
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `sentra-cloud api-token`: stores the new token's hash under `name` (unique among live
/// tokens) and `role`, expiring at `expires_at` if given; returns the token.
pub async fn issue_api_token(
    database: &DatabaseConfig,
    name: &str,
    role: Role,
    expires_at: Option<time::OffsetDateTime>,
) -> Result<String, TokenError> {
    let name = check_name(name)?;
    let expires_at = expires_at
        .map(|at| at.format(&time::format_description::well_known::Rfc3339))
        .transpose()
        .map_err(|error| TokenError::Expiry(String::new(), error.to_string()))?;
    let mut conn = connect(database).await?;
    let token = generate();
    let inserted = sqlx::query(
        "INSERT INTO api_tokens (name, role, token_hash, expires_at) VALUES ($1, $2, $3, $4::timestamptz)",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(hash(&token))
    .bind(expires_at)
    .execute(&mut conn)
    .await;
    close(conn).await;
    match inserted {
        Ok(_) => Ok(token),
        Err(sqlx::Error::Database(error)) if error.constraint() == Some("api_tokens_live_name") => {
            Err(TokenError::DuplicateName(name.to_owned()))
        }
        Err(error) => Err(TokenError::Store(error)),
    }
}

/// One API token as `api-token list` shows it: never the token, never its hash.
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// When a replica last looked it up (at most once per token cache period per replica).
    pub last_used_at: Option<String>,
    /// `live`, `expired` or `revoked`.
    pub state: String,
}

/// `sentra-cloud api-token list`: every API token, oldest first.
pub async fn list_api_tokens(database: &DatabaseConfig) -> Result<Vec<TokenInfo>, TokenError> {
    let mut conn = connect(database).await?;
    // Ordered by `api_tokens.created_at`, the timestamp: a bare `created_at` would be the text
    // column of that name.
    let rows = sqlx::query_as(
        "SELECT name, role,
                to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at,
                to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS expires_at,
                to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS revoked_at,
                to_char(last_used_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_used_at,
                CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
                     WHEN expires_at <= now() THEN 'expired' ELSE 'live' END AS state
           FROM api_tokens ORDER BY api_tokens.created_at, id",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(TokenError::Store);
    close(conn).await;
    rows
}

/// `sentra-cloud api-token revoke NAME`: revokes the live token named `name`. Every replica
/// refuses it within the token cache period, and its fleet page sessions end at once.
pub async fn revoke_api_token(database: &DatabaseConfig, name: &str) -> Result<(), TokenError> {
    let name = check_name(name)?;
    let mut conn = connect(database).await?;
    let revoked = sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
    )
    .bind(name)
    .execute(&mut conn)
    .await
    .map_err(TokenError::Store);
    close(conn).await;
    if revoked?.rows_affected() == 0 {
        return Err(TokenError::UnknownName(name.to_owned()));
    }
    Ok(())
}

async fn connect(database: &DatabaseConfig) -> Result<PgConnection, TokenError> {
    let url = format!("{:?}", database.url);
    let options = database.url.connect_options();
    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| TokenError::ConnectTimeout {
            url: url.clone(),
            timeout: CONNECT_TIMEOUT,
        })?
        .map_err(|source| TokenError::Connect { url, source })
}

async fn close(conn: PgConnection) {
    if let Err(error) = conn.close().await {
        tracing::warn!(%error, "closing the database connection failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hash_to_32_bytes() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(hash(&a).len(), 32);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn enrolment_tokens_are_short_and_hash_as_their_canonical_form() {
        let token = generate_enrollment();
        assert!(!token.is_legacy());
        assert_ne!(token, generate_enrollment());
        let grouped = token.grouped();
        assert_eq!(enrollment_hash(&grouped), Some(hash(token.canonical())));
        assert_eq!(
            enrollment_hash(&grouped.to_lowercase().replace('-', " ")),
            Some(hash(token.canonical()))
        );
        // The old form hashes as it was issued (lower-case hex).
        let old = generate();
        assert_eq!(enrollment_hash(&old.to_uppercase()), Some(hash(&old)));
        assert_eq!(enrollment_hash("not a token"), None);
    }

    #[test]
    fn expiries_parse_as_durations_or_times_in_the_future() {
        let at = |unix: i64| time::OffsetDateTime::from_unix_timestamp(unix).ok();
        // 2026-12-04T12:00:00Z
        let now = time::OffsetDateTime::from_unix_timestamp(1_796_385_600)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            parse_expiry("30d", now).ok(),
            at(1_796_385_600 + 30 * 86_400)
        );
        assert_eq!(parse_expiry("90m", now).ok(), at(1_796_385_600 + 90 * 60));
        assert_eq!(
            parse_expiry("2027-01-01T00:00:00Z", now).ok(),
            at(1_798_761_600)
        );
        for bad in [
            "",
            "30",
            "d",
            "30x",
            "-1d",
            "0d",
            "99999999999999999999d",
            "3651d",
            "2026-12-01T00:00:00Z",
        ] {
            assert!(parse_expiry(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(check_name(" ops ").ok(), Some("ops"));
        assert!(check_name("").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn roles_parse() {
        assert_eq!("portal".parse(), Ok(Role::Portal));
        assert_eq!("operator".parse(), Ok(Role::Operator));
        assert!("admin".parse::<Role>().is_err());
        assert!("Operator".parse::<Role>().is_err());
    }
}
