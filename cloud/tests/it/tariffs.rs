//! Rental tariffs as master data: `PUT /v1/branches/{branch}/tariffs/{sku}` (operator only,
//! bounded whole rupiah), a change-log entry only when something changed, pulled by the
//! branch's boxes as a `tariff` change.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cloud::Cloud;

fn tariff(sku: &str, daily_rate: i64, deposit: i64, late_fee_per_day: i64) -> Value {
    json!({"sku": sku, "daily_rate": daily_rate, "deposit": deposit, "late_fee_per_day": late_fee_per_day})
}

#[tokio::test]
async fn tariffs_are_master_data_the_branch_pulls_once() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("JKT01").await;
    let path = "/v1/branches/JKT01/tariffs/AVZ";

    let first = cloud
        .bearer(
            &cloud.operator,
            Method::PUT,
            path,
            Some(tariff("AVZ", 350_000, 1_000_000, 100_000)),
        )
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        (&first.body["changed"], &first.body["cursor"]),
        (&json!(true), &json!(1))
    );
    assert_eq!(first.body["record"]["deposit"], 1_000_000);
    // The same value again changes nothing and appends nothing; a new rate is a new change.
    let same = cloud
        .bearer(
            &cloud.operator,
            Method::PUT,
            path,
            Some(tariff("AVZ", 350_000, 1_000_000, 100_000)),
        )
        .await;
    assert_eq!(
        (same.status, &same.body["changed"], &same.body["cursor"]),
        (200, &json!(false), &Value::Null)
    );
    let raised = cloud
        .bearer(
            &cloud.operator,
            Method::PUT,
            path,
            Some(tariff("AVZ", 375_000, 1_000_000, 100_000)),
        )
        .await;
    assert_eq!((raised.status, &raised.body["cursor"]), (200, &json!(2)));
    assert_eq!(
        cloud
            .scalar("SELECT daily_rate FROM tariffs WHERE branch_id = 'JKT01' AND sku = 'AVZ'")
            .await,
        375_000
    );

    let page = cloud.pull(&device, 0, None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let page: sentra_protocol::sync::PullPage =
        serde_json::from_value(page.body).expect("the body parses as the protocol's PullPage");
    assert_eq!(page.changes.len(), 2);
    match &page.changes[1].body {
        sentra_protocol::sync::ChangeBody::Tariff(t) => {
            assert_eq!((t.sku.as_str(), t.daily_rate), ("AVZ", 375_000));
        }
        other => panic!("expected a tariff, got {other:?}"),
    }

    // Operators only; a known branch; the SKU of the path; bounded whole rupiah. Nothing changes.
    let by_device = cloud
        .signed(
            &device,
            Method::PUT,
            path,
            Some(tariff("AVZ", 1, 0, 0).to_string().into_bytes()),
        )
        .await;
    assert_eq!((by_device.status, by_device.code()), (403, "forbidden"));
    for (p, body, status, code) in [
        (
            "/v1/branches/NOPE/tariffs/AVZ",
            tariff("AVZ", 1, 0, 0),
            404,
            "not_found",
        ),
        (path, tariff("XPD", 1, 0, 0), 422, "invalid"),
        (path, tariff("AVZ", 0, 0, 0), 422, "invalid"),
        (path, tariff("AVZ", 1, -5, 0), 422, "invalid"),
        (path, tariff("AVZ", 1, 0, -1), 422, "invalid"),
        (path, tariff("AVZ", 100_000_001, 0, 0), 422, "invalid"),
        (path, tariff("AVZ", 1, 1_000_000_001, 0), 422, "invalid"),
        (path, json!({"sku": "AVZ", "daily_rate": 1}), 422, "invalid"),
        (
            path,
            json!({"sku": "AVZ", "daily_rate": 1.5, "deposit": 0, "late_fee_per_day": 0}),
            422,
            "invalid",
        ),
    ] {
        let answer = cloud
            .bearer(&cloud.operator, Method::PUT, p, Some(body.clone()))
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (status, code),
            "{p} {body}: {answer:?}"
        );
    }
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM branch_changes WHERE branch_id = 'JKT01'")
            .await,
        2,
        "refusals append nothing"
    );
    assert_eq!(
        cloud
            .scalar("SELECT daily_rate FROM tariffs WHERE branch_id = 'JKT01' AND sku = 'AVZ'")
            .await,
        375_000
    );
}
