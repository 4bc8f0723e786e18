//! The per-branch change log: what the cloud tells a branch (master data, rejections of its
//! events), appended by the writers in their own transaction and paged by devices with
//! `GET /v1/sync/pull?cursor=N&limit=M`.
//!
//! Invariant: cursors are gapless per branch and commit-ordered. [`append`] takes them from the
//! branch's counter row (`branches.change_seq`) inside the writer's transaction; that row stays
//! locked until commit, so a change with cursor N+1 cannot commit before the one with N, and a
//! reader paging by `cursor > N` never skips a change that commits later. (A global sequence
//! would hand out numbers in start order, not commit order.)

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use sentra_protocol::sync::{Change, ChangeBody, PullPage};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};

use crate::devices::auth::Caller;
use crate::web::{ApiError, now_ms};

/// Changes per page when the device does not say.
pub const DEFAULT_PULL_LIMIT: u32 = 500;

/// Most changes per page: bounds the answer (a few MB at most) and the query.
pub const MAX_PULL_LIMIT: u32 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("branch {0:?} does not exist")]
    NoSuchBranch(String),
    #[error("change {cursor} of branch {branch} cannot be read back: {source}")]
    Corrupt {
        branch: String,
        cursor: i64,
        source: serde_json::Error,
    },
    #[error("encoding a change failed: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::NoSuchBranch(_) => ApiError::NotFound(error.to_string()),
            ChangeError::Corrupt { .. } | ChangeError::Encode(_) => {
                tracing::error!(%error, "change log");
                ApiError::Internal
            }
            ChangeError::Db(error) => ApiError::database(&error),
        }
    }
}

/// The `kind` tag of a change, as serialised in its body.
pub fn kind(body: &ChangeBody) -> &'static str {
    match body {
        ChangeBody::Part(_) => "part",
        ChangeBody::Mechanic(_) => "mechanic",
        ChangeBody::Asset(_) => "asset",
        ChangeBody::Rejection(_) => "rejection",
        ChangeBody::Field(_) => "field",
        ChangeBody::Document(_) => "document",
        ChangeBody::BookingDecision(_) => "booking_decision",
        ChangeBody::Tariff(_) => "tariff",
        ChangeBody::Staff(_) => "staff",
    }
}

/// Appends `bodies` to `branch`'s log inside the caller's transaction; returns their cursors.
/// Locks the branch's counter row until that transaction ends.
pub async fn append(
    tx: &mut PgConnection,
    branch: &str,
    bodies: &[ChangeBody],
) -> Result<Vec<u64>, ChangeError> {
    if bodies.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(bodies.len()).unwrap_or(i64::MAX);
    let last: Option<i64> = sqlx::query_scalar(
        "UPDATE branches SET change_seq = change_seq + $2 WHERE id = $1 RETURNING change_seq",
    )
    .bind(branch)
    .bind(count)
    .fetch_optional(&mut *tx)
    .await?;
    let last = last.ok_or_else(|| ChangeError::NoSuchBranch(branch.to_owned()))?;
    let cursors: Vec<i64> = (last - count + 1..=last).collect();
    let kinds: Vec<&str> = bodies.iter().map(kind).collect();
    let encoded = bodies
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "INSERT INTO branch_changes (branch_id, cursor, kind, body)
         SELECT $1, c.cursor, c.kind, c.body::jsonb
         FROM unnest($2::bigint[], $3::text[], $4::text[]) AS c(cursor, kind, body)",
    )
    .bind(branch)
    .bind(&cursors)
    .bind(&kinds)
    .bind(&encoded)
    .execute(&mut *tx)
    .await?;
    Ok(cursors
        .into_iter()
        .map(|cursor| u64::try_from(cursor).unwrap_or(0))
        .collect())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PullQuery {
    /// The last cursor the device has; changes after it are answered.
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub cursor: u64,
    /// Changes per page: default 500; a page holds at most 5000, and a larger limit is capped
    /// to that, not refused.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 4_294_967_295_i64)]
    pub limit: Option<u32>,
}

/// `GET /v1/sync/pull?cursor=N&limit=M` (device): the device's branch's changes after `N`, in
/// order, at most `M` (default [`DEFAULT_PULL_LIMIT`], at most [`MAX_PULL_LIMIT`]).
#[utoipa::path(get, path = "/v1/sync/pull", tag = "sync", params(PullQuery), responses((status = 200, description = "PullPage", body = Object)), security(("device" = [], "device_timestamp" = [], "device_nonce" = [], "device_signature" = [])))]
pub async fn pull(
    State(db): State<PgPool>,
    caller: Caller,
    query: Result<Query<PullQuery>, QueryRejection>,
) -> Result<Json<PullPage>, ApiError> {
    let device = caller.device()?;
    let Query(query) = query.map_err(|rejection| ApiError::BadQuery(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PULL_LIMIT);
    if limit == 0 {
        return Err(ApiError::BadQuery(format!(
            "limit must be 1 to {MAX_PULL_LIMIT}"
        )));
    }
    let limit = limit.min(MAX_PULL_LIMIT);
    let after = i64::try_from(query.cursor)
        .map_err(|_| ApiError::BadQuery(format!("cursor {} is too large", query.cursor)))?;

    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT cursor, body::text FROM branch_changes
         WHERE branch_id = $1 AND cursor > $2
         ORDER BY cursor
         LIMIT $3",
    )
    .bind(&device.branch_id)
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&db)
    .await
    .map_err(ChangeError::Db)?;

    let more = rows.len() > limit as usize;
    let mut changes = Vec::with_capacity(rows.len().min(limit as usize));
    for (cursor, body) in rows.into_iter().take(limit as usize) {
        let body =
            serde_json::from_str::<ChangeBody>(&body).map_err(|source| ChangeError::Corrupt {
                branch: device.branch_id.clone(),
                cursor,
                source,
            })?;
        changes.push(Change {
            cursor: u64::try_from(cursor).unwrap_or(0),
            body,
        });
    }
    let cursor = changes.last().map_or(query.cursor, |change| change.cursor);
    Ok(Json(PullPage {
        changes,
        cursor,
        more,
        server_time_ms: now_ms(),
    }))
}

#[cfg(test)]
mod tests {
    use sentra_protocol::sync::{AssetRecord, MechanicRecord, Parked, PartRecord};

    use super::*;

    /// The `kind` column must match the tag serde writes, or pull could not be filtered by it.
    #[test]
    fn kind_matches_the_serialised_tag() {
        let bodies = [
            ChangeBody::Part(PartRecord {
                sku: "S".into(),
                name: "n".into(),
                barcode: None,
                price: 1,
                unit: "pcs".into(),
            }),
            ChangeBody::Mechanic(MechanicRecord {
                id: "m".into(),
                name: "n".into(),
                active: true,
            }),
            ChangeBody::Asset(AssetRecord {
                id: "a".into(),
                sku: "s".into(),
                plate: "B 1 A".into(),
                name: "n".into(),
            }),
            ChangeBody::Rejection(Parked {
                seq: 1,
                entity: "payment".into(),
                entity_id: "p".into(),
                reason: "r".into(),
            }),
        ];
        for body in bodies {
            let value = serde_json::to_value(&body).expect("serialise");
            assert_eq!(value["kind"], kind(&body), "{value}");
        }
    }
}
