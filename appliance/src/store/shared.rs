//! Records both sides edit, on the branch's side: customers and vehicles merged per field (last
//! writer wins by HLC), and the automerge documents of work-order notes and inspection remarks.
//!
//! A local edit is stamped by its own outbox event, so it is the newest thing this box has seen
//! (pulled stamps move the clock, see [`apply_field`]). Pulled field updates and documents come in
//! through `sync::apply_pull`. A contest between two writers' values for one field is logged in
//! `field_overwrites`, whichever value is kept. Origins: NULL is this box; the cloud says `cloud`
//! or a device id; the comparison reads NULL as this box's enrolled device id, which is what the
//! cloud recorded for the same edit, so both sides break ties alike.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension as _};
use serde::Serialize;

use super::{DomainError, Result, StoreError, WriteTx, new_id};
use sentra_protocol::doc::{self, DocEdit, DocRecord, DocView, SharedDoc};
use sentra_protocol::payload::{self as p, op};
use sentra_protocol::record::{self, Author, RecordKind};
use sentra_protocol::sync::{DocumentChange, FieldUpdate};
use sentra_protocol::{EntityKind, Hlc};

/// A customer or vehicle as this box has it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Record {
    pub id: String,
    /// Field name to value (`null`: cleared).
    #[schema(value_type = Object)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

pub fn get(conn: &Connection, kind: RecordKind, id: &str) -> Result<Record> {
    let mut stmt = conn.prepare_cached(
        "SELECT field, value FROM record_fields WHERE entity = ?1 AND entity_id = ?2 ORDER BY field",
    )?;
    let fields = stmt
        .query_map((kind.as_str(), id), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .map(|row| {
            let (field, value) = row?;
            let value = serde_json::from_str(&value)
                .map_err(|e| StoreError::Corrupt(format!("record_fields.value: {e}")))?;
            Ok((field, value))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    if fields.is_empty() {
        return Err(DomainError::not_found(kind.as_str(), id).into());
    }
    Ok(Record {
        id: id.to_owned(),
        fields,
    })
}

/// A branch edit: a new record (`id` None) or fields of an existing one. One outbox event, whose
/// HLC stamps every field.
pub fn set_fields(
    w: &mut WriteTx<'_>,
    kind: RecordKind,
    id: Option<&str>,
    mut fields: BTreeMap<String, serde_json::Value>,
) -> Result<Record> {
    record::check_fields(kind, &fields, Author::Branch).map_err(|message| {
        let (field, message) = message.split_once(": ").unwrap_or(("fields", &message));
        DomainError::invalid(field, message)
    })?;
    // A branch's plate is stored normalised, so a lookup by plate finds it however it is typed.
    if kind == RecordKind::Vehicle
        && let Some(serde_json::Value::String(plate)) = fields.get_mut("plate")
    {
        *plate = crate::domain::normalise_plate(plate)
            .map_err(|e| DomainError::invalid("fields.plate", e.0))?;
    }
    let id = match id {
        Some(id) => {
            get(w.conn(), kind, id)?;
            id.to_owned()
        }
        None => new_id(),
    };
    let (_, hlc) = w.emit_stamped(
        kind.entity(),
        &id,
        op::FIELDS_SET,
        &p::RecordFieldsSet {
            id: id.clone(),
            fields: fields.clone(),
        },
    )?;
    let own = own_origin(w)?;
    for (field, value) in fields {
        let update = FieldUpdate {
            entity: kind.as_str().to_owned(),
            entity_id: id.clone(),
            field,
            value,
            hlc,
            origin: own.clone(),
        };
        apply_field(w, &update, &own)?;
    }
    get(w.conn(), kind, &id)
}

/// The id this box's edits carry at the cloud: the enrolled device id, else the local one
/// (no pulled update can meet an edit made before enrolment's first pull).
fn own_origin(w: &WriteTx<'_>) -> Result<String> {
    let enrolled: Option<String> = w
        .conn()
        .query_row(
            "SELECT device_id FROM cloud_identity WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match enrolled {
        Some(id) => id,
        None => w.ctx().device_id.clone(),
    })
}

/// Decides one field; whether `update` is now its value. `own` is this box's origin: local edits
/// are stored with a NULL origin and compared as `own`.
fn apply_field(w: &mut WriteTx<'_>, update: &FieldUpdate, own: &str) -> Result<bool> {
    let conn = w.conn();
    let current: Option<(String, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT value, hlc, origin FROM record_fields WHERE entity = ?1 AND entity_id = ?2 AND field = ?3",
        )?
        .query_row((&update.entity, &update.entity_id, &update.field), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let stored_origin = |origin: &str| (origin != own).then(|| origin.to_owned());
    let value_text = update.value.to_string();
    let Some((value, hlc, origin)) = current else {
        conn.prepare_cached(
            "INSERT INTO record_fields (entity, entity_id, field, value, hlc, origin, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute((&update.entity, &update.entity_id, &update.field, &value_text, update.hlc.to_string(), stored_origin(&update.origin), w.now_str()))?;
        return Ok(true);
    };
    let current = FieldUpdate {
        value: serde_json::from_str(&value)
            .map_err(|e| StoreError::Corrupt(format!("record_fields.value: {e}")))?,
        hlc: hlc
            .parse::<Hlc>()
            .map_err(|e| StoreError::Corrupt(format!("record_fields.hlc: {e}")))?,
        origin: origin.unwrap_or_else(|| own.to_owned()),
        ..update.clone()
    };
    if current.hlc == update.hlc && current.origin == update.origin {
        return Ok(false);
    }
    let wins = update.wins_over(&current);
    if wins {
        conn.prepare_cached(
            "UPDATE record_fields SET value = ?4, hlc = ?5, origin = ?6, updated_at = ?7 WHERE entity = ?1 AND entity_id = ?2 AND field = ?3",
        )?
        .execute((&update.entity, &update.entity_id, &update.field, &value_text, update.hlc.to_string(), stored_origin(&update.origin), w.now_str()))?;
    }
    if current.value != update.value && current.origin != update.origin {
        let (kept, lost) = if wins {
            (update, &current)
        } else {
            (&current, update)
        };
        conn.prepare_cached(
            "INSERT INTO field_overwrites (entity, entity_id, field, kept_value, kept_hlc, kept_origin, lost_value, lost_hlc, lost_origin, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute((
            &update.entity,
            &update.entity_id,
            &update.field,
            kept.value.to_string(),
            kept.hlc.to_string(),
            &kept.origin,
            lost.value.to_string(),
            lost.hlc.to_string(),
            &lost.origin,
            w.now_str(),
        ))?;
    }
    Ok(wins)
}

/// A field update pulled from the cloud: the clock moves past its stamp, then the later stamp
/// wins. Returns false for an entity or field this build does not know (skipped, not fatal).
pub fn apply_pulled_field(w: &mut WriteTx<'_>, update: &FieldUpdate) -> Result<bool> {
    let Some(kind) = RecordKind::parse(&update.entity) else {
        tracing::warn!(entity = %update.entity, "pulled a field of a record this build does not know");
        return Ok(false);
    };
    if kind.field(&update.field).is_none() {
        tracing::warn!(entity = %update.entity, field = %update.field, "pulled a field this build does not know");
        return Ok(false);
    }
    if let Err(error) = super::outbox::observe(w.conn(), w.ctx(), w.now(), update.hlc)? {
        tracing::warn!(%error, "a pulled stamp is far ahead of this box's clock; applied without following it");
    }
    let own = own_origin(w)?;
    apply_field(w, update, &own)?;
    Ok(true)
}

fn actor(conn: &Connection) -> Result<Vec<u8>> {
    Ok(conn.query_row("SELECT actor FROM replica WHERE id = 1", [], |r| r.get(0))?)
}

fn load(conn: &Connection, record: DocRecord, record_id: &str) -> Result<SharedDoc> {
    let actor = actor(conn)?;
    let saved: Option<Vec<u8>> = conn
        .prepare_cached("SELECT doc FROM documents WHERE record = ?1 AND record_id = ?2")?
        .query_row((record.as_str(), record_id), |r| r.get(0))
        .optional()?;
    match saved {
        Some(bytes) => SharedDoc::load(&bytes, &actor)
            .map_err(|e| StoreError::Corrupt(format!("documents {record_id}: {e}"))),
        None => Ok(SharedDoc::new(&actor)),
    }
}

fn save(w: &WriteTx<'_>, record: DocRecord, record_id: &str, d: &mut SharedDoc) -> Result<()> {
    w.conn()
        .prepare_cached(
            "INSERT INTO documents (record, record_id, doc, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (record, record_id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
        )?
        .execute((record.as_str(), record_id, d.save(), w.now_str()))?;
    Ok(())
}

fn require_record(conn: &Connection, record: DocRecord, id: &str) -> Result<()> {
    let sql = match record {
        DocRecord::WorkOrder => "SELECT 1 FROM work_orders WHERE id = ?1",
        DocRecord::Inspection => "SELECT 1 FROM inspections WHERE id = ?1",
    };
    let entity = match record {
        DocRecord::WorkOrder => "work order",
        DocRecord::Inspection => "inspection",
    };
    conn.prepare_cached(sql)?
        .query_row([id], |_| Ok(()))
        .optional()?
        .ok_or_else(|| DomainError::not_found(entity, id).into())
}

fn view(d: &SharedDoc, record_id: &str) -> Result<DocView> {
    d.view()
        .map_err(|e| StoreError::Corrupt(format!("documents {record_id}: {e}")))
}

/// A record's document as this box renders it (empty if nobody wrote in it yet).
pub fn document(conn: &Connection, record: DocRecord, record_id: &str) -> Result<DocView> {
    require_record(conn, record, record_id)?;
    view(&load(conn, record, record_id)?, record_id)
}

/// A branch edit of a record's document: merged locally, its changes sent as one event.
pub fn edit_document(
    w: &mut WriteTx<'_>,
    record: DocRecord,
    record_id: &str,
    edit: &DocEdit,
) -> Result<DocView> {
    edit.check().map_err(|message| {
        let (field, message) = message.split_once(": ").unwrap_or(("notes", &message));
        DomainError::invalid(field, message)
    })?;
    require_record(w.conn(), record, record_id)?;
    let mut d = load(w.conn(), record, record_id)?;
    let changes = d
        .edit(edit, w.now().unix_timestamp())
        .map_err(|e| StoreError::Corrupt(format!("documents {record_id}: {e}")))?;
    if !changes.is_empty() {
        save(w, record, record_id, &mut d)?;
        w.emit(
            EntityKind::Document,
            record_id,
            op::CHANGED,
            &p::DocumentChanged {
                record: record.as_str().to_owned(),
                record_id: record_id.to_owned(),
                changes: doc::encode(&changes),
            },
        )?;
    }
    view(&d, record_id)
}

/// A whole document pulled from the cloud, merged into this box's. Returns false (skipped, logged)
/// for a record kind this build does not know or a document that does not merge.
pub fn apply_pulled_document(w: &mut WriteTx<'_>, change: &DocumentChange) -> Result<bool> {
    let Some(record) = DocRecord::parse(&change.record) else {
        tracing::warn!(record = %change.record, "pulled a document of a record this build does not know");
        return Ok(false);
    };
    let mut d = load(w.conn(), record, &change.record_id)?;
    let merged = doc::decode(&change.document).and_then(|bytes| d.apply(&bytes));
    if let Err(error) = merged {
        tracing::warn!(%error, record_id = %change.record_id, "a pulled document does not merge; skipped");
        return Ok(false);
    }
    save(w, record, &change.record_id, &mut d)?;
    Ok(true)
}
