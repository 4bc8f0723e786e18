//! The rental counter against the real daemon on a box that cannot ask the cloud (not
//! enrolled, so its bookings are TENTATIVE): tariffs from the demo's master data, a handover that
//! takes the deposit and prints the rental agreement and surat jalan on a (fake) network
//! printer, a late return with damage settled against the deposit, a return that refunds, the
//! outbox events of each step once, and bad input that changes nothing. The two papers are also
//! checked against golden files (`UPDATE_GOLDEN=1` rewrites them).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use sentra_edge::printer::document::{
    self, Document, Layout, PaperWidth, RentalInvoiceDoc, RentalPaper,
};
use sentra_edge::printer::transport::Target;
use sentra_edge::store::rentals::{RentalInvoice, RentalPayment};
use sentra_protocol::payload::InvoiceLine;
use serde_json::{Value, json};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::harness::{Device, Edge, Site, open_db};
use crate::printer::FakePrinter;

/// The sites' branch offset (`branch.utc_offset`'s default, WIB).
pub(crate) fn wib() -> UtcOffset {
    UtcOffset::from_hms(7, 0, 0).expect("valid")
}

fn today() -> Date {
    OffsetDateTime::now_utc().to_offset(wib()).date()
}

fn day(d: Date) -> String {
    sentra_protocol::day::format_day(d)
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

const PHOTO_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const PHOTO_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn book(edge: &Edge, pos: &Device, asset: &str, from: Date, to: Date) -> String {
    let (s, b) = edge
        .post(
            pos,
            "/v1/bookings",
            json!({"asset_id": asset, "from": day(from), "to": day(to), "customer": "Budi Santoso"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "offline: TENTATIVE {b}");
    b["id"].as_str().expect("id").to_owned()
}

async fn inspect(edge: &Edge, tablet: &Device, asset: &str, kind: &str, photos: &[&str]) -> String {
    let (s, b) = edge
        .post(
            tablet,
            "/v1/inspections",
            json!({"asset_id": asset, "kind": kind,
                   "checklist": [{"item": "Lampu depan", "ok": true}, {"item": "Ban serep", "ok": true}],
                   "photos": photos, "signature": {"signer": "Budi Santoso", "digest": PHOTO_B},
                   "odometer_km": 12000, "fuel_percent": 75}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_str().expect("id").to_owned()
}

/// What bad input must leave alone: the outbox, the rentals and their money.
fn counts(site: &Site) -> (i64, i64, i64, i64) {
    let db = open_db(site);
    db.query_row(
        "SELECT (SELECT count(*) FROM sync_event_logs), (SELECT count(*) FROM rentals),
                (SELECT count(*) FROM rental_payments), (SELECT count(*) FROM rental_invoices)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .expect("counts")
}

fn error(s: StatusCode, b: &Value) -> (u16, String, String) {
    (
        s.as_u16(),
        b["error"]["code"].as_str().unwrap_or_default().to_owned(),
        b["error"]["field"].as_str().unwrap_or_default().to_owned(),
    )
}

fn printer_site(printer: &FakePrinter) -> Site {
    Site::with_config(&format!(
        "[printer]\nkind = \"network\"\naddress = \"{}\"\nwidth_mm = 58\nretry_max_ms = 200\ntimeout_ms = 2000\n",
        printer.addr
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_rental_is_handed_over_printed_returned_and_settled_offline() {
    let printer = FakePrinter::start().await;
    let site = printer_site(&printer);
    site.load_demo_data();
    let edge = site.start().await;
    let pos = edge.pair(&site, "pos").await;
    let tablet = edge.pair(&site, "tablet").await;

    // The demo's tariffs, as the cloud's master data would bring them.
    let (s, tariffs) = edge.get(&tablet, "/v1/tariffs").await;
    assert_eq!(s, StatusCode::OK, "{tariffs}");
    assert_eq!(tariffs[0]["sku"], "AVANZA-2024", "{tariffs}");
    assert_eq!(
        (
            &tariffs[0]["daily_rate"],
            &tariffs[0]["deposit"],
            &tariffs[0]["late_fee_per_day"]
        ),
        (&json!(350_000), &json!(1_000_000), &json!(100_000))
    );

    // Booked for three days that ended four days ago: handed over now, it is late at once (a
    // test cannot wait for days to pass between handover and return).
    let (from, to) = (today() - days(6), today() - days(4));
    let id = book(&edge, &pos, "CAR-002", from, to).await;
    let other_asset = inspect(&edge, &tablet, "CAR-001", "HANDOVER", &[PHOTO_A]).await;
    let return_kind = inspect(&edge, &tablet, "CAR-002", "RETURN", &[PHOTO_A]).await;
    let handover = inspect(&edge, &tablet, "CAR-002", "HANDOVER", &[PHOTO_A, PHOTO_B]).await;
    let path = format!("/v1/bookings/{id}/handover");
    let deposit = json!({"method": "EDC", "amount": 1_000_000, "reference": "APPR-778812"});

    let before = counts(&site);
    let unknown = "/v1/bookings/0193a5e0-0000-7000-8000-00000000dead/handover".to_owned();
    let early_return = format!("/v1/bookings/{id}/return");
    let bad: Vec<(&String, Value, (u16, &str, &str))> = vec![
        (
            &unknown,
            json!({"inspection_id": handover, "deposit": deposit}),
            (404, "not_found", ""),
        ),
        (
            &path,
            json!({"inspection_id": other_asset, "deposit": deposit}),
            (422, "invalid_field", "inspection_id"),
        ),
        (
            &path,
            json!({"inspection_id": return_kind, "deposit": deposit}),
            (422, "invalid_field", "inspection_id"),
        ),
        (
            &path,
            json!({"inspection_id": "no-such-inspection", "deposit": deposit}),
            (422, "invalid_field", "inspection_id"),
        ),
        (
            &path,
            json!({"inspection_id": handover}),
            (422, "invalid_field", "deposit"),
        ),
        (
            &path,
            json!({"inspection_id": handover, "deposit": {"method": "CASH", "amount": 500_000}}),
            (422, "invalid_field", "deposit.amount"),
        ),
        (
            &path,
            json!({"inspection_id": handover, "deposit": {"method": "EDC", "amount": 1_000_000}}),
            (422, "invalid_field", "deposit.reference"),
        ),
        (
            &path,
            json!({"inspection_id": handover, "deposit": {"method": "CASH", "amount": -1}}),
            (422, "invalid_field", "deposit.amount"),
        ),
        (
            &path,
            json!({"inspection_id": handover, "deposit": {"method": "CASH", "amount": 5_000_000_000i64}}),
            (422, "invalid_field", "deposit.amount"),
        ),
        (
            &path,
            json!({"inspection_id": handover, "deposit": {"method": "GOLD", "amount": 1}}),
            (422, "invalid_field", "deposit.method"),
        ),
        (
            &early_return,
            json!({"inspection_id": return_kind}),
            (409, "not_handed_over", ""),
        ),
    ];
    for (p, body, want) in bad {
        let (s, b) = edge.post(&pos, p, body.clone()).await;
        let got = error(s, &b);
        assert_eq!(
            (got.0, got.1.as_str(), got.2.as_str()),
            want,
            "{p} {body}: {b}"
        );
        assert_eq!(counts(&site), before, "{p} {body} changed something");
    }
    let (s, b) = edge
        .post(
            &tablet,
            &path,
            json!({"inspection_id": handover, "deposit": deposit}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a tablet is not the counter: {b}");

    // The handover: the deposit by card (the approval code typed from the terminal), once.
    let body = json!({"inspection_id": handover, "deposit": deposit});
    let (s, rental) = edge
        .call(
            Some(&pos.token),
            Method::POST,
            &path,
            Some(body.clone()),
            Some("ho-1"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rental}");
    let (s, again) = edge
        .call(
            Some(&pos.token),
            Method::POST,
            &path,
            Some(body.clone()),
            Some("ho-1"),
        )
        .await;
    assert_eq!(
        (s, &again),
        (StatusCode::CREATED, &rental),
        "a retry is the same answer"
    );
    let (s, b) = edge.post(&pos, &path, body).await;
    assert_eq!(error(s, &b).1, "already_handed_over", "{b}");
    assert_eq!(rental["status"], "OUT");
    let month = format!("{:04}{:02}", today().year(), u8::from(today().month()));
    assert_eq!(
        rental["agreement_number"],
        format!("JKT01-RA-{month}-00001")
    );
    assert_eq!(rental["days"], 3);
    assert_eq!(rental["deposit_held"], 1_000_000);
    assert_eq!(rental["handover"]["inspection_id"], handover.as_str());
    assert_eq!(rental["handover"]["photo_count"], 2);
    let hash = rental["handover"]["tamper_proof_hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    assert_eq!(
        rental["payments"],
        json!([{"id": rental["payments"][0]["id"], "kind": "DEPOSIT", "method": "EDC", "amount": 1_000_000,
                "reference": "APPR-778812", "invoice_id": null, "received_at": rental["payments"][0]["received_at"]}])
    );
    let jobs: Vec<String> = rental["print_jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(jobs.len(), 2, "{rental}");
    assert_eq!(rental["print_jobs"][0]["document"], "rental_agreement");
    assert_eq!(rental["print_jobs"][1]["document"], "rental_delivery_note");

    // Both papers come out of the printer, in Indonesian, tied to the inspection.
    eventually("both papers printed", || async {
        printer.documents().len() == 2
    })
    .await;
    let docs = printer.documents();
    assert!(docs[0].contains("PERJANJIAN SEWA"), "{}", docs[0]);
    assert!(docs[1].contains("SURAT JALAN SEWA"), "{}", docs[1]);
    for doc in &docs {
        assert!(doc.contains(&hash[..32]), "the inspection's hash: {doc}");
        assert!(doc.contains("Foto      : 2"), "{doc}");
        assert!(doc.contains("Budi Santoso"), "{doc}");
        assert!(doc.contains("B 5678 SNT"), "{doc}");
        assert!(doc.contains("(..........)"), "a signature line: {doc}");
    }
    assert!(docs[0].contains("Rp 1.000.000"), "{}", docs[0]);

    // A rented booking ends at the counter, not by cancelling it.
    let (s, b) = edge
        .post(&pos, &format!("/v1/bookings/{id}/cancel"), json!(null))
        .await;
    assert_eq!(error(s, &b).1, "rented", "{b}");

    // The return: four days late, a scratch, more than the deposit holds.
    let back = inspect(&edge, &tablet, "CAR-002", "RETURN", &[PHOTO_A]).await;
    let ret = format!("/v1/bookings/{id}/return");
    let damage = json!([{"description": "Baret pintu kiri", "amount": 150_000}]);
    let before = counts(&site);
    let bad: Vec<(Value, (u16, &str, &str))> = vec![
        (
            json!({"inspection_id": other_asset, "damage": damage}),
            (422, "invalid_field", "inspection_id"),
        ),
        (
            json!({"inspection_id": handover, "damage": damage}),
            (422, "invalid_field", "inspection_id"),
        ),
        (
            json!({"inspection_id": back, "damage": damage}),
            (422, "invalid_field", "payment"),
        ),
        (
            json!({"inspection_id": back, "damage": damage, "payment": {"method": "QRIS"}}),
            (422, "invalid_field", "payment.reference"),
        ),
        (
            json!({"inspection_id": back, "damage": damage, "payment": {"method": "CASH", "amount": 1}}),
            (422, "invalid_field", "payment.amount"),
        ),
        (
            json!({"inspection_id": back, "damage": [{"description": "x", "amount": 0}]}),
            (422, "invalid_field", "damage[0].amount"),
        ),
        (
            json!({"inspection_id": back, "returned_at": "2000-01-01T00:00:00Z", "payment": {"method": "CASH"}}),
            (422, "invalid_field", "returned_at"),
        ),
        (
            json!({"inspection_id": back, "returned_at": "yesterday"}),
            (422, "invalid_field", "returned_at"),
        ),
    ];
    for (body, want) in bad {
        let (s, b) = edge.post(&pos, &ret, body.clone()).await;
        let got = error(s, &b);
        assert_eq!((got.0, got.1.as_str(), got.2.as_str()), want, "{body}: {b}");
        assert_eq!(counts(&site), before, "{body} changed something");
    }
    let before_day = today();
    let (s, done) = edge
        .post(
            &pos,
            &ret,
            json!({"inspection_id": back, "damage": damage,
                   "payment": {"method": "QRIS", "reference": "QR-99120"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{done}");
    let return_day = done["return"]["return_day"].as_str().expect("day");
    assert!(
        [day(before_day), day(today())].contains(&return_day.to_owned()),
        "the branch's day: {return_day}"
    );
    let late = done["return"]["late_days"].as_i64().expect("late");
    let returned_on = sentra_protocol::day::parse_day(return_day).expect("day");
    assert_eq!(late, (returned_on - to).whole_days(), "{done}");
    let subtotal = 3 * 350_000 + late * 100_000 + 150_000;
    let tax = (subtotal * 11 + 50) / 100;
    let total = subtotal + tax;
    let inv = &done["invoice"];
    assert_eq!(
        (&inv["subtotal"], &inv["tax"], &inv["total"], &inv["status"]),
        (&json!(subtotal), &json!(tax), &json!(total), &json!("PAID")),
        "{done}"
    );
    assert_eq!(inv["number"], format!("JKT01-{month}-00001"));
    let kinds: Vec<&str> = inv["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["rental", "late_fee", "damage"]);
    assert_eq!(
        done["settlement"],
        json!({"deposit_applied": 1_000_000, "paid_by_customer": total - 1_000_000, "refunded": 0})
    );
    assert_eq!(done["payments"][1]["kind"], "PAYMENT");
    assert_eq!(done["payments"][1]["method"], "QRIS");
    assert_eq!(done["status"], "RETURNED");
    let (s, b) = edge.post(&pos, &ret, json!({"inspection_id": back})).await;
    assert_eq!(error(s, &b).1, "already_returned", "{b}");
    let (_, booking) = edge.get(&pos, &format!("/v1/bookings/{id}")).await;
    assert_eq!(booking["state"], "COMPLETED", "{booking}");
    let (s, mut read) = edge
        .get(&tablet, &format!("/v1/bookings/{id}/rental"))
        .await;
    // The same rental (its invoice's print job moves on meanwhile).
    let mut answered = done.clone();
    for rental in [&mut read, &mut answered] {
        rental["print_jobs"] = Value::Null;
    }
    assert_eq!((s, &read), (StatusCode::OK, &answered));

    // The rental invoice prints at the return: its lines, PPN, the deposit and the payment.
    assert_eq!(
        done["print_jobs"][2]["document"], "rental_invoice",
        "{done}"
    );
    eventually("the invoice printed", || async {
        printer.documents().len() == 3
    })
    .await;
    let paper = &printer.documents()[2];
    assert!(paper.contains("FAKTUR SEWA"), "{paper}");
    assert!(paper.contains(&format!("JKT01-{month}-00001")), "{paper}");
    assert!(paper.contains("Baret pintu kiri"), "{paper}");
    assert!(paper.contains("Deposit EDC"), "{paper}");
    assert!(paper.contains("Bayar QRIS"), "{paper}");
    assert!(paper.contains("LUNAS"), "{paper}");
    // A paper printed again on request; an unknown paper or booking is refused.
    let reprint = format!("/v1/bookings/{id}/print?document=rental_invoice");
    let (s, job) = edge.post(&pos, &reprint, json!(null)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["document"], "rental_invoice");
    let (s, b) = edge
        .post(
            &pos,
            &format!("/v1/bookings/{id}/print?document=receipt"),
            json!(null),
        )
        .await;
    assert_eq!(error(s, &b).1, "invalid_field", "{b}");
    let (s, b) = edge
        .post(&pos, "/v1/bookings/nope/print", json!(null))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    eventually("the copy printed", || async {
        printer.documents().len() == 4
    })
    .await;

    // Each step's events, once, in the outbox for the cloud.
    let db = open_db(&site);
    let events: Vec<(String, String)> = db
        .prepare("SELECT entity, op FROM sync_event_logs WHERE entity IN ('rental', 'rental_invoice', 'rental_payment', 'booking', 'print_job') ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let events: Vec<(&str, &str)> = events
        .iter()
        .map(|(e, o)| (e.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            ("booking", "requested"),
            ("rental", "handed_over"),
            ("rental_payment", "received"),
            ("print_job", "queued"),
            ("print_job", "queued"),
            ("rental_invoice", "issued"),
            ("rental", "returned"),
            ("rental_payment", "received"),
            ("booking", "completed"),
            ("print_job", "queued"),
            ("print_job", "queued"),
        ]
    );
    assert_eq!(edge.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_return_refunds_from_the_deposit_and_wrong_states_are_refused() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let pos = edge.pair(&site, "pos").await;
    let tablet = edge.pair(&site, "tablet").await;

    // Not yet the customer's, and a cancelled booking: refused, nothing changed.
    let later = book(&edge, &pos, "CAR-003", today() + days(5), today() + days(6)).await;
    let gone = book(&edge, &pos, "CAR-001", today(), today()).await;
    let (s, b) = edge
        .post(&pos, &format!("/v1/bookings/{gone}/cancel"), json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let xp = inspect(&edge, &tablet, "CAR-003", "HANDOVER", &[PHOTO_A]).await;
    let car1 = inspect(&edge, &tablet, "CAR-001", "HANDOVER", &[PHOTO_A]).await;
    let before = counts(&site);
    let cash = json!({"method": "CASH", "amount": 1_500_000});
    for (id, ins, want) in [(&later, &xp, "too_early"), (&gone, &car1, "wrong_state")] {
        let (s, b) = edge
            .post(
                &pos,
                &format!("/v1/bookings/{id}/handover"),
                json!({"inspection_id": ins, "deposit": cash}),
            )
            .await;
        assert_eq!(error(s, &b).1, want, "{b}");
    }
    assert_eq!(counts(&site), before);

    // Today and tomorrow, cash deposit, back today without damage: the deposit covers the
    // invoice and the rest goes back in cash, as a negative money row.
    let id = book(&edge, &pos, "CAR-002", today(), today() + days(1)).await;
    let ho = inspect(&edge, &tablet, "CAR-002", "HANDOVER", &[]).await;
    let (s, rental) = edge
        .post(
            &pos,
            &format!("/v1/bookings/{id}/handover"),
            json!({"inspection_id": ho, "deposit": {"method": "CASH"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rental}");
    assert_eq!(rental["deposit_held"], 1_000_000, "absent: the tariff's");
    let back = inspect(&edge, &tablet, "CAR-002", "RETURN", &[PHOTO_A]).await;
    let ret = format!("/v1/bookings/{id}/return");
    let (s, b) = edge
        .post(
            &pos,
            &ret,
            json!({"inspection_id": back, "payment": {"method": "CASH"}}),
        )
        .await;
    assert_eq!(error(s, &b).2, "payment", "nothing is due: {b}");
    let (s, b) = edge
        .post(
            &pos,
            &ret,
            json!({"inspection_id": back, "refund": {"method": "QRIS"}}),
        )
        .await;
    assert_eq!(error(s, &b).2, "refund.reference", "{b}");
    let (s, done) = edge.post(&pos, &ret, json!({"inspection_id": back})).await;
    assert_eq!(s, StatusCode::CREATED, "{done}");
    assert_eq!(done["return"]["late_days"], 0);
    assert_eq!(done["invoice"]["total"], 777_000, "2 × 350 000 + PPN 11 %");
    assert_eq!(done["invoice"]["status"], "PAID");
    assert_eq!(
        done["settlement"],
        json!({"deposit_applied": 777_000, "paid_by_customer": 0, "refunded": 223_000})
    );
    let refund = &done["payments"][1];
    assert_eq!(
        (&refund["kind"], &refund["method"], &refund["amount"]),
        (&json!("REFUND"), &json!("CASH"), &json!(-223_000))
    );
    let db = open_db(&site);
    let by_method: Vec<(String, i64)> = db
        .prepare("SELECT method, sum(amount) FROM rental_payments GROUP BY method ORDER BY method")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        by_method,
        [("CASH".to_owned(), 777_000)],
        "the drawer's take"
    );
    assert_eq!(edge.stop().await, 0);
}

// ---------------------------------------------------------------------------------------------
// Golden files

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn fixture() -> RentalPaper {
    RentalPaper {
        agreement_number: "JKT01-RA-202612-00001".into(),
        booking_id: "0193a5e0-0000-7000-8000-0000000000b1".into(),
        customer: "José Rizal".into(),
        asset_id: "CAR-002".into(),
        asset_name: "Toyota Avanza 2024 hitam".into(),
        plate: "B 5678 SNT".into(),
        from: "2026-12-06".into(),
        to: "2026-12-08".into(),
        days: 3,
        daily_rate: 350_000,
        deposit: 1_000_000,
        deposit_paid: vec![("EDC".into(), 1_000_000, Some("APPR-778812".into()))],
        late_fee_per_day: 100_000,
        handed_over_at: "2026-12-06T01:30:00.000Z".into(),
        inspection_id: "0193a5e0-0000-7000-8000-0000000000c1".into(),
        inspection_hash: "4f2a9c0d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f".into(),
        photo_count: 4,
        odometer_km: Some(12_000),
        fuel_percent: Some(75),
    }
}

pub(crate) fn layout(width: PaperWidth) -> Layout {
    Layout {
        width,
        branch_name: "Bengkel Sentra Kelapa Gading".into(),
        header: vec![
            "Jl. Boulevard Raya No. 5, Jakarta Utara".into(),
            "Telp. 021-4500-123".into(),
        ],
        utc_offset: wib(),
    }
}

/// The rental agreement and the surat jalan, rendered and sent through the real network
/// transport to the fake printer, arrive byte for byte as their golden files.
#[tokio::test]
async fn rental_papers_match_golden_files() {
    check_goldens(vec![
        (
            "rental_agreement_58",
            Document::RentalAgreement(fixture()),
            PaperWidth::Mm58,
        ),
        (
            "rental_agreement_80",
            Document::RentalAgreement(fixture()),
            PaperWidth::Mm80,
        ),
        (
            "rental_delivery_note_58",
            Document::RentalDeliveryNote(fixture()),
            PaperWidth::Mm58,
        ),
        (
            "rental_invoice_58",
            Document::RentalInvoice(invoice_fixture()),
            PaperWidth::Mm58,
        ),
        (
            "rental_invoice_80",
            Document::RentalInvoice(invoice_fixture()),
            PaperWidth::Mm80,
        ),
    ])
    .await;
}

/// The fixture's rental returned two days late with a scratch: the deposit pays part of the
/// invoice, the customer the rest by QRIS.
fn invoice_fixture() -> RentalInvoiceDoc {
    let paper = fixture();
    let line = |kind: &str, description: &str, qty: i64, unit_price: i64| InvoiceLine {
        kind: kind.into(),
        description: description.into(),
        sku: None,
        qty,
        unit_price,
        amount: qty * unit_price,
    };
    let money =
        |id: &str, kind: &str, method: &str, amount: i64, reference: Option<&str>| RentalPayment {
            id: id.into(),
            kind: kind.into(),
            method: method.into(),
            amount,
            reference: reference.map(str::to_owned),
            invoice_id: (kind != "DEPOSIT").then(|| "0193a5e0-0000-7000-8000-0000000000d1".into()),
            received_at: "2026-12-10T08:05:00.000Z".into(),
        };
    let subtotal = 3 * 350_000 + 2 * 100_000 + 150_000;
    let tax = (subtotal * 11 + 50) / 100;
    RentalInvoiceDoc {
        agreement_number: paper.agreement_number,
        customer: paper.customer,
        asset_name: paper.asset_name,
        plate: paper.plate,
        invoice: RentalInvoice {
            id: "0193a5e0-0000-7000-8000-0000000000d1".into(),
            number: "JKT01-202612-00007".into(),
            lines: vec![
                line(
                    "rental",
                    "Sewa Toyota Avanza 2024 hitam (B 5678 SNT), 3 hari",
                    3,
                    350_000,
                ),
                line("late_fee", "Denda telat 2 hari", 2, 100_000),
                line("damage", "Baret pintu kiri", 1, 150_000),
            ],
            subtotal,
            tax,
            total: subtotal + tax,
            paid: subtotal + tax,
            balance: 0,
            status: "PAID".into(),
            issued_at: "2026-12-10T08:05:00.000Z".into(),
        },
        payments: vec![
            money("p1", "DEPOSIT", "EDC", 1_000_000, Some("APPR-778812")),
            money(
                "p2",
                "PAYMENT",
                "QRIS",
                subtotal + tax - 1_000_000,
                Some("QR-99120"),
            ),
        ],
    }
}

/// Each document, rendered for the test branch's layout and sent through the real network
/// transport to the fake printer, fits its paper and equals its golden file byte for byte
/// (`UPDATE_GOLDEN=1` rewrites them).
pub(crate) async fn check_goldens(docs: Vec<(&str, Document, PaperWidth)>) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let printer = FakePrinter::start().await;
    let target = Target::Network(printer.addr.to_string());
    let mut conn = target
        .connect(
            Duration::from_secs(10),
            &sentra_edge::config::SerialLine::plain(9600),
        )
        .await
        .expect("connect");
    for (name, doc, width) in docs {
        let bytes = document::render(&doc, &layout(width), false);
        conn.send(&target.describe(), &bytes, Duration::from_secs(10))
            .await
            .expect("send");
        let text = document::describe(&bytes);
        for line in text.lines() {
            let printed: String = line
                .split('[')
                .map(|part| part.split_once(']').map_or(part, |(_, rest)| rest))
                .collect();
            assert!(
                printed.len()
                    <= match width {
                        PaperWidth::Mm58 => 32,
                        PaperWidth::Mm80 => 48,
                    },
                "{name}: {printed:?} is wider than the paper"
            );
        }
        let (bin, txt) = (
            golden_dir().join(format!("{name}.bin")),
            golden_dir().join(format!("{name}.txt")),
        );
        if update {
            std::fs::write(&bin, &bytes).expect("write golden");
            std::fs::write(&txt, &text).expect("write golden");
            continue;
        }
        let golden = std::fs::read(&bin)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", bin.display()));
        assert!(
            bytes == golden,
            "{name} differs from {}:\n--- golden\n{}\n--- rendered\n{text}\n(if the change is intended: UPDATE_GOLDEN=1)",
            bin.display(),
            document::describe(&golden)
        );
    }
}
