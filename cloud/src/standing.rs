//! A customer's standing as the domains that are not identity ask it (ground floor): who owns a
//! customer record ([`Owner`], from the caller), and the gate ([`Standing`]) the identity domain
//! implements and a booking passes. Booking holds an `Arc<dyn Standing>`, so it never imports the
//! identity domain; the wiring (`startup.rs`) hands it the replica's `Identity`.

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use crate::branches::BranchId;
use crate::devices::auth::Caller;
use crate::devices::tokens::Role;
use crate::web::ApiError;

/// Whether a customer may rent: asked of every hold and of every offline booking at ingest.
pub trait Standing: Send + Sync {
    /// Whether `customer` of `owner` ([`Owner::key`]) may rent: verified, or the gate is off.
    fn cleared<'a>(
        &'a self,
        db: &'a PgPool,
        owner: &'a str,
        customer: &'a str,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>>;

    /// [`Standing::cleared`] on the caller's connection (inside the ingest transaction).
    fn cleared_in<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        owner: &'a str,
        customer: &'a str,
    ) -> BoxFuture<'a, Result<bool, sqlx::Error>>;
}

/// The owner of a customer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Branch(String),
    Portal(String),
}

impl Owner {
    /// As stored in `customer_identities.owner`: `branch:<id>` or `portal:<token name>`.
    pub fn key(&self) -> String {
        match self {
            Owner::Branch(branch) => format!("branch:{branch}"),
            Owner::Portal(portal) => format!("portal:{portal}"),
        }
    }

    /// The owner a caller acts for: a device its own branch, a portal token itself, an operator
    /// token the branch it names.
    pub fn of(caller: &Caller, branch: Option<&str>) -> Result<Owner, ApiError> {
        match caller {
            Caller::Device(device) => match branch {
                None => Ok(Owner::Branch(device.branch_id.clone())),
                Some(branch) if branch == device.branch_id => {
                    Ok(Owner::Branch(device.branch_id.clone()))
                }
                // Another branch's customers do not exist for this device.
                Some(_) => Err(not_found()),
            },
            Caller::Client(client) if client.role == Role::Portal => match branch {
                None => Ok(Owner::Portal(client.name.clone())),
                Some(_) => Err(ApiError::Invalid(
                    "branch: a portal token checks its own customers (PUT /v1/customers/{id}); leave branch out".to_owned(),
                )),
            },
            Caller::Client(_) => {
                let branch = branch.ok_or_else(|| {
                    ApiError::Invalid("branch: required for an operator token".to_owned())
                })?;
                let branch = BranchId::parse(branch).map_err(|_| not_found())?;
                Ok(Owner::Branch(branch.as_str().to_owned()))
            }
        }
    }

    /// The owner of a booking's customer, for the identity gate: the device's branch, the
    /// portal, or the branch an operator books for.
    pub fn of_booking(caller: &Caller, branch: &str) -> Owner {
        match caller {
            Caller::Device(device) => Owner::Branch(device.branch_id.clone()),
            Caller::Client(client) if client.role == Role::Portal => {
                Owner::Portal(client.name.clone())
            }
            Caller::Client(_) => Owner::Branch(branch.to_owned()),
        }
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such customer".to_owned())
}

/// The refusal a booking path gives an unverified customer.
pub fn unverified(customer: &str) -> ApiError {
    ApiError::Refused {
        code: "identity_unverified",
        message: unverified_reason(customer),
    }
}

/// The reason, as staff read it (also the reason of an offline booking rejected at ingest).
pub fn unverified_reason(customer: &str) -> String {
    format!(
        "customer {customer:?} has no verified identity; check their KTP first (POST /v1/customers/{{id}}/identity with the KTP photo and a selfie)"
    )
}
