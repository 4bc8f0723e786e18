//! Start, stop and kill a real `sentra-edge`, and talk to it as a paired device.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_sentra-edge");

/// How long a daemon may take to start before the test fails (generous: CI is a 2-core box
/// building other crates at the same time).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A store directory with its key and config file, which daemons can be started on and killed.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub key_file: PathBuf,
}

impl Site {
    pub fn new() -> Site {
        Site::with_config("")
    }

    /// A site whose config file has `extra` appended (TOML, inside `[api]` unless it opens a
    /// section). These sites also serve plain HTTP and MQTT (`lan.plain = true`), which most
    /// tests talk to; [`Site::tls_only`] is a real box's setting.
    pub fn with_config(extra: &str) -> Site {
        Site::build(extra, true)
    }

    /// A site like a real box: HTTPS and MQTT over TLS only (`lan.plain = false`).
    pub fn tls_only(extra: &str) -> Site {
        Site::build(extra, false)
    }

    fn build(extra: &str, plain: bool) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = dir.path().join("store.key");
        let out = std::process::Command::new(BIN)
            .arg("keygen")
            .arg(&key_file)
            .output()
            .expect("run keygen");
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("edge.toml");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                "[branch]\nid = \"JKT01\"\nname = \"Bengkel Uji\"\n[store]\ndata_dir = {:?}\nkey_file = {:?}\n[lan]\nplain = {plain}\nadvertise_host = \"127.0.0.1\"\n[mqtt]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n{extra}",
                data.display().to_string(),
                key_file.display().to_string()
            ),
        )
        .expect("write config");
        Site {
            dir,
            config,
            key_file,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("sentra.db")
    }

    /// Run a CLI command against this site's config; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .output()
            .expect("run sentra-edge");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn load_demo_data(&self) {
        let (code, _, err) = self.cli(&["load-demo-data"]);
        assert_eq!(code, 0, "load-demo-data: {err}");
    }

    /// A one-time pairing code for `role`, made by the CLI.
    pub fn pairing_code(&self, role: &str) -> String {
        let (code, out, err) = self.cli(&["pair", "--role", role]);
        assert_eq!(code, 0, "pair: {err}");
        out.split_whitespace()
            .find(|w| w.len() == 9 && w.as_bytes()[4] == b'-')
            .expect("a code in the output")
            .to_owned()
    }

    /// Start a daemon on this site.
    pub async fn start(&self) -> Edge {
        Edge::spawn(&self.config, &[]).await
    }
}

/// A running daemon.
pub struct Edge {
    pub child: Child,
    /// Plain HTTP when the site serves it (`lan.plain`), else the HTTPS URL.
    pub base: String,
    /// The HTTPS URL.
    #[allow(dead_code)]
    pub tls_base: String,
    pub http: reqwest::Client,
    /// Where its MQTT broker listens without TLS (None when `mqtt.enabled = false` or
    /// `lan.plain = false`).
    #[allow(dead_code)]
    pub mqtt: Option<std::net::SocketAddr>,
    /// Where its MQTT broker listens over TLS.
    #[allow(dead_code)]
    pub mqtt_tls: Option<std::net::SocketAddr>,
    /// The certificate it presents, `sha256:<hex>`.
    #[allow(dead_code)]
    pub fingerprint: String,
}

impl Edge {
    pub async fn spawn(config: &Path, env: &[(&str, &str)]) -> Edge {
        let mut cmd = Command::new(BIN);
        cmd.arg("run").arg("--config").arg(config);
        Edge::spawn_command(cmd, env).await
    }

    /// Start `cmd` (a `sentra-edge run`, possibly behind a wrapper such as `ip netns exec`).
    /// Test daemons do not announce themselves over mDNS unless `env` asks for it.
    pub async fn spawn_command(mut cmd: Command, env: &[(&str, &str)]) -> Edge {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd.env("RUST_LOG", "warn");
        cmd.env("SENTRA_EDGE__LAN__MDNS", "false");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sentra-edge");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let (mut mqtt, mut mqtt_tls, mut fingerprint) = (None, None, String::new());
        // The API lines: plain HTTP first when `lan.plain` serves it, HTTPS always last.
        let mut plain_base = None;
        let tls_base = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(addr) = line.strip_prefix("sentra-edge: mqtt listening on ") {
                    mqtt = Some(addr.parse().expect("mqtt address"));
                }
                if let Some(addr) = line.strip_prefix("sentra-edge: mqtt tls listening on ") {
                    mqtt_tls = Some(addr.parse().expect("mqtt tls address"));
                }
                if let Some(rest) = line.strip_prefix("sentra-edge: certificate ") {
                    fingerprint = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                }
                if let Some(url) = line.strip_prefix("sentra-edge: api listening on ") {
                    if url.starts_with("https://") {
                        return url.to_owned();
                    }
                    plain_base = Some(url.to_owned());
                }
            }
            panic!("sentra-edge exited before listening");
        })
        .await
        .expect("sentra-edge started in time");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (base, http) = match plain_base {
            Some(plain) => (plain, http_client()),
            None => (tls_base.clone(), pinned_client(&fingerprint)),
        };
        Edge {
            child,
            base,
            tls_base,
            http,
            mqtt,
            mqtt_tls,
            fingerprint,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGTERM and wait; returns the exit code.
    pub async fn stop(mut self) -> i32 {
        signal(self.pid(), "TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("stopped in time")
            .expect("wait");
        status.code().unwrap_or(-1)
    }

    /// SIGKILL: what a power cut looks like to the process.
    pub async fn kill(mut self) {
        signal(self.pid(), "KILL");
        let _ = self.child.wait().await;
    }

    /// Pair a device of `role` using a code from the CLI of `site`.
    pub async fn pair(&self, site: &Site, role: &str) -> Device {
        let code = site.pairing_code(role);
        let (status, body) = self
            .call(
                None,
                Method::POST,
                "/v1/pair",
                Some(serde_json::json!({"code": code, "device_name": format!("test {role}")})),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "pair: {body}");
        Device {
            token: body["token"].as_str().expect("token").to_owned(),
            id: body["device"]["id"].as_str().expect("id").to_owned(),
            // Empty when the broker is disabled (`mqtt` is null then).
            mqtt: body["mqtt"]["password"].as_str().unwrap_or("").to_owned(),
        }
    }

    /// One request; returns status and JSON body (Null when the body is not JSON).
    pub async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        idem: Option<&str>,
    ) -> (StatusCode, Value) {
        self.call_with(token, method, path, body, idem, &[]).await
    }

    /// [`Self::call`] with extra headers (`Sentra-Staff`, `Sentra-Manager`).
    pub async fn call_with(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        idem: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, dev: &Device, path: &str) -> (StatusCode, Value) {
        self.call(Some(&dev.token), Method::GET, path, None, None)
            .await
    }

    pub async fn post(&self, dev: &Device, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Some(&dev.token), Method::POST, path, Some(body), None)
            .await
    }
}

/// reqwest with rustls needs a crypto provider installed (the appliance uses ring).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// reqwest trusting only the server key `fingerprint` (`sha256:<hex>`), as a paired tablet does.
pub fn pinned_client(fingerprint: &str) -> reqwest::Client {
    let pin =
        sentra_edge::lan::Fingerprint::parse(fingerprint).expect("a sha256:<hex> fingerprint");
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .use_preconfigured_tls(sentra_edge::lan::client_config(pin))
        .build()
        .expect("client")
}

#[derive(Debug, Clone)]
pub struct Device {
    pub token: String,
    #[allow(dead_code)]
    pub id: String,
    /// The MQTT password from the pair answer (the username is `id`).
    #[allow(dead_code)]
    pub mqtt: String,
}

pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Open the site's store directly with its key (as an attacker who has the key would, or a test
/// checking what is on disk). The daemon may be running: WAL allows a second reader.
pub fn open_db(site: &Site) -> rusqlite::Connection {
    let key = std::fs::read_to_string(&site.key_file).expect("key");
    let conn = rusqlite::Connection::open(site.db_path()).expect("open");
    conn.pragma_update(None, "key", format!("x'{}'", key.trim()))
        .expect("key pragma");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn
}
