//! Master data: the parts catalogue (barcodes, prices), mechanics and rental assets. The cloud
//! will own these (server priority, applied by sync); until then `demo` seeds them and the API
//! only reads them.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{DomainError, OptionalRow as _, Result, StoreError, WriteTx};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Part {
    pub sku: String,
    pub name: String,
    pub barcode: Option<String>,
    /// Price in rupiah, before PPN.
    pub price: i64,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Mechanic {
    pub id: String,
    pub name: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Asset {
    pub id: String,
    pub sku: String,
    pub plate: String,
    pub name: String,
}

/// Insert or replace master data (the cloud's value wins). Not an outbox change: master data
/// flows from the cloud to the branch, never back.
pub fn upsert(
    w: &mut WriteTx<'_>,
    parts: &[Part],
    mechanics: &[Mechanic],
    assets: &[Asset],
) -> Result<()> {
    let conn = w.conn();
    let now = w.now_str();
    for p in parts {
        conn.execute(
            "INSERT INTO parts (sku, name, barcode, price, unit, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (sku) DO UPDATE SET name = excluded.name, barcode = excluded.barcode, price = excluded.price,
                 unit = excluded.unit, updated_at = excluded.updated_at",
            (&p.sku, &p.name, &p.barcode, p.price, &p.unit, &now),
        )?;
    }
    for m in mechanics {
        conn.execute(
            "INSERT INTO mechanics (id, name, active) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, active = excluded.active",
            (&m.id, &m.name, m.active),
        )?;
    }
    for a in assets {
        conn.execute(
            "INSERT INTO assets (id, sku, plate, name) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET sku = excluded.sku, plate = excluded.plate, name = excluded.name",
            (&a.id, &a.sku, &a.plate, &a.name),
        )?;
    }
    Ok(())
}

fn part_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Part> {
    Ok(Part {
        sku: r.get(0)?,
        name: r.get(1)?,
        barcode: r.get(2)?,
        price: r.get(3)?,
        unit: r.get(4)?,
    })
}

pub fn part(conn: &Connection, sku: &str) -> Result<Part> {
    conn.prepare_cached("SELECT sku, name, barcode, price, unit FROM parts WHERE sku = ?1")?
        .query_row([sku], part_row)
        .or_not_found("part", sku)
}

/// A part a request body names (dispensing, receiving): an unknown SKU is bad input in the
/// field `sku` (422), not a missing resource, which is what 404 says of the URL.
pub fn part_named(conn: &Connection, sku: &str) -> Result<Part> {
    part(conn, sku).map_err(|e| match e {
        StoreError::Domain(DomainError::NotFound { .. }) => {
            DomainError::invalid("sku", format!("no part {sku:?} in the catalogue")).into()
        }
        other => other,
    })
}

pub fn parts(conn: &Connection) -> Result<Vec<Part>> {
    let mut stmt =
        conn.prepare_cached("SELECT sku, name, barcode, price, unit FROM parts ORDER BY sku")?;
    Ok(stmt
        .query_map([], part_row)?
        .collect::<rusqlite::Result<_>>()?)
}

pub fn mechanics(conn: &Connection) -> Result<Vec<Mechanic>> {
    let mut stmt = conn.prepare_cached("SELECT id, name, active FROM mechanics ORDER BY name")?;
    Ok(stmt
        .query_map([], |r| {
            Ok(Mechanic {
                id: r.get(0)?,
                name: r.get(1)?,
                active: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

pub fn assets(conn: &Connection) -> Result<Vec<Asset>> {
    let mut stmt = conn.prepare_cached("SELECT id, sku, plate, name FROM assets ORDER BY id")?;
    Ok(stmt
        .query_map([], |r| {
            Ok(Asset {
                id: r.get(0)?,
                sku: r.get(1)?,
                plate: r.get(2)?,
                name: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// The demo branch's catalogue: a small car workshop with a rental counter.
pub fn demo_data() -> (Vec<Part>, Vec<Mechanic>, Vec<Asset>) {
    let part = |sku: &str, name: &str, barcode: &str, price: i64, unit: &str| Part {
        sku: sku.into(),
        name: name.into(),
        barcode: Some(barcode.into()),
        price,
        unit: unit.into(),
    };
    let parts = vec![
        part(
            "OIL-10W40-1L",
            "Oli mesin 10W-40 1 liter",
            "8991234567891",
            85_000,
            "botol",
        ),
        part(
            "FLT-OIL-AVZ",
            "Filter oli Avanza",
            "8990011223340",
            45_000,
            "pcs",
        ),
        part(
            "BRK-PAD-FR",
            "Kampas rem depan",
            "8995556667772",
            275_000,
            "set",
        ),
        part("SPK-PLUG-NGK", "Busi NGK", "8997778889994", 35_000, "pcs"),
        part(
            "WPR-BLD-20",
            "Wiper 20 inci",
            "8992223334449",
            60_000,
            "pcs",
        ),
    ];
    let mechanics = ["Agus", "Budi", "Citra"]
        .iter()
        .enumerate()
        .map(|(i, n)| Mechanic {
            id: format!("M{}", i + 1),
            name: (*n).into(),
            active: true,
        })
        .collect();
    let assets = vec![
        Asset {
            id: "CAR-001".into(),
            sku: "AVANZA-2024".into(),
            plate: "B 1234 SNT".into(),
            name: "Toyota Avanza 2024 putih".into(),
        },
        Asset {
            id: "CAR-002".into(),
            sku: "AVANZA-2024".into(),
            plate: "B 5678 SNT".into(),
            name: "Toyota Avanza 2024 hitam".into(),
        },
        Asset {
            id: "CAR-003".into(),
            sku: "XPANDER-2023".into(),
            plate: "B 9012 SNT".into(),
            name: "Mitsubishi Xpander 2023".into(),
        },
    ];
    (parts, mechanics, assets)
}
