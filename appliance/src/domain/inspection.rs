//! The tamper-evident handover record. Each inspection's `tamper_proof_hash` is SHA-256 over a
//! canonical encoding of everything the customer signed for (checklist, photo digests, signature
//! digest, odometer, fuel, remarks, time) and the previous inspection's hash for the same asset,
//! so changing, removing or reordering any record breaks every hash after it.
//!
//! The canonical encoding is compact JSON of [`Canonical`]: fields in declaration order, no
//! floats, strings as UTF-8. Changing it is a new `version`, never an edit.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub const CANONICAL_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistItem {
    pub item: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Who signed (the customer or their representative).
    pub signer: String,
    /// SHA-256 of the signature image, uploaded like a photo.
    pub digest: String,
}

/// What the hash covers. Field order is part of the format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Canonical<'a> {
    pub version: u32,
    pub id: &'a str,
    pub asset_id: &'a str,
    pub kind: &'a str,
    pub chain_index: i64,
    pub checklist: &'a [ChecklistItem],
    pub photos: &'a [String],
    pub signature: &'a Signature,
    pub odometer_km: Option<i64>,
    pub fuel_percent: Option<i64>,
    pub remarks: Option<&'a str>,
    pub inspector: &'a str,
    pub created_at: &'a str,
    pub prev_hash: Option<&'a str>,
}

impl Canonical<'_> {
    pub fn hash(&self) -> String {
        let bytes =
            serde_json::to_vec(self).expect("a struct of strings and integers always serialises");
        hex::encode(Sha256::digest(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(
        checklist: &'a [ChecklistItem],
        photos: &'a [String],
        sig: &'a Signature,
    ) -> Canonical<'a> {
        Canonical {
            version: CANONICAL_VERSION,
            id: "i1",
            asset_id: "CAR-1",
            kind: "HANDOVER",
            chain_index: 0,
            checklist,
            photos,
            signature: sig,
            odometer_km: Some(12_345),
            fuel_percent: Some(50),
            remarks: None,
            inspector: "tablet-1",
            created_at: "2026-11-22T01:00:00.000Z",
            prev_hash: None,
        }
    }

    #[test]
    fn every_field_changes_the_hash() {
        let checklist = vec![ChecklistItem {
            item: "lights".into(),
            ok: true,
            note: None,
        }];
        let photos = vec!["a".repeat(64)];
        let sig = Signature {
            signer: "Budi".into(),
            digest: "b".repeat(64),
        };
        let base = sample(&checklist, &photos, &sig);
        let h = base.hash();
        assert_eq!(h.len(), 64);
        assert_eq!(h, sample(&checklist, &photos, &sig).hash(), "deterministic");

        let other_check = vec![ChecklistItem {
            item: "lights".into(),
            ok: false,
            note: None,
        }];
        let other_photos = vec!["c".repeat(64)];
        let other_sig = Signature {
            signer: "Ani".into(),
            digest: "b".repeat(64),
        };
        let variants = [
            Canonical {
                checklist: &other_check,
                ..base.clone()
            },
            Canonical {
                photos: &other_photos,
                ..base.clone()
            },
            Canonical {
                signature: &other_sig,
                ..base.clone()
            },
            Canonical {
                odometer_km: Some(12_346),
                ..base.clone()
            },
            Canonical {
                fuel_percent: None,
                ..base.clone()
            },
            Canonical {
                remarks: Some("scratch"),
                ..base.clone()
            },
            Canonical {
                prev_hash: Some("x"),
                ..base.clone()
            },
            Canonical {
                chain_index: 1,
                ..base.clone()
            },
            Canonical {
                created_at: "2026-11-22T01:00:00.001Z",
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.hash(), h, "{v:?}");
        }
    }
}
