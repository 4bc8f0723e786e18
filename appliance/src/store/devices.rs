//! Paired devices (tablets, POS, storekeeper terminals), their one-time pairing codes and their
//! credentials.
//!
//! Only hashes are stored: a pairing code (40 random bits, short-lived, single use), a bearer
//! token (`sek_`, 256 random bits) and an MQTT password (`sem_`, 256 random bits, a secret of its
//! own so a CONNECT sniffed on the LAN does not give the API) are shown once and never again, so
//! a copied database does not let anyone in. This is the box's own security state: it is not
//! synced and emits no events.
//!
//! **Rotation** ([`rotate`]): a device asks for a new token and MQTT password; they wait as the
//! device's pending pair (`next_*`) while the old pair keeps working, so an answer lost on the way
//! locks nobody out. The first request with the new token ([`complete_rotation`]) makes the
//! pending pair the device's credentials and the old ones stop (the broker closes MQTT sessions
//! on the old password: [`Notice::DeviceCredentialsChanged`]). Rotating again before that
//! replaces the pending pair. Until the switch the new MQTT password is refused: a device uses
//! its new token once, then reconnects MQTT.

use rand::{Rng as _, RngExt as _};
use rusqlite::{Connection, OptionalExtension as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{DomainError, Notice, Result, WriteTx, new_id};
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
    /// Whether the device holds an MQTT password of its own. False for a device paired by a
    /// release before credentials were split, until it rotates them once
    /// (`POST /v1/devices/self/rotate`): until then the broker refuses it.
    pub mqtt_credential: bool,
}

/// Prefix of a bearer token for the API.
pub const TOKEN_PREFIX: &str = "sek_";
/// Prefix of an MQTT password: never accepted as a bearer token, nor a token as a password.
pub const MQTT_PREFIX: &str = "sem_";

/// A device's secrets, in clear: only in the answer that hands them out (pairing, rotation).
#[derive(Clone)]
pub struct Credentials {
    /// The bearer token (`sek_…`).
    pub token: String,
    /// The MQTT password (`sem_…`); the username is the device id.
    pub mqtt_password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

impl Credentials {
    fn generate() -> Credentials {
        Credentials {
            token: secret(TOKEN_PREFIX),
            mqtt_password: secret(MQTT_PREFIX),
        }
    }
}

/// 256 random bits, hex, after `prefix`.
fn secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// What a bearer token is, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bearer {
    /// The live device's current token.
    Current(Device),
    /// The token of the live device's pending rotation: using it completes the rotation
    /// ([`complete_rotation`], a write).
    Pending,
}

/// The result of an MQTT CONNECT's username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttLogin {
    /// The live device, and the hash of the credential it used (the broker closes sessions on a
    /// credential that is no longer the device's).
    Allowed { device: Device, credential: String },
    /// A live device paired before MQTT credentials existed: it must rotate once.
    NoCredential,
    /// Unknown device, wrong password, or revoked.
    Refused,
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

/// Trade a pairing code for a device and its credentials (returned once, in clear).
pub fn redeem(
    w: &mut WriteTx<'_>,
    code: &str,
    name: &Name,
    role: Option<Role>,
) -> Result<(Device, Credentials)> {
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
    let creds = Credentials::generate();
    let device = Device {
        id: new_id(),
        name: name.to_string(),
        role: code_role,
        created_at: now,
        revoked_at: None,
        mqtt_credential: true,
    };
    w.conn().execute(
        "INSERT INTO devices (id, name, role, token_hash, mqtt_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        (
            &device.id,
            &device.name,
            code_role.as_str(),
            sha256_hex(&creds.token),
            sha256_hex(&creds.mqtt_password),
            &device.created_at,
        ),
    )?;
    Ok((device, creds))
}

/// A `devices` row as [`DEVICE_COLUMNS`] selects it.
type DeviceRow = (String, String, String, String, Option<String>, bool);

const DEVICE_COLUMNS: &str = "id, name, role, created_at, revoked_at, mqtt_hash IS NOT NULL";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn device_of(
    (id, name, role, created_at, revoked_at, mqtt_credential): DeviceRow,
) -> Result<Device> {
    let role =
        Role::parse(&role).map_err(|e| super::StoreError::Corrupt(format!("devices.role: {e}")))?;
    Ok(Device {
        id,
        name,
        role,
        created_at,
        revoked_at,
        mqtt_credential,
    })
}

/// The live (not revoked) device whose current token is `token`.
fn current(conn: &Connection, token_hash: &str) -> Result<Option<Device>> {
    conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = ?1 AND revoked_at IS NULL"
    ))?
    .query_row([token_hash], device_row)
    .optional()?
    .map(device_of)
    .transpose()
}

/// What `token` is: a live device's current token, its pending one, or nothing (None). An MQTT
/// password is never a bearer token.
pub fn authenticate(conn: &Connection, token: &str) -> Result<Option<Bearer>> {
    if token.starts_with(MQTT_PREFIX) {
        return Ok(None);
    }
    let hash = sha256_hex(token);
    if let Some(d) = current(conn, &hash)? {
        return Ok(Some(Bearer::Current(d)));
    }
    let pending: bool = conn
        .prepare_cached(
            "SELECT count(*) > 0 FROM devices WHERE next_token_hash = ?1 AND revoked_at IS NULL",
        )?
        .query_row([&hash], |r| r.get(0))?;
    Ok(pending.then_some(Bearer::Pending))
}

/// The first use of a pending token: the pending pair becomes the device's credentials, the old
/// token and MQTT password stop, and the broker is told to close sessions on the old password
/// (after commit). None when the token is neither pending nor current any more (revoked, or
/// replaced by a later rotation); the device when another request switched first.
pub fn complete_rotation(w: &mut WriteTx<'_>, token: &str) -> Result<Option<Device>> {
    let hash = sha256_hex(token);
    let switched: Option<(String, String)> = w
        .conn()
        .query_row(
            "UPDATE devices
             SET token_hash = next_token_hash, mqtt_hash = next_mqtt_hash,
                 next_token_hash = NULL, next_mqtt_hash = NULL, rotated_at = ?2
             WHERE next_token_hash = ?1 AND revoked_at IS NULL
             RETURNING id, mqtt_hash",
            (&hash, w.now_str()),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((id, mqtt_hash)) = switched {
        w.notices.push(Notice::DeviceCredentialsChanged {
            id,
            mqtt_credential: mqtt_hash,
        });
    }
    current(w.conn(), &hash)
}

/// A new token and MQTT password for the live device `id`, pending until the token is first
/// used; a pending pair from an earlier rotation is replaced. None when the device is revoked.
pub fn rotate(w: &mut WriteTx<'_>, id: &str) -> Result<Option<Credentials>> {
    let creds = Credentials::generate();
    let n = w.conn().execute(
        "UPDATE devices SET next_token_hash = ?2, next_mqtt_hash = ?3
         WHERE id = ?1 AND revoked_at IS NULL",
        (
            id,
            sha256_hex(&creds.token),
            sha256_hex(&creds.mqtt_password),
        ),
    )?;
    Ok((n == 1).then_some(creds))
}

/// Check an MQTT CONNECT: `username` is the device id, `password` its MQTT password (never its
/// API token).
pub fn mqtt_login(conn: &Connection, username: &str, password: &str) -> Result<MqttLogin> {
    if password.starts_with(TOKEN_PREFIX) {
        return Ok(MqttLogin::Refused);
    }
    let row: Option<(DeviceRow, Option<String>)> = conn
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS}, mqtt_hash FROM devices WHERE id = ?1 AND revoked_at IS NULL"
        ))?
        .query_row([username], |r| Ok((device_row(r)?, r.get(6)?)))
        .optional()?;
    let Some((device, stored)) = row else {
        return Ok(MqttLogin::Refused);
    };
    let Some(stored) = stored else {
        return Ok(MqttLogin::NoCredential);
    };
    let hash = sha256_hex(password);
    // Both sides are SHA-256 hashes of 256-bit secrets: comparing them leaks nothing usable.
    if hash != stored {
        return Ok(MqttLogin::Refused);
    }
    Ok(MqttLogin::Allowed {
        device: device_of(device)?,
        credential: hash,
    })
}

pub fn list(conn: &Connection) -> Result<Vec<Device>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY created_at"
    ))?;
    let rows = stmt.query_map([], device_row)?;
    rows.map(|row| device_of(row?)).collect()
}

/// Revoke a device: its token and MQTT password, current and pending, stop working at once.
pub fn revoke(w: &mut WriteTx<'_>, id: &str) -> Result<()> {
    let n = w.conn().execute(
        "UPDATE devices SET revoked_at = ?2, next_token_hash = NULL, next_mqtt_hash = NULL
         WHERE id = ?1 AND revoked_at IS NULL",
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
/// Returns the device and its credentials.
pub fn create_direct(
    w: &mut WriteTx<'_>,
    name: &Name,
    role: Role,
) -> Result<(Device, Credentials)> {
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
