//! Head office's reads of a branch (`GET /v1/branches/{branch}/reports/...`, operator token):
//! what a branch pushed, summed per day of the branch's own calendar, by method, by SKU, and the
//! work orders still open.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cloud::{Answer, Cloud};

async fn get(cloud: &Cloud, path: &str) -> Answer {
    cloud.bearer(&cloud.operator, Method::GET, path, None).await
}

#[tokio::test]
async fn head_office_reads_sales_payments_stock_and_open_work_orders_of_a_branch() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;

    // Two work orders' lives, both invoiced at 09:15 UTC on 2 November (16:15 WIB). The first
    // is paid by QRIS at once; the second in cash at 17:30 UTC, which is already 3 November in
    // Jakarta. Then one work order that stays open.
    let first = device.outbox.workshop_cycle("OF-1");
    let mut second = device.outbox.workshop_cycle("OF-1");
    let paid_late = second.last_mut().expect("a payment");
    paid_late.payload["method"] = json!("CASH");
    paid_late.payload["reference"] = Value::Null;
    paid_late.payload["received_at"] = json!("2026-11-02T17:30:00.000Z");
    let open = device.outbox.id("wo");
    let open_created = device.outbox.work_order(&open);
    let total = |events: &[sentra_protocol::Event]| {
        events
            .iter()
            .find(|e| e.op == "issued")
            .and_then(|e| e.payload["total"].as_i64())
            .expect("an invoice total")
    };
    let (first_total, second_total) = (total(&first), total(&second));
    let mut events = first;
    events.extend(second);
    events.push(open_created);
    // A third invoice paid by QRIS at the same time as the first, the payment voided at the
    // branch (typed in error) and the void sent twice: no report counts it.
    let third = device.outbox.workshop_cycle("OF-1");
    let third_total = total(&third);
    let voided = third.last().expect("a payment").clone();
    let void = |outbox: &mut crate::fixtures::Outbox| {
        outbox.raw(
            sentra_protocol::EntityKind::Payment,
            &voided.entity_id,
            "voided",
            json!({"id": voided.entity_id, "invoice_id": voided.payload["invoice_id"], "manager_id": "mgr-rina",
                   "reason": "Salah input", "voided_at": "2026-11-02T09:20:00.000Z"}),
        )
    };
    events.extend(third);
    events.push(void(&mut device.outbox));
    events.push(void(&mut device.outbox));
    let pushed = cloud.push(&device, &events).await;
    assert_eq!(pushed.status, 200, "{pushed:?}");
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM parked_events WHERE branch_id = 'JKT01'")
            .await,
        0,
        "every event applied"
    );
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM payment_voids WHERE branch_id = 'JKT01'")
            .await,
        1,
        "a void sent twice is one"
    );

    let sales = get(
        &cloud,
        "/v1/branches/JKT01/reports/sales?from=2026-11-01&to=2026-11-03",
    )
    .await;
    assert_eq!(sales.status, 200, "{sales:?}");
    assert_eq!(sales.body["utc_offset"], "+07:00");
    let days = sales.body["days"].as_array().expect("days");
    assert_eq!(days.len(), 3, "every day of the range, zeros included");
    assert_eq!(days[0]["workshop"]["count"], 0);
    assert_eq!(days[1]["day"], "2026-11-02");
    // Voiding a payment leaves its invoice a sale.
    let invoiced = first_total + second_total + third_total;
    assert_eq!(days[1]["workshop"]["count"], 3);
    assert_eq!(days[1]["workshop"]["total"], invoiced);
    assert_eq!(days[1]["net"], invoiced);
    let subtotal = days[1]["workshop"]["subtotal"]
        .as_i64()
        .expect("a subtotal");
    let tax = days[1]["workshop"]["tax"].as_i64().expect("a tax");
    assert_eq!(subtotal + tax, invoiced);
    assert_eq!(days[2]["net"], 0);

    // In Jakarta the cash came on the 3rd; in UTC on the 2nd.
    let payments = get(
        &cloud,
        "/v1/branches/JKT01/reports/payments?from=2026-11-01&to=2026-11-03",
    )
    .await;
    assert_eq!(payments.status, 200, "{payments:?}");
    let rows = payments.body["rows"].as_array().expect("rows");
    let seen: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["day"].as_str().unwrap_or_default(),
                r["method"].as_str().unwrap_or_default(),
                r["net"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("2026-11-02", "QRIS", first_total),
            ("2026-11-03", "CASH", second_total)
        ]
    );
    let utc = get(
        &cloud,
        "/v1/branches/JKT01/reports/payments?from=2026-11-02&to=2026-11-02&utc_offset=%2B00:00",
    )
    .await;
    assert_eq!(utc.status, 200, "{utc:?}");
    assert_eq!(utc.body["rows"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        utc.body["totals"],
        json!([{"method": "CASH", "net": second_total}, {"method": "QRIS", "net": first_total}])
    );

    // Each cycle received 4 and dispensed 2.
    let stock = get(&cloud, "/v1/branches/JKT01/reports/stock").await;
    assert_eq!(stock.status, 200, "{stock:?}");
    assert_eq!(stock.body["levels"][0]["sku"], "OF-1");
    assert_eq!(stock.body["levels"][0]["on_hand"], 6);
    assert_eq!(stock.body["truncated"], false);

    let open_now = get(&cloud, "/v1/branches/JKT01/reports/open-work-orders").await;
    assert_eq!(open_now.status, 200, "{open_now:?}");
    let listed: Vec<&str> = open_now.body["work_orders"]
        .as_array()
        .expect("work orders")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(
        listed,
        vec![open.as_str()],
        "the invoiced ones are not open"
    );
    assert_eq!(open_now.body["work_orders"][0]["status"], "OPEN");

    // Operators only, a known branch, a checked query.
    let by_device = cloud
        .signed(
            &device,
            Method::GET,
            "/v1/branches/JKT01/reports/stock",
            None,
        )
        .await;
    assert_eq!((by_device.status, by_device.code()), (403, "forbidden"));
    let portal = cloud.api_token("portal-1", "portal").await;
    let by_portal = cloud
        .bearer(
            &portal,
            Method::GET,
            "/v1/branches/JKT01/reports/stock",
            None,
        )
        .await;
    assert_eq!((by_portal.status, by_portal.code()), (403, "forbidden"));
    for (path, status, code) in [
        (
            "/v1/branches/NOPE/reports/sales?from=2026-11-01&to=2026-11-01",
            404,
            "not_found",
        ),
        ("/v1/branches/JKT01/reports/sales", 400, "bad_query"),
        (
            "/v1/branches/JKT01/reports/sales?from=2026-11-02&to=2026-11-01",
            400,
            "bad_query",
        ),
        (
            "/v1/branches/JKT01/reports/payments?from=2020-01-01&to=2026-11-01",
            400,
            "bad_query",
        ),
        (
            "/v1/branches/JKT01/reports/payments?from=2026-11-01&to=2026-11-01&utc_offset=WIB",
            400,
            "bad_query",
        ),
        ("/v1/branches/JKT01/reports/stock?page=2", 400, "bad_query"),
        (
            "/v1/branches/NOPE/reports/open-work-orders",
            404,
            "not_found",
        ),
    ] {
        let answer = get(&cloud, path).await;
        assert_eq!(
            (answer.status, answer.code()),
            (status, code),
            "{path}: {answer:?}"
        );
    }
}
