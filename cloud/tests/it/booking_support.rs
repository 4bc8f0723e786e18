//! What booking tests need: `redis-server` processes of their own (on free ports, so a test can
//! kill, restart or wipe its Redis without touching anyone else's), and a booking cloud of up to
//! three `sentra-cloud serve` replicas on one fresh database with a branch, assets and tokens.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::{Server, TestDb, WAIT, closed_port, http_client, migrate, run};

/// A `redis-server` of the test's own, without persistence; killed when dropped.
pub struct RedisProcess {
    pub port: u16,
    child: Option<Child>,
    /// More `redis-server` arguments (a cluster node's).
    extra: Vec<String>,
}

impl RedisProcess {
    pub async fn start() -> RedisProcess {
        let port = closed_port();
        let mut redis = RedisProcess {
            port,
            child: None,
            extra: Vec::new(),
        };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server (bash scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if self.ping().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url()).ok()?;
        client.get_multiplexed_async_connection().await.ok()
    }

    async fn ping(&self) -> bool {
        match self.connection().await {
            Some(mut connection) => redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok(),
            None => false,
        }
    }

    /// SIGKILL: everything it held is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Kill, then start empty on the same port.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: &str) -> Option<String> {
        let mut connection = self.connection().await.expect("redis answers");
        redis::cmd("GET")
            .arg(key)
            .query_async::<Option<String>>(&mut connection)
            .await
            .expect("GET")
    }

    pub async fn exists(&self, key: &str) -> bool {
        let mut connection = self.connection().await.expect("redis answers");
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<bool>(&mut connection)
            .await
            .expect("EXISTS")
    }

    /// Every calendar key as the set of days (bit indexes) it marks taken; keys with none left
    /// out, so a released month and a missing month compare equal.
    pub async fn calendar(&self) -> BTreeMap<String, BTreeSet<usize>> {
        let mut connection = self.connection().await.expect("redis answers");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("avail:*")
            .query_async(&mut connection)
            .await
            .expect("KEYS");
        let mut out = BTreeMap::new();
        for key in keys {
            let value: Vec<u8> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .expect("GET");
            let bits: BTreeSet<usize> = (0..value.len() * 8)
                .filter(|bit| value[bit / 8] & (0x80 >> (bit % 8)) != 0)
                .collect();
            if !bits.is_empty() {
                out.insert(key, bits);
            }
        }
        out
    }
}

pub const BRANCH: &str = "JKT01";
pub const SKU: &str = "AVZ";

/// A booking cloud: one database, replicas, a portal and an operator token, assets `a1..aN` of
/// SKU [`SKU`] in branch [`BRANCH`].
pub struct BookingCloud {
    pub db: TestDb,
    pub servers: Vec<Server>,
    pub portal: String,
    pub operator: String,
    http: reqwest::Client,
    env: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

impl BookingCloud {
    /// `replicas` servers with `env` (REDIS_URL and booking settings) over a fresh database
    /// holding `assets` assets.
    pub async fn start(replicas: usize, assets: usize, env: &[(&str, &str)]) -> BookingCloud {
        let db = TestDb::create().await;
        migrate(&db).await;
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        env.push(("DATABASE_URL".to_owned(), db.url().to_owned()));
        // These clouds test the calendar, locks and states with made-up customers; the identity
        // gate (on by default) has its own tests in `identity.rs`, which pass `true` here.
        if !env
            .iter()
            .any(|(name, _)| name == "SENTRA_CLOUD__IDENTITY__REQUIRED")
        {
            env.push((
                "SENTRA_CLOUD__IDENTITY__REQUIRED".to_owned(),
                "false".to_owned(),
            ));
        }
        let mut cloud = BookingCloud {
            db,
            servers: Vec::new(),
            portal: String::new(),
            operator: String::new(),
            http: http_client(),
            env,
        };
        cloud
            .command(&["enrollment-token", "--branch", BRANCH])
            .await;
        cloud.operator = cloud
            .command(&["api-token", "--name", "ops", "--role", "operator"])
            .await;
        cloud.portal = cloud
            .command(&["api-token", "--name", "portal", "--role", "portal"])
            .await;
        cloud.start_servers(replicas).await;
        for index in 1..=assets {
            let id = format!("a{index}");
            let answer = cloud
                .call(
                    0,
                    &cloud.operator.clone(),
                    Method::PUT,
                    &format!("/v1/branches/{BRANCH}/assets/{id}"),
                    Some(json!({"id": id, "sku": SKU, "plate": format!("B {index} XYZ"), "name": "Avanza"})),
                    None,
                )
                .await;
            assert_eq!(answer.status, 200, "put asset: {answer:?}");
        }
        cloud
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }

    /// A one-shot command against this cloud; its one line of stdout.
    pub async fn command(&self, args: &[&str]) -> String {
        let output = run(args, &self.env()).await;
        assert!(
            output.status.success(),
            "sentra-cloud {args:?}: {}",
            output.stderr
        );
        output.stdout.trim().to_owned()
    }

    pub async fn start_servers(&mut self, replicas: usize) {
        for _ in 0..replicas {
            let server = Server::start(&[], &self.env()).await;
            self.servers.push(server);
        }
    }

    /// SIGTERM to every replica, each must exit cleanly.
    pub async fn stop_servers(&mut self) {
        for server in self.servers.drain(..) {
            let (status, _, stderr) = server.terminate().await;
            assert!(status.success(), "serve exited with {status}: {stderr}");
        }
    }

    /// A request to replica `replica % replicas` with `Authorization: Bearer token`.
    pub async fn call(
        &self,
        replica: usize,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Answer {
        let server = &self.servers[replica % self.servers.len()];
        let url = format!("http://{}{path}", server.addr);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header("authorization", format!("Bearer {token}"));
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {WAIT:?}"))
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// `POST /v1/bookings` from the portal to replica `replica`.
    pub async fn hold(
        &self,
        replica: usize,
        asset: &str,
        from: &str,
        to: &str,
        customer: &str,
        key: Option<&str>,
    ) -> Answer {
        let body = json!({"branch": BRANCH, "asset_id": asset, "sku": SKU, "from": from, "to": to, "customer": customer, "tier": "gold"});
        self.call(
            replica,
            &self.portal,
            Method::POST,
            "/v1/bookings",
            Some(body),
            key,
        )
        .await
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        let mut connection = self.db.connect().await;
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to replica `replica`.
    pub fn signal(&self, replica: usize, signal: &str) {
        let pid = self.servers[replica].pid();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    pub async fn text(&self, sql: &str) -> String {
        let mut connection = self.db.connect().await;
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// Polls `sql` (a boolean) until it is true, bounded by `limit`.
    pub async fn wait_until(&self, sql: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut connection = self.db.connect().await;
        loop {
            let done: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("{sql}: {error}"));
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still false after {limit:?}: {sql}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the booking tests look at in Redis, on one node or a cluster alike.
pub trait BookingRedis {
    /// The environment that points a replica at this Redis.
    fn env(&self) -> (&'static str, String);
    async fn exists(&self, key: &str) -> bool;
    /// Every calendar key as the days it marks taken (see [`RedisProcess::calendar`]).
    async fn calendar(&self) -> BTreeMap<String, BTreeSet<usize>>;
}

impl BookingRedis for RedisProcess {
    fn env(&self) -> (&'static str, String) {
        ("REDIS_URL", self.url())
    }

    async fn exists(&self, key: &str) -> bool {
        RedisProcess::exists(self, key).await
    }

    async fn calendar(&self) -> BTreeMap<String, BTreeSet<usize>> {
        RedisProcess::calendar(self).await
    }
}

/// Ports for cluster nodes: a node also listens on its port + 10000 (the cluster bus), so nodes
/// come from a range whose bus ports are free too. Each cluster takes the next six free ones.
const CLUSTER_PORTS: std::ops::Range<u16> = 30100..30200;
static NEXT_CLUSTER_PORT: std::sync::atomic::AtomicU16 =
    std::sync::atomic::AtomicU16::new(CLUSTER_PORTS.start);

fn cluster_port() -> u16 {
    loop {
        let port = NEXT_CLUSTER_PORT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(CLUSTER_PORTS.contains(&port), "cluster ports used up");
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

/// How long a cluster node may be unreachable before the others fail it over: small, so a
/// failover test takes seconds.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 1000;

/// A Redis Cluster of the test's own: six `redis-server --cluster-enabled yes` nodes (three
/// masters, one replica each) without persistence, in a temporary directory; killed when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisProcess>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let port = cluster_port();
            let config = dir.path().join(format!("nodes-{port}.conf"));
            let mut node = RedisProcess {
                port,
                child: None,
                extra: vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    config.display().to_string(),
                    "--cluster-node-timeout".into(),
                    CLUSTER_NODE_TIMEOUT_MS.to_string(),
                    // A replica takes over however long it was cut off: the test kills masters.
                    "--cluster-replica-validity-factor".into(),
                    "0".into(),
                    "--dir".into(),
                    dir.path().display().to_string(),
                ],
            };
            node.spawn().await;
            nodes.push(node);
        }
        let mut create = std::process::Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create (bash scripts/test.sh installs it)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_ok().await;
        cluster
    }

    /// The seed list for `REDIS_CLUSTER_NODES`: every node.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(RedisProcess::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn info(node: &RedisProcess, section: &str) -> Option<String> {
        let mut connection = node.connection().await?;
        let mut command = redis::cmd(section);
        if section == "CLUSTER" {
            command.arg("INFO");
        } else {
            command.arg("replication");
        }
        command.query_async::<String>(&mut connection).await.ok()
    }

    /// Until every live node says `cluster_state:ok` and every live replica is in sync with its
    /// master (so a master killed next has a replica to fail over to).
    pub async fn wait_ok(&self) {
        let deadline = Instant::now() + WAIT * 3;
        loop {
            let mut ok = true;
            for node in self.nodes.iter().filter(|node| node.child.is_some()) {
                let cluster = Self::info(node, "CLUSTER").await.unwrap_or_default();
                let replication = Self::info(node, "INFO").await.unwrap_or_default();
                ok &= cluster.contains("cluster_state:ok");
                if replication.contains("role:slave") {
                    ok &= replication.contains("master_link_status:up");
                }
            }
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle within {:?}",
                WAIT * 3
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn live(&self) -> impl Iterator<Item = &RedisProcess> {
        self.nodes.iter().filter(|node| node.child.is_some())
    }

    /// The port of the master serving `key`'s slot, as the live nodes see it.
    pub async fn master_of(&self, key: &str) -> u16 {
        let node = self.live().next().expect("a live node");
        let mut connection = node.connection().await.expect("a live node answers");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("CLUSTER KEYSLOT");
        let ranges: Vec<(i64, i64, (String, i64))> = {
            let raw: Vec<redis::Value> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut connection)
                .await
                .expect("CLUSTER SLOTS");
            raw.into_iter()
                .map(|range| {
                    let redis::Value::Array(fields) = range else {
                        panic!("a CLUSTER SLOTS range is an array");
                    };
                    let number = |value: &redis::Value| match value {
                        redis::Value::Int(number) => *number,
                        other => panic!("not an integer: {other:?}"),
                    };
                    let redis::Value::Array(master) = &fields[2] else {
                        panic!("a CLUSTER SLOTS master is an array");
                    };
                    let host = match &master[0] {
                        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into(),
                        other => format!("{other:?}"),
                    };
                    (
                        number(&fields[0]),
                        number(&fields[1]),
                        (host, number(&master[1])),
                    )
                })
                .collect()
        };
        let (_, _, (_, port)) = ranges
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}"));
        u16::try_from(port).expect("a port")
    }

    /// The keys matching `pattern` on every master.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for node in self.live() {
            let replication = Self::info(node, "INFO").await.unwrap_or_default();
            if replication.contains("role:master") {
                let mut connection = node.connection().await.expect("a live node answers");
                let found: Vec<String> = redis::cmd("KEYS")
                    .arg(pattern)
                    .query_async(&mut connection)
                    .await
                    .expect("KEYS");
                keys.extend(found);
            }
        }
        keys
    }

    /// SIGKILL to the node on `port`: its data is gone, and its replica takes over after
    /// [`CLUSTER_NODE_TIMEOUT_MS`].
    pub async fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node on that port");
        node.kill().await;
    }

    /// Until the live nodes agree that `port` no longer serves `key` and the cluster is ok again.
    pub async fn wait_failed_over(&self, key: &str, port: u16) {
        let deadline = Instant::now() + WAIT * 3;
        while self.master_of(key).await == port {
            assert!(
                Instant::now() < deadline,
                "no failover within {:?}",
                WAIT * 3
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.wait_ok().await;
    }
}

impl BookingRedis for RedisCluster {
    fn env(&self) -> (&'static str, String) {
        ("REDIS_CLUSTER_NODES", self.seeds())
    }

    async fn exists(&self, key: &str) -> bool {
        let client = redis::cluster::ClusterClient::new(
            self.live().map(RedisProcess::url).collect::<Vec<_>>(),
        )
        .expect("a cluster client");
        let mut connection = client
            .get_async_connection()
            .await
            .expect("the cluster answers");
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<bool>(&mut connection)
            .await
            .expect("EXISTS")
    }

    /// Every master's calendar keys together.
    async fn calendar(&self) -> BTreeMap<String, BTreeSet<usize>> {
        let mut out = BTreeMap::new();
        for node in self.live() {
            let replication = Self::info(node, "INFO").await.unwrap_or_default();
            if replication.contains("role:master") {
                out.extend(node.calendar().await);
            }
        }
        out
    }
}
