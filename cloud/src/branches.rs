//! Branches: the identifier every device, event and change belongs to.
//!
//! Owns [`BranchId`] (parsed once at the edge of the program: CLI arguments and URL paths) and
//! the creation and listing of branch rows. A branch id also appears in the branch's invoice numbers, so it
//! is short and plain: 1–32 ASCII letters, digits, `-` or `_`, starting with a letter or digit.

use std::fmt;

use sqlx::PgConnection;

pub const MAX_BRANCH_ID_LEN: usize = 32;

/// A valid branch identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchId(String);

#[derive(Debug, thiserror::Error)]
#[error(
    "branch id {0:?} is not valid: expected 1-{MAX_BRANCH_ID_LEN} ASCII letters, digits, '-' or '_', starting with a letter or digit"
)]
pub struct InvalidBranchId(pub String);

impl BranchId {
    pub fn parse(raw: &str) -> Result<BranchId, InvalidBranchId> {
        let valid = (1..=MAX_BRANCH_ID_LEN).contains(&raw.len())
            && raw
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(BranchId(raw.to_owned()))
        } else {
            Err(InvalidBranchId(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BranchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Creates the branch if it is missing; renames it when `name` is given. Returns its name.
pub async fn ensure(
    conn: &mut PgConnection,
    id: &BranchId,
    name: Option<&str>,
) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO branches (id, name) VALUES ($1, coalesce($2, $1))
         ON CONFLICT (id) DO UPDATE SET name = coalesce($2, branches.name)
         RETURNING name",
    )
    .bind(id.as_str())
    .bind(name)
    .fetch_one(conn)
    .await
}

/// Whether the branch exists.
pub async fn exists(conn: &mut PgConnection, id: &BranchId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM branches WHERE id = $1)")
        .bind(id.as_str())
        .fetch_one(conn)
        .await
}

/// One branch as `sentra-cloud branches list` shows it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct BranchRow {
    pub id: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Devices enrolled and not revoked.
    pub devices: i64,
}

/// Every branch, by id, with its live device count.
pub async fn list(db: &sqlx::PgPool) -> Result<Vec<BranchRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT b.id, b.name,
                to_char(b.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at,
                count(d.id) AS devices
         FROM branches b LEFT JOIN devices d ON d.branch_id = b.id AND d.revoked_at IS NULL
         GROUP BY b.id ORDER BY b.id",
    )
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_ids_table() {
        let cases = [
            ("JKT01", true),
            ("bdg-2_x", true),
            ("0", true),
            ("", false),
            ("-JKT", false),
            ("_JKT", false),
            ("JKT 01", false),
            ("JKT/01", false),
            ("jakarta-selatan-cabang-utama-0001", false), // 33 characters
            ("jakarta-selatan-cabang-utama-001", true),   // 32
            ("cabang-é", false),
        ];
        for (raw, valid) in cases {
            assert_eq!(BranchId::parse(raw).is_ok(), valid, "{raw:?}");
        }
    }
}
