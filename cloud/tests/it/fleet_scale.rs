//! The fleet page at 10 000 boxes (issue 20): filter, search and pages in `/v1/fleet`, `/fleet`
//! and `/fleet/live`, bad queries refused with a 400 that says why, a box's download progress from
//! its signed heartbeat to the page, the fleet gauges from the background cache, history thinned
//! beyond the last hour, and the page in headless Chromium at phone and laptop widths (screenshots
//! kept under the test's target directory, path printed).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::cloud::Cloud;
use crate::sim_fleet::{self, SimBox};

const BOXES: usize = 10_000;

/// The simulated fleet and one real box (enrolled, signing its heartbeats) that is downloading.
async fn big_fleet() -> (Cloud, crate::cloud::Device) {
    let cloud = Cloud::start_with(&[("SENTRA_CLOUD__FLEET__GAUGES_REFRESH_SECS", "1")]).await;
    let mut db = cloud.db.connect().await;
    sim_fleet::insert(&mut db, BOXES).await;
    let device = cloud.enroll("REAL01").await;
    let beat = json!({
        "version": "1.0.0", "uptime_secs": 60, "healthy": true,
        "update": {"state": "downloading", "target_version": "2.0.0"},
        "download": {"received_bytes": 12_300_000, "total_bytes": 40_000_000},
    });
    let answer = cloud
        .signed(
            &device,
            Method::POST,
            "/v1/devices/heartbeat",
            Some(beat.to_string().into_bytes()),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    (cloud, device)
}

/// How many simulated boxes `keep` holds.
fn expected(keep: impl Fn(usize, SimBox) -> bool) -> u64 {
    (1..=BOXES).filter(|&i| keep(i, SimBox::of(i))).count() as u64
}

async fn fleet_json(cloud: &Cloud, query: &str) -> Value {
    let answer = cloud
        .bearer(
            &cloud.operator,
            Method::GET,
            &format!("/v1/fleet{query}"),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{query}: {answer:?}");
    answer.body
}

/// A page as text, with the operator token.
async fn page(cloud: &Cloud, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let answer = crate::support::http_client()
        .get(format!("http://{}{path}", cloud.server.addr))
        .bearer_auth(&cloud.operator)
        .send()
        .await
        .expect("GET a fleet page");
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    (status, headers, answer.text().await.expect("its text"))
}

#[tokio::test]
async fn ten_thousand_boxes_are_filtered_searched_and_paged() {
    let (cloud, device) = big_fleet().await;
    let all = BOXES as u64 + 1;

    let first = fleet_json(&cloud, "").await;
    assert_eq!(first["summary"]["devices"], all);
    let offline = expected(|_, b| b.offline);
    assert_eq!(first["summary"]["offline"], offline);
    assert_eq!(
        first["summary"]["needing_attention"],
        expected(|_, b| b.attention)
    );
    assert_eq!(
        first["page"],
        json!({"page": 1, "size": 50, "matching": all, "pages": 201})
    );
    let devices = first["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 50);
    // Attention first, the longest offline first: the boxes silent for three hours.
    assert!(
        devices[0]["offline_secs"].as_i64() >= Some(3 * 3600),
        "{}",
        devices[0]
    );
    assert!(
        devices
            .iter()
            .all(|d| !d["attention"].as_array().expect("list").is_empty())
    );

    for (query, count) in [
        ("?state=offline", offline),
        ("?state=never-seen", expected(|_, b| b.never_seen)),
        ("?state=online", all - offline),
        ("?state=attention", expected(|_, b| b.attention)),
        // Search: a hostname, a branch name (case-insensitive), a branch id part.
        ("?q=box-1234", 1),
        ("?q=bengkel+999", 11),
        ("?q=sim0004", 10),
        ("?q=%25", 0),
        ("?branch=SIM00042", 1),
        ("?branch=REAL01", 1),
        (
            "?version=2.0.0&channel=canary",
            expected(|_, b| b.new_version && b.canary),
        ),
        (
            "?version=1.0.0&state=offline&channel=stable",
            expected(|_, b| !b.new_version && b.offline && !b.canary),
        ),
        // The empty text fields a GET form sends are no filter (its size is a select).
        ("?q=&branch=&version=&state=&channel=&size=50", all),
    ] {
        let view = fleet_json(&cloud, query).await;
        assert_eq!(view["page"]["matching"], count, "{query}");
        let rows = view["devices"].as_array().expect("devices").len() as u64;
        assert_eq!(rows, count.min(50), "{query}");
        assert_eq!(
            view["summary"]["devices"], all,
            "{query}: the counts are the fleet's"
        );
    }

    // Pages do not overlap and follow on from one another.
    let ids = |view: &Value| -> Vec<String> {
        view["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .map(|d| d["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let two_hundred = ids(&fleet_json(&cloud, "?size=200").await);
    let second = ids(&fleet_json(&cloud, "?size=100&page=2").await);
    assert_eq!(&two_hundred[100..], &second[..]);
    let past = fleet_json(&cloud, "?page=9999").await;
    assert_eq!(past["devices"], json!([]));

    // Bad queries: 400 with what was wrong, never a 500.
    for (query, says) in [
        (
            "?page=0",
            "page \"0\": expected a whole number from 1 to 10000",
        ),
        ("?size=100000", "size"),
        ("?state=asleep", "state \"asleep\""),
        ("?version=latest", "version \"latest\""),
        ("?channel=STABLE", "channel \"STABLE\""),
        ("?branch=a%20b", "branch \"a b\""),
        ("?sort=name", "unknown parameter \"sort\""),
        ("?page=1&page=2", "page is given twice"),
        ("?q=%00", "no control characters"),
    ] {
        for path in ["/v1/fleet", "/fleet/live"] {
            let answer = cloud
                .bearer(
                    &cloud.operator,
                    Method::GET,
                    &format!("{path}{query}"),
                    None,
                )
                .await;
            assert_eq!(answer.status, 400, "{path}{query}: {answer:?}");
            assert_eq!(answer.code(), "bad_query", "{path}{query}");
            let message = answer.body["error"]["message"].as_str().expect("message");
            assert!(message.contains(says), "{path}{query}: {message}");
        }
        let (status, _, html) = page(&cloud, &format!("/fleet{query}")).await;
        assert_eq!(status, 400, "/fleet{query}");
        assert!(html.contains("That list cannot be shown"), "{html}");
    }

    // The page: the form keeps the filter, the pager links carry it, the script is allowed by
    // its hash and nothing else.
    let (status, headers, html) = page(&cloud, "/fleet?state=offline&size=25&page=2").await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().expect("ASCII");
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "the overview does not reload itself"
    );
    assert!(
        html.contains("<option value=\"offline\" selected>"),
        "{html}"
    );
    assert!(
        html.contains(&format!("Devices 26–50 of {offline}.")),
        "{html}"
    );
    assert!(
        html.contains("href=\"/fleet?state=offline&amp;size=25&amp;page=3\""),
        "{html}"
    );
    assert!(
        html.contains("href=\"/fleet?state=offline&amp;size=25\""),
        "previous page: {html}"
    );
    assert!(
        html.contains(">Refresh</a>"),
        "a refresh without scripts: {html}"
    );
    assert_eq!(
        html.matches("<tr class=\"attention\" data-device=").count(),
        25
    );

    // The live endpoint: the same rows as the page, rendered the same, and the counts.
    let live = cloud
        .bearer(
            &cloud.operator,
            Method::GET,
            "/fleet/live?state=offline&size=25&page=2",
            None,
        )
        .await;
    assert_eq!(live.status, 200, "{live:?}");
    assert_eq!(live.body["counts"]["devices"], all);
    assert_eq!(live.body["counts"]["offline"], offline);
    assert_eq!(live.body["shown"], format!("Devices 26–50 of {offline}."));
    let rows = live.body["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 25);
    for row in rows {
        let html_row = row["html"].as_str().expect("html");
        let id = row["id"].as_str().expect("id");
        let v = row["v"].as_str().expect("v");
        assert!(
            html_row.starts_with(&format!(
                "<tr class=\"attention\" data-device=\"{id}\" data-v=\"{v}\">"
            )),
            "{html_row}"
        );
        assert!(
            html.contains(&format!("data-device=\"{id}\"")),
            "the page has the row {id}"
        );
    }
    let anonymous = crate::support::http_client()
        .get(format!("http://{}/fleet/live", cloud.server.addr))
        .send()
        .await
        .expect("GET /fleet/live");
    assert_eq!(anonymous.status(), 401);

    // The real box's download: bytes of total in its heartbeat, on its row and its page.
    let detail = cloud
        .bearer(
            &cloud.operator,
            Method::GET,
            &format!("/v1/fleet/devices/{}", device.id),
            None,
        )
        .await;
    assert_eq!(
        detail.body["device"]["heartbeat"]["download"],
        json!({"received_bytes": 12_300_000, "total_bytes": 40_000_000})
    );
    for path in [
        format!("/fleet/devices/{}", device.id),
        "/fleet?branch=REAL01".to_owned(),
    ] {
        let (status, _, html) = page(&cloud, &path).await;
        assert_eq!(status, 200, "{path}");
        assert!(html.contains("12.3 of 40.0 MB"), "{path}: {html}");
        assert!(
            html.contains("<progress value=\"12300000\" max=\"40000000\" aria-label=\"download\">12.3 of 40.0 MB</progress>"),
            "{path}: {html}"
        );
    }
    // A box cannot claim more than the whole.
    let wild = json!({
        "version": "1.0.0", "uptime_secs": 60,
        "update": {"state": "downloading", "target_version": "2.0.0"},
        "download": {"received_bytes": 41_000_000, "total_bytes": 40_000_000},
    });
    let refused = cloud
        .signed(
            &device,
            Method::POST,
            "/v1/devices/heartbeat",
            Some(wild.to_string().into_bytes()),
        )
        .await;
    assert_eq!(refused.status, 422, "{refused:?}");

    // The gauges come from the background reading (every second here), not from the scrape.
    let mut devices_gauge = 0.0;
    for _ in 0..100 {
        let text = crate::support::scrape(cloud.server.addr, &cloud.operator).await;
        let scrape = crate::support::parse_metrics(&text);
        devices_gauge = crate::support::sample_sum(&scrape, "sentra_cloud_fleet_devices", &[]);
        if devices_gauge == all as f64 {
            assert!(
                crate::support::sample_sum(&scrape, "sentra_cloud_fleet_gauges_age_seconds", &[])
                    < 3.0 * 1.0 + 1.0
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(devices_gauge, all as f64);

    screenshots(&cloud).await;
}

/// The overview of the 10 000 boxes in headless Chromium: the counts, the live script run under
/// the page's CSP (its poll answered), and screenshots at a phone's and a laptop's width.
async fn screenshots(cloud: &Cloud) {
    let dir = tempfile::tempdir().expect("temp dir");
    // One poll (every 15 s) within the virtual time.
    let dom = crate::fleet::chromium(
        cloud,
        dir.path(),
        &["--dump-dom", "--virtual-time-budget=25000"],
    )
    .await;
    assert!(
        dom.contains(&format!("id=\"count-devices\">{}<", BOXES + 1)),
        "{dom}"
    );
    assert!(
        dom.contains("role=\"status\">Updated "),
        "the live script ran and its poll was answered: {dom}"
    );
    assert_eq!(dom.matches("data-device=").count(), 50);

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleet-page");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    for (name, size) in [("phone", "390,2600"), ("laptop", "1366,1800")] {
        let file = shots.join(format!("fleet-10k-{name}.png"));
        let _ = std::fs::remove_file(&file);
        crate::fleet::chromium(
            cloud,
            dir.path(),
            &[
                &format!("--screenshot={}", file.display()),
                &format!("--window-size={size}"),
            ],
        )
        .await;
        let png = std::fs::read(&file).expect("chromium wrote the screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", file.display());
        eprintln!("fleet page screenshot (10 000 boxes): {}", file.display());
    }
}

/// History keeps every heartbeat of the last hour and one per device and 10 minutes before
/// that: rows written before the cloud starts are thinned by its first passes.
#[tokio::test]
async fn history_beyond_the_last_hour_is_thinned_to_one_per_ten_minutes() {
    let db = crate::support::TestDb::create().await;
    crate::support::migrate(&db).await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "INSERT INTO branches (id, name) VALUES ('HIST1', 'History');
         INSERT INTO devices (id, branch_id) VALUES ('0f0e0d0c-0000-4000-8000-000000000001', 'HIST1');
         -- A heartbeat a minute: the last hour, and the first hour of the retention.
         INSERT INTO heartbeat_history (device_id, received_at, version, update_state, healthy,
                                        backlog, backlog_bytes, skew_ms)
         SELECT '0f0e0d0c-0000-4000-8000-000000000001'::uuid, now() - make_interval(mins => m),
                '1.0.0', 'idle', true, 0, 0, 0
         FROM generate_series(1, 59) m
         UNION ALL
         SELECT '0f0e0d0c-0000-4000-8000-000000000001'::uuid, now() - interval '26 hours' + make_interval(mins => m),
                '1.0.0', 'idle', true, 0, 0, 0
         FROM generate_series(1, 60) m;",
    )
    .execute(&mut conn)
    .await
    .expect("write history");
    let _cloud = Cloud::start_on(db, &[]).await;
    // The first pass (at the start) thins the oldest half hour of the retention: the rows older
    // than 25 h 40 min are certainly in it.
    let per_bucket = "SELECT coalesce(max(n), 0) FROM (
        SELECT count(*) AS n FROM heartbeat_history
        WHERE received_at < now() - interval '25 hours 40 minutes'
        GROUP BY floor(extract(epoch FROM received_at) / 600)) b";
    let mut most = i64::MAX;
    for _ in 0..150 {
        most = sqlx::query_scalar(per_bucket)
            .fetch_one(&mut conn)
            .await
            .expect("count");
        if most <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(most, 1, "one heartbeat per 10 minutes beyond the raw hour");
    let raw: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM heartbeat_history WHERE received_at > now() - interval '1 hour'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(raw, 59, "the last hour keeps every heartbeat");
}
