//! The role matrix on every `/v1` path: no token → 401, a bad or revoked token → 401, a role
//! that may not → 403, a role that may → past authorisation (whatever the handler then says).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::Site;

const T: &str = "tablet";
const P: &str = "pos";
const S: &str = "storekeeper";
const A: &str = "admin";

/// (method, path, roles allowed besides admin). Written out here, independent of the code's table.
const MATRIX: &[(&str, &str, &[&str])] = &[
    ("POST", "/v1/work-orders", &[T]),
    ("GET", "/v1/work-orders", &[T, P, S]),
    ("GET", "/v1/work-orders/x", &[T, P, S]),
    ("POST", "/v1/work-orders/x/status", &[T]),
    ("POST", "/v1/work-orders/x/assign", &[T]),
    ("POST", "/v1/work-orders/x/parts", &[S]),
    ("GET", "/v1/stock/X", &[T, P, S]),
    ("POST", "/v1/stock/receipts", &[S]),
    ("POST", "/v1/stock/adjustments", &[S]),
    ("POST", "/v1/work-orders/x/returns", &[S]),
    ("POST", "/v1/stock-counts", &[S]),
    ("GET", "/v1/stock-counts/x", &[S]),
    ("POST", "/v1/stock-counts/x/lines", &[S]),
    ("POST", "/v1/stock-counts/x/apply", &[S]),
    ("POST", "/v1/stock-counts/x/cancel", &[S]),
    ("GET", "/v1/parts", &[T, P, S]),
    ("GET", "/v1/mechanics", &[T, P, S]),
    ("GET", "/v1/assets", &[T, P, S]),
    ("GET", "/v1/assets/x/availability", &[T, P]),
    ("POST", "/v1/bookings", &[P]),
    ("GET", "/v1/bookings/x", &[T, P]),
    ("POST", "/v1/bookings/x/confirm", &[P]),
    ("POST", "/v1/bookings/x/cancel", &[P]),
    ("POST", "/v1/bookings/x/complete", &[P]),
    ("POST", "/v1/bookings/x/handover", &[P]),
    ("POST", "/v1/bookings/x/return", &[P]),
    ("GET", "/v1/bookings/x/rental", &[T, P]),
    ("POST", "/v1/bookings/x/print", &[P]),
    ("GET", "/v1/tariffs", &[T, P, S]),
    ("POST", "/v1/waitlist", &[P]),
    ("POST", "/v1/invoices", &[P]),
    ("GET", "/v1/invoices/x", &[P]),
    ("POST", "/v1/invoices/x/payments", &[P]),
    ("POST", "/v1/invoices/x/credit-notes", &[P]),
    ("POST", "/v1/payments/x/void", &[P]),
    ("POST", "/v1/invoices/x/print", &[P]),
    ("GET", "/v1/print-jobs/x", &[T, P, S]),
    ("PUT", "/v1/blobs/x", &[T]),
    ("GET", "/v1/blobs/x", &[T]),
    // HEAD shares GET's role check (an answer without a body cannot show the error code).
    ("POST", "/v1/inspections", &[T]),
    ("GET", "/v1/inspections/x", &[T, P]),
    ("GET", "/v1/inspections/x/verify", &[T, P]),
    ("POST", "/v1/pick-slips", &[S]),
    ("GET", "/v1/pick-slips/x", &[S]),
    ("POST", "/v1/pick-slips/x/close", &[S]),
    ("GET", "/v1/scanner", &[T, P, S]),
    ("GET", "/v1/sync/status", &[T, P, S]),
    ("POST", "/v1/customers", &[T, P]),
    ("GET", "/v1/customers/x", &[T, P]),
    ("PATCH", "/v1/customers/x", &[T, P]),
    ("POST", "/v1/vehicles", &[T, P]),
    ("GET", "/v1/vehicles?plate=B1A", &[T, P]),
    ("GET", "/v1/vehicles/x/history", &[T, P]),
    ("GET", "/v1/vehicles/x", &[T, P]),
    ("PATCH", "/v1/vehicles/x", &[T, P]),
    ("GET", "/v1/work-orders/x/notes", &[T, P, S]),
    ("PUT", "/v1/work-orders/x/notes", &[T]),
    ("GET", "/v1/inspections/x/remarks", &[T, P]),
    ("PUT", "/v1/inspections/x/remarks", &[T]),
    ("GET", "/v1/devices", &[]),
    ("POST", "/v1/devices/x/revoke", &[]),
    ("POST", "/v1/devices/self/rotate", &[T, P, S]),
    ("GET", "/v1/openapi.json", &[T, P, S]),
    ("POST", "/v1/staff/sessions", &[T, P, S]),
    ("DELETE", "/v1/staff/sessions/current", &[T, P, S]),
    ("POST", "/v1/shifts", &[P]),
    ("GET", "/v1/shifts/x", &[P]),
    ("POST", "/v1/shifts/x/close", &[P]),
    ("GET", "/v1/days/x", &[P]),
    ("POST", "/v1/days/x/close", &[P]),
    ("POST", "/v1/days/x/reopen", &[P]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v1_path_checks_token_and_role() {
    let site = Site::new();
    let edge = site.start().await;
    let mut devices = Vec::new();
    for role in [T, P, S, A] {
        devices.push((role, edge.pair(&site, role).await));
    }
    let mut failures = Vec::new();
    for (method, path, allowed) in MATRIX {
        let method: Method = method.parse().expect("method");
        let body = (method == Method::POST).then(|| json!({}));
        let (s, b) = edge
            .call(None, method.clone(), path, body.clone(), None)
            .await;
        if s != StatusCode::UNAUTHORIZED || b["error"]["code"] != "unauthorized" {
            failures.push(format!("{method} {path} without token: {s} {b}"));
        }
        let (s, _) = edge
            .call(
                Some("sek_not-a-real-token"),
                method.clone(),
                path,
                body.clone(),
                None,
            )
            .await;
        if s != StatusCode::UNAUTHORIZED {
            failures.push(format!("{method} {path} with a bad token: {s}"));
        }
        for (role, dev) in &devices {
            let may = *role == A || allowed.contains(role);
            let (s, b) = edge
                .call(Some(&dev.token), method.clone(), path, body.clone(), None)
                .await;
            // A manager's approval is asked for past the role check (`manager_required`).
            let denied = s == StatusCode::FORBIDDEN && b["error"]["code"] != "manager_required";
            if may == denied || s == StatusCode::UNAUTHORIZED {
                failures.push(format!(
                    "{method} {path} as {role}: {s} {b} (allowed: {may})"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "role matrix:\n{}", failures.join("\n"));

    // The matrix covers every /v1 path of the OpenAPI document (and /v1/pair, which needs no token).
    let admin = &devices[3].1;
    let (_, doc) = edge.get(admin, "/v1/openapi.json").await;
    let documented = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .filter(|p| p.starts_with("/v1/") && *p != "/v1/pair")
        .count();
    let covered: std::collections::BTreeSet<_> = MATRIX
        .iter()
        .map(|(_, p, _)| {
            let p = p.split('?').next().unwrap_or_default();
            p.replace("/x", "/{id}").replace("/X", "/{sku}")
        })
        .collect();
    // openapi.json is in the matrix but not in the document it serves.
    assert_eq!(
        covered.len(),
        documented + 1,
        "every documented /v1 path is in the matrix: {covered:?}"
    );

    // And the document says what this test saw: every guarded operation names the bearer scheme
    // and its 401 and 403 (with the error envelope), every `{name}` of a path is a declared path
    // parameter, and every JSON body has its 400, 413, 415 and 422.
    let mut gaps = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let at = format!("{} {path}", method.to_uppercase());
            let statuses = op["responses"].as_object().expect("responses");
            let mut want: Vec<&str> = Vec::new();
            if path.starts_with("/v1/") && path != "/v1/pair" {
                if op["security"][0].get("bearer").is_none() {
                    gaps.push(format!("{at}: no bearer security"));
                }
                want.extend(["401", "403", "503"]);
            }
            if op["requestBody"]["content"]
                .get("application/json")
                .is_some()
            {
                want.extend(["400", "413", "415", "422"]);
            }
            for status in want {
                match statuses.get(status) {
                    None => gaps.push(format!("{at}: {status} not declared")),
                    Some(r) if method != "head" => {
                        if r["content"]["application/json"]["schema"]["$ref"]
                            != "#/components/schemas/ErrorBody"
                        {
                            gaps.push(format!("{at}: {status} without the error envelope"));
                        }
                    }
                    Some(_) => {}
                }
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for name in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                let declared = params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true);
                if !declared {
                    gaps.push(format!("{at}: path parameter {name} not declared"));
                }
            }
        }
    }
    assert!(gaps.is_empty(), "the document:\n{}", gaps.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_devices_are_refused_at_once() {
    let site = Site::new();
    let edge = site.start().await;
    let admin = edge.pair(&site, "admin").await;
    let tablet = edge.pair(&site, "tablet").await;
    assert_eq!(edge.get(&tablet, "/v1/work-orders").await.0, StatusCode::OK);
    let (s, b) = edge
        .call(
            Some(&admin.token),
            Method::POST,
            &format!("/v1/devices/{}/revoke", tablet.id),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b.as_array()
            .expect("devices")
            .iter()
            .any(|d| d["id"] == tablet.id.as_str() && !d["revoked_at"].is_null())
    );
    let (s, b) = edge.get(&tablet, "/v1/work-orders").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (s, _) = edge
        .call(
            Some(&admin.token),
            Method::POST,
            "/v1/devices/nope/revoke",
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_codes_are_one_use_and_role_bound() {
    let site = Site::new();
    let edge = site.start().await;
    let code = site.pairing_code("pos");
    let pair =
        |body: serde_json::Value| edge.call(None, Method::POST, "/v1/pair", Some(body), None);
    let (s, b) = pair(json!({"code": code, "device_name": "Kasir", "role": "tablet"})).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("role")),
        "{b}"
    );
    // Lower case and spaces are fine: people type these on tablets.
    let (s, b) =
        pair(json!({"code": code.to_lowercase().replace('-', " "), "device_name": "Kasir"})).await;
    assert_eq!(
        (s, b["device"]["role"].as_str()),
        (StatusCode::CREATED, Some("pos")),
        "{b}"
    );
    assert!(b["token"].as_str().expect("token").starts_with("sek_"));
    let (s, b) = pair(json!({"code": code, "device_name": "Kasir 2"})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("pairing_refused")),
        "a code works once: {b}"
    );
    let (s, _) = pair(json!({"code": "ZZZZ-ZZZZ", "device_name": "x"})).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Expired codes are refused too.
    let short = Site::with_config("[pairing]\ncode_ttl_secs = 30\n");
    let db_code = short.pairing_code("tablet");
    let edge2 = short.start().await;
    {
        let db = crate::harness::open_db(&short);
        db.execute(
            "UPDATE pairing_codes SET expires_at = '2000-01-01T00:00:00.000Z'",
            [],
        )
        .expect("expire");
    }
    let (s, _) = edge2
        .call(
            None,
            Method::POST,
            "/v1/pair",
            Some(json!({"code": db_code, "device_name": "x"})),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}
