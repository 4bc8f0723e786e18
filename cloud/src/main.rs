//! `sentra-cloud`, the cloud ingest service for Sentra Edge appliances: the command line.
//!
//! This file owns argument parsing, logging set-up and the mapping from outcome to exit code:
//! 0 ok, 2 usage or configuration error, 1 anything else. It is the only place that uses
//! `anyhow`; the modules return their own errors. Module map:
//! - [`config`]: the typed configuration (defaults, TOML file, environment);
//! - [`migrate`]: the embedded PostgreSQL migrations and the `migrate` command;
//! - [`startup`]: `serve`: state, listener, server, graceful shutdown;
//! - [`http`]: the router, shared state, the JSON error envelope, the server-time header;
//! - [`health`]: `/healthz` and `/readyz`;
//! - [`branches`]: branch ids and branch rows;
//! - [`devices`]: enrolment, request authentication (device signatures, API tokens),
//!   revocation, and the `enrollment-token` / `api-token` commands;
//! - [`ingest`]: `POST /v1/sync/push`: validation, the event log, projections, parking;
//! - [`changes`]: the per-branch change log and `GET /v1/sync/pull`;
//! - [`master`]: master data (parts, mechanics, assets) authored in the cloud;
//! - [`booking`]: rental holds without double booking, the Redis calendar, the sweeper.

mod booking;
mod branches;
mod changes;
mod config;
mod devices;
mod health;
mod http;
mod ingest;
mod master;
mod migrate;
mod shared;
mod startup;

use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

const ENV_HELP: &str = "\
Environment (overrides the config file):
  DATABASE_URL                 PostgreSQL URL (required), e.g. postgres://user:pw@host:5432/sentra
  REDIS_URL                    Redis URL [default: redis://127.0.0.1:6379]
  REDIS_LOCK_NODES             Redlock nodes, comma-separated Redis URLs [default: none]
  SENTRA_CLOUD__BOOKING__HOLD_SECONDS           payment window of a hold [default: 600]
  SENTRA_CLOUD__BOOKING__TURNOVER_BUFFER_DAYS   days blocked after a rental [default: 0]
  SENTRA_CLOUD__BOOKING__SWEEP_INTERVAL_MS      how often due holds are expired [default: 1000]
  SENTRA_CLOUD__PAYMENTS__WEBHOOK_SECRET        HMAC key of gateway webhooks [default: none]
  SENTRA_CLOUD__HTTP__LISTEN   HTTP listen address [default: 0.0.0.0:8090]
  RUST_LOG                     log filter [default: info]

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
    /// once; only its SHA-256 is stored.
    EnrollmentToken(EnrollmentTokenArgs),
    /// Make a token for a non-device client and print it once; only its SHA-256 is stored.
    ApiToken(ApiTokenArgs),
    /// The Redis availability calendar.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Print the version.
    Version,
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
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Args)]
struct ApiTokenArgs {
    /// Who the token is for, e.g. "portal" or "ops-alice"; shown in logs.
    #[arg(long, value_name = "N")]
    name: String,
    /// portal: the customer web portal; operator: the cloud team (master data, revocation).
    #[arg(long, value_name = "ROLE", default_value = "portal")]
    role: devices::tokens::Role,
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
        Command::EnrollmentToken(args) => with_config(&args.config, |config| async move {
            let issued = devices::tokens::issue_enrollment_token(
                &config.database,
                &args.branch,
                args.branch_name.as_deref(),
                args.ttl_hours,
            )
            .await
            .context("enrollment-token")?;
            tracing::info!(branch = %args.branch, branch_name = %issued.branch_name, expires_at = %issued.expires_at,
                "enrolment token issued; give it to the technician: sentra-edge enroll --cloud URL --token TOKEN");
            print_line(&issued.token)
        }),
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
        Command::ApiToken(args) => with_config(&args.config, |config| async move {
            let token = devices::tokens::issue_api_token(&config.database, &args.name, args.role)
                .await
                .context("api-token")?;
            tracing::info!(name = %args.name, role = %args.role, "API token issued; send it as Authorization: Bearer TOKEN");
            print_line(&token)
        }),
    }
}

/// Loads the configuration (exit 2 with every problem listed if it is bad), then runs `command`
/// on a Tokio runtime (exit 1 with the whole error chain if it fails).
fn with_config<F, Fut>(args: &ConfigArgs, command: F) -> ExitCode
where
    F: FnOnce(config::Config) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")
        .and_then(|runtime| runtime.block_on(command(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (stdout carries the `listening on` line), filtered by RUST_LOG; colours only
/// on a terminal, so the journal and CI logs stay plain text.
fn init_logging() {
    let (filter, bad_filter) = match std::env::var("RUST_LOG") {
        Ok(value) => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(error) => (EnvFilter::new(DEFAULT_LOG_FILTER), Some((value, error))),
        },
        Err(_) => (EnvFilter::new(DEFAULT_LOG_FILTER), None),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some((value, error)) = bad_filter {
        tracing::warn!(%value, %error, "RUST_LOG is not a valid filter; using {DEFAULT_LOG_FILTER:?}");
    }
}
