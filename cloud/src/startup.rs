//! `sentra-cloud serve`: builds the shared state, binds the listener, runs the HTTP server and
//! shuts it all down on SIGTERM or SIGINT.
//!
//! Shutdown is designed, not hoped for: one [`CancellationToken`] is the stop signal for every
//! task, every task is spawned on one [`TaskTracker`], and `serve` returns only after the server
//! has drained (or [`SHUTDOWN_GRACE`] ran out) and every tracked task has finished. The booking
//! sweeper (due holds, calendar rebuild) joins the same tracker as the request-nonce pruner, the
//! fleet history pruner (and thinner), the fleet count sampler, the fleet gauges' reader and the
//! sweeper of abandoned photo uploads (with a photo store), and so do the notification publisher
//! (with `notify.amqp_url`) and worker and sandbox gateway (with `notify.gateway_url` too).
//!
//! Connections are lazy: a replica starts and answers `/healthz` while PostgreSQL or Redis is
//! down, and `/readyz` says so, instead of crash-looping until its dependencies are back.
//!
//! The first line on stdout is `listening on ADDR` with the bound address, so whoever started
//! the process (a test, a script) can use port 0 and learn the port. Logs go to stderr.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{self, AppState};
use crate::booking;
use crate::config::Config;
use crate::devices::auth;
use crate::health;
use crate::notify;
use crate::redis_conn::RedisConn;

/// Connections per replica to PostgreSQL. Small on purpose: replicas multiply it, and
/// How many connections the kernel may queue before `accept`. At the default (128, the
/// bound `TcpListener::bind` gives) a herd of a thousand portal clients overflowed it: the
/// kernel dropped the handshakes it could not queue and the clients tried again a second
/// later. The kernel caps it at `net.core.somaxconn` (4096 on Debian 12).
const LISTEN_BACKLOG: u32 = 4096;

/// What one replica serves at once, and how long a client may take to send a request head (or
/// stay idle between requests). The cap is above the herd the booking bench sends (1000 new
/// connections at once) and at the backlog, so a burst waits in the kernel instead of being
/// refused; 30 s is hyper's own default for the head, which `axum::serve` never turned on.
const SERVER_LIMITS: sentra_serve::Limits = sentra_serve::Limits {
    max_connections: 4096,
    header_read_timeout: Duration::from_secs(30),
};

/// The service's listening socket, with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// PostgreSQL's default `max_connections` is 100.
pub const DB_MAX_CONNECTIONS: u32 = 10;

/// A pooled connection idle at least this long is pinged before it is handed out, so one broken
/// by a PostgreSQL restart or a dropped link is replaced instead of failing a request. A busy
/// pool's connections are not: sqlx's default pings on every acquire, one PostgreSQL round trip
/// more per use of the pool (a hold made two where one does; +6 % holds/s, docs/benchmarks.md).
const DB_PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// PostgreSQL connections a replica opens before it listens (the pool opens the rest on demand).
pub const DB_WARM_CONNECTIONS: usize = 4;

/// How long [`warm_up`] may hold back listening when PostgreSQL or Redis is slow or down (then
/// `/readyz` says which, as before).
const WARM_UP_LIMIT: Duration = Duration::from_secs(2);

/// Before a replica listens: [`DB_WARM_CONNECTIONS`] PostgreSQL connections open in the pool and
/// the booking scripts in Redis. A replica that starts during a promotion otherwise meets the
/// herd cold: every request waits for the pool's first connections, and each lock and calendar
/// script comes back `NOSCRIPT` once and is sent again (docs/benchmarks.md, the herd on a
/// just-started service). Bounded by [`WARM_UP_LIMIT`]; nothing here can stop the start.
async fn warm_up(db: &PgPool, booking: &booking::Booking) {
    let started = std::time::Instant::now();
    let pool = async {
        let connections =
            futures_util::future::join_all((0..DB_WARM_CONNECTIONS).map(|_| db.acquire())).await;
        connections
            .iter()
            .filter(|connection| connection.is_ok())
            .count()
    };
    let warmed = tokio::time::timeout(
        WARM_UP_LIMIT,
        futures_util::future::join(pool, booking.load_scripts()),
    )
    .await;
    let elapsed_ms = started.elapsed().as_millis();
    match warmed {
        Ok((connections, (calendar, lock_nodes))) => tracing::info!(
            connections,
            calendar_scripts = calendar,
            lock_nodes,
            elapsed_ms,
            "warmed up"
        ),
        Err(_) => tracing::warn!(
            elapsed_ms,
            "warming up did not finish (PostgreSQL or Redis slow or down); listening anyway"
        ),
    }
}

/// How long a request waits for a PostgreSQL connection before it fails; the readiness check's
/// own timeout, so a down database makes `/readyz` answer 503 in time.
pub const DB_ACQUIRE_TIMEOUT: Duration = health::CHECK_TIMEOUT;

/// How long one attempt to connect to Redis, and one Redis command, may take. Redis answers in
/// microseconds when it is up; anything slower is "down" for a fast path.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// Reconnection attempts per Redis command before it fails (the manager retries again on the
/// next command). Few, because a caller waiting on a dead Redis should fall back to PostgreSQL.
pub const REDIS_RETRIES: usize = 1;

/// The longest pause before that retry: a random wait up to twice this (the manager's backoff).
/// Its default, 100 ms, made every Redis call of a request wait up to 200 ms while Redis was
/// down, before the request could go on to PostgreSQL: with Redis off, a herd of 1000 waited
/// ~300 ms for its answers even once PostgreSQL had decided (docs/benchmarks.md).
pub const REDIS_RETRY_DELAY: Duration = Duration::from_millis(10);

/// Retries of one command on a Redis Cluster (a `MOVED` after a failover is one), all within
/// [`REDIS_TIMEOUT`].
pub const REDIS_CLUSTER_RETRIES: u32 = 3;

/// How long in-flight requests may take to finish after a stop signal. Below the 30 s that
/// systemd and Kubernetes wait before SIGKILL, so we close connections ourselves first.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("redis {url}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the {signal} handler")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("notifications")]
    Notify(#[source] crate::notify::NotifyError),
    #[error("the identity provider")]
    Identity(#[source] anyhow::Error),
}

/// The identity service: the provider's client (starting the in-process sandbox when
/// `identity.provider_url = "sandbox"`), the NIK key and the gate's setting.
async fn start_identity(
    config: &crate::config::IdentityConfig,
    stop: CancellationToken,
) -> Result<crate::identity::Identity, ServeError> {
    use crate::config::IdentityProviderUrl;
    use crate::identity::provider::{Verihubs, sandbox};
    let api_key = config
        .api_key
        .as_ref()
        .map(|key| String::from_utf8_lossy(key.expose()).into_owned())
        .unwrap_or_default();
    let provider = match &config.provider {
        None => {
            tracing::info!(
                required = config.required,
                "identity.provider_url is not set: identity checks answer 503"
            );
            None
        }
        Some(IdentityProviderUrl::Sandbox) => {
            let (addr, _task) = sandbox::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                (!api_key.is_empty()).then(|| api_key.clone()),
                stop,
            )
            .await
            .map_err(|error| ServeError::Identity(error.into()))?;
            tracing::info!(%addr, "identity checks go to the sandbox provider");
            Some(
                Verihubs::new(&format!("http://{addr}"), &config.app_id, &api_key)
                    .map_err(|error| ServeError::Identity(error.into()))?,
            )
        }
        Some(IdentityProviderUrl::Url(url)) => Some(
            Verihubs::new(url, &config.app_id, &api_key)
                .map_err(|error| ServeError::Identity(error.into()))?,
        ),
    };
    Ok(crate::identity::Identity::new(
        provider,
        config.nik_secret.clone(),
        config.required,
        (config.checks_per_caller, config.check_window),
    ))
}

/// Runs the service until SIGTERM or SIGINT; `Ok` after a clean shutdown.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    tracing::info!(?config, "starting");
    log_backing_tls(&config);
    let db = PgPoolOptions::new()
        .max_connections(DB_MAX_CONNECTIONS)
        .acquire_timeout(DB_ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= DB_PING_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(config.database.url.connect_options());
    let redis = connect_redis(&config)?;
    let lock_nodes = config
        .redis
        .lock_nodes
        .iter()
        .map(|url| connect_redis_url(url, &config.redis).map(RedisConn::Single))
        .collect::<Result<Vec<_>, _>>()?;
    let token = CancellationToken::new();
    let identity = Arc::new(start_identity(&config.identity, token.clone()).await?);
    let booking = booking::Booking::new(
        db.clone(),
        redis.clone(),
        lock_nodes,
        &config.booking,
        identity.clone(),
    );
    let stop = StopSignals::install()?;
    // A photo store that cannot be opened must not take the rest of the service down with it:
    // its routes answer 503 with the reason, and the log says what to fix.
    let blobs = match crate::blobs::Blobs::open(&config.blobs.url) {
        Ok(blobs) => Some(blobs),
        Err(error) => {
            tracing::error!(%error, "photo store unavailable; photo uploads answer 503");
            None
        }
    };

    warm_up(&db, &booking).await;
    let listener = listen(config.http.listen).map_err(|source| ServeError::Bind {
        addr: config.http.listen,
        source,
    })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.http.listen,
        source,
    })?;
    announce(local_addr);
    tracing::info!(%local_addr, "listening");

    let tracker = TaskTracker::new();
    tracker.spawn(stop.wait(token.clone()));
    tracker.spawn(prune_nonces(db.clone(), token.clone()));
    tracker.spawn(booking::sweeper::run(booking.clone(), token.clone()));
    tracker.spawn(crate::fleet::prune(db.clone(), token.clone()));
    tracker.spawn(crate::fleet::counts::run(
        db.clone(),
        config.fleet.offline_after,
        token.clone(),
    ));
    let fleet_gauges = std::sync::Arc::new(crate::fleet::metrics::Cache::new(
        config.fleet.gauges_refresh,
    ));
    tracker.spawn(crate::fleet::metrics::refresh(
        db.clone(),
        config.fleet.offline_after,
        fleet_gauges.clone(),
        token.clone(),
    ));
    if let Some(blobs) = &blobs {
        tracker.spawn(crate::blobs::sweep(
            db.clone(),
            blobs.clone(),
            token.clone(),
        ));
    }
    let notify = Arc::new(notify::Settings::new(&config.notify));
    if config.notify.amqp_url.is_some() {
        tracker.spawn(notify::publisher::run(
            db.clone(),
            config.notify.clone(),
            (*notify).clone(),
            token.clone(),
        ));
        if config.notify.gateway.is_some() {
            let (gateway, sandbox) =
                notify::worker::gateway_from_config(&config.notify, token.clone())
                    .await
                    .map_err(ServeError::Notify)?;
            if let Some(sandbox) = sandbox {
                tracker.spawn(async move {
                    let _ = sandbox.await;
                });
            }
            tracker.spawn(notify::worker::run(
                db.clone(),
                config.notify.clone(),
                (*notify).clone(),
                Arc::new(gateway),
                token.clone(),
            ));
        }
    } else {
        tracing::info!("notify.amqp_url is not set: notifications stay scheduled in PostgreSQL");
    }

    let server = sentra_serve::serve(
        listener,
        app::router(AppState::new(app::Services {
            db: db.clone(),
            redis,
            booking: std::sync::Arc::new(booking),
            identity,
            fleet: config.fleet.clone(),
            fleet_gauges: fleet_gauges.clone(),
            tokens: std::sync::Arc::default(),
            notify,
            blobs,
            release_public_key: config.releases.public_key.as_deref().map(Into::into),
        })),
        SERVER_LIMITS,
        token.clone().cancelled_owned(),
    );
    let grace_over = async {
        token.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = server => {}
        () = grace_over => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still running after the grace period; closing them");
        }
    }

    token.cancel();
    tracker.close();
    tracker.wait().await;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// One line on how each backing service is reached, so "is this encrypted and checked?" is
/// answered by the log rather than by reading URLs.
fn log_backing_tls(config: &Config) {
    let redis = |url: &crate::config::RedisUrl| match (url.is_tls(), &config.redis.ca_file) {
        (false, _) => "plain".to_owned(),
        (true, None) => "tls (system trust store)".to_owned(),
        (true, Some(ca)) => format!("tls (CA {})", ca.path().display()),
    };
    let amqp = match (&config.notify.amqp_url, &config.notify.amqp_ca_file) {
        (None, _) => "none".to_owned(),
        (Some(url), _) if !url.is_tls() => "plain".to_owned(),
        (Some(_), None) => "tls (system trust store)".to_owned(),
        (Some(_), Some(ca)) => format!(
            "tls (CA {} and the system trust store)",
            ca.path().display()
        ),
    };
    let lock_nodes: Vec<String> = config.redis.lock_nodes.iter().map(redis).collect();
    tracing::info!(
        postgres_sslmode = config.database.url.tls_mode(),
        redis = %redis(&config.redis.url),
        redis_lock_nodes = ?lock_nodes,
        rabbitmq = %amqp,
        "backing services"
    );
}

/// Deletes expired request nonces every [`auth::NONCE_PRUNE_INTERVAL`] until `token` is
/// cancelled. A failure (database down) is logged and retried at the next tick.
async fn prune_nonces(db: PgPool, token: CancellationToken) {
    let mut interval = tokio::time::interval(auth::NONCE_PRUNE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = interval.tick() => {}
        }
        match auth::prune_nonces(&db).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "expired request nonces deleted"),
            Err(error) => tracing::warn!(%error, "deleting expired request nonces failed"),
        }
    }
}

/// The calendar's Redis: the cluster of `redis.cluster_nodes` if set, else the node of
/// `redis.url`.
pub fn connect_redis(config: &Config) -> Result<RedisConn, ServeError> {
    if config.redis.cluster_nodes.is_empty() {
        connect_redis_url(&config.redis.url, &config.redis).map(RedisConn::Single)
    } else {
        let seeds = config
            .redis
            .cluster_nodes
            .iter()
            .map(crate::config::RedisUrl::connection_info)
            .collect();
        connect_redis_cluster(&config.redis.cluster_nodes, &config.redis)
            .map(|cluster| RedisConn::Cluster(cluster, seeds))
    }
}

/// A lazily connecting client of the Redis Cluster seeded by `nodes`: it learns the slots from
/// whichever seed answers, follows `MOVED`/`ASK` and refreshes the slot map after a failover.
/// Each command, retries included, is bounded by [`REDIS_TIMEOUT`] overall, so a caller waiting
/// on a failover falls back to PostgreSQL as it does when a single Redis is down.
pub fn connect_redis_cluster(
    nodes: &[crate::config::RedisUrl],
    redis: &crate::config::RedisConfig,
) -> Result<ClusterConnection, ServeError> {
    let error = |source| ServeError::Redis {
        url: format!("{nodes:?}"),
        source,
    };
    let mut builder =
        ClusterClientBuilder::new(nodes.iter().map(crate::config::RedisUrl::connection_info))
            .connection_timeout(REDIS_TIMEOUT)
            .response_timeout(REDIS_TIMEOUT)
            .overall_response_timeout(Some(REDIS_TIMEOUT))
            .retries(REDIS_CLUSTER_RETRIES);
    // `rediss://` seeds: the same private CA as a single node's (`redis.ca_file`).
    if let Some(certificates) = redis.tls_certificates()
        && nodes.iter().any(crate::config::RedisUrl::is_tls)
    {
        builder = builder.certs(certificates);
    }
    let client = builder.build().map_err(error)?;
    Ok(client.get_pending_async_connection_with_config(ClusterConfig::new()))
}

/// A lazily connecting manager for one Redis node (`url` is `redis`'s own or a lock node), over
/// TLS for `rediss://` ([`crate::config::RedisConfig::client`]).
pub fn connect_redis_url(
    url: &crate::config::RedisUrl,
    redis: &crate::config::RedisConfig,
) -> Result<ConnectionManager, ServeError> {
    let error = |source| ServeError::Redis {
        url: format!("{url:?}"),
        source,
    };
    let client = redis.client(url).map_err(error)?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(REDIS_RETRIES)
        .set_min_delay(REDIS_RETRY_DELAY);
    ConnectionManager::new_lazy_with_config(client, manager_config).map_err(error)
}

/// `writeln!` rather than `println!`, which would panic if stdout is closed: the address is in
/// the log too, so a closed stdout is worth a warning, not a failed start.
fn announce(local_addr: SocketAddr) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "listening on {local_addr}").and_then(|()| stdout.flush())
    {
        tracing::warn!(%error, "cannot print the listening address on stdout");
    }
}

/// SIGTERM (systemd, Kubernetes) and SIGINT (Ctrl-C), installed before the server starts so a
/// signal that arrives early is not lost.
pub(crate) struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    pub(crate) fn install() -> Result<Self, ServeError> {
        let install = |kind, name| {
            signal(kind).map_err(|source| ServeError::Signal {
                signal: name,
                source,
            })
        };
        Ok(Self {
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// Cancels `token` on the first stop signal; returns early if something else cancelled it.
    pub(crate) async fn wait(mut self, token: CancellationToken) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = self.interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
            () = token.cancelled() => return,
        }
        token.cancel();
    }
}
