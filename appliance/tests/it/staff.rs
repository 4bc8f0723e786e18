//! Staff on shared devices and the cash drawer's day, against the real daemon with the demo's
//! staff (manager `mgr-rina` PIN 2468, cashier `kasir-budi` PIN 1357): sessions bound to their
//! device and ended on request, wrong PINs locked out, the manager gate (session or on-the-spot
//! approval), every write's outbox row naming the acting device and staff member, a shift and
//! the day closed with the cash counted, a closed day refusing payments until a manager reopens
//! it, the Z-report queued. The Z-report is also checked against golden files.

use reqwest::{Method, StatusCode};
use sentra_edge::printer::document::{Document, PaperWidth, ZReport, ZShift};
use serde_json::{Value, json};

use crate::harness::{Device, Edge, Site, open_db};

const MANAGER: &str = "mgr-rina:2468";

/// POST with a staff session and/or a manager's approval.
async fn post_as(
    edge: &Edge,
    dev: &Device,
    path: &str,
    body: Value,
    staff: Option<&str>,
    manager: Option<&str>,
) -> (StatusCode, Value) {
    let mut headers = Vec::new();
    if let Some(t) = staff {
        headers.push(("Sentra-Staff", t));
    }
    if let Some(m) = manager {
        headers.push(("Sentra-Manager", m));
    }
    edge.call_with(
        Some(&dev.token),
        Method::POST,
        path,
        Some(body),
        None,
        &headers,
    )
    .await
}

async fn session(edge: &Edge, dev: &Device, staff_id: &str, pin: &str) -> (StatusCode, Value) {
    edge.post(
        dev,
        "/v1/staff/sessions",
        json!({"staff_id": staff_id, "pin": pin}),
    )
    .await
}

/// A work order invoiced for `labour` rupiah (plus PPN); its invoice id.
async fn invoice(edge: &Edge, tablet: &Device, pos: &Device, labour: i64) -> String {
    let (s, wo) = edge
        .post(tablet, "/v1/work-orders", json!({"customer_name": "Sari", "vehicle_plate": "B 1 AB", "complaint": "Servis berkala"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    let id = wo["id"].as_str().expect("id").to_owned();
    for status in ["IN_PROGRESS", "DONE"] {
        let (s, b) = edge
            .post(
                tablet,
                &format!("/v1/work-orders/{id}/status"),
                json!({"status": status}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, inv) = edge
        .post(pos, "/v1/invoices", json!({"work_order_id": id, "labour": [{"description": "Jasa servis", "amount": labour}]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    inv["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_the_manager_gate_and_lockout() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let pos = edge.pair(&site, "pos").await;

    // A wrong PIN, an unknown member, a PIN of the wrong shape: the same 401, nothing opened.
    for (id, pin) in [
        ("kasir-budi", "0000"),
        ("nobody", "1357"),
        ("kasir-budi", "12"),
    ] {
        let (s, b) = session(&edge, &pos, id, pin).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{id}/{pin}: {b}");
    }
    let (s, cashier) = session(&edge, &pos, "kasir-budi", "1357").await;
    assert_eq!(s, StatusCode::CREATED, "{cashier}");
    assert_eq!(cashier["role"], "CASHIER");
    let token = cashier["token"].as_str().expect("token").to_owned();

    // The session is the POS's: on the tablet it is refused.
    let (s, b) = edge
        .call_with(
            Some(&tablet.token),
            Method::GET,
            "/v1/parts",
            None,
            None,
            &[("Sentra-Staff", &token)],
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("staff_session_invalid")),
        "{b}"
    );

    // A payment under the cashier's session: its outbox row names the POS and the cashier.
    let inv = invoice(&edge, &tablet, &pos, 100_000).await;
    let (s, b) = post_as(
        &edge,
        &pos,
        &format!("/v1/invoices/{inv}/payments"),
        json!({"method": "CASH", "amount": 111_000}),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let acting: (Option<String>, Option<String>) = open_db(&site)
        .query_row(
            "SELECT acting_device, acting_staff FROM sync_event_logs WHERE entity = 'payment'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("payment event");
    assert_eq!(acting, (Some(pos.id.clone()), Some("kasir-budi".into())));

    // A credit note needs a manager: refused without one, with a cashier's session, with a
    // wrong PIN; done with the manager's approval on the spot, or under a manager's session.
    let credit = format!("/v1/invoices/{inv}/credit-notes");
    let body = json!({"amount": 1000, "reason": "Diskon"});
    for (staff, manager, status, code) in [
        (None, None, StatusCode::FORBIDDEN, "manager_required"),
        (
            Some(token.as_str()),
            None,
            StatusCode::FORBIDDEN,
            "manager_required",
        ),
        (
            None,
            Some("mgr-rina:9999"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            None,
            Some("kasir-budi:1357"),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            None,
            Some("mgr-rina"),
            StatusCode::UNAUTHORIZED,
            "invalid_manager_header",
        ),
    ] {
        let (s, b) = post_as(&edge, &pos, &credit, body.clone(), staff, manager).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{staff:?} {manager:?}: {b}"
        );
    }
    let (s, b) = post_as(
        &edge,
        &pos,
        &credit,
        body.clone(),
        Some(&token),
        Some(MANAGER),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, mgr) = session(&edge, &pos, "mgr-rina", "2468").await;
    assert_eq!(s, StatusCode::CREATED, "{mgr}");
    let mgr_token = mgr["token"].as_str().expect("token").to_owned();
    let (s, b) = post_as(&edge, &pos, &credit, body.clone(), Some(&mgr_token), None).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let credits: i64 = open_db(&site)
        .query_row("SELECT count(*) FROM credit_notes", [], |r| r.get(0))
        .expect("count");
    assert_eq!(credits, 2, "only the approved credit notes were issued");

    // Ending the session: its token no longer works.
    let (s, _) = edge
        .call_with(
            Some(&pos.token),
            Method::DELETE,
            "/v1/staff/sessions/current",
            None,
            None,
            &[("Sentra-Staff", &token)],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = post_as(
        &edge,
        &pos,
        "/v1/shifts",
        json!({"opening_float": 0}),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("staff_session_invalid")),
        "{b}"
    );

    // Five wrong PINs lock the member out, the right PIN included, for sessions and approvals.
    for _ in 0..5 {
        let (s, _) = session(&edge, &pos, "mgr-rina", "1111").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, b) = session(&edge, &pos, "mgr-rina", "2468").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("pin_locked")),
        "{b}"
    );
    let (s, b) = post_as(&edge, &pos, &credit, body, None, Some(MANAGER)).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("pin_locked")),
        "{b}"
    );
    // Another member is not locked.
    let (s, _) = session(&edge, &pos, "kasir-budi", "1357").await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(edge.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_and_the_day_closed_then_reopened() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let pos = edge.pair(&site, "pos").await;
    let (_, cashier) = session(&edge, &pos, "kasir-budi", "1357").await;
    let token = cashier["token"].as_str().expect("token").to_owned();
    let cashier = Some(token.as_str());

    // A shift needs a staff session; then one per device.
    let (s, b) = edge
        .post(&pos, "/v1/shifts", json!({"opening_float": 500_000}))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("staff_session_required")),
        "{b}"
    );
    let (s, b) = post_as(
        &edge,
        &pos,
        "/v1/shifts",
        json!({"opening_float": -1}),
        cashier,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, shift) = post_as(
        &edge,
        &pos,
        "/v1/shifts",
        json!({"opening_float": 500_000}),
        cashier,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{shift}");
    let (s, b) = post_as(
        &edge,
        &pos,
        "/v1/shifts",
        json!({"opening_float": 0}),
        cashier,
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("shift_open")),
        "{b}"
    );
    let shift_id = shift["id"].as_str().expect("id").to_owned();
    let day = shift["day"].as_str().expect("day").to_owned();

    // Takings: 111 000 cash and 222 000 QRIS on this device.
    let first = invoice(&edge, &tablet, &pos, 100_000).await;
    let second = invoice(&edge, &tablet, &pos, 200_000).await;
    let later = invoice(&edge, &tablet, &pos, 50_000).await;
    for (inv, body) in [
        (&first, json!({"method": "CASH", "amount": 111_000})),
        (
            &second,
            json!({"method": "QRIS", "amount": 222_000, "reference": "QR-9"}),
        ),
    ] {
        let (s, b) = post_as(
            &edge,
            &pos,
            &format!("/v1/invoices/{inv}/payments"),
            body,
            cashier,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }

    // A payment typed in error (cash on the wrong invoice) is voided the same day with a
    // manager's approval: refused without one, with nothing changed; then moved to `voided`,
    // its amount owed again, one `payment:voided` event naming the manager.
    let (s, wrong) = post_as(
        &edge,
        &pos,
        &format!("/v1/invoices/{later}/payments"),
        json!({"method": "CASH", "amount": 55_500}),
        cashier,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{wrong}");
    let wrong_id = wrong["payments"][0]["id"]
        .as_str()
        .expect("payment")
        .to_owned();
    let void = format!("/v1/payments/{wrong_id}/void");
    let reason = json!({"reason": "Salah invoice"});
    for (manager, status, code) in [
        (None, StatusCode::FORBIDDEN, "manager_required"),
        (Some("kasir-budi:1357"), StatusCode::FORBIDDEN, "forbidden"),
    ] {
        let (s, b) = post_as(&edge, &pos, &void, reason.clone(), cashier, manager).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{b}"
        );
    }
    let (s, b) = post_as(
        &edge,
        &pos,
        &void,
        json!({"reason": ""}),
        cashier,
        Some(MANAGER),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let events = |op: &str| -> i64 {
        open_db(&site)
            .query_row(
                "SELECT count(*) FROM sync_event_logs WHERE entity = 'payment' AND op = ?1",
                [op],
                |r| r.get(0),
            )
            .expect("events")
    };
    assert_eq!(events("voided"), 0, "a refused void changes nothing");
    let (s, voided) = post_as(&edge, &pos, &void, reason.clone(), cashier, Some(MANAGER)).await;
    assert_eq!(s, StatusCode::OK, "{voided}");
    assert_eq!(voided["payments"], json!([]), "{voided}");
    assert_eq!(voided["paid"], 0);
    assert_eq!(voided["balance"], 55_500);
    assert_eq!(voided["status"], "ISSUED");
    assert_eq!(
        (
            voided["voided"][0]["id"].as_str(),
            voided["voided"][0]["manager_id"].as_str(),
            voided["voided"][0]["amount"].as_i64()
        ),
        (Some(wrong_id.as_str()), Some("mgr-rina"), Some(55_500)),
        "{voided}"
    );
    let (s, b) = post_as(&edge, &pos, &void, reason.clone(), cashier, Some(MANAGER)).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_voided")),
        "{b}"
    );
    let (s, b) = post_as(
        &edge,
        &pos,
        "/v1/payments/nope/void",
        reason.clone(),
        cashier,
        Some(MANAGER),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(events("voided"), 1);
    let payload: Value = open_db(&site)
        .query_row(
            "SELECT payload FROM sync_event_logs WHERE entity = 'payment' AND op = 'voided'",
            [],
            |r| r.get::<_, String>(0),
        )
        .map(|p| serde_json::from_str(&p).expect("json"))
        .expect("void event");
    assert_eq!(
        (
            payload["id"].as_str(),
            payload["manager_id"].as_str(),
            payload["reason"].as_str()
        ),
        (
            Some(wrong_id.as_str()),
            Some("mgr-rina"),
            Some("Salah invoice")
        )
    );

    // Closing the day while the shift is open: refused.
    let close_day = format!("/v1/days/{day}/close");
    let (s, b) = post_as(&edge, &pos, &close_day, json!({}), cashier, Some(MANAGER)).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("shift_open")),
        "{b}"
    );

    // The cash counted is 10 000 short: the reason is required.
    let close = format!("/v1/shifts/{shift_id}/close");
    let (s, b) = post_as(
        &edge,
        &pos,
        &close,
        json!({"counted_cash": 601_000}),
        cashier,
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reason")),
        "{b}"
    );
    let (s, closed) = post_as(
        &edge,
        &pos,
        &close,
        json!({"counted_cash": 601_000, "reason": "Kembalian salah"}),
        cashier,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{closed}");
    assert_eq!(
        closed["totals"],
        json!({"cash": 111_000, "edc": 0, "qris": 222_000})
    );
    assert_eq!(
        (
            closed["expected_cash"].as_i64(),
            closed["difference"].as_i64(),
            closed["status"].as_str()
        ),
        (Some(611_000), Some(-10_000), Some("CLOSED"))
    );
    // The voided payment is not in the shift's totals above; a payment of the closed shift can
    // no longer be voided (its totals are final).
    let (_, first_invoice) = edge.get(&pos, &format!("/v1/invoices/{first}")).await;
    let first_payment = first_invoice["payments"][0]["id"]
        .as_str()
        .expect("payment")
        .to_owned();
    let (s, b) = post_as(
        &edge,
        &pos,
        &format!("/v1/payments/{first_payment}/void"),
        reason.clone(),
        cashier,
        Some(MANAGER),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("shift_closed")),
        "{b}"
    );

    // The day: a manager closes it (not the cashier alone); its reason is required too.
    let (s, b) = post_as(&edge, &pos, &close_day, json!({}), cashier, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("manager_required")),
        "{b}"
    );
    let (s, b) = post_as(&edge, &pos, &close_day, json!({}), cashier, Some(MANAGER)).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reason")),
        "{b}"
    );
    let (s, d) = post_as(
        &edge,
        &pos,
        &close_day,
        json!({"reason": "Selisih kasir shift 1"}),
        cashier,
        Some(MANAGER),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(
        (d["status"].as_str(), d["manager_id"].as_str()),
        (Some("CLOSED"), Some("mgr-rina")),
        "{d}"
    );
    assert_eq!(
        d["totals"],
        json!({"cash": 111_000, "edc": 0, "qris": 222_000})
    );
    let (s, b) = post_as(
        &edge,
        &pos,
        &close_day,
        json!({"reason": "lagi"}),
        cashier,
        Some(MANAGER),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("day_closed")),
        "{b}"
    );

    // A closed day takes no payment and opens no shift; nothing was recorded.
    let pay_later = format!("/v1/invoices/{later}/payments");
    let (s, b) = post_as(
        &edge,
        &pos,
        &pay_later,
        json!({"method": "CASH", "amount": 55_500}),
        cashier,
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("day_closed")),
        "{b}"
    );
    let (s, b) = post_as(
        &edge,
        &pos,
        "/v1/shifts",
        json!({"opening_float": 0}),
        cashier,
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("day_closed")),
        "{b}"
    );
    let db = open_db(&site);
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(count("SELECT count(*) FROM payments"), 2);
    assert_eq!(
        count("SELECT count(*) FROM print_jobs WHERE document = 'z_report'"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM sync_event_logs WHERE entity = 'shift'"),
        2
    );
    assert_eq!(
        count("SELECT count(*) FROM sync_event_logs WHERE entity = 'branch_day'"),
        1
    );

    // Reopening needs a manager and a reason; then payments go through again.
    let reopen = format!("/v1/days/{day}/reopen");
    let (s, b) = post_as(
        &edge,
        &pos,
        &reopen,
        json!({"reason": "Pelanggan datang"}),
        cashier,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = post_as(&edge, &pos, &reopen, json!({}), cashier, Some(MANAGER)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, d) = post_as(
        &edge,
        &pos,
        &reopen,
        json!({"reason": "Pelanggan datang"}),
        cashier,
        Some(MANAGER),
    )
    .await;
    assert_eq!(
        (s, d["status"].as_str()),
        (StatusCode::OK, Some("REOPENED")),
        "{d}"
    );
    let (s, b) = post_as(
        &edge,
        &pos,
        &pay_later,
        json!({"method": "CASH", "amount": 55_500}),
        cashier,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = post_as(
        &edge,
        &pos,
        &reopen,
        json!({"reason": "lagi"}),
        cashier,
        Some(MANAGER),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("day_not_closed")),
        "{b}"
    );
    let (s, d) = edge.get(&pos, &format!("/v1/days/{day}")).await;
    assert_eq!(
        (s, d["totals"]["cash"].as_i64()),
        (StatusCode::OK, Some(166_500)),
        "{d}"
    );
    let (s, b) = edge.get(&pos, "/v1/days/2026-13-01").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(
        count("SELECT count(*) FROM sync_event_logs WHERE entity = 'branch_day'"),
        2
    );
    assert_eq!(edge.stop().await, 0);
}

fn z_fixture() -> ZReport {
    ZReport {
        day: "2026-12-06".into(),
        closed_at: "2026-12-06T14:05:00.000Z".into(),
        manager: "Rina (manager)".into(),
        shifts: vec![ZShift {
            cashier: "Budi (kasir)".into(),
            opened_at: "2026-12-06T01:00:00.000Z".into(),
            closed_at: "2026-12-06T14:00:00.000Z".into(),
            opening_float: 500_000,
            expected_cash: 611_000,
            counted_cash: 601_000,
            difference: -10_000,
            reason: Some("Kembalian salah ke pelanggan".into()),
        }],
        totals: (111_000, 350_000, 222_000),
        expected_cash: 611_000,
        counted_cash: 601_000,
        difference: -10_000,
        reason: Some("Selisih kasir shift 1".into()),
    }
}

/// The Z-report at 58 and 80 mm equals its golden files (`UPDATE_GOLDEN=1` rewrites them).
#[tokio::test]
async fn z_report_matches_golden_files() {
    crate::rental::check_goldens(vec![
        (
            "z_report_58",
            Document::ZReport(z_fixture()),
            PaperWidth::Mm58,
        ),
        (
            "z_report_80",
            Document::ZReport(z_fixture()),
            PaperWidth::Mm80,
        ),
    ])
    .await;
}
