//! TLS to every backing service, against servers of the test's own that speak nothing else: a
//! PostgreSQL cluster (`hostssl` only in pg_hba.conf), a `redis-server` with only a TLS port and
//! a RabbitMQ node with only an `amqps` listener, all with certificates of a CA the test makes
//! (rcgen) for `localhost` and 127.0.0.1. A second CA, which signed nothing, is the wrong one.
//!
//! The machine's own PostgreSQL, Redis and RabbitMQ are not touched. These need the server
//! binaries (`/usr/lib/postgresql/*/bin`, `redis-server` with TLS, `rabbitmq-server`), which
//! `bash scripts/test.sh` installs; run as root, PostgreSQL is run as the `postgres` user.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::support::{Server, WAIT, closed_port, run};

/// RabbitMQ boots an Erlang VM: far slower to answer than the others on a busy machine.
const RABBITMQ_START: Duration = Duration::from_secs(120);
/// A background step (publish, send) is waited for this long at most; never asserted on.
const SETTLE: Duration = Duration::from_secs(30);
const REDIS_PASSWORD: &str = "redis-hunter7";
const GATEWAY_TOKEN: &str = "sandbox-token-for-tls";

/// The test's CA, a server certificate it signed, and a CA that signed nothing.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Pki {
    fn make() -> Pki {
        let dir = tempfile::tempdir().expect("a temp dir");
        // Other users (postgres) read the certificates and reach the cluster's directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the temp dir");
        let ca = ca("Sentra test CA");
        let wrong = ca_certificate("Some other CA");
        let server_key = rcgen::KeyPair::generate().expect("a key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server names");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let server = params
            .signed_by(&server_key, &ca.1)
            .expect("sign the server certificate");
        let pki = Pki {
            dir,
            ca_pem: ca.0.clone(),
        };
        for (name, text, mode) in [
            ("ca.pem", ca.0.as_str(), 0o644),
            ("wrong-ca.pem", wrong.as_str(), 0o644),
            ("server.pem", &server.pem(), 0o644),
            ("server.key", &server_key.serialize_pem(), 0o600),
        ] {
            let path = pki.path(name);
            std::fs::write(&path, text).expect("write a certificate file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .expect("chmod a certificate file");
        }
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn text(&self, name: &str) -> String {
        self.path(name).to_str().expect("utf-8 path").to_owned()
    }
}

/// A CA certificate (PEM) and the issuer that signs with it.
fn ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let certificate = params.self_signed(&key).expect("self-sign the CA");
    (certificate.pem(), rcgen::Issuer::new(params, key))
}

fn ca_certificate(name: &str) -> String {
    ca(name).0
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// The newest PostgreSQL server's bin directory.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server under /usr/lib/postgresql (bash scripts/test.sh installs it)")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let version = versions.last().expect("a PostgreSQL server version");
    PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"))
}

/// A PostgreSQL command, as the `postgres` user when we are root (initdb refuses root).
fn pg_command(program: &str) -> std::process::Command {
    let program = pg_bin().join(program);
    let mut command = if is_root() {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        std::process::Command::new(program)
    };
    command.env("LC_ALL", "C.UTF-8");
    command
}

fn check(command: &mut std::process::Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PostgreSQL cluster that takes TLS connections only, stopped when dropped.
struct Postgres {
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Postgres {
    fn start(pki: &Pki) -> Postgres {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the cluster's dir");
        // The server reads its key as its own user, and refuses one others can read.
        for name in ["server.pem", "server.key"] {
            std::fs::copy(pki.path(name), dir.path().join(name)).expect("copy the server's files");
        }
        if is_root() {
            check(
                std::process::Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(dir.path()),
                "chown the cluster's dir to postgres",
            );
        }
        let data = dir.path().join("data");
        check(
            pg_command("initdb")
                .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
                .arg(&data),
            "initdb",
        );
        let port = closed_port();
        let conf = format!(
            "port = {port}\n\
             listen_addresses = '127.0.0.1,127.0.0.2'\n\
             unix_socket_directories = '{dir}'\n\
             ssl = on\n\
             ssl_cert_file = '{dir}/server.pem'\n\
             ssl_key_file = '{dir}/server.key'\n\
             fsync = off\n\
             shared_buffers = 16MB\n\
             max_connections = 40\n",
            dir = dir.path().display()
        );
        append(&data.join("postgresql.conf"), &conf);
        // TLS or nothing: no `host` line, no local socket line.
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.0/8 trust\n",
        )
        .expect("write pg_hba.conf");
        check(
            pg_command("pg_ctl")
                .args(["-w", "-t", "60", "-l"])
                .arg(dir.path().join("log"))
                .arg("-D")
                .arg(&data)
                .arg("start"),
            "pg_ctl start",
        );
        Postgres {
            data,
            port,
            _dir: dir,
        }
    }

    /// A URL for database `db` on `host`, with `params` after `?`.
    fn url(&self, host: &str, db: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/{db}?{params}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for appending");
    file.write_all(text.as_bytes()).expect("append");
}

/// `redis-server` listening on a TLS port only, with a password; killed when dropped.
struct RedisTls {
    port: u16,
    _child: tokio::process::Child,
}

impl RedisTls {
    async fn start(pki: &Pki) -> RedisTls {
        let port = closed_port();
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD])
            .args(["--tls-cert-file", &pki.text("server.pem")])
            .args(["--tls-key-file", &pki.text("server.key")])
            .args(["--tls-ca-cert-file", &pki.text("ca.pem")])
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server (bash scripts/test.sh installs it)");
        let redis = RedisTls {
            port,
            _child: child,
        };
        let deadline = Instant::now() + WAIT;
        while redis.keys(&pki.ca_pem, "*").await.is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on TLS port {port} (does it have TLS?)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        redis
    }

    fn url(&self) -> String {
        format!("rediss://:{REDIS_PASSWORD}@127.0.0.1:{}", self.port)
    }

    /// `KEYS pattern` over TLS, trusting `ca_pem` only.
    async fn keys(&self, ca_pem: &str, pattern: &str) -> redis::RedisResult<Vec<String>> {
        let client = redis::Client::build_with_tls(
            self.url(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca_pem.as_bytes().to_vec()),
            },
        )?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut connection)
            .await
    }
}

/// A RabbitMQ node of the test's own (its own name, ports, data, logs, config and no plugins)
/// with an `amqps` listener only; SIGTERM (a clean stop) when dropped.
struct RabbitTls {
    port: u16,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl RabbitTls {
    fn spawn(pki: &Pki) -> RabbitTls {
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = closed_port();
        let conf = format!(
            "listeners.tcp = none\n\
             listeners.ssl.default = 127.0.0.1:{port}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n",
            pki.text("ca.pem"),
            pki.text("server.pem"),
            pki.text("server.key")
        );
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write a RabbitMQ file");
            path
        };
        let config = file("rabbitmq.conf", &conf);
        let plugins = file("enabled_plugins", "[].\n");
        let env_file = file("rabbitmq-env.conf", "");
        let node = format!("sentra-tls-{}-{port}@localhost", std::process::id());
        let child = std::process::Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_DIST_PORT", closed_port().to_string())
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("RABBITMQ_CONFIG_FILE", &config)
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                dir.path().join("advanced.config"),
            )
            .env("RABBITMQ_CONF_ENV_FILE", &env_file)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", dir.path().join("plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.path().join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.path().join("log"))
            .env("RABBITMQ_PID_FILE", dir.path().join("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rabbitmq-server (bash scripts/test.sh installs it)");
        RabbitTls { port, child, dir }
    }

    fn url(&self) -> String {
        format!("amqps://guest:guest@localhost:{}/%2f", self.port)
    }

    /// Waits until an amqps connection trusting `ca_pem` opens.
    async fn wait_ready(&mut self, ca_pem: &str) {
        let deadline = Instant::now() + RABBITMQ_START;
        loop {
            let tls = lapin::tcp::OwnedTLSConfig {
                identity: None,
                cert_chain: Some(ca_pem.to_owned()),
            };
            let connected = match lapin::DefaultConnectionBuilder::new() {
                Ok(builder) => builder
                    .with_uri_str(self.url())
                    .with_tls_config(tls)
                    .connect()
                    .await
                    .ok(),
                Err(_) => None,
            };
            if let Some(connection) = connected {
                let _ = connection.close(200, "ready".into()).await;
                return;
            }
            let exited = self.child.try_wait().ok().flatten();
            assert!(
                exited.is_none(),
                "rabbitmq-server exited ({exited:?}); its log is under {}",
                self.dir.path().join("log").display()
            );
            assert!(
                Instant::now() < deadline,
                "RabbitMQ's amqps listener on {} did not open within {RABBITMQ_START:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for RabbitTls {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates database `name` over verify-full (the test's own connection is TLS too).
async fn create_database(pg: &Postgres, pki: &Pki, name: &str) {
    let url = pg.url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={}", pki.text("ca.pem")),
    );
    let mut admin = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("the test's own verify-full connection: {error}"));
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create the database");
    let _ = admin.close().await;
}

#[tokio::test]
async fn postgres_over_verify_full_and_nothing_else() {
    let pki = Pki::make();
    let pg = Postgres::start(&pki);
    create_database(&pg, &pki, "sentra").await;
    let ca = pki.text("ca.pem");
    let verify_full = pg.url(
        "localhost",
        "sentra",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );

    let migrated = run(&["migrate"], &[("DATABASE_URL", &verify_full)]).await;
    assert!(migrated.status.success(), "{}", migrated.stderr);
    let token = run(
        &["enrollment-token", "--branch", "JKT01"],
        &[("DATABASE_URL", &verify_full)],
    )
    .await;
    assert!(token.status.success(), "{}", token.stderr);

    // Refused, each with a reason an operator can act on, and never retried in plaintext.
    let wrong_ca = pg.url(
        "localhost",
        "sentra",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            pki.text("wrong-ca.pem")
        ),
    );
    // 127.0.0.2 is this server too, but not a name on its certificate.
    let wrong_name = pg.url(
        "127.0.0.2",
        "sentra",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let cases = [
        (wrong_ca.as_str(), "UnknownIssuer"),
        (wrong_name.as_str(), "not valid for name \"127.0.0.2\""),
    ];
    for (url, reason) in cases {
        let refused = run(&["migrate"], &[("DATABASE_URL", url)]).await;
        assert_eq!(refused.status.code(), Some(1), "{url}: {}", refused.stderr);
        assert!(
            refused.stderr.contains(reason) && refused.stderr.contains("invalid peer certificate"),
            "{url}: {}",
            refused.stderr
        );
        assert!(
            !refused.stderr.contains("pg_hba.conf"),
            "{}",
            refused.stderr
        );
    }
    // The name check is what verify-full adds: verify-ca accepts the same connection.
    let verify_ca = pg.url(
        "127.0.0.2",
        "sentra",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    );
    let accepted = run(&["migrate"], &[("DATABASE_URL", &verify_ca)]).await;
    assert!(accepted.status.success(), "{}", accepted.stderr);
    // Plaintext is what the server refuses (its pg_hba.conf has hostssl lines only).
    let plain = run(
        &["migrate"],
        &[(
            "DATABASE_URL",
            &pg.url("localhost", "sentra", "sslmode=disable"),
        )],
    )
    .await;
    assert_eq!(plain.status.code(), Some(1), "{}", plain.stderr);
    assert!(plain.stderr.contains("no encryption"), "{}", plain.stderr);

    // What the cloud refuses before connecting at all: exit 2, every problem named.
    let missing = pg.url(
        "localhost",
        "sentra",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    );
    let ignored = pg.url(
        "localhost",
        "sentra",
        &format!("sslmode=require&sslrootcert={ca}"),
    );
    for (url, reason) in [
        (
            missing.as_str(),
            "sslrootcert /nonexistent/ca.pem: cannot read it",
        ),
        (ignored.as_str(), "add sslmode=verify-full"),
    ] {
        let refused = run(&["migrate"], &[("DATABASE_URL", url)]).await;
        assert_eq!(refused.status.code(), Some(2), "{url}: {}", refused.stderr);
        assert!(refused.stderr.contains(reason), "{url}: {}", refused.stderr);
    }
}

#[tokio::test]
async fn a_hold_and_its_notification_go_over_tls_to_all_three() {
    let pki = Pki::make();
    // RabbitMQ first: it is the slow one, and boots while the others start.
    let mut rabbit = RabbitTls::spawn(&pki);
    let pg = Postgres::start(&pki);
    let redis = RedisTls::start(&pki).await;
    create_database(&pg, &pki, "sentra").await;
    rabbit.wait_ready(&pki.ca_pem).await;

    let ca = pki.text("ca.pem");
    let db_url = pg.url(
        "localhost",
        "sentra",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let queue = format!("sentra_tls.{}", std::process::id());
    let amqp = rabbit.url();
    let redis_url = redis.url();
    let env = [
        ("DATABASE_URL", db_url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("SENTRA_CLOUD__REDIS__CA_FILE", ca.as_str()),
        ("SENTRA_CLOUD__NOTIFY__AMQP_URL", amqp.as_str()),
        ("SENTRA_CLOUD__NOTIFY__AMQP_CA_FILE", ca.as_str()),
        ("SENTRA_CLOUD__NOTIFY__QUEUE", queue.as_str()),
        ("SENTRA_CLOUD__NOTIFY__GATEWAY_URL", "sandbox"),
        ("SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN", GATEWAY_TOKEN),
        ("SENTRA_CLOUD__NOTIFY__PUBLISH_INTERVAL_MS", "50"),
        ("SENTRA_CLOUD__NOTIFY__RETRY_BASE_MS", "50"),
        ("SENTRA_CLOUD__IDENTITY__REQUIRED", "false"),
        ("RUST_LOG", "info"),
    ];
    // `env` is a Copy array: each call's future gets its own.
    let one_shot = move |args: &'static [&'static str]| async move {
        let output = run(args, &env).await;
        assert!(output.status.success(), "{args:?}: {}", output.stderr);
        output.stdout.trim().to_owned()
    };
    one_shot(&["migrate"]).await;
    one_shot(&["enrollment-token", "--branch", "JKT01"]).await;
    let operator = one_shot(&["api-token", "--name", "ops", "--role", "operator"]).await;
    let portal = one_shot(&["api-token", "--name", "portal", "--role", "portal"]).await;

    let server = Server::start(&[], &env).await;
    let ready = server.wait_for("/readyz", 200).await;
    assert_eq!(ready["status"], "ok", "{ready}");
    let http = crate::support::http_client();
    let call = |token: &str, method: Method, path: &str, body: serde_json::Value| {
        http.request(method, format!("http://{}{path}", server.addr))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let put = call(
        &operator,
        Method::PUT,
        "/v1/branches/JKT01/assets/a1",
        json!({"id": "a1", "sku": "AVZ", "plate": "B 1 XYZ", "name": "Avanza"}),
    )
    .await
    .expect("put an asset");
    assert_eq!(put.status(), 200);
    let mut db = PgConnection::connect(&db_url).await.expect("verify-full");
    sqlx::query(
        "INSERT INTO record_fields (branch_id, entity, entity_id, field, value, hlc, origin)
         VALUES ('JKT01', 'customer', 'C-1', 'phone', '\"0812-3456-789\"', '0', 'cloud')",
    )
    .execute(&mut db)
    .await
    .expect("a customer with a phone");

    // A hold goes through the calendar in Redis (rediss) and the record (verify-full).
    let hold = call(
        &portal,
        Method::POST,
        "/v1/bookings",
        json!({"branch": "JKT01", "asset_id": "a1", "sku": "AVZ", "from": "2027-05-01", "to": "2027-05-02", "customer": "C-1", "tier": "gold"}),
    )
    .await
    .expect("hold");
    assert_eq!(hold.status(), 201);
    let id = hold.json::<serde_json::Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let months = redis
        .keys(&pki.ca_pem, "avail:*")
        .await
        .expect("the calendar over TLS");
    assert_eq!(months.len(), 1, "{months:?}");
    let confirmed = call(
        &portal,
        Method::POST,
        &format!("/v1/bookings/{id}/confirm"),
        json!({"payment_ref": "pay-1"}),
    )
    .await
    .expect("confirm");
    assert_eq!(confirmed.status(), 200);

    // Its confirmation is published to RabbitMQ (amqps), consumed and sent to the sandbox.
    let deadline = Instant::now() + SETTLE;
    loop {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM notifications WHERE cause = $1 AND kind = 'booking_confirmed'",
        )
        .bind(format!("booking:{id}"))
        .fetch_optional(&mut db)
        .await
        .expect("notification state");
        if state.as_deref() == Some("SENT") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{state:?}; serve log:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, _, log) = server.terminate().await;
    assert!(status.success(), "{log}");
    let tls_line = log
        .lines()
        .find(|line| line.contains("backing services"))
        .unwrap_or_else(|| panic!("no backing services line in:\n{log}"));
    for part in [
        "postgres_sslmode=\"verify-full\"",
        &format!("redis=tls (CA {ca})"),
        "rabbitmq=tls (CA",
    ] {
        assert!(tls_line.contains(part), "{part} not in {tls_line}");
    }
    assert!(!log.contains(REDIS_PASSWORD), "{log}");

    // The wrong CA: each service refuses, with the reason.
    let wrong = pki.text("wrong-ca.pem");
    let mut wrong_env = env.to_vec();
    wrong_env.retain(|(name, _)| !name.ends_with("CA_FILE"));
    wrong_env.push(("SENTRA_CLOUD__REDIS__CA_FILE", &wrong));
    wrong_env.push(("SENTRA_CLOUD__NOTIFY__AMQP_CA_FILE", &wrong));
    for args in [&["calendar", "rebuild"][..], &["notify", "publish-due"][..]] {
        let refused = run(args, &wrong_env).await;
        assert_eq!(
            refused.status.code(),
            Some(1),
            "{args:?}: {}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains("UnknownIssuer"),
            "{args:?}: {}",
            refused.stderr
        );
        assert!(
            !refused.stderr.contains(REDIS_PASSWORD),
            "{}",
            refused.stderr
        );
    }
}
