//! Records both sides edit, on the cloud's side: customers and vehicles merged per field (last
//! writer wins by HLC, every contest logged in `field_overwrites`), and the automerge documents
//! of work-order notes and inspection remarks.
//!
//! Two ways in: a branch's events, merged during ingest inside the push transaction
//! ([`merge_events`]), and the cloud team's own edits (`PATCH /v1/branches/{b}/customers/{id}`,
//! `.../vehicles/{id}`, `PUT /v1/branches/{b}/documents/{record}/{id}`), which go out to the
//! branch through its change log in the same transaction. A field is decided under its row lock,
//! a document is edited under its row lock from the latest saved state, so replicas racing on one
//! record serialise instead of forking it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use sentra_protocol::doc::{self, CLOUD_ACTOR, DocEdit, DocRecord, DocView, SharedDoc};
use sentra_protocol::payload::Payload;
use sentra_protocol::record::{self, Author, RecordKind};
use sentra_protocol::sync::{ChangeBody, DocumentChange, FieldUpdate};
use sentra_protocol::{Hlc, HlcClock};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row as _};

use crate::branches::{self, BranchId};
use crate::changes;
use crate::devices::auth::Caller;
use crate::event::{Outcome, Prepared};
use crate::web::{ApiError, JsonBody, now_ms};

/// The origin of the cloud's own field edits.
pub const CLOUD_ORIGIN: &str = "cloud";

/// Merges the shared-record events of a push (those `outcomes` says to apply) into their records.
/// A document change that cannot be merged (corrupt, or built on changes the cloud lacks) turns
/// into a parked event, with the reason.
pub async fn merge_events(
    tx: &mut PgConnection,
    branch: &str,
    device: &str,
    events: &[Prepared],
    outcomes: &mut [Outcome],
) -> Result<(), sqlx::Error> {
    for (event, outcome) in events.iter().zip(outcomes.iter_mut()) {
        let (Outcome::Apply, Ok(checked)) = (&*outcome, &event.checked) else {
            continue;
        };
        match &checked.payload {
            Payload::RecordFieldsSet(set) => {
                let entity = event.raw.entity.as_str();
                for (field, value) in &set.fields {
                    let update = FieldUpdate {
                        entity: entity.to_owned(),
                        entity_id: set.id.clone(),
                        field: field.clone(),
                        value: value.clone(),
                        hlc: checked.hlc,
                        origin: device.to_owned(),
                    };
                    apply_field(tx, branch, &update).await?;
                }
            }
            Payload::DocumentChanged(changed) => {
                let merged = match doc::decode(&changed.changes) {
                    Ok(bytes) => {
                        edit_document(tx, branch, &changed.record, &changed.record_id, |d| {
                            d.apply(&bytes)
                        })
                        .await?
                    }
                    Err(error) => Err(error),
                };
                if let Err(error) = merged {
                    *outcome = Outcome::Park(error.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Decides one field under its row lock; whether `update` is now the field's value. A contest
/// between two different values is logged, whichever wins.
pub async fn apply_field(
    tx: &mut PgConnection,
    branch: &str,
    update: &FieldUpdate,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO record_fields (branch_id, entity, entity_id, field, value, hlc, origin)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(branch)
    .bind(&update.entity)
    .bind(&update.entity_id)
    .bind(&update.field)
    .bind(update.value.to_string())
    .bind(update.hlc.to_string())
    .bind(&update.origin)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        return Ok(true);
    }
    let row = sqlx::query(
        "SELECT value::text AS value, hlc, origin FROM record_fields
         WHERE branch_id = $1 AND entity = $2 AND entity_id = $3 AND field = $4 FOR UPDATE",
    )
    .bind(branch)
    .bind(&update.entity)
    .bind(&update.entity_id)
    .bind(&update.field)
    .fetch_one(&mut *tx)
    .await?;
    let current = FieldUpdate {
        value: serde_json::from_str(row.get("value")).unwrap_or_default(),
        // Stamps in the table were written by this code from valid HLCs.
        hlc: row
            .get::<String, _>("hlc")
            .parse()
            .unwrap_or(Hlc::new(0, 0)),
        origin: row.get("origin"),
        ..update.clone()
    };
    if current.hlc == update.hlc && current.origin == update.origin {
        return Ok(false); // the same write again
    }
    let wins = update.wins_over(&current);
    if wins {
        sqlx::query(
            "UPDATE record_fields SET value = $5::jsonb, hlc = $6, origin = $7, updated_at = now()
             WHERE branch_id = $1 AND entity = $2 AND entity_id = $3 AND field = $4",
        )
        .bind(branch)
        .bind(&update.entity)
        .bind(&update.entity_id)
        .bind(&update.field)
        .bind(update.value.to_string())
        .bind(update.hlc.to_string())
        .bind(&update.origin)
        .execute(&mut *tx)
        .await?;
    }
    // A writer replacing its own value is editing, not a contest.
    if current.value != update.value && current.origin != update.origin {
        let (kept, lost) = if wins {
            (update, &current)
        } else {
            (&current, update)
        };
        sqlx::query(
            "INSERT INTO field_overwrites (branch_id, entity, entity_id, field, kept_value, kept_hlc,
                 kept_origin, lost_value, lost_hlc, lost_origin)
             VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::jsonb, $9, $10)",
        )
        .bind(branch)
        .bind(&update.entity)
        .bind(&update.entity_id)
        .bind(&update.field)
        .bind(kept.value.to_string())
        .bind(kept.hlc.to_string())
        .bind(&kept.origin)
        .bind(lost.value.to_string())
        .bind(lost.hlc.to_string())
        .bind(&lost.origin)
        .execute(&mut *tx)
        .await?;
    }
    Ok(wins)
}

/// Loads (or starts) a document under its row lock, runs `change` on it and saves it if that
/// succeeded. The inner error is `change`'s, for the caller to park or answer.
async fn edit_document<T>(
    tx: &mut PgConnection,
    branch: &str,
    record: &str,
    record_id: &str,
    change: impl FnOnce(&mut SharedDoc) -> Result<T, doc::DocError>,
) -> Result<Result<(T, SharedDoc), doc::DocError>, sqlx::Error> {
    // A first edit inserts the empty document, so two first edits queue on one row lock.
    let mut empty = SharedDoc::new(CLOUD_ACTOR);
    sqlx::query(
        "INSERT INTO documents (branch_id, record, record_id, doc, notes, checklist)
         VALUES ($1, $2, $3, $4, '', '{}') ON CONFLICT DO NOTHING",
    )
    .bind(branch)
    .bind(record)
    .bind(record_id)
    .bind(empty.save())
    .execute(&mut *tx)
    .await?;
    let saved: Vec<u8> = sqlx::query_scalar(
        "SELECT doc FROM documents WHERE branch_id = $1 AND record = $2 AND record_id = $3 FOR UPDATE",
    )
    .bind(branch)
    .bind(record)
    .bind(record_id)
    .fetch_one(&mut *tx)
    .await?;
    let mut d = match SharedDoc::load(&saved, CLOUD_ACTOR) {
        Ok(d) => d,
        Err(error) => return Ok(Err(error)),
    };
    let (out, view) = match change(&mut d).and_then(|out| Ok((out, d.view()?))) {
        Ok(done) => done,
        Err(error) => return Ok(Err(error)),
    };
    sqlx::query(
        "UPDATE documents SET doc = $4, notes = $5, checklist = $6::jsonb, updated_at = now()
         WHERE branch_id = $1 AND record = $2 AND record_id = $3",
    )
    .bind(branch)
    .bind(record)
    .bind(record_id)
    .bind(d.save())
    .bind(&view.notes)
    .bind(serde_json::to_string(&view.checklist).unwrap_or_default())
    .execute(&mut *tx)
    .await?;
    Ok(Ok((out, d)))
}

/// A record as the cloud has it.
#[derive(Debug, Serialize)]
pub struct RecordView {
    pub id: String,
    pub fields: BTreeMap<String, serde_json::Value>,
}

async fn record_view(
    conn: &mut PgConnection,
    branch: &str,
    kind: RecordKind,
    id: &str,
) -> Result<RecordView, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT field, value::text AS value FROM record_fields WHERE branch_id = $1 AND entity = $2 AND entity_id = $3",
    )
    .bind(branch)
    .bind(kind.as_str())
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(RecordView {
        id: id.to_owned(),
        fields: rows
            .into_iter()
            .map(|r| {
                let value: String = r.get("value");
                (
                    r.get("field"),
                    serde_json::from_str(&value).unwrap_or_default(),
                )
            })
            .collect(),
    })
}

fn branch_id(raw: &str) -> Result<BranchId, ApiError> {
    BranchId::parse(raw).map_err(|e| ApiError::NotFound(e.to_string()))
}

async fn existing_branch(conn: &mut PgConnection, raw: &str) -> Result<BranchId, ApiError> {
    let branch = branch_id(raw)?;
    if !branches::exists(conn, &branch)
        .await
        .map_err(|e| ApiError::database(&e))?
    {
        return Err(ApiError::NotFound(format!(
            "branch {branch} does not exist"
        )));
    }
    Ok(branch)
}

fn check_record_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || id.chars().any(char::is_control) {
        return Err(ApiError::Invalid(
            "id: expected 1-64 characters without control characters".into(),
        ));
    }
    Ok(())
}

fn db(error: sqlx::Error) -> ApiError {
    ApiError::database(&error)
}

/// `PATCH /v1/branches/{branch}/customers/{id}` and `.../vehicles/{id}` (operator): sets fields
/// with a stamp later than any the record holds, and sends them to the branch.
async fn patch_record(
    pool: PgPool,
    caller: Caller,
    kind: RecordKind,
    (branch, id): (String, String),
    fields: BTreeMap<String, serde_json::Value>,
) -> Result<Json<RecordView>, ApiError> {
    caller.operator()?;
    check_record_id(&id)?;
    record::check_fields(kind, &fields, Author::Cloud).map_err(ApiError::Invalid)?;
    let mut tx = pool.begin().await.map_err(db)?;
    let branch = existing_branch(&mut tx, &branch).await?;
    // Lock the record's fields and stamp after the latest of them: the HLC rule, per record.
    let stamps: Vec<String> = sqlx::query_scalar(
        "SELECT hlc FROM record_fields WHERE branch_id = $1 AND entity = $2 AND entity_id = $3 FOR UPDATE",
    )
    .bind(branch.as_str())
    .bind(kind.as_str())
    .bind(&id)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let latest = stamps
        .iter()
        .filter_map(|s| s.parse::<Hlc>().ok())
        .max()
        .unwrap_or(Hlc::new(0, 0));
    let hlc = HlcClock::new(latest, HlcClock::DEFAULT_MAX_AHEAD_MS).tick(now_ms());
    let mut changes = Vec::new();
    for (field, value) in fields {
        let update = FieldUpdate {
            entity: kind.as_str().to_owned(),
            entity_id: id.clone(),
            field,
            value,
            hlc,
            origin: CLOUD_ORIGIN.to_owned(),
        };
        if apply_field(&mut tx, branch.as_str(), &update)
            .await
            .map_err(db)?
        {
            changes.push(ChangeBody::Field(update));
        }
    }
    changes::append(&mut tx, branch.as_str(), &changes).await?;
    let view = record_view(&mut tx, branch.as_str(), kind, &id)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Json(view))
}

async fn get_record(
    pool: PgPool,
    caller: Caller,
    kind: RecordKind,
    (branch, id): (String, String),
) -> Result<Json<RecordView>, ApiError> {
    caller.operator()?;
    let mut conn = pool.acquire().await.map_err(db)?;
    let branch = existing_branch(&mut conn, &branch).await?;
    let view = record_view(&mut conn, branch.as_str(), kind, &id)
        .await
        .map_err(db)?;
    if view.fields.is_empty() {
        return Err(ApiError::NotFound(format!(
            "{} {id} not found",
            kind.as_str()
        )));
    }
    Ok(Json(view))
}

#[utoipa::path(patch, path = "/v1/branches/{branch}/customers/{id}", tag = "shared records", params(("branch" = String, Path, description = "branch id", max_length = 64), ("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), request_body = crate::schemas::Fields, responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn patch_customer(
    State(pool): State<PgPool>,
    caller: Caller,
    Path(path): Path<(String, String)>,
    JsonBody(fields): JsonBody<BTreeMap<String, serde_json::Value>>,
) -> Result<Json<RecordView>, ApiError> {
    patch_record(pool, caller, RecordKind::Customer, path, fields).await
}

#[utoipa::path(patch, path = "/v1/branches/{branch}/vehicles/{id}", tag = "shared records", params(("branch" = String, Path, description = "branch id", max_length = 64), ("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), request_body = crate::schemas::Fields, responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn patch_vehicle(
    State(pool): State<PgPool>,
    caller: Caller,
    Path(path): Path<(String, String)>,
    JsonBody(fields): JsonBody<BTreeMap<String, serde_json::Value>>,
) -> Result<Json<RecordView>, ApiError> {
    patch_record(pool, caller, RecordKind::Vehicle, path, fields).await
}

#[utoipa::path(get, path = "/v1/branches/{branch}/customers/{id}", tag = "shared records", params(("branch" = String, Path, description = "branch id", max_length = 64), ("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn get_customer(
    State(pool): State<PgPool>,
    caller: Caller,
    Path(path): Path<(String, String)>,
) -> Result<Json<RecordView>, ApiError> {
    get_record(pool, caller, RecordKind::Customer, path).await
}

#[utoipa::path(get, path = "/v1/branches/{branch}/vehicles/{id}", tag = "shared records", params(("branch" = String, Path, description = "branch id", max_length = 64), ("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn get_vehicle(
    State(pool): State<PgPool>,
    caller: Caller,
    Path(path): Path<(String, String)>,
) -> Result<Json<RecordView>, ApiError> {
    get_record(pool, caller, RecordKind::Vehicle, path).await
}

fn doc_record(raw: &str) -> Result<DocRecord, ApiError> {
    DocRecord::parse(raw).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no documents for {raw:?}: records with documents are work_order and inspection"
        ))
    })
}

/// `GET /v1/branches/{branch}/documents/{record}/{id}` (operator).
#[utoipa::path(get, path = "/v1/branches/{branch}/documents/{record}/{id}", tag = "shared records", params(("branch" = String, Path, description = "branch id", max_length = 64), ("record" = String, Path, description = "work_order or inspection"), ("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn get_document(
    State(pool): State<PgPool>,
    caller: Caller,
    Path((branch, record, id)): Path<(String, String, String)>,
) -> Result<Json<DocView>, ApiError> {
    caller.operator()?;
    let record = doc_record(&record)?;
    let mut conn = pool.acquire().await.map_err(db)?;
    let branch = existing_branch(&mut conn, &branch).await?;
    let saved: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT doc FROM documents WHERE branch_id = $1 AND record = $2 AND record_id = $3",
    )
    .bind(branch.as_str())
    .bind(record.as_str())
    .bind(&id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let saved = saved
        .ok_or_else(|| ApiError::NotFound(format!("{} {id} has no document", record.as_str())))?;
    let view = SharedDoc::load(&saved, CLOUD_ACTOR)
        .and_then(|d| d.view())
        .map_err(|error| {
            tracing::error!(%error, "stored document does not load");
            ApiError::Internal
        })?;
    Ok(Json(view))
}

/// `PUT /v1/branches/{branch}/documents/{record}/{id}` (operator): the cloud's edit, merged into
/// the document and sent whole to the branch.
#[utoipa::path(put, path = "/v1/branches/{branch}/documents/{record}/{id}", tag = "shared records", params(("branch" = String, Path, description = "branch id", max_length = 64), ("record" = String, Path, description = "work_order or inspection"), ("id" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")), request_body = crate::schemas::DocEdit, responses((status = 200, description = "done", body = Object)), security(("bearer" = [])))]
pub async fn put_document(
    State(pool): State<PgPool>,
    caller: Caller,
    Path((branch, record, id)): Path<(String, String, String)>,
    JsonBody(edit): JsonBody<DocEdit>,
) -> Result<Json<DocView>, ApiError> {
    caller.operator()?;
    let record = doc_record(&record)?;
    check_record_id(&id)?;
    edit.check().map_err(ApiError::Invalid)?;
    let mut tx = pool.begin().await.map_err(db)?;
    let branch = existing_branch(&mut tx, &branch).await?;
    let time_s = i64::try_from(now_ms() / 1000).unwrap_or(0);
    let edited = edit_document(&mut tx, branch.as_str(), record.as_str(), &id, |d| {
        d.edit(&edit, time_s)
    })
    .await
    .map_err(db)?;
    let (changed, mut d) = edited.map_err(|error| {
        tracing::error!(%error, "document edit failed");
        ApiError::Internal
    })?;
    if !changed.is_empty() {
        let change = ChangeBody::Document(DocumentChange {
            record: record.as_str().to_owned(),
            record_id: id.clone(),
            document: doc::encode(&d.save()),
        });
        changes::append(&mut tx, branch.as_str(), &[change]).await?;
    }
    let view = d.view().map_err(|_| ApiError::Internal)?;
    tx.commit().await.map_err(db)?;
    Ok(Json(view))
}
