//! Secret tokens: one-time enrolment tokens for appliances and API tokens for non-device clients
//! (the customer portal, the cloud team's operators), and the two commands that issue them.
//!
//! Invariant: a token is printed once, by the command that made it, and never stored: the
//! database holds its SHA-256 only, so a leaked database cannot enrol a box or call the API.
//! Tokens are 256 random bits from the operating system's generator, hex-encoded.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng as _;
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
    #[error("--name must not be empty")]
    EmptyName,
    #[error("storing the token failed (has `sentra-cloud migrate` run?)")]
    Store(#[source] sqlx::Error),
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

/// An enrolment token just issued.
#[derive(Debug)]
pub struct IssuedEnrollment {
    pub token: String,
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
    let token = generate();
    let mut tx = conn.begin().await.map_err(TokenError::Store)?;
    let branch_name = branches::ensure(&mut tx, branch, branch_name)
        .await
        .map_err(TokenError::Store)?;
    let expires_at: String = sqlx::query_scalar(
        "INSERT INTO enrollment_tokens (token_hash, branch_id, expires_at)
         VALUES ($1, $2, now() + make_interval(hours => $3))
         RETURNING to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
    )
    .bind(hash(&token))
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

/// `sentra-cloud api-token`: stores the new token's hash under `name` and `role`; returns the
/// token.
pub async fn issue_api_token(
    database: &DatabaseConfig,
    name: &str,
    role: Role,
) -> Result<String, TokenError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(TokenError::EmptyName);
    }
    let mut conn = connect(database).await?;
    let token = generate();
    sqlx::query("INSERT INTO api_tokens (name, role, token_hash) VALUES ($1, $2, $3)")
        .bind(name)
        .bind(role.as_str())
        .bind(hash(&token))
        .execute(&mut conn)
        .await
        .map_err(TokenError::Store)?;
    close(conn).await;
    Ok(token)
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
    fn roles_parse() {
        assert_eq!("portal".parse(), Ok(Role::Portal));
        assert_eq!("operator".parse(), Ok(Role::Operator));
        assert!("admin".parse::<Role>().is_err());
        assert!("Operator".parse::<Role>().is_err());
    }
}
