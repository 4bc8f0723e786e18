//! The questions the API puts to the cloud directly, because a customer at the counter cannot
//! wait for the outbox: a booking hold (`POST /v1/bookings`), availability
//! (`GET /v1/availability`), and the counter's booking actions ([`forward`]: confirm, cancel,
//! complete, join the waitlist). All go through the sync daemon's signed client (the box's device
//! identity) and are bounded by `sync.booking_timeout_ms`.
//!
//! Invariant: a cloud that is not known to be up, that does not answer in time, or that answers
//! with a failure of its own (5xx, 408, 429, 401) counts as offline, and the caller falls back
//! (a `TENTATIVE` booking, the pulled calendar); only a definite answer from the cloud (a hold,
//! or a refusal such as `409 taken`) is passed on as the cloud's.

use std::time::Duration;

use sentra_protocol::booking::{BookingView, HoldBody};
use serde_json::Value;

use super::{CloudClient, LinkState, SyncHandle};
use crate::store::bookings::{CloudHold, NewBooking};

/// What the cloud said to a hold.
#[derive(Debug, Clone)]
pub enum HoldAnswer {
    Held(CloudHold),
    /// A definite refusal (taken, unknown asset, ...): the status and the cloud's body.
    Refused {
        status: u16,
        body: Value,
    },
    /// No answer that decides anything: why.
    Offline(String),
}

/// The client, if the link is up (or being tried): no point waiting on a link known down.
fn usable(handle: &SyncHandle) -> Result<(CloudClient, String), String> {
    let link = handle.get();
    if !matches!(link.state, LinkState::Online | LinkState::Connecting) {
        return Err(format!("the cloud link is {:?}", link.state).to_lowercase());
    }
    handle
        .client()
        .ok_or_else(|| "this box is not enrolled".to_owned())
}

/// Ask the cloud for a hold on `new`'s days, as this box, keyed by the booking's id.
pub async fn hold(handle: &SyncHandle, bound: Duration, new: &NewBooking) -> HoldAnswer {
    let (client, _) = match usable(handle) {
        Ok(c) => c,
        Err(why) => return HoldAnswer::Offline(why),
    };
    let body = HoldBody {
        branch: None,
        asset_id: new.asset_id.clone(),
        sku: new.sku.clone(),
        from: new.from.clone(),
        to: new.to.clone(),
        customer: new.customer.clone(),
        tier: Some(new.tier.clone()),
    };
    let key = sentra_protocol::payload::booking_idempotency_key(&new.id);
    let answer = match tokio::time::timeout(bound, client.hold(&body, &key)).await {
        Err(_) => {
            return HoldAnswer::Offline(format!(
                "the cloud did not answer within {} ms",
                bound.as_millis()
            ));
        }
        Ok(Err(e)) => return HoldAnswer::Offline(e.to_string()),
        Ok(Ok(answer)) => answer,
    };
    match answer.status {
        200 | 201 => {
            match serde_json::from_value::<BookingView>(answer.body.clone()) {
                Ok(view) if view.state.holds_days() => HoldAnswer::Held(CloudHold {
                    cloud_id: view.id,
                    state: view.state.as_str().to_owned(),
                    expires_at: Some(view.expires_at),
                }),
                // Unreadable: the offline path's event carries the same key, so the cloud
                // finds this hold again at sync rather than making a second.
                _ => HoldAnswer::Offline(format!(
                    "the cloud's answer is not a hold: {}",
                    answer.body
                )),
            }
        }
        401 | 408 | 429 => HoldAnswer::Offline(format!("the cloud answered {}", answer.status)),
        s if s >= 500 => HoldAnswer::Offline(format!("the cloud answered {s}")),
        status => HoldAnswer::Refused {
            status,
            body: answer.body,
        },
    }
}

/// What the cloud said to a forwarded request.
#[derive(Debug, Clone)]
pub enum Forwarded {
    /// A definite answer, success or refusal: the status and the cloud's body.
    Answered { status: u16, body: Value },
    /// No answer that decides anything: why.
    Offline(String),
}

/// `method path` with `body` to the cloud as this box, bounded by `bound`; a transport failure,
/// a timeout or an answer that is the cloud's own trouble (5xx, 408, 429, 401) is `Offline`.
pub async fn forward<B: serde::Serialize + Sync + ?Sized>(
    handle: &SyncHandle,
    bound: Duration,
    method: reqwest::Method,
    path: &str,
    body: Option<&B>,
) -> Forwarded {
    let (client, _) = match usable(handle) {
        Ok(c) => c,
        Err(why) => return Forwarded::Offline(why),
    };
    let answer = match tokio::time::timeout(bound, client.forward(method, path, body)).await {
        Err(_) => {
            return Forwarded::Offline(format!(
                "the cloud did not answer within {} ms",
                bound.as_millis()
            ));
        }
        Ok(Err(e)) => return Forwarded::Offline(e.to_string()),
        Ok(Ok(answer)) => answer,
    };
    match answer.status {
        401 | 408 | 429 => Forwarded::Offline(format!("the cloud answered {}", answer.status)),
        s if s >= 500 => Forwarded::Offline(format!("the cloud answered {s}")),
        status => Forwarded::Answered {
            status,
            body: answer.body,
        },
    }
}

/// Whether the cloud says `asset_id` (of `sku`, this branch's) is free on the days `from` to
/// `to`; `None` when it cannot say in time.
pub async fn asset_free(
    handle: &SyncHandle,
    bound: Duration,
    asset_id: &str,
    sku: &str,
    from: &str,
    to: &str,
) -> Option<bool> {
    let (client, branch) = usable(handle).ok()?;
    let answer = tokio::time::timeout(bound, client.availability(sku, from, to))
        .await
        .ok()?
        .ok()?;
    answer["assets"]
        .as_array()?
        .iter()
        .find(|a| a["branch"] == branch.as_str() && a["asset_id"] == asset_id)?["free"]
        .as_bool()
}
