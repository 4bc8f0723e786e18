//! The `sentra-edge` command line: parse, load the configuration, dispatch, and turn errors into
//! the contract's exit codes (ARCHITECTURE.md, "What is fixed") (0 ok, 2 usage or config, 3 store key or store, 1 other).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sentra_edge::config::{self, Config};
use sentra_edge::daemon::{self, Demo, StartError};
use sentra_edge::doctor;
use sentra_edge::domain::Role;
use sentra_edge::store::{StoreKey, devices, outbox, print_jobs, sync as store_sync};
use sentra_edge::supervisor::Supervisor;
use sentra_edge::telemetry;

/// The static build links musl, whose allocator degrades badly under threads (docs/decisions.md);
/// glibc builds keep glibc's allocator.
#[cfg(all(target_env = "musl", feature = "mimalloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sentra-edge",
    version,
    about = "The Sentra branch appliance: encrypted store, local API and outbox for the branch LAN"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (what systemd starts).
    Run {
        /// Configuration file [default: /etc/sentra/edge.toml if it exists].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the daemon on a throwaway directory with a generated key and demo data; prints its
    /// URLs and pairing codes. Nothing is kept after Ctrl-C.
    Demo {
        /// Where the local API listens (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Enrol this box with the cloud: a key pair is made here (the private key never leaves the
    /// box) and the one-time token from `sentra-cloud enrollment-token` binds it to its branch.
    Enroll {
        /// The cloud's URL, e.g. https://cloud.sentra.id [default: the one in the scanned QR
        /// code].
        #[arg(long)]
        cloud: Option<String>,
        /// The one-time enrolment token, e.g. 7KQ2-M9XW-3HDP-R5TA-3 [default: asked for at the
        /// prompt, where it is typed or its QR code scanned].
        #[arg(long)]
        token: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// How many times to try an unreachable cloud before giving up.
        #[arg(long, default_value_t = 5)]
        attempts: u32,
        /// The device id of the branch's dead box this one replaces: the cloud retires it, and
        /// this fresh box takes over the branch's open work orders, stock levels and a number
        /// series of its own.
        #[arg(long, value_name = "DEVICE_ID")]
        replaces: Option<String>,
    },
    /// Make a one-time pairing code for a tablet, POS or storekeeper terminal.
    Pair {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "tablet")]
        role: Role,
        /// Also queue the code as a QR on the branch printer (the running daemon prints it).
        #[arg(long)]
        print: bool,
    },
    /// Show the store, outbox and paired devices.
    Status {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check the box (configuration, store, daemon, broker, printer, scanner, cloud) and say
    /// what needs action; exit code 1 when something does.
    Doctor {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write an encrypted online backup of the store (same key) to FILE, or a dated one into
    /// --into DIR keeping the newest --keep (what sentra-edge-backup.timer runs daily).
    Backup {
        #[arg(required_unless_present = "into", conflicts_with = "into")]
        file: Option<PathBuf>,
        /// A directory: the backup is named by its UTC time, and older ones beyond --keep go.
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
        /// How many dated backups --into keeps (at least 1).
        #[arg(long, value_name = "N", default_value_t = 7, requires = "into")]
        keep: usize,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Put a backup made by `backup` in place of the store (the daemon stopped). Refuses a backup
    /// the store key does not open or one of another branch; the replaced store is kept beside
    /// it. Events made from now on reach the cloud even where the backup is older than it.
    Restore {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load the demo catalogue (parts, mechanics, rental assets) and opening stock into the store,
    /// for a trial box before it is enrolled. The cloud's master data replaces it at sync.
    LoadDemoData {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A sandbox EDC card terminal on a pseudo-terminal, to try card payments without one: prints
    /// the device to set as edc.device. It answers by the amount's last three digits: 051 and 005
    /// declined, 097 busy, 098 garbage, 099 no answer, anything else approved. Ctrl-C stops it.
    EdcSandbox {
        /// Also make this symlink to the pseudo-terminal, e.g. /run/sentra-edc.
        #[arg(long)]
        link: Option<PathBuf>,
    },
    /// Create a new store key file (64 hex characters, mode 0600). Never overwrites.
    Keygen { file: PathBuf },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Self-update against the cloud's signed releases.
    Update {
        #[command(subcommand)]
        command: UpdateCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum UpdateCommand {
    /// Fetch and verify the offered (or given) release's manifest; install nothing.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The release to check instead of the one the cloud offers.
        #[arg(long)]
        version: Option<String>,
    },
    /// Download, verify, install and restart; roll back if the new release is not ready in time.
    Apply {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The release to install instead of the one the cloud offers.
        #[arg(long)]
        version: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every key with its default and documentation (the example edge.toml).
    Defaults,
    /// Load and validate the configuration, reporting every error.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sentra-edge")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sentra-edge: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, so the operator sees the cause.
            let mut msg = format!("sentra-edge: {e}");
            if let StartError::Other(a) = &e {
                msg = format!("sentra-edge: {a:#}");
            }
            eprintln!("{}", msg.trim_end());
            ExitCode::from(e.exit_code())
        }
    }
}

/// `--config` if given (must exist), else the default path if it exists, else defaults.
fn load_config(path: Option<&Path>) -> Result<Config, StartError> {
    let default = Path::new(config::DEFAULT_CONFIG_PATH);
    let path = path.or_else(|| default.exists().then_some(default));
    Ok(Config::load(path)?)
}

fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// What a started daemon prints, last the line the tests and scripts wait for: the API's
/// HTTP address when `lan.plain` serves one, then (always last) its HTTPS address.
fn listening_lines(started: &daemon::Started) -> String {
    let mut text = format!(
        "sentra-edge: certificate {} (curl: --pinnedpubkey {})\n",
        started.fingerprint,
        started.fingerprint.curl_pin()
    );
    if let Some(mqtt) = started.mqtt {
        text.push_str(&format!("sentra-edge: mqtt tls listening on {mqtt}\n"));
    }
    if let Some(mqtt) = started.mqtt_plain {
        text.push_str(&format!("sentra-edge: mqtt listening on {mqtt}\n"));
    }
    if let Some(plain) = started.plain {
        text.push_str(&format!("sentra-edge: api listening on http://{plain}\n"));
    }
    text.push_str(&format!(
        "sentra-edge: api listening on https://{}\n",
        started.addr
    ));
    text
}

async fn dispatch(command: Command) -> Result<(), StartError> {
    match command {
        Command::Run { config } => {
            let config = load_config(config.as_deref())?;
            telemetry::init(&config.log.level);
            let store = daemon::open_store(&config).await?;
            daemon::run(config, store, Supervisor::new(), |started, _| {
                out(&listening_lines(started));
            })
            .await
        }
        Command::Demo { listen } => {
            let demo = Demo::new(listen)?;
            telemetry::init(&demo.config.log.level);
            let store = daemon::open_store_with(&demo.config, demo.key.clone()).await?;
            let codes = demo.seed(&store).await?;
            let config = demo.config.clone();
            let branch = format!("{} ({})", config.branch.id, config.branch.name);
            let dir = demo.dir.path().display().to_string();
            let printer_file = config.printer.address.clone();
            let branch_id = config.branch.id.clone();
            daemon::run(config, store, Supervisor::new(), move |started, _| {
                let url = format!("https://{}", started.addr);
                let fp = started.fingerprint;
                let mut text = format!(
                    "sentra-edge demo: branch {branch}\n\
                     \x20 data (deleted on exit): {dir}\n\
                     \x20 local API:  {url} (certificate {fp}; curl: -k --pinnedpubkey {})\n\
                     \x20 health:     {url}/healthz\n\
                     \x20 metrics:    {url}/metrics\n\
                     \x20 OpenAPI:    {url}/v1/openapi.json (needs a token)\n",
                    fp.curl_pin()
                );
                if let Some(plain) = started.plain {
                    text.push_str(&format!(
                        "  plain HTTP (lan.plain, legacy POS only): http://{plain}\n"
                    ));
                }
                text.push_str(&format!(
                    "  pairing codes (one use each, valid until {}):\n",
                    codes.first().map_or("", |c| c.expires_at.as_str())
                ));
                for c in &codes {
                    text.push_str(&format!(
                        "    {:<12} {}  {}\n",
                        c.role.as_str(),
                        c.code,
                        sentra_edge::lan::pairing_uri(
                            &started.addr.ip().to_string(),
                            started.addr.port(),
                            &c.code,
                            fp
                        )
                    ));
                }
                text.push_str(&format!("  printer (ESC/POS bytes): {printer_file}\n"));
                if let Some(mqtt) = started.mqtt {
                    text.push_str(&format!(
                        "  mqtt broker: {mqtt} over TLS{} (username: the device id, password: the pair answer's mqtt.password; topics sentra/{branch_id}/#)\n",
                        started
                            .mqtt_plain
                            .map(|p| format!(", plain on {p}"))
                            .unwrap_or_default()
                    ));
                }
                text.push_str("Paste into a shell to follow the README's examples:\n");
                text.push_str(&format!("export API={url}\n"));
                text.push_str(&format!("export PIN={}\n", fp.curl_pin()));
                for c in &codes {
                    text.push_str(&format!(
                        "export {}_CODE={}\n",
                        c.role.as_str().to_uppercase(),
                        c.code
                    ));
                }
                if let Some(mqtt) = started.mqtt {
                    text.push_str(&format!("export MQTT_PORT={}\n", mqtt.port()));
                }
                text.push_str(&listening_lines(started));
                out(&text);
            })
            .await?;
            drop(demo);
            Ok(())
        }
        Command::Enroll {
            cloud,
            token,
            config,
            attempts,
            replaces,
        } => {
            let replaces = replaces
                .as_deref()
                .map(sentra_edge::enrol_prompt::parse_replaces)
                .transpose()
                .map_err(StartError::Usage)?;
            let config = load_config(config.as_deref())?;
            telemetry::init("warn");
            let store = daemon::open_store(&config).await?;
            // An enrolled box is told so before anyone is asked for a token.
            if let Ok(Some(i)) = store.read(store_sync::identity).await {
                store.shutdown().await;
                return Err(StartError::Other(anyhow::anyhow!(
                    "enrolment failed: this box is already enrolled as device {} of branch {}",
                    i.device_id,
                    i.branch_id
                )));
            }
            // The token is checked here, before the network is used: a typo is exit 2 with
            // what to do. Reading the prompt blocks, so not on the runtime's threads.
            let entered = tokio::task::spawn_blocking(move || {
                let stdin = std::io::stdin();
                let interactive = std::io::IsTerminal::is_terminal(&stdin);
                sentra_edge::enrol_prompt::resolve(
                    cloud.as_deref(),
                    token.as_deref(),
                    replaces,
                    sentra_edge::enrol_prompt::Prompt {
                        input: &mut stdin.lock(),
                        output: &mut std::io::stderr(),
                        interactive,
                    },
                )
            })
            .await
            .unwrap_or_else(|e| Err(format!("reading the token failed: {e}")));
            let entered = match entered {
                Ok(entered) => entered,
                Err(why) => {
                    store.shutdown().await;
                    return Err(StartError::Usage(why));
                }
            };
            let cloud = entered.cloud;
            let result = sentra_edge::sync::enroll(
                &store,
                &config.sync,
                &cloud,
                entered.token.canonical(),
                entered.replaces.as_deref(),
                attempts.max(1),
                |m| eprintln!("sentra-edge: {m}"),
            )
            .await;
            store.shutdown().await;
            let enrolled = result.map_err(|e| {
                let why = if e.is_transient() {
                    // Unreachable or failing: the cloud did not take the one-time token, so it still works.
                    let tries = attempts.max(1);
                    let url = cloud.trim_end_matches('/');
                    format!(
                        "enrolment failed after {tries} attempt(s): {e}\n\
                         the token is still valid: check this box's network (`ip route`, DNS) \
                         and that the cloud answers from here (`curl -sS {url}/healthz`), then \
                         run the same command again (--attempts N tries longer)"
                    )
                } else {
                    format!("enrolment failed: {e}")
                };
                StartError::Other(anyhow::anyhow!(why))
            })?;
            let id = &enrolled.identity;
            let updates = match sentra_edge::update::release_key(
                &config,
                id.release_public_key.as_deref(),
            ) {
                Ok(Some(key)) => format!(
                    "updates: on, releases verified with key {} on channel {}",
                    sentra_protocol::fleet::key_id(&key),
                    id.channel.as_deref().unwrap_or("stable")
                ),
                _ => "updates: OFF, the cloud gave no release key; ask the cloud team to set releases.public_key, or set update.release_public_key".to_owned(),
            };
            let mut text = format!(
                "enrolled: device {} of branch {} ({}) at {}\n{updates}\n",
                id.device_id, id.branch_id, id.branch_name, id.cloud_url
            );
            if let Some(series) = &enrolled.number_series {
                text.push_str(&format!(
                    "numbers: invoices and credit notes in series {series} (held for this box by the cloud)\n"
                ));
            }
            if let Some(loaded) = &enrolled.loaded {
                text.push_str(&format!(
                    "replaces: device {} (retired: its pushes are refused from now on)\n\
                     carried over: {} open work orders with {} part lines, stock levels of {} parts{}\n\
                     not carried over: what the old box never synced, pick slips, paired tablets (pair them again), photos still on the old box\n",
                    loaded.predecessor,
                    loaded.work_orders,
                    loaded.part_lines,
                    loaded.stock_items,
                    if loaded.placeholders > 0 {
                        format!(
                            " ({} parts or mechanics not in the cloud's catalogue kept as placeholders)",
                            loaded.placeholders
                        )
                    } else {
                        String::new()
                    }
                ));
            }
            text.push_str("the running daemon starts syncing within seconds; `sentra-edge status` shows the link\n");
            out(&text);
            Ok(())
        }
        Command::Pair {
            config,
            role,
            print,
        } => {
            let config = load_config(config.as_deref())?;
            telemetry::init("warn");
            let store = daemon::open_store(&config).await?;
            let ttl = config.pairing.code_ttl_secs;
            let identity = match daemon::lan_identity(&store).await {
                Ok(i) => i,
                Err(e) => {
                    store.shutdown().await;
                    return Err(e);
                }
            };
            let fp = identity.fingerprint();
            // The running daemon's port (the configured one may be 0: a free port).
            let port = daemon::running(&config.store.data_dir)
                .map_or(config.api.tls_listen.port(), |d| d.api.port());
            let host = sentra_edge::lan::advertise_host(config.lan.advertise_host.as_deref());
            let url = sentra_edge::lan::https_url(&host, port);
            let uri_for = {
                let host = host.clone();
                move |code: &str| sentra_edge::lan::pairing_uri(&host, port, code, fp)
            };
            let written = store
                .write(move |w| {
                    let code = devices::new_pairing_code(w, role, ttl)?;
                    let job = if print {
                        let uri = uri_for(&code.code);
                        Some(print_jobs::enqueue_pairing(w, &code, Some(uri))?)
                    } else {
                        None
                    };
                    Ok((code, job))
                })
                .await;
            store.shutdown().await;
            let (code, job) = written?;
            if let Some(job) = job {
                out(&format!(
                    "print job {} queued: the running daemon prints the QR code on the branch printer\n",
                    job.id
                ));
            }
            out(&format!(
                "pairing code for a {} device: {}\nvalid until {} (one use)\n\
                 pairing URI (what the QR holds): {}\n\
                 box certificate: {fp} (a tablet pins it; curl: -k --pinnedpubkey {})\n\
                 On the device: POST {url}/v1/pair {{\"code\": \"{}\", \"device_name\": \"...\"}}\n",
                role.as_str(),
                code.code,
                code.expires_at,
                sentra_edge::lan::pairing_uri(&host, port, &code.code, fp),
                fp.curl_pin(),
                code.code
            ));
            Ok(())
        }
        Command::Status { config, json } => {
            let config = load_config(config.as_deref())?;
            telemetry::init("warn");
            let store = daemon::open_store(&config).await?;
            let device = store.ctx().device_id.clone();
            let ctx = store.ctx().clone();
            let (st, devs, sync, identity, branch, (printer, print_queue)) = store
                .read(move |c| {
                    Ok((
                        outbox::status(c, &device)?,
                        devices::list(c)?,
                        store_sync::state(c)?,
                        store_sync::identity(c)?,
                        store_sync::branch_id(c, &ctx)?,
                        (print_jobs::printer_state(c)?, print_jobs::queue_length(c)?),
                    ))
                })
                .await?;
            let photos = store
                .blobs()
                .stats()
                .await
                .map_err(|e| StartError::Other(e.into()))?;
            let lan_id = daemon::lan_identity(&store).await;
            store.shutdown().await;
            let fp = lan_id?.fingerprint();
            let size = std::fs::metadata(config.db_path())
                .map(|m| m.len())
                .unwrap_or(0);
            let live = devs.iter().filter(|d| d.revoked_at.is_none()).count();
            let scanner = sentra_edge::scanner::read_state_file(&config.store.data_dir);
            // The name the daemon announces over mDNS (None: lan.mdns = false).
            let mdns = config
                .lan
                .mdns
                .then(|| sentra_edge::mdns::name(&branch, &st.device_id));
            if json {
                let cloud = identity.as_ref().map(|i| serde_json::json!({"url": i.cloud_url, "device_id": i.device_id, "branch_name": i.branch_name, "enrolled_at": i.enrolled_at}));
                let mdns = mdns.as_ref().map(|n| serde_json::json!({"name": n, "host": format!("{n}.local"), "service": sentra_edge::mdns::SERVICE_TYPE}));
                let v = serde_json::json!({"branch": branch, "store": {"path": config.db_path(), "bytes": size}, "outbox": st, "sync": sync, "cloud": cloud, "mdns": mdns, "paired_devices": live, "printer": {"state": printer, "queued_jobs": print_queue}, "scanner": scanner, "photos": photos, "lan": {"fingerprint": fp.uri(), "curl_pin": fp.curl_pin(), "plain": config.lan.plain}});
                out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&v).expect("serialises")
                ));
            } else {
                let cloud = match &identity {
                    None => "not enrolled: changes wait in the outbox (sentra-edge-admin enroll, and scan the enrolment sheet at the prompt)".to_owned(),
                    Some(i) => format!(
                        "{} as device {}; last ack {} (seq {}), last pull {}, clock skew {} ms, {} parked{}",
                        i.cloud_url,
                        i.device_id,
                        sync.last_ack_at.as_deref().unwrap_or("never"),
                        sync.last_ack_seq,
                        sync.last_pull_at.as_deref().unwrap_or("never"),
                        sync.clock_skew_ms,
                        sync.parked_events,
                        sync.last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
                    ),
                };
                let printer = match &printer {
                    None => format!(
                        "no state recorded (the daemon has not run with a print worker yet); {print_queue} job(s) queued"
                    ),
                    Some(p) => format!(
                        "{}: {} since {}{}; {print_queue} job(s) queued",
                        p.target,
                        p.state,
                        p.since,
                        p.detail
                            .as_deref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    ),
                };
                out(&format!(
                    "branch       {branch}\ndevice       {}\nstore        {} ({size} bytes)\noutbox       {} events, {} pending ({} bytes), oldest pending {}\ncloud        {cloud}\ndevices      {live} paired, {} revoked\nprinter      {printer}\n",
                    st.device_id,
                    config.db_path().display(),
                    st.last_seq,
                    st.pending_events,
                    st.pending_bytes,
                    st.oldest_pending_at.as_deref().unwrap_or("-"),
                    devs.len() - live
                ));
                out(&format!(
                    "mdns         {}\n",
                    match &mdns {
                        Some(n) =>
                            format!("{n}.local, service {}", sentra_edge::mdns::SERVICE_TYPE),
                        None => "not announced (lan.mdns = false)".to_owned(),
                    }
                ));
                out(&format!(
                    "scanner      {}\n",
                    sentra_edge::scanner::describe(scanner.as_ref())
                ));
                out(&format!(
                    "certificate  {fp} (curl: --pinnedpubkey {}){}\n",
                    fp.curl_pin(),
                    if config.lan.plain {
                        "; plain HTTP and MQTT also served (lan.plain)"
                    } else {
                        ""
                    }
                ));
                out(&format!(
                    "photos       {} kept ({} bytes, limit {}), {} waiting for the cloud ({} bytes)\n",
                    photos.count,
                    photos.bytes,
                    config.blobs.max_bytes,
                    photos.pending_count,
                    photos.pending_bytes
                ));
            }
            Ok(())
        }
        Command::Doctor { config } => {
            let path = config.clone().or_else(|| {
                let d = Path::new(config::DEFAULT_CONFIG_PATH);
                d.exists().then(|| d.to_owned())
            });
            let shown = path.as_deref().map_or_else(
                || "(built-in defaults)".to_owned(),
                |p| p.display().to_string(),
            );
            let config = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    out(&format!(
                        "FIX  config {shown}: invalid; fix the lines below, then `sentra-edge config check`\n"
                    ));
                    return Err(e);
                }
            };
            telemetry::init("warn");
            let mut report = doctor::Report::default();
            report.push(doctor::Check {
                needs_action: false,
                line: format!("config {shown}: valid (branch {})", config.branch.id),
            });
            let store = match daemon::open_store(&config).await {
                Ok(s) => s,
                Err(e) => {
                    out(&report.render());
                    out(&format!("FIX  store {}: {e}\n", config.db_path().display()));
                    return Err(e);
                }
            };
            doctor::run(&config, &store, &mut report).await;
            store.shutdown().await;
            out(&report.render());
            match report.exit_code() {
                0 => Ok(()),
                _ => Err(StartError::Other(anyhow::anyhow!(
                    "doctor: something needs action (lines marked FIX)"
                ))),
            }
        }
        Command::Backup {
            file,
            into,
            keep,
            config,
        } => {
            let config = load_config(config.as_deref())?;
            telemetry::init("warn");
            let other = |e: std::io::Error, what: &Path| {
                StartError::Other(anyhow::anyhow!("{}: {e}", what.display()))
            };
            let now = time::OffsetDateTime::now_utc();
            let dest = match (file, &into) {
                (Some(file), _) => file,
                (None, Some(dir)) => {
                    std::fs::create_dir_all(dir).map_err(|e| other(e, dir))?;
                    dir.join(sentra_edge::backup::dated_name(now))
                }
                (None, None) => {
                    return Err(StartError::Other(anyhow::anyhow!(
                        "name a FILE or --into DIR"
                    )));
                }
            };
            let store = daemon::open_store(&config).await?;
            let report = store.backup(dest).await;
            store.shutdown().await;
            let report = report?;
            // Read back whole for its digest: what the daemon uploads, and the cloud verifies.
            let path = report.path.clone();
            let sha256 = match tokio::task::spawn_blocking(move || {
                sentra_edge::backup::sha256_of(&path)
            })
            .await
            {
                Ok(Ok(sha256)) => Some(sha256),
                Ok(Err(e)) => {
                    eprintln!(
                        "sentra-edge: the backup is written, but reading it back failed: {e}; it will not be uploaded"
                    );
                    None
                }
                Err(_) => None,
            };
            let last = sentra_edge::backup::LastBackup {
                at: now
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                path: report.path.clone(),
                bytes: report.bytes,
                events: report.events,
                sha256,
                earlier: Vec::new(),
            };
            if let Err(e) = sentra_edge::backup::record(&config.store.data_dir, &last) {
                eprintln!(
                    "sentra-edge: the backup is written, but {} is not: {e}; doctor will not see it",
                    sentra_edge::backup::STATE_FILE
                );
            }
            out(&format!(
                "backup written: {} ({} bytes, {} outbox events), encrypted with the store key\n",
                report.path.display(),
                report.bytes,
                report.events
            ));
            if let Some(dir) = &into {
                for old in sentra_edge::backup::prune(dir, keep).map_err(|e| other(e, dir))? {
                    out(&format!("removed the older backup {}\n", old.display()));
                }
            }
            Ok(())
        }
        Command::Restore { file, config } => {
            let config = load_config(config.as_deref())?;
            telemetry::init("warn");
            if let Some(d) = daemon::running(&config.store.data_dir) {
                return Err(StartError::Other(anyhow::anyhow!(
                    "the daemon is running (pid {}): stop it first (systemctl stop sentra-edge), then restore",
                    d.pid
                )));
            }
            let (key, _) = StoreKey::load(&config.store.key_file)?;
            let dest = config.db_path();
            let branch = config.branch.id.clone();
            let report = tokio::task::spawn_blocking(move || {
                sentra_edge::store::restore(&file, &dest, &key, Some(&branch))
            })
            .await
            .map_err(|e| StartError::Other(e.into()))??;
            out(&format!(
                "restored {} (branch {}, {} outbox events, {} acknowledged by the cloud then)\n{}\
                 invoice and credit-note numbers from now on are in series {} (e.g. {}), so none repeats one the replaced store issued\n\
                 start the daemon: systemctl start sentra-edge; events the box makes now that the cloud already holds numbers for are renumbered at the next sync, none is lost\n",
                report.path.display(),
                report.branch_id.as_deref().unwrap_or("not enrolled"),
                report.last_seq,
                report.last_ack_seq,
                report
                    .replaced
                    .map(|p| format!("the store it replaced is kept as {}\n", p.display()))
                    .unwrap_or_default(),
                report.number_series,
                sentra_edge::domain::billing::invoice_number(
                    &config.branch.id,
                    "YYYYMM",
                    &report.number_series,
                    1
                ),
            ));
            Ok(())
        }
        Command::LoadDemoData { config } => {
            let config = load_config(config.as_deref())?;
            telemetry::init("warn");
            let store = daemon::open_store(&config).await?;
            let loaded = daemon::load_demo_data(&store).await;
            store.shutdown().await;
            let (parts, mechanics, assets) = loaded?;
            out(&format!(
                "demo data loaded: {parts} parts (20 of each in stock), {mechanics} mechanics, {assets} rental assets\n"
            ));
            Ok(())
        }
        Command::EdcSandbox { link } => {
            use tokio_serial::SerialPort as _;
            let (master, slave) = tokio_serial::SerialStream::pair().map_err(|e| {
                StartError::Other(anyhow::anyhow!("cannot open a pseudo-terminal: {e}"))
            })?;
            let name = slave.name().unwrap_or_default();
            if let Some(link) = &link {
                let _ = std::fs::remove_file(link);
                std::os::unix::fs::symlink(&name, link).map_err(|e| {
                    StartError::Other(anyhow::anyhow!("symlink {}: {e}", link.display()))
                })?;
            }
            let device = link
                .as_ref()
                .map_or_else(|| name.clone(), |l| l.display().to_string());
            out(&format!(
                "sandbox card terminal on {name}: set edc.device = \"{device}\" and restart the daemon; Ctrl-C stops it\n"
            ));
            let served = tokio::select! {
                r = sentra_edge::edc::sandbox::serve(master, Default::default()) => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            };
            drop(slave);
            if let Some(link) = &link {
                let _ = std::fs::remove_file(link);
            }
            served.map_err(|e| StartError::Other(e.into()))
        }
        Command::Keygen { file } => {
            StoreKey::generate().write_new(&file)?;
            out(&format!(
                "store key written to {} (mode 0600); keep a copy offline: without it the store cannot be read\n",
                file.display()
            ));
            Ok(())
        }
        Command::Config { command } => match command {
            ConfigCommand::Defaults => {
                out(&Config::defaults().to_toml());
                Ok(())
            }
            ConfigCommand::Check { config } => {
                let config = load_config(config.as_deref())?;
                out(&config.to_toml());
                Ok(())
            }
        },
        Command::Update { command } => {
            let (config, version, apply) = match command {
                UpdateCommand::Check { config, version } => (config, version, false),
                UpdateCommand::Apply { config, version } => (config, version, true),
            };
            let config = load_config(config.as_deref())?;
            telemetry::init("info");
            let store = daemon::open_store(&config).await?;
            let clock = store.ctx().clock.clone();
            let identity = store.read(store_sync::identity).await;
            let lan_id = daemon::lan_identity(&store).await;
            store.shutdown().await;
            let (identity, lan_pin) = (identity?, lan_id?.fingerprint());
            let identity = identity.ok_or_else(|| {
                StartError::Other(anyhow::anyhow!(
                    "this box is not enrolled; run `sentra-edge-admin enroll` and scan the enrolment sheet at the prompt"
                ))
            })?;
            let client =
                sentra_edge::sync::client::CloudClient::new(&config.sync, &identity, clock)
                    .map_err(|e| StartError::Other(e.into()))?;
            let pinned = identity.release_public_key.clone();
            let updater =
                sentra_edge::update::Updater::new(config, client, pinned).with_lan_pin(lan_pin);
            if apply {
                let done = updater
                    .apply(version.as_deref())
                    .await
                    .map_err(|e| StartError::Other(e.into()))?;
                out(&format!("{done}\n"));
            } else {
                let check = updater
                    .check(version.as_deref())
                    .await
                    .map_err(|e| StartError::Other(e.into()))?;
                out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&check).expect("serialises")
                ));
            }
            Ok(())
        }
        Command::Version => {
            out(&format!(
                "sentra-edge {}\n",
                sentra_edge::update::RUNNING_VERSION.as_str()
            ));
            Ok(())
        }
    }
}
