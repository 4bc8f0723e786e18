//! The box's LAN certificate and private key (PEM), kept in `meta` so they live in the encrypted
//! store: made once, the same after every restart, and restored with a backup (tablets pinned
//! its fingerprint at pairing). The box's own state: not synced, no event.

use rusqlite::Connection;

use super::{Result, WriteTx};

const CERT_META: &str = "lan_tls_cert_pem";
const KEY_META: &str = "lan_tls_key_pem";

/// The kept certificate and key, if the box has made them.
pub fn identity(conn: &Connection) -> Result<Option<(String, String)>> {
    Ok(
        match (super::meta(conn, CERT_META)?, super::meta(conn, KEY_META)?) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        },
    )
}

/// Keep `cert` and `key` unless the store already holds an identity (another process made one
/// first); returns the one kept, so every process ends up presenting the same certificate.
pub fn keep_identity(w: &mut WriteTx<'_>, cert: &str, key: &str) -> Result<(String, String)> {
    if let Some(kept) = identity(w.conn())? {
        return Ok(kept);
    }
    super::set_meta(w.conn(), CERT_META, cert)?;
    super::set_meta(w.conn(), KEY_META, key)?;
    Ok((cert.to_owned(), key.to_owned()))
}
