//! Booking benchmarks through the real `sentra-cloud serve` binary over HTTP, each beside what
//! it is compared with, in the same run:
//!
//! 1. **Herd**: `SENTRA_BENCH_HERD` (1000) clients at once for one asset-day, with Redis (calendar
//!    and lock in front of PostgreSQL) and with Redis off (an unreachable `REDIS_URL`: PostgreSQL
//!    alone). Latency p50/p99 of all answers, and the check that exactly one got `201` and every
//!    other `409`. First with a new connection per client (the connects are timed), then
//!    `SENTRA_BENCH_HERD_ROUNDS` (10; at most 3 without Redis) rounds on those connections, each
//!    for a day of its own, summed up as the median and the worst round's p99; then once more
//!    on new connections, to the service warmed by the rounds before (the first herd was also
//!    the fresh service's first requests).
//! 2. **Holds/s, uncontended**: `SENTRA_BENCH_HOLDS` (5000) holds on distinct asset-days by
//!    `SENTRA_BENCH_CLIENTS` (32) concurrent clients; beside the floor: the same rows inserted
//!    straight into `bookings` (one transaction each, same concurrency, no HTTP, no Redis).
//! 3. **Availability**: `SENTRA_BENCH_CHECKS` (20000) `GET /v1/availability` for a SKU of 10
//!    assets over a 3-day range, same concurrency, answered from Redis.
//!
//! `cargo bench -p sentra-cloud --bench booking`. Needs PostgreSQL (`SENTRA_TEST_PG_ADMIN_URL`)
//! and the `redis-server` binary (started on a free port of its own). Client, server, Redis and
//! PostgreSQL share the machine, so the client is kept lean: every simulated client is a task
//! of its own with one HTTP/1.1 connection driven by hyper directly (no pool, no per-request
//! URL parsing), and the bench has the service's allocator.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The client shares the two cores with the service, Redis and PostgreSQL: it gets the same
/// allocator as the service, so glibc's arena lock does not make it the bottleneck.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    endpoint: Endpoint,
    /// For setting the site up (assets), not for what is measured.
    http: reqwest::Client,
}

/// Where the portal's connections go, and its token.
#[derive(Clone)]
struct Endpoint {
    /// `host:port` of the service.
    addr: String,
    bearer: String,
}

impl Endpoint {
    /// A new connection of the portal's.
    async fn connect(&self) -> Conn {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        Conn {
            sender,
            host: self.addr.clone(),
            bearer: self.bearer.clone(),
        }
    }

    /// `count` connections, made one after another.
    async fn connections(&self, count: usize) -> Vec<Conn> {
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count {
            conns.push(self.connect().await);
        }
        conns
    }
}

/// One simulated client's own HTTP/1.1 connection to the service.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    bearer: String,
}

impl Conn {
    /// Sends one request and reads the whole answer.
    async fn send(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Bytes) {
        self.sender.ready().await.expect("connection open");
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.host)
            .header(AUTHORIZATION, &self.bearer);
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("a request");
        let response = self.sender.send_request(request).await.expect("answered");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (status, body)
    }

    /// `POST /v1/bookings` for one day of `asset`: the status and the latency.
    async fn hold(&mut self, asset: &str, day: &str, client: usize) -> (u16, Duration) {
        let started = Instant::now();
        let sku = asset.split('-').next().unwrap_or_default();
        let body = serde_json::to_vec(&json!({"branch": "JKT01", "asset_id": asset, "sku": sku, "from": day, "to": day, "customer": format!("C-{client}"), "tier": "gold"}))
            .expect("json");
        let (status, _) = self
            .send(hyper::Method::POST, "/v1/bookings", Some(body))
            .await;
        (status, started.elapsed())
    }
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
        let addr = line.trim().trim_start_matches("listening on ").to_owned();
        let base = format!("http://{addr}");
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
            endpoint: Endpoint {
                addr,
                bearer: format!("Bearer {portal}"),
            },
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

/// What a herd round measured.
struct Round {
    /// The line to print.
    line: String,
    p99: Duration,
    /// The clients' connections, for the next round.
    conns: Vec<Conn>,
}

/// One herd round: every client holds the same asset-day at once, each from its own task on its
/// own connection: `conns` from the round before, or, if empty, `clients` new ones made inside
/// the timed part (the round then pays for the TCP connects).
async fn herd(site: &Site, clients: usize, conns: Vec<Conn>, day: &str) -> Round {
    let mut conns = conns.into_iter();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let conn = conns.next();
        let endpoint = site.endpoint.clone();
        let day = day.to_owned();
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            let mut conn = match conn {
                Some(conn) => conn,
                None => endpoint.connect().await,
            };
            let (status, _) = conn.hold("AVZ-0", &day, client).await;
            (status, begun.elapsed(), conn)
        }));
    }
    let mut statuses = Vec::with_capacity(clients);
    let mut latencies = Vec::with_capacity(clients);
    let mut kept = Vec::with_capacity(clients);
    for task in tasks {
        let (status, latency, conn) = task.await.expect("client task");
        statuses.push(status);
        latencies.push(latency);
        kept.push(conn);
    }
    let wall = started.elapsed();
    let held = statuses.iter().filter(|status| **status == 201).count();
    let taken = statuses.iter().filter(|status| **status == 409).count();
    let mut others: Vec<u16> = statuses
        .iter()
        .copied()
        .filter(|status| *status != 201 && *status != 409)
        .collect();
    others.sort_unstable();
    others.dedup();
    assert_eq!(held, 1, "exactly one hold in the herd");
    assert_eq!(
        taken,
        clients - 1,
        "every other client is told the slot is taken; also answered: {others:?}"
    );
    latencies.sort();
    let line = format!(
        "{clients} clients: 201 {held}, 409 {taken}, p50 {}, p99 {}, max {}, all answered in {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        ms(wall)
    );
    Round {
        line,
        p99: percentile(&latencies, 0.99),
        conns: kept,
    }
}

/// A herd with new connections, then `rounds` herds on those connections (each on a day of its
/// own); prints every round and, over the rounds on open connections, the median and worst p99.
async fn herds(site: &Site, clients: usize, rounds: usize, label: &str) {
    let fresh = herd(site, clients, Vec::new(), "2026-12-01").await;
    println!("herd, {label}, new connections:  {}", fresh.line);
    let mut conns = fresh.conns;
    let mut p99s = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let warm = herd(site, clients, conns, &day_of(round)).await;
        println!("herd, {label}, open connections: {}", warm.line);
        p99s.push(warm.p99);
        conns = warm.conns;
    }
    p99s.sort();
    println!(
        "herd, {label}, open connections, {rounds} rounds: p99 median {}, worst {}",
        ms(percentile(&p99s, 0.5)),
        ms(percentile(&p99s, 1.0))
    );
    // The first herd was also the service's first requests; a promotion's herd meets a service
    // that has been running: new connections again, to the warm service.
    drop(conns);
    let again = herd(site, clients, Vec::new(), "2026-12-02").await;
    println!(
        "herd, {label}, new connections, warm service: {}",
        again.line
    );
}

/// `total` jobs over one worker task per element of `workers` (each owning its connection or
/// pool handle), each taking the next job as soon as its last one is answered; every job's
/// latency, sorted, and the wall time from the first job to the last answer.
async fn run_concurrent<W, F, Fut>(
    workers: Vec<W>,
    total: usize,
    job: F,
) -> (Vec<Duration>, Duration)
where
    W: Send + 'static,
    F: Fn(W, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (W, Duration)> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let job = Arc::clone(&job);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        return latencies;
                    }
                    let (back, latency) = job(worker, index).await;
                    worker = back;
                    latencies.push(latency);
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.expect("worker"));
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
    let herd_rounds = env_usize("SENTRA_BENCH_HERD_ROUNDS", 10);
    println!(
        "booking bench: herd {herd_clients}, holds {holds}, checks {checks}, clients {clients}"
    );

    let site = Site::start("redis", true).await;
    herds(&site, herd_clients, herd_rounds, "Redis on").await;

    let workers = site.endpoint.connections(clients).await;
    let (latencies, wall) = run_concurrent(workers, holds, |mut conn: Conn, index| async move {
        let asset = format!("AVZ-{}", 1 + index % (HOLD_ASSETS - 1));
        let (status, latency) = conn
            .hold(&asset, &day_of(index / (HOLD_ASSETS - 1)), index)
            .await;
        assert_eq!(status, 201, "uncontended hold");
        (conn, latency)
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
        .connect(&site.db_url)
        .await
        .expect("pool");
    let (floor_latencies, floor_wall) =
        run_concurrent(vec![pool.clone(); clients], holds, |pool, index| async move {
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
            (pool, started.elapsed())
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

    let workers = site.endpoint.connections(clients).await;
    let (check_latencies, check_wall) =
        run_concurrent(workers, checks, |mut conn: Conn, index| async move {
            let started = Instant::now();
            let from = day_of(index % 300);
            let to = day_of(index % 300 + 2);
            let (status, body) = conn
                .send(
                    hyper::Method::GET,
                    &format!("/v1/availability?sku=XPD&from={from}&to={to}"),
                    None,
                )
                .await;
            assert_eq!(status, 200);
            let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(body["source"], "redis");
            (conn, started.elapsed())
        })
        .await;
    println!(
        "availability ({CHECK_ASSETS} assets, 3 days): {:.0}/s, p50 {}, p99 {}",
        rate(checks, check_wall),
        ms(percentile(&check_latencies, 0.5)),
        ms(percentile(&check_latencies, 0.99))
    );
    site.stop().await;

    let site = Site::start("noredis", false).await;
    herds(&site, herd_clients, herd_rounds.min(3), "Redis off").await;
    site.stop().await;
}
