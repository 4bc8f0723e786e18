//! Paired devices (tablets, POS, storekeeper terminals) and their one-time pairing codes.
//!
//! Only hashes are stored: a pairing code (40 random bits, short-lived, single use) and a bearer
//! token (256 random bits) are shown once and never again, so a copied database does not let
//! anyone in. This is the box's own security state: it is not synced and emits no events.

use rand::{Rng as _, RngExt as _};
use rusqlite::{Connection, OptionalExtension as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{DomainError, Result, WriteTx, new_id};
use crate::domain::{Name, Role};

/// Crockford base32: no I, L, O, U, so a code read aloud or typed on a tablet is unambiguous.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#[derive(Debug, Clone, Serialize)]
pub struct PairingCode {
    /// `XXXX-XXXX`; shown once.
    pub code: String,
    pub role: Role,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// How tokens and codes are stored (and how the API's token cache is keyed).
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Upper-case, drop separators and map look-alikes, so `abcd efgh`, `ABCD-EFGH` and `ABCD-EFGH `
/// are the same code.
pub fn normalise_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect()
}

pub fn new_pairing_code(w: &mut WriteTx<'_>, role: Role, ttl_secs: u64) -> Result<PairingCode> {
    let mut rng = rand::rng();
    let raw: String = (0..8)
        .map(|_| CODE_ALPHABET[rng.random_range(0..32)] as char)
        .collect();
    let expires =
        w.now() + time::Duration::seconds(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2));
    let expires_at = super::format_time(expires);
    w.conn().execute(
        "INSERT INTO pairing_codes (code_hash, role, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        (sha256_hex(&raw), role.as_str(), w.now_str(), &expires_at),
    )?;
    Ok(PairingCode {
        code: format!("{}-{}", &raw[..4], &raw[4..]),
        role,
        expires_at,
    })
}

/// Trade a pairing code for a device and its token (returned once, in clear).
pub fn redeem(
    w: &mut WriteTx<'_>,
    code: &str,
    name: &Name,
    role: Option<Role>,
) -> Result<(Device, String)> {
    let hash = sha256_hex(&normalise_code(code));
    let now = w.now_str();
    let found: Option<(String, String, Option<String>)> = w
        .conn()
        .query_row(
            "SELECT role, expires_at, used_at FROM pairing_codes WHERE code_hash = ?1",
            [&hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let refused = || {
        DomainError::conflict(
            "pairing_refused",
            "this pairing code is unknown, used or expired; make a new one with `sentra-edge pair`",
        )
    };
    let Some((code_role, expires_at, used_at)) = found else {
        return Err(refused().into());
    };
    if used_at.is_some() || expires_at <= now {
        return Err(refused().into());
    }
    let code_role = Role::parse(&code_role)
        .map_err(|e| super::StoreError::Corrupt(format!("pairing_codes.role: {e}")))?;
    if let Some(r) = role.filter(|r| *r != code_role) {
        return Err(DomainError::invalid(
            "role",
            format!(
                "this pairing code is for a {} device, not {}",
                code_role.as_str(),
                r.as_str()
            ),
        )
        .into());
    }
    w.conn().execute(
        "UPDATE pairing_codes SET used_at = ?2 WHERE code_hash = ?1",
        (&hash, &now),
    )?;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("sek_{}", hex::encode(secret));
    let device = Device {
        id: new_id(),
        name: name.to_string(),
        role: code_role,
        created_at: now,
        revoked_at: None,
    };
    w.conn().execute(
        "INSERT INTO devices (id, name, role, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        (
            &device.id,
            &device.name,
            code_role.as_str(),
            sha256_hex(&token),
            &device.created_at,
        ),
    )?;
    Ok((device, token))
}

/// The live (not revoked) device holding `token`.
pub fn authenticate(conn: &Connection, token: &str) -> Result<Option<Device>> {
    let row = conn
        .prepare_cached("SELECT id, name, role, created_at FROM devices WHERE token_hash = ?1 AND revoked_at IS NULL")?
        .query_row([sha256_hex(token)], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?)))
        .optional()?;
    row.map(|(id, name, role, created_at)| {
        let role = Role::parse(&role)
            .map_err(|e| super::StoreError::Corrupt(format!("devices.role: {e}")))?;
        Ok(Device {
            id,
            name,
            role,
            created_at,
            revoked_at: None,
        })
    })
    .transpose()
}

pub fn list(conn: &Connection) -> Result<Vec<Device>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, role, created_at, revoked_at FROM devices ORDER BY created_at",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get(3)?,
            r.get(4)?,
        ))
    })?;
    rows.map(|row| {
        let (id, name, role, created_at, revoked_at) = row?;
        let role = Role::parse(&role)
            .map_err(|e| super::StoreError::Corrupt(format!("devices.role: {e}")))?;
        Ok(Device {
            id,
            name,
            role,
            created_at,
            revoked_at,
        })
    })
    .collect()
}

/// Revoke a device: its token stops working at once.
pub fn revoke(w: &mut WriteTx<'_>, id: &str) -> Result<()> {
    let n = w.conn().execute(
        "UPDATE devices SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        (id, w.now_str()),
    )?;
    if n == 0 {
        let exists: bool = w.conn().query_row(
            "SELECT count(*) > 0 FROM devices WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(DomainError::not_found("device", id).into());
        }
    }
    Ok(())
}

/// Pair a device without handing a code around: for the demo's own admin client and benchmarks.
/// Returns the device and its token.
pub fn create_direct(w: &mut WriteTx<'_>, name: &Name, role: Role) -> Result<(Device, String)> {
    let code = new_pairing_code(w, role, 60)?;
    redeem(w, &code.code, name, Some(role))
}

#[cfg(test)]
mod tests {
    use super::normalise_code;

    #[test]
    fn codes_normalise() {
        assert_eq!(normalise_code("abcd-efgh"), "ABCDEFGH");
        assert_eq!(normalise_code(" ab0o iL1 "), "AB00111");
    }
}
