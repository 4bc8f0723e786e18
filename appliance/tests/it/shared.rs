//! Records both sides edit, at the branch: customers and vehicles by field, work-order notes and
//! inspection remarks as documents. Each edit is one outbox event the cloud can parse; bad input
//! is refused with the field named and changes nothing.

use reqwest::{Method, StatusCode};
use sentra_protocol::EntityKind;
use sentra_protocol::doc::{self, SharedDoc};
use sentra_protocol::payload::Payload;
use serde_json::json;

use crate::harness::{Site, open_db};

fn events(site: &Site, entity: &str) -> Vec<(String, serde_json::Value)> {
    let db = open_db(site);
    let mut stmt = db
        .prepare("SELECT op, payload FROM sync_event_logs WHERE entity = ?1 ORDER BY seq")
        .expect("prepare");
    stmt.query_map([entity], |r| {
        let payload: String = r.get(1)?;
        Ok((r.get(0)?, serde_json::from_str(&payload).expect("json")))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_and_vehicles_are_edited_by_field() {
    let site = Site::new();
    let edge = site.start().await;
    let pos = edge.pair(&site, "pos").await;
    let (s, c) = edge
        .post(
            &pos,
            "/v1/customers",
            json!({"name": "Siti", "phone": "0813"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().expect("id").to_owned();
    let customer_path = format!("/v1/customers/{id}");
    let patch = |body: serde_json::Value| {
        edge.call(
            Some(&pos.token),
            Method::PATCH,
            &customer_path,
            Some(body),
            None,
        )
    };
    let (s, c) = patch(json!({"phone": null, "email": "siti@contoh.id"})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        c["fields"],
        json!({"name": "Siti", "phone": null, "email": "siti@contoh.id"})
    );

    // Refused, naming the field; nothing written.
    let before = events(&site, "customer").len();
    for (body, field) in [
        (json!({"membership_tier": "GOLD"}), "membership_tier"),
        (json!({"shoe_size": 42}), "shoe_size"),
        (json!({"name": ""}), "name"),
        (json!({}), "fields"),
    ] {
        let (s, b) = patch(body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        let named = b["error"]["field"].as_str().unwrap_or_default();
        assert!(named.contains(field), "{body}: {b}");
    }
    assert_eq!(events(&site, "customer").len(), before);
    let (s, _) = edge.get(&pos, "/v1/customers/nobody").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = edge
        .call(
            Some(&pos.token),
            Method::PATCH,
            "/v1/vehicles/nothing-here",
            Some(json!({"year": 2020})),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    let (s, v) = edge
        .post(
            &pos,
            "/v1/vehicles",
            json!({"plate": "B 1 SIT", "customer_id": id, "year": 2019}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Every event is what the cloud parses.
    for (entity, kind) in [
        ("customer", EntityKind::Customer),
        ("vehicle", EntityKind::Vehicle),
    ] {
        for (op, payload) in events(&site, entity) {
            assert!(matches!(
                Payload::parse(kind, &op, &payload),
                Ok(Payload::RecordFieldsSet(_))
            ));
        }
    }
    assert_eq!(events(&site, "customer").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_are_a_document_whose_changes_travel_as_events() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let (s, wo) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Siti", "vehicle_plate": "D 77 AB", "complaint": "AC"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    let path = format!("/v1/work-orders/{}/notes", wo["id"].as_str().expect("id"));
    let (s, empty) = edge.get(&tablet, &path).await;
    assert_eq!(
        (s, empty),
        (StatusCode::OK, json!({"notes": "", "checklist": {}}))
    );
    let put = |body: serde_json::Value| {
        edge.call(Some(&tablet.token), Method::PUT, &path, Some(body), None)
    };
    let (s, b) = put(json!({"notes": "Freon habis.", "checklist": {"kompresor": true}})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) =
        put(json!({"notes": "Freon habis. Isi ulang.", "checklist": {"kompresor": null}})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"notes": "Freon habis. Isi ulang.", "checklist": {}})
    );
    // The same text again changes nothing and sends nothing.
    let (s, _) = put(json!({"notes": "Freon habis. Isi ulang."})).await;
    assert_eq!(s, StatusCode::OK);
    let sent = events(&site, "document");
    assert_eq!(sent.len(), 2);

    // Replaying the events onto an empty document gives what the branch shows: the cloud's view.
    let mut replica = SharedDoc::new(b"replica");
    for (op, payload) in &sent {
        let Ok(Payload::DocumentChanged(d)) = Payload::parse(EntityKind::Document, op, payload)
        else {
            panic!("{payload}");
        };
        replica
            .apply(&doc::decode(&d.changes).expect("base64"))
            .expect("merges");
    }
    assert_eq!(
        serde_json::to_value(replica.view().expect("view")).expect("json"),
        b
    );

    for (body, field) in [
        (json!({}), "notes"),
        (json!({"checklist": {" rem": true}}), "checklist"),
        (json!({"notes": 5}), "notes"),
    ] {
        let (s, b) = put(body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        assert!(b.to_string().contains(field), "{body}: {b}");
    }
    let (s, _) = edge.get(&tablet, "/v1/inspections/none/remarks").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(events(&site, "document").len(), 2, "refusals wrote nothing");
}
