//! The fleet simulation: how many boxes one machine's cloud serves. Thousands of simulated,
//! enrolled, signing boxes talk to three `sentra-cloud serve` replicas on this machine, which
//! share one fresh PostgreSQL database and Redis, as boxes in the field do:
//! - a heartbeat every 60 s (each box at its own phase, so they are spread over the minute);
//! - a small push (`--batch` events of a workshop's day, default 4) every `--push-every` seconds
//!   (default 5), each followed by a pull from the box's cursor;
//! - each box talks to one replica (round robin by box, as a load balancer would spread them).
//!
//! The box count steps up (`--steps 100,200,400,...`) until the p99 of push or heartbeat passes
//! 100 ms (`--keep-going` runs them all); each step runs `--seconds` (default 60: every box heartbeats once) after a warm-up of
//! one push interval. For each step it prints p50/p99 of push, heartbeat and pull, errors, and the
//! CPU used by PostgreSQL (the backends of this run's database, from /proc), by the three
//! replicas and by the simulator itself, in cores; at the end, the boxes per core at the last
//! step under 100 ms and the CPU one box costs.
//!
//! `cargo bench -p sentra-cloud --bench fleet_sim -- --steps 250,500,1000 --seconds 60`
//! (`--boxes N` runs one step). Needs PostgreSQL (`SENTRA_TEST_PG_ADMIN_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and Redis (`SENTRA_TEST_REDIS_URL`); the
//! database is created fresh and dropped at the end. The simulator, the replicas and PostgreSQL
//! share the machine: its figures are an upper bound of the cost per box (docs/benchmarks.md).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/it/fixtures.rs"]
mod fixtures;
#[path = "support/replica.rs"]
mod replica;
#[path = "support/scratch_db.rs"]
mod scratch_db;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt as _;
use sentra_protocol::Event;
use sentra_protocol::auth::public_key_hex;
use sentra_protocol::ed25519_dalek::SigningKey;
use sha2::{Digest as _, Sha256};
use sqlx::{Connection as _, PgConnection};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use fixtures::Outbox;
use scratch_db::{admin_sql, database_url};

/// Each enrolment warns that no release key is set: thousands of lines that say nothing.
const SERVE_LOG: &str = "error";
const BIN: &str = env!("CARGO_BIN_EXE_sentra-cloud");
const REPLICAS: usize = 3;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);
/// The bound the steps stop at: push or heartbeat p99 past it.
const P99_BOUND_MS: f64 = 100.0;
/// Clock ticks per second of /proc's CPU counters (USER_HZ; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

struct Options {
    steps: Vec<usize>,
    seconds: u64,
    push_every: Duration,
    batch: usize,
    /// Run every step even past the bound (to see how the cost grows).
    keep_going: bool,
}

fn options() -> Options {
    let mut options = Options {
        steps: vec![100, 200, 400, 800, 1600, 3200, 6400],
        seconds: 60,
        push_every: Duration::from_secs(5),
        batch: 4,
        keep_going: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |index: usize| args.get(index + 1).map(String::as_str).unwrap_or_default();
    for (index, arg) in args.iter().enumerate() {
        match arg.as_str() {
            "--boxes" => options.steps = value(index).parse().map(|n| vec![n]).unwrap_or_default(),
            "--steps" => {
                options.steps = value(index)
                    .split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect();
            }
            "--seconds" => options.seconds = value(index).parse().unwrap_or(60),
            "--push-every" => {
                options.push_every = Duration::from_secs(value(index).parse().unwrap_or(5).max(1));
            }
            "--batch" => options.batch = value(index).parse().unwrap_or(4).max(1),
            "--keep-going" => options.keep_going = true,
            _ => {}
        }
    }
    assert!(
        !options.steps.is_empty(),
        "--boxes N or --steps N,N,... must be numbers"
    );
    options
}

/// utime + stime of a process, in ticks; 0 if it is gone.
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// The ticks of every PostgreSQL backend serving `database` (its process title names it:
/// `postgres: [CLUSTER: ]USER DATABASE HOST(PORT) STATE`), by pid. PostgreSQL's shared background
/// processes (WAL writer, checkpointer) serve every database on the machine and are left out.
fn postgres_ticks(database: &str) -> HashMap<u32, u64> {
    let mut ticks = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&title);
        // `postgres: [CLUSTER: ]USER DATABASE HOST(PORT) STATE`, NUL-padded.
        if title.starts_with("postgres:")
            && title
                .split(|c: char| c.is_whitespace() || c == '\0')
                .any(|word| word == database)
        {
            ticks.insert(pid, process_ticks(pid));
        }
    }
    ticks
}

/// Ticks PostgreSQL's backends spent between two snapshots (a backend that started in between
/// counts from zero).
fn postgres_spent(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, ticks)| ticks.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

/// One simulated box.
struct SimBox {
    id: String,
    key: SigningKey,
    outbox: Outbox,
    /// Events made but not yet acknowledged, oldest first.
    pending: VecDeque<Event>,
    cursor: u64,
    base: String,
}

impl SimBox {
    fn headers(&self, method: &str, path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        fixtures::sign(&self.key, &self.id, method, path, body)
    }
}

#[derive(Default)]
struct Samples {
    push: Vec<f64>,
    heartbeat: Vec<f64>,
    pull: Vec<f64>,
    errors: u64,
}

fn heartbeat_body() -> Vec<u8> {
    serde_json::json!({
        "version": "1.0.0", "uptime_secs": 3600, "update": {"state": "idle"}, "healthy": true,
        "backlog": {"count": 0, "bytes": 0, "oldest_age_secs": null}, "parked": 0, "skew_ms": 5,
        "resources": {"disk_total_bytes": 64_000_000_000_u64, "disk_free_bytes": 40_000_000_000_u64,
                      "mem_total_bytes": 8_000_000_000_u64, "mem_available_bytes": 5_000_000_000_u64,
                      "store_bytes": 52_000_000},
        "printer": "ready", "scanner": "connected"
    })
    .to_string()
    .into_bytes()
}

/// Sends one signed request; its latency in ms and the JSON answer, or `None` on failure.
async fn send(
    http: &reqwest::Client,
    sim: &SimBox,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Option<(f64, serde_json::Value)> {
    let headers = sim.headers(method.as_str(), path, body.as_deref().unwrap_or_default());
    let mut request = http.request(method, format!("{}{path}", sim.base));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let sent = Instant::now();
    let response = request.send().await.ok()?;
    let ok = response.status().is_success();
    let answer: serde_json::Value = response.json().await.ok()?;
    let ms = sent.elapsed().as_secs_f64() * 1000.0;
    ok.then_some((ms, answer))
}

/// Enrols `count` boxes (tokens written straight into the database, as `enrollment-token`
/// would, then the real `POST /v1/enroll`), 32 at a time.
async fn enrol(
    http: &reqwest::Client,
    db: &mut PgConnection,
    bases: &[String],
    first: usize,
    count: usize,
) -> Vec<SimBox> {
    let mut tokens = Vec::with_capacity(count);
    for index in first..first + count {
        let branch = format!("SIM{index:05}");
        let token = fixtures::random_hex(32);
        sqlx::query("INSERT INTO branches (id, name) VALUES ($1, $1)")
            .bind(&branch)
            .execute(&mut *db)
            .await
            .expect("insert branch");
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_hash, branch_id, expires_at) VALUES ($1, $2, now() + interval '1 hour')",
        )
        .bind(Sha256::digest(token.as_bytes()).to_vec())
        .bind(&branch)
        .execute(&mut *db)
        .await
        .expect("insert enrolment token");
        tokens.push((index, token));
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut boxes = Vec::with_capacity(count);
    for chunk in tokens.chunks(32) {
        for (index, token) in chunk.iter().cloned() {
            let http = http.clone();
            let base = bases[index % bases.len()].clone();
            tasks.spawn(async move {
                let key = fixtures::new_key();
                let body = serde_json::json!({"token": token, "public_key": public_key_hex(&key), "hostname": "sim", "version": "1.0.0"});
                let answer: serde_json::Value = http
                    .post(format!("{base}/v1/enroll"))
                    .json(&body)
                    .send()
                    .await
                    .expect("enrol")
                    .json()
                    .await
                    .expect("enrol answer");
                let id = answer["device_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("enrolment refused: {answer}"))
                    .to_owned();
                SimBox {
                    outbox: Outbox::new(&id),
                    id,
                    key,
                    pending: VecDeque::new(),
                    cursor: 0,
                    base,
                }
            });
        }
        while let Some(sim) = tasks.join_next().await {
            boxes.push(sim.expect("an enrolment"));
        }
    }
    boxes
}

/// One box's life until `stop`: heartbeats at its phase, pushes and pulls every `push_every`.
/// Latencies are recorded once `measuring` is set.
async fn live(
    http: reqwest::Client,
    mut sim: SimBox,
    options: Arc<(Duration, usize)>,
    samples: Arc<Mutex<Samples>>,
    measuring: Arc<std::sync::atomic::AtomicBool>,
    stop: CancellationToken,
) -> SimBox {
    let (push_every, batch) = *options;
    let (heartbeat_phase, push_phase) = {
        let mut rng = rand::rng();
        (
            Duration::from_millis(rng.random_range(0..60_000)),
            Duration::from_millis(
                rng.random_range(0..u64::try_from(push_every.as_millis()).unwrap_or(5000)),
            ),
        )
    };
    let start = tokio::time::Instant::now();
    let mut heartbeats = tokio::time::interval_at(start + heartbeat_phase, HEARTBEAT_EVERY);
    let mut pushes = tokio::time::interval_at(start + push_phase, push_every);
    heartbeats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    pushes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let record = |kind: fn(&mut Samples) -> &mut Vec<f64>, result: Option<f64>| {
        if !measuring.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut samples = samples.lock().expect("samples");
        match result {
            Some(ms) => kind(&mut samples).push(ms),
            None => samples.errors += 1,
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return sim,
            _ = heartbeats.tick() => {
                let answer = send(&http, &sim, reqwest::Method::POST, "/v1/devices/heartbeat", Some(heartbeat_body())).await;
                record(|s| &mut s.heartbeat, answer.map(|(ms, _)| ms));
            }
            _ = pushes.tick() => {
                while sim.pending.len() < batch {
                    sim.pending.extend(sim.outbox.workshop_cycle("OF-1"));
                }
                let events: Vec<Event> = sim.pending.iter().take(batch).cloned().collect();
                let answer = send(&http, &sim, reqwest::Method::POST, "/v1/sync/push", Some(fixtures::batch(&events))).await;
                if let Some((_, ack)) = &answer {
                    let acked = ack["cursor"].as_u64().unwrap_or(0);
                    while sim.pending.front().is_some_and(|event| event.seq <= acked) {
                        sim.pending.pop_front();
                    }
                }
                record(|s| &mut s.push, answer.map(|(ms, _)| ms));
                let path = format!("/v1/sync/pull?cursor={}", sim.cursor);
                let answer = send(&http, &sim, reqwest::Method::GET, &path, None).await;
                if let Some((_, page)) = &answer {
                    sim.cursor = page["cursor"].as_u64().unwrap_or(sim.cursor);
                }
                record(|s| &mut s.pull, answer.map(|(ms, _)| ms));
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Step {
    boxes: usize,
    push: (f64, f64, usize),
    heartbeat: (f64, f64, usize),
    pull: (f64, f64, usize),
    errors: u64,
    seconds: f64,
    pg_cores: f64,
    cloud_cores: f64,
    sim_cores: f64,
}

fn summary(mut values: Vec<f64>) -> (f64, f64, usize) {
    values.sort_by(f64::total_cmp);
    (
        percentile(&values, 0.5),
        percentile(&values, 0.99),
        values.len(),
    )
}

#[tokio::main]
async fn main() {
    let options = options();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let name = format!("sentra_fleet_sim_{}", std::process::id());
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

    let mut replicas = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..REPLICAS {
        let (child, base) = replica::serve(&url, SERVE_LOG).await;
        replicas.push(child);
        bases.push(base);
    }
    let pids: Vec<u32> = replicas.iter().filter_map(Child::id).collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut db = PgConnection::connect(&url).await.expect("connect");

    println!(
        "fleet simulation: {REPLICAS} replicas, heartbeat every {}s, a push of {} events and a pull every {}s per box, {}s per step",
        HEARTBEAT_EVERY.as_secs(),
        options.batch,
        options.push_every.as_secs(),
        options.seconds
    );
    println!(
        "{:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>7} {:>7} {:>7}",
        "boxes",
        "req/s",
        "push p50",
        "push p99",
        "hb p50",
        "hb p99",
        "pull p50",
        "pull p99",
        "errors",
        "pg cpu",
        "cloud",
        "sim"
    );
    let mut boxes: Vec<SimBox> = Vec::new();
    let mut steps = Vec::new();
    let shared = Arc::new((options.push_every, options.batch));
    for &target in &options.steps {
        if target > boxes.len() {
            let more = enrol(&http, &mut db, &bases, boxes.len(), target - boxes.len()).await;
            boxes.extend(more);
        }
        let samples = Arc::new(Mutex::new(Samples::default()));
        let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for sim in boxes.drain(..) {
            tasks.spawn(live(
                http.clone(),
                sim,
                shared.clone(),
                samples.clone(),
                measuring.clone(),
                stop.clone(),
            ));
        }
        // Warm-up: every box has pushed once and the pools are full.
        tokio::time::sleep(options.push_every + Duration::from_secs(1)).await;
        let pg_before = postgres_ticks(&name);
        let cloud_before: u64 = pids.iter().map(|pid| process_ticks(*pid)).sum();
        let sim_before = process_ticks(std::process::id());
        let started = Instant::now();
        measuring.store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(options.seconds)).await;
        measuring.store(false, std::sync::atomic::Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        let cores = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / seconds;
        let pg_cores = cores(postgres_spent(&pg_before, &postgres_ticks(&name)));
        let cloud_cores = cores(
            pids.iter()
                .map(|pid| process_ticks(*pid))
                .sum::<u64>()
                .saturating_sub(cloud_before),
        );
        let sim_cores = cores(process_ticks(std::process::id()).saturating_sub(sim_before));
        stop.cancel();
        while let Some(sim) = tasks.join_next().await {
            boxes.push(sim.expect("a simulated box"));
        }
        let samples = std::mem::take(&mut *samples.lock().expect("samples"));
        let step = Step {
            boxes: target,
            push: summary(samples.push),
            heartbeat: summary(samples.heartbeat),
            pull: summary(samples.pull),
            errors: samples.errors,
            seconds,
            pg_cores,
            cloud_cores,
            sim_cores,
        };
        let requests = (step.push.2 + step.heartbeat.2 + step.pull.2) as f64 / seconds;
        println!(
            "{:>6} {:>7.0} {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>7.1}ms {:>6} {:>7.2} {:>7.2} {:>7.2}",
            step.boxes,
            requests,
            step.push.0,
            step.push.1,
            step.heartbeat.0,
            step.heartbeat.1,
            step.pull.0,
            step.pull.1,
            step.errors,
            step.pg_cores,
            step.cloud_cores,
            step.sim_cores
        );
        let over = step.push.1 > P99_BOUND_MS || step.heartbeat.1 > P99_BOUND_MS;
        steps.push(step);
        if over && !options.keep_going {
            println!("push or heartbeat p99 passed {P99_BOUND_MS} ms: stopping");
            break;
        }
    }

    println!(
        "cores: PostgreSQL backends of this database, the {REPLICAS} replicas, the simulator (all on this machine)"
    );
    match steps
        .iter()
        .rev()
        .find(|s| s.push.1 <= P99_BOUND_MS && s.heartbeat.1 <= P99_BOUND_MS)
    {
        Some(best) => {
            let server_cores = best.pg_cores + best.cloud_cores;
            let per_box_ms = server_cores * 1000.0 / best.boxes as f64;
            println!(
                "last step under {P99_BOUND_MS} ms: {} boxes on {:.2} cores (PostgreSQL {:.2} + cloud {:.2}): {:.0} boxes per core; one box costs {:.3} ms of CPU per second ({:.2} PostgreSQL, {:.2} cloud); machine: {} cores",
                best.boxes,
                server_cores,
                best.pg_cores,
                best.cloud_cores,
                best.boxes as f64 / server_cores.max(f64::EPSILON),
                per_box_ms,
                best.pg_cores * 1000.0 / best.boxes as f64,
                best.cloud_cores * 1000.0 / best.boxes as f64,
                std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            );
        }
        None => println!("no step stayed under {P99_BOUND_MS} ms"),
    }
    if let Some(last) = steps.last() {
        println!("last step measured {:.0} s", last.seconds);
    }

    drop(db);
    drop(replicas);
    tokio::time::sleep(Duration::from_millis(500)).await;
    admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}
