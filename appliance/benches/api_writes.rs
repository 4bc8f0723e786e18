//! Acknowledged work-order writes over HTTP, beside the raw SQLCipher floor, in one run.
//!
//! The daemon runs in-process (its own multi-threaded runtime, like `main.rs`) on 127.0.0.1:0 with
//! a throwaway data dir and a generated key. Clients (a separate current-thread runtime, one
//! keep-alive HTTP/1.1 connection each) POST /v1/work-orders; a write counts only when the answer
//! is 201, which the API gives after the commit reached the disk. The floor is plain rusqlite on a
//! fresh SQLCipher file with the same schema and pragmas: the same `work_orders` row plus one
//! `sync_event_logs` row per write, one transaction (one fsync) per write, then 64 per transaction.
//!
//! `cargo bench -p sentra-edge --bench api_writes`
//! (the static build's code and allocator: add `--target x86_64-unknown-linux-musl`; musl's own
//! allocator: also `--no-default-features`)
//! Env: BENCH_REQUESTS (5000), BENCH_CLIENTS (16), BENCH_WARMUP (200), BENCH_SEQ_REQUESTS (= BENCH_REQUESTS),
//! BENCH_FLOOR_BATCH (64).
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rusqlite::Connection;
use sentra_edge::api::{self, AppState};
use sentra_edge::config::Config;
use sentra_edge::daemon;
use sentra_edge::domain::Role;
use sentra_edge::store::{self, Store, StoreKey};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The allocator the shipped binary has (`main.rs`): mimalloc on musl, so
/// `--target x86_64-unknown-linux-musl` measures the static build (docs/benchmarks.md).
#[cfg(all(target_env = "musl", feature = "mimalloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: &str = r#"{"customer_name":"Budi Santoso","vehicle_plate":"B 1234 XYZ","complaint":"Rem bunyi saat mengerem"}"#;
const SCHEMA: &str = include_str!("../src/store/migrations/0001_init.sql");

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a count")),
        Err(_) => Ok(default),
    }
}

/// One measured phase.
struct Phase {
    name: String,
    writes: usize,
    failures: usize,
    wall: Duration,
    /// Latency of each acknowledged unit (a request, or a floor transaction).
    latencies: Vec<Duration>,
    /// What one latency sample covers, when it is not one write.
    unit: &'static str,
    cpu: CpuDelta,
    /// (commits, writes) of the store's writer during the phase, for API phases.
    group_commit: Option<(u64, u64)>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.writes as f64 / self.wall.as_secs_f64()
    }

    fn pct(&self, p: f64) -> f64 {
        percentile(&self.latencies, p)
    }

    fn max(&self) -> f64 {
        self.latencies.iter().max().map_or(0.0, ms)
    }

    fn print(&self) {
        println!(
            "{:<38} writes {:>6}  failures {:>3}  wall {:>7.3} s  {:>8.0} writes/s  p50 {:>7.3}  p90 {:>7.3}  p99 {:>7.3}  max {:>7.3} ms{}",
            self.name,
            self.writes,
            self.failures,
            self.wall.as_secs_f64(),
            self.rate(),
            self.pct(0.50),
            self.pct(0.90),
            self.pct(0.99),
            self.max(),
            if self.unit.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.unit)
            },
        );
        let wall = self.wall.as_secs_f64();
        let groups: Vec<String> = self
            .cpu
            .by_group
            .iter()
            .map(|(g, s)| format!("{g} {:.0}%", 100.0 * s / wall))
            .collect();
        println!(
            "{:<38} cpu {:.0}% of one core (process; 2 cores = 200%): {}",
            "",
            100.0 * self.cpu.process / wall,
            groups.join(", ")
        );
        if let Some((commits, writes)) = self.group_commit {
            println!(
                "{:<38} store writer: {commits} commits ({:.0}/s), {:.1} writes per commit",
                "",
                commits as f64 / wall,
                writes as f64 / commits.max(1) as f64
            );
        }
    }
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile, in milliseconds.
fn percentile(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    ms(&sorted[rank - 1])
}

// ---- CPU accounting from /proc (Linux): whole process, and by thread name --------------------

#[derive(Default)]
struct CpuSnap {
    process: f64,
    by_group: BTreeMap<&'static str, f64>,
}

#[derive(Default)]
struct CpuDelta {
    process: f64,
    by_group: BTreeMap<&'static str, f64>,
}

/// utime + stime in seconds and the thread name from a /proc stat file (USER_HZ is 100 on Linux).
fn read_stat(path: &Path) -> Option<(String, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // After "pid (comm) ": state is field 3, utime 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / 100.0))
}

fn group_of(comm: &str) -> &'static str {
    match comm {
        "store-writer" => "store-writer",
        "sentra-edge" => "daemon runtime (axum, auth reads)",
        "bench-client" => "HTTP clients",
        "bench-floor" => "floor thread",
        _ => "other",
    }
}

fn cpu_snap() -> CpuSnap {
    let mut snap = CpuSnap {
        process: read_stat(Path::new("/proc/self/stat")).map_or(0.0, |s| s.1),
        ..CpuSnap::default()
    };
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Some((comm, secs)) = read_stat(&t.path().join("stat")) {
                *snap.by_group.entry(group_of(&comm)).or_default() += secs;
            }
        }
    }
    snap
}

fn cpu_delta(before: &CpuSnap, after: &CpuSnap) -> CpuDelta {
    let by_group = after
        .by_group
        .iter()
        .map(|(g, s)| {
            (
                *g,
                (s - before.by_group.get(g).copied().unwrap_or(0.0)).max(0.0),
            )
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    CpuDelta {
        process: after.process - before.process,
        by_group,
    }
}

/// (commits, writes) so far, from the daemon's own group-commit histogram (whatever the registry's
/// prefix: the metric names end in `store_batch_writes_count` and `_sum`).
fn store_batches() -> (u64, u64) {
    let text = sentra_edge::metrics::render();
    let value = |suffix: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .find(|(name, _)| name.ends_with(suffix))
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    (
        value("store_batch_writes_count"),
        value("store_batch_writes_sum"),
    )
}

// ---- the API --------------------------------------------------------------------------------

struct Daemon {
    runtime: tokio::runtime::Runtime,
    store: Store,
    addr: SocketAddr,
    token: String,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

fn start_daemon() -> anyhow::Result<Daemon> {
    // Like main.rs: a multi-threaded runtime, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sentra-edge")
        .build()?;
    let dir = tempfile::Builder::new()
        .prefix("sentra-bench-api-")
        .tempdir()?;
    let mut config = Config::defaults();
    config.store.data_dir = dir.path().to_owned();
    config.api.listen = "127.0.0.1:0".parse()?;
    let cancel = CancellationToken::new();
    let (store, addr, token) = runtime.block_on(async {
        let store = daemon::open_store_with(&config, StoreKey::generate()).await?;
        let token = daemon::pair_direct(&store, "bench", Role::Tablet).await?;
        let listener = tokio::net::TcpListener::bind(config.api.listen).await?;
        let addr = listener.local_addr()?;
        let state = AppState::new(store.clone(), config, Default::default());
        let c = cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = api::serve(listener, state, None, c).await {
                eprintln!("api: {e}");
            }
        });
        anyhow::Ok((store, addr, token))
    })?;
    Ok(Daemon {
        runtime,
        store,
        addr,
        token,
        cancel,
        _dir: dir,
    })
}

#[derive(Default)]
struct ClientResult {
    latencies: Vec<Duration>,
    failures: usize,
    first_failure: Option<String>,
}

/// One keep-alive HTTP/1.1 connection speaking just enough of the protocol for this request: a
/// fixed POST, and an answer framed by Content-Length (what axum sends for a JSON body). Lighter
/// than a general client, so less of the 2 cores goes to the load generator.
struct Conn {
    stream: BufReader<TcpStream>,
    request: Arc<[u8]>,
    body: Vec<u8>,
    line: String,
}

impl Conn {
    async fn open(addr: SocketAddr, request: Arc<[u8]>) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(stream),
            request,
            body: Vec::new(),
            line: String::new(),
        })
    }

    /// Send the request and read the whole answer; returns the status code.
    async fn post(&mut self) -> std::io::Result<u16> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        self.stream.get_mut().write_all(&self.request).await?;
        let mut status = None;
        let mut length = None;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            let line = self.line.trim_end();
            if status.is_none() {
                let code = line
                    .strip_prefix("HTTP/1.1 ")
                    .and_then(|r| r.get(..3))
                    .and_then(|c| c.parse::<u16>().ok());
                status = Some(
                    code.ok_or_else(|| bad(format!("not an HTTP/1.1 status line: {line:?}")))?,
                );
            } else if line.is_empty() {
                break;
            } else if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(
                        value
                            .trim()
                            .parse::<usize>()
                            .map_err(|e| bad(format!("content-length {value:?}: {e}")))?,
                    );
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(bad(format!(
                        "transfer-encoding {value:?} is not supported by this client"
                    )));
                }
            }
        }
        self.body.resize(
            length.ok_or_else(|| bad("an answer without content-length".into()))?,
            0,
        );
        self.stream.read_exact(&mut self.body).await?;
        Ok(status.unwrap_or(0))
    }
}

async fn client_loop(
    addr: SocketAddr,
    request: Arc<[u8]>,
    next: Arc<AtomicUsize>,
    total: usize,
) -> ClientResult {
    let mut out = ClientResult {
        latencies: Vec::with_capacity(total),
        ..ClientResult::default()
    };
    let mut conn = match Conn::open(addr, request).await {
        Ok(c) => c,
        Err(e) => {
            out.failures = 1;
            out.first_failure = Some(format!("connect: {e}"));
            return out;
        }
    };
    while next.fetch_add(1, Ordering::Relaxed) < total {
        let started = Instant::now();
        let answer = conn.post().await;
        let elapsed = started.elapsed();
        match answer {
            Ok(201) => out.latencies.push(elapsed),
            Ok(status) => {
                out.failures += 1;
                out.first_failure.get_or_insert_with(|| {
                    format!("{status}: {}", String::from_utf8_lossy(&conn.body))
                });
            }
            Err(e) => {
                out.failures += 1;
                out.first_failure
                    .get_or_insert_with(|| format!("transport: {e}"));
                // The connection's state is unknown: stop this client, count what it had left.
                break;
            }
        }
    }
    out
}

/// `total` POSTs from `clients` keep-alive connections, each client one request at a time.
fn drive(
    rt: &tokio::runtime::Runtime,
    d: &Daemon,
    name: String,
    clients: usize,
    total: usize,
) -> anyhow::Result<Phase> {
    let request: Arc<[u8]> = format!(
        "POST /v1/work-orders HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        d.addr,
        d.token,
        BODY.len()
    )
    .into_bytes()
    .into();
    let next = Arc::new(AtomicUsize::new(0));
    let (batches_before, cpu_before) = (store_batches(), cpu_snap());
    let started = Instant::now();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| tokio::spawn(client_loop(d.addr, request.clone(), next.clone(), total)))
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await?);
        }
        anyhow::Ok(results)
    })?;
    let wall = started.elapsed();
    let (cpu_after, batches_after) = (cpu_snap(), store_batches());
    let mut phase = Phase {
        name,
        writes: 0,
        failures: 0,
        wall,
        latencies: Vec::with_capacity(total),
        unit: "",
        cpu: cpu_delta(&cpu_before, &cpu_after),
        group_commit: Some((
            batches_after.0 - batches_before.0,
            batches_after.1 - batches_before.1,
        )),
    };
    for r in results {
        phase.failures += r.failures;
        if let Some(f) = r.first_failure {
            eprintln!("{}: first failure: {f}", phase.name);
        }
        phase.latencies.extend(r.latencies);
    }
    phase.writes = phase.latencies.len();
    Ok(phase)
}

// ---- the floor ------------------------------------------------------------------------------

struct Floor {
    conn: Connection,
    device_id: String,
    seq: i64,
    _dir: tempfile::TempDir,
}

fn open_floor() -> anyhow::Result<Floor> {
    let dir = tempfile::Builder::new()
        .prefix("sentra-bench-floor-")
        .tempdir()?;
    let conn = Connection::open(dir.path().join("floor.db"))?;
    let key = hex::encode(rand_key());
    conn.pragma_update(None, "key", format!("x'{key}'"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.execute_batch(SCHEMA)?;
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    let cipher: String = conn.query_row("PRAGMA cipher_version", [], |r| r.get(0))?;
    if mode != "wal" || cipher.is_empty() {
        bail!("floor store is not SQLCipher in WAL mode (journal_mode {mode}, cipher {cipher:?})");
    }
    Ok(Floor {
        conn,
        device_id: store::new_id(),
        seq: 0,
        _dir: dir,
    })
}

fn rand_key() -> [u8; 32] {
    use rand::Rng as _;
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    k
}

impl Floor {
    /// One write as the API makes it: the work order and its outbox event.
    fn insert_one(&mut self) -> rusqlite::Result<()> {
        let id = store::new_id();
        let now = store::format_time(time::OffsetDateTime::now_utc());
        self.conn
            .prepare_cached(
                "INSERT INTO work_orders (id, customer_name, customer_phone, vehicle_plate, complaint, mechanic_id, status, created_at, updated_at, created_by)
                 VALUES (?1, 'Budi Santoso', NULL, 'B 1234 XYZ', 'Rem bunyi saat mengerem', NULL, 'OPEN', ?2, ?2, ?3)",
            )?
            .execute((&id, &now, &self.device_id))?;
        self.seq += 1;
        let payload = serde_json::json!({
            "id": id, "customer_name": "Budi Santoso", "customer_phone": null, "vehicle_plate": "B 1234 XYZ",
            "complaint": "Rem bunyi saat mengerem", "mechanic_id": null, "status": "OPEN", "parts": [],
            "created_at": now, "updated_at": now,
        })
        .to_string();
        let hlc = format!(
            "{:015}-{:010}",
            time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000,
            0
        );
        self.conn
            .prepare_cached(
                "INSERT INTO sync_event_logs (seq, device_id, hlc, schema_version, entity, entity_id, op, payload, created_at)
                 VALUES (?1, ?2, ?3, 1, 'work_order', ?4, 'created', ?5, ?6)",
            )?
            .execute((self.seq, &self.device_id, hlc, &id, payload, &now))?;
        Ok(())
    }

    /// `rows` inserts, `per_tx` to a transaction, each transaction committed (fsynced) before the next.
    fn run(&mut self, name: String, rows: usize, per_tx: usize) -> anyhow::Result<Phase> {
        let mut latencies = Vec::with_capacity(rows.div_ceil(per_tx));
        let cpu_before = cpu_snap();
        let started = Instant::now();
        let mut done = 0;
        while done < rows {
            let n = per_tx.min(rows - done);
            let t = Instant::now();
            // IMMEDIATE, like the store's writer.
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            for _ in 0..n {
                self.insert_one()?;
            }
            self.conn.execute_batch("COMMIT")?;
            latencies.push(t.elapsed());
            done += n;
        }
        let wall = started.elapsed();
        let cpu = cpu_delta(&cpu_before, &cpu_snap());
        Ok(Phase {
            name,
            writes: rows,
            failures: 0,
            wall,
            latencies,
            unit: if per_tx == 1 {
                ""
            } else {
                "latency per transaction"
            },
            cpu,
            group_commit: None,
        })
    }
}

// ---- the run --------------------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    let requests = env_usize("BENCH_REQUESTS", 5000)?.max(1);
    let clients = env_usize("BENCH_CLIENTS", 16)?.max(1);
    let warmup = env_usize("BENCH_WARMUP", 200)?;
    let seq_requests = env_usize("BENCH_SEQ_REQUESTS", requests)?.max(1);
    let floor_batch = env_usize("BENCH_FLOOR_BATCH", 64)?.max(2);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "api_writes: {requests} requests from {clients} clients after {warmup} warm-up, {seq_requests} sequential; floor {requests} rows; {cores} cores; temp dir {}",
        std::env::temp_dir().display()
    );

    let daemon = start_daemon()?;
    println!("daemon listening on {}", daemon.addr);

    let phases = std::thread::scope(|s| -> anyhow::Result<Vec<Phase>> {
        let api = std::thread::Builder::new()
            .name("bench-client".into())
            .spawn_scoped(s, || -> anyhow::Result<Vec<Phase>> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let mut phases = Vec::new();
                if warmup > 0 {
                    let w = drive(&rt, &daemon, "warm-up".into(), clients, warmup)?;
                    if w.failures > 0 {
                        bail!("{} of {warmup} warm-up requests failed", w.failures);
                    }
                }
                let p = drive(
                    &rt,
                    &daemon,
                    format!("API POST /v1/work-orders, C={clients}"),
                    clients,
                    requests,
                )?;
                p.print();
                phases.push(p);
                let p = drive(
                    &rt,
                    &daemon,
                    "API POST /v1/work-orders, C=1".into(),
                    1,
                    seq_requests,
                )?;
                p.print();
                phases.push(p);
                Ok(phases)
            })?;
        let mut phases = api
            .join()
            .map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
        // The floor after the API, so the two never share the disk or the cores.
        let floor = std::thread::Builder::new()
            .name("bench-floor".into())
            .spawn_scoped(s, || -> anyhow::Result<Vec<Phase>> {
                let mut f = open_floor()?;
                f.run("floor warm-up".into(), warmup, 1)?;
                let a = f.run("floor: rusqlite, 1 write per tx".into(), requests, 1)?;
                a.print();
                let b = f.run(
                    format!("floor: rusqlite, {floor_batch} writes per tx"),
                    requests,
                    floor_batch,
                )?;
                b.print();
                Ok(vec![a, b])
            })?;
        phases.extend(
            floor
                .join()
                .map_err(|_| anyhow::anyhow!("the floor thread panicked"))??,
        );
        Ok(phases)
    })?;

    // Every 201 must be a row: count them in the daemon's own store, then stop it in order.
    let stored: i64 = daemon.runtime.block_on(
        daemon
            .store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM work_orders", [], |r| r.get(0))?)),
    )?;
    let acknowledged = warmup + phases[0].writes + phases[1].writes;
    daemon.cancel.cancel();
    daemon.runtime.block_on(daemon.store.shutdown());
    daemon.runtime.shutdown_timeout(Duration::from_secs(5));

    let [api, seq, floor1, floor_n] = &phases[..] else {
        bail!("expected four phases")
    };
    let failures = api.failures + seq.failures;
    println!();
    println!("## Edge: acknowledged work-order writes");
    println!();
    println!(
        "| Run | Clients | Writes | Failures | Wall s | Writes/s | p50 ms | p90 ms | p99 ms | Max ms | Writes per commit | CPU (200% = 2 cores) |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let row = |p: &Phase, clients: usize, per_commit: String| {
        println!(
            "| {} | {clients} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {per_commit} | {:.0}% |",
            p.name,
            p.writes,
            p.failures,
            p.wall.as_secs_f64(),
            p.rate(),
            p.pct(0.50),
            p.pct(0.90),
            p.pct(0.99),
            p.max(),
            100.0 * p.cpu.process / p.wall.as_secs_f64()
        );
    };
    let per_commit = |p: &Phase| {
        p.group_commit.map_or("-".into(), |(c, w)| {
            format!("{:.1}", w as f64 / c.max(1) as f64)
        })
    };
    row(api, clients, per_commit(api));
    row(seq, 1, per_commit(seq));
    row(floor1, 1, "1".into());
    row(floor_n, 1, format!("{floor_batch} (latencies per tx)"));
    println!();
    println!("| Ratio | Value |");
    println!("|---|--:|");
    println!(
        "| API C={clients} ÷ floor (1 write per tx) | {:.2} |",
        api.rate() / floor1.rate()
    );
    println!(
        "| API C={clients} ÷ floor ({floor_batch} writes per tx) | {:.2} |",
        api.rate() / floor_n.rate()
    );
    println!(
        "| API C=1 ÷ floor (1 write per tx) | {:.2} |",
        seq.rate() / floor1.rate()
    );
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "aims: p99 ≤ 5 ms at C={clients}: {} ({:.2} ms); at C=1: {} ({:.2} ms); API ≥ 50% of floor (1 write per tx): {} ({:.0}%)",
        verdict(api.pct(0.99) <= 5.0),
        api.pct(0.99),
        verdict(seq.pct(0.99) <= 5.0),
        seq.pct(0.99),
        verdict(api.rate() >= 0.5 * floor1.rate()),
        100.0 * api.rate() / floor1.rate()
    );
    println!(
        "check: {acknowledged} writes acknowledged with 201, {stored} work orders in the store, {failures} failures"
    );
    if stored < acknowledged as i64 {
        bail!("the store holds {stored} work orders but {acknowledged} were acknowledged");
    }
    if failures > 0 {
        bail!("{failures} requests did not get 201");
    }
    Ok(())
}
