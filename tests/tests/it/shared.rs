//! Records both sides edit, end to end: a branch offline and the cloud team editing the same
//! customer and the same work-order notes at once; when the link returns both sides converge to
//! the same record — per field the later writer, in the notes every sentence, on a checklist
//! item set on both sides the cloud's value — with the contests logged on both sides.

use std::time::Duration;

use sentra_system_tests::{Cloud, EdgeSite, Proxy, ProxyMode, eventually};
use serde_json::{Value, json};
use sqlx::Row as _;

async fn operator(
    cloud: &Cloud,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let http = sentra_system_tests::http();
    let mut request = http
        .request(method.clone(), format!("{}{path}", cloud.url))
        .bearer_auth(cloud.operator_token());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("operator request");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_on_shared_records_converge_identically_on_both_sides() {
    let cloud = Cloud::start().await;
    let upstream = cloud.url.trim_start_matches("http://").to_owned();
    let proxy = Proxy::start(upstream, 7).await;
    let site = EdgeSite::new("SBY01", "");
    let edge = site.start().await;
    let tablet = site.pair(&edge, "tablet").await;
    site.enroll(&proxy.url, &cloud.enrollment_token("SBY01"));

    // Shared from the start: a customer and a work order with notes.
    let (s, customer) = edge
        .call(
            Some(&tablet),
            "POST",
            "/v1/customers",
            Some(json!({"name": "Budi", "phone": "0811-111"})),
        )
        .await;
    assert_eq!(s, 201, "{customer}");
    let id = customer["id"].as_str().expect("id").to_owned();
    let (s, wo) = edge
        .call(Some(&tablet), "POST", "/v1/work-orders", Some(json!({"customer_name": "Budi", "vehicle_plate": "L 1234 AB", "complaint": "Servis berkala"})))
        .await;
    assert_eq!(s, 201, "{wo}");
    let wo = wo["id"].as_str().expect("id").to_owned();
    let notes_path = format!("/v1/work-orders/{wo}/notes");
    let (s, b) = edge
        .call(
            Some(&tablet),
            "PUT",
            &notes_path,
            Some(json!({"notes": "Ganti oli."})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    edge.drained(&tablet, Duration::from_secs(30)).await;

    // The link drops. Both sides edit the same records.
    proxy.set(ProxyMode::Down);
    let edge_patch = |body: Value| {
        let path = format!("/v1/customers/{id}");
        let edge = &edge;
        let tablet = &tablet;
        async move {
            let (s, b) = edge.call(Some(tablet), "PATCH", &path, Some(body)).await;
            assert_eq!(s, 200, "{b}");
        }
    };
    edge_patch(json!({"phone": "0812-edge", "email": "budi@bengkel.id"})).await;
    let (s, b) = edge
        .call(Some(&tablet), "PUT", &notes_path, Some(json!({"notes": "Ganti oli. Cek rem depan.", "checklist": {"rem": true, "ban": true}})))
        .await;
    assert_eq!(s, 200, "{b}");
    let st = edge.sync_status(&tablet).await;
    assert_eq!(
        st["pending_events"], 2,
        "the branch's edits wait for the link: {st}"
    );

    let cloud_customer = format!("/v1/branches/SBY01/customers/{id}");
    operator(
        &cloud,
        reqwest::Method::PATCH,
        &cloud_customer,
        Some(json!({"phone": "0899-cloud", "name": "Budi Santoso", "membership_tier": "GOLD"})),
    )
    .await;
    let cloud_doc = format!("/v1/branches/SBY01/documents/work_order/{wo}");
    operator(
        &cloud,
        reqwest::Method::PUT,
        &cloud_doc,
        Some(json!({"notes": "Ganti oli. Pelanggan menunggu.", "checklist": {"rem": false}})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The branch writes the name after the cloud did: the branch's name is the later one.
    edge_patch(json!({"name": "Budi S."})).await;

    proxy.set(ProxyMode::Pass);
    edge.drained(&tablet, Duration::from_secs(60)).await;
    let customer_path = format!("/v1/customers/{id}");
    let (edge_customer, cloud_view) = eventually(
        Duration::from_secs(30),
        "both sides to show the same customer",
        || async {
            let (_, at_edge) = edge.call(Some(&tablet), "GET", &customer_path, None).await;
            let at_cloud = operator(&cloud, reqwest::Method::GET, &cloud_customer, None).await;
            (at_edge["fields"] == at_cloud["fields"]).then_some((at_edge, at_cloud))
        },
    )
    .await;
    let fields = &edge_customer["fields"];
    assert_eq!(
        fields["phone"], "0899-cloud",
        "the cloud wrote the phone later: {cloud_view}"
    );
    assert_eq!(fields["name"], "Budi S.", "the branch wrote the name later");
    assert_eq!(fields["email"], "budi@bengkel.id");
    assert_eq!(fields["membership_tier"], "GOLD");

    let notes = eventually(
        Duration::from_secs(30),
        "both sides to show the same notes",
        || async {
            let (_, at_edge) = edge.call(Some(&tablet), "GET", &notes_path, None).await;
            let at_cloud = operator(&cloud, reqwest::Method::GET, &cloud_doc, None).await;
            (at_edge == at_cloud).then_some(at_edge)
        },
    )
    .await;
    let text = notes["notes"].as_str().expect("notes");
    assert!(
        text.contains("Cek rem depan.")
            && text.contains("Pelanggan menunggu.")
            && text.starts_with("Ganti oli."),
        "both sides' sentences are kept: {text:?}"
    );
    assert_eq!(
        notes["checklist"]["rem"], false,
        "set on both sides: the cloud's value"
    );
    assert_eq!(notes["checklist"]["ban"], true);

    // Every contest is logged, on both sides.
    let mut pg = cloud.pg().await;
    let cloud_log: Vec<(String, String, String)> = sqlx::query(
        "SELECT field, kept_value::text, lost_value::text FROM field_overwrites ORDER BY id",
    )
    .fetch_all(&mut pg)
    .await
    .expect("cloud log")
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    assert!(
        cloud_log.contains(&(
            "phone".into(),
            "\"0899-cloud\"".into(),
            "\"0812-edge\"".into()
        )),
        "{cloud_log:?}"
    );
    assert!(
        cloud_log.contains(&(
            "name".into(),
            "\"Budi S.\"".into(),
            "\"Budi Santoso\"".into()
        )),
        "{cloud_log:?}"
    );
    let db = site.open_db();
    let edge_log: Vec<(String, String, String)> = db
        .prepare("SELECT field, kept_value, lost_value FROM field_overwrites ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(
        edge_log.contains(&(
            "phone".into(),
            "\"0899-cloud\"".into(),
            "\"0812-edge\"".into()
        )),
        "{edge_log:?}"
    );
    assert!(
        edge_log.contains(&(
            "name".into(),
            "\"Budi S.\"".into(),
            "\"Budi Santoso\"".into()
        )),
        "{edge_log:?}"
    );
}
