//! The fleet page's server time at 10 000 boxes (issue 20: aim p99 ≤ 200 ms), beside its floor
//! in the same run:
//!
//! 1. **Page**: `SENTRA_BENCH_PAGE_REQUESTS` (200) sequential `GET /fleet` (the overview, first
//!    page of 50, operator token) from one client to one `sentra-cloud serve`, then the same for
//!    `/fleet/live` (the script's poll), `/fleet?state=offline&page=3` and `/fleet?q=bengkel+12`.
//!    Latency is the client's: request sent to the last byte of the answer, over loopback.
//! 2. **Floor**: the page's three queries (its devices, the counts, the groups: the very SQL of
//!    `src/fleet/sql.rs`) one after another on one connection, no HTTP, no rendering, as often.
//!
//! It also prints PostgreSQL's plan of the device query (`EXPLAIN (ANALYZE, BUFFERS)`).
//!
//! `cargo bench -p sentra-cloud --bench fleet_page`. Needs PostgreSQL (`SENTRA_TEST_PG_ADMIN_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`) and Redis (`SENTRA_TEST_REDIS_URL`);
//! the database (`SENTRA_BENCH_BOXES`, 10 000 simulated boxes written by SQL as heartbeats
//! leave them) is created fresh and dropped at the end.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "support/replica.rs"]
mod replica;
#[path = "support/scratch_db.rs"]
mod scratch_db;
#[path = "../tests/it/sim_fleet.rs"]
#[allow(dead_code, reason = "the tests count with SimBox, the bench does not")]
mod sim_fleet;
#[path = "../src/fleet/sql.rs"]
#[allow(dead_code, reason = "the bench runs some of the page's queries")]
mod sql;

use std::time::Instant;

use sha2::{Digest as _, Sha256};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio::process::Command;

use scratch_db::{admin_sql, database_url};

const BIN: &str = env!("CARGO_BIN_EXE_sentra-cloud");
/// `fleet.offline_after_secs`' default.
const OFFLINE_AFTER_SECS: i64 = 180;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// p50 and p99 of `ms`, in ms.
fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((p * (ms.len() - 1) as f64).round() as usize).min(ms.len() - 1)];
    (at(0.5), at(0.99))
}

async fn timed_gets(http: &reqwest::Client, url: &str, token: &str, n: usize) -> (f64, f64) {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let sent = Instant::now();
        let answer = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("the page answers");
        assert!(answer.status().is_success(), "{url}: {}", answer.status());
        let body = answer.bytes().await.expect("its body");
        assert!(!body.is_empty());
        ms.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    percentiles(ms)
}

#[tokio::main]
async fn main() {
    let boxes = env_usize("SENTRA_BENCH_BOXES", 10_000);
    let requests = env_usize("SENTRA_BENCH_PAGE_REQUESTS", 200).max(1);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let name = format!("sentra_fleet_page_{}", std::process::id());
    admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    admin_sql(format!("CREATE DATABASE {name}")).await;
    let url = database_url(&name);
    let migrated = Command::new(BIN)
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run migrate");
    assert!(
        migrated.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let mut db = PgConnection::connect(&url)
        .await
        .expect("the bench database");
    sim_fleet::insert(&mut db, boxes).await;
    let token = format!("{:064x}", rand::random::<u128>());
    sqlx::query("INSERT INTO api_tokens (name, role, token_hash) VALUES ('bench', 'operator', $1)")
        .bind(Sha256::digest(token.as_bytes()).to_vec())
        .execute(&mut db)
        .await
        .expect("an operator token");

    let (serve, base) = replica::serve(&url, "error").await;
    let http = reqwest::Client::new();
    println!(
        "fleet page at {boxes} boxes, {requests} sequential requests each (one client, loopback)"
    );
    println!("{:<44} {:>9} {:>9}", "", "p50 ms", "p99 ms");
    for path in [
        "/fleet",
        "/fleet/live",
        "/fleet?state=offline&page=3",
        "/fleet?q=bengkel+12",
    ] {
        let url = format!("{base}{path}");
        timed_gets(&http, &url, &token, 10).await;
        let (p50, p99) = timed_gets(&http, &url, &token, requests).await;
        println!("{:<44} {p50:>9.1} {p99:>9.1}", format!("GET {path}"));
    }

    // The floor: the page's queries alone, as the first page of /fleet runs them.
    let (page, counts, groups) = (sql::page(), sql::counts(), sql::groups());
    let none: Option<String> = None;
    let mut ms = Vec::with_capacity(requests);
    for round in 0..requests + 10 {
        let started = Instant::now();
        let rows = sqlx::query(AssertSqlSafe(page.as_str()))
            .bind(OFFLINE_AFTER_SECS)
            .bind(&none)
            .bind(&none)
            .bind(&none)
            .bind(&none)
            .bind(&none)
            .bind(50_i64)
            .bind(0_i64)
            .fetch_all(&mut db)
            .await
            .expect("the device query");
        assert_eq!(rows.len(), 50.min(boxes));
        sqlx::query(AssertSqlSafe(counts.as_str()))
            .bind(OFFLINE_AFTER_SECS)
            .bind(&none)
            .bind(&none)
            .bind(&none)
            .bind(&none)
            .bind(&none)
            .fetch_one(&mut db)
            .await
            .expect("the counts");
        sqlx::query(AssertSqlSafe(groups.as_str()))
            .bind(OFFLINE_AFTER_SECS)
            .fetch_all(&mut db)
            .await
            .expect("the groups");
        if round >= 10 {
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let (p50, p99) = percentiles(ms);
    println!(
        "{:<44} {p50:>9.1} {p99:>9.1}",
        "floor: its 3 queries in PostgreSQL, in a row"
    );

    for (what, query) in [("counts", &counts), ("groups", &groups)] {
        let explain = format!("EXPLAIN (ANALYZE, COSTS OFF) {query}");
        let mut plan =
            sqlx::query_scalar::<_, String>(AssertSqlSafe(explain)).bind(OFFLINE_AFTER_SECS);
        if what == "counts" {
            plan = plan
                .bind(&none)
                .bind(&none)
                .bind(&none)
                .bind(&none)
                .bind(&none);
        }
        let plan = plan.fetch_all(&mut db).await.expect("the plan");
        let time = plan.last().cloned().unwrap_or_default();
        println!("the {what} query at {boxes} boxes: {time}");
    }
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {page}");
    let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(explain))
        .bind(OFFLINE_AFTER_SECS)
        .bind(&none)
        .bind(&none)
        .bind(&none)
        .bind(&none)
        .bind(&none)
        .bind(50_i64)
        .bind(0_i64)
        .fetch_all(&mut db)
        .await
        .expect("the plan");
    println!("\nthe device query's plan at {boxes} boxes:");
    for line in plan {
        println!("  {line}");
    }

    drop(serve);
    drop(db);
    admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}
