//! OpenAPI schemas for request values whose rules live in code rather than in a type: each is
//! built from the same constants the handler checks against, so the document and the check
//! cannot drift apart.

use sentra_protocol::day::{FIRST_DAY, LAST_DAY};
use sentra_protocol::doc::{MAX_CHECKLIST_ITEMS, MAX_ITEM_CHARS, MAX_NOTES_CHARS};
use sentra_protocol::record::{FieldType, RecordKind};
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use crate::domain::WHITE_SPACE;
use crate::domain::booking::TIERS;

pub(crate) fn from_json(v: Value) -> RefOr<Schema> {
    schema(v)
}

fn schema(v: Value) -> RefOr<Schema> {
    match serde_json::from_value(v.clone()) {
        Ok(s) => s,
        Err(e) => panic!("the schemas written here are valid OpenAPI: {e}: {v}"),
    }
}

fn nullable(v: Value) -> Value {
    json!({"oneOf": [{"type": "null"}, v]})
}

/// No `format: date` beside the pattern: a generator draws such a string from the whole date
/// range (years 0001..9999) and throws away all but the 2000s, which a contract fuzzer reports as
/// a failed health check; the pattern alone says the same to a client generator.
fn day_value() -> Value {
    json!({
        "type": "string",
        "pattern": r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
        "description": format!("A day, YYYY-MM-DD, from {FIRST_DAY} to {LAST_DAY}"),
        "example": "2027-03-01",
    })
}

/// A rental day as `protocol::day::parse_day` takes it.
pub(crate) fn day() -> RefOr<Schema> {
    schema(day_value())
}

/// A membership tier as `domain::booking::parse_tier` takes it; absent or null is `basic`.
pub(crate) fn tier() -> RefOr<Schema> {
    schema(nullable(json!({
        "type": "string",
        "enum": TIERS,
        "description": "Membership tier (absent or null: basic)",
    })))
}

/// Longest payment reference `POST /v1/bookings/{id}/confirm` takes, in characters.
pub(crate) const MAX_PAYMENT_REF: usize = 128;

pub(crate) fn payment_ref() -> RefOr<Schema> {
    schema(json!({
        "type": "string",
        "pattern": crate::domain::visible_text(),
        "minLength": 1,
        "maxLength": MAX_PAYMENT_REF,
        "description": "The payment gateway's reference of the authorised payment",
        "example": "xnd-auth-8841",
    }))
}

/// Longest pairing code accepted before normalising, in characters.
pub(crate) const MAX_CODE_LEN: usize = 32;

pub(crate) fn pair_code() -> RefOr<Schema> {
    schema(json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_CODE_LEN,
        "description": "The one-time code `sentra-edge pair` printed (`XXXX-XXXX`; case and separators do not matter)",
        "example": "7KQ2-M9XD",
    }))
}

/// The body of a customer's or vehicle's create or patch: the fields a branch may set
/// (`protocol::record`'s table, cloud-only fields left out), at least one; `null` clears one.
pub(crate) fn record_fields(kind: RecordKind) -> Value {
    let mut properties = serde_json::Map::new();
    for f in kind.fields().iter().filter(|f| !f.cloud_only) {
        let v = match f.ty {
            FieldType::Text { max } => json!({
                "type": "string", "maxLength": max, "minLength": 1,
                // Not blank, no NUL (as `protocol::record::check_fields`).
                "pattern": format!("^[^\\x00]*[^{WHITE_SPACE}\\x00][^\\x00]*$"),
            }),
            FieldType::Int { min, max } => {
                json!({"type": "integer", "minimum": min, "maximum": max})
            }
        };
        properties.insert(f.name.to_owned(), nullable(v));
    }
    json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
        "minProperties": 1,
        "description": "The fields to set, at least one; null clears a field",
    })
}

pub(crate) fn customer_fields() -> RefOr<Schema> {
    schema(record_fields(RecordKind::Customer))
}

pub(crate) fn vehicle_fields() -> RefOr<Schema> {
    schema(record_fields(RecordKind::Vehicle))
}

/// `EditDocument`: notes, checklist items to set or (null) remove, or both
/// (`protocol::doc::DocEdit::check`).
pub(crate) fn edit_document() -> RefOr<Schema> {
    let notes = json!({"type": "string", "maxLength": MAX_NOTES_CHARS,
        "description": "The whole new notes text"});
    let checklist = |min: usize| {
        json!({
            "type": "object",
            "minProperties": min,
            "maxProperties": MAX_CHECKLIST_ITEMS,
            "propertyNames": {"type": "string", "minLength": 1, "maxLength": MAX_ITEM_CHARS,
                "pattern": format!("^[^{WHITE_SPACE}\\x00]([^\\x00]*[^{WHITE_SPACE}\\x00])?$")},
            "additionalProperties": nullable(json!({"type": "boolean"})),
            "description": "Checklist items to set, or (null) remove",
        })
    };
    // Notes, checklist items, or both: one branch requires notes, the other items.
    schema(json!({
        "anyOf": [
            {"type": "object", "additionalProperties": false, "required": ["notes"],
                "properties": {"notes": notes, "checklist": checklist(0)}},
            {"type": "object", "additionalProperties": false, "required": ["checklist"],
                "properties": {"notes": nullable(notes.clone()), "checklist": checklist(1)}},
        ],
    }))
}

/// An array of `item` (a component name) with `min..=max` entries.
pub(crate) fn array_of(item: &str, min: usize, max: usize) -> RefOr<Schema> {
    schema(json!({
        "type": "array",
        "items": {"$ref": format!("#/components/schemas/{item}")},
        "minItems": min,
        "maxItems": max,
    }))
}

/// The documents `POST /v1/invoices/{id}/print` prints.
pub(crate) const PRINT_DOCUMENTS: [&str; 3] = ["invoice", "receipt", "delivery_note"];

pub(crate) fn print_document() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": PRINT_DOCUMENTS}))
}

/// What `POST /v1/bookings/{id}/print` prints again.
pub(crate) const RENTAL_PRINT_DOCUMENTS: [&str; 3] =
    ["rental_agreement", "rental_delivery_note", "rental_invoice"];

pub(crate) fn rental_print_document() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": RENTAL_PRINT_DOCUMENTS}))
}

/// Most work orders `GET /v1/work-orders` lists at once.
pub(crate) const MAX_LIST: u32 = 500;

pub(crate) fn list_limit() -> RefOr<Schema> {
    schema(json!({"type": "integer", "format": "int32", "minimum": 1, "maximum": MAX_LIST}))
}

pub(crate) fn work_order_status() -> RefOr<Schema> {
    schema(json!({"type": "string",
        "enum": crate::domain::work_order::Status::ALL.map(crate::domain::work_order::Status::as_str)}))
}

/// The Rupiah amounts a booking's completion captures: none, or whole rupiah up to the line
/// maximum (the cloud settles them).
pub(crate) fn charge() -> RefOr<Schema> {
    schema(nullable(
        json!({"type": "integer", "format": "int64", "minimum": 0,
        "maximum": crate::domain::Rupiah::MAX_LINE}),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_builds() {
        use super::*;
        let _ = day();
        let _ = tier();
        let _ = payment_ref();
        let _ = pair_code();
        let _ = customer_fields();
        let _ = vehicle_fields();
        let _ = edit_document();
        let _ = array_of("CheckItem", 1, 2);
        let _ = print_document();
        let _ = list_limit();
        let _ = work_order_status();
        let _ = charge();
    }
}
