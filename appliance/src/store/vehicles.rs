//! Customers and vehicles as the records a work order is for (issue 21 item 5). The records
//! themselves are the shared, per-field ones of `store::shared`; this file finds them (a vehicle
//! by its normalised plate, a customer by phone), makes them on the fly when a work order names
//! a plate or a customer the box does not know yet (same transaction, one `fields_set` event
//! each, before the work order's own event), and reads a vehicle's history.

use rusqlite::{Connection, OptionalExtension as _};
use serde::Serialize;
use serde_json::Value;

use super::shared::{self, Record};
use super::{DomainError, Result, WriteTx};
use crate::domain::{Id, Name, Phone, Plate};
use sentra_protocol::record::RecordKind;

/// The most visits one history answer holds.
pub const MAX_HISTORY: u32 = 100;

/// A vehicle with its customer (None when the vehicle names none, or one this box lacks).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VehicleWithCustomer {
    pub vehicle: Record,
    pub customer: Option<Record>,
}

/// The vehicle and customer a new work order names: ids, or what identifies them.
#[derive(Debug, Clone)]
pub struct Party {
    pub vehicle_id: Option<Id>,
    pub customer_id: Option<Id>,
    pub customer_name: Option<Name>,
    pub customer_phone: Option<Phone>,
    pub vehicle_plate: Option<Plate>,
}

/// What the work order stores: the records' ids and the text printed on its papers.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub vehicle_id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub customer_phone: Option<String>,
    pub vehicle_plate: String,
}

/// The JSON text `record_fields.value` holds for a text value.
fn json_text(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The first record (by id) of `kind` whose `field` is the text `value`.
fn find_by(
    conn: &Connection,
    kind: RecordKind,
    field: &str,
    value: &str,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT entity_id FROM record_fields WHERE entity = ?1 AND field = ?2 AND value = ?3
             ORDER BY entity_id LIMIT 1",
        )?
        .query_row((kind.as_str(), field, json_text(value)), |r| r.get(0))
        .optional()?)
}

/// The vehicle with this plate (already normalised by [`Plate`]), if the box has one.
pub fn find_vehicle(conn: &Connection, plate: &Plate) -> Result<Option<String>> {
    find_by(conn, RecordKind::Vehicle, "plate", plate.as_str())
}

/// A text field of a record, None when absent or cleared.
fn text_field(record: &Record, field: &str) -> Option<String> {
    record
        .fields
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A record named by id in a request: refused with the field's name when the box lacks it.
fn named(conn: &Connection, kind: RecordKind, field: &str, id: &Id) -> Result<Record> {
    shared::get(conn, kind, id.as_str()).map_err(|e| match e {
        super::StoreError::Domain(DomainError::NotFound { .. }) => DomainError::invalid(
            field,
            format!(
                "there is no {} {:?} on this box",
                kind.as_str(),
                id.as_str()
            ),
        )
        .into(),
        other => other,
    })
}

/// The vehicle and customer of a new work order, made when the box has none: the vehicle by id
/// or by plate; the customer by id, else by phone, else the known vehicle's customer, else a new
/// one with the name (and phone) given. A vehicle found without a customer gets this one.
pub fn resolve(w: &mut WriteTx<'_>, party: &Party) -> Result<Resolved> {
    let vehicle = match (&party.vehicle_id, &party.vehicle_plate) {
        (Some(id), _) => Some(named(w.conn(), RecordKind::Vehicle, "vehicle_id", id)?),
        (None, Some(plate)) => match find_vehicle(w.conn(), plate)? {
            Some(id) => Some(shared::get(w.conn(), RecordKind::Vehicle, &id)?),
            None => None,
        },
        (None, None) => {
            return Err(DomainError::invalid(
                "vehicle_plate",
                "a work order needs vehicle_plate or vehicle_id",
            )
            .into());
        }
    };
    let owner = vehicle.as_ref().and_then(|v| text_field(v, "customer_id"));
    let customer = if let Some(id) = &party.customer_id {
        named(w.conn(), RecordKind::Customer, "customer_id", id)?
    } else if let Some(id) = match &party.customer_phone {
        Some(phone) => find_by(w.conn(), RecordKind::Customer, "phone", phone.as_str())?,
        None => None,
    } {
        shared::get(w.conn(), RecordKind::Customer, &id)?
    } else if let Some(record) = match (&party.customer_phone, &owner) {
        (None, Some(id)) => shared::get(w.conn(), RecordKind::Customer, id).ok(),
        _ => None,
    } {
        record
    } else {
        let Some(name) = &party.customer_name else {
            return Err(DomainError::invalid(
                "customer_name",
                "a work order for a new customer needs customer_name (or customer_id)",
            )
            .into());
        };
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("name".to_owned(), Value::String(name.as_str().to_owned()));
        if let Some(phone) = &party.customer_phone {
            fields.insert("phone".to_owned(), Value::String(phone.as_str().to_owned()));
        }
        shared::set_fields(w, RecordKind::Customer, None, fields)?
    };
    let vehicle = match vehicle {
        Some(v) if owner.is_some() => v,
        Some(v) => {
            let fields = [("customer_id".to_owned(), Value::String(customer.id.clone()))].into();
            shared::set_fields(w, RecordKind::Vehicle, Some(&v.id), fields)?
        }
        None => {
            let plate = party
                .vehicle_plate
                .as_ref()
                .map(Plate::as_str)
                .unwrap_or_default();
            let fields = [
                ("plate".to_owned(), Value::String(plate.to_owned())),
                ("customer_id".to_owned(), Value::String(customer.id.clone())),
            ]
            .into();
            shared::set_fields(w, RecordKind::Vehicle, None, fields)?
        }
    };
    let customer_name = match &party.customer_name {
        Some(name) => name.as_str().to_owned(),
        None => text_field(&customer, "name").ok_or_else(|| {
            DomainError::invalid(
                "customer_name",
                format!(
                    "customer {} has no name on this box; send customer_name",
                    customer.id
                ),
            )
        })?,
    };
    let vehicle_plate = match &party.vehicle_plate {
        Some(plate) => plate.as_str().to_owned(),
        None => text_field(&vehicle, "plate").ok_or_else(|| {
            DomainError::invalid(
                "vehicle_plate",
                format!(
                    "vehicle {} has no plate on this box; send vehicle_plate",
                    vehicle.id
                ),
            )
        })?,
    };
    Ok(Resolved {
        vehicle_id: vehicle.id,
        customer_phone: party
            .customer_phone
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .or_else(|| text_field(&customer, "phone")),
        customer_id: customer.id,
        customer_name,
        vehicle_plate,
    })
}

/// The vehicle with this plate and its customer.
pub fn by_plate(conn: &Connection, plate: &Plate) -> Result<VehicleWithCustomer> {
    let id = find_vehicle(conn, plate)?
        .ok_or_else(|| DomainError::not_found("vehicle with plate", plate.as_str()))?;
    let vehicle = shared::get(conn, RecordKind::Vehicle, &id)?;
    let customer = match text_field(&vehicle, "customer_id") {
        Some(id) => shared::get(conn, RecordKind::Customer, &id).ok(),
        None => None,
    };
    Ok(VehicleWithCustomer { vehicle, customer })
}
