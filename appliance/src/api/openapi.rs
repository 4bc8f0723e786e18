//! The OpenAPI 3.1 document of the local API, served at `/v1/openapi.json` and generated from the
//! handlers' annotations, so it cannot drift from the code (a test compares it with the router).

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{billing, blobs, bookings, inspections, ops, scanner, shared, workshop};

#[derive(OpenApi)]
#[openapi(
    info(title = "Sentra Edge local API", description = "The branch appliance's API for paired tablets, POS and storekeeper terminals. Errors are {\"error\": {\"code\", \"message\", \"field\"?}}; money is integer rupiah; times are RFC 3339 UTC."),
    paths(
        ops::healthz, ops::readyz, ops::metrics, ops::pair, ops::sync_status, ops::list_devices, ops::revoke_device,
        workshop::create_work_order, workshop::list_work_orders, workshop::get_work_order, workshop::set_status, workshop::assign,
        workshop::dispense, workshop::receive, workshop::stock, workshop::parts, workshop::mechanics, workshop::assets,
        billing::issue, billing::get_invoice, billing::pay, billing::credit, billing::print, billing::print_job,
        inspections::create, inspections::get_inspection, inspections::verify,
        shared::create_customer, shared::get_customer, shared::patch_customer,
        shared::create_vehicle, shared::get_vehicle, shared::patch_vehicle,
        shared::get_notes, shared::put_notes, shared::get_remarks, shared::put_remarks,
        scanner::open, scanner::close, scanner::get_pick_slip, scanner::scanner,
        bookings::create, bookings::get_booking, bookings::availability,
        bookings::confirm, bookings::cancel, bookings::complete, bookings::join_waitlist,
        blobs::put_blob, blobs::get_blob, blobs::head_blob,
    ),
    modifiers(&Bearer)
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON (built once).
pub fn document() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc.to_json()
            .expect("the OpenAPI document always serialises")
    })
    .clone()
}
