//! What every test needs: a fresh database, the binary run as a command or as a server, and a
//! port with nothing listening on it.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_sentra-cloud");

/// Upper bound for anything a test waits for: start-up, readiness, shutdown.
pub const WAIT: Duration = Duration::from_secs(10);

const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Every variable the binary reads its configuration from; removed from each child's
/// environment so the developer's own settings never leak into a test.
const CONFIG_VARS: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_LOCK_NODES",
    "SENTRA_CLOUD__REDIS__CA_FILE",
    "SENTRA_CLOUD__HTTP__LISTEN",
    "SENTRA_CLOUD__NOTIFY__AMQP_URL",
    "SENTRA_CLOUD__NOTIFY__AMQP_CA_FILE",
    "SENTRA_CLOUD__NOTIFY__QUEUE",
    "SENTRA_CLOUD__NOTIFY__GATEWAY_URL",
    "SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN",
    "SENTRA_CLOUD__NOTIFY__GATEWAY_LOOKUP_URL",
    "RUST_LOG",
    // sqlx reads these under a database URL's own parameters.
    "PGSSLMODE",
    "PGSSLROOTCERT",
];

pub fn admin_url() -> String {
    std::env::var("SENTRA_TEST_PG_ADMIN_URL").unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_owned())
}

pub fn redis_url() -> String {
    std::env::var("SENTRA_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// Runs `futures` concurrently on this task; their outputs in order. A `Vec`, so callers may
/// `collect()` straight into it.
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    futures_util::future::join_all(futures).await
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("bound socket has an address")
        .port()
}

/// A database of its own for one test; dropped (with its connections) when this is.
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "sentra_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin_url = admin_url();
        let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|error| {
            panic!("PostgreSQL for tests at {admin_url}: {error}; is it running? (bash scripts/test.sh starts it)")
        });
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Self { name, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on async work: use a thread
        // with a runtime of its own.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database");
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url()).await?;
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                admin.close().await
            })
        })
        .join();
        if !std::thread::panicking() {
            match dropped {
                Ok(Ok(())) => {}
                Ok(Err(error)) => panic!("drop test database {}: {error}", self.name),
                Err(_) => panic!("drop test database {}: the thread panicked", self.name),
            }
        }
    }
}

/// `url` pointing at database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let host_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |index| authority_start + index);
    format!("{}/{name}{query}", &base[..host_end])
}

/// The binary as a command: its environment is `env` plus what it inherits minus
/// [`CONFIG_VARS`].
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).kill_on_drop(true).stdin(Stdio::null());
    for var in CONFIG_VARS {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary to completion (bounded by [`WAIT`]).
pub async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = tokio::time::timeout(WAIT, command(args, env).output())
        .await
        .unwrap_or_else(|_| panic!("sentra-cloud {args:?} did not finish within {WAIT:?}"))
        .expect("run sentra-cloud");
    Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `sentra-cloud release publish ARTIFACT --version V --channel stable` into the database at
/// `db_url`, signed with `key_file`, with `extra` environment: its output, success or not.
pub async fn release_publish(
    db_url: &str,
    key_file: &std::path::Path,
    artifact: &std::path::Path,
    version: &str,
    extra: &[(&str, &str)],
) -> Output {
    let mut env = vec![
        ("DATABASE_URL", db_url),
        (
            "SENTRA_CLOUD__RELEASES__SIGNING_KEY_FILE",
            key_file.to_str().expect("utf-8 path"),
        ),
    ];
    env.extend_from_slice(extra);
    run(
        &[
            "release",
            "publish",
            artifact.to_str().expect("utf-8 path"),
            "--version",
            version,
            "--channel",
            "stable",
        ],
        &env,
    )
    .await
}

/// `migrate` against `db`, which must succeed.
pub async fn migrate(db: &TestDb) {
    let output = run(&["migrate"], &[("DATABASE_URL", db.url())]).await;
    assert!(output.status.success(), "migrate failed: {}", output.stderr);
}

/// `sentra-cloud serve` running on a port of its own, killed if the test ends without
/// [`Server::terminate`].
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stderr: Stderr,
    http: reqwest::Client,
}

impl Server {
    /// Starts `serve` on 127.0.0.1:0 with `env` (which may override the listen address too)
    /// and waits for its `listening on ADDR` line.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut all_args = vec!["serve"];
        all_args.extend_from_slice(args);
        let mut command = command(&all_args, &[("SENTRA_CLOUD__HTTP__LISTEN", "127.0.0.1:0")]);
        command
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn sentra-cloud serve");
        let stderr = collect(child.stderr.take().expect("stderr is piped"));
        let stdout = child.stdout.take().expect("stdout is piped");

        let mut first_line = String::new();
        let read =
            tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut first_line)).await;
        let addr = first_line
            .trim_end()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse::<SocketAddr>().ok());
        let Some(addr) = addr else {
            let status = child.try_wait().ok().flatten();
            let _ = child.start_kill();
            let stderr = stderr.finish().await;
            panic!(
                "serve did not announce its address (read: {read:?}, first line: {first_line:?}, status: {status:?}); stderr:\n{stderr}"
            );
        };
        Server {
            child,
            addr,
            stderr,
            http: http_client(),
        }
    }

    /// GET `path`; the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let url = format!("http://{}{path}", self.addr);
        let response = tokio::time::timeout(WAIT, self.http.get(&url).send())
            .await
            .unwrap_or_else(|_| panic!("GET {url}: no answer within {WAIT:?}"))
            .unwrap_or_else(|error| panic!("GET {url}: {error}"));
        let status = response.status().as_u16();
        let body = response
            .json()
            .await
            .unwrap_or_else(|error| panic!("GET {url}: body is not JSON: {error}"));
        (status, body)
    }

    /// Polls `path` until it answers `status` (bounded by [`WAIT`]); the last answer.
    pub async fn wait_for(&self, path: &str, status: u16) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let (got, body) = self.get(path).await;
            if got == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} still answers {got} {body} after {WAIT:?}, not {status}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id (for signals such as SIGSTOP in tests that pause a replica).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("serve is still running")
    }

    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.snapshot()
    }

    /// Sends SIGTERM and waits for the exit (bounded by [`WAIT`]); the status, how long it
    /// took, and everything the server logged.
    pub async fn terminate(mut self) -> (ExitStatus, Duration, String) {
        let pid = self.child.id().expect("serve is still running");
        let sent = Instant::now();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("serve did not exit within {WAIT:?} of SIGTERM"))
            .expect("wait for serve");
        let took = sent.elapsed();
        (status, took, self.stderr.finish().await)
    }
}

/// A child's stderr, read to the end in the background.
pub struct Stderr {
    text: Arc<Mutex<String>>,
    reader: JoinHandle<()>,
}

impl Stderr {
    pub fn snapshot(&self) -> String {
        self.text
            .lock()
            .map(|text| text.clone())
            .unwrap_or_default()
    }

    /// Everything, once the child closed its stderr (bounded by [`WAIT`]).
    pub async fn finish(self) -> String {
        let Stderr { text, reader } = self;
        let _ = tokio::time::timeout(WAIT, reader).await;
        text.lock().map(|text| text.clone()).unwrap_or_default()
    }
}

pub fn collect(mut stderr: ChildStderr) -> Stderr {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    let reader = tokio::spawn(async move {
        let mut buffer = [0_u8; 4096];
        loop {
            match stderr.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    if let Ok(mut text) = sink.lock() {
                        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
                    }
                }
            }
        }
    });
    Stderr { text, reader }
}

#[test]
fn with_database_replaces_only_the_database() {
    let cases = [
        (
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://postgres@127.0.0.1:5432/x",
        ),
        (
            "postgres://u:p@h/db?sslmode=disable",
            "postgres://u:p@h/x?sslmode=disable",
        ),
        ("postgres://h:5432", "postgres://h:5432/x"),
    ];
    for (url, expected) in cases {
        assert_eq!(with_database(url, "x"), expected);
    }
}

/// A reqwest client. In a workspace build reqwest's TLS comes without a crypto provider
/// (sentra-edge picks ring explicitly), so install ring before building one.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// An operator API token made with the CLI against `db_url`, for the routes only an operator
/// reads (`/metrics`, the fleet).
pub async fn operator_token(db_url: &str) -> String {
    let name = format!("ops-{}", rand::random::<u32>());
    let output = run(
        &["api-token", "--name", &name, "--role", "operator"],
        &[("DATABASE_URL", db_url)],
    )
    .await;
    assert!(output.status.success(), "api-token: {}", output.stderr);
    output.stdout.trim().to_owned()
}

/// `GET /metrics` of the replica at `addr` with an operator token; the Prometheus text.
pub async fn scrape(addr: SocketAddr, operator: &str) -> String {
    let response = http_client()
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(operator)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200, "an operator scrapes /metrics");
    response.text().await.expect("metrics text")
}

/// A `/metrics` text, parsed (it must be valid Prometheus text).
pub fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text")
}

/// The sum of the samples of `name` whose labels include every one of `labels`; NaN for a
/// histogram or summary sample.
pub fn sample_sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum()
}
