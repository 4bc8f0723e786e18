//! Bad input gets a 4xx JSON error that names what is wrong, and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{Site, open_db};

struct Case {
    name: &'static str,
    role: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: String,
    idem: Option<String>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn case(
    name: &'static str,
    role: &'static str,
    path: &'static str,
    body: &str,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        role,
        method: "POST",
        path,
        content_type: "application/json",
        body: body.to_owned(),
        idem: None,
        status,
        code,
        field,
    }
}

fn snapshot(site: &Site) -> (i64, i64, i64, i64) {
    open_db(site)
        .query_row(
            "SELECT (SELECT count(*) FROM sync_event_logs), (SELECT count(*) FROM work_orders), (SELECT count(*) FROM stock_movements), (SELECT count(*) FROM inspections)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("snapshot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_and_change_nothing() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let store = edge.pair(&site, "storekeeper").await;
    let pos = edge.pair(&site, "pos").await;
    let (_, wo) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            serde_json::json!({"customer_name": "A", "vehicle_plate": "B 1 A", "complaint": "x"}),
        )
        .await;
    let wo = wo["id"].as_str().expect("id").to_owned();
    let parts_path: &'static str =
        Box::leak(format!("/v1/work-orders/{wo}/parts").into_boxed_str());
    let status_path: &'static str =
        Box::leak(format!("/v1/work-orders/{wo}/status").into_boxed_str());
    let digest = "ab".repeat(32);
    let good_wo = r#"{"customer_name":"Budi","vehicle_plate":"B 1234 XYZ","complaint":"Rem"}"#;

    let mut cases = vec![
        case(
            "malformed JSON",
            "tablet",
            "/v1/work-orders",
            r#"{"customer_name": "Budi", "#,
            400,
            "invalid_json",
            None,
        ),
        case(
            "not an object",
            "tablet",
            "/v1/work-orders",
            "[1,2,3]",
            422,
            "invalid_field",
            Some("body"),
        ),
        case(
            "empty body",
            "tablet",
            "/v1/work-orders",
            "",
            400,
            "invalid_json",
            None,
        ),
        case(
            "missing field",
            "tablet",
            "/v1/work-orders",
            r#"{"customer_name":"Budi","vehicle_plate":"B 1 A"}"#,
            422,
            "invalid_field",
            Some("body"),
        ),
        case(
            "unknown field",
            "tablet",
            "/v1/work-orders",
            r#"{"customer_name":"Budi","vehicle_plate":"B 1 A","complaint":"x","price":1}"#,
            422,
            "invalid_field",
            Some("price"),
        ),
        case(
            "bad plate",
            "tablet",
            "/v1/work-orders",
            r#"{"customer_name":"Budi","vehicle_plate":"12345","complaint":"x"}"#,
            422,
            "invalid_field",
            Some("vehicle_plate"),
        ),
        case(
            "blank name",
            "tablet",
            "/v1/work-orders",
            r#"{"customer_name":"   ","vehicle_plate":"B 1 A","complaint":"x"}"#,
            422,
            "invalid_field",
            Some("customer_name"),
        ),
        case(
            "control characters",
            "tablet",
            "/v1/work-orders",
            "{\"customer_name\":\"Bu\\u0000di\",\"vehicle_plate\":\"B 1 A\",\"complaint\":\"x\"}",
            422,
            "invalid_field",
            Some("customer_name"),
        ),
        case(
            "bad phone",
            "tablet",
            "/v1/work-orders",
            r#"{"customer_name":"Budi","customer_phone":"call me","vehicle_plate":"B 1 A","complaint":"x"}"#,
            422,
            "invalid_field",
            Some("customer_phone"),
        ),
        case(
            "unknown mechanic",
            "tablet",
            "/v1/work-orders",
            r#"{"customer_name":"Budi","vehicle_plate":"B 1 A","complaint":"x","mechanic_id":"M99"}"#,
            422,
            "invalid_field",
            Some("mechanic_id"),
        ),
        case(
            "qty as text",
            "storekeeper",
            parts_path,
            r#"{"sku":"BRK-PAD-FR","qty":"two"}"#,
            422,
            "invalid_field",
            Some("qty"),
        ),
        case(
            "qty zero",
            "storekeeper",
            parts_path,
            r#"{"sku":"BRK-PAD-FR","qty":0}"#,
            422,
            "invalid_field",
            Some("qty"),
        ),
        case(
            "qty negative",
            "storekeeper",
            parts_path,
            r#"{"sku":"BRK-PAD-FR","qty":-3}"#,
            422,
            "invalid_field",
            Some("qty"),
        ),
        case(
            "qty float",
            "storekeeper",
            parts_path,
            r#"{"sku":"BRK-PAD-FR","qty":1.5}"#,
            422,
            "invalid_field",
            Some("qty"),
        ),
        case(
            "sku with spaces",
            "storekeeper",
            parts_path,
            r#"{"sku":"BRK PAD","qty":1}"#,
            422,
            "invalid_field",
            Some("sku"),
        ),
        case(
            "unknown sku",
            "storekeeper",
            parts_path,
            r#"{"sku":"NOPE","qty":1}"#,
            422,
            "invalid_field",
            Some("sku"),
        ),
        case(
            "stock below zero",
            "storekeeper",
            parts_path,
            r#"{"sku":"BRK-PAD-FR","qty":21}"#,
            409,
            "insufficient_stock",
            None,
        ),
        case(
            "receipt of unknown part",
            "storekeeper",
            "/v1/stock/receipts",
            r#"{"sku":"NOPE","qty":1}"#,
            422,
            "invalid_field",
            Some("sku"),
        ),
        case(
            "huge receipt",
            "storekeeper",
            "/v1/stock/receipts",
            r#"{"sku":"BRK-PAD-FR","qty":99999999999}"#,
            422,
            "invalid_field",
            Some("qty"),
        ),
        case(
            "invalid status",
            "tablet",
            status_path,
            r#"{"status":"FINISHED"}"#,
            422,
            "invalid_field",
            Some("status"),
        ),
        case(
            "invoice of open work",
            "pos",
            "/v1/invoices",
            &format!(r#"{{"work_order_id":"{wo}"}}"#),
            409,
            "invalid_transition",
            None,
        ),
        case(
            "negative labour",
            "pos",
            "/v1/invoices",
            &format!(r#"{{"work_order_id":"{wo}","labour":[{{"description":"x","amount":-1}}]}}"#),
            422,
            "invalid_field",
            Some("labour[0].amount"),
        ),
        case(
            "unknown work order",
            "pos",
            "/v1/invoices",
            r#"{"work_order_id":"nope"}"#,
            404,
            "not_found",
            None,
        ),
        case(
            "bad id in path",
            "tablet",
            "/v1/work-orders/a%20b/status",
            r#"{"status":"DONE"}"#,
            422,
            "invalid_field",
            Some("id"),
        ),
        case(
            "unknown asset",
            "tablet",
            "/v1/inspections",
            &format!(
                r#"{{"asset_id":"CAR-999","kind":"HANDOVER","checklist":[{{"item":"a","ok":true}}],"signature":{{"signer":"B","digest":"{digest}"}}}}"#
            ),
            422,
            "invalid_field",
            Some("asset_id"),
        ),
        case(
            "bad photo digest",
            "tablet",
            "/v1/inspections",
            &format!(
                r#"{{"asset_id":"CAR-001","kind":"HANDOVER","checklist":[{{"item":"a","ok":true}}],"photos":["abc"],"signature":{{"signer":"B","digest":"{digest}"}}}}"#
            ),
            422,
            "invalid_field",
            Some("photos[0]"),
        ),
        case(
            "empty checklist",
            "tablet",
            "/v1/inspections",
            &format!(
                r#"{{"asset_id":"CAR-001","kind":"HANDOVER","checklist":[],"signature":{{"signer":"B","digest":"{digest}"}}}}"#
            ),
            422,
            "invalid_field",
            Some("checklist"),
        ),
        case(
            "fuel over 100",
            "tablet",
            "/v1/inspections",
            &format!(
                r#"{{"asset_id":"CAR-001","kind":"RETURN","checklist":[{{"item":"a","ok":true}}],"fuel_percent":150,"signature":{{"signer":"B","digest":"{digest}"}}}}"#
            ),
            422,
            "invalid_field",
            Some("fuel_percent"),
        ),
        case(
            "unknown path",
            "tablet",
            "/v1/nope",
            "{}",
            404,
            "not_found",
            None,
        ),
        case(
            "bad pairing code",
            "tablet",
            "/v1/pair",
            r#"{"code":"","device_name":"x"}"#,
            422,
            "invalid_field",
            Some("code"),
        ),
    ];
    cases.push(Case {
        content_type: "text/plain",
        ..case(
            "not JSON content type",
            "tablet",
            "/v1/work-orders",
            good_wo,
            415,
            "unsupported_media_type",
            None,
        )
    });
    cases.push(case(
        "oversized body",
        "tablet",
        "/v1/work-orders",
        &format!(
            r#"{{"customer_name":"{}","vehicle_plate":"B 1 A","complaint":"x"}}"#,
            "x".repeat(70_000)
        ),
        413,
        "body_too_large",
        None,
    ));
    cases.push(Case {
        idem: Some("k".repeat(200)),
        ..case(
            "oversized idempotency key",
            "tablet",
            "/v1/work-orders",
            good_wo,
            400,
            "invalid_idempotency_key",
            None,
        )
    });
    cases.push(Case {
        idem: Some("has space".into()),
        ..case(
            "idempotency key with a space",
            "tablet",
            "/v1/work-orders",
            good_wo,
            400,
            "invalid_idempotency_key",
            None,
        )
    });
    cases.push(Case {
        method: "DELETE",
        ..case(
            "wrong method",
            "tablet",
            "/v1/work-orders",
            "",
            405,
            "method_not_allowed",
            None,
        )
    });

    let before = snapshot(&site);
    let mut failures = Vec::new();
    for c in &cases {
        let token = match c.role {
            "tablet" => &tablet.token,
            "storekeeper" => &store.token,
            _ => &pos.token,
        };
        let mut req = edge
            .http
            .request(
                c.method.parse::<Method>().expect("method"),
                format!("{}{}", edge.base, c.path),
            )
            .bearer_auth(token)
            .header("content-type", c.content_type)
            .body(c.body.clone());
        if let Some(k) = &c.idem {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        let body: Value =
            serde_json::from_str(&resp.text().await.expect("text")).unwrap_or(Value::Null);
        let ok = status == StatusCode::from_u16(c.status).expect("status")
            && body["error"]["code"] == c.code
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
            && c.field.is_none_or(|f| body["error"]["field"] == f);
        if !ok {
            failures.push(format!(
                "{}: got {status} {body}, want {} {} {:?}",
                c.name, c.status, c.code, c.field
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(snapshot(&site), before, "bad input changed nothing");
}

/// A day far in the future used to reach `next_day().expect` in the store and stop the box
/// (the store thread died: every later request got 503 while `/readyz` said ready). Now it is
/// a 422 naming the range, and the box serves the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_days_are_refused_and_the_box_keeps_serving() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let pos = edge.pair(&site, "pos").await;
    let before = snapshot(&site);

    for (path, field) in [
        (
            "/v1/assets/CAR-001/availability?from=9999-12-31&to=9999-12-31",
            "from",
        ),
        (
            "/v1/assets/CAR-001/availability?from=2099-12-30&to=2100-01-01",
            "to",
        ),
        (
            "/v1/assets/CAR-001/availability?from=1999-12-31&to=2000-01-01",
            "from",
        ),
    ] {
        let (s, b) = edge.get(&pos, path).await;
        assert_eq!(
            (s, b["error"]["code"].as_str(), b["error"]["field"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("invalid_field"),
                Some(field)
            ),
            "{path}: {b}"
        );
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("2000-01-01 to 2099-12-31")),
            "the message says the range: {b}"
        );
    }
    let (s, b) = edge
        .post(
            &pos,
            "/v1/bookings",
            serde_json::json!({"asset_id": "CAR-001", "from": "9999-12-31", "to": "9999-12-31", "customer": "Budi"}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("from")),
        "{b}"
    );

    // Still alive, and the store still answers: the last day of the range is a real question.
    let (s, b) = edge
        .get(
            &pos,
            "/v1/assets/CAR-001/availability?from=2099-12-31&to=2099-12-31",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["free"], true, "{b}");
    let ready = edge
        .http
        .get(format!("{}/readyz", edge.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(snapshot(&site), before, "refused input changed nothing");
}
