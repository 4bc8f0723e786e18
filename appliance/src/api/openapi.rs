//! The OpenAPI 3.1 document of the local API, served at `/v1/openapi.json` and generated from the
//! handlers' annotations, so it cannot drift from the code (a test compares it with the router).

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{
    billing, blobs, bookings, inspections, ops, rentals, scanner, shared, staff, stock, vehicles,
    workshop,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Sentra Edge local API", description = "The branch appliance's API for paired tablets, POS and storekeeper terminals. Errors are {\"error\": {\"code\", \"message\", \"field\"?}}; money is integer rupiah; times are RFC 3339 UTC."),
    paths(
        ops::healthz, ops::readyz, ops::metrics, ops::pair, ops::sync_status, ops::list_devices, ops::revoke_device, ops::rotate_credentials,
        workshop::create_work_order, workshop::list_work_orders, workshop::get_work_order, workshop::set_status, workshop::assign,
        workshop::dispense, workshop::receive, workshop::stock, workshop::parts, workshop::mechanics, workshop::assets,
        billing::issue, billing::get_invoice, billing::pay, billing::credit, billing::void_payment, billing::print, billing::print_job,
        inspections::create, inspections::get_inspection, inspections::verify,
        shared::create_customer, shared::get_customer, shared::patch_customer,
        shared::create_vehicle, shared::get_vehicle, shared::patch_vehicle,
        vehicles::find_vehicle, vehicles::vehicle_history,
        shared::get_notes, shared::put_notes, shared::get_remarks, shared::put_remarks,
        scanner::open, scanner::close, scanner::get_pick_slip, scanner::scanner,
        stock::adjust, stock::return_parts, stock::open_count, stock::get_count, stock::add_line, stock::apply_count, stock::cancel_count,
        bookings::create, bookings::get_booking, bookings::availability,
        bookings::confirm, bookings::cancel, bookings::complete, bookings::join_waitlist,
        rentals::tariffs, rentals::hand_over, rentals::take_back, rentals::get_rental, rentals::print,
        blobs::put_blob, blobs::get_blob, blobs::head_blob,
        staff::open_session, staff::end_session, staff::open_shift, staff::close_shift, staff::get_shift,
        staff::get_day, staff::close_day, staff::reopen_day,
    ),
    components(schemas(inspections::CheckItem, crate::domain::Digest, crate::domain::Id, crate::domain::Rupiah, crate::domain::Text)),
    modifiers(&Bearer, &Contract)
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

/// Completes each operation with what every route shares, derived from the router's own layers
/// so no annotation can forget it:
/// - each `{name}` in a path is declared as a path parameter with its parser's schema;
/// - the error answers the shared layers give, with the error envelope: 401 and 403 (the auth
///   layer, on every operation with `security`), 400 (unreadable JSON, a bad `Idempotency-Key`
///   or query), 413 and 415 (the JSON body extractor), 404 (an id that is not there), 422 (a
///   field the parser refuses) and 503 (the store or the request timeout, on every `/v1` path).
struct Contract;

/// The schema of a path parameter, by name: the parser the handler runs on it.
fn path_param_schema(name: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use crate::domain::{Digest, Id, Sku};
    use utoipa::PartialSchema;
    match name {
        "sku" => Sku::schema(),
        "sha256" => Digest::schema(),
        _ => Id::schema(),
    }
}

/// What `IdempotencyKey` accepts: 1 to `MAX_KEY_LEN` visible ASCII characters.
fn idempotency_key_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use super::extract::MAX_KEY_LEN;
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .pattern(Some(format!("^[!-~]{{1,{MAX_KEY_LEN}}}$")))
        .min_length(Some(1))
        .max_length(Some(MAX_KEY_LEN))
        .into()
}

fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .into()
}

impl utoipa::Modify for Contract {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{Required, ResponseBuilder};
        for (path, item) in doc.paths.paths.iter_mut() {
            let names: Vec<String> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_owned)
                .collect();
            let v1 = path.starts_with("/v1/");
            for (is_head, op) in [
                (false, item.get.as_mut()),
                (false, item.put.as_mut()),
                (false, item.post.as_mut()),
                (false, item.delete.as_mut()),
                (false, item.patch.as_mut()),
                (true, item.head.as_mut()),
            ]
            .into_iter()
            .filter_map(|(h, op)| Some((h, op?)))
            {
                let params = op.parameters.get_or_insert_with(Vec::new);
                for name in &names {
                    params.retain(|p| !(p.name == *name && p.parameter_in == ParameterIn::Path));
                    params.push(
                        ParameterBuilder::new()
                            .name(name)
                            .parameter_in(ParameterIn::Path)
                            .required(Required::True)
                            .schema(Some(path_param_schema(name)))
                            .build(),
                    );
                }
                for p in params.iter_mut() {
                    if p.parameter_in == ParameterIn::Header
                        && p.name.eq_ignore_ascii_case("Idempotency-Key")
                    {
                        p.schema = Some(idempotency_key_schema());
                    }
                }
                let other_params = params.iter().any(|p| p.parameter_in != ParameterIn::Path);
                let json_body = op
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"));
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let mut wanted: Vec<(u16, &str)> = Vec::new();
                if json_body || other_params {
                    wanted.push((400, "unreadable JSON, a bad Idempotency-Key or query"));
                }
                if secured {
                    wanted.push((401, "no bearer token, or one that is unknown or revoked"));
                    wanted.push((403, "this device's role may not do this"));
                }
                if !names.is_empty() {
                    wanted.push((404, "no such record"));
                }
                if json_body {
                    wanted.push((413, "the body is larger than api.max_body_bytes"));
                    wanted.push((415, "the body is not Content-Type: application/json"));
                }
                if json_body || !names.is_empty() || other_params {
                    wanted.push((422, "a field, parameter or path segment the parser refuses"));
                }
                if v1 {
                    wanted.push((
                        503,
                        "the store is unavailable or the request timed out; retry",
                    ));
                }
                for (status, description) in wanted {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| {
                            if is_head {
                                // A HEAD answer has no body.
                                ResponseBuilder::new().description(description).into()
                            } else {
                                error_response(description)
                            }
                        });
                }
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
        doc.to_json()
            .expect("the OpenAPI document always serialises")
    })
    .clone()
}
