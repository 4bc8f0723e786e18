//! Starting and stopping the appliance: open the store, load (or at first start make) the box's
//! LAN certificate (`lan`), bind the API, tell systemd we are ready
//! (and start the watchdog probe, `watchdog.rs`), run until SIGTERM, then shut down in order (stop taking requests, finish those in flight,
//! finish queued writes, close the store). `demo` is the same daemon on a throwaway directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::domain::{Name, Qty, Role, Sku};
use crate::store::{self, Store, StoreKey, StoreOptions, devices, master, workshop};
use crate::supervisor::Supervisor;
use crate::sync::SyncHandle;

/// Errors with their exit codes (the contract: ARCHITECTURE.md, "What is fixed"): 2 usage or config, 3 store key or store, 1 other.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error(transparent)]
    Key(#[from] store::key::KeyError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(
        "api.listen {addr}: {source}; is another sentra-edge (or something else) using this port?"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "api.tls_listen {addr}: {source}; is another sentra-edge (or something else) using this port?"
    )]
    BindTls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Lan(#[from] crate::lan::LanError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    /// The command was asked something it cannot do as asked (exit 2): the message says what to
    /// do instead.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StartError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) | StartError::Usage(_) => 2,
            StartError::Key(_) => 3,
            StartError::Store(e) if e.is_unreadable() => 3,
            StartError::Store(_)
            | StartError::Bind { .. }
            | StartError::BindTls { .. }
            | StartError::Lan(_)
            | StartError::Broker(_)
            | StartError::Other(_) => 1,
        }
    }
}

/// Open the store named by `config` with the key from the key file or systemd credential.
pub async fn open_store(config: &Config) -> Result<Store, StartError> {
    let (key, key_path) = StoreKey::load(&config.store.key_file)?;
    tracing::debug!(key = %key_path.display(), "store key loaded");
    open_store_with(config, key).await
}

pub async fn open_store_with(config: &Config, key: StoreKey) -> Result<Store, StartError> {
    let opts = StoreOptions {
        path: config.db_path(),
        key,
        readers: config.store.readers,
        max_batch: config.store.max_batch,
        branch_id: config.branch.id.clone(),
        utc_offset: config.branch.utc_offset,
    };
    let store = tokio::task::spawn_blocking(move || Store::open(opts))
        .await
        .context("store open task")??;
    Ok(store)
}

/// The box's LAN identity from the store, made and kept there at the first call (daemon start,
/// or a command that needs it before the daemon ever ran). Never changes afterwards.
pub async fn lan_identity(store: &Store) -> Result<crate::lan::Identity, StartError> {
    if let Some((cert, key)) = store.read(store::lan::identity).await? {
        return Ok(crate::lan::Identity::from_pem(&cert, &key)?);
    }
    let fresh = tokio::task::spawn_blocking(crate::lan::Identity::generate)
        .await
        .context("certificate task")??;
    let (cert, key) = store
        .write(move |w| store::lan::keep_identity(w, fresh.cert_pem(), fresh.key_pem()))
        .await?;
    let identity = crate::lan::Identity::from_pem(&cert, &key)?;
    tracing::info!(fingerprint = %identity.fingerprint(), "made the box's LAN certificate");
    Ok(identity)
}

/// What a started daemon tells its caller.
pub struct Started {
    /// The API over HTTPS.
    pub addr: SocketAddr,
    /// The API over plain HTTP (`lan.plain`).
    pub plain: Option<SocketAddr>,
    /// Where the MQTT broker listens over TLS (None: `mqtt.enabled = false`).
    pub mqtt: Option<SocketAddr>,
    /// Plain MQTT (`lan.plain` and the broker enabled).
    pub mqtt_plain: Option<SocketAddr>,
    /// The certificate both present.
    pub fingerprint: crate::lan::Fingerprint,
}

/// What `sentra-edge doctor` reads to find the running daemon: `daemon-state.json` in the data
/// directory, written at start and removed at a clean stop.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DaemonState {
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    /// The API over HTTPS.
    pub api: SocketAddr,
    /// The API over plain HTTP, when `lan.plain`.
    #[serde(default)]
    pub api_plain: Option<SocketAddr>,
    pub mqtt: Option<SocketAddr>,
    /// The certificate the daemon presents (`sha256:<hex>`).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

pub const STATE_FILE: &str = "daemon-state.json";

pub fn read_state_file(dir: &std::path::Path) -> Option<DaemonState> {
    serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).ok()?).ok()
}

/// The daemon running on this data directory, if one is (its state file names a live process).
pub fn running(dir: &std::path::Path) -> Option<DaemonState> {
    read_state_file(dir).filter(|d| pid_alive(d.pid))
}

pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn write_state_file(dir: &std::path::Path, state: &DaemonState) {
    let (path, tmp) = (dir.join(STATE_FILE), dir.join(format!("{STATE_FILE}.tmp")));
    let json = serde_json::to_vec_pretty(state).expect("the state always serialises");
    if let Err(e) = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, &path)) {
        tracing::warn!(path = %path.display(), error = %e, "daemon state file not written; doctor will not find the daemon");
    }
}

/// Run the daemon until SIGTERM/SIGINT (or `supervisor` is cancelled). `on_ready` runs once the
/// API is serving, before READY is sent to systemd.
pub async fn run(
    config: Config,
    store: Store,
    supervisor: Supervisor,
    on_ready: impl FnOnce(&Started, &Store),
) -> Result<(), StartError> {
    // An enrolled box serves the branch the cloud named (the store's, `Store::open`): its MQTT
    // topics, pairing answers and logs agree with its invoice numbers even where `branch.id`
    // was left at its default in the configuration.
    let mut config = config;
    if config.branch.id != store.ctx().branch_id {
        tracing::warn!(configured = %config.branch.id, enrolled = %store.ctx().branch_id,
            "branch.id in the configuration is not the branch this box is enrolled to; serving the enrolled branch");
        config.branch.id = store.ctx().branch_id.clone();
    }
    let identity = lan_identity(&store).await?;
    let fingerprint = identity.fingerprint();
    let tls_listener = tokio::net::TcpListener::bind(config.api.tls_listen)
        .await
        .map_err(|source| StartError::BindTls {
            addr: config.api.tls_listen,
            source,
        })?;
    let addr = tls_listener
        .local_addr()
        .map_err(|source| StartError::BindTls {
            addr: config.api.tls_listen,
            source,
        })?;
    // Plain HTTP only for legacy POS (`lan.plain`): tokens cross the Wi-Fi readable there.
    let plain_listener = if config.lan.plain {
        let listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.api.listen,
                source,
            })?;
        let plain = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.api.listen,
            source,
        })?;
        Some((listener, plain))
    } else {
        None
    };
    let plain_addr = plain_listener.as_ref().map(|(_, a)| *a);
    // Without `lan.plain`, the plain port still answers `/healthz` and `/readyz` on loopback
    // only: the updater of a release from before TLS asks `http://127.0.0.1:<api.listen
    // port>/readyz` whether the new release came up, and would roll it back otherwise. Nothing
    // else is served there and nothing of it reaches the Wi-Fi.
    let probe_listener = if config.lan.plain {
        None
    } else {
        let probe = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, config.api.listen.port()));
        match tokio::net::TcpListener::bind(probe).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(%probe, %error, "the loopback health door is not served; an update from a release before TLS would roll back");
                None
            }
        }
    };
    let api_tls = identity.server_config(&[b"http/1.1"])?;
    let mqtt_tls = identity.server_config(&[])?;
    // The broker binds before anything is served, so a taken port stops the start with its
    // own error, and the bridge hears every change from the first request on.
    let broker = if config.mqtt.enabled {
        let (cfg, st, branch) = (config.mqtt.clone(), store.clone(), config.branch.id.clone());
        Some(
            tokio::task::spawn_blocking(move || {
                crate::broker::Broker::start(&cfg, st, branch, Some(mqtt_tls))
            })
            .await
            .context("broker start task")??,
        )
    } else {
        None
    };
    let mqtt_addr = broker.as_ref().and_then(crate::broker::Broker::tls_addr);
    let mqtt_plain = broker.as_ref().and_then(crate::broker::Broker::plain_addr);
    let sync = SyncHandle::default();
    let mut state = AppState::new(store.clone(), config.clone(), sync.clone());
    let scanner = crate::scanner::ScannerHandle::new(&config.scanner);
    state.scanner = scanner.clone();
    state.mqtt_port = mqtt_addr.map(|a| a.port());
    state.mqtt_plain_port = mqtt_plain.map(|a| a.port());
    if let Some(b) = &broker {
        let bridge = crate::broker::bridge::Bridge {
            store: store.clone(),
            broker: b.handle(),
            branch: config.branch.id.clone(),
            sync: sync.clone(),
            data_dir: config.store.data_dir.clone(),
        };
        let (notices, cancel) = (store.subscribe(), supervisor.token());
        supervisor.spawn(
            "mqtt-bridge",
            async move { bridge.run(notices, cancel).await },
        );
    }
    supervisor
        .cancel_on_signals()
        .context("installing signal handlers")?;
    if let Some((listener, _)) = plain_listener {
        let (state, cancel) = (state.clone(), supervisor.token());
        supervisor.spawn("api-plain", async move {
            api::serve(listener, state, None, cancel)
                .await
                .context("local API (plain)")
        });
    }
    if let Some(listener) = probe_listener {
        let (state, cancel) = (state.clone(), supervisor.token());
        supervisor.spawn("api-probes", async move {
            api::serve_probes(listener, state, cancel)
                .await
                .context("local health door")
        });
    }
    let cancel = supervisor.token();
    supervisor.spawn("api", async move {
        api::serve(tls_listener, state, Some(api_tls), cancel)
            .await
            .context("local API")
    });
    let (sync_store, sync_cfg, cancel) = (store.clone(), config.sync.clone(), supervisor.token());
    let up_backups = config
        .blobs
        .upload_backups
        .then(|| config.store.data_dir.clone());
    let (up_store, up_sync_cfg, up_cfg, up_handle, up_cancel) = (
        store.clone(),
        config.sync.clone(),
        config.blobs,
        sync.clone(),
        supervisor.token(),
    );
    supervisor.spawn("sync", async move {
        crate::sync::run(sync_store, sync_cfg, sync, cancel).await
    });
    supervisor.spawn("photo-upload", async move {
        crate::sync::blobs::run(
            up_store,
            up_sync_cfg,
            up_cfg,
            up_backups,
            up_handle,
            up_cancel,
        )
        .await
    });
    let (beat_store, beat_cfg, beat_scanner, cancel) = (
        store.clone(),
        config.clone(),
        scanner.clone(),
        supervisor.token(),
    );
    supervisor.spawn("heartbeat", async move {
        crate::sync::heartbeat::run(beat_store, beat_cfg, beat_scanner, cancel).await
    });
    let (print_store, branch, printer, cancel) = (
        store.clone(),
        config.branch.clone(),
        config.printer.clone(),
        supervisor.token(),
    );
    supervisor.spawn("printer", async move {
        crate::printer::run(print_store, branch, printer, cancel).await
    });
    crate::scanner::spawn(
        &supervisor,
        store.clone(),
        config.scanner.clone(),
        config.store.data_dir.clone(),
        scanner,
    );
    if config.lan.mdns {
        let ctx = store.ctx().clone();
        let branch = store.read(move |c| store::sync::branch_id(c, &ctx)).await?;
        let announcement = crate::mdns::Announcement {
            branch,
            install_id: store.ctx().device_id.clone(),
            // The box's TLS certificate fingerprint (`sha256:<hex>`): a tablet that browses
            // checks it against the one it pinned at pairing.
            fingerprint: fingerprint.to_string(),
            api_port: addr.port(),
            mqtt_port: mqtt_addr.map(|a| a.port()),
        };
        let cancel = supervisor.token();
        supervisor.spawn("mdns", async move {
            crate::mdns::run(announcement, cancel).await
        });
    }
    tracing::info!(%addr, plain = ?plain_addr, %fingerprint, branch = %config.branch.id, device = %store.ctx().device_id, version = env!("CARGO_PKG_VERSION"), "sentra-edge serving");
    let daemon_state = DaemonState {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: store::format_time(time::OffsetDateTime::now_utc()),
        api: addr,
        api_plain: plain_addr,
        mqtt: mqtt_addr,
        fingerprint: Some(fingerprint.uri()),
    };
    let data_dir = config.store.data_dir.clone();
    {
        let dir = data_dir.clone();
        let _ = tokio::task::spawn_blocking(move || write_state_file(&dir, &daemon_state)).await;
    }
    on_ready(
        &Started {
            addr,
            plain: plain_addr,
            mqtt: mqtt_addr,
            mqtt_plain,
            fingerprint,
        },
        &store,
    );
    // READY only now: the store is open and migrated, the API's socket is bound and its task
    // runs, and the MQTT broker listens. Anything else that serves the LAN must start above this
    // line and be given to the watchdog's `Targets`, so READY and the pings cover it too.
    let serving = match mqtt_addr {
        Some(m) => format!(
            "serving: api https {addr}, mqtt tls {m}, branch {}",
            config.branch.id
        ),
        None => format!("serving: api https {addr}, branch {}", config.branch.id),
    };
    crate::watchdog::ready(&serving);
    let targets = crate::watchdog::Targets {
        store: store.clone(),
        api: addr,
        fingerprint,
        broker: mqtt_addr,
    };
    if let Some(every) = crate::watchdog::spawn(&supervisor, targets) {
        tracing::info!(
            every_ms = every.as_millis() as u64,
            "systemd watchdog: probing store, API and broker"
        );
    }
    supervisor.wait().await;
    crate::watchdog::stopping();
    // The bridge has stopped (a supervised task); now drop the broker's connections, then close
    // the store.
    if let Some(b) = broker {
        let _ = tokio::task::spawn_blocking(move || b.stop()).await;
    }
    let _ = std::fs::remove_file(data_dir.join(STATE_FILE));
    store.shutdown().await;
    tracing::info!("sentra-edge stopped");
    Ok(())
}

/// The demo: defaults, a throwaway directory, a generated key, demo master data and stock.
pub struct Demo {
    pub config: Config,
    pub key: StoreKey,
    pub dir: tempfile::TempDir,
}

impl Demo {
    pub fn new(listen: SocketAddr) -> anyhow::Result<Demo> {
        let dir = tempfile::Builder::new()
            .prefix("sentra-demo-")
            .tempdir()
            .context("creating the demo directory")?;
        let mut config = Config::defaults();
        config.store.data_dir = dir.path().to_owned();
        config.store.key_file = PathBuf::from("(generated for the demo)");
        // The demo also serves plain HTTP and MQTT (lan.plain), on `listen` and a free port;
        // HTTPS and MQTT over TLS take free ports beside them.
        config.lan.plain = true;
        config.mqtt.plain = true;
        config.api.listen = listen;
        config.api.tls_listen = SocketAddr::new(listen.ip(), 0);
        config.mqtt.listen = SocketAddr::new(listen.ip(), 0);
        config.mqtt.tls_listen = SocketAddr::new(listen.ip(), 0);
        // The pairing URI names where the demo listens.
        config.lan.advertise_host = Some(listen.ip().to_string());
        // The demo's printer is a file: documents land there as ESC/POS bytes.
        config.printer.kind = crate::config::PrinterKind::File;
        config.printer.address = dir.path().join("printer.escpos").display().to_string();
        Ok(Demo {
            config,
            key: StoreKey::generate(),
            dir,
        })
    }

    /// Seed master data and opening stock, and make one pairing code per role.
    pub async fn seed(&self, store: &Store) -> anyhow::Result<Vec<devices::PairingCode>> {
        load_demo_data(store).await?;
        let ttl = self.config.pairing.code_ttl_secs;
        let codes = store
            .write(move |w| {
                Role::ALL
                    .iter()
                    .map(|r| devices::new_pairing_code(w, *r, ttl))
                    .collect::<store::Result<Vec<_>>>()
            })
            .await?;
        Ok(codes)
    }
}

/// The demo catalogue (its rental SKUs' tariffs too) and 20 of each part in stock (one receipt
/// each, through the outbox).
/// Returns how many parts, mechanics and assets were loaded.
pub async fn load_demo_data(store: &Store) -> Result<(usize, usize, usize), StartError> {
    Ok(store
        .write(move |w| {
            let (parts, mechanics, assets) = master::demo_data();
            master::upsert(w, &parts, &mechanics, &assets)?;
            // The rental SKUs' tariffs, as the cloud's master data would bring them.
            for tariff in store::rentals::demo_tariffs() {
                store::rentals::upsert_tariff(w, &tariff)?;
            }
            // And its staff (a manager and a cashier; their PINs are in the README).
            for member in store::staff::demo_staff() {
                store::staff::upsert_staff(w, &member)?;
            }
            for p in &parts {
                let sku = Sku::parse(p.sku.clone()).expect("demo SKUs are valid");
                workshop::receive(w, "demo", &sku, Qty::new(20).expect("valid"), None)?;
            }
            Ok((parts.len(), mechanics.len(), assets.len()))
        })
        .await?)
}

/// Pair a device directly (no code), for benchmarks and tools that drive a local daemon.
/// Returns its bearer token.
pub async fn pair_direct(store: &Store, name: &str, role: Role) -> anyhow::Result<String> {
    let name = Name::parse(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(store
        .write(move |w| devices::create_direct(w, &name, role))
        .await?
        .1
        .token)
}
