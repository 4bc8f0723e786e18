//! Staff on shared devices and the cash drawer's day: the staff record (master data the cloud
//! authors, the PIN only as an argon2 PHC string), the roles, the PIN's shape, and the bounds of
//! a shift and day close. Pure: no I/O.

use serde::{Deserialize, Serialize};

/// Shortest and longest PIN (digits only).
pub const PIN_MIN_DIGITS: usize = 4;
pub const PIN_MAX_DIGITS: usize = 8;
/// Longest PHC string a staff record may carry (argon2id with its parameters is about 100).
pub const MAX_PIN_HASH_LEN: usize = 200;
/// Longest staff id and name.
pub const MAX_STAFF_ID_LEN: usize = 64;
pub const MAX_STAFF_NAME_LEN: usize = 200;
/// Largest opening float or counted cash (rupiah).
pub const MAX_DRAWER_CASH: i64 = 10_000_000_000;

/// What a staff member does; MANAGER approves voids, credit notes, stock adjustments, reopening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StaffRole {
    Cashier,
    Storekeeper,
    MechanicLead,
    Manager,
}

impl StaffRole {
    pub const ALL: [StaffRole; 4] = [
        StaffRole::Cashier,
        StaffRole::Storekeeper,
        StaffRole::MechanicLead,
        StaffRole::Manager,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Cashier => "CASHIER",
            StaffRole::Storekeeper => "STOREKEEPER",
            StaffRole::MechanicLead => "MECHANIC_LEAD",
            StaffRole::Manager => "MANAGER",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A staff member as the cloud sends it to the branch's boxes (the change log's `staff` kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffRecord {
    pub id: String,
    pub name: String,
    pub role: StaffRole,
    pub active: bool,
    /// The PIN's argon2 hash (PHC string); the PIN itself never leaves the operator's request.
    pub pin_hash: String,
}

/// A PIN is 4 to 8 ASCII digits.
pub fn check_pin(pin: &str) -> Result<(), String> {
    if (PIN_MIN_DIGITS..=PIN_MAX_DIGITS).contains(&pin.len())
        && pin.bytes().all(|b| b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(format!(
            "a PIN is {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits"
        ))
    }
}

/// The PIN's argon2id PHC string (argon2's default parameters) under `salt`, 16 random bytes the
/// caller draws: the one way both sides make a staff member's hash (the cloud for each PIN an
/// operator sets, the box for the demo's staff).
pub fn hash_pin(pin: &str, salt: &[u8; 16]) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(salt).map_err(|e| format!("salt: {e}"))?;
    argon2::Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("argon2: {e}"))
}

/// Whether `pin` is the PIN `phc` was made from; false for a hash that does not parse. Slow by
/// design (argon2, about 50 ms): call it off the async runtime.
pub fn pin_matches(pin: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|hash| {
        argon2::Argon2::default()
            .verify_password(pin.as_bytes(), &hash)
            .is_ok()
    })
}

/// Totals by payment method (rupiah, signed: rental refunds count against their method).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodTotals {
    pub cash: i64,
    pub edc: i64,
    pub qris: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_matches_its_own_hash_only() {
        let hash = hash_pin("2468", &[7; 16]).expect("a PIN hashes");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(pin_matches("2468", &hash));
        assert!(!pin_matches("2469", &hash));
        assert!(!pin_matches("2468", "not a PHC string"));
        assert_ne!(
            hash_pin("2468", &[8; 16]).expect("a PIN hashes"),
            hash,
            "the salt counts"
        );
    }

    #[test]
    fn pins_and_roles() {
        assert!(check_pin("1234").is_ok());
        assert!(check_pin("12345678").is_ok());
        for bad in ["123", "123456789", "12a4", "", " 1234", "١٢٣٤"] {
            assert!(check_pin(bad).is_err(), "{bad:?}");
        }
        for r in StaffRole::ALL {
            assert_eq!(StaffRole::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }
}
