//! Records both sides edit — customers and vehicles — field by field.
//!
//! Owns which fields such a record has, what values they take and which ones only the cloud
//! writes. Both sides check edits with [`check_fields`]: the edge refuses at its API exactly what
//! the cloud would park. Merging is per field, last writer wins by HLC (see
//! [`crate::sync::FieldUpdate::wins_over`]); `null` clears a field.

use std::collections::BTreeMap;

use crate::EntityKind;

/// What values a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Text of at most `max` characters, not blank.
    Text { max: usize },
    /// A whole number in `min..=max`.
    Int { min: i64, max: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: FieldType,
    /// Master data: written by the cloud only; a branch's edit of it is refused.
    pub cloud_only: bool,
}

const fn text(name: &'static str, max: usize) -> FieldSpec {
    FieldSpec {
        name,
        ty: FieldType::Text { max },
        cloud_only: false,
    }
}

const CUSTOMER: &[FieldSpec] = &[
    text("name", 120),
    text("phone", 32),
    text("email", 254),
    text("address", 500),
    // The membership tier decides waitlist priority and prices: the cloud's alone.
    FieldSpec {
        name: "membership_tier",
        ty: FieldType::Text { max: 16 },
        cloud_only: true,
    },
];

const VEHICLE: &[FieldSpec] = &[
    text("plate", 16),
    text("customer_id", 64),
    text("make", 40),
    text("model", 60),
    text("color", 30),
    FieldSpec {
        name: "year",
        ty: FieldType::Int {
            min: 1950,
            max: 2100,
        },
        cloud_only: false,
    },
    FieldSpec {
        name: "odometer_km",
        ty: FieldType::Int {
            min: 0,
            max: 10_000_000,
        },
        cloud_only: false,
    },
];

/// The kinds of record merged per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Customer,
    Vehicle,
}

impl RecordKind {
    pub const ALL: [RecordKind; 2] = [RecordKind::Customer, RecordKind::Vehicle];

    pub fn entity(self) -> EntityKind {
        match self {
            RecordKind::Customer => EntityKind::Customer,
            RecordKind::Vehicle => EntityKind::Vehicle,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.entity().as_str()
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn of(entity: EntityKind) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.entity() == entity)
    }

    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            RecordKind::Customer => CUSTOMER,
            RecordKind::Vehicle => VEHICLE,
        }
    }

    pub fn field(self, name: &str) -> Option<&'static FieldSpec> {
        self.fields().iter().find(|f| f.name == name)
    }
}

/// Who makes an edit: a branch may not touch cloud-only fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    Branch,
    Cloud,
}

/// Checks one edit; the error names the field and what is wrong with it.
pub fn check_fields(
    kind: RecordKind,
    fields: &BTreeMap<String, serde_json::Value>,
    author: Author,
) -> Result<(), String> {
    if fields.is_empty() {
        return Err("fields: at least one field is needed".into());
    }
    for (name, value) in fields {
        let spec = kind.field(name).ok_or_else(|| {
            let known: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
            format!(
                "fields.{name}: a {} has no such field (known: {})",
                kind.as_str(),
                known.join(", ")
            )
        })?;
        if spec.cloud_only && author == Author::Branch {
            return Err(format!(
                "fields.{name}: set by the cloud only; a branch cannot change it"
            ));
        }
        check_value(spec, value).map_err(|why| format!("fields.{name}: {why}"))?;
    }
    Ok(())
}

fn check_value(spec: &FieldSpec, value: &serde_json::Value) -> Result<(), String> {
    if value.is_null() {
        return Ok(());
    }
    match spec.ty {
        FieldType::Text { max } => {
            let s = value.as_str().ok_or("must be text or null")?;
            if s.trim().is_empty() {
                return Err("must not be blank (use null to clear it)".into());
            }
            if s.chars().count() > max {
                return Err(format!("at most {max} characters"));
            }
            if s.contains('\0') {
                return Err("must not contain NUL".into());
            }
            Ok(())
        }
        FieldType::Int { min, max } => match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(format!("must be a whole number from {min} to {max}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
        serde_json::from_value(v).expect("object")
    }

    #[test]
    fn check_table() {
        use Author::{Branch, Cloud};
        use RecordKind::{Customer, Vehicle};
        let cases = [
            (
                Customer,
                json!({"name": "Budi", "phone": null}),
                Branch,
                None,
            ),
            (Customer, json!({}), Branch, Some("at least one")),
            (
                Customer,
                json!({"shoe_size": 42}),
                Branch,
                Some("fields.shoe_size"),
            ),
            (Customer, json!({"name": "  "}), Branch, Some("blank")),
            (Customer, json!({"name": 5}), Branch, Some("text")),
            (
                Customer,
                json!({"membership_tier": "GOLD"}),
                Branch,
                Some("cloud only"),
            ),
            (Customer, json!({"membership_tier": "GOLD"}), Cloud, None),
            (
                Vehicle,
                json!({"year": 2019, "plate": "B 1 AB"}),
                Branch,
                None,
            ),
            (Vehicle, json!({"year": 1800}), Branch, Some("1950 to 2100")),
            (
                Vehicle,
                json!({"odometer_km": "lots"}),
                Branch,
                Some("whole number"),
            ),
            (Vehicle, json!({"name": "x"}), Branch, Some("no such field")),
        ];
        for (kind, fields, author, want) in cases {
            let got = check_fields(kind, &map(fields.clone()), author);
            match want {
                None => assert!(got.is_ok(), "{fields} by {author:?}: {got:?}"),
                Some(part) => {
                    let err = got.expect_err(&fields.to_string());
                    assert!(err.contains(part), "{err:?} should mention {part:?}");
                }
            }
        }
    }

    #[test]
    fn kinds_round_trip() {
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::parse(k.as_str()), Some(k));
            assert_eq!(RecordKind::of(k.entity()), Some(k));
        }
        assert_eq!(RecordKind::of(EntityKind::WorkOrder), None);
    }
}
