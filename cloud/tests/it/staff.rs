//! Staff as master data (`PUT /v1/branches/{branch}/staff/{id}`: operator only, the PIN hashed
//! with argon2 at once and never stored or answered in clear, the same PIN again changing
//! nothing), pulled by the branch's boxes as a `staff` change; and the cash drawer's events
//! (a shift opened and closed, the day closed and reopened) projected once however often sent.

use reqwest::Method;
use sentra_protocol::EntityKind;
use serde_json::{Value, json};

use crate::cloud::Cloud;

fn member(name: &str, role: &str, pin: &str) -> Value {
    json!({"name": name, "role": role, "active": true, "pin": pin})
}

#[tokio::test]
async fn staff_are_master_data_and_the_drawer_is_projected_once() {
    let cloud = Cloud::start().await;
    let mut device = cloud.enroll("JKT01").await;
    let path = "/v1/branches/JKT01/staff/mgr-rina";

    let first = cloud
        .bearer(
            &cloud.operator,
            Method::PUT,
            path,
            Some(member("Rina", "MANAGER", "2468")),
        )
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        (&first.body["changed"], &first.body["cursor"]),
        (&json!(true), &json!(1))
    );
    assert!(
        first.body["record"].get("pin").is_none() && first.body["record"].get("pin_hash").is_none(),
        "{first:?}"
    );
    // The same PIN again: nothing changes (the stored hash verifies it); a new PIN is a change.
    let same = cloud
        .bearer(
            &cloud.operator,
            Method::PUT,
            path,
            Some(member("Rina", "MANAGER", "2468")),
        )
        .await;
    assert_eq!(
        (same.status, &same.body["changed"]),
        (200, &json!(false)),
        "{same:?}"
    );
    let renewed = cloud
        .bearer(
            &cloud.operator,
            Method::PUT,
            path,
            Some(member("Rina", "MANAGER", "8642")),
        )
        .await;
    assert_eq!(
        (renewed.status, &renewed.body["cursor"]),
        (200, &json!(2)),
        "{renewed:?}"
    );
    let clear = cloud
        .scalar("SELECT count(*) FROM staff WHERE pin_hash LIKE '$argon2id$%' AND pin_hash NOT LIKE '%8642%'")
        .await;
    assert_eq!(clear, 1, "only the argon2 hash is stored");

    let page = cloud.pull(&device, 0, None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let page: sentra_protocol::sync::PullPage =
        serde_json::from_value(page.body).expect("a PullPage");
    match &page.changes[1].body {
        sentra_protocol::sync::ChangeBody::Staff(s) => {
            assert_eq!(
                (s.id.as_str(), s.role.as_str(), s.active),
                ("mgr-rina", "MANAGER", true)
            );
            assert!(s.pin_hash.starts_with("$argon2id$"), "{s:?}");
        }
        other => panic!("expected staff, got {other:?}"),
    }

    // Operators only; a known branch; ids the boxes accept; a name; a 4-8 digit PIN; a role.
    let by_device = cloud
        .signed(
            &device,
            Method::PUT,
            path,
            Some(member("R", "MANAGER", "2468").to_string().into_bytes()),
        )
        .await;
    assert_eq!((by_device.status, by_device.code()), (403, "forbidden"));
    for (p, body, status) in [
        (
            "/v1/branches/NOPE/staff/x",
            member("R", "MANAGER", "2468"),
            404,
        ),
        (
            "/v1/branches/JKT01/staff/a%20b",
            member("R", "MANAGER", "2468"),
            422,
        ),
        (path, member(" ", "MANAGER", "2468"), 422),
        (path, member("R", "MANAGER", "123"), 422),
        (path, member("R", "MANAGER", "12a4"), 422),
        (path, member("R", "BOSS", "2468"), 422),
        (
            path,
            json!({"name": "R", "role": "MANAGER", "active": true}),
            422,
        ),
    ] {
        let answer = cloud
            .bearer(&cloud.operator, Method::PUT, p, Some(body.clone()))
            .await;
        assert_eq!(answer.status, status, "{p} {body}: {answer:?}");
    }
    assert_eq!(
        cloud
            .scalar("SELECT count(*) FROM branch_changes WHERE branch_id = 'JKT01'")
            .await,
        2
    );

    // A shift and the day, as a box sends them; sent twice, projected once.
    let totals = json!({"cash": 111000, "edc": 0, "qris": 222000});
    let mut events = vec![
        device.outbox.raw(EntityKind::Shift, "shift-1", "opened", json!({"id": "shift-1", "staff_id": "kasir-budi",
            "device_id": "pos-1", "day": "2026-12-06", "opening_float": 500000, "opened_at": "2026-12-06T01:00:00.000Z"})),
        device.outbox.raw(EntityKind::Shift, "shift-1", "closed", json!({"id": "shift-1", "staff_id": "kasir-budi",
            "device_id": "pos-1", "day": "2026-12-06", "totals": totals, "expected_cash": 611000, "counted_cash": 601000,
            "difference": -10000, "reason": "Kembalian salah", "closed_at": "2026-12-06T10:00:00.000Z"})),
        device.outbox.raw(EntityKind::BranchDay, "2026-12-06", "closed", json!({"day": "2026-12-06", "manager_id": "mgr-rina",
            "shifts": 1, "totals": totals, "expected_cash": 611000, "counted_cash": 601000, "difference": -10000,
            "reason": "Selisih", "closed_at": "2026-12-06T10:05:00.000Z"})),
        device.outbox.raw(EntityKind::BranchDay, "2026-12-06", "reopened", json!({"day": "2026-12-06",
            "manager_id": "mgr-rina", "reason": "Koreksi", "reopened_at": "2026-12-06T10:10:00.000Z"})),
    ];
    // A difference without a reason, or one that does not add up, is parked.
    events.push(device.outbox.raw(EntityKind::Shift, "shift-2", "closed", json!({"id": "shift-2", "staff_id": "kasir-budi",
        "device_id": "pos-1", "day": "2026-12-06", "totals": totals, "expected_cash": 611000, "counted_cash": 601000,
        "difference": -10000, "reason": null, "closed_at": "2026-12-06T10:00:00.000Z"})));
    events.push(device.outbox.raw(
        EntityKind::BranchDay,
        "2026-12-07",
        "closed",
        json!({"day": "2026-12-07", "manager_id": "mgr-rina",
        "shifts": 0, "totals": totals, "expected_cash": 0, "counted_cash": 0, "difference": 5,
        "reason": "x", "closed_at": "2026-12-07T10:05:00.000Z"}),
    ));
    let answer = cloud.push(&device, &events).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["applied"], 4, "{answer:?}");
    assert_eq!(
        answer.body["parked"].as_array().map(Vec::len),
        Some(2),
        "{answer:?}"
    );
    let again = cloud.push(&device, &events).await;
    assert_eq!(
        (again.status, &again.body["applied"]),
        (200, &json!(0)),
        "{again:?}"
    );

    assert_eq!(
        cloud.scalar("SELECT count(*) FROM staff_shifts WHERE branch_id = 'JKT01' AND status = 'CLOSED' AND difference = -10000 AND qris = 222000").await,
        1
    );
    assert_eq!(
        cloud.scalar("SELECT count(*) FROM branch_days WHERE branch_id = 'JKT01' AND status = 'REOPENED' AND reopened_by = 'mgr-rina' AND cash = 111000").await,
        1
    );
    assert_eq!(cloud.scalar("SELECT count(*) FROM branch_days").await, 1);

    // Head office reads the day's Z-report; the parked 7 December is not there.
    let z = cloud
        .bearer(
            &cloud.operator,
            Method::GET,
            "/v1/branches/JKT01/reports/z-reports?from=2026-12-01&to=2026-12-31",
            None,
        )
        .await;
    assert_eq!(z.status, 200, "{z:?}");
    let days = z.body["days"].as_array().expect("days");
    assert_eq!(days.len(), 1, "{z:?}");
    assert_eq!(
        (
            &days[0]["day"],
            &days[0]["status"],
            &days[0]["cash"],
            &days[0]["qris"],
            &days[0]["difference"],
            &days[0]["reopened_by"],
        ),
        (
            &json!("2026-12-06"),
            &json!("REOPENED"),
            &json!(111000),
            &json!(222000),
            &json!(-10000),
            &json!("mgr-rina")
        )
    );
}
