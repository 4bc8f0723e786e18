//! A running cloud for sync tests: a fresh database, migrated, `serve` on a port of its own, the
//! token commands, enrolled devices that sign their requests, an operator token, and the audit
//! query.

use reqwest::Method;
use sentra_protocol::Event;
use sentra_protocol::auth::public_key_hex;
use sentra_protocol::ed25519_dalek::SigningKey;
use sentra_protocol::sync::SERVER_TIME_HEADER;
use serde_json::{Value, json};

use crate::fixtures::{self, Outbox};
use crate::support::{Server, TestDb, WAIT, migrate, redis_url, run};

pub struct Cloud {
    pub db: TestDb,
    pub server: Server,
    http: reqwest::Client,
    /// An operator API token, made at start.
    pub operator: String,
    /// The photo store (`blobs.url = file://...`): this cloud's own directory.
    pub blobs_dir: tempfile::TempDir,
}

/// An answer: status, JSON body (Null when the body is not JSON), the server-time header.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub server_time_ms: Option<u64>,
}

impl Answer {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

/// An enrolled device: its identity and key, and its outbox.
pub struct Device {
    pub id: String,
    pub key: SigningKey,
    pub outbox: Outbox,
}

impl Device {
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        fixtures::sign(&self.key, &self.id, method, path, body)
    }
}

impl Cloud {
    pub async fn start() -> Cloud {
        Cloud::start_with(&[]).await
    }

    /// [`Cloud::start`] with more environment (later entries win).
    pub async fn start_with(extra_env: &[(&str, &str)]) -> Cloud {
        let db = TestDb::create().await;
        migrate(&db).await;
        Cloud::start_on(db, extra_env).await
    }

    /// [`Cloud::start_with`] on a database the test made and migrated (its `extra_env` may
    /// give serve another URL for it, e.g. with a password).
    pub async fn start_on(db: TestDb, extra_env: &[(&str, &str)]) -> Cloud {
        let redis = redis_url();
        let blobs_dir = tempfile::tempdir().expect("a photo store directory");
        let blobs_url = format!("file://{}", blobs_dir.path().display());
        let mut env = vec![
            ("DATABASE_URL", db.url()),
            ("REDIS_URL", &redis),
            ("SENTRA_CLOUD__BLOBS__URL", &blobs_url),
            // Offline bookings in push tests are for made-up customers; the identity gate
            // has its own tests (`identity.rs`).
            ("SENTRA_CLOUD__IDENTITY__REQUIRED", "false"),
        ];
        env.extend_from_slice(extra_env);
        let server = Server::start(&[], &env).await;
        let mut cloud = Cloud {
            db,
            server,
            blobs_dir,
            http: crate::support::http_client(),
            operator: String::new(),
        };
        cloud.operator = cloud.api_token("ops", "operator").await;
        cloud
    }

    /// Runs a token command against this cloud's database; its one line of stdout.
    async fn token_command(&self, args: &[&str]) -> String {
        let output = run(args, &[("DATABASE_URL", self.db.url())]).await;
        assert!(
            output.status.success(),
            "sentra-cloud {args:?} failed: {}",
            output.stderr
        );
        let lines: Vec<&str> = output.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stdout: {:?}", output.stdout);
        lines[0].to_owned()
    }

    pub async fn enrollment_token(&self, branch: &str) -> String {
        self.token_command(&["enrollment-token", "--branch", branch])
            .await
    }

    pub async fn api_token(&self, name: &str, role: &str) -> String {
        self.token_command(&["api-token", "--name", name, "--role", role])
            .await
    }

    /// Sends a request with `headers`; the answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Answer {
        let url = format!("http://{}{path}", self.server.addr);
        let mut request = self.http.request(method.clone(), &url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {WAIT:?}"))
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        let status = response.status().as_u16();
        let server_time_ms = response
            .headers()
            .get(SERVER_TIME_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let bytes = response.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            server_time_ms,
        }
    }

    pub async fn enroll_with(&self, token: &str, key: &SigningKey) -> Answer {
        let body = json!({"token": token, "public_key": public_key_hex(key), "hostname": "edge-test", "version": "0.1.0"});
        self.call(
            Method::POST,
            "/v1/enroll",
            Some(body.to_string().into_bytes()),
            &[],
        )
        .await
    }

    /// A new device enrolled for `branch` (created if missing).
    pub async fn enroll(&self, branch: &str) -> Device {
        let token = self.enrollment_token(branch).await;
        let key = fixtures::new_key();
        let answer = self.enroll_with(&token, &key).await;
        assert_eq!(answer.status, 200, "enrol: {answer:?}");
        let id = answer.body["device_id"]
            .as_str()
            .expect("a device id")
            .to_owned();
        assert_eq!(answer.body["branch_id"], branch);
        Device {
            outbox: Outbox::new(&id),
            id,
            key,
        }
    }

    /// A signed request from `device`.
    pub async fn signed(
        &self,
        device: &Device,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let headers = device.sign(method.as_str(), path, body.as_deref().unwrap_or_default());
        self.call(method, path, body, &headers).await
    }

    pub async fn push(&self, device: &Device, events: &[Event]) -> Answer {
        self.signed(
            device,
            Method::POST,
            "/v1/sync/push",
            Some(fixtures::batch(events)),
        )
        .await
    }

    pub async fn pull(&self, device: &Device, cursor: u64, limit: Option<u32>) -> Answer {
        let path = match limit {
            Some(limit) => format!("/v1/sync/pull?cursor={cursor}&limit={limit}"),
            None => format!("/v1/sync/pull?cursor={cursor}"),
        };
        self.signed(device, Method::GET, &path, None).await
    }

    /// A request with `Authorization: Bearer <token>`.
    pub async fn bearer(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|body| body.to_string().into_bytes());
        self.call(
            method,
            path,
            body,
            &[("authorization", format!("Bearer {token}"))],
        )
        .await
    }

    /// One number from SQL.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let mut connection = self.db.connect().await;
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    /// The audit: every seq from 1 to the device's cursor is in the record exactly once, applied
    /// (`events`) or parked (`parked_events`), and nothing lies beyond the cursor. Returns the
    /// cursor.
    pub async fn audit(&self, device: &Device) -> i64 {
        let id = &device.id;
        let cursor = self
            .scalar(&format!(
                "SELECT last_seq FROM device_cursors WHERE device_id = '{id}'"
            ))
            .await;
        let wrong = self
            .scalar(&format!(
                "SELECT count(*) FROM (
                     SELECT s.seq, count(r.seq) AS copies
                     FROM generate_series(1, {cursor}) AS s(seq)
                     LEFT JOIN (SELECT seq FROM events WHERE device_id = '{id}'
                                UNION ALL
                                SELECT seq FROM parked_events WHERE device_id = '{id}') r ON r.seq = s.seq
                     GROUP BY s.seq
                     HAVING count(r.seq) <> 1
                 ) AS not_once"
            ))
            .await;
        assert_eq!(
            wrong, 0,
            "device {id}: seqs up to {cursor} not recorded exactly once"
        );
        let beyond = self
            .scalar(&format!(
                "SELECT (SELECT count(*) FROM events WHERE device_id = '{id}' AND seq > {cursor})
                      + (SELECT count(*) FROM parked_events WHERE device_id = '{id}' AND seq > {cursor})"
            ))
            .await;
        assert_eq!(beyond, 0, "device {id}: events beyond the cursor {cursor}");
        cursor
    }
}
