//! Typed configuration for `sentra-cloud`: each key's default, then an optional TOML file
//! (`--config FILE`), then environment variables, later layers winning.
//!
//! Every key is listed once in [`KEYS`] with its default and the reason for it, as on the box
//! (`appliance/src/config.rs`); the example file `cloud/cloud.example.toml` is generated from that
//! table (`sentra-cloud config defaults`) and a test keeps the two equal. This module owns every
//! key and its validation; nothing else in the crate reads the environment or the config file.
//! Invariants:
//! - a [`Config`] is fully validated, so the rest of the crate never sees a bad address or URL;
//! - every problem is reported at once ([`ConfigErrors`]), not only the first one;
//! - a secret, or the password in a URL, never appears in `Debug` output, in an error or in what
//!   `config check` prints.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// A key's variable unless [`Key::env`] names another: `SENTRA_CLOUD__<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "SENTRA_CLOUD__";

/// How a key is written in the file, and how it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TOML string.
    Text,
    /// A TOML string that is never shown (tokens, keys): empty means none.
    Hidden,
    /// A TOML integer.
    Number,
    /// A TOML boolean (or the string "true" / "false", as in the environment).
    Flag,
    /// A TOML array of strings; in the environment, comma-separated.
    List,
}

/// One documented key.
pub struct Key {
    /// `section.name`, as in the file.
    pub key: &'static str,
    pub kind: Kind,
    /// The value when neither the file nor the environment gives one; "" is none.
    pub default: &'static str,
    /// Why the default is what it is, in one line (the example file shows it).
    pub doc: &'static str,
    /// The variable when it is not `SENTRA_CLOUD__<SECTION>__<KEY>`: the name every tool knows.
    pub env: Option<&'static str>,
    /// The key's earlier name in its section: still read, with a warning, so existing
    /// deployments keep working (in the file and as `SENTRA_CLOUD__<SECTION>__<OLD>`).
    pub old_name: Option<&'static str>,
}

const fn key(key: &'static str, kind: Kind, default: &'static str, doc: &'static str) -> Key {
    Key {
        key,
        kind,
        default,
        doc,
        env: None,
        old_name: None,
    }
}

use Kind::{Flag, Hidden, List, Number, Text};

/// Every key there is, with its default and why; the order of the example file and of errors.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    key("http.listen", Text, "0.0.0.0:8090", "Where the HTTP server listens: every interface, because replicas are reached by a load balancer; 8090 is the contract's port."),
    key("http.public_url", Text, "", "The URL boxes reach this cloud at (https://cloud.sentra.id), what a technician gives sentra-edge enroll --cloud. Set: the enrolment QR carries it with the token, so scanning is all the technician does. None: the QR holds only the token."),
    Key { env: Some("DATABASE_URL"), ..key("database.url", Text, "", "PostgreSQL, the record (required), e.g. postgres://user:password@host:5432/sentra. No default: writing to a database that happened to be reachable is worse than refusing to start. TLS: add ?sslmode=verify-full (the system's trust store) and &sslrootcert=/path/ca.pem for a private CA.") },
    Key { env: Some("REDIS_URL"), ..key("redis.url", Text, "redis://127.0.0.1:6379", "Redis for the calendar, waitlists and (without lock_nodes) locks. Local by default: Redis is a fast path rebuilt from PostgreSQL, so a wrong default costs speed, never correctness.") },
    Key { env: Some("REDIS_CLUSTER_NODES"), ..key("redis.cluster_nodes", List, "", "Seed nodes of a Redis Cluster (comma-separated in the environment; any few masters or replicas, the rest is discovered). Set: the calendar, waitlists, idempotency keys and (without lock_nodes) locks live in the cluster and redis.url is not used. None: one Redis at redis.url.") },
    Key { env: Some("REDIS_LOCK_NODES"), ..key("redis.lock_nodes", List, "", "Independent Redis nodes for Redlock (an odd number; comma-separated in the environment). None: locks are a plain SET NX PX on redis.url, right for a single Redis.") },
    key("redis.ca_file", Text, "", "A PEM file with the CA that signed the Redis servers' certificates, for rediss:// URLs (redis.url, cluster_nodes and lock_nodes) on a private CA; it replaces the system's trust store for Redis. None: rediss:// trusts the system's store. Set without a rediss:// URL: refused."),
    Key { old_name: Some("hold_seconds"), ..key("booking.hold_secs", Number, "600", "How long a hold lives without payment (at most a day): the payment window of card and e-wallet checkouts, after which the slot is free again.") },
    key("booking.turnover_buffer_days", Number, "0", "Days an asset stays blocked after a rental for cleaning and inspection (at most the protocol's 14). Changing it only affects new bookings."),
    key("booking.sweep_interval_ms", Number, "1000", "How often each replica expires due holds: a hold expires at most this late. Sweeping skips locked rows, so replicas never wait on one another."),
    Key { old_name: Some("release_delay_seconds"), ..key("booking.release_delay_secs", Number, "0", "How long after COMPLETED the rest of a pre-authorisation is released; at most 86400, the gateways' 24 h limit (issue 4). At once by default: the charges are known when the counter completes the rental.") },
    key("payments.webhook_secret", Hidden, "", "The shared secret the payment gateway signs webhooks with. None: every webhook is refused."),
    key("releases.public_key", Text, "", "The release public key, 64 hex characters (what release keygen prints). Every box gets it at enrolment and pins it, so its updates are on from its first start. None: boxes enrol without one, refuse every release, and the fleet page flags them."),
    key("releases.signing_key_file", Text, "", "The ed25519 release signing key (sentra-cloud release keygen FILE), read only by release publish. None: publishing refuses, so nothing unsigned is ever served."),
    key("fleet.offline_after_secs", Number, "180", "A device is shown offline when its last heartbeat is older than this: three missed beats at the box's 60 s interval, so one lost request does not flag a branch."),
    key("fleet.gauges_refresh_secs", Number, "15", "How often each replica reads the fleet gauges from PostgreSQL for /metrics (1 to 3600); a scrape serves the latest reading, and none older than three of these."),
    key("notify.amqp_url", Text, "", "RabbitMQ for customer notifications (amqp://, or amqps:// for TLS). None: this replica publishes nothing and runs no worker; the schedule waits in PostgreSQL for a replica (or notify publish-due) with a broker."),
    key("notify.amqp_ca_file", Text, "", "A PEM file with the CA that signed RabbitMQ's certificate, for an amqps:// URL on a private CA; trusted besides the system's store. None: amqps:// trusts the system's store. Set without an amqps:// URL: refused."),
    key("notify.queue", Text, "sentra.notifications", "The work queue's name (letters, digits, '.', '_', '-'); its retry queues and dead-letter queue are named after it."),
    key("notify.reminder_days", Number, "90", "A service reminder is due this many days after the invoice (issue 8: H+90)."),
    key("notify.max_attempts", Number, "5", "Gateway attempts per notification before it is dead-lettered."),
    key("notify.retry_base_ms", Number, "2000", "The first retry waits this long, each later one twice the one before (2 s, 4 s, 8 s, 16 s): long enough for a gateway's brief outage or rate limit to pass."),
    key("notify.publish_interval_ms", Number, "1000", "How often each replica looks for due notifications; they go out at most this late."),
    key("notify.gateway_url", Text, "", "The messaging gateway: \"sandbox\" (started inside serve) or the WhatsApp Cloud API base URL. None: serve runs no worker (notify worker can run elsewhere)."),
    key("notify.gateway_token", Hidden, "", "The messaging gateway's access token (bearer); required with a gateway URL."),
    key("notify.phone_number_id", Text, "sandbox", "The WhatsApp Business phone number id messages are sent from (letters and digits); the sandbox takes any."),
    key("notify.gateway_timeout_ms", Number, "10000", "How long one gateway call may take; a send found unfinished is trusted to its first worker for twice this long before another one takes it over."),
    key("notify.gateway_lookup_url", Text, "", "Where a worker asks whether a message key was accepted (the sandbox answers). None: it cannot know, and an interrupted send is sent again."),
    key("identity.required", Flag, "true", "Refuse holds of customers without a verified KTP (issue 8: no first rental without one)."),
    key("identity.provider_url", Text, "", "The KTP check provider: \"sandbox\" or its API base URL. None: checks answer 503 and nobody new can be verified."),
    key("identity.app_id", Text, "", "The provider's app id."),
    key("identity.api_key", Hidden, "", "The provider's API key."),
    key("identity.nik_secret", Hidden, "", "The HMAC key NIKs are kept under."),
    key("identity.checks_per_caller", Number, "30", "Provider calls one caller (a device, an API token) may make per window, per replica: each is paid, and a stolen device or token must not run up the bill or probe KTPs. 30 leaves room for retakes without letting a script run."),
    key("identity.check_window_secs", Number, "3600", "The window of identity.checks_per_caller."),
    key("log.format", Text, "text", "How serve and the other commands write their log on stderr: \"text\" (one readable line per event, for a terminal or the journal) or \"json\" (one JSON object per line, for a log collector such as Loki or Elasticsearch). RUST_LOG filters either."),
    key("blobs.url", Text, "file:///var/lib/sentra-cloud/blobs", "Where inspection photos are kept, as an object_store URL: file:// (one replica, or a shared mount), or s3://bucket/prefix with the s3 cargo feature and the AWS_* variables. Never credentials in the URL."),
];

impl Key {
    /// The environment variable that overrides this key.
    pub fn env_name(&self) -> String {
        self.env.map_or_else(|| env_name(self.key), str::to_owned)
    }

    fn section(&self) -> &'static str {
        self.key
            .split_once('.')
            .map_or(self.key, |(section, _)| section)
    }

    fn name(&self) -> &'static str {
        self.key.split_once('.').map_or(self.key, |(_, name)| name)
    }

    /// The key's old name as `section.old`, if it had one.
    fn old_key(&self) -> Option<String> {
        self.old_name.map(|old| format!("{}.{old}", self.section()))
    }
}

/// `SENTRA_CLOUD__<SECTION>__<NAME>` for `section.name`.
fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

fn known_keys() -> String {
    KEYS.iter()
        .map(|key| key.key)
        .collect::<Vec<_>>()
        .join(", ")
}
/// The whole configuration of `sentra-cloud`, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub booking: BookingConfig,
    pub releases: ReleasesConfig,
    pub fleet: FleetConfig,
    pub notify: NotifyConfig,
    pub identity: IdentityConfig,
    pub blobs: BlobsConfig,
    pub log: LogConfig,
}

/// How the log is written.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// `log.format`: readable lines, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".to_owned()),
        }
    }
}

/// Where customers' KTPs are checked, and whether a hold needs a verified customer.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub required: bool,
    /// None: no provider (checks answer 503); `Sandbox`: the in-process sandbox; or a base URL.
    pub provider: Option<IdentityProviderUrl>,
    pub app_id: String,
    pub api_key: Option<Secret>,
    pub nik_secret: Option<Secret>,
    /// Provider calls a caller may make per `check_window` (a token bucket, per replica).
    pub checks_per_caller: u32,
    pub check_window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityProviderUrl {
    Sandbox,
    Url(String),
}

/// Customer notifications: the broker, the schedule and the messaging gateway.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The RabbitMQ broker; None: this replica publishes nothing and runs no worker.
    pub amqp_url: Option<AmqpUrl>,
    /// The CA for an `amqps://` broker on a private CA, besides the system's trust store.
    pub amqp_ca_file: Option<CaFile>,
    pub queue: String,
    pub reminder_after: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub publish_interval: Duration,
    pub gateway: Option<GatewayTarget>,
    pub gateway_token: Option<Secret>,
    pub phone_number_id: String,
    pub gateway_timeout: Duration,
    /// Where a worker asks whether a message key was accepted (the sandbox answers); None: it
    /// cannot know, and an interrupted send is sent again.
    pub gateway_lookup_url: Option<String>,
}

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayTarget {
    /// The sandbox gateway, started inside `serve` on a free loopback port.
    Sandbox,
    /// A WhatsApp Cloud API base URL (`https://graph.facebook.com/v21.0`, or a sandbox's).
    Url(String),
}

/// An AMQP URL that parsed; `Debug` shows it with the password replaced.
#[derive(Clone)]
pub struct AmqpUrl(String);

impl AmqpUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !(raw.starts_with("amqp://") || raw.starts_with("amqps://")) {
            return Err(
                "expected an amqp:// or amqps:// URL, such as amqp://guest:guest@127.0.0.1:5672/%2f"
                    .to_owned(),
            );
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `amqps://`: the connection is TLS, the broker's certificate and name checked.
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("amqps://")
    }
}

/// A PEM file of CA certificates, read and checked when the configuration loads (so a missing
/// or wrong file stops the start instead of the first connection); `Debug` shows the path.
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    pem: Vec<u8>,
}

impl CaFile {
    pub fn read(raw: &str) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let path = PathBuf::from(raw);
        let pem = std::fs::read(&path).map_err(|error| format!("cannot read it: {error}"))?;
        let mut certificates = 0_usize;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            certificate.map_err(|error| format!("not a PEM certificate file: {error}"))?;
            certificates += 1;
        }
        if certificates == 0 {
            return Err("no certificate in it (expected -----BEGIN CERTIFICATE-----)".to_owned());
        }
        Ok(Self { path, pem })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's PEM text as read at start.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

/// A queue name RabbitMQ takes and an operator can type: letters, digits, `.`, `_`, `-`.
fn parse_queue(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 200
        && raw
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err("expected 1 to 200 letters, digits, '.', '_' or '-'".to_owned())
    }
}

fn parse_gateway(raw: &str) -> Result<GatewayTarget, String> {
    match raw {
        "sandbox" => Ok(GatewayTarget::Sandbox),
        url => parse_http_url(url)
            .map(GatewayTarget::Url)
            .map_err(|_| "expected \"sandbox\" or an http(s):// URL".to_owned()),
    }
}

/// `http.public_url`: an http(s) URL of a host, nothing a box could not use as `--cloud`.
fn parse_public_url(raw: &str) -> Result<String, String> {
    let expected =
        "expected the http(s):// URL boxes reach this cloud at, such as https://cloud.sentra.id";
    let url = url::Url::parse(raw).map_err(|_| expected.to_owned())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(expected.to_owned());
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

fn parse_http_url(raw: &str) -> Result<String, String> {
    if raw.starts_with("https://") || raw.starts_with("http://") {
        Ok(raw.trim_end_matches('/').to_owned())
    } else {
        Err("expected an http(s):// URL".to_owned())
    }
}

#[derive(Debug, Clone)]
pub struct BlobsConfig {
    /// The object store's URL, checked to be one `object_store` knows (credentials, if any, come
    /// from the environment, never from here, so `Debug` prints nothing secret).
    pub url: url::Url,
}

#[derive(Debug, Clone)]
pub struct ReleasesConfig {
    /// The release signing key's file; None: `release publish` refuses.
    pub signing_key_file: Option<PathBuf>,
    /// The release public key (lowercase hex) handed to boxes at enrolment.
    pub public_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub offline_after: Duration,
    /// How often the fleet gauges are read for `/metrics`.
    pub gauges_refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct BookingConfig {
    pub hold_window: Duration,
    pub turnover_buffer_days: u32,
    pub sweep_interval: Duration,
    /// How long after `COMPLETED` the rest of a pre-authorisation is released.
    pub release_delay: Duration,
    pub webhook_secret: Option<Secret>,
}

/// A secret value; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The URL boxes reach this cloud at, without a trailing `/`, for the enrolment QR.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The node for the calendar, waitlists and (without `lock_nodes`) locks.
    pub url: RedisUrl,
    /// Seed nodes of a Redis Cluster; set, they replace `url`.
    pub cluster_nodes: Vec<RedisUrl>,
    /// Independent nodes for Redlock; empty means "lock on `url`" (or on the cluster).
    pub lock_nodes: Vec<RedisUrl>,
    /// The CA for `rediss://` nodes on a private CA (instead of the system's trust store).
    pub ca_file: Option<CaFile>,
}

impl RedisConfig {
    /// What a `rediss://` client needs on top of its URL: the private CA, when there is one.
    /// None: the URL alone (`redis::Client::open`), so `rediss://` checks the server against the
    /// system's trust store. The one place Redis TLS is decided, for single nodes
    /// (`redis::Client::build_with_tls`) and for a cluster client's builder (`.certs(..)`) alike.
    pub fn tls_certificates(&self) -> Option<redis::TlsCertificates> {
        self.ca_file.as_ref().map(|ca| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.pem().to_vec()),
        })
    }

    /// A client for `url` (this configuration's `url` or one of its `lock_nodes`), over TLS with
    /// [`Self::tls_certificates`] when the URL is `rediss://`.
    pub fn client(&self, url: &RedisUrl) -> redis::RedisResult<redis::Client> {
        match self.tls_certificates() {
            Some(certificates) if url.is_tls() => {
                redis::Client::build_with_tls(url.connection_info(), certificates)
            }
            _ => redis::Client::open(url.connection_info()),
        }
    }
}

/// A PostgreSQL URL that parsed; `Debug` shows it with the password replaced.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    options: PgConnectOptions,
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
            return Err("expected a postgres:// or postgresql:// URL".to_owned());
        }
        let mut options = PgConnectOptions::from_str(raw).map_err(|error| error.to_string())?;
        // The CA file is read now, as `redis.ca_file` and `notify.amqp_ca_file` are: a missing
        // file stops the start. sqlx only uses it to verify: with any other mode it would be
        // ignored without a word, so that is refused.
        let parsed = url::Url::parse(raw).map_err(|error| error.to_string())?;
        let root_cert = parsed
            .query_pairs()
            .find(|(name, _)| matches!(&**name, "sslrootcert" | "ssl-root-cert" | "ssl-ca"));
        if let Some((_, path)) = root_cert {
            if !matches!(
                options.get_ssl_mode(),
                PgSslMode::VerifyCa | PgSslMode::VerifyFull
            ) {
                return Err(
                    "sslrootcert is only used to verify the server: add sslmode=verify-full"
                        .to_owned(),
                );
            }
            let ca =
                CaFile::read(&path).map_err(|reason| format!("sslrootcert {path}: {reason}"))?;
            options = options.ssl_root_cert_from_pem(ca.pem);
        }
        Ok(Self {
            raw: raw.to_owned(),
            options,
        })
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// How the connection is protected, for the start-up log: sqlx's `sslmode`.
    pub fn tls_mode(&self) -> &'static str {
        match self.options.get_ssl_mode() {
            PgSslMode::Disable => "disable",
            PgSslMode::Allow => "allow",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

/// A Redis URL that parsed; `Debug` shows it with the password replaced.
#[derive(Clone)]
pub struct RedisUrl {
    raw: String,
    info: ConnectionInfo,
}

impl RedisUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !(raw.starts_with("redis://") || raw.starts_with("rediss://")) {
            return Err("expected a redis:// or rediss:// URL".to_owned());
        }
        let info = raw
            .into_connection_info()
            .map_err(|error| error.to_string())?;
        if let ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
            return Err(
                "#insecure turns off the certificate check: give the server's CA in redis.ca_file instead"
                    .to_owned(),
            );
        }
        Ok(Self {
            raw: raw.to_owned(),
            info,
        })
    }

    pub fn connection_info(&self) -> ConnectionInfo {
        self.info.clone()
    }

    /// `rediss://`: the connection is TLS, the server's certificate and name checked.
    pub fn is_tls(&self) -> bool {
        matches!(self.info.addr(), ConnectionAddr::TcpTls { .. })
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

/// Where a value came from, so an error names the thing the operator has to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    Env(String),
    File { path: PathBuf, key: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the default"),
            Origin::Env(var) => f.write_str(var),
            Origin::File { path, key } => write!(f, "{key} in {}", path.display()),
        }
    }
}

/// One problem with the configuration. Values are shown redacted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {error}", path.display())]
    ReadFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {} is not valid TOML: {message}", path.display())]
    ParseFile { path: PathBuf, message: String },
    #[error("config file {}: unknown key `{key}`; known keys: {}", path.display(), known_keys())]
    UnknownKey { path: PathBuf, key: String },
    #[error("{origin}: expected {expected}, found {found}")]
    WrongType {
        origin: Origin,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{var}: the value is not valid UTF-8")]
    NotUnicode { var: String },
    #[error("{what} is not set: set {env} or `{key}` in the config file")]
    Missing {
        what: &'static str,
        env: String,
        key: &'static str,
    },
    #[error("{origin}: invalid value `{value}`: {reason}")]
    Invalid {
        origin: Origin,
        value: String,
        reason: String,
    },
}

/// Every problem found while loading; never empty.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A valid configuration, with what the operator should hear about it.
pub struct Loaded {
    pub config: Config,
    /// Deprecated names in use, variables that configure nothing: to log once logging is up.
    pub warnings: Vec<String>,
    /// Every key with the value in force and where it came from, secrets hidden (`config check`).
    pub effective: String,
}

/// Loads the configuration from `file` (if given) and the process environment.
pub fn load(file: Option<&Path>) -> Result<Loaded, ConfigErrors> {
    let mut loaded = load_with(file, &|name| std::env::var_os(name))?;
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    loaded.warnings.extend(unknown_variables(names));
    Ok(loaded)
}

/// `SENTRA_CLOUD__*` variables that are no key's (a misspelt name would otherwise be ignored
/// without a word).
fn unknown_variables(names: impl Iterator<Item = String>) -> Vec<String> {
    names
        .filter(|name| name.starts_with(ENV_PREFIX))
        .filter(|name| {
            !KEYS.iter().any(|key| {
                key.env_name() == *name || key.old_key().is_some_and(|old| env_name(&old) == *name)
            })
        })
        .map(|name| format!("{name} is not a configuration variable and is ignored; `sentra-cloud config defaults` lists them"))
        .collect()
}

/// A value as found, before validation.
#[derive(Clone)]
enum Value {
    Text(String),
    List(Vec<String>),
}

/// One key's value in force and where it came from; `found[i]` is `KEYS[i]`'s.
#[derive(Clone)]
struct Found {
    value: Value,
    origin: Origin,
}

fn defaults() -> Vec<Found> {
    KEYS.iter()
        .map(|key| Found {
            value: match key.kind {
                Kind::List => Value::List(split_list(key.default)),
                _ => Value::Text(key.default.to_owned()),
            },
            origin: Origin::Default,
        })
        .collect()
}

/// [`load`] with the environment passed in, so tests do not touch the process environment.
pub fn load_with(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut found = defaults();
    if let Some(path) = file {
        read_file(path, &mut found, &mut errors, &mut warnings);
    }
    read_env(env, &mut found, &mut errors, &mut warnings);

    let mut p = Parser {
        found: &found,
        read: vec![false; KEYS.len()],
        errors: &mut errors,
    };
    let http = HttpConfig {
        listen: p.get("http.listen", |value| {
            value
                .parse::<SocketAddr>()
                .map_err(|_| "expected IP:PORT, such as 0.0.0.0:8090 or [::]:8090".to_owned())
        }),
        public_url: p.optional("http.public_url", parse_public_url),
    };
    let database_url = p.required("database.url", "the PostgreSQL URL", DatabaseUrl::parse);
    let redis = RedisConfig {
        url: p.get("redis.url", RedisUrl::parse),
        cluster_nodes: p.list("redis.cluster_nodes", RedisUrl::parse),
        lock_nodes: p.list("redis.lock_nodes", RedisUrl::parse),
        ca_file: p.optional("redis.ca_file", CaFile::read),
    };
    if redis.ca_file.is_some()
        && !std::iter::once(&redis.url)
            .chain(&redis.lock_nodes)
            .chain(&redis.cluster_nodes)
            .any(RedisUrl::is_tls)
    {
        p.pointless("redis.ca_file", "no Redis URL is rediss://");
    }
    let booking = BookingConfig {
        hold_window: p.get("booking.hold_secs", |v| number(v, 1, 86_400).map(secs)),
        turnover_buffer_days: p.get("booking.turnover_buffer_days", |v| {
            number(v, 0, sentra_protocol::day::MAX_TURNOVER_BUFFER_DAYS)
        }),
        sweep_interval: p.get("booking.sweep_interval_ms", |v| {
            number(v, 10, 60_000).map(ms)
        }),
        release_delay: p.get("booking.release_delay_secs", |v| {
            number(v, 0, 86_400).map(secs)
        }),
        webhook_secret: p.secret("payments.webhook_secret"),
    };
    let releases = ReleasesConfig {
        signing_key_file: p.optional("releases.signing_key_file", |v| Ok(PathBuf::from(v))),
        public_key: p.optional("releases.public_key", |v| {
            sentra_protocol::auth::parse_public_key(&v.to_ascii_lowercase())
                .map(|key| hex::encode(key.as_bytes()))
                .map_err(|_| "expected the 64 hex characters release keygen prints".to_owned())
        }),
    };
    let fleet = FleetConfig {
        offline_after: p.get("fleet.offline_after_secs", |v| {
            number(v, 10, 86_400).map(secs)
        }),
        gauges_refresh: p.get("fleet.gauges_refresh_secs", |v| {
            number(v, 1, 3600).map(secs)
        }),
    };
    let notify = NotifyConfig {
        amqp_url: p.optional("notify.amqp_url", AmqpUrl::parse),
        amqp_ca_file: p.optional("notify.amqp_ca_file", CaFile::read),
        queue: p.get("notify.queue", parse_queue),
        reminder_after: p.get("notify.reminder_days", |v| {
            number(v, 1, 3650).map(|days| secs(days * 86_400))
        }),
        max_attempts: p.get("notify.max_attempts", |v| number(v, 1, 20)),
        retry_base: p.get("notify.retry_base_ms", |v| number(v, 10, 3_600_000).map(ms)),
        publish_interval: p.get("notify.publish_interval_ms", |v| {
            number(v, 10, 600_000).map(ms)
        }),
        gateway: p.optional("notify.gateway_url", parse_gateway),
        gateway_token: p.secret("notify.gateway_token"),
        phone_number_id: p.get("notify.phone_number_id", |value| {
            if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
                Ok(value.to_owned())
            } else {
                Err("expected the phone number id: letters and digits".to_owned())
            }
        }),
        gateway_timeout: p.get("notify.gateway_timeout_ms", |v| {
            number(v, 100, 120_000).map(ms)
        }),
        gateway_lookup_url: p.optional("notify.gateway_lookup_url", parse_http_url),
    };
    if notify.amqp_ca_file.is_some() && !notify.amqp_url.as_ref().is_some_and(AmqpUrl::is_tls) {
        p.pointless("notify.amqp_ca_file", "notify.amqp_url is not amqps://");
    }
    if matches!(notify.gateway, Some(GatewayTarget::Url(_))) && notify.gateway_token.is_none() {
        p.missing(
            "notify.gateway_token",
            "the messaging gateway's access token",
        );
    }
    let identity = IdentityConfig {
        required: p.get("identity.required", |value| match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        }),
        provider: p.optional("identity.provider_url", |value| match value {
            "sandbox" => Ok(IdentityProviderUrl::Sandbox),
            url => parse_http_url(url).map(IdentityProviderUrl::Url),
        }),
        app_id: p.get("identity.app_id", |value| Ok(value.to_owned())),
        api_key: p.secret("identity.api_key"),
        nik_secret: p.secret("identity.nik_secret"),
        checks_per_caller: p.get("identity.checks_per_caller", |v| number(v, 1, 10_000)),
        check_window: p.get("identity.check_window_secs", |v| {
            number(v, 1, 86_400).map(secs)
        }),
    };
    let log = LogConfig {
        format: p.get("log.format", LogFormat::from_str),
    };
    let blobs = BlobsConfig {
        url: p.get("blobs.url", parse_blobs_url),
    };
    debug_assert!(p.read.iter().all(|read| *read), "every key in KEYS is read");

    match database_url {
        Some(url) if errors.is_empty() => Ok(Loaded {
            config: Config {
                http,
                database: DatabaseConfig { url },
                redis,
                booking,
                releases,
                fleet,
                notify,
                identity,
                blobs,
                log,
            },
            warnings,
            effective: render(&found),
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The example file: every key at its default, with its reason and variable.
pub fn example() -> String {
    render(&defaults())
}

/// `found` as a commented TOML file. Secrets show as `"***"` when set, passwords in URLs are
/// replaced, and a value that is not the default says where it came from.
fn render(found: &[Found]) -> String {
    let mut out = String::from(
        "# sentra-cloud configuration (every command takes --config FILE).\n\
         # Every key, its default and why. The variable under each key overrides it.\n",
    );
    let mut section = "";
    for (key, found) in KEYS.iter().zip(found) {
        if key.section() != section {
            section = key.section();
            out.push_str(&format!("\n[{section}]\n"));
        }
        let mut env = format!("env {}", key.env_name());
        if let Some(old) = key.old_key() {
            env.push_str(&format!("; was {old}, {} (still read)", env_name(&old)));
        }
        let text = |text: &str| toml_string(&redact(text));
        let value = match (&found.value, key.kind) {
            (Value::List(items), _) => {
                let items: Vec<String> = items.iter().map(|item| text(item)).collect();
                format!("[{}]", items.join(", "))
            }
            (Value::Text(value), Kind::Hidden) if value.is_empty() => toml_string(""),
            (Value::Text(_), Kind::Hidden) => toml_string(REDACTED),
            (Value::Text(value), Kind::Number | Kind::Flag) => value.clone(),
            (Value::Text(value), Kind::Text | Kind::List) => text(value),
        };
        let from = match &found.origin {
            Origin::Default => String::new(),
            origin => format!("  # from {origin}"),
        };
        out.push_str(&format!(
            "# {}\n# {env}\n{} = {value}{from}\n",
            key.doc,
            key.name()
        ));
    }
    out
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Reads the typed values out of what was found, recording each problem and going on with the
/// key's default.
struct Parser<'a> {
    found: &'a [Found],
    read: Vec<bool>,
    errors: &'a mut Vec<ConfigError>,
}

impl Parser<'_> {
    fn index(&mut self, key: &str) -> usize {
        let index = KEYS
            .iter()
            .position(|known| known.key == key)
            .unwrap_or_else(|| panic!("{key} is not in KEYS"));
        self.read[index] = true;
        index
    }

    fn text(&mut self, key: &str) -> (&'static Key, String, Origin) {
        let index = self.index(key);
        let Found { value, origin } = &self.found[index];
        match value {
            Value::Text(text) => (&KEYS[index], text.clone(), origin.clone()),
            Value::List(_) => unreachable!("{key} is a list"),
        }
    }

    fn invalid(&mut self, origin: Origin, value: &str, reason: String) {
        self.errors.push(ConfigError::Invalid {
            origin,
            value: redact(value),
            reason,
        });
    }

    /// The key's value; when it is bad, the error is recorded and the (valid) default returned.
    fn get<T>(&mut self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> T {
        let (known, value, origin) = self.text(key);
        parse(&value).unwrap_or_else(|reason| {
            self.invalid(origin, &value, reason);
            parse(known.default).expect("every default is valid (tested)")
        })
    }

    /// None when the value is empty.
    fn optional<T>(&mut self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        self.get(key, |value| match value {
            "" => Ok(None),
            value => parse(value).map(Some),
        })
    }

    fn secret(&mut self, key: &str) -> Option<Secret> {
        let (_, value, _) = self.text(key);
        (!value.is_empty()).then_some(Secret(value))
    }

    /// A key without a default: None (and an error) when it is not set.
    fn required<T>(
        &mut self,
        key: &'static str,
        what: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (_, value, origin) = self.text(key);
        if value.is_empty() {
            self.missing(key, what);
            return None;
        }
        parse(&value)
            .map_err(|reason| self.invalid(origin, &value, reason))
            .ok()
    }

    /// A key that is set but would change nothing (a CA file for a connection without TLS): an
    /// error, because the operator meant something that is not happening.
    fn pointless(&mut self, key: &str, why: &str) {
        let (_, value, origin) = self.text(key);
        self.invalid(
            origin,
            &value,
            format!("set, but {why}: it would be ignored"),
        );
    }

    fn missing(&mut self, key: &'static str, what: &'static str) {
        let index = self.index(key);
        self.errors.push(ConfigError::Missing {
            what,
            env: KEYS[index].env_name(),
            key,
        });
    }

    /// Every item that parses; each one that does not is an error.
    fn list<T>(&mut self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Vec<T> {
        let index = self.index(key);
        let found = self.found;
        let Found { value, origin } = &found[index];
        let Value::List(items) = value else {
            unreachable!("{key} is not a list")
        };
        items
            .iter()
            .filter_map(|item| {
                parse(item)
                    .map_err(|reason| self.invalid(origin.clone(), item, reason))
                    .ok()
            })
            .collect()
    }
}

fn number<T: FromStr + PartialOrd + fmt::Display>(
    value: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    match value.parse::<T>() {
        Ok(number) if number >= min && number <= max => Ok(number),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn read_file(
    path: &Path,
    found: &mut [Found],
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            errors.push(ConfigError::ReadFile {
                path: path.to_owned(),
                error,
            });
            return;
        }
    };
    let table = match text.parse::<toml::Table>() {
        Ok(table) => table,
        Err(error) => {
            errors.push(ConfigError::ParseFile {
                path: path.to_owned(),
                message: error.message().to_owned() + &line_hint(&text, error.span()),
            });
            return;
        }
    };
    for (section_name, section) in &table {
        let Some(section) = section.as_table() else {
            errors.push(ConfigError::UnknownKey {
                path: path.to_owned(),
                key: section_name.clone(),
            });
            continue;
        };
        for (name, value) in section {
            let written = format!("{section_name}.{name}");
            let index = KEYS.iter().position(|key| key.key == written);
            let old = KEYS
                .iter()
                .position(|key| key.old_key().as_deref() == Some(written.as_str()));
            let Some(index) = index.or(old) else {
                errors.push(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    key: written,
                });
                continue;
            };
            let key = &KEYS[index];
            if old.is_some() {
                if section.contains_key(key.name()) {
                    warnings.push(format!(
                        "`{written}` in {} is ignored: `{}` is set too; remove `{written}`",
                        path.display(),
                        key.key
                    ));
                    continue;
                }
                warnings.push(format!(
                    "`{written}` in {} is deprecated: rename it `{}`",
                    path.display(),
                    key.key
                ));
            }
            let origin = Origin::File {
                path: path.to_owned(),
                key: written,
            };
            if let Some(value) = file_value(key.kind, value, &origin, errors) {
                found[index] = Found { value, origin };
            }
        }
    }
}

/// A file value of the key's kind, numbers and flags kept as text so the file and the
/// environment validate alike.
fn file_value(
    kind: Kind,
    value: &toml::Value,
    origin: &Origin,
    errors: &mut Vec<ConfigError>,
) -> Option<Value> {
    let (parsed, expected) = match kind {
        Kind::Text | Kind::Hidden => (value.as_str().map(str::to_owned), "a string"),
        Kind::Number => (value.as_integer().map(|n| n.to_string()), "an integer"),
        Kind::Flag => (
            value
                .as_bool()
                .map(|flag| flag.to_string())
                .or_else(|| value.as_str().map(str::to_owned)),
            "true or false",
        ),
        Kind::List => {
            let items = value.as_array().and_then(|items| {
                items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            });
            return match items {
                Some(items) => Some(Value::List(items)),
                None => {
                    errors.push(ConfigError::WrongType {
                        origin: origin.clone(),
                        expected: "an array of strings",
                        found: value.type_str(),
                    });
                    None
                }
            };
        }
    };
    if parsed.is_none() {
        errors.push(ConfigError::WrongType {
            origin: origin.clone(),
            expected,
            found: value.type_str(),
        });
    }
    parsed.map(Value::Text)
}

/// " (line N)" for a TOML error span, so the operator finds the bad line.
fn line_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span.and_then(|span| text.get(..span.start)) {
        Some(before) => format!(" (line {})", before.lines().count().max(1)),
        None => String::new(),
    }
}

fn read_env(
    env: &dyn Fn(&str) -> Option<OsString>,
    found: &mut [Found],
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    let mut var = |name: String| -> Option<(String, Origin)> {
        match env(&name)?.into_string() {
            Ok(value) => Some((value, Origin::Env(name))),
            Err(_) => {
                errors.push(ConfigError::NotUnicode { var: name });
                None
            }
        }
    };
    for (key, found) in KEYS.iter().zip(found) {
        let current = var(key.env_name());
        let old = key.old_key().map(|old| env_name(&old));
        let old = old.and_then(|name| var(name.clone()).map(|value| (name, value)));
        let value = match (current, old) {
            (Some(current), Some((old, _))) => {
                warnings.push(format!(
                    "{old} is ignored: {} is set too; unset {old}",
                    key.env_name()
                ));
                current
            }
            (None, Some((old, value))) => {
                warnings.push(format!("{old} is deprecated: rename it {}", key.env_name()));
                value
            }
            (Some(current), None) => current,
            (None, None) => continue,
        };
        let (value, origin) = value;
        let value = match key.kind {
            Kind::List => Value::List(split_list(&value)),
            _ => Value::Text(value),
        };
        *found = Found { value, origin };
    }
}
/// An object store URL `object_store` recognises (`file:///abs/dir`, `s3://bucket/prefix`, ...).
/// Credentials in the URL are refused: they belong in the environment, not in a config file.
fn parse_blobs_url(value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value).map_err(|error| {
        format!("expected an object store URL like file:///var/lib/sentra-cloud/blobs: {error}")
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put object store credentials in the environment (AWS_ACCESS_KEY_ID, ...), not in the URL".into());
    }
    object_store::ObjectStoreScheme::parse(&url).map_err(|error| {
        format!("not an object store URL object_store knows (file://, s3://, memory:///): {error}")
    })?;
    Ok(url)
}

/// A comma-separated list; blanks around items and empty items are dropped, so `""` is empty.
fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `url` with the password (in the user-info or a `password=` query parameter) replaced by
/// `***`. Works on text that is not a valid URL too, because that is what error messages show;
/// when in doubt it hides too much rather than too little.
pub fn redact(url: &str) -> String {
    let (prefix, rest) = match url.find("://") {
        Some(index) => url.split_at(index + 3),
        None => ("", url),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(prefix);
    // The last '@' ends the user-info even when the password holds an unescaped '/', '?' or '@'.
    let tail = match rest.rfind('@') {
        Some(at) => {
            let (user_info, tail) = rest.split_at(at);
            match user_info.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                // Without "://" there is no telling a user name from a password.
                None if prefix.is_empty() => out.push_str(REDACTED),
                None => out.push_str(&redact_query(user_info)),
            }
            tail
        }
        None => rest,
    };
    out.push_str(&redact_query(tail));
    out
}

const REDACTED: &str = "***";

/// `text` with the value of every `password=` parameter after its first '?' replaced.
fn redact_query(text: &str) -> String {
    let Some((before, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write as _;

    use super::*;

    const DB: &str = "postgres://sentra:s3cret@db.internal:5432/sentra";

    fn load_env(file: Option<&Path>, vars: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), OsString::from(value)))
            .collect();
        load_with(file, &|name| vars.get(name).cloned())
            .map(|loaded| loaded.config)
            .map_err(|errors| errors.0.iter().map(ToString::to_string).collect())
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp dir is writable");
        file.write_all(text.as_bytes())
            .expect("temp dir is writable");
        file
    }

    #[test]
    fn defaults_apply_when_only_the_database_is_given() {
        let config = load_env(None, &[("DATABASE_URL", DB)]).expect("valid");
        assert_eq!(config.http.listen.to_string(), "0.0.0.0:8090");
        assert_eq!(format!("{:?}", config.redis.url), "redis://127.0.0.1:6379");
        assert!(config.redis.lock_nodes.is_empty());
    }

    #[test]
    fn notify_keys_from_file_and_env_with_every_problem_reported() {
        let file = config_file(
            r#"
            [notify]
            amqp_url = "amqp://guest:guest@mq:5672/%2f"
            queue = "prod.notifications"
            reminder_days = 30
            gateway_url = "sandbox"
            "#,
        );
        let config = load_env(
            Some(file.path()),
            &[
                ("DATABASE_URL", DB),
                ("SENTRA_CLOUD__NOTIFY__MAX_ATTEMPTS", "7"),
            ],
        )
        .expect("valid");
        let notify = &config.notify;
        assert_eq!(
            format!("{:?}", notify.amqp_url),
            "Some(amqp://guest:***@mq:5672/%2f)"
        );
        assert_eq!(notify.queue, "prod.notifications");
        assert_eq!(notify.reminder_after.as_secs(), 30 * 86_400);
        assert_eq!(notify.max_attempts, 7);
        assert_eq!(notify.gateway, Some(GatewayTarget::Sandbox));

        let defaults = load_env(None, &[("DATABASE_URL", DB)]).expect("valid");
        assert!(defaults.notify.amqp_url.is_none());
        assert!(defaults.notify.gateway.is_none());
        assert_eq!(defaults.notify.reminder_after.as_secs(), 90 * 86_400);

        let errors = load_env(
            None,
            &[
                ("DATABASE_URL", DB),
                ("SENTRA_CLOUD__NOTIFY__AMQP_URL", "ampq://u:pw@mq/%2f"),
                ("SENTRA_CLOUD__NOTIFY__QUEUE", "bad queue"),
                (
                    "SENTRA_CLOUD__NOTIFY__GATEWAY_URL",
                    "https://graph.example/v21.0",
                ),
                ("SENTRA_CLOUD__NOTIFY__REMINDER_DAYS", "0"),
            ],
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("ampq://u:***@mq") && e.contains("amqps://")),
            "{errors:#?}"
        );
        assert!(!errors.iter().any(|e| e.contains("pw")), "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("SENTRA_CLOUD__NOTIFY__QUEUE"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("SENTRA_CLOUD__NOTIFY__REMINDER_DAYS"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("access token")
                    && e.contains("SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN")),
            "{errors:#?}"
        );
    }

    #[test]
    fn env_overrides_file() {
        let file = config_file(
            r#"
            [http]
            listen = "127.0.0.1:1000"
            [database]
            url = "postgres://file@localhost/file"
            [redis]
            url = "redis://file:6379"
            lock_nodes = ["redis://a:6379", "redis://b:6379"]
            "#,
        );
        let from_file = load_env(Some(file.path()), &[]).expect("valid");
        assert_eq!(from_file.http.listen.to_string(), "127.0.0.1:1000");
        assert_eq!(
            format!("{:?}", from_file.database.url),
            "postgres://file@localhost/file"
        );
        assert_eq!(from_file.redis.lock_nodes.len(), 2);

        let overridden = load_env(
            Some(file.path()),
            &[
                ("SENTRA_CLOUD__HTTP__LISTEN", "127.0.0.1:2000"),
                ("DATABASE_URL", DB),
                ("REDIS_URL", "redis://env:6379"),
                ("REDIS_LOCK_NODES", ""),
            ],
        )
        .expect("valid");
        assert_eq!(overridden.http.listen.to_string(), "127.0.0.1:2000");
        assert_eq!(
            format!("{:?}", overridden.database.url),
            "postgres://sentra:***@db.internal:5432/sentra"
        );
        assert_eq!(format!("{:?}", overridden.redis.url), "redis://env:6379");
        assert!(overridden.redis.lock_nodes.is_empty());
    }

    #[test]
    fn lock_nodes_from_env_are_a_comma_list() {
        let config = load_env(
            None,
            &[
                ("DATABASE_URL", DB),
                (
                    "REDIS_LOCK_NODES",
                    " redis://a:1, redis://b:2 ,redis://c:3,",
                ),
            ],
        )
        .expect("valid");
        let nodes: Vec<String> = config
            .redis
            .lock_nodes
            .iter()
            .map(|node| format!("{node:?}"))
            .collect();
        assert_eq!(nodes, ["redis://a:1", "redis://b:2", "redis://c:3"]);
    }

    #[test]
    fn cluster_nodes_are_a_list_shown_without_passwords() {
        let config = load_env(
            None,
            &[
                ("DATABASE_URL", DB),
                (
                    "REDIS_CLUSTER_NODES",
                    "redis://:hunter2@c1:7000,redis://:hunter2@c2:7001",
                ),
            ],
        )
        .expect("valid");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let nodes: Vec<String> = config
            .redis
            .cluster_nodes
            .iter()
            .map(|node| format!("{node:?}"))
            .collect();
        assert_eq!(nodes, ["redis://:***@c1:7000", "redis://:***@c2:7001"]);
        assert!(
            load_env(None, &[("DATABASE_URL", DB)])
                .expect("valid")
                .redis
                .cluster_nodes
                .is_empty()
        );
        let errors = load_env(
            None,
            &[
                ("DATABASE_URL", DB),
                ("REDIS_CLUSTER_NODES", "http://c1:7000"),
            ],
        )
        .expect_err("not a redis URL");
        let errors = errors.join("\n");
        assert!(
            errors.contains("REDIS_CLUSTER_NODES")
                && errors.contains("expected a redis:// or rediss:// URL"),
            "{errors}"
        );
    }

    type Env<'a> = &'a [(&'a str, &'a str)];

    /// Each case: environment, then one expected fragment per reported error, in order.
    #[test]
    fn every_error_is_reported() {
        let cases: &[(Env, &[&str])] = &[
            (&[], &["the PostgreSQL URL is not set: set DATABASE_URL"]),
            (
                &[("SENTRA_CLOUD__HTTP__LISTEN", "notanaddress")],
                &[
                    "SENTRA_CLOUD__HTTP__LISTEN: invalid value `notanaddress`: expected IP:PORT",
                    "the PostgreSQL URL is not set",
                ],
            ),
            (
                &[
                    ("DATABASE_URL", "mysql://u:pw@h/db"),
                    ("REDIS_URL", "rediss://h:6380/#insecure"),
                    ("REDIS_LOCK_NODES", "redis://ok:1,http://bad:2"),
                ],
                &[
                    "DATABASE_URL: invalid value `mysql://u:***@h/db`: expected a postgres://",
                    "REDIS_URL: invalid value `rediss://h:6380/#insecure`: #insecure turns off",
                    "REDIS_LOCK_NODES: invalid value `http://bad:2`: expected a redis:// or rediss:// URL",
                ],
            ),
            (
                &[("DATABASE_URL", "postgres://u:pw@h:notaport/db")],
                &["DATABASE_URL: invalid value `postgres://u:***@h:notaport/db`"],
            ),
        ];
        for (env, expected) in cases {
            let errors = load_env(None, env).expect_err("invalid");
            assert_eq!(errors.len(), expected.len(), "{env:?}: {errors:#?}");
            for (error, fragment) in errors.iter().zip(*expected) {
                assert!(error.contains(fragment), "{error:?} lacks {fragment:?}");
                assert!(!error.contains("pw@"), "password leaked: {error}");
            }
        }
    }

    #[test]
    fn booking_keys_have_defaults_and_bounds() {
        let config = load_env(None, &[("DATABASE_URL", DB)]).expect("valid");
        assert_eq!(config.booking.hold_window.as_secs(), 600);
        assert_eq!(config.booking.turnover_buffer_days, 0);
        assert!(config.booking.webhook_secret.is_none());
        assert!(config.booking.release_delay.is_zero());
        let errors = load_env(
            None,
            &[
                ("DATABASE_URL", DB),
                ("SENTRA_CLOUD__BOOKING__HOLD_SECONDS", "0"),
                ("SENTRA_CLOUD__BOOKING__TURNOVER_BUFFER_DAYS", "99"),
                ("SENTRA_CLOUD__BOOKING__SWEEP_INTERVAL_MS", "soon"),
                ("SENTRA_CLOUD__BOOKING__RELEASE_DELAY_SECONDS", "86401"),
            ],
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 4, "{errors:#?}");
        let file = config_file(
            "[booking]\nhold_seconds = 5\nturnover_buffer_days = 1\nrelease_delay_seconds = 3600\n",
        );
        let config = load_env(Some(file.path()), &[("DATABASE_URL", DB)]).expect("valid");
        assert_eq!(config.booking.hold_window.as_secs(), 5);
        assert_eq!(config.booking.turnover_buffer_days, 1);
        assert_eq!(config.booking.release_delay.as_secs(), 3600);
    }

    #[test]
    fn every_bad_key_in_the_file_is_reported() {
        let file = config_file(
            r#"
            colour = "blue"
            [http]
            listen = 8090
            port = 1
            [redis]
            lock_nodes = "redis://a:1"
            "#,
        );
        let errors = load_env(Some(file.path()), &[]).expect_err("invalid");
        let expected = [
            "unknown key `colour`",
            "http.listen in ",
            "unknown key `http.port`",
            "redis.lock_nodes in ",
            "the PostgreSQL URL is not set",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for fragment in expected {
            assert!(
                errors.iter().any(|error| error.contains(fragment)),
                "no error contains {fragment:?}: {errors:#?}"
            );
        }
    }

    #[test]
    fn unreadable_and_malformed_files_are_errors() {
        let missing = load_env(
            Some(Path::new("/nonexistent/cloud.toml")),
            &[("DATABASE_URL", DB)],
        )
        .expect_err("missing file");
        assert!(missing[0].starts_with("cannot read config file /nonexistent/cloud.toml"));

        let file = config_file("[http]\nlisten = \n");
        let malformed = load_env(Some(file.path()), &[("DATABASE_URL", DB)]).expect_err("bad toml");
        assert!(malformed[0].contains("is not valid TOML"), "{malformed:?}");
        assert!(malformed[0].contains("(line 2)"), "{malformed:?}");
    }

    /// A CA file with one self-signed certificate (rcgen), and its path as text.
    fn ca_file() -> (tempfile::NamedTempFile, String) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let pem = params.self_signed(&key).expect("self-signed").pem();
        let file = config_file(&pem);
        let path = file.path().to_str().expect("utf-8 path").to_owned();
        (file, path)
    }

    #[test]
    fn tls_urls_and_ca_files_load_and_show_no_secret() {
        let (_ca, ca) = ca_file();
        let db = format!("{DB}?sslmode=verify-full&sslrootcert={ca}");
        let config = load_env(
            None,
            &[
                ("DATABASE_URL", &db),
                ("REDIS_URL", "rediss://:hunter2@redis.internal:6380/0"),
                ("REDIS_LOCK_NODES", "rediss://:hunter3@a:1,redis://b:2"),
                ("SENTRA_CLOUD__REDIS__CA_FILE", &ca),
                (
                    "SENTRA_CLOUD__NOTIFY__AMQP_URL",
                    "amqps://sentra:hunter4@mq:5671/%2f",
                ),
                ("SENTRA_CLOUD__NOTIFY__AMQP_CA_FILE", &ca),
            ],
        )
        .expect("valid");
        assert_eq!(config.database.url.tls_mode(), "verify-full");
        assert!(config.redis.url.is_tls());
        assert!(config.redis.lock_nodes[0].is_tls() && !config.redis.lock_nodes[1].is_tls());
        assert!(config.redis.tls_certificates().is_some());
        assert!(config.notify.amqp_url.as_ref().is_some_and(AmqpUrl::is_tls));
        let debug = format!("{config:?}");
        for secret in ["s3cret", "hunter", "BEGIN CERTIFICATE"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains(&ca), "{debug}");
        // Without a CA file, rediss:// and amqps:// use the system's trust store.
        let system = load_env(
            None,
            &[
                ("DATABASE_URL", "postgres://h/db?sslmode=verify-full"),
                ("REDIS_URL", "rediss://redis.internal:6380"),
                ("SENTRA_CLOUD__NOTIFY__AMQP_URL", "amqps://mq/%2f"),
            ],
        )
        .expect("valid");
        assert!(system.redis.tls_certificates().is_none());
        assert!(system.notify.amqp_ca_file.is_none());
    }

    #[test]
    fn tls_settings_that_would_be_ignored_or_cannot_work_are_refused() {
        let (_ca, ca) = ca_file();
        let not_pem = config_file("not a certificate\n");
        let not_pem = not_pem.path().to_str().expect("utf-8 path").to_owned();
        let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
            (
                vec![(
                    "DATABASE_URL",
                    format!("{DB}?sslmode=require&sslrootcert={ca}"),
                )],
                "sslrootcert is only used to verify the server",
            ),
            (
                vec![("DATABASE_URL", format!("{DB}?sslrootcert={ca}"))],
                "sslrootcert is only used to verify the server",
            ),
            (
                vec![(
                    "DATABASE_URL",
                    format!("{DB}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
                )],
                "sslrootcert /nonexistent/ca.pem: cannot read it",
            ),
            (
                vec![("DATABASE_URL", format!("{DB}?sslmode=sometimes"))],
                "sometimes",
            ),
            (
                vec![("SENTRA_CLOUD__REDIS__CA_FILE", ca.clone())],
                "SENTRA_CLOUD__REDIS__CA_FILE: invalid value",
            ),
            (
                vec![
                    ("REDIS_URL", "rediss://h".to_owned()),
                    ("SENTRA_CLOUD__REDIS__CA_FILE", not_pem.clone()),
                ],
                "no certificate in it",
            ),
            (
                vec![
                    ("REDIS_URL", "rediss://h".to_owned()),
                    (
                        "SENTRA_CLOUD__REDIS__CA_FILE",
                        "/nonexistent/ca.pem".to_owned(),
                    ),
                ],
                "cannot read it",
            ),
            (
                vec![
                    ("SENTRA_CLOUD__NOTIFY__AMQP_URL", "amqp://mq/%2f".to_owned()),
                    ("SENTRA_CLOUD__NOTIFY__AMQP_CA_FILE", ca.clone()),
                ],
                "notify.amqp_url is not amqps://",
            ),
            (
                vec![("SENTRA_CLOUD__NOTIFY__AMQP_CA_FILE", ca.clone())],
                "notify.amqp_url is not amqps://",
            ),
        ];
        for (vars, fragment) in cases {
            let mut env: Vec<(&str, &str)> = vars
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            if !env.iter().any(|(name, _)| *name == "DATABASE_URL") {
                env.push(("DATABASE_URL", DB));
            }
            let errors = load_env(None, &env).expect_err("refused");
            assert_eq!(errors.len(), 1, "{env:?}: {errors:#?}");
            assert!(errors[0].contains(fragment), "{env:?}: {errors:#?}");
            assert!(!errors[0].contains("s3cret"), "{errors:#?}");
        }
    }

    #[test]
    fn redact_hides_passwords_only() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
            ("rediss://:pw@h:6380/0", "rediss://:***@h:6380/0"),
            ("amqps://u:pw@mq:5671/%2f", "amqps://u:***@mq:5671/%2f"),
            ("redis://u:p@ss:w@rd@h", "redis://u:***@h"),
            (
                "postgres://h/db?user=u&password=pw&x=1",
                "postgres://h/db?user=u&password=***&x=1",
            ),
            ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pa?ss@h/db", "postgres://u:***@h/db"),
            (
                "postgres://h/db?password=pw&user=a@b",
                "postgres://h/db?password=***&user=a@b",
            ),
            ("u:pw@h", "u:***@h"),
            ("pw@h", "***@h"),
            ("notanaddress", "notanaddress"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn debug_never_shows_passwords() {
        let config = load_env(
            None,
            &[
                ("DATABASE_URL", DB),
                ("REDIS_URL", "redis://:hunter2@h:6379"),
                ("REDIS_LOCK_NODES", "redis://:hunter3@a:1"),
                ("SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET", "whsec-hunter4"),
            ],
        )
        .expect("valid");
        assert!(config.booking.webhook_secret.is_some());
        let debug = format!("{config:?}");
        for secret in ["s3cret", "hunter2", "hunter3", "hunter4"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    fn load_loaded(file: Option<&Path>, vars: &[(&str, &str)]) -> Loaded {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), OsString::from(value)))
            .collect();
        load_with(file, &|name| vars.get(name).cloned())
            .unwrap_or_else(|errors| panic!("valid: {errors}"))
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let mut seen = std::collections::HashSet::new();
        for key in KEYS {
            assert!(seen.insert(key.key), "{} twice", key.key);
            assert!(
                !key.doc.is_empty() && !key.doc.contains('\n'),
                "{}",
                key.key
            );
            assert!(key.key.split('.').count() == 2, "{}", key.key);
        }
        // The committed example file is exactly what `config defaults` prints...
        let example = include_str!("../cloud.example.toml");
        assert_eq!(
            example,
            super::example(),
            "regenerate with: sentra-cloud config defaults > cloud/cloud.example.toml"
        );
        // ...and it loads back to the defaults (the database URL has none).
        let file = config_file(example);
        let from_file = load_loaded(Some(file.path()), &[("DATABASE_URL", DB)]);
        let defaults = load_loaded(None, &[("DATABASE_URL", DB)]);
        assert_eq!(
            format!("{:?}", from_file.config),
            format!("{:?}", defaults.config)
        );
        assert!(from_file.warnings.is_empty(), "{:?}", from_file.warnings);
    }

    /// Deployments set these; renaming one would silently drop its setting.
    #[test]
    fn variable_names_stay_as_deployed() {
        let names: Vec<String> = KEYS.iter().map(Key::env_name).collect();
        let expected = [
            "SENTRA_CLOUD__HTTP__LISTEN",
            "SENTRA_CLOUD__HTTP__PUBLIC_URL",
            "DATABASE_URL",
            "REDIS_URL",
            "REDIS_CLUSTER_NODES",
            "REDIS_LOCK_NODES",
            "SENTRA_CLOUD__REDIS__CA_FILE",
            "SENTRA_CLOUD__BOOKING__HOLD_SECS",
            "SENTRA_CLOUD__BOOKING__TURNOVER_BUFFER_DAYS",
            "SENTRA_CLOUD__BOOKING__SWEEP_INTERVAL_MS",
            "SENTRA_CLOUD__BOOKING__RELEASE_DELAY_SECS",
            "SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET",
            "SENTRA_CLOUD__RELEASES__PUBLIC_KEY",
            "SENTRA_CLOUD__RELEASES__SIGNING_KEY_FILE",
            "SENTRA_CLOUD__FLEET__OFFLINE_AFTER_SECS",
            "SENTRA_CLOUD__FLEET__GAUGES_REFRESH_SECS",
            "SENTRA_CLOUD__NOTIFY__AMQP_URL",
            "SENTRA_CLOUD__NOTIFY__AMQP_CA_FILE",
            "SENTRA_CLOUD__NOTIFY__QUEUE",
            "SENTRA_CLOUD__NOTIFY__REMINDER_DAYS",
            "SENTRA_CLOUD__NOTIFY__MAX_ATTEMPTS",
            "SENTRA_CLOUD__NOTIFY__RETRY_BASE_MS",
            "SENTRA_CLOUD__NOTIFY__PUBLISH_INTERVAL_MS",
            "SENTRA_CLOUD__NOTIFY__GATEWAY_URL",
            "SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN",
            "SENTRA_CLOUD__NOTIFY__PHONE_NUMBER_ID",
            "SENTRA_CLOUD__NOTIFY__GATEWAY_TIMEOUT_MS",
            "SENTRA_CLOUD__NOTIFY__GATEWAY_LOOKUP_URL",
            "SENTRA_CLOUD__IDENTITY__REQUIRED",
            "SENTRA_CLOUD__IDENTITY__PROVIDER_URL",
            "SENTRA_CLOUD__IDENTITY__APP_ID",
            "SENTRA_CLOUD__IDENTITY__API_KEY",
            "SENTRA_CLOUD__IDENTITY__NIK_SECRET",
            "SENTRA_CLOUD__IDENTITY__CHECKS_PER_CALLER",
            "SENTRA_CLOUD__IDENTITY__CHECK_WINDOW_SECS",
            "SENTRA_CLOUD__LOG__FORMAT",
            "SENTRA_CLOUD__BLOBS__URL",
        ];
        assert_eq!(names, expected);
    }

    #[test]
    fn the_public_url_is_one_a_box_can_use() {
        let var = "SENTRA_CLOUD__HTTP__PUBLIC_URL";
        let config = load_env(
            None,
            &[("DATABASE_URL", DB), (var, "https://cloud.sentra.id/")],
        )
        .expect("loads");
        assert_eq!(
            config.http.public_url.as_deref(),
            Some("https://cloud.sentra.id")
        );
        let none = load_env(None, &[("DATABASE_URL", DB)]).expect("loads");
        assert_eq!(none.http.public_url, None);
        for bad in [
            "cloud.sentra.id",
            "ftp://cloud.sentra.id",
            "https://ops:pw@cloud.sentra.id",
            "https://cloud.sentra.id/?a=1",
        ] {
            assert!(
                load_env(None, &[("DATABASE_URL", DB), (var, bad)]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations_end_in_secs_or_ms() {
        for key in KEYS.iter().filter(|key| key.kind == Kind::Number) {
            assert!(!key.key.ends_with("_seconds"), "{}: use _secs", key.key);
        }
    }

    #[test]
    fn renamed_keys_still_work_with_a_warning() {
        let file = config_file("[booking]\nhold_seconds = 5\nrelease_delay_seconds = 60\n");
        let loaded = load_loaded(Some(file.path()), &[("DATABASE_URL", DB)]);
        assert_eq!(loaded.config.booking.hold_window.as_secs(), 5);
        assert_eq!(loaded.config.booking.release_delay.as_secs(), 60);
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("`booking.hold_seconds`")
                    && w.contains("deprecated")
                    && w.contains("`booking.hold_secs`"))
        );

        let loaded = load_loaded(
            None,
            &[
                ("DATABASE_URL", DB),
                ("SENTRA_CLOUD__BOOKING__HOLD_SECONDS", "7"),
                ("SENTRA_CLOUD__BOOKING__RELEASE_DELAY_SECS", "8"),
            ],
        );
        assert_eq!(loaded.config.booking.hold_window.as_secs(), 7);
        assert_eq!(loaded.config.booking.release_delay.as_secs(), 8);
        assert_eq!(
            loaded.warnings,
            [
                "SENTRA_CLOUD__BOOKING__HOLD_SECONDS is deprecated: rename it SENTRA_CLOUD__BOOKING__HOLD_SECS"
            ]
        );

        // Both names: the new one wins, and the old one is called out.
        let file = config_file("[booking]\nhold_seconds = 5\nhold_secs = 9\n");
        let loaded = load_loaded(
            Some(file.path()),
            &[
                ("DATABASE_URL", DB),
                ("SENTRA_CLOUD__BOOKING__RELEASE_DELAY_SECONDS", "1"),
                ("SENTRA_CLOUD__BOOKING__RELEASE_DELAY_SECS", "2"),
            ],
        );
        assert_eq!(loaded.config.booking.hold_window.as_secs(), 9);
        assert_eq!(loaded.config.booking.release_delay.as_secs(), 2);
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings.iter().all(|w| w.contains("is ignored")));

        // A bad value under the old name names the old name.
        let errors = load_env(
            None,
            &[
                ("DATABASE_URL", DB),
                ("SENTRA_CLOUD__BOOKING__HOLD_SECONDS", "0"),
            ],
        )
        .expect_err("invalid");
        assert!(errors[0].starts_with("SENTRA_CLOUD__BOOKING__HOLD_SECONDS: invalid value `0`"));
    }

    #[test]
    fn check_shows_values_and_origins_but_no_secret() {
        let file =
            config_file("[notify]\ngateway_url = \"sandbox\"\ngateway_token = \"tok-hunter5\"\n");
        let loaded = load_loaded(
            Some(file.path()),
            &[
                ("DATABASE_URL", DB),
                ("REDIS_LOCK_NODES", "redis://:hunter3@a:1,redis://b:2"),
                ("SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET", "whsec-hunter4"),
                ("SENTRA_CLOUD__IDENTITY__NIK_SECRET", "nik-hunter6"),
                ("SENTRA_CLOUD__BOOKING__HOLD_SECS", "30"),
            ],
        );
        let shown = &loaded.effective;
        for secret in ["s3cret", "hunter"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        for line in [
            "url = \"postgres://sentra:***@db.internal:5432/sentra\"  # from DATABASE_URL",
            "lock_nodes = [\"redis://:***@a:1\", \"redis://b:2\"]  # from REDIS_LOCK_NODES",
            "webhook_secret = \"***\"  # from SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET",
            "hold_secs = 30  # from SENTRA_CLOUD__BOOKING__HOLD_SECS",
            "api_key = \"\"\n",
            "listen = \"0.0.0.0:8090\"\n",
        ] {
            assert!(shown.contains(line), "{line:?} not in:\n{shown}");
        }
        let token = format!(
            "gateway_token = \"***\"  # from notify.gateway_token in {}",
            file.path().display()
        );
        assert!(shown.contains(&token), "{shown}");
        // Secrets have no default to show either.
        assert!(!super::example().contains("***"));
    }

    #[test]
    fn misspelt_variables_are_warned_about() {
        let names = [
            "SENTRA_CLOUD__BOOKING__HOLD_SECS",
            "SENTRA_CLOUD__BOOKING__HOLD_SECONDS",
            "SENTRA_CLOUD__BOOKING__HOLD_SEC",
            "SENTRA_EDGE__API__LISTEN",
            "DATABASE_URL",
        ];
        let warnings = unknown_variables(names.into_iter().map(str::to_owned));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("SENTRA_CLOUD__BOOKING__HOLD_SEC is not"));
    }
}
