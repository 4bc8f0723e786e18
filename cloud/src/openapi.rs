//! The OpenAPI 3.1 document of the cloud's JSON API, served at `GET /v1/openapi.json` and
//! generated from the handlers' `#[utoipa::path]` annotations, so it cannot drift from the code
//! unnoticed: a test compares its paths and methods with the router's.
//!
//! Who may read it: any authenticated caller (an enrolled device or an API token), as on the box,
//! where it needs a paired token. It names the operator surface and its limits, which is of no
//! use to a stranger and of some use to an attacker; every legitimate client already holds a
//! credential.
//!
//! The error answers every operation shares (the envelope, 400/401/403/404/413/422/503) are added
//! by [`Errors`] from the operation's security, so each annotation lists only its own answers.
//! The schema types the annotations name (mirrors carrying the handlers' limits, the error
//! envelope) are in [`crate::schemas`], on the ground floor: handlers import them, not this file.

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};

use crate::schemas::{BEARER, DEVICE, ErrorBody, ErrorEnvelope};
use crate::{
    blobs, booking, changes, devices, fleet, health, identity, ingest, master, releases, reports,
    shared, successor,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sentra Cloud API",
        description = "The cloud's JSON API for branch appliances (device-signed requests) and for operators and portals (`Authorization: Bearer <api token>`). Errors are `{\"error\": {\"code\", \"message\"}}`; money is integer rupiah; days are `YYYY-MM-DD` in 2000-01-01..=2099-12-31. Every answer carries `x-sentra-server-time` (Unix ms). The fleet HTML pages (`/fleet`, `/fleet/...`) and `/metrics` (Prometheus text) are not part of this document."
    ),
    paths(
        health::healthz, health::readyz,
        devices::enroll, devices::revoke,
        ingest::push, changes::pull, booking::offline::calendar, successor::snapshot,
        reports::sales, reports::payments, reports::z_reports, reports::stock,
        reports::open_work_orders,
        master::put_part, master::put_mechanic, master::put_asset, master::put_tariff, master::put_staff,
        shared::get_customer, shared::patch_customer, shared::get_vehicle, shared::patch_vehicle,
        shared::get_document, shared::put_document,
        booking::http::availability, booking::http::hold, booking::http::get,
        booking::http::confirm, booking::http::cancel, booking::http::complete,
        booking::waitlist::join, booking::waitlist::get,
        identity::post_check, identity::get_check,
        identity::owner::put_customer, identity::owner::get_customer,
        blobs::get, blobs::start, blobs::put_part, blobs::complete, blobs::backups::record,
        fleet::http::heartbeat, fleet::http::put_channel, fleet::http::get_fleet, fleet::http::get_device,
        fleet::http::get_rollout, fleet::http::post_rollout_action, fleet::page::make_login_link,
        releases::get_manifest, releases::get_artifact,
        booking::payments::webhook,
    ),
    components(schemas(ErrorEnvelope, ErrorBody)),
    modifiers(&Security, &Errors)
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use sentra_protocol::auth::{
            DEVICE_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token from `sentra-cloud api-token` (operator or portal role).",
                    ))
                    .build(),
            ),
        );
        let header = |name: &str, what: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, what)))
        };
        components.add_security_scheme(
            DEVICE,
            header(DEVICE_HEADER, "The enrolled device's id. A device request carries all four x-sentra headers: an ed25519 signature, with the key bound at enrolment, over `sentra-v1\\n{METHOD}\\n{path and query}\\n{timestamp}\\n{nonce}\\n{hex SHA-256 of the body}`."),
        );
        components.add_security_scheme(
            "device_timestamp",
            header(
                TIMESTAMP_HEADER,
                "Unix milliseconds, within 5 minutes of the server's clock.",
            ),
        );
        components.add_security_scheme(
            "device_nonce",
            header(
                NONCE_HEADER,
                "16-64 hex characters, never reused by the device.",
            ),
        );
        components.add_security_scheme(
            "device_signature",
            header(SIGNATURE_HEADER, "Base64 of the 64-byte ed25519 signature."),
        );
    }
}

/// Adds the answers every operation shares, with the error envelope, to each operation.
struct Errors;

fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name(
                        "ErrorEnvelope",
                    )))
                    .build(),
            )
            .build(),
    )
}

impl utoipa::Modify for Errors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for item in doc.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let secured = operation
                    .security
                    .as_ref()
                    .is_some_and(|security| !security.is_empty());
                let has_body = operation.request_body.is_some();
                let mut add = |status: &str, description: &str| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description));
                };
                if secured {
                    add(
                        "401",
                        "unauthorized, clock_skew or replay: no valid credentials (nothing changed)",
                    );
                    add(
                        "403",
                        "forbidden: these credentials may not call this route",
                    );
                    add("400", "malformed_body or bad_query");
                    add(
                        "413",
                        "payload_too_large: the body is larger than the API's limit",
                    );
                    add("404", "not_found");
                } else if has_body {
                    add("400", "malformed_body: the body is not JSON");
                    add(
                        "413",
                        "payload_too_large: the body is larger than the API's limit",
                    );
                }
                if secured || has_body {
                    add(
                        "422",
                        "invalid: a value is out of range or of the wrong shape (the message names the field)",
                    );
                }
                add(
                    "503",
                    "unavailable: the database or Redis does not answer; retry later",
                );
            }
        }
    }
}

/// The document as JSON (built once).
pub fn document() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc.to_json().unwrap_or_else(|error| {
            tracing::error!(%error, "the OpenAPI document does not serialise");
            String::from("{}")
        })
    })
    .clone()
}

/// `GET /v1/openapi.json` (any authenticated caller).
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use crate::schemas::DAY_PATTERN;

    /// Every day in the document is stated by the one pattern and none by `format: date` (which
    /// makes a generator throw away almost every value it draws). utoipa's attributes take the
    /// pattern only as a literal, so this test is what keeps the copies equal.
    #[test]
    fn days_are_stated_by_the_one_pattern() {
        fn walk(value: &serde_json::Value, days: &mut usize) {
            match value {
                serde_json::Value::Object(map) => {
                    assert_ne!(map.get("format").and_then(|f| f.as_str()), Some("date"));
                    if let Some(pattern) = map.get("pattern").and_then(|p| p.as_str())
                        && pattern.starts_with("^20")
                    {
                        assert_eq!(pattern, DAY_PATTERN);
                        *days += 1;
                    }
                    map.values().for_each(|v| walk(v, days));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, days)),
                _ => {}
            }
        }
        let doc: serde_json::Value = serde_json::from_str(&super::document()).expect("JSON");
        let mut days = 0;
        walk(&doc, &mut days);
        assert!(
            days >= 5,
            "availability from/to, hold from/to, waitlist date: {days}"
        );
    }
}
