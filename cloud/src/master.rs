//! Master data the cloud authors per branch: parts (catalogue and prices), mechanics, assets,
//! rental tariffs. `PUT /v1/branches/{branch}/parts/{sku}`, `.../mechanics/{id}`,
//! `.../assets/{id}`, `.../tariffs/{sku}`, operator token only.
//!
//! Invariant: a record and its change-log entry are written in one transaction, so a branch
//! pulls every change exactly once and in commit order, and the cloud's value wins at the edge.
//! A PUT that changes nothing appends nothing (`changed: false`), so retries are harmless.

use axum::Json;
use axum::extract::{Path, State};
use sentra_protocol::sync::{AssetRecord, ChangeBody, MechanicRecord, PartRecord};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use sentra_protocol::booking::MAX_ID_LEN;
use sentra_protocol::rental::TariffRecord;
use sentra_protocol::staff::{StaffRecord, StaffRole, check_pin};

use crate::branches::{self, BranchId};
use crate::changes::{self, ChangeError};
use crate::devices::auth::Caller;
use crate::web::{ApiError, JsonBody};

/// Longest free-text field (name, unit, plate, barcode) accepted.
pub const MAX_TEXT_LEN: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Branch(#[from] branches::InvalidBranchId),
    #[error("branch {0} does not exist; create it with sentra-cloud enrollment-token --branch {0}")]
    NoSuchBranch(String),
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<MasterError> for ApiError {
    fn from(error: MasterError) -> Self {
        match error {
            MasterError::Branch(_) | MasterError::NoSuchBranch(_) => {
                ApiError::NotFound(error.to_string())
            }
            MasterError::Invalid { .. } => ApiError::Invalid(error.to_string()),
            MasterError::Change(error) => error.into(),
            MasterError::Db(error) => ApiError::database(&error),
        }
    }
}

/// The answer to a PUT: the record as stored, and the change-log cursor if it changed.
#[derive(Debug, Serialize)]
pub struct Stored<T> {
    pub changed: bool,
    pub cursor: Option<u64>,
    pub record: T,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> MasterError {
    MasterError::Invalid {
        field,
        problem: problem.into(),
    }
}

fn check_id(field: &'static str, value: &str, path_value: &str) -> Result<(), MasterError> {
    if value != path_value {
        return Err(invalid(
            field,
            format!("{value:?} in the body differs from {path_value:?} in the path"),
        ));
    }
    if value.is_empty() || value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("expected 1-{MAX_ID_LEN} characters without control characters"),
        ));
    }
    Ok(())
}

fn check_text(field: &'static str, value: &str) -> Result<(), MasterError> {
    if value.trim().is_empty() || value.chars().count() > MAX_TEXT_LEN {
        return Err(invalid(
            field,
            format!("expected 1-{MAX_TEXT_LEN} characters, not blank"),
        ));
    }
    Ok(())
}

pub fn check_part(sku: &str, part: &PartRecord) -> Result<(), MasterError> {
    check_id("sku", &part.sku, sku)?;
    check_text("name", &part.name)?;
    check_text("unit", &part.unit)?;
    if let Some(barcode) = &part.barcode {
        check_text("barcode", barcode)?;
    }
    if part.price < 0 {
        return Err(invalid(
            "price",
            format!("{} is negative; prices are rupiah ≥ 0", part.price),
        ));
    }
    Ok(())
}

pub fn check_mechanic(id: &str, mechanic: &MechanicRecord) -> Result<(), MasterError> {
    check_id("id", &mechanic.id, id)?;
    check_text("name", &mechanic.name)
}

pub fn check_asset(id: &str, asset: &AssetRecord) -> Result<(), MasterError> {
    check_id("id", &asset.id, id)?;
    check_text("sku", &asset.sku)?;
    check_text("plate", &asset.plate)?;
    check_text("name", &asset.name)
}

/// A tariff: the SKU as the path names it, every amount whole rupiah within the protocol's
/// bounds (`sentra_protocol::rental`).
pub fn check_tariff(sku: &str, tariff: &TariffRecord) -> Result<(), MasterError> {
    check_id("sku", &tariff.sku, sku)?;
    tariff
        .check_amounts()
        .map_err(|(field, problem)| invalid(field, problem))
}

/// One master record, as the handlers received it.
#[derive(Debug, Clone)]
enum Record {
    Part(PartRecord),
    Mechanic(MechanicRecord),
    Asset(AssetRecord),
    Tariff(TariffRecord),
    Staff(StaffRecord),
}

impl Record {
    fn change(&self) -> ChangeBody {
        match self {
            Record::Part(part) => ChangeBody::Part(part.clone()),
            Record::Mechanic(mechanic) => ChangeBody::Mechanic(mechanic.clone()),
            Record::Asset(asset) => ChangeBody::Asset(asset.clone()),
            Record::Tariff(tariff) => ChangeBody::Tariff(tariff.clone()),
            Record::Staff(staff) => ChangeBody::Staff(staff.clone()),
        }
    }

    /// Inserts or updates the row; whether anything changed.
    async fn upsert(&self, tx: &mut PgConnection, branch: &str) -> Result<bool, sqlx::Error> {
        let query = match self {
            Record::Part(part) => sqlx::query(
                "INSERT INTO parts (branch_id, sku, name, barcode, price, unit) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (branch_id, sku) DO UPDATE
                 SET name = excluded.name, barcode = excluded.barcode, price = excluded.price,
                     unit = excluded.unit, updated_at = now()
                 WHERE (parts.name, parts.barcode, parts.price, parts.unit)
                       IS DISTINCT FROM (excluded.name, excluded.barcode, excluded.price, excluded.unit)",
            )
            .bind(branch)
            .bind(&part.sku)
            .bind(&part.name)
            .bind(&part.barcode)
            .bind(part.price)
            .bind(&part.unit),
            Record::Mechanic(mechanic) => sqlx::query(
                "INSERT INTO mechanics (branch_id, id, name, active) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (branch_id, id) DO UPDATE
                 SET name = excluded.name, active = excluded.active, updated_at = now()
                 WHERE (mechanics.name, mechanics.active) IS DISTINCT FROM (excluded.name, excluded.active)",
            )
            .bind(branch)
            .bind(&mechanic.id)
            .bind(&mechanic.name)
            .bind(mechanic.active),
            Record::Asset(asset) => sqlx::query(
                "INSERT INTO assets (branch_id, id, sku, plate, name) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (branch_id, id) DO UPDATE
                 SET sku = excluded.sku, plate = excluded.plate, name = excluded.name, updated_at = now()
                 WHERE (assets.sku, assets.plate, assets.name) IS DISTINCT FROM (excluded.sku, excluded.plate, excluded.name)",
            )
            .bind(branch)
            .bind(&asset.id)
            .bind(&asset.sku)
            .bind(&asset.plate)
            .bind(&asset.name),
            Record::Tariff(tariff) => sqlx::query(
                "INSERT INTO tariffs (branch_id, sku, daily_rate, deposit, late_fee_per_day) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (branch_id, sku) DO UPDATE
                 SET daily_rate = excluded.daily_rate, deposit = excluded.deposit,
                     late_fee_per_day = excluded.late_fee_per_day, updated_at = now()
                 WHERE (tariffs.daily_rate, tariffs.deposit, tariffs.late_fee_per_day)
                       IS DISTINCT FROM (excluded.daily_rate, excluded.deposit, excluded.late_fee_per_day)",
            )
            .bind(branch)
            .bind(&tariff.sku)
            .bind(tariff.daily_rate)
            .bind(tariff.deposit)
            .bind(tariff.late_fee_per_day),
            Record::Staff(staff) => sqlx::query(
                "INSERT INTO staff (branch_id, id, name, role, active, pin_hash) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (branch_id, id) DO UPDATE
                 SET name = excluded.name, role = excluded.role, active = excluded.active,
                     pin_hash = excluded.pin_hash, updated_at = now()
                 WHERE (staff.name, staff.role, staff.active, staff.pin_hash)
                       IS DISTINCT FROM (excluded.name, excluded.role, excluded.active, excluded.pin_hash)",
            )
            .bind(branch)
            .bind(&staff.id)
            .bind(&staff.name)
            .bind(staff.role.as_str())
            .bind(staff.active)
            .bind(&staff.pin_hash),
        };
        Ok(query.execute(tx).await?.rows_affected() == 1)
    }
}

/// `PUT /v1/branches/{branch}/parts/{sku}`.
#[utoipa::path(put, path = "/v1/branches/{branch}/parts/{sku}", tag = "master data", params(("branch" = String, Path, description = "branch id", max_length = 64), ("sku" = String, Path, max_length = 64)), request_body = crate::schemas::PartRecord, responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn put_part(
    State(db): State<PgPool>,
    caller: Caller,
    Path((branch, sku)): Path<(String, String)>,
    JsonBody(part): JsonBody<PartRecord>,
) -> Result<Json<Stored<PartRecord>>, ApiError> {
    caller.operator()?;
    check_part(&sku, &part)?;
    let cursor = write(&db, &branch, &Record::Part(part.clone())).await?;
    Ok(Json(stored(cursor, part)))
}

/// `PUT /v1/branches/{branch}/mechanics/{id}`.
#[utoipa::path(put, path = "/v1/branches/{branch}/mechanics/{id}", tag = "master data", params(("branch" = String, Path, description = "branch id", max_length = 64), ("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), request_body = crate::schemas::MechanicRecord, responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn put_mechanic(
    State(db): State<PgPool>,
    caller: Caller,
    Path((branch, id)): Path<(String, String)>,
    JsonBody(mechanic): JsonBody<MechanicRecord>,
) -> Result<Json<Stored<MechanicRecord>>, ApiError> {
    caller.operator()?;
    check_mechanic(&id, &mechanic)?;
    let cursor = write(&db, &branch, &Record::Mechanic(mechanic.clone())).await?;
    Ok(Json(stored(cursor, mechanic)))
}

/// `PUT /v1/branches/{branch}/assets/{id}`.
#[utoipa::path(put, path = "/v1/branches/{branch}/assets/{id}", tag = "master data", params(("branch" = String, Path, description = "branch id", max_length = 64), ("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), request_body = crate::schemas::AssetRecord, responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn put_asset(
    State(db): State<PgPool>,
    caller: Caller,
    Path((branch, id)): Path<(String, String)>,
    JsonBody(asset): JsonBody<AssetRecord>,
) -> Result<Json<Stored<AssetRecord>>, ApiError> {
    caller.operator()?;
    check_asset(&id, &asset)?;
    let cursor = write(&db, &branch, &Record::Asset(asset.clone())).await?;
    Ok(Json(stored(cursor, asset)))
}

/// `PUT /v1/branches/{branch}/tariffs/{sku}`: what renting the SKU costs at the branch (daily
/// rate, deposit, late fee per day; whole rupiah), pulled by its boxes like every master record.
#[utoipa::path(put, path = "/v1/branches/{branch}/tariffs/{sku}", tag = "master data", params(("branch" = String, Path, description = "branch id", max_length = 64), ("sku" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), request_body = crate::schemas::TariffRecord, responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn put_tariff(
    State(db): State<PgPool>,
    caller: Caller,
    Path((branch, sku)): Path<(String, String)>,
    JsonBody(tariff): JsonBody<TariffRecord>,
) -> Result<Json<Stored<TariffRecord>>, ApiError> {
    caller.operator()?;
    check_tariff(&sku, &tariff)?;
    let cursor = write(&db, &branch, &Record::Tariff(tariff.clone())).await?;
    Ok(Json(stored(cursor, tariff)))
}

/// `PUT /v1/branches/{branch}/staff/{id}`: the body an operator sends (the PIN in clear, once).
/// Unknown fields are ignored, as in every master record.
#[derive(Debug, serde::Deserialize)]
pub struct StaffBody {
    pub name: String,
    pub role: StaffRole,
    pub active: bool,
    pub pin: String,
}

/// What the PUT answers: the staff member without the PIN or its hash.
#[derive(Debug, Serialize)]
pub struct StaffView {
    pub id: String,
    pub name: String,
    pub role: StaffRole,
    pub active: bool,
}

/// A staff member: an id the boxes accept (`A-Za-z0-9-_`, 1-64), a name, a 4-8 digit PIN.
pub fn check_staff(id: &str, body: &StaffBody) -> Result<(), MasterError> {
    if id.is_empty()
        || id.len() > sentra_protocol::staff::MAX_STAFF_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(invalid("id", "expected 1-64 of A-Z a-z 0-9 - _"));
    }
    check_text("name", &body.name)?;
    check_pin(&body.pin).map_err(|e| invalid("pin", e))
}

/// `PUT /v1/branches/{branch}/staff/{id}`: a staff member of the branch (name, role, active, PIN).
/// The PIN is hashed at once (argon2id, a fresh salt); only the hash is stored and pulled by the
/// branch's boxes, which verify PINs offline. The same PIN again keeps the stored hash, so a
/// repeated PUT changes nothing.
#[utoipa::path(put, path = "/v1/branches/{branch}/staff/{id}", tag = "master data", params(("branch" = String, Path, description = "branch id", max_length = 64), ("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]+$")), request_body = crate::schemas::StaffBody, responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn put_staff(
    State(db): State<PgPool>,
    caller: Caller,
    Path((branch, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<StaffBody>,
) -> Result<Json<Stored<StaffView>>, ApiError> {
    caller.operator()?;
    check_staff(&id, &body)?;
    let existing: Option<String> =
        sqlx::query_scalar("SELECT pin_hash FROM staff WHERE branch_id = $1 AND id = $2")
            .bind(&branch)
            .bind(&id)
            .fetch_optional(&db)
            .await
            .map_err(|e| ApiError::database(&e))?;
    let pin = body.pin.clone();
    let pin_hash = tokio::task::spawn_blocking(move || pin_hash(&pin, existing))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|error| {
            tracing::error!(%error, "hashing a staff PIN failed");
            ApiError::Internal
        })?;
    let record = StaffRecord {
        id: id.clone(),
        name: body.name.clone(),
        role: body.role,
        active: body.active,
        pin_hash,
    };
    let cursor = write(&db, &branch, &Record::Staff(record)).await?;
    Ok(Json(stored(
        cursor,
        StaffView {
            id,
            name: body.name,
            role: body.role,
            active: body.active,
        },
    )))
}

/// The stored hash when it is of this PIN; otherwise a new argon2id hash with a fresh salt.
fn pin_hash(pin: &str, existing: Option<String>) -> Result<String, String> {
    match existing {
        Some(existing) if sentra_protocol::staff::pin_matches(pin, &existing) => Ok(existing),
        _ => sentra_protocol::staff::hash_pin(pin, &rand::random()),
    }
}

fn stored<T>(cursor: Option<u64>, record: T) -> Stored<T> {
    Stored {
        changed: cursor.is_some(),
        cursor,
        record,
    }
}

/// One transaction: the upsert, then, if it changed anything, the change-log entry. Returns the
/// entry's cursor.
async fn write(db: &PgPool, branch: &str, record: &Record) -> Result<Option<u64>, MasterError> {
    let branch = BranchId::parse(branch)?;
    let mut tx = db.begin().await?;
    if !branches::exists(&mut tx, &branch).await? {
        return Err(MasterError::NoSuchBranch(branch.to_string()));
    }
    if !record.upsert(&mut tx, branch.as_str()).await? {
        return Ok(None);
    }
    let cursors = changes::append(&mut tx, branch.as_str(), &[record.change()]).await?;
    tx.commit().await?;
    Ok(cursors.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(sku: &str, price: i64) -> PartRecord {
        PartRecord {
            sku: sku.into(),
            name: "Oil filter".into(),
            barcode: Some("8991234567890".into()),
            price,
            unit: "pcs".into(),
        }
    }

    #[test]
    fn part_checks_table() {
        let cases = [
            ("OF-1", part("OF-1", 45_000), true),
            ("OF-1", part("OF-1", 0), true),
            ("OF-1", part("OF-2", 45_000), false),
            ("OF-1", part("OF-1", -1), false),
            ("", part("", 1), false),
            (
                "OF-1",
                PartRecord {
                    name: " ".into(),
                    ..part("OF-1", 1)
                },
                false,
            ),
            (
                "OF-1",
                PartRecord {
                    unit: String::new(),
                    ..part("OF-1", 1)
                },
                false,
            ),
            (
                "OF-1",
                PartRecord {
                    barcode: Some(String::new()),
                    ..part("OF-1", 1)
                },
                false,
            ),
            (
                "OF-1",
                PartRecord {
                    barcode: None,
                    ..part("OF-1", 1)
                },
                true,
            ),
        ];
        for (path, record, ok) in cases {
            assert_eq!(check_part(path, &record).is_ok(), ok, "{path} {record:?}");
        }
    }

    #[test]
    fn mechanic_and_asset_checks() {
        let mechanic = MechanicRecord {
            id: "m1".into(),
            name: "Budi".into(),
            active: true,
        };
        assert!(check_mechanic("m1", &mechanic).is_ok());
        assert!(check_mechanic("m2", &mechanic).is_err());
        let asset = AssetRecord {
            id: "a1".into(),
            sku: "AVZ".into(),
            plate: "B 1234 XYZ".into(),
            name: "Avanza".into(),
        };
        assert!(check_asset("a1", &asset).is_ok());
        assert!(
            check_asset(
                "a1",
                &AssetRecord {
                    plate: String::new(),
                    ..asset.clone()
                }
            )
            .is_err()
        );
        assert!(
            check_asset(
                "a1\n",
                &AssetRecord {
                    id: "a1\n".into(),
                    ..asset
                }
            )
            .is_err()
        );
    }

    #[test]
    fn tariff_checks_and_the_schema_agree() {
        use sentra_protocol::rental::{MAX_DAILY_RATE, MAX_DEPOSIT, MAX_LATE_FEE_PER_DAY};
        let tariff = |daily_rate, deposit, late_fee_per_day| TariffRecord {
            sku: "AVZ".into(),
            daily_rate,
            deposit,
            late_fee_per_day,
        };
        assert!(check_tariff("AVZ", &tariff(350_000, 1_000_000, 100_000)).is_ok());
        assert!(check_tariff("XPD", &tariff(350_000, 1_000_000, 100_000)).is_err());
        for bad in [
            tariff(0, 0, 0),
            tariff(-1, 0, 0),
            tariff(1, -1, 0),
            tariff(1, 0, -1),
            tariff(MAX_DAILY_RATE + 1, 0, 0),
            tariff(1, MAX_DEPOSIT + 1, 0),
            tariff(1, 0, MAX_LATE_FEE_PER_DAY + 1),
        ] {
            assert!(check_tariff("AVZ", &bad).is_err(), "{bad:?}");
        }
        let schema =
            serde_json::to_value(<crate::schemas::TariffRecord as utoipa::PartialSchema>::schema())
                .expect("serialise");
        for (field, max) in [
            ("daily_rate", MAX_DAILY_RATE),
            ("deposit", MAX_DEPOSIT),
            ("late_fee_per_day", MAX_LATE_FEE_PER_DAY),
        ] {
            assert_eq!(
                schema["properties"][field]["maximum"].as_f64(),
                Some(max as f64),
                "{field}: {schema}"
            );
        }
    }
}
