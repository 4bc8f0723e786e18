//! Staff and the cash drawer, end to end with a real cloud: staff authored in the cloud (PINs
//! hashed there) reach the box; with the link down the cashier opens a session with her PIN,
//! opens and closes her shift (a cash payment typed in error voided with the manager's approval
//! on the way), and the manager approves the day's close on the spot. When the link returns,
//! the shift, the void and the day reach PostgreSQL once, and head office's payments report
//! leaves the voided payment out.

use std::time::Duration;

use sentra_system_tests::{Cloud, EdgeSite, Proxy, ProxyMode, eventually};
use serde_json::{Value, json};

const BRANCH: &str = "STF01";
const WAIT: Duration = Duration::from_secs(60);

async fn put(cloud: &Cloud, token: &str, path: &str, body: Value) {
    let resp = sentra_system_tests::http()
        .put(format!("{}{path}", cloud.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request to the cloud");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{path}: {body}");
}

async fn count(cloud: &Cloud, sql: &str) -> i64 {
    let mut pg = cloud.pg().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(BRANCH)
        .fetch_one(&mut pg)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_and_day_closed_offline_reach_the_cloud_once() {
    let cloud = Cloud::start().await;
    let proxy = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), 33).await;
    let site = EdgeSite::new(BRANCH, "");
    let edge = site.start().await;
    let pos = site.pair(&edge, "pos").await;
    let tablet = site.pair(&edge, "tablet").await;
    site.enroll(&proxy.url, &cloud.enrollment_token(BRANCH));

    let op = cloud.operator_token();
    for (id, name, role, pin) in [
        ("mgr-rina", "Rina", "MANAGER", "2468"),
        ("kasir-budi", "Budi", "CASHIER", "1357"),
    ] {
        put(
            &cloud,
            &op,
            &format!("/v1/branches/{BRANCH}/staff/{id}"),
            json!({"name": name, "role": role, "active": true, "pin": pin}),
        )
        .await;
    }
    // Wait on the pull, not on a PIN: every refused PIN counts toward the lockout. The branch's
    // change log holds the two staff records, so a pull cursor of 2 means both are at the box.
    eventually(WAIT, "the staff at the branch", || async {
        let status = edge.sync_status(&pos).await;
        (status["sync"]["pull_cursor"].as_u64() >= Some(2)).then_some(())
    })
    .await;

    // The link goes down; the drawer's day goes on at the box.
    proxy.set(ProxyMode::Down);
    let (s, session) = edge
        .call(
            Some(&pos),
            "POST",
            "/v1/staff/sessions",
            Some(json!({"staff_id": "kasir-budi", "pin": "1357"})),
        )
        .await;
    assert_eq!(s, 201, "{session}");
    let staff = session["token"].as_str().expect("token").to_owned();
    let headers = [("Sentra-Staff", staff.as_str())];
    let (s, shift) = edge
        .call_with(
            Some(&pos),
            "POST",
            "/v1/shifts",
            Some(json!({"opening_float": 300_000})),
            &headers,
        )
        .await;
    assert_eq!(s, 201, "{shift}");
    let (id, day) = (
        shift["id"].as_str().expect("id"),
        shift["day"].as_str().expect("day"),
    );
    // An invoice of 111 000 (100 000 + PPN): paid in cash by mistake, voided by the manager,
    // paid again by QRIS.
    let post = |token: &str, path: String, body: Value, headers: Vec<(&'static str, String)>| {
        let (edge, token) = (&edge, token.to_owned());
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let (s, b) = edge
                .call_with(Some(&token), "POST", &path, Some(body), &headers)
                .await;
            assert!((200..300).contains(&s), "{path}: {s} {b}");
            b
        }
    };
    let wo = post(
        &tablet,
        "/v1/work-orders".into(),
        json!({"customer_name": "Sari", "vehicle_plate": "H 1 AB", "complaint": "Servis"}),
        vec![],
    )
    .await;
    let wo = wo["id"].as_str().expect("work order").to_owned();
    for status in ["IN_PROGRESS", "DONE"] {
        post(
            &tablet,
            format!("/v1/work-orders/{wo}/status"),
            json!({"status": status}),
            vec![],
        )
        .await;
    }
    let inv = post(
        &pos,
        "/v1/invoices".into(),
        json!({"work_order_id": wo, "labour": [{"description": "Servis", "amount": 100_000}]}),
        vec![],
    )
    .await;
    let inv = inv["id"].as_str().expect("invoice").to_owned();
    let cashier = vec![("Sentra-Staff", staff.clone())];
    let paid = post(
        &pos,
        format!("/v1/invoices/{inv}/payments"),
        json!({"method": "CASH", "amount": 111_000}),
        cashier.clone(),
    )
    .await;
    let wrong = paid["payments"][0]["id"]
        .as_str()
        .expect("payment")
        .to_owned();
    let mut approved = cashier.clone();
    approved.push(("Sentra-Manager", "mgr-rina:2468".into()));
    post(
        &pos,
        format!("/v1/payments/{wrong}/void"),
        json!({"reason": "Salah metode"}),
        approved,
    )
    .await;
    post(
        &pos,
        format!("/v1/invoices/{inv}/payments"),
        json!({"method": "QRIS", "amount": 111_000, "reference": "QR-7"}),
        cashier,
    )
    .await;

    let (s, closed) = edge
        .call_with(
            Some(&pos),
            "POST",
            &format!("/v1/shifts/{id}/close"),
            Some(json!({"counted_cash": 290_000, "reason": "Kurang kembalian"})),
            &headers,
        )
        .await;
    assert_eq!(
        (s, closed["difference"].as_i64()),
        (200, Some(-10_000)),
        "{closed}"
    );
    let (s, d) = edge
        .call_with(
            Some(&pos),
            "POST",
            &format!("/v1/days/{day}/close"),
            Some(json!({"reason": "Selisih kas"})),
            &[
                ("Sentra-Staff", staff.as_str()),
                ("Sentra-Manager", "mgr-rina:2468"),
            ],
        )
        .await;
    assert_eq!((s, d["status"].as_str()), (200, Some("CLOSED")), "{d}");
    assert_eq!(
        count(
            &cloud,
            "SELECT count(*) FROM staff_shifts WHERE branch_id = $1"
        )
        .await,
        0,
        "nothing reached the cloud while the link was down"
    );

    // The link returns: the shift and the day reach PostgreSQL, once.
    proxy.set(ProxyMode::Pass);
    edge.drained(&pos, WAIT).await;
    assert_eq!(
        count(&cloud, "SELECT count(*) FROM staff_shifts WHERE branch_id = $1 AND status = 'CLOSED' AND staff_id = 'kasir-budi' AND opening_float = 300000 AND counted_cash = 290000 AND difference = -10000").await,
        1
    );
    assert_eq!(
        count(&cloud, "SELECT count(*) FROM branch_days WHERE branch_id = $1 AND status = 'CLOSED' AND manager_id = 'mgr-rina' AND difference = -10000").await,
        1
    );
    assert_eq!(
        count(
            &cloud,
            "SELECT count(*) FROM events WHERE branch_id = $1 AND entity IN ('shift', 'branch_day')"
        )
        .await,
        3,
        "opened, closed, the day closed: each once"
    );
    assert_eq!(
        count(
            &cloud,
            "SELECT count(*) FROM payment_voids WHERE branch_id = $1 AND manager_id = 'mgr-rina'"
        )
        .await,
        1,
        "the void, once"
    );
    assert_eq!(
        count(
            &cloud,
            "SELECT count(*) FROM parked_events WHERE branch_id = $1"
        )
        .await,
        0
    );
    let report = sentra_system_tests::http()
        .get(format!(
            "{}/v1/branches/{BRANCH}/reports/payments?from={day}&to={day}",
            cloud.url
        ))
        .bearer_auth(&op)
        .send()
        .await
        .expect("the payments report");
    assert_eq!(report.status().as_u16(), 200);
    let report: Value = report.json().await.expect("json");
    assert_eq!(
        report["totals"],
        json!([{"method": "QRIS", "net": 111_000}]),
        "the voided cash payment is not counted: {report}"
    );
}
