//! Plate lookup and a vehicle's service history (issue 21 item 5). The records are the shared
//! customers and vehicles of `api::shared`; the rules are in `store::vehicles`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::{ApiError, AppState, path_id};
use crate::domain::Plate;
use crate::store::billing::{self, History};
use crate::store::vehicles::{self, MAX_HISTORY, VehicleWithCustomer};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PlateQuery {
    /// The plate, typed any way ("b 1234  xyz" finds "B 1234 XYZ").
    #[param(value_type = crate::domain::Plate, example = "B 1234 XYZ")]
    pub plate: String,
}

#[utoipa::path(get, path = "/v1/vehicles", tag = "vehicles", params(PlateQuery),
    responses((status = 200, body = VehicleWithCustomer), (status = 404, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn find_vehicle(
    State(s): State<AppState>,
    q: Result<Query<PlateQuery>, QueryRejection>,
) -> Result<Json<VehicleWithCustomer>, ApiError> {
    let Query(q) = q.map_err(super::query_rejected)?;
    let plate = Plate::parse(q.plate).map_err(|e| ApiError::field("plate", e.0))?;
    Ok(Json(
        s.store.read(move |c| vehicles::by_plate(c, &plate)).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// At most this many work orders, newest first (default 20, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/vehicles/{id}/history", tag = "vehicles", params(HistoryQuery),
    responses((status = 200, body = History), (status = 404, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)), security(("bearer" = [])))]
pub async fn vehicle_history(
    State(s): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<History>, ApiError> {
    let id = path_id(&id)?;
    let Query(q) = q.map_err(super::query_rejected)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("expected 1 to {MAX_HISTORY}"),
        ));
    }
    Ok(Json(
        s.store
            .read(move |c| billing::history(c, &id, limit))
            .await?,
    ))
}
