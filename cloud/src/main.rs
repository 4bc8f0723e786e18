//! `sentra-cloud`, the cloud ingest service for Sentra Edge appliances: the command line.
//!
//! This file owns argument parsing, logging set-up and the mapping from outcome to exit code:
//! 0 ok, 2 usage or configuration error, 1 anything else. It is the only place that uses
//! `anyhow`; the modules return their own errors. The modules stand on floors; a file imports
//! only from its own floor's room or below (`scripts/module-cycles.py` checks for circles):
//!
//! Top (wiring, nothing imports these):
//! - [`startup`]: `serve`: state, listener, server, background tasks, graceful shutdown;
//! - [`app`]: the router, the application state and the sub-states handlers take (`FromRef`),
//!   `/metrics`;
//! - [`openapi`]: the OpenAPI document assembled from the handlers' annotations;
//! - [`health`]: `/healthz` and `/readyz`.
//!
//! Orchestration: [`ingest`]: `POST /v1/sync/push`: validation, the event log, projections,
//! parking; it calls the domains that take part in a push.
//!
//! Domains (each imports only the ground floor and `sentra-protocol`, never another domain):
//! - [`booking`]: rental holds without double booking, the Redis calendar, the sweeper;
//! - [`identity`]: KTP checks bound to customer records, the gate a hold passes;
//! - [`shared`]: records both the cloud and the branch edit (customers, vehicles, documents);
//! - [`master`]: master data (parts, mechanics, assets) authored in the cloud;
//! - [`fleet`]: heartbeats, rollouts in waves, the fleet page, JSON and metrics;
//! - [`releases`]: the release signing key, publishing signed releases, serving them;
//! - [`blobs`]: inspection photos: uploads in parts, the object store;
//! - [`notify`]: customer notifications: the schedule, the RabbitMQ publisher and worker, the
//!   messaging gateway and its sandbox.
//!
//! Ground (imports nothing above it):
//! - [`web`]: the JSON error envelope, JSON bodies, the clock, the server-time header;
//! - [`schemas`]: the OpenAPI schema types handlers name;
//! - [`event`]: a pushed event as ingest hands it to the domains;
//! - [`standing`]: who owns a customer record, and the identity gate a booking passes (a trait
//!   the identity domain implements);
//! - [`changes`]: the per-branch change log every writer appends to in its transaction (master
//!   data, shared records, ingest) and `GET /v1/sync/pull`;//! - [`devices`]: the caller's identity: enrolment, device signatures, API tokens, revocation,
//!   the `enrollment-token` / `api-token` commands;
//! - [`branches`]: branch ids and branch rows;
//! - [`config`]: the typed configuration (defaults, TOML file, environment);
//! - [`metrics`]: the Prometheus registry (`sentra_cloud_*`), the request-metrics middleware,
//!   ingest and build metrics;
//! - [`migrate`]: the database connection and the embedded migrations (`migrate`);
//! - [`ttl`]: the small time-to-live map the caches use.

mod app;
mod blobs;
mod booking;
mod branches;
mod changes;
mod config;
mod devices;
mod event;
mod fleet;
#[cfg(test)]
mod fuzz_properties;
mod health;
mod identity;
mod ingest;
mod master;
mod metrics;
mod migrate;
mod notify;
mod openapi;
mod redis_conn;
mod releases;
mod reports;
mod schemas;
mod shared;
mod standing;
mod startup;
mod successor;
mod ttl;
mod web;

use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// glibc's malloc took a fifth of the service's CPU on the booking paths, much of it on its arena
/// lock between the two runtime threads; mimalloc keeps per-thread heaps (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ENV_HELP: &str = "\
Environment (overrides the config file):
  DATABASE_URL                 PostgreSQL URL (required), e.g. postgres://user:pw@host:5432/sentra
  REDIS_URL                    Redis URL [default: redis://127.0.0.1:6379]
  REDIS_LOCK_NODES             Redlock nodes, comma-separated Redis URLs [default: none]
  SENTRA_CLOUD__BOOKING__HOLD_SECS              payment window of a hold [default: 600]
  SENTRA_CLOUD__BOOKING__TURNOVER_BUFFER_DAYS   days blocked after a rental [default: 0]
  SENTRA_CLOUD__BOOKING__SWEEP_INTERVAL_MS      how often due holds are expired [default: 1000]
  SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET        HMAC key of gateway webhooks [default: none]
  SENTRA_CLOUD__RELEASES__SIGNING_KEY_FILE      release signing key (release publish) [default: none]
  SENTRA_CLOUD__FLEET__OFFLINE_AFTER_SECS       heartbeat age shown as offline [default: 180]
  SENTRA_CLOUD__NOTIFY__AMQP_URL      RabbitMQ for notifications [default: none: nothing published]
  SENTRA_CLOUD__NOTIFY__GATEWAY_URL   messaging gateway: sandbox or the API base [default: none]
  SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN the gateway's bearer token [default: none]
  SENTRA_CLOUD__NOTIFY__REMINDER_DAYS service reminder after an invoice [default: 90]
    (every notify key: docs/cloud.md, section Customer notifications)
  SENTRA_CLOUD__HTTP__LISTEN   HTTP listen address [default: 0.0.0.0:8090]
  RUST_LOG                     log filter [default: info]
  SENTRA_CLOUD__LOG__FORMAT    text or json (one JSON object per line) [default: text]
Every key, its variable, default and reason: `sentra-cloud config defaults`.

Exit codes: 0 ok, 2 usage or configuration error, 1 anything else.";

/// Log filter when RUST_LOG is not set: our own events and the libraries' warnings.
const DEFAULT_LOG_FILTER: &str = "info";

/// Exit code for a usage or configuration error (clap uses the same for usage errors).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(name = "sentra-cloud", version, about, after_help = ENV_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (does not migrate: run `migrate` first).
    Serve(ConfigArgs),
    /// Apply the PostgreSQL migrations the database lacks, then exit.
    Migrate(ConfigArgs),
    /// Make a one-time enrolment token for a branch (creating the branch if missing) and print it
    /// once, with its QR code (on the terminal, and as an SVG sheet with --svg); only its SHA-256
    /// is stored.
    EnrollmentToken(EnrollmentTokenArgs),
    /// Make a token for a non-device client and print it once (only its SHA-256 is stored), or
    /// list or revoke the tokens by name.
    ApiToken(ApiTokenArgs),
    /// The Redis availability calendar.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Releases for the appliances: the signing key, publishing.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Roll a release out to a channel in waves (`--channel C --percent P`), or pause, resume,
    /// abort or show the channel's rollout.
    Rollout(RolloutArgs),
    /// Customer notifications: publish what is due, run the worker or the sandbox gateway,
    /// replay a dead notification.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// The configuration: print every key with its default, or check one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The enrolled devices.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// The branches.
    #[command(subcommand)]
    Branches(BranchesCommand),
    /// The boxes' backups the object store holds (each box's newest 7, encrypted with that box's
    /// store key): list them, or fetch one to restore a box with `sentra-edge restore FILE`.
    #[command(subcommand)]
    Backups(BackupsCommand),
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every key with its default, its reason and its variable: the example config file.
    Defaults,
    /// Load and validate the configuration (exit 2 with every problem listed), then print every
    /// key's value in force and where it came from, secrets hidden.
    Check(ConfigArgs),
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Print every device not revoked, those needing attention first: device, branch, version,
    /// online or offline (by fleet.offline_after_secs), last heartbeat, update state, attention,
    /// and the dead box it replaces (retired, so not listed itself).
    List(ListArgs),
}

#[derive(Subcommand)]
enum BranchesCommand {
    /// Print every branch by id: name, devices enrolled and not revoked, how many are online,
    /// when it was created.
    List(ListArgs),
}

#[derive(Subcommand)]
enum BackupsCommand {
    /// Print every backup, newest first: device, branch, when taken, size, outbox events,
    /// whether it is whole in the object store yet, and its SHA-256 (what `get` takes).
    List(BackupListArgs),
    /// Write the backup with this SHA-256 to --out (checked against the digest; nothing is left
    /// at --out when it does not match).
    Get(BackupGetArgs),
}

#[derive(Args)]
struct BackupListArgs {
    /// Only this branch's backups.
    #[arg(long)]
    branch: Option<String>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Args)]
struct BackupGetArgs {
    /// The backup's SHA-256, as `backups list` prints it.
    sha256: String,
    /// Where to write it (must not exist yet).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Args)]
struct ListArgs {
    /// One JSON object a line instead of a table (for scripts and jq).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// Publish every notification due at --now (default: the current time) to RabbitMQ, print
    /// how many, and exit.
    PublishDue(PublishDueArgs),
    /// Send queued notifications through the messaging gateway until SIGTERM or SIGINT.
    Worker(ConfigArgs),
    /// Run the sandbox messaging gateway (WhatsApp Cloud API shape) on --listen; prints
    /// `listening on ADDR`.
    Sandbox(SandboxArgs),
    /// Put a dead, skipped or published (but lost by the broker) notification back on the
    /// schedule, due now.
    Replay(ReplayArgs),
}

#[derive(Args)]
struct PublishDueArgs {
    /// The time to publish for (RFC 3339), e.g. 2027-03-01T00:00:00Z.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    now: Option<time::OffsetDateTime>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Args)]
struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// The bearer token every request must carry [default: none required].
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

#[derive(Args)]
struct ReplayArgs {
    /// The notification's id.
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    config: ConfigArgs,
}

fn parse_time(raw: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|error| format!("expected an RFC 3339 time such as 2027-03-01T00:00:00Z: {error}"))
}

#[derive(Subcommand)]
enum ReleaseCommand {
    /// Make a release signing key in FILE (mode 0600, never overwritten) and print its public
    /// key, which every appliance is configured with.
    Keygen {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Sign FILE's manifest with the configured key and store both; print the manifest.
    Publish(PublishArgs),
}

#[derive(Args)]
struct PublishArgs {
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// MAJOR.MINOR.PATCH[-PRE], e.g. 1.4.0.
    #[arg(long, value_name = "V")]
    version: String,
    /// The channel it is meant for, e.g. stable or canary.
    #[arg(long, value_name = "C")]
    channel: String,
    /// Days until the manifest expires (appliances refuse it after).
    #[arg(long, value_name = "DAYS", default_value_t = releases::DEFAULT_EXPIRES_DAYS)]
    expires_days: u32,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct RolloutArgs {
    #[command(subcommand)]
    action: Option<RolloutAction>,
    /// The channel to roll out to.
    #[arg(long, value_name = "C", required = true)]
    channel: Option<String>,
    /// How much of the channel the rollout reaches; a larger value widens the current rollout.
    #[arg(long, value_name = "P", required = true, value_parser = clap::value_parser!(i32).range(1..=100))]
    percent: Option<i32>,
    /// The release [default: the newest published on the channel].
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// A device id to update first (repeat, or separate with commas).
    #[arg(long, value_name = "DEVICE", value_delimiter = ',')]
    canary: Vec<String>,
    /// Percentages of the channel, ascending, the last one being --percent [default: 10,50 below it].
    #[arg(long, value_name = "P,P,...", value_delimiter = ',')]
    waves: Option<Vec<i32>>,
    /// Share of admitted devices on the new version before the next wave starts.
    #[arg(long, value_name = "PCT", default_value_t = fleet::rollout::DEFAULT_SUCCESS_THRESHOLD_PCT)]
    success_threshold: i32,
    /// Share of admitted devices failing (failed, rolled back, unhealthy) that halts the rollout.
    #[arg(long, value_name = "PCT", default_value_t = fleet::rollout::DEFAULT_FAILURE_THRESHOLD_PCT)]
    failure_threshold: i32,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum RolloutAction {
    /// Stop offering the release to devices not yet told (those updating carry on).
    Pause(ActionArgs),
    /// Go on with a paused rollout, or with a halted one once its cause is fixed (--reason
    /// required: what was fixed; its failed devices get another try).
    Resume(ActionArgs),
    /// End the rollout: nobody is offered the release any more.
    Abort(ActionArgs),
    /// Print the channel's newest rollout as JSON.
    Status(ChannelArgs),
}

#[derive(Args)]
struct ActionArgs {
    #[command(flatten)]
    channel: ChannelArgs,
    /// Why, for the rollout's history (one line, at most 500 characters).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

#[derive(Args)]
struct ChannelArgs {
    #[arg(long, value_name = "C")]
    channel: String,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum CalendarCommand {
    /// Rebuild the calendar from PostgreSQL's live bookings (after Redis lost it, or to repair
    /// drift), then mark it built.
    Rebuild(ConfigArgs),
}

#[derive(Args)]
struct EnrollmentTokenArgs {
    /// The branch the enrolled appliance will serve, e.g. JKT01.
    #[arg(long, value_name = "B", value_parser = parse_branch)]
    branch: branches::BranchId,
    /// The branch's display name (when creating it, or to rename it) [default: the branch id].
    #[arg(long, value_name = "NAME")]
    branch_name: Option<String>,
    /// Hours until the token expires.
    #[arg(
        long,
        value_name = "H",
        default_value_t = devices::tokens::DEFAULT_ENROLLMENT_TTL_HOURS,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(devices::tokens::MAX_ENROLLMENT_TTL_HOURS)),
    )]
    ttl_hours: u32,
    /// Also write the token's QR code, with the token, branch and expiry in text, as an SVG to
    /// FILE: the sheet the technician takes to the branch.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArgs,
}

/// `api-token --name N [--role R] [--expires-in E]` makes a token; `api-token list` and
/// `api-token revoke NAME` manage them.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ApiTokenArgs {
    #[command(subcommand)]
    command: Option<ApiTokenCommand>,
    /// Who the token is for, e.g. "portal" or "ops-alice": unique among live tokens, shown in
    /// logs, and how `list` and `revoke` name it.
    #[arg(long, value_name = "N")]
    name: Option<String>,
    /// portal: the customer web portal; operator: the cloud team (master data, revocation).
    #[arg(long, value_name = "ROLE", default_value = "portal")]
    role: devices::tokens::Role,
    /// When the token stops working: a duration (90m, 12h, 30d, 8w) or an RFC 3339 time
    /// [default: never; revoke it by name].
    #[arg(long, value_name = "E")]
    expires_in: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum ApiTokenCommand {
    /// Print every API token, one JSON object a line: name, role, state (live, expired,
    /// revoked), created, expires, revoked, last used. Never the token or its hash.
    List(ConfigArgs),
    /// Revoke the live token named NAME: every replica refuses it within seconds.
    Revoke(ApiTokenRevokeArgs),
}

#[derive(Args)]
struct ApiTokenRevokeArgs {
    /// The token's name, as `api-token list` shows it.
    #[arg(value_name = "NAME")]
    name: String,
    #[command(flatten)]
    config: ConfigArgs,
}

fn parse_branch(raw: &str) -> Result<branches::BranchId, String> {
    branches::BranchId::parse(raw).map_err(|error| error.to_string())
}

/// Prints `line` on stdout (the one thing a token command prints there, so scripts can capture
/// it); `Err` if stdout is closed.
fn print_line(line: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

#[derive(Args)]
struct ConfigArgs {
    /// TOML configuration file; environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            let mut stdout = std::io::stdout().lock();
            let version = concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION"));
            match writeln!(stdout, "{version}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Command::Serve(args) => with_config(&args, |config| async move {
            startup::serve(config).await.context("serve")
        }),
        Command::Migrate(args) => with_config(&args, |config| async move {
            let version = migrate::run(&config.database).await.context("migrate")?;
            tracing::info!(version, "database schema is up to date");
            Ok(())
        }),
        Command::EnrollmentToken(args) => {
            let config_args = ConfigArgs {
                config: args.config.config.clone(),
            };
            with_config(&config_args, |config| {
                enrollment_token_command(config, args)
            })
        }
        Command::Calendar(CalendarCommand::Rebuild(args)) => {
            with_config(&args, |config| async move {
                let db = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(migrate::CONNECT_TIMEOUT)
                    .connect_with(config.database.url.connect_options())
                    .await
                    .context("cannot connect to PostgreSQL")?;
                let redis = startup::connect_redis(&config).context("redis")?;
                let calendar = booking::calendar::Calendar::new(redis);
                let keys = calendar.rebuild(&db).await.context("calendar rebuild")?;
                tracing::info!(keys, "calendar rebuilt from PostgreSQL");
                print_line(&format!("calendar rebuilt: {keys} month keys"))
            })
        }
        Command::Release(ReleaseCommand::Keygen { file }) => {
            init_logging(config::LogFormat::Text);
            match releases::keygen(&file) {
                Ok(public) => {
                    eprintln!(
                        "release signing key written to {}; keep it offline. Configure appliances with the public key printed below.",
                        file.display()
                    );
                    match print_line(&public) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(_) => ExitCode::FAILURE,
                    }
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Release(ReleaseCommand::Publish(args)) => {
            with_config(&args.config, |config| async move {
                let key_file = config
                    .releases
                    .signing_key_file
                    .as_deref()
                    .ok_or(releases::ReleaseError::NoKey)?;
                let key = releases::load_key(key_file)?;
                let public = hex::encode(key.verifying_key().as_bytes());
                if let Some(given) = config.releases.public_key.as_deref()
                    && given != public
                {
                    // Boxes pin the configured key at enrolment: they would refuse this release.
                    anyhow::bail!(
                        "{} signs with public key {public}, but releases.public_key (what boxes are given) is {given}; publish with the matching key",
                        key_file.display()
                    );
                }
                let db = connect(&config).await?;
                let published = releases::publish(
                    &db,
                    &key,
                    &args.file,
                    &args.version,
                    &args.channel,
                    args.expires_days,
                )
                .await
                .context("release publish")?;
                tracing::info!(version = %published.manifest.version, channel = %published.manifest.channel,
                    size = published.manifest.size, key_id = %published.key_id, "release published");
                print_line(&serde_json::to_string(&published.manifest)?)
            })
        }
        Command::Rollout(args) => with_config(&args.config, |config| async move {
            let db = connect(&config).await?;
            let by = std::env::var("USER").unwrap_or_else(|_| "cli".to_owned());
            let (action, channel) = match args.action {
                None => {
                    let plan = fleet::rollout::Plan {
                        channel: args.channel.unwrap_or_default(),
                        percent: args.percent.unwrap_or(100),
                        version: args.version,
                        canaries: args.canary,
                        waves: args.waves,
                        success_threshold_pct: args.success_threshold,
                        failure_threshold_pct: args.failure_threshold,
                        by: format!("cli:{by}"),
                    };
                    let id = fleet::rollout::start(&db, &plan).await.context("rollout")?;
                    let summary = fleet::rollout::summary(&db, &id).await?;
                    return print_line(&serde_json::to_string(&summary)?);
                }
                Some(RolloutAction::Pause(a)) => (
                    Some((fleet::rollout::Action::Pause, a.reason)),
                    a.channel.channel,
                ),
                Some(RolloutAction::Resume(a)) => (
                    Some((fleet::rollout::Action::Resume, a.reason)),
                    a.channel.channel,
                ),
                Some(RolloutAction::Abort(a)) => (
                    Some((fleet::rollout::Action::Abort, a.reason)),
                    a.channel.channel,
                ),
                Some(RolloutAction::Status(c)) => (None, c.channel),
            };
            let id = match action {
                None => sqlx::query_scalar::<_, String>(
                    "SELECT id::text FROM rollouts WHERE channel = $1 ORDER BY created_at DESC LIMIT 1",
                )
                .bind(&channel)
                .fetch_optional(&db)
                .await?
                .ok_or_else(|| anyhow::anyhow!("channel {channel} has no rollout"))?,
                Some((action, reason)) => {
                    let id = fleet::rollout::live_on(&db, &channel).await?;
                    fleet::rollout::act(&db, &id, action, &format!("cli:{by}"), reason.as_deref())
                        .await?;
                    id
                }
            };
            let summary = fleet::rollout::summary(&db, &id).await?;
            print_line(&serde_json::to_string(&summary)?)
        }),
        Command::Notify(command) => notify_command(command),
        Command::Config(ConfigCommand::Defaults) => {
            match print_line(config::example().trim_end()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Command::Config(ConfigCommand::Check(args)) => match load_config(&args) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    eprintln!("warning: {warning}");
                }
                match print_line(loaded.effective.trim_end()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::FAILURE,
                }
            }
            Err(code) => code,
        },
        Command::ApiToken(args) => api_token_command(args),
        Command::Devices(DevicesCommand::List(args)) => {
            with_config(&args.config, |config| async move {
                let db = connect(&config).await?;
                let devices = fleet::devices(&db, config.fleet.offline_after)
                    .await
                    .context("devices list")?;
                print_devices(&devices, args.json)
            })
        }
        Command::Backups(BackupsCommand::List(args)) => {
            with_config(&args.list.config, |config| async move {
                let db = connect(&config).await?;
                let rows = blobs::backups::list(&db, args.branch.as_deref())
                    .await
                    .context("backups list")?;
                print_backups(&rows, args.list.json)
            })
        }
        Command::Backups(BackupsCommand::Get(args)) => {
            with_config(&args.config, |config| async move {
                let digest = args.sha256.trim().to_ascii_lowercase();
                anyhow::ensure!(
                    digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{:?} is not a SHA-256: `sentra-cloud backups list` prints them",
                    args.sha256.chars().take(80).collect::<String>()
                );
                anyhow::ensure!(
                    !args.out.exists(),
                    "{} exists: not overwritten",
                    args.out.display()
                );
                let store = blobs::Blobs::open(&config.blobs.url)?;
                let tmp = args.out.with_extension("partial");
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                let fetched = store.fetch_into(&digest, &mut file).await;
                let written =
                    match fetched.and_then(|n| file.sync_all().map(|()| n).map_err(Into::into)) {
                        Ok(written) => written,
                        Err(error) => {
                            let _ = std::fs::remove_file(&tmp);
                            return Err(error.context(format!("backup {digest}")));
                        }
                    };
                anyhow::ensure!(
                    !args.out.exists(),
                    "{} exists: not overwritten (the backup is in {})",
                    args.out.display(),
                    tmp.display()
                );
                std::fs::rename(&tmp, &args.out).with_context(|| {
                    format!("cannot rename {} to {}", tmp.display(), args.out.display())
                })?;
                print_line(&format!(
                    "wrote {} ({written} bytes, SHA-256 checked); restore it on the box with `sentra-edge restore {}` (the daemon stopped)",
                    args.out.display(),
                    args.out.display()
                ))
            })
        }
        Command::Branches(BranchesCommand::List(args)) => {
            with_config(&args.config, |config| async move {
                let db = connect(&config).await?;
                let branches = branches::list(&db).await.context("branches list")?;
                let devices = fleet::devices(&db, config.fleet.offline_after)
                    .await
                    .context("branches list")?;
                print_branches(&branches, &devices, args.json)
            })
        }
    }
}

/// A device's state in one word: online, offline, or never seen (no heartbeat yet).
fn device_state(device: &fleet::DeviceView) -> &'static str {
    match (device.online, &device.last_seen) {
        (true, _) => "online",
        (false, Some(_)) => "offline",
        (false, None) => "never-seen",
    }
}

/// `devices list`: a table, or one JSON object a line.
fn print_devices(devices: &[fleet::DeviceView], json: bool) -> anyhow::Result<()> {
    if json {
        for device in devices {
            print_line(&serde_json::to_string(&serde_json::json!({
                "id": device.id,
                "branch_id": device.branch_id,
                "branch_name": device.branch_name,
                "hostname": device.hostname,
                "replaces": device.replaces,
                "channel": device.channel,
                "version": device.version,
                "state": device_state(device),
                "last_seen": device.last_seen,
                "offline_secs": device.offline_secs,
                "update_state": device.update_state,
                "attention": device.attention,
            }))?)?;
        }
        return Ok(());
    }
    let dash = || "-".to_owned();
    let rows = devices
        .iter()
        .map(|device| {
            vec![
                device.id.clone(),
                device.branch_id.clone(),
                device.version.clone().unwrap_or_else(dash),
                device_state(device).to_owned(),
                device.last_seen.clone().unwrap_or_else(dash),
                device.update_state.clone().unwrap_or_else(dash),
                if device.attention.is_empty() {
                    dash()
                } else {
                    device.attention.join("; ")
                },
                device.replaces.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    print_table(
        &[
            "DEVICE",
            "BRANCH",
            "VERSION",
            "STATE",
            "LAST SEEN",
            "UPDATE",
            "ATTENTION",
            "REPLACES",
        ],
        rows,
    )
}

/// `branches list`: a table, or one JSON object a line.
fn print_branches(
    branches: &[branches::BranchRow],
    devices: &[fleet::DeviceView],
    json: bool,
) -> anyhow::Result<()> {
    let online = |branch: &str| {
        devices
            .iter()
            .filter(|device| device.online && device.branch_id == branch)
            .count()
    };
    if json {
        for branch in branches {
            print_line(&serde_json::to_string(&serde_json::json!({
                "id": branch.id,
                "name": branch.name,
                "devices": branch.devices,
                "online": online(&branch.id),
                "created_at": branch.created_at,
            }))?)?;
        }
        return Ok(());
    }
    let rows = branches
        .iter()
        .map(|branch| {
            vec![
                branch.id.clone(),
                branch.name.clone(),
                branch.devices.to_string(),
                online(&branch.id).to_string(),
                branch.created_at.clone(),
            ]
        })
        .collect();
    print_table(&["BRANCH", "NAME", "DEVICES", "ONLINE", "CREATED"], rows)
}

/// `backups list`: a table, or one JSON object a line.
fn print_backups(rows: &[blobs::backups::BackupRow], json: bool) -> anyhow::Result<()> {
    if json {
        for row in rows {
            print_line(&serde_json::to_string(row)?)?;
        }
        return Ok(());
    }
    let table = rows
        .iter()
        .map(|row| {
            vec![
                row.device_id.clone(),
                row.branch_id.clone(),
                row.taken_at.clone(),
                row.size.to_string(),
                row.events.to_string(),
                if row.stored { "stored" } else { "uploading" }.to_owned(),
                row.sha256.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "DEVICE", "BRANCH", "TAKEN", "BYTES", "EVENTS", "STATE", "SHA256",
        ],
        table,
    )
}

/// A plain table on stdout: a header, then one line a row, columns padded to their widest cell
/// and two spaces apart. Control characters in a cell (a branch name is operator text) are shown
/// as spaces so one row stays one line.
fn print_table(header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let clean = |cell: &str| -> String {
        cell.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| row.iter().map(|cell| clean(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(index, (cell, width))| {
                if index == last {
                    (*cell).to_owned()
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    print_line(&out)
}

/// `enrollment-token`: issues the token; stdout gets only the token (one line, what scripts
/// capture, as before), stderr what a person needs: the QR to scan off the screen and the step
/// at the box. With `--svg FILE` the sheet is written too (the file is opened first, so a path
/// that cannot be written issues no token).
async fn enrollment_token_command(
    config: config::Config,
    args: EnrollmentTokenArgs,
) -> anyhow::Result<()> {
    use devices::tokens::{self, TokenError};
    // A QR that cannot be drawn (an absurdly long http.public_url) is known before a token is
    // issued: every token has the same length, so a stand-in measures it.
    let stand_in = sentra_protocol::enrol_token::EnrolToken::from_random(Default::default());
    tokens::qr_terminal(&sentra_protocol::enrol_token::qr_content(
        &stand_in,
        config.http.public_url.as_deref(),
    ))
    .context("enrollment-token")?;
    let svg_file = args
        .svg
        .as_ref()
        .map(|path| {
            std::fs::File::create(path).map_err(|source| TokenError::SvgFile {
                path: path.display().to_string(),
                source,
            })
        })
        .transpose()
        .context("enrollment-token")?;
    let issued = tokens::issue_enrollment_token(
        &config.database,
        &args.branch,
        args.branch_name.as_deref(),
        args.ttl_hours,
    )
    .await
    .context("enrollment-token")?;
    let public_url = config.http.public_url.as_deref();
    let content = sentra_protocol::enrol_token::qr_content(&issued.token, public_url);
    tracing::info!(branch = %args.branch, branch_name = %issued.branch_name, expires_at = %issued.expires_at,
        "enrolment token issued; give it to the technician");
    let at_the_box = match public_url {
        Some(url) => format!(
            "the QR holds the token and this cloud's URL ({url}): on the box run `sentra-edge-admin enroll` and scan it at the prompt (or type the token, with --cloud {url})"
        ),
        None => "the QR holds the token (set http.public_url to add this cloud's URL): on the box run `sentra-edge-admin enroll --cloud URL` and scan or type it at the prompt".to_owned(),
    };
    let human = format!(
        "enrolment token for branch {} ({}), one use, valid until {}:\n{}\n{at_the_box}",
        args.branch,
        issued.branch_name,
        issued.expires_at,
        tokens::qr_terminal(&content).context("enrollment-token")?
    );
    {
        let mut stderr = std::io::stderr().lock();
        // The person may have closed the terminal; the token on stdout is what must get out.
        let _ = writeln!(stderr, "{human}").and_then(|()| stderr.flush());
    }
    print_line(&issued.token.grouped())?;
    if let (Some(mut file), Some(path)) = (svg_file, args.svg.as_ref()) {
        let svg = tokens::qr_svg(&content, &issued, &args.branch).context("enrollment-token")?;
        file.write_all(svg.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| {
                format!(
                    "--svg {}: writing the sheet failed; the token above is issued and valid",
                    path.display()
                )
            })?;
        tracing::info!(file = %path.display(), "enrolment sheet written (SVG)");
    }
    Ok(())
}

fn api_token_command(args: ApiTokenArgs) -> ExitCode {
    match args.command {
        Some(ApiTokenCommand::List(config)) => with_config(&config, |config| async move {
            let tokens = devices::tokens::list_api_tokens(&config.database)
                .await
                .context("api-token list")?;
            for token in tokens {
                print_line(&serde_json::to_string(&token)?)?;
            }
            Ok(())
        }),
        Some(ApiTokenCommand::Revoke(revoke)) => with_config(&revoke.config, |config| async move {
            devices::tokens::revoke_api_token(&config.database, &revoke.name)
                .await
                .context("api-token revoke")?;
            tracing::info!(name = %revoke.name, "API token revoked");
            Ok(())
        }),
        None => {
            let Some(name) = args.name else {
                eprintln!(
                    "error: api-token needs --name N to make a token, or a subcommand: list, revoke NAME"
                );
                return ExitCode::from(EXIT_CONFIG);
            };
            with_config(&args.config, |config| async move {
                let expires_at = args
                    .expires_in
                    .as_deref()
                    .map(|raw| devices::tokens::parse_expiry(raw, time::OffsetDateTime::now_utc()))
                    .transpose()
                    .context("api-token")?;
                let token = devices::tokens::issue_api_token(
                    &config.database,
                    &name,
                    args.role,
                    expires_at,
                )
                .await
                .context("api-token")?;
                tracing::info!(%name, role = %args.role, "API token issued; send it as Authorization: Bearer TOKEN");
                print_line(&token)
            })
        }
    }
}

fn notify_command(command: NotifyCommand) -> ExitCode {
    match command {
        NotifyCommand::PublishDue(args) => with_config(&args.config, |config| async move {
            let db = connect(&config).await?;
            let settings = notify::Settings::new(&config.notify);
            let (connection, channel) =
                notify::connect(&config.notify, &settings.queues, "sentra-cloud publish-due")
                    .await
                    .context("cannot reach RabbitMQ")?;
            let now = args.now.unwrap_or_else(time::OffsetDateTime::now_utc);
            let mut total = 0;
            loop {
                let published = notify::publisher::publish_due(
                    &db,
                    &channel,
                    &settings,
                    now,
                    notify::publisher::BATCH,
                )
                .await
                .context("publish-due")?;
                total += published;
                if published == 0 {
                    break;
                }
            }
            let _ = connection.close(200, "done".into()).await;
            tracing::info!(published = total, "due notifications published");
            print_line(&format!("published {total}"))
        }),
        NotifyCommand::Worker(args) => with_config(&args, |config| async move {
            let db = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(migrate::CONNECT_TIMEOUT)
                .connect_lazy_with(config.database.url.connect_options());
            let settings = notify::Settings::new(&config.notify);
            if config.notify.amqp_url.is_none() {
                return Err(notify::NotifyError::NoBroker.into());
            }
            let token = tokio_util::sync::CancellationToken::new();
            let stop = startup::StopSignals::install()?;
            let stopping = tokio::spawn(stop.wait(token.clone()));
            let (gateway, sandbox) =
                notify::worker::gateway_from_config(&config.notify, token.clone()).await?;
            notify::worker::run(
                db.clone(),
                config.notify.clone(),
                settings,
                std::sync::Arc::new(gateway),
                token.clone(),
            )
            .await;
            token.cancel();
            let _ = stopping.await;
            if let Some(sandbox) = sandbox {
                let _ = sandbox.await;
            }
            db.close().await;
            Ok(())
        }),
        NotifyCommand::Sandbox(args) => {
            // Needs no configuration (no database): only an address and maybe a token.
            init_logging(config::LogFormat::Text);
            let result = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the Tokio runtime")
                .and_then(|runtime| {
                    runtime.block_on(async move {
                        let token = tokio_util::sync::CancellationToken::new();
                        let stop = startup::StopSignals::install()?;
                        let secret = args.token.filter(|token| !token.is_empty());
                        let (addr, task) =
                            notify::sandbox::start(args.listen, secret, token.clone())
                                .await
                                .with_context(|| format!("cannot listen on {}", args.listen))?;
                        print_line(&format!("listening on {addr}"))?;
                        stop.wait(token).await;
                        let _ = task.await;
                        Ok(())
                    })
                });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        NotifyCommand::Replay(args) => with_config(&args.config, |config| async move {
            let db = connect(&config).await?;
            if notify::replay(&db, &args.id).await? {
                print_line(&format!("notification {} scheduled again", args.id))
            } else {
                anyhow::bail!(
                    "notification {:?}: no dead, skipped or published notification with a phone number has that id",
                    args.id
                )
            }
        }),
    }
}

/// One connection for a command.
async fn connect(config: &config::Config) -> anyhow::Result<sqlx::PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(migrate::CONNECT_TIMEOUT)
        .connect_with(config.database.url.connect_options())
        .await
        .context("cannot connect to PostgreSQL")
}

/// Loads the configuration (exit 2 with every problem listed if it is bad), then runs `command`
/// on a Tokio runtime (exit 1 with the whole error chain if it fails).
fn with_config<F, Fut>(args: &ConfigArgs, command: F) -> ExitCode
where
    F: FnOnce(config::Config) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let loaded = match load_config(args) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    init_logging(loaded.config.log.format);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = loaded.config;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")
        .and_then(|runtime| runtime.block_on(command(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            // What the operator asked cannot be done as asked (a duplicate token name, an
            // unknown one): a usage error, like clap's.
            if error
                .downcast_ref::<devices::tokens::TokenError>()
                .is_some_and(devices::tokens::TokenError::is_usage)
            {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Loads the configuration, or prints every problem with it and returns exit code 2.
fn load_config(args: &ConfigArgs) -> Result<config::Loaded, ExitCode> {
    config::load(args.config.as_deref()).map_err(|errors| {
        for error in &errors.0 {
            eprintln!("error: {error}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Logs to stderr (stdout carries the `listening on` line), filtered by RUST_LOG; as readable
/// lines (colours only on a terminal, so the journal and CI logs stay plain text) or, with
/// `log.format = "json"`, one JSON object per line for a log collector. Commands that run
/// without a configuration log text.
fn init_logging(format: config::LogFormat) {
    let (filter, bad_filter) = match std::env::var("RUST_LOG") {
        Ok(value) => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(error) => (EnvFilter::new(DEFAULT_LOG_FILTER), Some((value, error))),
        },
        Err(_) => (EnvFilter::new(DEFAULT_LOG_FILTER), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // The event's fields at the top level (`"message"`, `"error"`, ...), its span's fields
        // under `"span"`: what collectors index without a parsing rule.
        config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    if let Some((value, error)) = bad_filter {
        tracing::warn!(%value, %error, "RUST_LOG is not a valid filter; using {DEFAULT_LOG_FILTER:?}");
    }
}
