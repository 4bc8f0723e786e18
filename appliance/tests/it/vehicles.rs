//! Customers and vehicles as records (issue 21 item 5): a work order finds or makes its vehicle
//! by the normalised plate and its customer by phone, in the same transaction as the work order;
//! a plate finds the vehicle with its customer; a vehicle's history lists its work orders and
//! invoices, newest first. Bad input is refused with the field named and changes nothing.

use reqwest::StatusCode;
use sentra_protocol::EntityKind;
use sentra_protocol::payload::Payload;
use serde_json::{Value, json};

use crate::harness::{Site, open_db};

/// `(entity, op, payload)` of every outbox event, in order.
fn events(site: &Site) -> Vec<(String, String, Value)> {
    let db = open_db(site);
    let mut stmt = db
        .prepare("SELECT entity, op, payload FROM sync_event_logs ORDER BY seq")
        .expect("prepare");
    stmt.query_map([], |r| {
        let payload: String = r.get(2)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            serde_json::from_str(&payload).expect("json"),
        ))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

fn count(site: &Site, sql: &str) -> i64 {
    open_db(site)
        .query_row(sql, [], |r| r.get(0))
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plate_typed_twice_is_one_vehicle_with_its_history() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let pos = edge.pair(&site, "pos").await;
    // The demo data's stock receipts come first.
    let base = events(&site).len();

    // The first visit: the plate and the phone are new, so both records are made.
    let (s, first) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Budi", "customer_phone": "0812 3456 7890",
                   "vehicle_plate": "b 1234  xyz", "complaint": "Servis berkala"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["vehicle_plate"], "B 1234 XYZ");
    let vehicle = first["vehicle_id"].as_str().expect("vehicle_id").to_owned();
    let customer = first["customer_id"]
        .as_str()
        .expect("customer_id")
        .to_owned();
    // One transaction, three events: the customer, the vehicle, then the work order naming both.
    let all = events(&site).split_off(base);
    let kinds: Vec<&str> = all.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(kinds, ["customer", "vehicle", "work_order"], "{all:?}");
    for (entity, op, payload) in &all {
        let kind = EntityKind::parse(entity).expect("entity");
        let parsed = Payload::parse(kind, op, payload).expect("the cloud parses it");
        if let Payload::WorkOrderCreated(w) = parsed {
            assert_eq!(w.vehicle_id.as_deref(), Some(vehicle.as_str()));
            assert_eq!(w.customer_id.as_deref(), Some(customer.as_str()));
        }
    }
    assert_eq!(all[1].2["fields"]["plate"], "B 1234 XYZ");
    assert_eq!(all[1].2["fields"]["customer_id"], customer.as_str());

    // The second visit, typed differently and without a phone: the same vehicle and customer,
    // and only the work order's event.
    let (s, second) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Budi", "vehicle_plate": "B1234XYZ", "complaint": "Rem bunyi"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(second["vehicle_id"], vehicle.as_str());
    assert_eq!(second["customer_id"], customer.as_str());
    assert_eq!(second["customer_phone"], "081234567890");
    assert_eq!(events(&site).len(), base + 4);
    assert_eq!(
        count(
            &site,
            "SELECT count(DISTINCT entity_id) FROM record_fields WHERE entity = 'vehicle'"
        ),
        1
    );

    // By ids alone.
    let (s, third) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"vehicle_id": vehicle, "customer_id": customer, "complaint": "Ganti oli"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{third}");
    assert_eq!(
        (&third["customer_name"], &third["vehicle_plate"]),
        (&json!("Budi"), &json!("B 1234 XYZ"))
    );

    // The plate however typed finds the vehicle and its customer.
    let (s, found) = edge
        .get(&tablet, "/v1/vehicles?plate=b%201234%20%20xyz")
        .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(found["vehicle"]["id"], vehicle.as_str());
    assert_eq!(found["customer"]["id"], customer.as_str());
    assert_eq!(found["customer"]["fields"]["phone"], "081234567890");
    let (s, b) = edge.get(&tablet, "/v1/vehicles?plate=D%201%20A").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    // The first visit is invoiced; the history lists the visits newest first, with the invoice.
    let first_id = first["id"].as_str().expect("id");
    for status in ["IN_PROGRESS", "DONE"] {
        let (s, b) = edge
            .post(
                &tablet,
                &format!("/v1/work-orders/{first_id}/status"),
                json!({"status": status}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, inv) = edge
        .post(
            &pos,
            "/v1/invoices",
            json!({"work_order_id": first_id, "labour": [{"description": "Servis", "amount": 100000}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    let (s, h) = edge
        .get(&tablet, &format!("/v1/vehicles/{vehicle}/history"))
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let visits = h["visits"].as_array().expect("visits");
    let order: Vec<&Value> = visits.iter().map(|v| &v["work_order"]["id"]).collect();
    assert_eq!(order, [&third["id"], &second["id"], &first["id"]], "{h}");
    assert_eq!(visits[2]["invoice"]["id"], inv["id"]);
    assert!(visits[0]["invoice"].is_null());
    assert_eq!(h["more"], false);
    let (s, h) = edge
        .get(&tablet, &format!("/v1/vehicles/{vehicle}/history?limit=1"))
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["visits"].as_array().map(Vec::len), Some(1));
    assert_eq!(h["more"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plates_and_unknown_records_change_nothing() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let before = events(&site).len();
    for (body, field) in [
        (
            json!({"customer_name": "Budi", "vehicle_plate": "1234 XYZ", "complaint": "x"}),
            "vehicle_plate",
        ),
        (
            json!({"customer_name": "Budi", "vehicle_plate": "B 12345 X", "complaint": "x"}),
            "vehicle_plate",
        ),
        (
            json!({"customer_name": "Budi", "complaint": "x"}),
            "vehicle_plate",
        ),
        (
            json!({"vehicle_plate": "B 1 A", "complaint": "x"}),
            "customer_name",
        ),
        (
            json!({"vehicle_id": "no-such-vehicle", "customer_name": "Budi", "complaint": "x"}),
            "vehicle_id",
        ),
        (
            json!({"customer_id": "no-such-customer", "vehicle_plate": "B 1 A", "complaint": "x"}),
            "customer_id",
        ),
        // The customer is made first, then the mechanic is refused: nothing stays.
        (
            json!({"customer_name": "Budi", "vehicle_plate": "B 1 A", "complaint": "x", "mechanic_id": "NOBODY"}),
            "mechanic_id",
        ),
    ] {
        let (s, b) = edge.post(&tablet, "/v1/work-orders", body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        let named = b["error"]["field"].as_str().unwrap_or_default();
        assert!(named.contains(field), "{body}: {b}");
    }
    assert_eq!(events(&site).len(), before);
    assert_eq!(count(&site, "SELECT count(*) FROM record_fields"), 0);
    assert_eq!(count(&site, "SELECT count(*) FROM work_orders"), 0);

    // Lookups: a bad plate is 422 naming it, a bad id or limit likewise, an unknown vehicle 404.
    for (path, status, field) in [
        (
            "/v1/vehicles?plate=XYZ",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("plate"),
        ),
        ("/v1/vehicles", StatusCode::BAD_REQUEST, None),
        ("/v1/vehicles/nobody/history", StatusCode::NOT_FOUND, None),
        (
            "/v1/vehicles/a%20b/history",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("id"),
        ),
    ] {
        let (s, b) = edge.get(&tablet, path).await;
        assert_eq!(s, status, "{path}: {b}");
        if let Some(field) = field {
            assert_eq!(b["error"]["field"], field, "{path}: {b}");
        }
    }
    let (s, v) = edge
        .post(&tablet, "/v1/vehicles", json!({"plate": "d  77 ab"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["fields"]["plate"], "D 77 AB",
        "a branch's plate is stored normalised"
    );
    let id = v["id"].as_str().expect("id");
    for limit in ["0", "101", "x"] {
        let (s, b) = edge
            .get(&tablet, &format!("/v1/vehicles/{id}/history?limit={limit}"))
            .await;
        assert!(s.is_client_error(), "{limit}: {s} {b}");
    }
    let (s, b) = edge
        .post(&tablet, "/v1/vehicles", json!({"plate": "not a plate"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "fields.plate", "{b}");
}

/// Follows the store's write-ahead log from outside, commit by commit. SQLCipher seals each
/// page (AES and an HMAC) but leaves the log's frame headers in the clear: a frame's page number,
/// whether it ends a commit, and the salts that tell this log's frames from those of the log
/// before the last checkpoint (which restarts it from the top with new salts).
struct WalFollower {
    path: std::path::PathBuf,
    salts: (u32, u32),
    at: u64,
    pages: Vec<u32>,
}

impl WalFollower {
    fn new(path: std::path::PathBuf) -> WalFollower {
        WalFollower {
            path,
            salts: (0, 0),
            at: 32,
            pages: Vec::new(),
        }
    }

    /// The pages of each commit written since the last call.
    fn commits(&mut self) -> Vec<Vec<u32>> {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let word =
            |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut file = std::fs::File::open(&self.path).expect("open the WAL");
        let mut header = [0u8; 32];
        file.read_exact(&mut header).expect("WAL header");
        let page_size = word(&header, 8) as usize;
        let salts = (word(&header, 16), word(&header, 20));
        if salts != self.salts {
            (self.salts, self.at, self.pages) = (salts, 32, Vec::new());
        }
        file.seek(SeekFrom::Start(self.at)).expect("seek");
        let mut frame = vec![0u8; 24 + page_size];
        let mut commits = Vec::new();
        while file.read_exact(&mut frame).is_ok() && (word(&frame, 8), word(&frame, 12)) == salts {
            self.pages.push(word(&frame, 0));
            if word(&frame, 4) != 0 {
                commits.push(std::mem::take(&mut self.pages));
            }
            self.at += frame.len() as u64;
        }
        commits
    }
}

/// A busy vehicle (a fleet car; the write benchmark's one plate) costs each new work order no
/// more pages than any other vehicle does. Every page a commit writes is sealed on its way to
/// the disk, so pages per commit are what a write costs the box. With the vehicle-history index
/// newest first (before migration 0016) each new work order went in at the front of the index,
/// where SQLite cannot append a page: it rebalanced the front leaves every few writes (7.9
/// pages a commit). Before migration 0017 each also rewrote the outbox's counter row (7.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_vehicles_new_work_orders_write_few_pages_per_commit() {
    let site = Site::new();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let order = json!({"customer_name": "Budi Santoso", "vehicle_plate": "B 1234 XYZ", "complaint": "Servis berkala"});
    // The first makes the customer and the vehicle.
    let (s, b) = edge.post(&tablet, "/v1/work-orders", order.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mut wal = WalFollower::new(site.db_path().with_extension("db-wal"));
    wal.commits();
    let mut commits = Vec::new();
    for _ in 0..600 {
        let (s, b) = edge.post(&tablet, "/v1/work-orders", order.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        commits.extend(wal.commits());
    }
    assert!(commits.len() >= 600, "{} commits followed", commits.len());
    let pages: usize = commits.iter().map(Vec::len).sum();
    let per_commit = pages as f64 / commits.len() as f64;
    // Each write needs 5 (the work order, its three indexes, the event); the rest is the trees
    // growing at their ends (6.1 measured).
    assert!(
        per_commit <= 6.5,
        "{per_commit:.2} pages per commit over {} commits",
        commits.len()
    );
}
