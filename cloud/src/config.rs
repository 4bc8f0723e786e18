//! Typed configuration for `sentra-cloud`: the named defaults below, then an optional TOML file
//! (`--config FILE`), then environment variables, later layers winning.
//!
//! This module owns every configuration key, its default and its validation; nothing else in the
//! crate reads the environment or the config file. Invariants:
//! - a [`Config`] is fully validated, so the rest of the crate never sees a bad address or URL;
//! - every problem is reported at once ([`ConfigErrors`]), not only the first one;
//! - the password in a database or Redis URL never appears in `Debug` output or in an error.
//!
//! The file, with every key at its default (`database.url` has none):
//!
//! ```toml
//! [http]
//! listen = "0.0.0.0:8090"        # env SENTRA_CLOUD__HTTP__LISTEN
//!
//! [database]
//! url = "postgres://user:password@host:5432/sentra"   # env DATABASE_URL (required)
//!
//! [redis]
//! url = "redis://127.0.0.1:6379"   # env REDIS_URL
//! lock_nodes = []                  # env REDIS_LOCK_NODES, comma-separated
//!
//! [booking]
//! hold_seconds = 600               # env SENTRA_CLOUD__BOOKING__HOLD_SECONDS
//! turnover_buffer_days = 0         # env SENTRA_CLOUD__BOOKING__TURNOVER_BUFFER_DAYS
//! sweep_interval_ms = 1000         # env SENTRA_CLOUD__BOOKING__SWEEP_INTERVAL_MS
//! release_delay_seconds = 0        # env SENTRA_CLOUD__BOOKING__RELEASE_DELAY_SECONDS
//!
//! [payments]
//! webhook_secret = ""              # env SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET (never logged)
//!
//! [releases]
//! signing_key_file = ""            # env SENTRA_CLOUD__RELEASES__SIGNING_KEY_FILE (release keygen)
//!
//! [fleet]
//! offline_after_secs = 180         # env SENTRA_CLOUD__FLEET__OFFLINE_AFTER_SECS
//!
//! [notify]
//! amqp_url = ""                    # env SENTRA_CLOUD__NOTIFY__AMQP_URL (empty: no publisher)
//! queue = "sentra.notifications"   # env SENTRA_CLOUD__NOTIFY__QUEUE
//! reminder_days = 90               # env SENTRA_CLOUD__NOTIFY__REMINDER_DAYS
//! max_attempts = 5                 # env SENTRA_CLOUD__NOTIFY__MAX_ATTEMPTS
//! retry_base_ms = 2000             # env SENTRA_CLOUD__NOTIFY__RETRY_BASE_MS
//! publish_interval_ms = 1000       # env SENTRA_CLOUD__NOTIFY__PUBLISH_INTERVAL_MS
//! gateway_url = ""                 # env SENTRA_CLOUD__NOTIFY__GATEWAY_URL ("sandbox", or the API base)
//! gateway_token = ""               # env SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN (never logged)
//! phone_number_id = "sandbox"      # env SENTRA_CLOUD__NOTIFY__PHONE_NUMBER_ID
//! gateway_timeout_ms = 10000       # env SENTRA_CLOUD__NOTIFY__GATEWAY_TIMEOUT_MS
//! gateway_lookup_url = ""          # env SENTRA_CLOUD__NOTIFY__GATEWAY_LOOKUP_URL
//!
//! [identity]
//! required = true                  # env SENTRA_CLOUD__IDENTITY__REQUIRED (refuse holds of unverified customers)
//! provider_url = ""                # env SENTRA_CLOUD__IDENTITY__PROVIDER_URL ("sandbox", or the API base)
//! app_id = ""                      # env SENTRA_CLOUD__IDENTITY__APP_ID
//! api_key = ""                     # env SENTRA_CLOUD__IDENTITY__API_KEY (never logged)
//! nik_secret = ""                  # env SENTRA_CLOUD__IDENTITY__NIK_SECRET (HMAC key for NIKs; never logged)
//! checks_per_caller = 30           # env SENTRA_CLOUD__IDENTITY__CHECKS_PER_CALLER (provider calls per device or token per window)
//! check_window_secs = 3600         # env SENTRA_CLOUD__IDENTITY__CHECK_WINDOW_SECS
//! ```

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use redis::{ConnectionInfo, IntoConnectionInfo};
use sqlx::postgres::PgConnectOptions;

/// Where the HTTP server listens: every interface, because replicas are reached by a load
/// balancer over the network; port 8090 is the contract's (CONTRACT.md).
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:8090";

/// PostgreSQL has no default URL: it is the record, and writing to a database that happened to
/// be reachable is worse than refusing to start.
pub const DEFAULT_DATABASE_URL: Option<&str> = None;

/// Redis on the same machine: what a laptop and a one-box installation have. Redis is a fast
/// path rebuilt from PostgreSQL, so a wrong default costs speed, never correctness.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// No Redlock nodes: asset locks are then a plain `SET NX PX` on [`DEFAULT_REDIS_URL`]'s node,
/// which is right for a single Redis. Production lists independent nodes (an odd number).
pub const DEFAULT_REDIS_LOCK_NODES: &[&str] = &[];

/// How long a hold lives without payment: the payment window of card and e-wallet checkouts
/// (DESIGN.md), after which the slot is free again.
pub const DEFAULT_HOLD_SECONDS: u64 = 600;
/// Days an asset stays blocked after a rental for cleaning and inspection. None by default: a
/// branch that needs turnover days sets them, and changing it only affects new bookings.
pub const DEFAULT_TURNOVER_BUFFER_DAYS: u64 = 0;
/// How often each replica sweeps due holds. A hold expires at most this late; sweeping is
/// `FOR UPDATE SKIP LOCKED`, so replicas sweeping together never wait on one another.
pub const DEFAULT_SWEEP_INTERVAL_MS: u64 = 1000;
/// How long after `COMPLETED` the rest of a pre-authorisation is released. At once by default:
/// the charges (damage, late return) are known when the counter completes the rental, so
/// holding the customer's limit longer only costs them; a business that inspects later sets a
/// delay. Never more than [`MAX_RELEASE_DELAY_SECONDS`]: the gateways' terms (and issue 4) say the
/// rest is released at most 24 h after completion.
pub const DEFAULT_RELEASE_DELAY_SECONDS: u64 = 0;
pub const MAX_RELEASE_DELAY_SECONDS: u64 = 86_400;
/// The longest hold window accepted (a day): longer is a reservation, not a payment window.
pub const MAX_HOLD_SECONDS: u64 = 86_400;
/// The longest turnover buffer accepted (the protocol's: branches refuse a calendar with more).
pub const MAX_TURNOVER_BUFFER_DAYS: u64 = sentra_protocol::day::MAX_TURNOVER_BUFFER_DAYS as u64;

/// Environment variable overriding `http.listen`.
pub const ENV_HTTP_LISTEN: &str = "SENTRA_CLOUD__HTTP__LISTEN";
/// Environment variable overriding `database.url` (the name every PostgreSQL tool knows).
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";
/// Environment variable overriding `redis.url`.
pub const ENV_REDIS_URL: &str = "REDIS_URL";
/// Environment variable overriding `redis.lock_nodes`: Redis URLs separated by commas; empty
/// means none.
pub const ENV_REDIS_LOCK_NODES: &str = "REDIS_LOCK_NODES";

/// Environment variables of the booking keys.
pub const ENV_HOLD_SECONDS: &str = "SENTRA_CLOUD__BOOKING__HOLD_SECONDS";
pub const ENV_TURNOVER_BUFFER_DAYS: &str = "SENTRA_CLOUD__BOOKING__TURNOVER_BUFFER_DAYS";
pub const ENV_SWEEP_INTERVAL_MS: &str = "SENTRA_CLOUD__BOOKING__SWEEP_INTERVAL_MS";
pub const ENV_RELEASE_DELAY_SECONDS: &str = "SENTRA_CLOUD__BOOKING__RELEASE_DELAY_SECONDS";
/// The shared secret the payment gateway signs webhooks with. Unset: every webhook is refused.
pub const ENV_WEBHOOK_SECRET: &str = "SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET";

/// The ed25519 release signing key (`sentra-cloud release keygen FILE`): only `release publish`
/// reads it. Unset: publishing refuses, so nothing unsigned is ever served.
pub const ENV_SIGNING_KEY_FILE: &str = "SENTRA_CLOUD__RELEASES__SIGNING_KEY_FILE";
/// A device is shown offline when its last heartbeat is older than this: three missed beats at
/// the appliance's default 60 s interval, so one lost request does not flag a branch.
pub const DEFAULT_OFFLINE_AFTER_SECS: u64 = 180;
pub const ENV_OFFLINE_AFTER_SECS: &str = "SENTRA_CLOUD__FLEET__OFFLINE_AFTER_SECS";

/// Customer notifications (`notify`). No broker by default: a replica without one keeps the
/// schedule in PostgreSQL, where it waits until a replica (or `notify publish-due`) with a
/// broker publishes it.
pub const DEFAULT_NOTIFY_AMQP_URL: &str = "";
/// The work queue's name; the retry queues and the dead-letter queue are named after it.
pub const DEFAULT_NOTIFY_QUEUE: &str = "sentra.notifications";
/// A service reminder is due this long after the invoice (issue 8: H+90).
pub const DEFAULT_REMINDER_DAYS: u64 = 90;
/// Gateway attempts per notification before it is dead-lettered.
pub const DEFAULT_NOTIFY_MAX_ATTEMPTS: u64 = 5;
/// The first retry waits this long, each later one twice the one before (2 s, 4 s, 8 s, 16 s):
/// long enough for a gateway's brief outage or rate limit to pass.
pub const DEFAULT_NOTIFY_RETRY_BASE_MS: u64 = 2000;
/// How often each replica looks for due notifications; they go out at most this late.
pub const DEFAULT_NOTIFY_PUBLISH_INTERVAL_MS: u64 = 1000;
/// No gateway by default: `serve` then runs no worker (`notify worker` can run elsewhere).
pub const DEFAULT_NOTIFY_GATEWAY_URL: &str = "";
/// The WhatsApp Business phone number id messages are sent from; the sandbox takes any.
pub const DEFAULT_NOTIFY_PHONE_NUMBER_ID: &str = "sandbox";
/// How long one gateway call may take; a send found unfinished is trusted to its first worker
/// for twice this long before another one takes it over.
pub const DEFAULT_NOTIFY_GATEWAY_TIMEOUT_MS: u64 = 10_000;
pub const ENV_NOTIFY_AMQP_URL: &str = "SENTRA_CLOUD__NOTIFY__AMQP_URL";
pub const ENV_NOTIFY_QUEUE: &str = "SENTRA_CLOUD__NOTIFY__QUEUE";
pub const ENV_REMINDER_DAYS: &str = "SENTRA_CLOUD__NOTIFY__REMINDER_DAYS";
pub const ENV_NOTIFY_MAX_ATTEMPTS: &str = "SENTRA_CLOUD__NOTIFY__MAX_ATTEMPTS";
pub const ENV_NOTIFY_RETRY_BASE_MS: &str = "SENTRA_CLOUD__NOTIFY__RETRY_BASE_MS";
pub const ENV_NOTIFY_PUBLISH_INTERVAL_MS: &str = "SENTRA_CLOUD__NOTIFY__PUBLISH_INTERVAL_MS";
pub const ENV_NOTIFY_GATEWAY_URL: &str = "SENTRA_CLOUD__NOTIFY__GATEWAY_URL";
pub const ENV_NOTIFY_GATEWAY_TOKEN: &str = "SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN";
pub const ENV_NOTIFY_PHONE_NUMBER_ID: &str = "SENTRA_CLOUD__NOTIFY__PHONE_NUMBER_ID";
pub const ENV_NOTIFY_GATEWAY_TIMEOUT_MS: &str = "SENTRA_CLOUD__NOTIFY__GATEWAY_TIMEOUT_MS";
pub const ENV_NOTIFY_GATEWAY_LOOKUP_URL: &str = "SENTRA_CLOUD__NOTIFY__GATEWAY_LOOKUP_URL";
const KEY_NOTIFY_AMQP_URL: &str = "notify.amqp_url";
const KEY_NOTIFY_QUEUE: &str = "notify.queue";
const KEY_REMINDER_DAYS: &str = "notify.reminder_days";
const KEY_NOTIFY_MAX_ATTEMPTS: &str = "notify.max_attempts";
const KEY_NOTIFY_RETRY_BASE_MS: &str = "notify.retry_base_ms";
const KEY_NOTIFY_PUBLISH_INTERVAL_MS: &str = "notify.publish_interval_ms";
const KEY_NOTIFY_GATEWAY_URL: &str = "notify.gateway_url";
const KEY_NOTIFY_GATEWAY_TOKEN: &str = "notify.gateway_token";
const KEY_NOTIFY_PHONE_NUMBER_ID: &str = "notify.phone_number_id";
const KEY_NOTIFY_GATEWAY_TIMEOUT_MS: &str = "notify.gateway_timeout_ms";
const KEY_NOTIFY_GATEWAY_LOOKUP_URL: &str = "notify.gateway_lookup_url";

/// Identity checks (`identity`): the gate is on by default (issue 8: no first rental without a
/// verified KTP); without a provider, checks answer 503 and nobody new can be verified.
pub const ENV_IDENTITY_REQUIRED: &str = "SENTRA_CLOUD__IDENTITY__REQUIRED";
pub const ENV_IDENTITY_PROVIDER_URL: &str = "SENTRA_CLOUD__IDENTITY__PROVIDER_URL";
pub const ENV_IDENTITY_APP_ID: &str = "SENTRA_CLOUD__IDENTITY__APP_ID";
pub const ENV_IDENTITY_API_KEY: &str = "SENTRA_CLOUD__IDENTITY__API_KEY";
pub const ENV_IDENTITY_NIK_SECRET: &str = "SENTRA_CLOUD__IDENTITY__NIK_SECRET";
const KEY_IDENTITY_REQUIRED: &str = "identity.required";
const KEY_IDENTITY_PROVIDER_URL: &str = "identity.provider_url";
const KEY_IDENTITY_APP_ID: &str = "identity.app_id";
const KEY_IDENTITY_API_KEY: &str = "identity.api_key";
const KEY_IDENTITY_NIK_SECRET: &str = "identity.nik_secret";
/// Identity checks each caller (a device, an API token) may send the provider per window, per
/// replica: every check is a paid provider call and a stolen device or token must not run up
/// the bill or probe KTPs. A busy counter checks a few customers an hour; 30 leaves room for
/// retakes without letting a script run.
pub const ENV_IDENTITY_CHECKS_PER_CALLER: &str = "SENTRA_CLOUD__IDENTITY__CHECKS_PER_CALLER";
pub const ENV_IDENTITY_CHECK_WINDOW_SECS: &str = "SENTRA_CLOUD__IDENTITY__CHECK_WINDOW_SECS";
pub const DEFAULT_IDENTITY_CHECKS_PER_CALLER: u64 = 30;
pub const DEFAULT_IDENTITY_CHECK_WINDOW_SECS: u64 = 3600;
const KEY_IDENTITY_CHECKS_PER_CALLER: &str = "identity.checks_per_caller";
const KEY_IDENTITY_CHECK_WINDOW_SECS: &str = "identity.check_window_secs";

/// Where inspection photos are kept: an `object_store` URL. The local filesystem by default (one
/// replica, or a shared mount); `s3://bucket/prefix` with the `s3` cargo feature and the usual
/// `AWS_*` variables (endpoint, region, keys) for S3 or an S3-compatible store.
pub const DEFAULT_BLOBS_URL: &str = "file:///var/lib/sentra-cloud/blobs";
pub const ENV_BLOBS_URL: &str = "SENTRA_CLOUD__BLOBS__URL";

const KEY_BLOBS_URL: &str = "blobs.url";
const KEY_SIGNING_KEY_FILE: &str = "releases.signing_key_file";
const KEY_OFFLINE_AFTER_SECS: &str = "fleet.offline_after_secs";
const KEY_HTTP_LISTEN: &str = "http.listen";
const KEY_HOLD_SECONDS: &str = "booking.hold_seconds";
const KEY_TURNOVER_BUFFER_DAYS: &str = "booking.turnover_buffer_days";
const KEY_SWEEP_INTERVAL_MS: &str = "booking.sweep_interval_ms";
const KEY_RELEASE_DELAY_SECONDS: &str = "booking.release_delay_seconds";
const KEY_WEBHOOK_SECRET: &str = "payments.webhook_secret";
const KEY_DATABASE_URL: &str = "database.url";
const KEY_REDIS_URL: &str = "redis.url";
const KEY_REDIS_LOCK_NODES: &str = "redis.lock_nodes";
const KNOWN_KEYS: &[&str] = &[
    KEY_HTTP_LISTEN,
    KEY_DATABASE_URL,
    KEY_REDIS_URL,
    KEY_REDIS_LOCK_NODES,
    KEY_HOLD_SECONDS,
    KEY_TURNOVER_BUFFER_DAYS,
    KEY_SWEEP_INTERVAL_MS,
    KEY_RELEASE_DELAY_SECONDS,
    KEY_WEBHOOK_SECRET,
    KEY_SIGNING_KEY_FILE,
    KEY_OFFLINE_AFTER_SECS,
    KEY_NOTIFY_AMQP_URL,
    KEY_NOTIFY_QUEUE,
    KEY_REMINDER_DAYS,
    KEY_NOTIFY_MAX_ATTEMPTS,
    KEY_NOTIFY_RETRY_BASE_MS,
    KEY_NOTIFY_PUBLISH_INTERVAL_MS,
    KEY_NOTIFY_GATEWAY_URL,
    KEY_NOTIFY_GATEWAY_TOKEN,
    KEY_NOTIFY_PHONE_NUMBER_ID,
    KEY_NOTIFY_GATEWAY_TIMEOUT_MS,
    KEY_NOTIFY_GATEWAY_LOOKUP_URL,
    KEY_IDENTITY_REQUIRED,
    KEY_IDENTITY_PROVIDER_URL,
    KEY_IDENTITY_APP_ID,
    KEY_IDENTITY_API_KEY,
    KEY_IDENTITY_NIK_SECRET,
    KEY_IDENTITY_CHECKS_PER_CALLER,
    KEY_IDENTITY_CHECK_WINDOW_SECS,
    KEY_BLOBS_URL,
];

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
    pub check_window: std::time::Duration,
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
    pub queue: String,
    pub reminder_after: std::time::Duration,
    pub max_attempts: u32,
    pub retry_base: std::time::Duration,
    pub publish_interval: std::time::Duration,
    pub gateway: Option<GatewayTarget>,
    pub gateway_token: Option<Secret>,
    pub phone_number_id: String,
    pub gateway_timeout: std::time::Duration,
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
        if raw.starts_with("amqps://") {
            return Err("TLS (amqps://) is not built into this version; use amqp://".to_owned());
        }
        if !raw.starts_with("amqp://") {
            return Err(
                "expected an amqp:// URL, such as amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            );
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
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

fn parse_gateway(raw: &str) -> Result<Option<GatewayTarget>, String> {
    match raw {
        "" => Ok(None),
        "sandbox" => Ok(Some(GatewayTarget::Sandbox)),
        url if url.starts_with("https://") || url.starts_with("http://") => Ok(Some(
            GatewayTarget::Url(url.trim_end_matches('/').to_owned()),
        )),
        _ => Err("expected \"sandbox\" or an http(s):// URL".to_owned()),
    }
}

fn parse_http_url(raw: &str) -> Result<Option<String>, String> {
    match raw {
        "" => Ok(None),
        url if url.starts_with("https://") || url.starts_with("http://") => {
            Ok(Some(url.trim_end_matches('/').to_owned()))
        }
        _ => Err("expected an http(s):// URL".to_owned()),
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
}

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub offline_after: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct BookingConfig {
    pub hold_window: std::time::Duration,
    pub turnover_buffer_days: u32,
    pub sweep_interval: std::time::Duration,
    /// How long after `COMPLETED` the rest of a pre-authorisation is released.
    pub release_delay: std::time::Duration,
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
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The node for the calendar, waitlists and (without `lock_nodes`) locks.
    pub url: RedisUrl,
    /// Independent nodes for Redlock; empty means "lock on `url`".
    pub lock_nodes: Vec<RedisUrl>,
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
        let options = PgConnectOptions::from_str(raw).map_err(|error| error.to_string())?;
        Ok(Self {
            raw: raw.to_owned(),
            options,
        })
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
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
        if raw.starts_with("rediss://") {
            return Err("TLS (rediss://) is not built into this version; use redis://".to_owned());
        }
        if !raw.starts_with("redis://") {
            return Err("expected a redis:// URL".to_owned());
        }
        let info = raw
            .into_connection_info()
            .map_err(|error| error.to_string())?;
        Ok(Self {
            raw: raw.to_owned(),
            info,
        })
    }

    pub fn connection_info(&self) -> ConnectionInfo {
        self.info.clone()
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
    Env(&'static str),
    File { path: PathBuf, key: &'static str },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
    #[error("config file {}: unknown key `{key}`; known keys: {}", path.display(), KNOWN_KEYS.join(", "))]
    UnknownKey { path: PathBuf, key: String },
    #[error("{origin}: expected {expected}, found {found}")]
    WrongType {
        origin: Origin,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{var}: the value is not valid UTF-8")]
    NotUnicode { var: &'static str },
    #[error("{what} is not set: set {env} or `{key}` in the config file")]
    Missing {
        what: &'static str,
        env: &'static str,
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

/// Loads the configuration from `file` (if given) and the process environment.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_with(file, &|name| std::env::var_os(name))
}

/// Values as found, before validation, each with where it came from.
#[derive(Default)]
struct Raw {
    http_listen: Option<(String, Origin)>,
    database_url: Option<(String, Origin)>,
    redis_url: Option<(String, Origin)>,
    redis_lock_nodes: Option<(Vec<String>, Origin)>,
    hold_seconds: Option<(String, Origin)>,
    turnover_buffer_days: Option<(String, Origin)>,
    sweep_interval_ms: Option<(String, Origin)>,
    release_delay_seconds: Option<(String, Origin)>,
    webhook_secret: Option<(String, Origin)>,
    signing_key_file: Option<(String, Origin)>,
    offline_after_secs: Option<(String, Origin)>,
    notify_amqp_url: Option<(String, Origin)>,
    notify_queue: Option<(String, Origin)>,
    reminder_days: Option<(String, Origin)>,
    notify_max_attempts: Option<(String, Origin)>,
    notify_retry_base_ms: Option<(String, Origin)>,
    notify_publish_interval_ms: Option<(String, Origin)>,
    notify_gateway_url: Option<(String, Origin)>,
    notify_gateway_token: Option<(String, Origin)>,
    notify_phone_number_id: Option<(String, Origin)>,
    notify_gateway_timeout_ms: Option<(String, Origin)>,
    notify_gateway_lookup_url: Option<(String, Origin)>,
    identity_required: Option<(String, Origin)>,
    identity_provider_url: Option<(String, Origin)>,
    identity_app_id: Option<(String, Origin)>,
    identity_api_key: Option<(String, Origin)>,
    identity_nik_secret: Option<(String, Origin)>,
    identity_checks_per_caller: Option<(String, Origin)>,
    identity_check_window_secs: Option<(String, Origin)>,
    blobs_url: Option<(String, Origin)>,
}

/// [`load`] with the environment passed in, so tests do not touch the process environment.
pub fn load_with(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut raw = Raw::default();

    if let Some(path) = file {
        read_file(path, &mut raw, &mut errors);
    }
    read_env(env, &mut raw, &mut errors);

    let listen = match raw.http_listen {
        Some((value, origin)) => parse_listen(&value, origin, &mut errors),
        None => parse_listen(
            DEFAULT_HTTP_LISTEN,
            Origin::Env(ENV_HTTP_LISTEN),
            &mut errors,
        ),
    };
    let database_url = match raw
        .database_url
        .or_else(|| DEFAULT_DATABASE_URL.map(|url| (url.to_owned(), Origin::Env(ENV_DATABASE_URL))))
    {
        Some((value, origin)) => validate(&value, origin, DatabaseUrl::parse, &mut errors),
        None => {
            errors.push(ConfigError::Missing {
                what: "the PostgreSQL URL",
                env: ENV_DATABASE_URL,
                key: KEY_DATABASE_URL,
            });
            None
        }
    };
    let redis_url = match raw.redis_url {
        Some((value, origin)) => validate(&value, origin, RedisUrl::parse, &mut errors),
        None => validate(
            DEFAULT_REDIS_URL,
            Origin::Env(ENV_REDIS_URL),
            RedisUrl::parse,
            &mut errors,
        ),
    };
    let (lock_node_values, lock_nodes_origin) = raw.redis_lock_nodes.unwrap_or_else(|| {
        (
            DEFAULT_REDIS_LOCK_NODES
                .iter()
                .map(|&node| node.to_owned())
                .collect(),
            Origin::Env(ENV_REDIS_LOCK_NODES),
        )
    });
    let lock_nodes: Vec<RedisUrl> = lock_node_values
        .iter()
        .filter_map(|node| {
            validate(
                node,
                lock_nodes_origin.clone(),
                RedisUrl::parse,
                &mut errors,
            )
        })
        .collect();

    let mut number =
        |raw: Option<(String, Origin)>, env, default: u64, range: std::ops::RangeInclusive<u64>| {
            let (value, origin) = raw.unwrap_or_else(|| (default.to_string(), Origin::Env(env)));
            validate(
                &value,
                origin,
                |value| match value.parse::<u64>() {
                    Ok(number) if range.contains(&number) => Ok(number),
                    _ => Err(format!(
                        "expected a whole number from {} to {}",
                        range.start(),
                        range.end()
                    )),
                },
                &mut errors,
            )
            .unwrap_or(default)
        };
    let hold_seconds = number(
        raw.hold_seconds,
        ENV_HOLD_SECONDS,
        DEFAULT_HOLD_SECONDS,
        1..=MAX_HOLD_SECONDS,
    );
    let turnover_buffer_days = number(
        raw.turnover_buffer_days,
        ENV_TURNOVER_BUFFER_DAYS,
        DEFAULT_TURNOVER_BUFFER_DAYS,
        0..=MAX_TURNOVER_BUFFER_DAYS,
    );
    let sweep_interval_ms = number(
        raw.sweep_interval_ms,
        ENV_SWEEP_INTERVAL_MS,
        DEFAULT_SWEEP_INTERVAL_MS,
        10..=60_000,
    );
    let release_delay_seconds = number(
        raw.release_delay_seconds,
        ENV_RELEASE_DELAY_SECONDS,
        DEFAULT_RELEASE_DELAY_SECONDS,
        0..=MAX_RELEASE_DELAY_SECONDS,
    );
    let offline_after_secs = number(
        raw.offline_after_secs,
        ENV_OFFLINE_AFTER_SECS,
        DEFAULT_OFFLINE_AFTER_SECS,
        10..=86_400,
    );
    let reminder_days = number(
        raw.reminder_days,
        ENV_REMINDER_DAYS,
        DEFAULT_REMINDER_DAYS,
        1..=3650,
    );
    let notify_max_attempts = number(
        raw.notify_max_attempts,
        ENV_NOTIFY_MAX_ATTEMPTS,
        DEFAULT_NOTIFY_MAX_ATTEMPTS,
        1..=20,
    );
    let notify_retry_base_ms = number(
        raw.notify_retry_base_ms,
        ENV_NOTIFY_RETRY_BASE_MS,
        DEFAULT_NOTIFY_RETRY_BASE_MS,
        10..=3_600_000,
    );
    let notify_publish_interval_ms = number(
        raw.notify_publish_interval_ms,
        ENV_NOTIFY_PUBLISH_INTERVAL_MS,
        DEFAULT_NOTIFY_PUBLISH_INTERVAL_MS,
        10..=600_000,
    );
    let notify_gateway_timeout_ms = number(
        raw.notify_gateway_timeout_ms,
        ENV_NOTIFY_GATEWAY_TIMEOUT_MS,
        DEFAULT_NOTIFY_GATEWAY_TIMEOUT_MS,
        100..=120_000,
    );
    let identity_checks_per_caller = number(
        raw.identity_checks_per_caller,
        ENV_IDENTITY_CHECKS_PER_CALLER,
        DEFAULT_IDENTITY_CHECKS_PER_CALLER,
        1..=10_000,
    );
    let identity_check_window_secs = number(
        raw.identity_check_window_secs,
        ENV_IDENTITY_CHECK_WINDOW_SECS,
        DEFAULT_IDENTITY_CHECK_WINDOW_SECS,
        1..=86_400,
    );
    let text = |raw: Option<(String, Origin)>, env, default: &str| {
        raw.unwrap_or_else(|| (default.to_owned(), Origin::Env(env)))
    };
    let (value, origin) = text(
        raw.notify_amqp_url,
        ENV_NOTIFY_AMQP_URL,
        DEFAULT_NOTIFY_AMQP_URL,
    );
    let amqp_url = if value.is_empty() {
        None
    } else {
        validate(&value, origin, AmqpUrl::parse, &mut errors)
    };
    let (value, origin) = text(raw.notify_queue, ENV_NOTIFY_QUEUE, DEFAULT_NOTIFY_QUEUE);
    let notify_queue = validate(&value, origin, parse_queue, &mut errors)
        .unwrap_or_else(|| DEFAULT_NOTIFY_QUEUE.to_owned());
    let (value, origin) = text(
        raw.notify_gateway_url,
        ENV_NOTIFY_GATEWAY_URL,
        DEFAULT_NOTIFY_GATEWAY_URL,
    );
    let gateway = validate(&value, origin, parse_gateway, &mut errors).flatten();
    let (value, origin) = text(
        raw.notify_gateway_lookup_url,
        ENV_NOTIFY_GATEWAY_LOOKUP_URL,
        "",
    );
    let gateway_lookup_url = validate(&value, origin, parse_http_url, &mut errors).flatten();
    let (value, origin) = text(
        raw.notify_phone_number_id,
        ENV_NOTIFY_PHONE_NUMBER_ID,
        DEFAULT_NOTIFY_PHONE_NUMBER_ID,
    );
    let phone_number_id = validate(
        &value,
        origin,
        |value| {
            if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
                Ok(value.to_owned())
            } else {
                Err("expected the phone number id: letters and digits".to_owned())
            }
        },
        &mut errors,
    )
    .unwrap_or_default();
    let gateway_token = raw
        .notify_gateway_token
        .map(|(value, _)| value)
        .filter(|value| !value.is_empty())
        .map(Secret);
    if matches!(gateway, Some(GatewayTarget::Url(_))) && gateway_token.is_none() {
        errors.push(ConfigError::Missing {
            what: "the messaging gateway's access token",
            env: ENV_NOTIFY_GATEWAY_TOKEN,
            key: KEY_NOTIFY_GATEWAY_TOKEN,
        });
    }
    let notify = NotifyConfig {
        amqp_url,
        queue: notify_queue,
        reminder_after: std::time::Duration::from_secs(reminder_days * 86_400),
        max_attempts: u32::try_from(notify_max_attempts).expect("validated to at most 20"),
        retry_base: std::time::Duration::from_millis(notify_retry_base_ms),
        publish_interval: std::time::Duration::from_millis(notify_publish_interval_ms),
        gateway,
        gateway_token,
        phone_number_id,
        gateway_timeout: std::time::Duration::from_millis(notify_gateway_timeout_ms),
        gateway_lookup_url,
    };
    let (blobs_value, blobs_origin) = raw
        .blobs_url
        .unwrap_or_else(|| (DEFAULT_BLOBS_URL.to_owned(), Origin::Env(ENV_BLOBS_URL)));
    let blobs_url = validate(&blobs_value, blobs_origin, parse_blobs_url, &mut errors);
    let signing_key_file = raw
        .signing_key_file
        .map(|(value, _)| value)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let webhook_secret = raw
        .webhook_secret
        .map(|(value, _)| value)
        .filter(|value| !value.is_empty())
        .map(Secret);
    let (value, origin) = text(raw.identity_required, ENV_IDENTITY_REQUIRED, "true");
    let identity_required = validate(
        &value,
        origin,
        |value| match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        },
        &mut errors,
    )
    .unwrap_or(true);
    let (value, origin) = text(raw.identity_provider_url, ENV_IDENTITY_PROVIDER_URL, "");
    let identity_provider = match value.as_str() {
        "sandbox" => Some(IdentityProviderUrl::Sandbox),
        _ => validate(&value, origin, parse_http_url, &mut errors)
            .flatten()
            .map(IdentityProviderUrl::Url),
    };
    let secret = |raw: Option<(String, Origin)>| {
        raw.map(|(value, _)| value)
            .filter(|value| !value.is_empty())
            .map(Secret)
    };
    let identity = IdentityConfig {
        required: identity_required,
        provider: identity_provider,
        app_id: raw
            .identity_app_id
            .map(|(value, _)| value)
            .unwrap_or_default(),
        api_key: secret(raw.identity_api_key),
        nik_secret: secret(raw.identity_nik_secret),
        checks_per_caller: u32::try_from(identity_checks_per_caller).unwrap_or(u32::MAX),
        check_window: std::time::Duration::from_secs(identity_check_window_secs),
    };
    let booking = BookingConfig {
        hold_window: std::time::Duration::from_secs(hold_seconds),
        turnover_buffer_days: u32::try_from(turnover_buffer_days)
            .expect("validated to at most MAX_TURNOVER_BUFFER_DAYS"),
        sweep_interval: std::time::Duration::from_millis(sweep_interval_ms),
        release_delay: std::time::Duration::from_secs(release_delay_seconds),
        webhook_secret,
    };

    match (listen, database_url, redis_url, blobs_url) {
        (Some(listen), Some(database_url), Some(redis_url), Some(blobs_url))
            if errors.is_empty() =>
        {
            Ok(Config {
                booking,
                blobs: BlobsConfig { url: blobs_url },
                notify,
                identity,
                releases: ReleasesConfig { signing_key_file },
                fleet: FleetConfig {
                    offline_after: std::time::Duration::from_secs(offline_after_secs),
                },
                http: HttpConfig { listen },
                database: DatabaseConfig { url: database_url },
                redis: RedisConfig {
                    url: redis_url,
                    lock_nodes,
                },
            })
        }
        _ => Err(ConfigErrors(errors)),
    }
}

fn read_file(path: &Path, raw: &mut Raw, errors: &mut Vec<ConfigError>) {
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
    let origin = |key| Origin::File {
        path: path.to_owned(),
        key,
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
            let key = format!("{section_name}.{name}");
            match key.as_str() {
                KEY_HTTP_LISTEN => {
                    raw.http_listen = string_value(value, origin(KEY_HTTP_LISTEN), errors);
                }
                KEY_DATABASE_URL => {
                    raw.database_url = string_value(value, origin(KEY_DATABASE_URL), errors);
                }
                KEY_REDIS_URL => {
                    raw.redis_url = string_value(value, origin(KEY_REDIS_URL), errors);
                }
                KEY_REDIS_LOCK_NODES => {
                    raw.redis_lock_nodes =
                        string_array_value(value, origin(KEY_REDIS_LOCK_NODES), errors);
                }
                KEY_HOLD_SECONDS => {
                    raw.hold_seconds = number_value(value, origin(KEY_HOLD_SECONDS), errors);
                }
                KEY_TURNOVER_BUFFER_DAYS => {
                    raw.turnover_buffer_days =
                        number_value(value, origin(KEY_TURNOVER_BUFFER_DAYS), errors);
                }
                KEY_SWEEP_INTERVAL_MS => {
                    raw.sweep_interval_ms =
                        number_value(value, origin(KEY_SWEEP_INTERVAL_MS), errors);
                }
                KEY_RELEASE_DELAY_SECONDS => {
                    raw.release_delay_seconds =
                        number_value(value, origin(KEY_RELEASE_DELAY_SECONDS), errors);
                }
                KEY_WEBHOOK_SECRET => {
                    raw.webhook_secret = string_value(value, origin(KEY_WEBHOOK_SECRET), errors);
                }
                KEY_SIGNING_KEY_FILE => {
                    raw.signing_key_file =
                        string_value(value, origin(KEY_SIGNING_KEY_FILE), errors);
                }
                KEY_OFFLINE_AFTER_SECS => {
                    raw.offline_after_secs =
                        number_value(value, origin(KEY_OFFLINE_AFTER_SECS), errors);
                }
                KEY_NOTIFY_AMQP_URL => {
                    raw.notify_amqp_url = string_value(value, origin(KEY_NOTIFY_AMQP_URL), errors);
                }
                KEY_NOTIFY_QUEUE => {
                    raw.notify_queue = string_value(value, origin(KEY_NOTIFY_QUEUE), errors);
                }
                KEY_REMINDER_DAYS => {
                    raw.reminder_days = number_value(value, origin(KEY_REMINDER_DAYS), errors);
                }
                KEY_NOTIFY_MAX_ATTEMPTS => {
                    raw.notify_max_attempts =
                        number_value(value, origin(KEY_NOTIFY_MAX_ATTEMPTS), errors);
                }
                KEY_NOTIFY_RETRY_BASE_MS => {
                    raw.notify_retry_base_ms =
                        number_value(value, origin(KEY_NOTIFY_RETRY_BASE_MS), errors);
                }
                KEY_NOTIFY_PUBLISH_INTERVAL_MS => {
                    raw.notify_publish_interval_ms =
                        number_value(value, origin(KEY_NOTIFY_PUBLISH_INTERVAL_MS), errors);
                }
                KEY_NOTIFY_GATEWAY_URL => {
                    raw.notify_gateway_url =
                        string_value(value, origin(KEY_NOTIFY_GATEWAY_URL), errors);
                }
                KEY_NOTIFY_GATEWAY_TOKEN => {
                    raw.notify_gateway_token =
                        string_value(value, origin(KEY_NOTIFY_GATEWAY_TOKEN), errors);
                }
                KEY_IDENTITY_REQUIRED => {
                    // A TOML boolean, kept as text so the file and the environment validate alike.
                    raw.identity_required = match value.as_bool() {
                        Some(flag) => Some((flag.to_string(), origin(KEY_IDENTITY_REQUIRED))),
                        None => string_value(value, origin(KEY_IDENTITY_REQUIRED), errors),
                    };
                }
                KEY_IDENTITY_PROVIDER_URL => {
                    raw.identity_provider_url =
                        string_value(value, origin(KEY_IDENTITY_PROVIDER_URL), errors);
                }
                KEY_IDENTITY_APP_ID => {
                    raw.identity_app_id = string_value(value, origin(KEY_IDENTITY_APP_ID), errors);
                }
                KEY_IDENTITY_API_KEY => {
                    raw.identity_api_key =
                        string_value(value, origin(KEY_IDENTITY_API_KEY), errors);
                }
                KEY_IDENTITY_NIK_SECRET => {
                    raw.identity_nik_secret =
                        string_value(value, origin(KEY_IDENTITY_NIK_SECRET), errors);
                }
                KEY_IDENTITY_CHECKS_PER_CALLER => {
                    raw.identity_checks_per_caller =
                        number_value(value, origin(KEY_IDENTITY_CHECKS_PER_CALLER), errors);
                }
                KEY_IDENTITY_CHECK_WINDOW_SECS => {
                    raw.identity_check_window_secs =
                        number_value(value, origin(KEY_IDENTITY_CHECK_WINDOW_SECS), errors);
                }
                KEY_NOTIFY_PHONE_NUMBER_ID => {
                    raw.notify_phone_number_id =
                        string_value(value, origin(KEY_NOTIFY_PHONE_NUMBER_ID), errors);
                }
                KEY_NOTIFY_GATEWAY_TIMEOUT_MS => {
                    raw.notify_gateway_timeout_ms =
                        number_value(value, origin(KEY_NOTIFY_GATEWAY_TIMEOUT_MS), errors);
                }
                KEY_NOTIFY_GATEWAY_LOOKUP_URL => {
                    raw.notify_gateway_lookup_url =
                        string_value(value, origin(KEY_NOTIFY_GATEWAY_LOOKUP_URL), errors);
                }
                KEY_BLOBS_URL => {
                    raw.blobs_url = string_value(value, origin(KEY_BLOBS_URL), errors);
                }
                _ => errors.push(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    key,
                }),
            }
        }
    }
}

/// " (line N)" for a TOML error span, so the operator finds the bad line.
fn line_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span.and_then(|span| text.get(..span.start)) {
        Some(before) => format!(" (line {})", before.lines().count().max(1)),
        None => String::new(),
    }
}

fn string_value(
    value: &toml::Value,
    origin: Origin,
    errors: &mut Vec<ConfigError>,
) -> Option<(String, Origin)> {
    match value.as_str() {
        Some(text) => Some((text.to_owned(), origin)),
        None => {
            errors.push(ConfigError::WrongType {
                origin,
                expected: "a string",
                found: value.type_str(),
            });
            None
        }
    }
}

/// An integer from the file, kept as text so the file and the environment validate alike.
fn number_value(
    value: &toml::Value,
    origin: Origin,
    errors: &mut Vec<ConfigError>,
) -> Option<(String, Origin)> {
    match value.as_integer() {
        Some(number) => Some((number.to_string(), origin)),
        None => {
            errors.push(ConfigError::WrongType {
                origin,
                expected: "an integer",
                found: value.type_str(),
            });
            None
        }
    }
}

fn string_array_value(
    value: &toml::Value,
    origin: Origin,
    errors: &mut Vec<ConfigError>,
) -> Option<(Vec<String>, Origin)> {
    let strings = value.as_array().and_then(|items| {
        items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
    });
    match strings {
        Some(strings) => Some((strings, origin)),
        None => {
            errors.push(ConfigError::WrongType {
                origin,
                expected: "an array of strings",
                found: value.type_str(),
            });
            None
        }
    }
}

fn read_env(env: &dyn Fn(&str) -> Option<OsString>, raw: &mut Raw, errors: &mut Vec<ConfigError>) {
    let mut var = |name: &'static str| -> Option<(String, Origin)> {
        let value = env(name)?;
        match value.into_string() {
            Ok(value) => Some((value, Origin::Env(name))),
            Err(_) => {
                errors.push(ConfigError::NotUnicode { var: name });
                None
            }
        }
    };
    if let Some(value) = var(ENV_HTTP_LISTEN) {
        raw.http_listen = Some(value);
    }
    if let Some(value) = var(ENV_DATABASE_URL) {
        raw.database_url = Some(value);
    }
    if let Some(value) = var(ENV_REDIS_URL) {
        raw.redis_url = Some(value);
    }
    if let Some((value, origin)) = var(ENV_REDIS_LOCK_NODES) {
        raw.redis_lock_nodes = Some((split_list(&value), origin));
    }
    if let Some(value) = var(ENV_HOLD_SECONDS) {
        raw.hold_seconds = Some(value);
    }
    if let Some(value) = var(ENV_TURNOVER_BUFFER_DAYS) {
        raw.turnover_buffer_days = Some(value);
    }
    if let Some(value) = var(ENV_SWEEP_INTERVAL_MS) {
        raw.sweep_interval_ms = Some(value);
    }
    if let Some(value) = var(ENV_RELEASE_DELAY_SECONDS) {
        raw.release_delay_seconds = Some(value);
    }
    if let Some(value) = var(ENV_WEBHOOK_SECRET) {
        raw.webhook_secret = Some(value);
    }
    if let Some(value) = var(ENV_SIGNING_KEY_FILE) {
        raw.signing_key_file = Some(value);
    }
    if let Some(value) = var(ENV_OFFLINE_AFTER_SECS) {
        raw.offline_after_secs = Some(value);
    }
    for (name, slot) in [
        (ENV_NOTIFY_AMQP_URL, &mut raw.notify_amqp_url),
        (ENV_NOTIFY_QUEUE, &mut raw.notify_queue),
        (ENV_REMINDER_DAYS, &mut raw.reminder_days),
        (ENV_NOTIFY_MAX_ATTEMPTS, &mut raw.notify_max_attempts),
        (ENV_NOTIFY_RETRY_BASE_MS, &mut raw.notify_retry_base_ms),
        (
            ENV_NOTIFY_PUBLISH_INTERVAL_MS,
            &mut raw.notify_publish_interval_ms,
        ),
        (ENV_NOTIFY_GATEWAY_URL, &mut raw.notify_gateway_url),
        (ENV_NOTIFY_GATEWAY_TOKEN, &mut raw.notify_gateway_token),
        (ENV_NOTIFY_PHONE_NUMBER_ID, &mut raw.notify_phone_number_id),
        (
            ENV_NOTIFY_GATEWAY_TIMEOUT_MS,
            &mut raw.notify_gateway_timeout_ms,
        ),
        (
            ENV_NOTIFY_GATEWAY_LOOKUP_URL,
            &mut raw.notify_gateway_lookup_url,
        ),
        (ENV_IDENTITY_REQUIRED, &mut raw.identity_required),
        (ENV_IDENTITY_PROVIDER_URL, &mut raw.identity_provider_url),
        (ENV_IDENTITY_APP_ID, &mut raw.identity_app_id),
        (ENV_IDENTITY_API_KEY, &mut raw.identity_api_key),
        (ENV_IDENTITY_NIK_SECRET, &mut raw.identity_nik_secret),
        (
            ENV_IDENTITY_CHECKS_PER_CALLER,
            &mut raw.identity_checks_per_caller,
        ),
        (
            ENV_IDENTITY_CHECK_WINDOW_SECS,
            &mut raw.identity_check_window_secs,
        ),
    ] {
        if let Some(value) = var(name) {
            *slot = Some(value);
        }
    }
    if let Some(value) = var(ENV_BLOBS_URL) {
        raw.blobs_url = Some(value);
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

fn parse_listen(value: &str, origin: Origin, errors: &mut Vec<ConfigError>) -> Option<SocketAddr> {
    validate(
        value,
        origin,
        |value| {
            value
                .parse::<SocketAddr>()
                .map_err(|_| "expected IP:PORT, such as 0.0.0.0:8090 or [::]:8090".to_owned())
        },
        errors,
    )
}

fn validate<T>(
    value: &str,
    origin: Origin,
    parse: impl FnOnce(&str) -> Result<T, String>,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match parse(value) {
        Ok(parsed) => Some(parsed),
        Err(reason) => {
            errors.push(ConfigError::Invalid {
                origin,
                value: redact(value),
                reason,
            });
            None
        }
    }
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
        assert_eq!(config.http.listen.to_string(), DEFAULT_HTTP_LISTEN);
        assert_eq!(format!("{:?}", config.redis.url), DEFAULT_REDIS_URL);
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
                ("SENTRA_CLOUD__NOTIFY__AMQP_URL", "amqps://u:pw@mq/%2f"),
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
                .any(|e| e.contains("amqps://u:***@mq") && e.contains("amqp://")),
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
                    ("REDIS_URL", "rediss://h:6380"),
                    ("REDIS_LOCK_NODES", "redis://ok:1,http://bad:2"),
                ],
                &[
                    "DATABASE_URL: invalid value `mysql://u:***@h/db`: expected a postgres://",
                    "REDIS_URL: invalid value `rediss://h:6380`: TLS",
                    "REDIS_LOCK_NODES: invalid value `http://bad:2`: expected a redis:// URL",
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
        assert_eq!(config.booking.hold_window.as_secs(), DEFAULT_HOLD_SECONDS);
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

    #[test]
    fn redact_hides_passwords_only() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
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
}
