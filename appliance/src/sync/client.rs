//! The signed HTTP client to `sentra-cloud`: every request carries the device's ed25519
//! signature (see `sentra_protocol::auth`) with a timestamp corrected by the clock skew measured
//! from the server's time in every answer. rustls with the ring provider; the fleet's CA can be
//! pinned (`sync.ca_file`).

use std::time::Duration;

use rand::Rng as _;
use reqwest::{Method, StatusCode};
use sentra_protocol::Event;
use sentra_protocol::auth::{
    self, DEVICE_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use sentra_protocol::ed25519_dalek::SigningKey;
use sentra_protocol::sync::{
    CalendarSnapshot, EnrollRequest, EnrollResponse, PROTOCOL_VERSION, PullPage, PushAck,
    PushBatch, SERVER_TIME_HEADER, SequenceGap,
};

use crate::config::SyncConfig;
use crate::store::CloudClock;
use crate::store::sync::Identity;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cloud {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("cloud refused ({status}): {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cloud answered {status} with something that is not the sync protocol: {detail}")]
    Protocol { status: u16, detail: String },
    #[error("cloud URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("sync.ca_file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error(
        "this box is not enrolled; run `sentra-edge-admin enroll` and scan the enrolment sheet at the prompt"
    )]
    NotEnrolled,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl SyncError {
    /// Worth trying again soon: the link, the cloud's load, or its restart.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Unreachable { .. } => true,
            SyncError::Refused { status, code, .. } => {
                *status >= 500 || *status == 429 || *status == 408 || code == "clock_skew"
            }
            SyncError::Protocol { status, .. } => *status >= 500,
            SyncError::BadUrl { .. }
            | SyncError::Ca { .. }
            | SyncError::NotEnrolled
            | SyncError::Store(_) => false,
        }
    }

    /// A short label for metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Unreachable { .. } => "unreachable",
            SyncError::Refused { status: 401, .. } => "unauthorized",
            SyncError::Refused { .. } => "refused",
            SyncError::Protocol { .. } => "protocol",
            SyncError::BadUrl { .. } | SyncError::Ca { .. } => "config",
            SyncError::NotEnrolled => "not_enrolled",
            SyncError::Store(_) => "store",
        }
    }
}

/// The outcome of one push.
#[derive(Debug)]
pub enum PushOutcome {
    Ack(PushAck),
    /// The cloud expects this sequence number next.
    Gap(u64),
    /// The cloud holds other events from `fork_seq` on (this store was restored from a backup):
    /// ours from there are to be renumbered to start at `expected`.
    Fork {
        fork_seq: u64,
        expected: u64,
    },
}

/// Check a cloud URL: https, or http on this machine (or when allowed for a lab).
pub fn check_url(url: &str, allow_plain_http: bool) -> Result<String, SyncError> {
    let bad = |reason: &str| SyncError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let loopback = matches!(
        parsed.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    );
    match parsed.scheme() {
        "https" => {}
        "http" if loopback || allow_plain_http => {}
        "http" => {
            return Err(bad(
                "plain http would send the branch's data in clear; use https (or sync.allow_plain_http = true in a lab)",
            ));
        }
        _ => return Err(bad("expected an https:// URL")),
    }
    Ok(url.trim_end_matches('/').to_owned())
}

pub fn http_client(cfg: &SyncConfig) -> Result<reqwest::Client, SyncError> {
    // One process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_millis(cfg.request_timeout_ms))
        .connect_timeout(Duration::from_millis(cfg.request_timeout_ms.min(10_000)))
        .user_agent(concat!("sentra-edge/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &cfg.ca_file {
        let ca_err = |reason: String| SyncError::Ca {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no certificate in the file".into()));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| SyncError::Ca {
        path: "(tls)".into(),
        reason: e.to_string(),
    })
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Read the cloud's error body, whatever shape it has.
pub(crate) fn refused(status: StatusCode, body: &[u8]) -> SyncError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    SyncError::Refused {
        status: status.as_u16(),
        code: v["error"]["code"].as_str().unwrap_or("unknown").to_owned(),
        message: v["error"]["message"].as_str().map_or_else(
            || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            str::to_owned,
        ),
    }
}

fn parse<T: serde::de::DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, SyncError> {
    serde_json::from_slice(body).map_err(|e| SyncError::Protocol {
        status: status.as_u16(),
        detail: e.to_string(),
    })
}

/// Trade a one-time token for this box's identity (the successor of `replaces`, if named). Not
/// signed: the box has no identity yet.
pub async fn enroll(
    cfg: &SyncConfig,
    cloud_url: &str,
    token: &str,
    key: &SigningKey,
    hostname: &str,
    replaces: Option<&str>,
) -> Result<EnrollResponse, SyncError> {
    let base = check_url(cloud_url, cfg.allow_plain_http)?;
    let http = http_client(cfg)?;
    let req = EnrollRequest {
        token: token.to_owned(),
        public_key: auth::public_key_hex(key),
        hostname: hostname.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        replaces: replaces.map(str::to_owned),
    };
    let url = format!("{base}/v1/enroll");
    let resp = http
        .post(&url)
        .json(&req)
        .send()
        .await
        .map_err(|e| SyncError::Unreachable {
            url: url.clone(),
            detail: error_chain(&e),
        })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| SyncError::Unreachable {
        url,
        detail: error_chain(&e),
    })?;
    if !status.is_success() {
        return Err(refused(status, &body));
    }
    parse(status, &body)
}

/// reqwest's Display hides the cause ("error sending request"); the chain says "connection refused".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A client for one enrolled identity.
#[derive(Debug, Clone)]
pub struct CloudClient {
    http: reqwest::Client,
    base: String,
    device_id: String,
    key: SigningKey,
    clock: CloudClock,
}

impl CloudClient {
    pub fn new(
        cfg: &SyncConfig,
        identity: &Identity,
        clock: CloudClock,
    ) -> Result<Self, SyncError> {
        Ok(Self {
            http: http_client(cfg)?,
            base: check_url(&identity.cloud_url, cfg.allow_plain_http)?,
            device_id: identity.device_id.clone(),
            key: identity.signing_key.clone(),
            clock,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send one signed request; a `clock_skew` refusal is retried once with the corrected clock.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, bytes::Bytes), SyncError> {
        self.send_with(method, path_and_query, body, None).await
    }

    /// [`Self::send`] with an `Idempotency-Key` (not signed: it only names a retry).
    async fn send_with(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, bytes::Bytes), SyncError> {
        let mut retried = false;
        loop {
            let (status, bytes) = self
                .send_once(
                    method.clone(),
                    path_and_query,
                    body.clone(),
                    idempotency_key,
                )
                .await?;
            if status == StatusCode::UNAUTHORIZED
                && !retried
                && let SyncError::Refused { code, .. } = refused(status, &bytes)
                && code == "clock_skew"
            {
                retried = true;
                continue;
            }
            return Ok((status, bytes));
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, bytes::Bytes), SyncError> {
        let url = format!("{}{path_and_query}", self.base);
        let extra: Vec<(&str, String)> = idempotency_key
            .map(|key| ("idempotency-key", key.to_owned()))
            .into_iter()
            .collect();
        let resp = self.request(method, path_and_query, body, &extra).await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| SyncError::Unreachable {
            url: url.clone(),
            detail: error_chain(&e),
        })?;
        Ok((status, bytes))
    }

    /// One signed request with `extra` headers; the answer's body is left to the caller (the
    /// updater streams artifacts to disk).
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        extra: &[(&str, String)],
    ) -> Result<reqwest::Response, SyncError> {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = hex::encode(nonce);
        let sent = now_ms();
        let timestamp = u64::try_from(sent + self.clock.offset_ms()).unwrap_or(0);
        let h = auth::sign(
            &self.key,
            &self.device_id,
            method.as_str(),
            path_and_query,
            timestamp,
            &nonce,
            &body,
        );
        let url = format!("{}{path_and_query}", self.base);
        let unreachable = |e: reqwest::Error| SyncError::Unreachable {
            url: url.clone(),
            detail: error_chain(&e),
        };
        let mut builder = self
            .http
            .request(method, &url)
            .header(DEVICE_HEADER, &h.device)
            .header(TIMESTAMP_HEADER, h.timestamp_ms.to_string())
            .header(NONCE_HEADER, &h.nonce)
            .header(SIGNATURE_HEADER, &h.signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in extra {
            builder = builder.header(*name, value);
        }
        let resp = builder.body(body).send().await.map_err(unreachable)?;
        let received = now_ms();
        if let Some(server) = resp
            .headers()
            .get(SERVER_TIME_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
        {
            // The server read its clock somewhere in the round trip: assume the middle.
            self.clock
                .set_offset_ms(server.saturating_sub(sent.saturating_add(received) / 2));
        }
        Ok(resp)
    }

    pub async fn push(&self, events: Vec<Event>) -> Result<PushOutcome, SyncError> {
        let batch = PushBatch {
            protocol: PROTOCOL_VERSION,
            events,
        };
        let body = serde_json::to_vec(&batch).expect("a push batch always serialises");
        let (status, bytes) = self.send(Method::POST, "/v1/sync/push", body).await?;
        match status {
            s if s.is_success() => Ok(PushOutcome::Ack(parse(s, &bytes)?)),
            StatusCode::CONFLICT => {
                let gap: Result<SequenceGap, _> = parse(status, &bytes);
                match gap {
                    Ok(SequenceGap {
                        expected_seq,
                        fork_seq: Some(fork_seq),
                    }) => Ok(PushOutcome::Fork {
                        fork_seq,
                        expected: expected_seq,
                    }),
                    Ok(g) => Ok(PushOutcome::Gap(g.expected_seq)),
                    Err(_) => Err(refused(status, &bytes)),
                }
            }
            s => Err(refused(s, &bytes)),
        }
    }

    /// `POST /v1/devices/heartbeat`: the box's state; the cloud's answer (what to install).
    pub async fn heartbeat(
        &self,
        beat: &sentra_protocol::fleet::Heartbeat,
    ) -> Result<sentra_protocol::fleet::HeartbeatAnswer, SyncError> {
        let body = serde_json::to_vec(beat).expect("a heartbeat always serialises");
        let (status, bytes) = self
            .send(Method::POST, "/v1/devices/heartbeat", body)
            .await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        parse(status, &bytes)
    }

    pub async fn pull(&self, cursor: u64, limit: u32) -> Result<PullPage, SyncError> {
        let (status, bytes) = self
            .send(
                Method::GET,
                &format!("/v1/sync/pull?cursor={cursor}&limit={limit}"),
                Vec::new(),
            )
            .await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        parse(status, &bytes)
    }
}

/// The cloud's answer to a question that may be refused with a reason worth showing (a booking:
/// `409 taken` with its waitlist offer): the status and the JSON body, whatever they are.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl CloudClient {
    /// `POST /v1/bookings` as this device, with `idempotency_key`: a 201 hold, or the refusal.
    /// Transport failures are errors; every HTTP answer is an [`Answer`].
    pub async fn hold(
        &self,
        body: &sentra_protocol::booking::HoldBody,
        idempotency_key: &str,
    ) -> Result<Answer, SyncError> {
        let body = serde_json::to_vec(body).expect("a hold body (strings only) always serialises");
        let (status, bytes) = self
            .send_with(Method::POST, "/v1/bookings", body, Some(idempotency_key))
            .await?;
        Ok(Answer {
            status: status.as_u16(),
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        })
    }

    /// A booking request forwarded for the counter (`confirm`, `cancel`, `complete`, the
    /// waitlist): any method and path, as this device. Transport failures are errors; every
    /// HTTP answer is an [`Answer`].
    pub async fn forward<B: serde::Serialize + Sync + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, SyncError> {
        let body = body.map_or_else(Vec::new, |body| {
            serde_json::to_vec(body).expect("a protocol request body always serialises")
        });
        let (status, bytes) = self.send_with(method, path, body, None).await?;
        Ok(Answer {
            status: status.as_u16(),
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        })
    }

    /// `GET /v1/availability?sku=&from=&to=`.
    pub async fn availability(
        &self,
        sku: &str,
        from: &str,
        to: &str,
    ) -> Result<serde_json::Value, SyncError> {
        let mut query = reqwest::Url::parse("http://x/v1/availability").expect("a fixed URL");
        query
            .query_pairs_mut()
            .append_pair("sku", sku)
            .append_pair("from", from)
            .append_pair("to", to);
        let path = format!("{}?{}", query.path(), query.query().unwrap_or_default());
        let (status, bytes) = self.send(Method::GET, &path, Vec::new()).await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        parse(status, &bytes)
    }

    /// `GET /v1/sync/successor`: one page of one section of the branch's open state, for a box
    /// enrolled to replace another.
    pub async fn successor_page(
        &self,
        section: sentra_protocol::successor::Section,
        after: Option<&str>,
        limit: u32,
    ) -> Result<sentra_protocol::successor::SuccessorPage, SyncError> {
        let mut path = format!(
            "/v1/sync/successor?section={}&limit={limit}",
            section.as_str()
        );
        if let Some(after) = after {
            path.push_str("&after=");
            path.push_str(&percent_encode(after));
        }
        let (status, bytes) = self.send(Method::GET, &path, Vec::new()).await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        parse(status, &bytes)
    }

    /// `GET /v1/sync/calendar`: the live bookings of the branch's assets.
    pub async fn calendar(&self) -> Result<CalendarSnapshot, SyncError> {
        let (status, bytes) = self
            .send(Method::GET, "/v1/sync/calendar", Vec::new())
            .await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        parse(status, &bytes)
    }
}

/// The cloud's answer to `POST /v1/blobs/{sha256}/uploads`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum UploadState {
    /// The cloud has the photo.
    Stored { size: u64 },
    /// Send the parts it does not list, then complete.
    Uploading {
        upload_id: String,
        parts: Vec<UploadedPart>,
    },
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct UploadedPart {
    pub n: u32,
    pub size: u64,
}

impl CloudClient {
    /// `POST /v1/blobs/{sha256}/uploads`: start or resume a photo's upload.
    pub async fn blob_start(&self, digest: &str, size: u64) -> Result<UploadState, SyncError> {
        let body = serde_json::to_vec(&serde_json::json!({ "size": size }))
            .expect("a JSON value always serialises");
        let (status, bytes) = self
            .send(Method::POST, &format!("/v1/blobs/{digest}/uploads"), body)
            .await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        parse(status, &bytes)
    }

    /// `PUT /v1/blobs/{sha256}/uploads/{id}/parts/{n}`: one part's bytes (signed like any body).
    pub async fn blob_part(
        &self,
        digest: &str,
        upload_id: &str,
        n: u32,
        data: Vec<u8>,
    ) -> Result<(), SyncError> {
        let (status, bytes) = self
            .send(
                Method::PUT,
                &format!("/v1/blobs/{digest}/uploads/{upload_id}/parts/{n}"),
                data,
            )
            .await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        Ok(())
    }

    /// `POST /v1/backups`: tell the cloud of a backup before uploading its bytes (recording one
    /// again is answered the same).
    pub async fn record_backup(
        &self,
        record: &sentra_protocol::backup::BackupRecord,
    ) -> Result<(), SyncError> {
        let body = serde_json::to_vec(record).expect("a backup record always serialises");
        let (status, bytes) = self.send(Method::POST, "/v1/backups", body).await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        Ok(())
    }

    /// `POST /v1/blobs/{sha256}/uploads/{id}/complete`: the cloud verifies size and digest.
    pub async fn blob_complete(&self, digest: &str, upload_id: &str) -> Result<(), SyncError> {
        let (status, bytes) = self
            .send(
                Method::POST,
                &format!("/v1/blobs/{digest}/uploads/{upload_id}/complete"),
                Vec::new(),
            )
            .await?;
        if !status.is_success() {
            return Err(refused(status, &bytes));
        }
        Ok(())
    }
}

/// First wait after a failed exchange with the cloud; doubles up to `sync.retry_max_ms`.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);

/// A query value as a URL carries it: unreserved characters as they are, every other byte
/// `%XX`, so the signed path and the one the cloud reads are the same bytes.
fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for (url, plain, ok) in [
            ("https://cloud.sentra.id", false, true),
            ("https://cloud.sentra.id/", false, true),
            ("http://127.0.0.1:8090", false, true),
            ("http://localhost:8090", false, true),
            ("http://cloud.sentra.id", false, false),
            ("http://10.0.0.5:8090", true, true),
            ("ftp://cloud", false, false),
            ("not a url", false, false),
        ] {
            assert_eq!(
                check_url(url, plain).is_ok(),
                ok,
                "{url} (allow plain: {plain})"
            );
        }
        assert_eq!(
            check_url("https://c.example/", false).ok().as_deref(),
            Some("https://c.example")
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent_encode("OF-1_a.b~"), "OF-1_a.b~");
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(percent_encode(""), "");
    }
}
