//! Records both sides edit, against the real cloud: customers and vehicles merged per field by
//! HLC with every contest logged, automerge documents merged from branch events and operator
//! edits, and events of an entity this cloud does not know parked without blocking.

use reqwest::Method;
use sentra_protocol::doc::{self, DocEdit, SharedDoc};
use sentra_protocol::{EntityKind, Hlc};
use serde_json::json;

use crate::cloud::Cloud;

#[tokio::test]
async fn an_unknown_entity_is_parked_by_name_and_does_not_block() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let events = vec![
        device.outbox.receipt("OF-1", 2),
        device.outbox.receipt("OF-1", 3),
    ];
    let mut body: serde_json::Value =
        serde_json::from_slice(&crate::fixtures::batch(&events)).expect("a batch is JSON");
    body["events"][0]["entity"] = json!("spaceship");
    let answer = cloud
        .signed(
            &device,
            Method::POST,
            "/v1/sync/push",
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["cursor"], 2);
    assert_eq!(answer.body["applied"], 1);
    assert_eq!(answer.body["parked"][0]["entity"], "spaceship");
    let reason = answer.body["parked"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("not known to this cloud"), "{reason}");
    assert_eq!(cloud.scalar("SELECT on_hand FROM stock_levels").await, 3);
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM parked_events WHERE entity = 'spaceship'")
            .await,
        1
    );
    assert_eq!(cloud.audit(&device).await, 2);
}

#[tokio::test]
async fn customer_fields_are_last_writer_wins_by_hlc_and_every_contest_is_logged() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let set = |fields: serde_json::Value| json!({"id": "cust-1", "fields": fields});
    let e1 = device.outbox.raw(
        EntityKind::Customer,
        "cust-1",
        "fields_set",
        set(json!({"name": "Budi", "phone": "0811"})),
    );
    assert_eq!(cloud.push(&device, &[e1]).await.status, 200);

    // The cloud team edits the phone: stamped after the branch's, so it wins; it goes out in
    // the change log.
    let answer = cloud
        .bearer(
            &cloud.operator,
            Method::PATCH,
            "/v1/branches/JKT01/customers/cust-1",
            Some(json!({"phone": "0822", "membership_tier": "GOLD"})),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["fields"]["phone"], "0822");
    assert_eq!(answer.body["fields"]["name"], "Budi");

    // An edit the branch made earlier (offline) arrives late: it loses, and is logged.
    let mut late = device.outbox.raw(
        EntityKind::Customer,
        "cust-1",
        "fields_set",
        set(json!({"phone": "0833", "email": "budi@example.id"})),
    );
    late.hlc = Hlc::new(1_000, 0);
    assert_eq!(cloud.push(&device, &[late]).await.status, 200);
    let view = cloud
        .bearer(
            &cloud.operator,
            Method::GET,
            "/v1/branches/JKT01/customers/cust-1",
            None,
        )
        .await;
    assert_eq!(view.status, 200, "{view:?}");
    assert_eq!(view.body["fields"]["phone"], "0822", "the later stamp kept");
    assert_eq!(
        view.body["fields"]["email"], "budi@example.id",
        "an untouched field takes any stamp"
    );
    assert_eq!(
        cloud
            .scalar(
                "SELECT count(*) FROM field_overwrites WHERE field = 'phone'
                 AND kept_value = '\"0822\"' AND lost_value = '\"0833\"' AND kept_origin = 'cloud'"
            )
            .await,
        1
    );
    assert_eq!(
        cloud
            .scalar(
                "SELECT count(*) FROM field_overwrites WHERE field = 'phone'
                 AND kept_value = '\"0822\"' AND lost_value = '\"0811\"'"
            )
            .await,
        1,
        "the cloud's overwrite of the branch's first value is logged too"
    );
    // A branch may not set the cloud's master field: parked with the reason.
    let tier = device.outbox.raw(
        EntityKind::Customer,
        "cust-1",
        "fields_set",
        set(json!({"membership_tier": "PLATINUM"})),
    );
    let answer = cloud.push(&device, &[tier]).await;
    assert_eq!(answer.body["parked"].as_array().map(Vec::len), Some(1));
    // The view the cloud team queries.
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM customers WHERE fields->>'membership_tier' = 'GOLD'")
            .await,
        1
    );

    // The branch pulls the cloud's field changes, stamped.
    let page = cloud.pull(&device, 0, None).await;
    let fields: Vec<&serde_json::Value> = page.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["kind"] == "field")
        .collect();
    assert_eq!(fields.len(), 2, "{page:?}");
    assert!(fields.iter().all(|f| f["origin"] == "cloud"));
    // Bad operator input changes nothing.
    let bad = cloud
        .bearer(
            &cloud.operator,
            Method::PATCH,
            "/v1/branches/JKT01/vehicles/veh-1",
            Some(json!({"year": 1800})),
        )
        .await;
    assert_eq!((bad.status, bad.code()), (422, "invalid"), "{bad:?}");
    assert_eq!(cloud.scalar("SELECT count(*) FROM vehicles").await, 0);
}

#[tokio::test]
async fn documents_merge_branch_changes_and_cloud_edits() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let mut edge = SharedDoc::new(b"edge-test");
    let edit = |notes: &str, items: &[(&str, bool)]| DocEdit {
        notes: Some(notes.to_owned()),
        checklist: items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some(*v)))
            .collect(),
    };
    let first = edge
        .edit(&edit("Ganti oli.", &[("rem", true)]), 1)
        .expect("edit");
    let second = edge
        .edit(&edit("Ganti oli. Cek rem.", &[("ban", true)]), 2)
        .expect("edit");
    let event = |outbox: &mut crate::fixtures::Outbox, changes: &[u8]| {
        outbox.raw(
            EntityKind::Document,
            "wo-1",
            "changed",
            json!({"record": "work_order", "record_id": "wo-1", "changes": doc::encode(changes)}),
        )
    };
    // The second change alone depends on the first: parked, not merged.
    let skipped = event(&mut device.outbox, &second);
    let answer = cloud.push(&device, &[skipped]).await;
    assert_eq!(
        answer.body["parked"].as_array().map(Vec::len),
        Some(1),
        "{answer:?}"
    );
    let events = vec![
        event(&mut device.outbox, &first),
        event(&mut device.outbox, &second),
    ];
    let answer = cloud.push(&device, &events).await;
    assert_eq!(answer.body["applied"], 2, "{answer:?}");

    let path = "/v1/branches/JKT01/documents/work_order/wo-1";
    let view = cloud.bearer(&cloud.operator, Method::GET, path, None).await;
    assert_eq!(view.body["notes"], "Ganti oli. Cek rem.", "{view:?}");
    let answer = cloud
        .bearer(
            &cloud.operator,
            Method::PUT,
            path,
            Some(json!({"notes": "Ganti oli. Cek rem. Pelanggan menunggu.", "checklist": {"rem": false}})),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // The branch pulls the whole document and renders what the cloud renders.
    let page = cloud.pull(&device, 0, None).await;
    let docs: Vec<&serde_json::Value> = page.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["kind"] == "document")
        .collect();
    assert_eq!(docs.len(), 1, "{page:?}");
    let whole = doc::decode(docs[0]["document"].as_str().expect("document")).expect("base64");
    edge.apply(&whole).expect("merges");
    let rendered = serde_json::to_value(edge.view().expect("view")).expect("json");
    assert_eq!(rendered, answer.body);
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM documents WHERE notes LIKE '%menunggu%' AND checklist->>'rem' = 'false'")
            .await,
        1
    );
    assert_eq!(cloud.audit(&device).await, 3);
}
