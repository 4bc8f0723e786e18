//! Handover inspections, hash-chained per asset (see `domain::inspection`). Verification
//! recomputes the chain from the first inspection of the asset up to the one asked about, so a
//! change to any field of any earlier record, a removed record or a re-linked one is found.

use rusqlite::Connection;
use serde::Serialize;

use super::{OptionalRow as _, Result, WriteTx, new_id};
use crate::domain::inspection::{CANONICAL_VERSION, Canonical, ChecklistItem, Signature};
use sentra_protocol::EntityKind;
use sentra_protocol::payload::{self as p, op};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Inspection {
    pub id: String,
    pub asset_id: String,
    /// HANDOVER or RETURN.
    pub kind: String,
    /// Position in the asset's chain, from 0.
    pub chain_index: i64,
    #[schema(value_type = Vec<Object>)]
    pub checklist: Vec<ChecklistItem>,
    /// SHA-256 digests of the photos.
    pub photos: Vec<String>,
    #[schema(value_type = Object)]
    pub signature: Signature,
    pub odometer_km: Option<i64>,
    pub fuel_percent: Option<i64>,
    pub remarks: Option<String>,
    pub inspector: String,
    pub created_at: String,
    pub prev_hash: Option<String>,
    /// SHA-256 over the canonical encoding and `prev_hash`.
    pub tamper_proof_hash: String,
}

impl Inspection {
    fn canonical(&self) -> Canonical<'_> {
        Canonical {
            version: CANONICAL_VERSION,
            id: &self.id,
            asset_id: &self.asset_id,
            kind: &self.kind,
            chain_index: self.chain_index,
            checklist: &self.checklist,
            photos: &self.photos,
            signature: &self.signature,
            odometer_km: self.odometer_km,
            fuel_percent: self.fuel_percent,
            remarks: self.remarks.as_deref(),
            inspector: &self.inspector,
            created_at: &self.created_at,
            prev_hash: self.prev_hash.as_deref(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewInspection {
    pub asset_id: String,
    pub kind: String,
    pub checklist: Vec<ChecklistItem>,
    pub photos: Vec<String>,
    pub signature: Signature,
    pub odometer_km: Option<i64>,
    pub fuel_percent: Option<i64>,
    pub remarks: Option<String>,
}

/// The answer of `/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub id: String,
    pub asset_id: String,
    /// True when every record of the chain up to this one hashes to what was stored.
    pub valid: bool,
    /// Records checked (this one and all before it).
    pub checked: i64,
    pub tamper_proof_hash: String,
    /// The first record that does not match, and why.
    pub first_broken: Option<Broken>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Broken {
    pub id: Option<String>,
    pub chain_index: i64,
    pub reason: String,
}

pub fn create(w: &mut WriteTx<'_>, inspector: &str, new: NewInspection) -> Result<Inspection> {
    let conn = w.conn();
    conn.prepare_cached("SELECT 1 FROM assets WHERE id = ?1")?
        .query_row([&new.asset_id], |_| Ok(()))
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => {
                super::DomainError::invalid("asset_id", format!("no asset {:?}", new.asset_id))
                    .into()
            }
            e => super::StoreError::from(e),
        })?;
    let prev: Option<(i64, String)> = conn
        .prepare_cached("SELECT chain_index, tamper_proof_hash FROM inspections WHERE asset_id = ?1 ORDER BY chain_index DESC LIMIT 1")?
        .query_row([&new.asset_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(Some)
        .or_else(|e| if matches!(e, rusqlite::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })?;
    let mut ins = Inspection {
        id: new_id(),
        asset_id: new.asset_id,
        kind: new.kind,
        chain_index: prev.as_ref().map_or(0, |p| p.0 + 1),
        checklist: new.checklist,
        photos: new.photos,
        signature: new.signature,
        odometer_km: new.odometer_km,
        fuel_percent: new.fuel_percent,
        remarks: new.remarks,
        inspector: inspector.to_owned(),
        created_at: w.now_str(),
        prev_hash: prev.map(|p| p.1),
        tamper_proof_hash: String::new(),
    };
    ins.tamper_proof_hash = ins.canonical().hash();
    conn.execute(
        "INSERT INTO inspections (id, asset_id, kind, chain_index, checklist, photos, signature, odometer_km, fuel_percent, remarks, inspector, created_at, prev_hash, tamper_proof_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        rusqlite::params![
            ins.id,
            ins.asset_id,
            ins.kind,
            ins.chain_index,
            super::to_json(&ins.checklist),
            super::to_json(&ins.photos),
            super::to_json(&ins.signature),
            ins.odometer_km,
            ins.fuel_percent,
            ins.remarks,
            ins.inspector,
            ins.created_at,
            ins.prev_hash,
            ins.tamper_proof_hash
        ],
    )?;
    let recorded = p::InspectionRecorded {
        id: ins.id.clone(),
        asset_id: ins.asset_id.clone(),
        kind: ins.kind.clone(),
        chain_index: ins.chain_index,
        checklist: serde_json::to_value(&ins.checklist).expect("serialises"),
        photos: ins.photos.clone(),
        signature: serde_json::to_value(&ins.signature).expect("serialises"),
        odometer_km: ins.odometer_km,
        fuel_percent: ins.fuel_percent,
        remarks: ins.remarks.clone(),
        inspector: ins.inspector.clone(),
        created_at: ins.created_at.clone(),
        prev_hash: ins.prev_hash.clone(),
        tamper_proof_hash: ins.tamper_proof_hash.clone(),
    };
    let seq = w.emit(EntityKind::Inspection, &ins.id, op::RECORDED, &recorded)?;
    // The photos (and the signature image) this event references: the uploader sends them
    // once the cloud has acknowledged `seq`.
    let mut refs = w
        .conn()
        .prepare_cached("INSERT OR IGNORE INTO blob_refs (digest, seq) VALUES (?1, ?2)")?;
    for digest in ins
        .photos
        .iter()
        .chain(std::iter::once(&ins.signature.digest))
    {
        refs.execute(rusqlite::params![digest, seq as i64])?;
    }
    drop(refs);
    Ok(ins)
}

const COLUMNS: &str = "id, asset_id, kind, chain_index, checklist, photos, signature, odometer_km, fuel_percent, remarks, inspector, created_at, prev_hash, tamper_proof_hash";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Inspection, [String; 3])> {
    Ok((
        Inspection {
            id: r.get(0)?,
            asset_id: r.get(1)?,
            kind: r.get(2)?,
            chain_index: r.get(3)?,
            checklist: Vec::new(),
            photos: Vec::new(),
            signature: Signature {
                signer: String::new(),
                digest: String::new(),
            },
            odometer_km: r.get(7)?,
            fuel_percent: r.get(8)?,
            remarks: r.get(9)?,
            inspector: r.get(10)?,
            created_at: r.get(11)?,
            prev_hash: r.get(12)?,
            tamper_proof_hash: r.get(13)?,
        },
        [r.get(4)?, r.get(5)?, r.get(6)?],
    ))
}

fn decode(
    (mut ins, [checklist, photos, signature]): (Inspection, [String; 3]),
) -> Result<Inspection> {
    ins.checklist = super::from_json("inspections.checklist", &checklist)?;
    ins.photos = super::from_json("inspections.photos", &photos)?;
    ins.signature = super::from_json("inspections.signature", &signature)?;
    Ok(ins)
}

pub fn get(conn: &Connection, id: &str) -> Result<Inspection> {
    decode(
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM inspections WHERE id = ?1"))?
            .query_row([id], row)
            .or_not_found("inspection", id)?,
    )
}

pub fn verify(conn: &Connection, id: &str) -> Result<Verification> {
    let target = get(conn, id)?;
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM inspections WHERE asset_id = ?1 AND chain_index <= ?2 ORDER BY chain_index"))?;
    let rows: Vec<_> = stmt
        .query_map((&target.asset_id, target.chain_index), row)?
        .collect::<rusqlite::Result<_>>()?;
    let mut expected_prev: Option<String> = None;
    let mut first_broken = None;
    let mut checked = 0;
    for (i, raw) in rows.into_iter().enumerate() {
        checked += 1;
        let id = raw.0.id.clone();
        let index = raw.0.chain_index;
        let reason = match decode(raw) {
            Err(e) => Some(format!("record cannot be read: {e}")),
            Ok(ins) if ins.chain_index != i as i64 => {
                Some(format!("record {} is missing from the chain", i))
            }
            Ok(ins) if ins.prev_hash != expected_prev => {
                Some("linked to a different previous record".to_owned())
            }
            Ok(ins) => {
                let h = ins.canonical().hash();
                let r = (h != ins.tamper_proof_hash)
                    .then(|| "contents changed since it was signed".to_owned());
                expected_prev = Some(h);
                r
            }
        };
        if let Some(reason) = reason {
            first_broken = Some(Broken {
                id: Some(id),
                chain_index: index,
                reason,
            });
            break;
        }
    }
    Ok(Verification {
        id: target.id,
        asset_id: target.asset_id,
        valid: first_broken.is_none(),
        checked,
        tamper_proof_hash: target.tamper_proof_hash,
        first_broken,
    })
}

/// Does any inspection (any outbox event) reference photo `digest`?
pub fn photo_referenced(conn: &Connection, digest: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM blob_refs WHERE digest = ?1)")?
        .query_row([digest], |r| r.get(0))?)
}

/// Has the cloud acknowledged an event that references photo `digest`? Only then may the photo
/// be uploaded (the cloud refuses photos no inspection of the branch references).
pub fn photo_acknowledged(conn: &Connection, digest: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM blob_refs
                            WHERE digest = ?1
                              AND seq <= (SELECT last_ack_seq FROM sync_state WHERE id = 1))",
        )?
        .query_row([digest], |r| r.get(0))?)
}
