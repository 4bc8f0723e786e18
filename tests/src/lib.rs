//! Harness for whole-system tests: a fresh PostgreSQL database, a real `sentra-cloud` on a free
//! port, real `sentra-edge` daemons on temporary stores, and a TCP proxy between them that can
//! drop, cut and delay connections. Everything talks over real sockets on 127.0.0.1.

pub mod netns;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngExt as _;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// Upper bound for start-up of a daemon on a loaded 2-core CI machine.
pub const START: Duration = Duration::from_secs(60);

/// The workspace's binaries, next to this test executable (`target/<profile>/`), built once per
/// process so they are never stale. Under the test profile they are built by the same command
/// `scripts/test.sh` builds with (`cargo test --workspace --no-run`), so after that build this is
/// a no-op: a narrower `cargo build -p …` could resolve the crates' features differently and
/// overwrite the binaries the other tests run with a second build.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..")
        .to_owned();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        without_test_package_env(&mut cmd);
        if dir.ends_with("release") {
            cmd.args([
                "build",
                "--bins",
                "-p",
                "sentra-edge",
                "-p",
                "sentra-cloud",
                "--profile",
                "bench",
            ]);
        } else {
            cmd.args(["test", "--workspace", "--no-run", "--quiet"]);
        }
        let status = cmd.status().expect("run cargo build");
        assert!(
            status.success(),
            "building the binaries for the system tests failed"
        );
    });
    dir.join(name)
}

/// Removes what cargo sets for a running test (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ...) from
/// a `cargo` command's environment: ring's build script reruns when one it reads changes, so a
/// cargo started from a test would rebuild ring and everything above it, and the next plain
/// build would rebuild them back.
pub fn without_test_package_env(cmd: &mut std::process::Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_for_the_test = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CFG_"]
            .iter()
            .any(|prefix| key.starts_with(prefix))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&key);
        if set_for_the_test {
            cmd.env_remove(key);
        }
    }
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Poll `check` until it returns `Some`, for at most `limit`. Panics with `what` otherwise.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn admin_url() -> String {
    std::env::var("SENTRA_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A PostgreSQL database of its own, dropped with this.
pub struct Db {
    pub name: String,
    pub url: String,
}

impl Db {
    pub async fn create() -> Db {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "sentra_sys_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin}: {e}; bash scripts/test.sh starts it")
        });
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let _ = conn.close().await;
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_owned();
        Db {
            url: format!("{base}/{name}"),
            name,
        }
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

/// Read a child's stdout until a line starting with `prefix`; returns the rest of that line and
/// keeps draining the pipe in the background.
async fn wait_for_line(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let rest = tokio::time::timeout(START, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
        panic!("process exited before printing {prefix:?}");
    })
    .await
    .expect("started in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    rest
}

/// A `redis-server` of the test's own on a free port, without persistence, killed when dropped:
/// the cloud's booking calendar lives in Redis, and a shared one would carry one test's bookings
/// into the next test's fresh database.
pub struct Redis {
    pub url: String,
    _child: Child,
}

impl Redis {
    pub async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server (bash scripts/test.sh installs it)");
        eventually(START, "redis-server to accept connections", || async {
            TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        Redis {
            url: format!("redis://127.0.0.1:{port}"),
            _child: child,
        }
    }
}

/// A running `sentra-cloud` on its own database.
pub struct Cloud {
    pub db: Db,
    pub url: String,
    /// The cloud's photo store (`SENTRA_CLOUD__BLOBS__URL=file://...`); photos are at
    /// `blobs/<sha256>` under it.
    pub blobs_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Cloud {
    pub async fn start() -> Cloud {
        Cloud::start_with(&[]).await
    }

    /// With extra environment (e.g. `REDIS_URL` of the test's own [`Redis`]).
    pub async fn start_with(env: &[(&str, &str)]) -> Cloud {
        let db = Db::create().await;
        let blobs_dir = tempfile::tempdir().expect("a photo store directory");
        let mut cloud = Cloud {
            db,
            url: String::new(),
            blobs_dir,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            child: None,
        };
        let (code, out, err) = cloud.cli(&["migrate"]);
        assert_eq!(code, 0, "migrate: {out}{err}");
        cloud.serve().await;
        cloud
    }

    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(bin("sentra-cloud"));
        // The whole-system tests book for made-up customers; the identity gate (on by default)
        // is tested in sentra-cloud's `identity` tests. A test may pass `true` in its env.
        c.env("DATABASE_URL", &self.db.url)
            .env("SENTRA_CLOUD__IDENTITY__REQUIRED", "false")
            .env("RUST_LOG", "warn")
            .env(
                "SENTRA_CLOUD__BLOBS__URL",
                format!("file://{}", self.blobs_dir.path().display()),
            );
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Run a `sentra-cloud` subcommand against this cloud's database.
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_with(args, &[])
    }

    /// [`Cloud::cli`] with extra environment.
    pub fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = self
            .command()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run sentra-cloud");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// (Re)start `serve` on a free port; the URL changes.
    pub async fn serve(&mut self) {
        let mut cmd = Command::from(self.command());
        cmd.arg("serve")
            .env("SENTRA_CLOUD__HTTP__LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn sentra-cloud serve");
        let addr = wait_for_line(&mut child, "listening on").await;
        self.url = format!("http://{addr}");
        self.child = Some(child);
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// The last word of the command's output: how the token commands print the token.
    fn token(&self, args: &[&str]) -> String {
        let (code, out, err) = self.cli(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out.split_whitespace().last().expect("a token").to_owned()
    }

    pub fn enrollment_token(&self, branch: &str) -> String {
        self.token(&[
            "enrollment-token",
            "--branch",
            branch,
            "--branch-name",
            &format!("Cabang {branch}"),
        ])
    }

    /// A new operator token. Live token names are unique, so each call names its own.
    pub fn operator_token(&self) -> String {
        let name = format!("ops-{}", next_token_number());
        self.token(&["api-token", "--name", &name, "--role", "operator"])
    }

    /// A new token for the customer web portal (a portal of its own: names are unique).
    pub fn portal_token(&self) -> String {
        let name = format!("portal-{}", next_token_number());
        self.token(&["api-token", "--name", &name, "--role", "portal"])
    }

    pub async fn pg(&self) -> PgConnection {
        self.db.connect().await
    }

    /// `sentra-cloud release publish ARTIFACT --version V --channel stable`, signed with `key`
    /// (the cloud must have been started with its public half, [`ReleaseKey::env`]).
    pub fn publish_release(&self, key: &ReleaseKey, artifact: &Path, version: &str) {
        let artifact = artifact.to_str().expect("utf-8 path");
        let signing_key = key.file.to_str().expect("utf-8 path");
        let (code, out, err) = self.cli_with(
            &[
                "release",
                "publish",
                artifact,
                "--version",
                version,
                "--channel",
                "stable",
            ],
            &[("SENTRA_CLOUD__RELEASES__SIGNING_KEY_FILE", signing_key)],
        );
        assert_eq!(code, 0, "publish {version}: {out}{err}");
    }

    /// `sentra-cloud rollout` of `version` to the whole stable channel, `device` first: the
    /// cloud offers it to that box in its next heartbeat's answer.
    pub fn roll_out(&self, version: &str, device: &str) {
        let (code, out, err) = self.cli(&[
            "rollout",
            "--channel",
            "stable",
            "--percent",
            "100",
            "--version",
            version,
            "--canary",
            device,
        ]);
        assert_eq!(code, 0, "rollout {version}: {out}{err}");
    }
}

/// A release signing key from `sentra-cloud release keygen`, in a directory of its own.
pub struct ReleaseKey {
    _dir: tempfile::TempDir,
    pub file: PathBuf,
    /// The public half, as boxes pin it.
    pub public: String,
}

impl ReleaseKey {
    pub fn new() -> ReleaseKey {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("release.key");
        let keygen = std::process::Command::new(bin("sentra-cloud"))
            .args(["release", "keygen"])
            .arg(&file)
            .output()
            .expect("sentra-cloud release keygen");
        assert!(
            keygen.status.success(),
            "release keygen: {}",
            String::from_utf8_lossy(&keygen.stderr)
        );
        let public = String::from_utf8_lossy(&keygen.stdout).trim().to_owned();
        ReleaseKey {
            _dir: dir,
            file,
            public,
        }
    }

    /// What [`Cloud::start_with`] needs to hand this key out at enrolment and publish with it.
    pub fn env(&self) -> [(&'static str, &str); 1] {
        [("SENTRA_CLOUD__RELEASES__PUBLIC_KEY", self.public.as_str())]
    }
}

impl Default for ReleaseKey {
    fn default() -> Self {
        Self::new()
    }
}

/// The `sentra-edge` an [`EdgeSite`] runs: `SENTRA_EDGE_BIN` when set (a benchmark measuring
/// the shipped static binary, `scripts/build-static.sh`), else this build's [`bin`].
pub fn edge_bin() -> PathBuf {
    std::env::var_os("SENTRA_EDGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin("sentra-edge"))
}

/// A store directory, key and config for `sentra-edge`, pointing at `cloud_url` for sync.
pub struct EdgeSite {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub key_file: PathBuf,
}

impl EdgeSite {
    pub fn new(branch: &str, extra: &str) -> EdgeSite {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = dir.path().join("store.key");
        let out = std::process::Command::new(edge_bin())
            .arg("keygen")
            .arg(&key_file)
            .output()
            .expect("keygen");
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("edge.toml");
        std::fs::write(
            &config,
            format!(
                "[branch]\nid = \"{branch}\"\n[store]\ndata_dir = {:?}\nkey_file = {:?}\n[lan]\nplain = true\n[mqtt]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n[sync]\npull_interval_secs = 1\n{extra}",
                dir.path().join("data").display().to_string(),
                key_file.display().to_string()
            ),
        )
        .expect("write config");
        EdgeSite {
            dir,
            config,
            key_file,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("sentra.db")
    }

    /// Write `events` work orders straight into the store (through `sentra_edge::store`, with
    /// their outbox events), as a box that was offline for days would have them. The daemon
    /// must not be running.
    pub async fn write_offline_backlog(&self, events: usize) {
        let config = sentra_edge::config::Config::load_from(Some(&self.config), std::iter::empty())
            .expect("config");
        let store = sentra_edge::daemon::open_store(&config)
            .await
            .expect("open store");
        let new = sentra_edge::store::workshop::NewWorkOrder {
            party: sentra_edge::store::vehicles::Party {
                customer_name: Some(
                    sentra_edge::domain::Name::parse("Pelanggan Setia").expect("valid"),
                ),
                customer_phone: Some(
                    sentra_edge::domain::Phone::parse("081234567890").expect("valid"),
                ),
                vehicle_plate: Some(
                    sentra_edge::domain::Plate::parse("BK 1234 AB").expect("valid"),
                ),
                vehicle_id: None,
                customer_id: None,
            },
            complaint: sentra_edge::domain::Text::parse(
                "Servis berkala 10.000 km, ganti oli dan filter",
            )
            .expect("valid"),
            mechanic_id: None,
        };
        let mut written = 0;
        while written < events {
            let n = (events - written).min(5_000);
            let new = new.clone();
            store
                .write(move |w| {
                    for _ in 0..n {
                        sentra_edge::store::workshop::create(w, "backlog", &new)?;
                    }
                    Ok(())
                })
                .await
                .expect("write backlog");
            written += n;
        }
        store.shutdown().await;
    }

    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(edge_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run sentra-edge");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// [`EdgeSite::cli`] with `stdin` as the command's standard input (a pipe), as a technician
    /// types or a keyboard-mode scanner types at a prompt.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        let mut cmd = std::process::Command::new(edge_bin());
        cmd.args(args).arg("--config").arg(&self.config);
        typed_into(cmd, stdin)
    }

    /// [`EdgeSite::cli`] at a real terminal: the command runs on a pseudo-terminal made by
    /// util-linux `script`, which types `typed` into it, as a technician at the box's console
    /// does. Its stdout and stderr both arrive in the returned stdout (one terminal), with what
    /// was typed echoed and lines ending in `\r\n`.
    pub fn cli_at_terminal(&self, args: &[&str], typed: &str) -> (i32, String, String) {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut line = quote(&edge_bin().to_string_lossy());
        for arg in args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        line.push_str(" --config ");
        line.push_str(&quote(&self.config.to_string_lossy()));
        let mut cmd = std::process::Command::new("script");
        // -e: script exits with the command's code; /dev/null: no typescript file.
        cmd.args(["--quiet", "--return", "--command", &line, "/dev/null"]);
        typed_into(cmd, typed)
    }

    pub fn enroll(&self, cloud_url: &str, token: &str) {
        let (code, out, err) = self.cli(&["enroll", "--cloud", cloud_url, "--token", token]);
        assert_eq!(code, 0, "enroll: {out}{err}");
    }

    pub fn load_demo_data(&self) {
        let (code, out, err) = self.cli(&["load-demo-data"]);
        assert_eq!(code, 0, "load-demo-data: {out}{err}");
    }

    /// A bearer token for a device of `role`, paired through the real API.
    pub async fn pair(&self, edge: &Edge, role: &str) -> String {
        let (code, out, err) = self.cli(&["pair", "--role", role]);
        assert_eq!(code, 0, "pair: {err}");
        let code = out
            .split_whitespace()
            .find(|w| w.len() == 9 && w.as_bytes()[4] == b'-')
            .expect("a code")
            .to_owned();
        let (s, b) = edge
            .call(
                None,
                "POST",
                "/v1/pair",
                Some(serde_json::json!({"code": code, "device_name": role})),
            )
            .await;
        assert_eq!(s, 201, "pair: {b}");
        b["token"].as_str().expect("token").to_owned()
    }

    pub async fn start(&self) -> Edge {
        let mut child = Command::new(edge_bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            // Many test daemons run at once; none announces itself on the LAN.
            .env("SENTRA_EDGE__LAN__MDNS", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sentra-edge");
        let url = wait_for_line(&mut child, "sentra-edge: api listening on").await;
        Edge {
            child,
            url,
            http: http(),
        }
    }

    /// Open the store directly with its key (the daemon may be running: WAL allows readers).
    pub fn open_db(&self) -> rusqlite::Connection {
        let key = std::fs::read_to_string(&self.key_file).expect("key");
        let conn = rusqlite::Connection::open(self.db_path()).expect("open");
        conn.pragma_update(None, "key", format!("x'{}'", key.trim()))
            .expect("key");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn
    }
}

/// A running `sentra-edge`.
pub struct Edge {
    pub child: Child,
    pub url: String,
    pub http: reqwest::Client,
}

impl Edge {
    pub async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_with(token, method, path, body, &[]).await
    }

    /// [`Self::call`] with extra headers (`Sentra-Staff`, `Sentra-Manager`).
    pub async fn call_with(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self.http.request(
            method.parse().expect("method"),
            format!("{}{path}", self.url),
        );
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request to the edge");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn sync_status(&self, token: &str) -> Value {
        let (s, b) = self.call(Some(token), "GET", "/v1/sync/status", None).await;
        assert_eq!(s, 200, "{b}");
        b
    }

    /// Wait until the outbox is empty (everything acknowledged by the cloud).
    pub async fn drained(&self, token: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let st = self.sync_status(token).await;
            if st["pending_events"] == 0 {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "the outbox did not drain within {limit:?}; sync status:\n{st:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// What the proxy does to each new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProxyMode {
    /// Forward faithfully.
    Pass = 0,
    /// Inject a random fault into most connections.
    Faulty = 1,
    /// Refuse: the link is down.
    Down = 2,
    /// Forward each request to the cloud, then drop the connection instead of passing the
    /// answer back: the cloud did the work, the edge never hears of it (a lost acknowledgement).
    DropReplies = 3,
    /// [`ProxyMode::DropReplies`] for the next request only, then [`ProxyMode::Pass`].
    DropNextReply = 4,
}

/// Requests the proxy counts: those whose request line contains `pattern`, forwarded and
/// answered; with `cut_at`, the link goes down right after that many.
#[derive(Debug, Default)]
struct Watch {
    pattern: Option<String>,
    forwarded: u64,
    cut_at: Option<u64>,
}

/// A TCP proxy between the edge and the cloud that breaks things on purpose.
pub struct Proxy {
    pub url: String,
    mode: Arc<AtomicU8>,
    watch: Arc<std::sync::Mutex<Watch>>,
    pub faults: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
}

impl Proxy {
    /// Listen on a free port and forward to `upstream` (host:port).
    pub async fn start(upstream: String, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(AtomicU8::new(ProxyMode::Pass as u8));
        let faults = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let watch = Arc::new(std::sync::Mutex::new(Watch::default()));
        let (m, f, n, w) = (
            mode.clone(),
            faults.clone(),
            connections.clone(),
            watch.clone(),
        );
        tokio::spawn(async move {
            let mut conn_no = 0u64;
            while let Ok((client, _)) = listener.accept().await {
                conn_no += 1;
                n.fetch_add(1, Ordering::Relaxed);
                let (mode, faults, upstream, watch) =
                    (m.clone(), f.clone(), upstream.clone(), w.clone());
                let seed = seed ^ conn_no.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                tokio::spawn(async move {
                    let _ = handle(client, upstream, mode, faults, watch, seed).await;
                });
            }
        });
        Proxy {
            url: format!("http://{addr}"),
            mode,
            watch,
            faults,
            connections,
        }
    }

    pub fn set(&self, mode: ProxyMode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Count the requests whose request line contains `pattern` (forwarded and answered in
    /// `Pass` mode); with `cut_after`, go `Down` right after that many more of them, so a test
    /// can break a transfer at an exact point.
    pub fn watch(&self, pattern: &str, cut_after: Option<u64>) {
        let mut w = self.watch.lock().expect("watch lock");
        w.pattern = Some(pattern.to_owned());
        w.cut_at = cut_after.map(|n| w.forwarded + n);
    }

    /// How many watched requests were forwarded and answered so far.
    pub fn watched(&self) -> u64 {
        self.watch.lock().expect("watch lock").forwarded
    }
}

/// Read one HTTP/1.1 request or response head and body (Content-Length framing, as ours use).
async fn read_message(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(Some(buf));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One client connection, request by request, each request its own upstream exchange with a
/// chance of a fault: drop mid-request, cut the answer after the cloud committed, or delay.
async fn handle(
    mut client: TcpStream,
    upstream: String,
    mode: Arc<AtomicU8>,
    faults: Arc<AtomicU64>,
    watch: Arc<std::sync::Mutex<Watch>>,
    seed: u64,
) -> std::io::Result<()> {
    if mode.load(Ordering::Relaxed) == ProxyMode::Down as u8 {
        return Ok(());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64_compat(seed);
    let mut server = TcpStream::connect(&upstream).await?;
    while let Some(req) = read_message(&mut client).await? {
        // The mode holds for each request, so a cut link also cuts kept-alive connections.
        let now = mode.load(Ordering::Relaxed);
        if now == ProxyMode::Down as u8 {
            return Ok(());
        }
        let fault = if now == ProxyMode::Faulty as u8 {
            rng.random_range(0..9u8)
        } else if now == ProxyMode::DropReplies as u8 {
            2
        } else if now == ProxyMode::DropNextReply as u8 {
            mode.store(ProxyMode::Pass as u8, Ordering::Relaxed);
            2
        } else {
            9
        };
        match fault {
            // Drop the connection part-way through the request: the cloud never sees it whole.
            0..=1 => {
                let cut = rng.random_range(1..req.len().max(2));
                server.write_all(&req[..cut]).await?;
                faults.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            // The cloud gets and answers the request, the edge never hears the answer.
            2..=3 => {
                server.write_all(&req).await?;
                let _ = read_message(&mut server).await?;
                faults.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            // Slow link: delay both ways.
            4..=5 => {
                tokio::time::sleep(Duration::from_millis(rng.random_range(1..150))).await;
                server.write_all(&req).await?;
                let Some(resp) = read_message(&mut server).await? else {
                    return Ok(());
                };
                tokio::time::sleep(Duration::from_millis(rng.random_range(1..150))).await;
                client.write_all(&resp).await?;
                faults.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                server.write_all(&req).await?;
                let Some(resp) = read_message(&mut server).await? else {
                    return Ok(());
                };
                client.write_all(&resp).await?;
                let line_end = req.iter().position(|b| *b == b'\n').unwrap_or(req.len());
                let line = String::from_utf8_lossy(&req[..line_end]);
                let mut w = watch.lock().expect("watch lock");
                if w.pattern.as_deref().is_some_and(|p| line.contains(p)) {
                    w.forwarded += 1;
                    if w.cut_at == Some(w.forwarded) {
                        mode.store(ProxyMode::Down as u8, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    Ok(())
}

/// `StdRng` from a u64 seed, whatever rand's seeding API calls it this year.
trait SeedCompat {
    fn seed_from_u64_compat(seed: u64) -> Self;
}

impl SeedCompat for rand::rngs::StdRng {
    fn seed_from_u64_compat(seed: u64) -> Self {
        <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed)
    }
}

/// A number for an API token's name, new at every call in this process.
fn next_token_number() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Runs `cmd` with `typed` written to its standard input: (exit code, stdout, stderr).
fn typed_into(mut cmd: std::process::Command, typed: &str) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the command");
    let mut input = child.stdin.take().expect("stdin");
    // A command that exits before reading closes the pipe: not this helper's failure.
    let _ = input.write_all(typed.as_bytes());
    drop(input);
    let out = child.wait_with_output().expect("wait for the command");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
