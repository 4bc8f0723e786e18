//! Rental booking at the branch, end to end (issue 4, the edge part): online, the counter gets
//! the cloud's hold within the request; with the link cut, bookings are `TENTATIVE` and the cloud
//! decides them at sync (one accepted, one rejected because the web portal took the days
//! meanwhile); a lost acknowledgement makes no second hold; availability comes from the pulled
//! calendar while offline; bad input changes nothing.

use std::time::Duration;

use sentra_system_tests::{Cloud, Edge, EdgeSite, Proxy, ProxyMode, Redis, eventually};
use serde_json::{Value, json};
use sqlx::Row as _;

const BRANCH: &str = "BKG01";
const WAIT: Duration = Duration::from_secs(60);

async fn cloud_call(
    cloud: &Cloud,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let resp = sentra_system_tests::http()
        .request(
            method.parse().expect("method"),
            format!("{}{path}", cloud.url),
        )
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request to the cloud");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn book(
    edge: &Edge,
    pos: &str,
    asset: &str,
    from: &str,
    to: &str,
    customer: &str,
) -> (u16, Value) {
    edge.call(
        Some(pos),
        "POST",
        "/v1/bookings",
        Some(json!({"asset_id": asset, "from": from, "to": to, "customer": customer, "tier": "gold"})),
    )
    .await
}

/// Outbox length and number of bookings at the edge: what bad input must leave alone.
async fn edge_counts(edge: &Edge, site: &EdgeSite, token: &str) -> (Value, i64) {
    let st = edge.sync_status(token).await;
    let bookings: i64 = site
        .open_db()
        .query_row("SELECT count(*) FROM bookings", [], |r| r.get(0))
        .expect("count bookings");
    (st["last_seq"].clone(), bookings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_holds_offline_tentatives_decided_at_sync() {
    let redis = Redis::start().await;
    let cloud = Cloud::start_with(&[("REDIS_URL", &redis.url)]).await;
    let proxy = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), 11).await;
    let site = EdgeSite::new(BRANCH, "");
    let edge = site.start().await;
    let pos = site.pair(&edge, "pos").await;
    let tablet = site.pair(&edge, "tablet").await;
    site.enroll(&proxy.url, &cloud.enrollment_token(BRANCH));

    // The branch's cars are master data from the cloud.
    let op = cloud.operator_token();
    for (id, plate) in [("CAR-001", "B 1001 BKG"), ("CAR-002", "B 1002 BKG")] {
        let (s, b) = cloud_call(
            &cloud,
            &op,
            "PUT",
            &format!("/v1/branches/{BRANCH}/assets/{id}"),
            json!({"id": id, "sku": "AVZ", "plate": plate, "name": "Toyota Avanza"}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    eventually(
        WAIT,
        "the assets to reach the branch and the link to be up",
        || async {
            let (_, assets) = edge.call(Some(&tablet), "GET", "/v1/assets", None).await;
            let st = edge.sync_status(&tablet).await;
            (assets.as_array().is_some_and(|a| a.len() == 2) && st["link"]["state"] == "online")
                .then_some(())
        },
    )
    .await;

    // Online: the cloud's hold, answered within the request.
    let (s, held) = book(&edge, &pos, "CAR-001", "2027-03-01", "2027-03-03", "Budi").await;
    assert_eq!(s, 201, "{held}");
    assert_eq!(held["state"], "HELD", "{held}");
    assert_eq!(held["source"], "cloud", "{held}");
    assert!(
        held["expires_at"].is_string(),
        "a hold has a payment window: {held}"
    );
    let cloud_id = held["cloud_id"].as_str().expect("cloud id").to_owned();
    let mut pg = cloud.pg().await;
    let state: String = sqlx::query("SELECT state FROM bookings WHERE id = $1::uuid")
        .bind(&cloud_id)
        .fetch_one(&mut pg)
        .await
        .expect("the hold is in PostgreSQL")
        .get(0);
    assert_eq!(state, "HELD");

    // A taken slot is the cloud's 409 with its waitlist offer, and changes nothing here.
    let before = edge_counts(&edge, &site, &tablet).await;
    let (s, b) = book(&edge, &pos, "CAR-001", "2027-03-03", "2027-03-05", "Sari").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("taken")),
        "{b}"
    );
    assert_eq!(b["waitlist"]["offer"], true, "{b}");
    assert_eq!(edge_counts(&edge, &site, &tablet).await, before);

    let (s, a) = edge
        .call(
            Some(&tablet),
            "GET",
            "/v1/assets/CAR-001/availability?from=2027-03-02&to=2027-03-02",
            None,
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        (a["source"].as_str(), a["free"].as_bool()),
        (Some("cloud"), Some(false)),
        "{a}"
    );

    // The branch keeps the calendar of its assets from its pulls.
    eventually(
        WAIT,
        "the online hold to be in the pulled calendar",
        || async {
            let n: i64 = site
                .open_db()
                .query_row(
                    "SELECT count(*) FROM booking_calendar WHERE cloud_id = ?1",
                    [&cloud_id],
                    |r| r.get(0),
                )
                .expect("calendar");
            (n == 1).then_some(())
        },
    )
    .await;

    // The link drops. Meanwhile the customer portal takes CAR-002 for 10-12 April.
    proxy.set(ProxyMode::Down);
    let portal = cloud.portal_token();
    let (s, b) = cloud_call(
        &cloud,
        &portal,
        "POST",
        "/v1/bookings",
        json!({"branch": BRANCH, "asset_id": "CAR-002", "sku": "AVZ", "from": "2027-04-10", "to": "2027-04-12", "customer": "web-77"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");

    // Offline: availability from the pulled calendar, marked as such.
    let (s, a) = edge
        .call(
            Some(&tablet),
            "GET",
            "/v1/assets/CAR-001/availability?from=2027-03-03&to=2027-03-04",
            None,
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["source"], "cached", "{a}");
    assert!(a["as_of"].is_string(), "{a}");
    assert_eq!(a["free"], false, "the online hold covers 3 March: {a}");
    assert_eq!(
        a["busy"][0]["id"], held["id"],
        "the branch's own hold, named once: {a}"
    );
    assert_eq!(a["busy"].as_array().map(Vec::len), Some(1), "{a}");
    let (_, a) = edge
        .call(
            Some(&tablet),
            "GET",
            "/v1/assets/CAR-002/availability?from=2027-04-11&to=2027-04-11",
            None,
        )
        .await;
    assert_eq!(
        (a["source"].as_str(), a["free"].as_bool()),
        (Some("cached"), Some(true)),
        "the branch has not heard of the portal's booking: {a}"
    );

    // Offline bookings are TENTATIVE, in the outbox.
    let (s, first) = book(&edge, &pos, "CAR-001", "2027-04-01", "2027-04-03", "Agus").await;
    assert_eq!(s, 202, "{first}");
    assert_eq!(
        (first["state"].as_str(), first["source"].as_str()),
        (Some("TENTATIVE"), Some("sync")),
        "{first}"
    );
    let (s, second) = book(&edge, &pos, "CAR-002", "2027-04-11", "2027-04-11", "Citra").await;
    assert_eq!(s, 202, "{second}");
    assert_eq!(second["state"], "TENTATIVE");
    // The branch does not promise days it already promised.
    let (s, b) = book(&edge, &pos, "CAR-001", "2027-04-03", "2027-04-04", "Dewi").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("taken")),
        "{b}"
    );

    // Bad input: a clear 4xx, nothing changed.
    let before = edge_counts(&edge, &site, &tablet).await;
    for (body, status, field) in [
        (
            json!({"asset_id": "CAR-001", "from": "2027-13-01", "to": "2027-13-02", "customer": "X"}),
            422,
            "from",
        ),
        (
            json!({"asset_id": "CAR-001", "from": "2027-05-05", "to": "2027-05-01", "customer": "X"}),
            422,
            "to",
        ),
        (
            json!({"asset_id": "CAR-404", "from": "2027-05-01", "to": "2027-05-02", "customer": "X"}),
            422,
            "asset_id",
        ),
        (
            json!({"asset_id": "CAR-001", "from": "2027-05-01", "to": "2027-05-02", "customer": "X", "tier": "diamond"}),
            422,
            "tier",
        ),
        (
            json!({"asset_id": "CAR-001", "from": "2027-05-01", "to": "2027-05-02", "customer": " "}),
            422,
            "customer",
        ),
    ] {
        let (s, b) = edge
            .call(Some(&pos), "POST", "/v1/bookings", Some(body.clone()))
            .await;
        assert_eq!(
            (s, b["error"]["field"].as_str()),
            (status, Some(field)),
            "{body}: {b}"
        );
    }
    for (path, status) in [
        (
            "/v1/assets/CAR-001/availability?from=2027-05-01&to=yesterday",
            422,
        ),
        (
            "/v1/assets/CAR-001/availability?from=2027-05-03&to=2027-05-01",
            422,
        ),
        ("/v1/assets/CAR-001/availability", 400),
        (
            "/v1/assets/CAR-404/availability?from=2027-05-01&to=2027-05-02",
            404,
        ),
        ("/v1/bookings/no-such-booking", 404),
    ] {
        let (s, b) = edge.call(Some(&tablet), "GET", path, None).await;
        assert_eq!(s, status, "{path}: {b}");
        assert!(b["error"]["message"].is_string(), "{path}: {b}");
    }
    assert_eq!(
        edge_counts(&edge, &site, &tablet).await,
        before,
        "bad input changed nothing"
    );

    // The link returns, but the acknowledgement of the push is lost: the cloud decided both.
    let first_id = first["id"].as_str().expect("id").to_owned();
    let second_id = second["id"].as_str().expect("id").to_owned();
    let first_key = format!("edge-booking-{first_id}");
    proxy.set(ProxyMode::DropReplies);
    eventually(WAIT, "the cloud to ingest the offline bookings", || async {
        let mut pg = cloud.pg().await;
        let n: i64 = sqlx::query("SELECT count(*) FROM branch_changes WHERE branch_id = $1 AND kind = 'booking_decision'")
            .bind(BRANCH)
            .fetch_one(&mut pg)
            .await
            .expect("count decisions")
            .get(0);
        (n == 2).then_some(())
    })
    .await;
    let st = edge.sync_status(&tablet).await;
    assert!(
        st["pending_events"].as_i64() > Some(0),
        "the edge has not heard the ack: {st}"
    );
    proxy.set(ProxyMode::Pass);
    edge.drained(&tablet, WAIT).await;

    // The decisions reach the branch: one accepted, one rejected with the reason.
    let confirmed = eventually(WAIT, "the first offline booking to be decided", || async {
        let (_, b) = edge
            .call(
                Some(&tablet),
                "GET",
                &format!("/v1/bookings/{first_id}"),
                None,
            )
            .await;
        (b["state"] != "TENTATIVE").then_some(b)
    })
    .await;
    assert_eq!(confirmed["state"], "CONFIRMED", "{confirmed}");
    assert!(confirmed["cloud_id"].is_string(), "{confirmed}");
    let rejected = eventually(WAIT, "the second offline booking to be decided", || async {
        let (_, b) = edge
            .call(
                Some(&tablet),
                "GET",
                &format!("/v1/bookings/{second_id}"),
                None,
            )
            .await;
        (b["state"] != "TENTATIVE").then_some(b)
    })
    .await;
    assert_eq!(
        (rejected["state"].as_str(), rejected["reject_code"].as_str()),
        (Some("REJECTED"), Some("taken")),
        "{rejected}"
    );
    assert!(
        rejected["reason"]
            .as_str()
            .is_some_and(|r| r.contains("CAR-002") && r.contains("taken")),
        "{rejected}"
    );

    // Exactly one hold for the accepted request, however often its event travelled; the
    // portal keeps its days.
    let mut pg = cloud.pg().await;
    let rows: Vec<(String, String)> =
        sqlx::query("SELECT id::text, state FROM bookings WHERE idempotency_key = $1")
            .bind(&first_key)
            .fetch_all(&mut pg)
            .await
            .expect("holds")
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0],
        (
            confirmed["cloud_id"].as_str().expect("id").to_owned(),
            "CONFIRMED".to_owned()
        )
    );
    let live_car2: Vec<String> = sqlx::query(
        "SELECT customer FROM bookings WHERE asset_id = 'CAR-002' AND state IN ('HELD', 'CONFIRMED')",
    )
    .fetch_all(&mut pg)
    .await
    .expect("car 2")
    .into_iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(live_car2, ["web-77"]);
    let events: i64 = sqlx::query("SELECT count(*) FROM events WHERE entity = 'booking'")
        .fetch_one(&mut pg)
        .await
        .expect("events")
        .get(0);
    assert_eq!(events, 2, "each booking event once in the cloud");
    drop(redis);
}

/// What the cloud's PostgreSQL says booking `id` is.
async fn cloud_state(cloud: &Cloud, id: &str) -> String {
    let mut pg = cloud.pg().await;
    sqlx::query("SELECT state FROM bookings WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&mut pg)
        .await
        .expect("the booking is in PostgreSQL")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_confirms_cancels_completes_and_joins_the_waitlist_through_the_box() {
    let redis = Redis::start().await;
    let cloud = Cloud::start_with(&[("REDIS_URL", &redis.url)]).await;
    let proxy = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), 13).await;
    let site = EdgeSite::new(BRANCH, "");
    let edge = site.start().await;
    let pos = site.pair(&edge, "pos").await;
    site.enroll(&proxy.url, &cloud.enrollment_token(BRANCH));
    let op = cloud.operator_token();
    for (id, plate) in [
        ("CAR-001", "B 1001 BKG"),
        ("CAR-002", "B 1002 BKG"),
        ("CAR-003", "B 1003 BKG"),
    ] {
        let (s, b) = cloud_call(
            &cloud,
            &op,
            "PUT",
            &format!("/v1/branches/{BRANCH}/assets/{id}"),
            json!({"id": id, "sku": "AVZ", "plate": plate, "name": "Toyota Avanza"}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    eventually(WAIT, "the assets and the link", || async {
        let (_, assets) = edge.call(Some(&pos), "GET", "/v1/assets", None).await;
        let st = edge.sync_status(&pos).await;
        (assets.as_array().is_some_and(|a| a.len() == 3) && st["link"]["state"] == "online")
            .then_some(())
    })
    .await;
    let act = |id: String, action: &'static str, body: Option<Value>| {
        let (edge, pos) = (&edge, &pos);
        async move {
            edge.call(
                Some(pos.as_str()),
                "POST",
                &format!("/v1/bookings/{id}/{action}"),
                body,
            )
            .await
        }
    };

    // Online: payment taken at the counter, then the car comes back early with a scratch.
    let (s, held) = book(&edge, &pos, "CAR-001", "2026-11-01", "2026-11-05", "Budi").await;
    assert_eq!(s, 201, "{held}");
    let id = held["id"].as_str().expect("id").to_owned();
    let cloud_id = held["cloud_id"].as_str().expect("cloud id").to_owned();
    let (s, b) = act(id.clone(), "confirm", Some(json!({"payment_ref": ""}))).await;
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (422, Some("payment_ref")),
        "{b}"
    );
    let (s, confirmed) = act(
        id.clone(),
        "confirm",
        Some(json!({"payment_ref": "pay-box-1"})),
    )
    .await;
    assert_eq!(s, 200, "{confirmed}");
    assert_eq!(confirmed["state"], "CONFIRMED", "{confirmed}");
    assert_eq!(cloud_state(&cloud, &cloud_id).await, "CONFIRMED");
    let (s, done) = act(
        id.clone(),
        "complete",
        Some(json!({"returned_at": "2026-11-03T17:00:00+07:00", "damage_charge": 100000})),
    )
    .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!(done["cloud"]["free_from"], "2026-11-04", "{done}");
    assert!(
        done["cloud"]["settlement"]["captured_at"].is_string(),
        "{done}"
    );
    assert!(
        done["cloud"]["settlement"]["released_at"].is_string(),
        "{done}"
    );
    let (_, seen) = edge
        .call(Some(&pos), "GET", &format!("/v1/bookings/{id}"), None)
        .await;
    assert_eq!(seen["state"], "COMPLETED", "{seen}");
    // The cloud's refusal is passed on: a completed booking is not confirmed again.
    let (s, b) = act(
        id.clone(),
        "confirm",
        Some(json!({"payment_ref": "pay-box-2"})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("wrong_state")),
        "{b}"
    );

    // Online cancel and waitlist.
    let (s, held2) = book(&edge, &pos, "CAR-002", "2027-05-01", "2027-05-02", "Sari").await;
    assert_eq!(s, 201, "{held2}");
    let (s, cancelled) = act(held2["id"].as_str().expect("id").to_owned(), "cancel", None).await;
    assert_eq!(
        (s, cancelled["state"].as_str()),
        (200, Some("CANCELLED")),
        "{cancelled}"
    );
    assert_eq!(
        cloud_state(&cloud, held2["cloud_id"].as_str().expect("cloud id")).await,
        "CANCELLED"
    );
    let wait =
        json!({"asset_id": "CAR-001", "date": "2027-06-01", "customer": "Eka", "tier": "gold"});
    let (s, entry) = edge
        .call(Some(&pos), "POST", "/v1/waitlist", Some(wait.clone()))
        .await;
    assert_eq!(s, 201, "{entry}");
    assert_eq!(entry["state"], "WAITING", "{entry}");

    // A hold taken online, then the link drops.
    let (s, held3) = book(&edge, &pos, "CAR-003", "2027-05-10", "2027-05-11", "Joko").await;
    assert_eq!(s, 201, "{held3}");
    let held3_id = held3["id"].as_str().expect("id").to_owned();
    proxy.set(ProxyMode::Down);
    let before = edge_counts(&edge, &site, &pos).await;
    let (s, b) = act(
        held3_id.clone(),
        "confirm",
        Some(json!({"payment_ref": "pay-box-3"})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("cloud_unreachable")),
        "{b}"
    );
    let (s, b) = act(
        held3_id.clone(),
        "complete",
        Some(json!({"returned_at": "2027-05-11T10:00:00+07:00"})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("cloud_unreachable")),
        "{b}"
    );
    let (s, b) = edge
        .call(Some(&pos), "POST", "/v1/waitlist", Some(wait))
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (503, Some("cloud_unreachable")),
        "{b}"
    );
    assert_eq!(
        edge_counts(&edge, &site, &pos).await,
        before,
        "nothing changed"
    );

    // Cancel works offline: the held booking, and one taken offline (TENTATIVE).
    let (s, c3) = act(held3_id.clone(), "cancel", None).await;
    assert_eq!((s, c3["state"].as_str()), (200, Some("CANCELLED")), "{c3}");
    let (s, tentative) = book(&edge, &pos, "CAR-002", "2027-07-01", "2027-07-02", "Dewi").await;
    assert_eq!(
        (s, tentative["state"].as_str()),
        (202, Some("TENTATIVE")),
        "{tentative}"
    );
    let tentative_id = tentative["id"].as_str().expect("id").to_owned();
    let (s, b) = act(
        tentative_id.clone(),
        "confirm",
        Some(json!({"payment_ref": "p"})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("not_decided")),
        "{b}"
    );
    let (s, ct) = act(tentative_id.clone(), "cancel", None).await;
    assert_eq!((s, ct["state"].as_str()), (200, Some("CANCELLED")), "{ct}");

    // The link returns: the cloud applies both cancellations at ingest.
    proxy.set(ProxyMode::Pass);
    edge.drained(&pos, WAIT).await;
    assert_eq!(
        cloud_state(&cloud, held3["cloud_id"].as_str().expect("cloud id")).await,
        "CANCELLED"
    );
    let mut pg = cloud.pg().await;
    let states: Vec<String> = sqlx::query("SELECT state FROM bookings WHERE idempotency_key = $1")
        .bind(format!("edge-booking-{tentative_id}"))
        .fetch_all(&mut pg)
        .await
        .expect("the offline booking")
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        states,
        ["CANCELLED"],
        "decided, then cancelled by the branch"
    );
    let (_, seen) = edge
        .call(
            Some(&pos),
            "GET",
            &format!("/v1/bookings/{tentative_id}"),
            None,
        )
        .await;
    assert_eq!(
        seen["state"], "CANCELLED",
        "the decision does not undo the cancel: {seen}"
    );
    drop(redis);
}

/// The identity gate (issue 8) at the branch: a customer whose KTP was never checked is refused
/// online, and a booking taken for them offline comes back `REJECTED` with that reason at sync,
/// while a verified customer's offline booking is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_customer_is_refused_online_and_rejected_at_sync() {
    use base64::Engine as _;
    let redis = Redis::start().await;
    let cloud = Cloud::start_with(&[
        ("REDIS_URL", &redis.url),
        ("SENTRA_CLOUD__IDENTITY__REQUIRED", "true"),
        ("SENTRA_CLOUD__IDENTITY__PROVIDER_URL", "sandbox"),
    ])
    .await;
    let proxy = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), 17).await;
    let site = EdgeSite::new(BRANCH, "");
    let edge = site.start().await;
    let pos = site.pair(&edge, "pos").await;
    let tablet = site.pair(&edge, "tablet").await;
    site.enroll(&proxy.url, &cloud.enrollment_token(BRANCH));
    let op = cloud.operator_token();
    let (s, b) = cloud_call(
        &cloud,
        &op,
        "PUT",
        &format!("/v1/branches/{BRANCH}/assets/CAR-001"),
        json!({"id": "CAR-001", "sku": "AVZ", "plate": "B 1001 BKG", "name": "Toyota Avanza"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    eventually(WAIT, "the asset and the link", || async {
        let (_, assets) = edge.call(Some(&tablet), "GET", "/v1/assets", None).await;
        let st = edge.sync_status(&tablet).await;
        (assets.as_array().is_some_and(|a| a.len() == 1) && st["link"]["state"] == "online")
            .then_some(())
    })
    .await;

    // C-VER's KTP is checked (through the cloud's sandbox provider); C-NEW's never is. A check
    // attaches to the branch's customer record (issue 15), so C-VER has one, and the operator
    // names the branch it checks for.
    let (s, b) = cloud_call(
        &cloud,
        &op,
        "PATCH",
        &format!("/v1/branches/{BRANCH}/customers/C-VER"),
        json!({"name": "Vera"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let (s, v) = cloud_call(
        &cloud,
        &op,
        "POST",
        "/v1/customers/C-VER/identity",
        json!({"ktp_image": b64("SANDBOX-KTP\nnik=3171010508900001\nname=Vera\n"),
               "selfie": b64("SANDBOX-FACE\nsimilarity=0.95\nlive=true\n"),
               "branch": BRANCH}),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("VERIFIED")), "{v}");

    // Online: the cloud's refusal reaches the counter, nothing is booked at the box.
    let (s, b) = book(&edge, &pos, "CAR-001", "2027-05-01", "2027-05-02", "C-NEW").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (422, Some("identity_unverified")),
        "{b}"
    );

    // Offline: both are TENTATIVE; the cloud decides at sync.
    proxy.set(ProxyMode::Down);
    let (s, unverified) = book(&edge, &pos, "CAR-001", "2027-05-10", "2027-05-11", "C-NEW").await;
    assert_eq!(
        (s, unverified["state"].as_str()),
        (202, Some("TENTATIVE")),
        "{unverified}"
    );
    let (s, verified) = book(&edge, &pos, "CAR-001", "2027-05-20", "2027-05-21", "C-VER").await;
    assert_eq!(
        (s, verified["state"].as_str()),
        (202, Some("TENTATIVE")),
        "{verified}"
    );
    proxy.set(ProxyMode::Pass);
    edge.drained(&tablet, WAIT).await;
    let decided = |id: String| {
        let edge = &edge;
        let tablet = &tablet;
        async move {
            eventually(WAIT, "an offline booking to be decided", || async {
                let (_, b) = edge
                    .call(Some(tablet), "GET", &format!("/v1/bookings/{id}"), None)
                    .await;
                (b["state"] != "TENTATIVE").then_some(b)
            })
            .await
        }
    };
    let rejected = decided(unverified["id"].as_str().expect("id").to_owned()).await;
    assert_eq!(
        (rejected["state"].as_str(), rejected["reject_code"].as_str()),
        (Some("REJECTED"), Some("identity_unverified")),
        "{rejected}"
    );
    assert!(
        rejected["reason"]
            .as_str()
            .is_some_and(|r| r.contains("KTP")),
        "{rejected}"
    );
    let confirmed = decided(verified["id"].as_str().expect("id").to_owned()).await;
    assert_eq!(confirmed["state"], "CONFIRMED", "{confirmed}");
}
