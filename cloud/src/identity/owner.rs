//! Whose customer an identity check is about: the [`Owner`] of a customer record, the record's
//! name, and the portal's own customer records (`PUT`/`GET /v1/customers/{id}`).
//!
//! A branch owns the shared customer records of its branch (`record_fields`, written by its
//! devices through sync and by operators through `/v1/branches/{branch}/customers/{id}`); a
//! portal token owns the customers it registered here, by its name (a token rotated under the
//! same name keeps them). Anything not the caller's is answered 404, as if it did not exist.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::branches::{self, BranchId};
use crate::devices::auth::Caller;
use crate::devices::tokens::Role;
use crate::standing::Owner;
use crate::web::{ApiError, JsonBody};

/// Longest customer name accepted, as the shared customer record's `name` field.
pub const MAX_NAME_CHARS: usize = 120;

fn not_found() -> ApiError {
    ApiError::NotFound("no such customer".to_owned())
}

fn db(error: sqlx::Error) -> ApiError {
    ApiError::database(&error)
}

/// The name on `owner`'s record of `customer`: 404 when there is no such record (of this
/// owner), 422 `customer_unnamed` when the record has no name to match a KTP against.
pub async fn record_name(
    db_pool: &PgPool,
    owner: &Owner,
    customer: &str,
) -> Result<String, ApiError> {
    let found: Option<Option<String>> = match owner {
        Owner::Branch(branch) => {
            let branch = BranchId::parse(branch).map_err(|_| not_found())?;
            let mut conn = db_pool.acquire().await.map_err(db)?;
            if !branches::exists(&mut conn, &branch).await.map_err(db)? {
                return Err(not_found());
            }
            sqlx::query_scalar(
                "SELECT max(value #>> '{}') FILTER (WHERE field = 'name')
                   FROM record_fields
                  WHERE branch_id = $1 AND entity = 'customer' AND entity_id = $2
                 HAVING count(*) > 0",
            )
            .bind(branch.as_str())
            .bind(customer)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?
        }
        Owner::Portal(portal) => {
            sqlx::query_scalar("SELECT name FROM portal_customers WHERE portal = $1 AND id = $2")
                .bind(portal)
                .bind(customer)
                .fetch_optional(db_pool)
                .await
                .map_err(db)?
                .map(Some)
        }
    };
    let name = found.ok_or_else(not_found)?;
    name.filter(|name| name.chars().any(char::is_alphanumeric))
        .ok_or_else(|| ApiError::Refused {
            code: "customer_unnamed",
            message: format!(
                "customer {customer:?} has no name on record to match the KTP against; set it first"
            ),
        })
}

/// `PUT /v1/customers/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalCustomerBody {
    /// The customer's name as on their KTP (1-120 characters).
    pub name: String,
}

/// A portal's customer record.
#[derive(Debug, Serialize)]
pub struct PortalCustomer {
    pub id: String,
    pub name: String,
}

fn portal(caller: &Caller) -> Result<String, ApiError> {
    match caller {
        Caller::Client(client) if client.role == Role::Portal => Ok(client.name.clone()),
        _ => Err(ApiError::Forbidden(
            "only a portal token has customers here; a branch's customers are its shared records (/v1/branches/{branch}/customers/{id})".to_owned(),
        )),
    }
}

/// `PUT /v1/customers/{id}` (portal token): registers or renames the portal's customer `id`, the
/// record its identity checks attach to.
#[utoipa::path(put, path = "/v1/customers/{id}", tag = "identity", params(("id" = String, Path, description = "the customer (1-200 characters, not blank, no control characters)", max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$")), request_body = crate::schemas::PortalCustomerBody, responses((status = 200, description = "the portal's customer", body = Object)), security(("bearer" = [])))]
pub async fn put_customer(
    State(pool): State<PgPool>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PortalCustomerBody>,
) -> Result<Json<PortalCustomer>, ApiError> {
    let portal = portal(&caller)?;
    sentra_protocol::booking::check_customer(&id)
        .map_err(|error| ApiError::Invalid(error.to_string()))?;
    let name = body.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
        || !name.chars().any(char::is_alphanumeric)
    {
        return Err(ApiError::Invalid(format!(
            "name: expected 1-{MAX_NAME_CHARS} characters with a letter or digit and no control characters"
        )));
    }
    sqlx::query(
        "INSERT INTO portal_customers (portal, id, name) VALUES ($1, $2, $3)
         ON CONFLICT (portal, id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()",
    )
    .bind(&portal)
    .bind(&id)
    .bind(name)
    .execute(&pool)
    .await
    .map_err(db)?;
    Ok(Json(PortalCustomer {
        id,
        name: name.to_owned(),
    }))
}

/// `GET /v1/customers/{id}` (portal token): the portal's own customer; anyone else's is 404.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "identity", params(("id" = String, Path, description = "the customer (1-200 characters, not blank, no control characters)", max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\s][^\x00-\x1f\x7f-\x9f]*$")), responses((status = 200, description = "the portal's customer", body = Object)), security(("bearer" = [])))]
pub async fn get_customer(
    State(pool): State<PgPool>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PortalCustomer>, ApiError> {
    let portal = portal(&caller)?;
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM portal_customers WHERE portal = $1 AND id = $2")
            .bind(&portal)
            .bind(&id)
            .fetch_optional(&pool)
            .await
            .map_err(db)?;
    let name = name.ok_or_else(not_found)?;
    Ok(Json(PortalCustomer { id, name }))
}
