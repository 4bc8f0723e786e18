//! Booking benchmarks through the real `sentra-cloud serve` binary over HTTP, each beside what
//! it is compared with, in the same run:
//!
//! 1. **Herd**: `SENTRA_BENCH_HERD` (1000) clients at once for one asset-day, with Redis (calendar
//!    and lock in front of PostgreSQL) and with Redis off (an unreachable `REDIS_URL`: PostgreSQL
//!    alone). Latency p50/p99 of all answers, and the check that exactly one got `201`.
//! 2. **Holds/s, uncontended**: `SENTRA_BENCH_HOLDS` (5000) holds on distinct asset-days by
//!    `SENTRA_BENCH_CLIENTS` (32) concurrent clients; beside the floor: the same rows inserted
//!    straight into `bookings` (one transaction each, same concurrency, no HTTP, no Redis).
//! 3. **Availability**: `SENTRA_BENCH_CHECKS` (20000) `GET /v1/availability` for a SKU of 10
//!    assets over a 3-day range, same concurrency, answered from Redis.
//!
//! `cargo bench -p sentra-cloud --bench booking`. Needs PostgreSQL (`SENTRA_TEST_PG_ADMIN_URL`)
//! and the `redis-server` binary (started on a free port of its own). Client, server, Redis and
//! PostgreSQL share the machine.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

const BIN: &str = env!("CARGO_BIN_EXE_sentra-cloud");
const HOLD_ASSETS: usize = 200;
const CHECK_ASSETS: usize = 10;

fn admin_url() -> String {
    std::env::var("SENTRA_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn database_url(name: &str) -> String {
    let admin = admin_url();
    let cut = admin.rfind('/').unwrap_or(admin.len());
    format!("{}/{name}", &admin[..cut])
}

async fn admin(sql: String) {
    let mut connection = PgConnection::connect(&admin_url())
        .await
        .expect("PostgreSQL for benches");
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut connection)
        .await
        .expect("admin statement");
}

async fn cli(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run sentra-cloud");
    assert!(
        output.status.success(),
        "sentra-cloud {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

struct Site {
    db_name: String,
    db_url: String,
    redis: Option<Child>,
    redis_url: String,
    server: Child,
    base: String,
    portal: String,
    http: reqwest::Client,
}

impl Site {
    async fn start(tag: &str, with_redis: bool) -> Site {
        let db_name = format!("sentra_bench_booking_{tag}_{}", std::process::id());
        admin(format!("DROP DATABASE IF EXISTS {db_name}")).await;
        admin(format!("CREATE DATABASE {db_name}")).await;
        let db_url = database_url(&db_name);
        let port = free_port();
        let redis = with_redis.then(|| {
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("redis-server")
        });
        let redis_url = format!("redis://127.0.0.1:{port}");
        let env = [
            ("DATABASE_URL", db_url.as_str()),
            ("REDIS_URL", redis_url.as_str()),
        ];
        cli(&["migrate"], &env).await;
        cli(&["enrollment-token", "--branch", "JKT01"], &env).await;
        let operator = cli(&["api-token", "--name", "ops", "--role", "operator"], &env).await;
        let portal = cli(&["api-token", "--name", "portal", "--role", "portal"], &env).await;
        let mut server = Command::new(BIN)
            .arg("serve")
            .envs(env)
            .env("SENTRA_CLOUD__HTTP__LISTEN", "127.0.0.1:0")
            // The bench's customers are made up; the identity gate costs one cached lookup
            // per hold once a customer is verified, measured separately if ever needed.
            .env("SENTRA_CLOUD__IDENTITY__REQUIRED", "false")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("serve");
        let mut line = String::new();
        BufReader::new(server.stdout.take().expect("piped"))
            .read_line(&mut line)
            .await
            .expect("listening line");
        let base = format!("http://{}", line.trim().trim_start_matches("listening on "));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(2000)
            .build()
            .expect("client");
        let site = Site {
            db_name,
            db_url,
            redis,
            redis_url,
            server,
            base,
            portal,
            http,
        };
        for (sku, count) in [("AVZ", HOLD_ASSETS), ("XPD", CHECK_ASSETS)] {
            for index in 0..count {
                let id = format!("{sku}-{index}");
                let response = site
                    .http
                    .put(format!("{}/v1/branches/JKT01/assets/{id}", site.base))
                    .bearer_auth(&operator)
                    .json(
                        &json!({"id": id, "sku": sku, "plate": format!("B {index}"), "name": sku}),
                    )
                    .send()
                    .await
                    .expect("put asset");
                assert!(response.status().is_success());
            }
        }
        if with_redis {
            // The sweeper builds the calendar on its first tick.
            let mut connection = redis::Client::open(site.redis_url.clone())
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            while !redis::cmd("EXISTS")
                .arg("avail-built")
                .query_async::<bool>(&mut connection)
                .await
                .unwrap_or(false)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        site
    }

    async fn hold(&self, asset: &str, day: &str, client: usize) -> (u16, Duration) {
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/v1/bookings", self.base))
            .bearer_auth(&self.portal)
            .json(&json!({"branch": "JKT01", "asset_id": asset, "sku": asset.split('-').next().unwrap_or_default(), "from": day, "to": day, "customer": format!("C-{client}"), "tier": "gold"}))
            .send()
            .await
            .expect("hold answered");
        let status = response.status().as_u16();
        let _ = response.bytes().await;
        (status, started.elapsed())
    }

    async fn stop(mut self) {
        let _ = self.server.kill().await;
        if let Some(mut redis) = self.redis.take() {
            let _ = redis.kill().await;
        }
        admin(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.db_name
        ))
        .await;
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a small vector"
    )]
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

async fn herd(site: &Site, clients: usize, day: &str) -> String {
    let site = Arc::new(site);
    let calls: Vec<_> = (0..clients)
        .map(|client| {
            let site = Arc::clone(&site);
            async move { site.hold("AVZ-0", day, client).await }
        })
        .collect();
    let started = Instant::now();
    let answers = futures_join(calls).await;
    let wall = started.elapsed();
    let held = answers.iter().filter(|(status, _)| *status == 201).count();
    let taken = answers.iter().filter(|(status, _)| *status == 409).count();
    assert_eq!(held, 1, "exactly one hold in the herd");
    let mut latencies: Vec<Duration> = answers.iter().map(|(_, latency)| *latency).collect();
    latencies.sort();
    format!(
        "{clients} clients: 201 {held}, 409 {taken}, p50 {}, p99 {}, max {}, all answered in {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        ms(wall)
    )
}

/// Runs the futures concurrently on this task.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut done: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, output) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.extend(done.into_iter().map(|output| output.expect("finished")));
    outputs
}

/// `total` jobs over `clients` concurrent workers; per-job latency and the wall time.
async fn run_concurrent<F, Fut>(total: usize, clients: usize, job: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Duration> + Send,
{
    let job = Arc::new(job);
    let semaphore = Arc::new(Semaphore::new(clients));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for index in 0..total {
        let permit = Arc::clone(&semaphore).acquire_owned().await.expect("open");
        let job = Arc::clone(&job);
        tasks.push(tokio::spawn(async move {
            let latency = job(index).await;
            drop(permit);
            latency
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.push(task.await.expect("job"));
    }
    let wall = started.elapsed();
    latencies.sort();
    (latencies, wall)
}

fn rate(count: usize, wall: Duration) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "a count of requests")]
    let count = count as f64;
    count / wall.as_secs_f64()
}

fn day_of(index: usize) -> String {
    let day = time::Date::from_calendar_date(2027, time::Month::January, 1).expect("a date")
        + time::Duration::days(i64::try_from(index).expect("small"));
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

#[tokio::main]
async fn main() {
    let herd_clients = env_usize("SENTRA_BENCH_HERD", 1000);
    let holds = env_usize("SENTRA_BENCH_HOLDS", 5000);
    let clients = env_usize("SENTRA_BENCH_CLIENTS", 32);
    let checks = env_usize("SENTRA_BENCH_CHECKS", 20_000);
    println!(
        "booking bench: herd {herd_clients}, holds {holds}, checks {checks}, clients {clients}"
    );

    let site = Site::start("redis", true).await;
    println!(
        "herd, Redis on:  {}",
        herd(&site, herd_clients, "2026-12-01").await
    );
    println!(
        "herd, Redis on:  {}",
        herd(&site, herd_clients, "2026-12-02").await
    );

    let shared = Arc::new(site);
    let site = Arc::clone(&shared);
    let (latencies, wall) = run_concurrent(holds, clients, move |index| {
        let site = Arc::clone(&site);
        async move {
            let asset = format!("AVZ-{}", 1 + index % (HOLD_ASSETS - 1));
            let (status, latency) = site
                .hold(&asset, &day_of(index / (HOLD_ASSETS - 1)), index)
                .await;
            assert_eq!(status, 201, "uncontended hold");
            latency
        }
    })
    .await;
    let api_rate = rate(holds, wall);
    println!(
        "holds over HTTP, uncontended: {api_rate:.0}/s, p50 {}, p99 {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );

    // The floor: the same rows straight into PostgreSQL, one transaction each.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(u32::try_from(clients).expect("small"))
        .connect(&shared.db_url)
        .await
        .expect("pool");
    let floor_pool = pool.clone();
    let (floor_latencies, floor_wall) = run_concurrent(holds, clients, move |index| {
        let pool = floor_pool.clone();
        async move {
            let started = Instant::now();
            let asset = format!("AVZ-{}", 1 + index % (HOLD_ASSETS - 1));
            let day = day_of(1000 + index / (HOLD_ASSETS - 1));
            sqlx::query(
                "INSERT INTO bookings (id, branch_id, asset_id, sku, first_day, last_day, period, state,
                                       customer, tier, created_by, request_digest, hold_expires_at)
                 VALUES (gen_random_uuid(), 'JKT01', $1, 'AVZ', $2::date, $2::date,
                         daterange($2::date, $2::date + 1), 'HELD', 'C', 'gold', 'bench', '\\x00',
                         now() + interval '10 minutes')",
            )
            .bind(&asset)
            .bind(&day)
            .execute(&pool)
            .await
            .expect("floor insert");
            started.elapsed()
        }
    })
    .await;
    let floor_rate = rate(holds, floor_wall);
    println!(
        "floor, plain INSERT per tx:   {floor_rate:.0}/s, p50 {}, p99 {}  (HTTP = {:.0} % of floor)",
        ms(percentile(&floor_latencies, 0.5)),
        ms(percentile(&floor_latencies, 0.99)),
        100.0 * api_rate / floor_rate
    );
    pool.close().await;

    let site = Arc::clone(&shared);
    let (check_latencies, check_wall) = run_concurrent(checks, clients, move |index| {
        let site = Arc::clone(&site);
        async move {
            let started = Instant::now();
            let from = day_of(index % 300);
            let to = day_of(index % 300 + 2);
            let response = site
                .http
                .get(format!(
                    "{}/v1/availability?sku=XPD&from={from}&to={to}",
                    site.base
                ))
                .bearer_auth(&site.portal)
                .send()
                .await
                .expect("availability");
            assert_eq!(response.status().as_u16(), 200);
            let body: serde_json::Value = response.json().await.expect("json");
            assert_eq!(body["source"], "redis");
            started.elapsed()
        }
    })
    .await;
    println!(
        "availability ({CHECK_ASSETS} assets, 3 days): {:.0}/s, p50 {}, p99 {}",
        rate(checks, check_wall),
        ms(percentile(&check_latencies, 0.5)),
        ms(percentile(&check_latencies, 0.99))
    );
    if let Ok(site) = Arc::try_unwrap(shared) {
        site.stop().await;
    }

    let site = Site::start("noredis", false).await;
    println!(
        "herd, Redis off: {}",
        herd(&site, herd_clients, "2026-12-01").await
    );
    println!(
        "herd, Redis off: {}",
        herd(&site, herd_clients, "2026-12-02").await
    );
    site.stop().await;
}
