//! The store key: 32 random bytes, kept as 64 hex characters in a key file (mode 0600) or passed
//! by systemd as the credential `store-key` (`LoadCredentialEncrypted=`, sealed to the TPM where
//! there is one). Never in the config file, never in a log: `Debug` prints a placeholder.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rand::Rng as _;

/// The systemd credential name the daemon looks for first.
pub const CREDENTIAL_NAME: &str = "store-key";

#[derive(Clone)]
pub struct StoreKey([u8; 32]);

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("store key file {path}: {source}; create one with `sentra-edge keygen {path}`", path = .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store key file {path}: expected 64 hex characters (32 bytes)", path = .path.display())]
    Malformed { path: PathBuf },
    #[error("store key file {path}: {source}", path = .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store key file {path} already exists; refusing to overwrite a key (that would lose the store)", path = .path.display())]
    Exists { path: PathBuf },
}

impl StoreKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self(k)
    }

    /// The credential passed by systemd if there is one, else `key_file`.
    pub fn load(key_file: &Path) -> Result<(Self, PathBuf), KeyError> {
        let path = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|d| PathBuf::from(d).join(CREDENTIAL_NAME))
            .filter(|p| p.exists())
            .unwrap_or_else(|| key_file.to_owned());
        let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Read {
            path: path.clone(),
            source,
        })?;
        let key = Self::from_hex(text.trim())
            .ok_or_else(|| KeyError::Malformed { path: path.clone() })?;
        Ok((key, path))
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// Write a new key file readable by its owner only; never overwrites.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let err = |source| KeyError::Write {
            path: path.to_owned(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyError::Exists {
                        path: path.to_owned(),
                    }
                } else {
                    err(e)
                }
            })?;
        f.write_all(format!("{}\n", hex::encode(self.0)).as_bytes())
            .map_err(err)?;
        f.sync_all().map_err(err)
    }

    /// The SQLCipher `PRAGMA key` value: a raw key, so no slow key derivation at every open.
    pub(super) fn pragma_value(&self) -> String {
        format!("x'{}'", hex::encode(self.0))
    }
}
