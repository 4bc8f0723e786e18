//! Rental booking at the counter, end to end on loopback: a real `sentra-edge` and `sentra-cloud`
//! (PostgreSQL, a `redis-server` of its own). Figures: latency of an online booking through the
//! box (the cloud's hold answered within the request) beside the same hold asked of the cloud
//! directly, latency of an offline (`TENTATIVE`) booking, availability online and cached, and how
//! long the cloud takes to decide a backlog of offline bookings once the link returns (push,
//! holds in the ingest transaction, pull of the decisions).
//!
//! `cargo bench -p sentra-system-tests --bench edge_booking` (env BENCH_BOOKINGS, default 200)
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::{Duration, Instant};

use sentra_system_tests::{Cloud, Edge, EdgeSite, Proxy, ProxyMode, Redis, eventually};
use serde_json::{Value, json};

const BRANCH: &str = "BEN01";
const ASSETS: usize = 50;

fn percentiles(mut d: Vec<Duration>) -> String {
    d.sort();
    let at = |p: f64| {
        let i = ((d.len() as f64 - 1.0) * p).round() as usize;
        d[i].as_secs_f64() * 1000.0
    };
    format!("p50 {:.2} ms, p99 {:.2} ms", at(0.5), at(0.99))
}

/// Booking `n`: asset `n % ASSETS`, a 2-day stay starting every third day of `year`, so no two
/// overlap (at most 121 per asset and year).
fn stay(n: usize, year: u32) -> (String, String, String) {
    let asset = format!("CAR-{:03}", n % ASSETS);
    let first = (n / ASSETS) * 3;
    (
        asset,
        day_of_year(year, first),
        day_of_year(year, first + 1),
    )
}

/// `YYYY-MM-DD` of the `index`-th day (from 0) of `year`.
fn day_of_year(year: u32, mut index: usize) -> String {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let months = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    for (m, len) in months.iter().enumerate() {
        if index < *len {
            return format!("{year:04}-{:02}-{:02}", m + 1, index + 1);
        }
        index -= len;
    }
    panic!("more bookings than days in {year}");
}

async fn book(edge: &Edge, pos: &str, n: usize, year: u32) -> (u16, Value) {
    let (asset, from, to) = stay(n, year);
    edge.call(
        Some(pos),
        "POST",
        "/v1/bookings",
        Some(json!({"asset_id": asset, "from": from, "to": to, "customer": format!("C-{n}")})),
    )
    .await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_BOOKINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let redis = Redis::start().await;
    let cloud = Cloud::start_with(&[("REDIS_URL", &redis.url)]).await;
    let proxy = Proxy::start(cloud.url.trim_start_matches("http://").to_owned(), 1).await;
    let site = EdgeSite::new(BRANCH, "");
    let edge = site.start().await;
    let pos = site.pair(&edge, "pos").await;
    site.enroll(&proxy.url, &cloud.enrollment_token(BRANCH));
    let http = sentra_system_tests::http();
    let op = cloud.operator_token();
    for i in 0..ASSETS {
        let id = format!("CAR-{i:03}");
        let r = http
            .put(format!("{}/v1/branches/{BRANCH}/assets/{id}", cloud.url))
            .bearer_auth(&op)
            .json(&json!({"id": id, "sku": "AVZ", "plate": format!("B {} BEN", 1000 + i), "name": "Avanza"}))
            .send()
            .await
            .expect("asset");
        assert!(r.status().is_success());
    }
    eventually(Duration::from_secs(60), "assets and link", || async {
        let (_, a) = edge.call(Some(&pos), "GET", "/v1/assets", None).await;
        let st = edge.sync_status(&pos).await;
        (a.as_array().map(Vec::len) == Some(ASSETS) && st["link"]["state"] == "online")
            .then_some(())
    })
    .await;

    // Online, through the box.
    let mut online = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let (s, b) = book(&edge, &pos, i, 2030).await;
        online.push(t.elapsed());
        assert_eq!(s, 201, "{b}");
    }
    // The same holds asked of the cloud directly (portal token), for the floor.
    let portal = cloud.portal_token();
    let mut direct = Vec::with_capacity(n);
    for i in 0..n {
        let (asset, from, to) = stay(i, 2031);
        let t = Instant::now();
        let r = http
            .post(format!("{}/v1/bookings", cloud.url))
            .bearer_auth(&portal)
            .json(&json!({"branch": BRANCH, "asset_id": asset, "sku": "AVZ", "from": from, "to": to, "customer": format!("C-{i}")}))
            .send()
            .await
            .expect("direct hold");
        direct.push(t.elapsed());
        assert_eq!(r.status().as_u16(), 201);
    }
    let mut avail_online = Vec::with_capacity(n);
    for i in 0..n {
        let (asset, from, to) = stay(i, 2032);
        let t = Instant::now();
        let (s, a) = edge
            .call(
                Some(&pos),
                "GET",
                &format!("/v1/assets/{asset}/availability?from={from}&to={to}"),
                None,
            )
            .await;
        avail_online.push(t.elapsed());
        assert_eq!((s, a["source"].as_str()), (200, Some("cloud")), "{a}");
    }

    // Offline: the link is down and the box knows it.
    proxy.set(ProxyMode::Down);
    eventually(
        Duration::from_secs(60),
        "the box to see the link down",
        || async { (edge.sync_status(&pos).await["link"]["state"] == "offline").then_some(()) },
    )
    .await;
    let mut offline = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let (s, b) = book(&edge, &pos, i, 2033).await;
        offline.push(t.elapsed());
        assert_eq!(s, 202, "{b}");
        ids.push(b["id"].as_str().expect("id").to_owned());
    }
    let mut avail_cached = Vec::with_capacity(n);
    for i in 0..n {
        let (asset, from, to) = stay(i, 2032);
        let t = Instant::now();
        let (s, a) = edge
            .call(
                Some(&pos),
                "GET",
                &format!("/v1/assets/{asset}/availability?from={from}&to={to}"),
                None,
            )
            .await;
        avail_cached.push(t.elapsed());
        assert_eq!((s, a["source"].as_str()), (200, Some("cached")), "{a}");
    }

    // The link returns: time until every offline booking is decided at the box.
    proxy.set(ProxyMode::Pass);
    let t = Instant::now();
    let last = ids.last().expect("one booking").clone();
    eventually(Duration::from_secs(600), "the decisions", || async {
        let (_, b) = edge
            .call(Some(&pos), "GET", &format!("/v1/bookings/{last}"), None)
            .await;
        (b["state"] == "CONFIRMED").then_some(())
    })
    .await;
    let decided = t.elapsed();
    let db = site.open_db();
    let confirmed: i64 = db
        .query_row(
            "SELECT count(*) FROM bookings WHERE source = 'sync' AND state = 'CONFIRMED'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(confirmed, n as i64);

    println!();
    println!("| figure ({n} each) | value |");
    println!("| --- | --- |");
    println!(
        "| online booking through the box (201 HELD) | {} |",
        percentiles(online)
    );
    println!(
        "| the same hold asked of the cloud directly | {} |",
        percentiles(direct)
    );
    println!(
        "| offline booking (202 TENTATIVE, link known down) | {} |",
        percentiles(offline)
    );
    println!(
        "| availability, online (`source: cloud`) | {} |",
        percentiles(avail_online)
    );
    println!(
        "| availability, offline (`source: cached`) | {} |",
        percentiles(avail_cached)
    );
    println!(
        "| link back → all {n} offline bookings CONFIRMED at the box | {:.2} s |",
        decided.as_secs_f64()
    );
    edge.kill().await;
    drop(redis);
}
