//! Master data PUTs and `GET /v1/sync/pull`: order, paging, isolation between branches.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cloud::{Answer, Cloud};

fn part(sku: &str, price: i64) -> Value {
    json!({"sku": sku, "name": format!("Part {sku}"), "barcode": null, "price": price, "unit": "pcs"})
}

async fn put(cloud: &Cloud, path: &str, body: Value) -> Answer {
    cloud
        .bearer(&cloud.operator, Method::PUT, path, Some(body))
        .await
}

#[tokio::test]
async fn master_data_reaches_the_branch_in_order_and_once() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("JKT01").await;

    let writes = [
        ("/v1/branches/JKT01/parts/OF-1", part("OF-1", 45_000)),
        (
            "/v1/branches/JKT01/mechanics/m1",
            json!({"id": "m1", "name": "Budi", "active": true}),
        ),
        (
            "/v1/branches/JKT01/assets/car-1",
            json!({"id": "car-1", "sku": "AVZ", "plate": "B 1 CD", "name": "Avanza"}),
        ),
        ("/v1/branches/JKT01/parts/OF-1", part("OF-1", 47_500)),
    ];
    for (index, (path, body)) in writes.iter().enumerate() {
        let answer = put(&cloud, path, body.clone()).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.body["changed"], true);
        assert_eq!(answer.body["cursor"], index + 1);
    }
    // The same value again changes nothing and appends nothing.
    let same = put(&cloud, writes[3].0, writes[3].1.clone()).await;
    assert_eq!(
        (same.status, &same.body["changed"], &same.body["cursor"]),
        (200, &json!(false), &Value::Null)
    );

    let page = cloud.pull(&device, 0, None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let page: sentra_protocol::sync::PullPage =
        serde_json::from_value(page.body).expect("the body parses as the protocol's PullPage");
    assert_eq!((page.cursor, page.more), (4, false));
    let kinds: Vec<(u64, String)> = page
        .changes
        .iter()
        .map(|change| {
            let value = serde_json::to_value(change).expect("serialise");
            (
                change.cursor,
                value["kind"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "part".to_owned()),
            (2, "mechanic".into()),
            (3, "asset".into()),
            (4, "part".into())
        ]
    );
    match &page.changes[3].body {
        sentra_protocol::sync::ChangeBody::Part(part) => {
            assert_eq!(part.price, 47_500, "the latest value last")
        }
        other => panic!("expected a part, got {other:?}"),
    }
    assert_eq!(
        cloud
            .scalar("SELECT price FROM parts WHERE branch_id = 'JKT01' AND sku = 'OF-1'")
            .await,
        47_500
    );

    // From a cursor: only what came after.
    let rest = cloud.pull(&device, 3, None).await;
    assert_eq!(rest.body["changes"].as_array().map(Vec::len), Some(1));
    let none = cloud.pull(&device, 4, None).await;
    assert_eq!(
        (
            &none.body["changes"],
            &none.body["cursor"],
            &none.body["more"]
        ),
        (&json!([]), &json!(4), &json!(false))
    );
}

#[tokio::test]
async fn pull_pages_with_limit() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("JKT01").await;
    for index in 0..7 {
        let sku = format!("P-{index}");
        let answer = put(
            &cloud,
            &format!("/v1/branches/JKT01/parts/{sku}"),
            part(&sku, 1000 + index),
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let mut cursor = 0;
    let mut pages = Vec::new();
    loop {
        let page = cloud.pull(&device, cursor, Some(3)).await;
        assert_eq!(page.status, 200, "{page:?}");
        let cursors: Vec<u64> = page.body["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .filter_map(|change| change["cursor"].as_u64())
            .collect();
        cursor = page.body["cursor"].as_u64().expect("cursor");
        let more = page.body["more"].as_bool().expect("more");
        pages.push((cursors, more));
        if !more {
            break;
        }
    }
    assert_eq!(
        pages,
        [
            (vec![1, 2, 3], true),
            (vec![4, 5, 6], true),
            (vec![7], false)
        ]
    );
    assert_eq!(cursor, 7);

    for query in ["cursor=0&limit=0", "cursor=-1", "cursor=abc"] {
        let answer = cloud
            .signed(
                &device,
                Method::GET,
                &format!("/v1/sync/pull?{query}"),
                None,
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "bad_query"),
            "{query}: {answer:?}"
        );
    }
    // Above the maximum is capped, not refused.
    let big = cloud.pull(&device, 0, Some(1_000_000)).await;
    assert_eq!(big.body["changes"].as_array().map(Vec::len), Some(7));
}

#[tokio::test]
async fn a_branch_sees_only_its_own_changes() {
    let cloud = Cloud::start().await;
    let a = cloud.enroll("JKT01").await;
    let b = cloud.enroll("SBY02").await;
    assert_eq!(
        put(&cloud, "/v1/branches/JKT01/parts/OF-1", part("OF-1", 1))
            .await
            .status,
        200
    );
    assert_eq!(
        put(&cloud, "/v1/branches/SBY02/parts/OF-9", part("OF-9", 9))
            .await
            .status,
        200
    );
    assert_eq!(
        put(&cloud, "/v1/branches/JKT01/parts/OF-2", part("OF-2", 2))
            .await
            .status,
        200
    );

    let skus = |answer: &Answer| -> Vec<String> {
        answer.body["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|change| {
                format!(
                    "{}@{}",
                    change["sku"].as_str().unwrap_or_default(),
                    change["cursor"]
                )
            })
            .collect()
    };
    assert_eq!(
        skus(&cloud.pull(&a, 0, None).await),
        ["OF-1@1", "OF-2@2"],
        "cursors are per branch"
    );
    assert_eq!(skus(&cloud.pull(&b, 0, None).await), ["OF-9@1"]);
}

#[tokio::test]
async fn master_data_needs_an_operator_a_known_branch_and_a_valid_record() {
    let cloud = Cloud::start().await;
    let device = cloud.enroll("JKT01").await;
    let path = "/v1/branches/JKT01/parts/OF-1";
    let body = part("OF-1", 45_000).to_string().into_bytes();

    let by_device = cloud.signed(&device, Method::PUT, path, Some(body)).await;
    assert_eq!(
        (by_device.status, by_device.code()),
        (403, "forbidden"),
        "{by_device:?}"
    );
    let portal = cloud.api_token("portal", "portal").await;
    let by_portal = cloud
        .bearer(&portal, Method::PUT, path, Some(part("OF-1", 1)))
        .await;
    assert_eq!(
        (by_portal.status, by_portal.code()),
        (403, "forbidden"),
        "{by_portal:?}"
    );
    let anonymous = cloud
        .call(Method::PUT, path, Some(b"{}".to_vec()), &[])
        .await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (401, "unauthorized"),
        "{anonymous:?}"
    );

    let cases = [
        (
            "/v1/branches/NOPE/parts/OF-1",
            part("OF-1", 1),
            404,
            "not_found",
        ),
        (
            "/v1/branches/bad%20id/parts/OF-1",
            part("OF-1", 1),
            404,
            "not_found",
        ),
        (path, part("OF-2", 1), 422, "invalid"),
        (path, part("OF-1", -1), 422, "invalid"),
        (path, json!({"sku": "OF-1"}), 422, "invalid"),
        (
            "/v1/branches/JKT01/mechanics/m1",
            json!({"id": "m1", "name": "", "active": true}),
            422,
            "invalid",
        ),
    ];
    for (path, body, status, code) in cases {
        let answer = put(&cloud, path, body.clone()).await;
        assert_eq!(
            (answer.status, answer.code()),
            (status, code),
            "{path} {body}: {answer:?}"
        );
    }
    assert_eq!(
        cloud.scalar("SELECT count(*) FROM branch_changes").await,
        0,
        "nothing appended"
    );
}
