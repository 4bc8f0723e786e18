//! The branch MQTT broker: live events for the tablets, POS and storekeeper terminal on the LAN.
//!
//! An embedded `rmqtt` server (MQTT 3.1, 3.1.1 and 5 on one port) on a runtime of its own, so
//! that a stop drops every connection task it spawned, and so that a flood of MQTT traffic cannot
//! starve the local API. What this module adds to it:
//! - **authentication** ([`Hooks`]): username = the device id from pairing, password = that
//!   device's MQTT password (`sem_…`, a secret of its own: the API token is refused), checked
//!   against its stored hash (revoked devices are refused, and a revocation disconnects them at
//!   once); each connection's credential is remembered, so when a rotation takes effect the
//!   sessions on the old password are closed ([`BrokerHandle::credentials_changed`]); the client
//!   id must be the device id or start with `<device id>-`, so no device can take over another's
//!   session;
//! - **topic permissions** ([`acl`]) by role, for every SUBSCRIBE filter and every PUBLISH, and
//!   for the Last Will at CONNECT: a Will on a topic the device may not publish to is refused
//!   (MQTT 5 reason 0x87, MQTT 3.1.1 return code 5), or the broker would publish it for the
//!   device, retained even, once its socket drops;
//! - **sessions per device** capped (`mqtt.max_sessions_per_device`, connected and offline
//!   sessions alike), so one device credential cannot use up `mqtt.max_clients`;
//! - **keep alive** ([`Fitters`]): no connection lives forever without a sign of life. MQTT 5
//!   clients asking for less than `mqtt.min_keep_alive_secs` (0 included) are told that value in
//!   the CONNACK's Server Keep Alive, which the client must use; MQTT 3.1/3.1.1 has no way to say
//!   so, and the spec (and interoperability suites) use Keep Alive 0, so it is
//!   accepted there but the connection is closed after `mqtt.zero_keep_alive_idle_secs` without
//!   a packet from the client (the spec lets a server close an inactive client at any time);
//! - **session expiry**: an MQTT 5 client's Session Expiry Interval is capped at
//!   `mqtt.session_expiry_secs` (the CONNACK carries the capped value);
//! - **persistent sessions kept in the store** ([`persist`]): a session that outlives its
//!   connection keeps its subscriptions and every QoS 1/2 message routed to it until it
//!   acknowledges it, across a restart and a power cut;
//! - **retained messages** held in memory with a cap ([`MAX_RETAINED`]) and written through to
//!   the store, so they survive a restart; the daemon's own retained state (sync) is published
//!   again from the store at every start too ([`bridge`]);
//! - the **in-process publisher** ([`BrokerHandle::publish`]) the bridge uses: its messages are
//!   forwarded inside the process under an identity no LAN client can claim, and never pass the ACL.
//!
//! **Listeners.** rmqtt's own TLS pulls in aws-lc-rs (which breaks the static musl build) and
//! cannot be handed a stream, so TLS is terminated here ([`terminate_tls`], tokio-rustls with
//! ring and the box's certificate, `lan`): on `mqtt.tls_listen`, each connection's handshake must
//! finish within [`TLS_HANDSHAKE`] and takes one of `mqtt.max_clients` slots; it is then spliced
//! to an rmqtt listener on `127.0.0.1:<free port>` that reads a PROXY protocol v1 line first, so
//! rmqtt still sees (and logs) the tablet's address. That loopback listener authenticates like
//! any other; only this process knows its port. The plain listener on `mqtt.listen` is served
//! only with `lan.plain = true` (legacy POS), straight into rmqtt.
//!
//! Memory is bounded by configuration: `mqtt.max_clients` connections and sessions,
//! `mqtt.max_inflight` unacknowledged and `mqtt.max_queued_messages` queued messages per session,
//! packets of at most `mqtt.max_packet_bytes`, and [`MAX_RETAINED`] retained messages. While
//! `mqtt.max_inflight` messages wait for a client's acknowledgement, the rest wait in its queue.
//! **Nothing acknowledged is dropped for a connected subscriber** ([`flow`], which also says where
//! rmqtt alone drops): a QoS 1/2 publisher waits (its socket is not read, its PUBACK comes later)
//! until its online subscribers' queues have room. For an offline persistent session the queue
//! is the bound: past it rmqtt drops the oldest queued QoS 1/2 message (the newest state wins),
//! or the new QoS 0 one, counted in `sentra_edge_mqtt_messages_dropped_total{reason="queue_full"}`;
//! QoS 0 is never waited for. A connected subscriber that accepts nothing for
//! `mqtt.stalled_subscriber_secs` while a publisher waits for it is disconnected (its session
//! goes offline). A publisher's PUBACK means "routed to the subscribers' sessions", not
//! "delivered". Refused CONNECTs are counted in `sentra_edge_mqtt_connections_refused_total{reason}`.

pub mod acl;
pub mod bridge;
mod flow;
mod persist;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::fitter::{DefaultFitter, Fitter, FitterManager};
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{
    AuthResult, ConnectInfo, Disconnect, FitterType, From, Id, LastWill, ListenerConfig,
    PublishAclResult, QoS, Reason, Retain, SubscribeAclResult, TopicFilter, TopicName,
};
use serde::{Deserialize, Serialize};

use crate::config::MqttConfig;
use crate::domain::Role;
use crate::store::{self, Store, devices};

/// Retained messages kept at most: the daemon's state topics plus one presence topic per device.
/// Past it a new retained topic is refused (logged); replacing an existing one always works.
pub const MAX_RETAINED: usize = 4096;
/// Subscriptions one session may hold: a tablet uses a handful of filters, a POS one per open
/// work order at most. Past it a SUBSCRIBE's filter is refused (SUBACK failure), so a device
/// cannot grow the broker's routing table (or the store's kept subscriptions) without bound.
pub const MAX_SUBSCRIPTIONS: usize = 128;
/// Levels a topic filter may have: `sentra/<branch>/<kind>/<id>` has four.
pub const MAX_TOPIC_LEVELS: usize = 16;
/// The client id (and session) of the daemon's own publisher. Not a device id (those are UUIDs),
/// and it never connects over the network: a LAN client using it would still have to
/// authenticate as a device, and the client-id rule refuses it.
pub const SYSTEM_CLIENT_ID: &str = "sentra-edge";
/// The loopback listener's id inside rmqtt (the TLS terminator's way in; always there, so the
/// daemon's own publisher names it).
const LISTENER_ID: u16 = 1;
/// The plain LAN listener's id (`lan.plain`).
const PLAIN_LISTENER_ID: u16 = 2;
/// A TLS client must finish its handshake within this, or its connection is closed.
pub const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
/// Threads of the broker's runtime: the box has 2 cores, shared with the API and the store.
const WORKER_THREADS: usize = 2;
/// How long a stop waits for connection tasks before dropping them.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a client id the authentication hook admitted counts towards its device's sessions
/// before the session shows up in rmqtt's table (it does within the handshake, which rmqtt
/// bounds by its handshake timeout, 30 s by default): concurrent CONNECTs cannot all slip under
/// `mqtt.max_sessions_per_device`.
const ADMIT_WINDOW: Duration = Duration::from_secs(30);
/// The state file for `sentra-edge doctor`, in the data directory.
pub const STATE_FILE: &str = "broker-state.json";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "mqtt.listen {addr}: {message}; is another MQTT broker (mosquitto?) or another sentra-edge using this port? set mqtt.listen to a free address"
    )]
    Bind { addr: SocketAddr, message: String },
    #[error("mqtt broker: cannot start its threads: {0}")]
    Runtime(std::io::Error),
    #[error(
        "mqtt.tls_listen {addr}: {source}; is another MQTT broker or another sentra-edge using this port? set mqtt.tls_listen to a free address"
    )]
    BindTls {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Device id → role of the devices that authenticated, for the ACL. A revocation removes the
/// entry (and disconnects the device), so a revoked device is refused from then on.
type Devices = Arc<Mutex<HashMap<String, Role>>>;

/// The running broker. Dropping it without [`Broker::stop`] is fine in a test, not in the daemon.
pub struct Broker {
    runtime: Option<tokio::runtime::Runtime>,
    handle: BrokerHandle,
    /// The hooks' way to the store, taken back at stop: rmqtt keeps its server context (and so
    /// the hooks) alive after its runtime stops, and a store handle left there would keep the
    /// store's connections open past the daemon's stop (no final WAL checkpoint).
    store: SharedStore,
    scx_slot: SharedContext,
}

type SharedStore = Arc<Mutex<Option<Store>>>;
/// The hooks' way to the broker's sessions (to count a device's), emptied at stop like the store
/// slot: a context held by its own hooks would never be freed.
type SharedContext = Arc<Mutex<Option<ServerContext>>>;
/// Device id → client ids admitted by the authentication hook in the last [`ADMIT_WINDOW`].
type Admitting = Arc<Mutex<HashMap<String, Vec<(String, std::time::Instant)>>>>;
/// Connection → the hash of the MQTT password it authenticated with, so a rotation closes
/// exactly the sessions on the old password. An entry goes when its session terminates; one
/// whose handshake failed after authentication goes at the next prune ([`Hooks::remember`]).
type SessionCredentials = Arc<Mutex<HashMap<Id, String>>>;

/// A cheap, cloneable handle: publish, count clients, disconnect a revoked device.
#[derive(Clone)]
pub struct BrokerHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    scx: ServerContext,
    rt: tokio::runtime::Handle,
    /// The TLS listener's address, or the plain one's when the broker runs without TLS.
    addr: SocketAddr,
    tls: Option<SocketAddr>,
    plain: Option<SocketAddr>,
    system: Id,
    devices: Devices,
    credentials: SessionCredentials,
    flow: Arc<flow::Flow>,
    persist: Arc<persist::Persist>,
}

impl std::fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerHandle")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl Broker {
    /// Start serving: MQTT over TLS on `config.tls_listen` with `tls` (the box's certificate),
    /// and plain MQTT on `config.listen` when `config.plain` (or when no `tls` is given, as in
    /// the benchmarks). Authentication and permissions come from `store` (paired devices) and
    /// `branch` (the topics' `<branch>`).
    pub fn start(
        config: &MqttConfig,
        store: Store,
        branch: String,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Broker, BrokerError> {
        Self::start_with(config, store, branch, true, tls)
    }

    /// [`Broker::start`] with Nagle's algorithm on or off (`nodelay`): the daemon always turns
    /// it off; the benchmark measures what leaving it on costs.
    pub fn start_with(
        config: &MqttConfig,
        store: Store,
        branch: String,
        nodelay: bool,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Broker, BrokerError> {
        let serve_plain = config.plain || tls.is_none();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("sentra-mqtt")
            .enable_all()
            .build()
            .map_err(BrokerError::Runtime)?;
        let devices: Devices = Arc::default();
        let shared_store: SharedStore = Arc::new(Mutex::new(Some(store)));
        let store = shared_store.clone();
        let scx_slot: SharedContext = Arc::default();
        let hooks_scx = scx_slot.clone();
        let cfg = config.clone();
        let hooks_devices = devices.clone();
        let admitting: Admitting = Arc::default();
        let credentials: SessionCredentials = Arc::default();
        let hooks_credentials = credentials.clone();
        let flow = Arc::new(flow::Flow::new(
            config.max_queued_messages,
            usize::from(config.max_inflight),
            Duration::from_secs(config.stalled_subscriber_secs),
        ));
        let hooks_flow = flow.clone();
        let (scx, listeners, plain, tls_addr, system, persist) = runtime.block_on(async move {
            let rmqtt_listener = |name: &str, laddr: SocketAddr, proxied: bool| {
                rmqtt::net::Builder::new()
                    .name(name)
                    .laddr(laddr)
                    // Behind the TLS terminator: the first line is PROXY v1 with the tablet's address.
                    .proxy_protocol(proxied)
                    // Events are small and latency matters: no Nagle delay (with it, every QoS 1
                    // round trip waited for the peer's delayed ACK).
                    .nodelay(nodelay)
                    .reuseaddr(Some(true))
                    .allow_anonymous(false)
                    // Keep Alive 0 and low values are handled by [`Fitters`] before rmqtt sees them.
                    .allow_zero_keepalive(false)
                    .min_keepalive(cfg.min_keep_alive_secs)
                    .max_connections(cfg.max_clients)
                    .max_inflight(NonZeroU16::new(cfg.max_inflight).unwrap_or(NonZeroU16::MIN))
                    .max_mqueue_len(cfg.max_queued_messages)
                    .max_packet_size(cfg.max_packet_bytes)
                    .session_expiry_interval(Duration::from_secs(cfg.session_expiry_secs))
                    // rmqtt's cap for MQTT 5 clients (0 would mean none: [`Fitters`] caps too).
                    .max_session_expiry_interval(Duration::from_secs(cfg.session_expiry_secs))
                    // Queued QoS 1 messages live as long as the session that waits for them.
                    .message_expiry_interval(Duration::from_secs(cfg.session_expiry_secs.max(60)))
                    .max_clientid_len(128)
                    .max_subscriptions(MAX_SUBSCRIPTIONS)
                    .max_topic_levels(MAX_TOPIC_LEVELS)
                    .bind()
                    .and_then(|l| Ok((l.local_addr()?, l.tcp()?)))
                    .map_err(|e| BrokerError::Bind {
                        addr: laddr,
                        message: e.to_string(),
                    })
            };
            let mut listeners = Vec::new();
            let (inner_addr, inner) = rmqtt_listener(
                "tls-inner",
                SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
                true,
            )?;
            listeners.push((LISTENER_ID, inner));
            let mut plain = None;
            if serve_plain {
                let (addr, listener) = rmqtt_listener("lan", cfg.listen, false)?;
                listeners.push((PLAIN_LISTENER_ID, listener));
                plain = Some(addr);
            }
            let mut tls_addr = None;
            if let Some(tls) = tls {
                let outer = tokio::net::TcpListener::bind(cfg.tls_listen)
                    .await
                    .map_err(|source| BrokerError::BindTls {
                        addr: cfg.tls_listen,
                        source,
                    })?;
                tls_addr = Some(outer.local_addr().map_err(|source| BrokerError::BindTls {
                    addr: cfg.tls_listen,
                    source,
                })?);
                tokio::spawn(terminate_tls(
                    outer,
                    tokio_rustls::TlsAcceptor::from(tls),
                    inner_addr,
                    cfg.max_clients,
                    nodelay,
                ));
            }
            let scx = ServerContext::new()
                // rmqtt's busy check refuses handshakes while the CPU is loaded; on a 2-core box
                // that would lock tablets out exactly when the branch is busiest.
                .busy_check_enable(false)
                .mqtt_max_sessions(cfg.max_clients as isize)
                .build()
                .await;
            let system = system_id(&scx);
            let persist = Arc::new(
                persist::Persist::open(
                    store.clone(),
                    cfg.max_queued_messages,
                    usize::from(cfg.max_inflight),
                    system.clone(),
                )
                .await,
            );
            *scx.extends.retain_mut().await =
                Box::new(Retained::open(store.clone(), &system).await);
            *scx.extends.fitter_mgr_mut().await = Box::new(Fitters {
                min_keep_alive: cfg.min_keep_alive_secs,
                zero_keep_alive_idle: cfg.zero_keep_alive_idle_secs,
                max_session_expiry: Duration::from_secs(cfg.session_expiry_secs),
            });
            *hooks_scx
                .lock()
                .expect("context slot lock is never poisoned") = Some(scx.clone());
            let register = scx.extends.hook_mgr().register();
            for typ in [
                Type::ClientAuthenticate,
                Type::ClientSubscribeCheckAcl,
                Type::MessagePublishCheckAcl,
                Type::MessageDropped,
                Type::SessionTerminated,
                Type::ClientConnected,
                Type::ClientDisconnected,
                Type::MessageDelivered,
                Type::MessageAcked,
                Type::SessionSubscribed,
                Type::SessionUnsubscribed,
            ] {
                register
                    .add(
                        typ,
                        Box::new(Hooks {
                            store: store.clone(),
                            branch: branch.clone(),
                            devices: hooks_devices.clone(),
                            scx: hooks_scx.clone(),
                            admitting: admitting.clone(),
                            credentials: hooks_credentials.clone(),
                            max_sessions_per_device: cfg.max_sessions_per_device,
                            max_clients: cfg.max_clients,
                            flow: hooks_flow.clone(),
                            persist: persist.clone(),
                        }),
                    )
                    .await;
            }
            register.start().await;
            Ok::<_, BrokerError>((scx, listeners, plain, tls_addr, system, persist))
        })?;
        let mut server = MqttServer::new(scx.clone());
        for (id, listener) in listeners {
            server = server.listener_by_id(listener, id);
        }
        let server = server.build();
        // Without TLS the plain listener is served (`serve_plain`), so one of the two is there.
        let addr = tls_addr.or(plain).unwrap_or(config.listen);
        runtime.spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "mqtt broker stopped");
            }
        });
        let handle = BrokerHandle {
            inner: Arc::new(HandleInner {
                scx,
                rt: runtime.handle().clone(),
                addr,
                tls: tls_addr,
                plain,
                system,
                devices,
                credentials,
                flow,
                persist,
            }),
        };
        tracing::info!(tls = ?tls_addr, plain = ?plain, "mqtt broker listening");
        Ok(Broker {
            runtime: Some(runtime),
            handle,
            store: shared_store,
            scx_slot,
        })
    }

    pub fn handle(&self) -> BrokerHandle {
        self.handle.clone()
    }

    /// The TLS listener's address (the plain one's for a broker started without TLS).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.inner.addr
    }

    /// Where MQTT over TLS is served, if it is.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.handle.inner.tls
    }

    /// Where plain MQTT is served (`lan.plain`), if it is.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.handle.inner.plain
    }

    /// Stop listening and drop every connection (clients see the socket close and reconnect to
    /// the next daemon). Blocking for at most [`STOP_GRACE`]: call it from a blocking thread.
    pub fn stop(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(STOP_GRACE);
        }
        self.release_store();
    }

    fn release_store(&self) {
        self.store
            .lock()
            .expect("store slot lock is never poisoned")
            .take();
        self.scx_slot
            .lock()
            .expect("context slot lock is never poisoned")
            .take();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        self.release_store();
    }
}

impl BrokerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Connections open now.
    pub fn clients(&self) -> usize {
        usize::try_from(self.inner.scx.connections.count()).unwrap_or(0)
    }

    /// Publish as the daemon itself (never through the ACL). Returns once the broker routed it
    /// to the subscribers' queues; a QoS 1/2 message first waits, like any publisher's, for room
    /// in its online subscribers' queues ([`flow`]).
    pub async fn publish(
        &self,
        topic: String,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> anyhow::Result<()> {
        let inner = self.inner.clone();
        let p = rmqtt::types::CodecPublish {
            dup: false,
            retain,
            qos,
            topic: topic.into(),
            packet_id: None,
            payload,
            properties: Some(Default::default()),
        };
        let p = <rmqtt::types::CodecPublish as Into<rmqtt::types::Publish>>::into(p)
            .create_time(rmqtt::utils::timestamp_millis());
        // On the broker's own runtime: rmqtt spawns its helpers where it is called.
        self.inner
            .rt
            .spawn(async move {
                let from = From::from_system(inner.system.clone());
                inner.flow.admit(&inner.scx, &from, &p).await;
                inner.persist.routing(&p).await;
                SessionState::forwards(&inner.scx, from, p, false, None).await
            })
            .await
            .map_err(|e| anyhow::anyhow!("mqtt publish task: {e}"))?
            .map_err(|e| anyhow::anyhow!("mqtt publish: {e}"))
    }

    /// Forget a revoked device and disconnect its sessions.
    pub async fn revoke(&self, device_id: String) {
        self.inner
            .devices
            .lock()
            .expect("device map lock is never poisoned")
            .remove(&device_id);
        self.kick(device_id.clone(), None).await;
        let persist = self.inner.persist.clone();
        if let Err(e) = self
            .inner
            .rt
            .spawn(async move { persist.forget_device(&device_id).await })
            .await
        {
            tracing::warn!(error = %e, "forgetting a revoked device's kept MQTT sessions failed");
        }
    }

    /// A device's rotated credentials took effect: close its sessions that authenticated with
    /// any other MQTT password than the one hashed as `credential` (the device reconnects with
    /// the new one).
    pub async fn credentials_changed(&self, device_id: String, credential: String) {
        self.kick(device_id, Some(credential)).await;
    }

    /// Disconnect `device_id`'s sessions (connected or kept offline), all of them or those not
    /// on the credential `keep`.
    async fn kick(&self, device_id: String, keep: Option<String>) {
        let scx = self.inner.scx.clone();
        let credentials = self.inner.credentials.clone();
        let done = self
            .inner
            .rt
            .spawn(async move {
                let shared = scx.extends.shared().await;
                let ids: Vec<Id> = shared
                    .iter()
                    .filter_map(|e| e.session())
                    .filter(|s| s.id.username.as_deref() == Some(device_id.as_str()))
                    .map(|s| s.id.clone())
                    .filter(|id| {
                        let on = credentials
                            .lock()
                            .expect("credential map lock is never poisoned")
                            .get(id)
                            .cloned();
                        keep.is_none() || on != keep
                    })
                    .collect();
                for id in ids {
                    let entry = shared.entry(id.clone());
                    match entry.try_lock().await {
                        Ok(mut e) => {
                            if let Err(err) = e.kick(true, true, true).await {
                                tracing::warn!(client = %id.client_id, error = %err, "device session not disconnected");
                            }
                        }
                        Err(err) => {
                            tracing::warn!(client = %id.client_id, error = %err, "device session not disconnected")
                        }
                    }
                }
            })
            .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "disconnecting a device's sessions failed");
        }
    }
}

/// The TLS side of the broker: accept on `listener` while fewer than `max_clients` connections
/// are open (past it new ones wait in the kernel's backlog, as the API does), finish each
/// handshake within [`TLS_HANDSHAKE`], then splice it to rmqtt's loopback listener at `inner`
/// after a PROXY v1 line naming the client. A failed handshake just closes. Runs on the broker's
/// runtime, so a stop drops every spliced connection with it.
async fn terminate_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    inner: SocketAddr,
    max_clients: usize,
    nodelay: bool,
) {
    use tokio::io::AsyncWriteExt as _;
    let slots = Arc::new(tokio::sync::Semaphore::new(max_clients.max(1)));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "mqtt tls: accepting a connection failed; trying again");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(nodelay);
            let local = stream.local_addr().ok();
            let Some(mut outer) =
                sentra_serve::finish_handshake(acceptor.accept(stream), TLS_HANDSHAKE, peer).await
            else {
                return;
            };
            let mut conn = match tokio::net::TcpStream::connect(inner).await {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(%error, "mqtt tls: the broker's loopback listener refused");
                    return;
                }
            };
            let _ = conn.set_nodelay(true);
            if conn
                .write_all(proxy_v1(peer, local).as_bytes())
                .await
                .is_err()
            {
                return;
            }
            if let Err(error) = tokio::io::copy_bidirectional(&mut outer, &mut conn).await {
                tracing::debug!(%error, %peer, "mqtt tls connection ended with an error");
            }
        });
    }
}

/// The PROXY protocol v1 line for a connection from `peer` to `local`.
fn proxy_v1(peer: SocketAddr, local: Option<SocketAddr>) -> String {
    match (peer, local) {
        (SocketAddr::V4(p), Some(SocketAddr::V4(l))) => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            p.ip(),
            l.ip(),
            p.port(),
            l.port()
        ),
        (SocketAddr::V6(p), Some(SocketAddr::V6(l))) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            p.ip(),
            l.ip(),
            p.port(),
            l.port()
        ),
        _ => "PROXY UNKNOWN\r\n".to_owned(),
    }
}

/// What `sentra-edge doctor` reads: where the broker listens and how many clients it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    pub pid: u32,
    pub address: SocketAddr,
    pub clients: usize,
    pub updated_at: String,
}

pub fn write_state_file(dir: &Path, state: &BrokerState) {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(state).expect("the state always serialises");
    if let Err(e) = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, &path)) {
        tracing::debug!(path = %path.display(), error = %e, "broker state file not written");
    }
}

pub fn remove_state_file(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(STATE_FILE));
}

pub fn read_state_file(dir: &Path) -> Option<BrokerState> {
    serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).ok()?).ok()
}

/// Authentication and the ACL, as rmqtt hooks.
struct Hooks {
    store: SharedStore,
    branch: String,
    devices: Devices,
    scx: SharedContext,
    admitting: Admitting,
    credentials: SessionCredentials,
    max_sessions_per_device: usize,
    max_clients: usize,
    flow: Arc<flow::Flow>,
    persist: Arc<persist::Persist>,
}

/// The topic of a CONNECT's Last Will, if it has one.
fn will_topic(ci: &ConnectInfo) -> Option<&str> {
    Some(match ci.last_will()? {
        LastWill::V3(w) => &w.topic,
        LastWill::V5(w) => &w.topic,
    })
}

/// The daemon's own publisher's identity in `scx` (never a network client's).
fn system_id(scx: &ServerContext) -> Id {
    Id::new(
        scx.node.id,
        LISTENER_ID,
        None,
        None,
        SYSTEM_CLIENT_ID.into(),
        None,
    )
}

/// Whether `client_id` belongs to `device_id`: the device id itself, or `<device id>-<suffix>`
/// for a device that needs several connections.
pub fn client_id_matches(client_id: &str, device_id: &str) -> bool {
    client_id == device_id
        || client_id
            .strip_prefix(device_id)
            .is_some_and(|rest| rest.starts_with('-') && rest.len() > 1)
}

impl Hooks {
    async fn authenticate(
        &self,
        conn: &Id,
        user: Option<&str>,
        pass: Option<&[u8]>,
        client_id: &str,
        will_topic: Option<&str>,
    ) -> AuthResult {
        let (Some(user), Some(pass)) = (user, pass) else {
            return AuthResult::NotAuthorized;
        };
        let Ok(password) = std::str::from_utf8(pass).map(str::to_owned) else {
            return AuthResult::BadUsernameOrPassword;
        };
        if password.is_empty() || password.len() > 256 || user.len() > 128 {
            return AuthResult::BadUsernameOrPassword;
        }
        let store = self
            .store
            .lock()
            .expect("store slot lock is never poisoned")
            .clone();
        let Some(store) = store else {
            return AuthResult::NotAuthorized;
        };
        let username = user.to_owned();
        let login = match store
            .read(move |c| devices::mqtt_login(c, &username, &password))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "mqtt authentication could not read the store");
                return AuthResult::NotAuthorized;
            }
        };
        // The same answer for an unknown device, a wrong password and an API token.
        let (device, credential) = match login {
            devices::MqttLogin::Allowed { device, credential } => (device, credential),
            devices::MqttLogin::NoCredential => {
                tracing::info!(device = %user, "mqtt connection refused: the device was paired before MQTT passwords existed; it gets one by rotating its credentials once (POST /v1/devices/self/rotate)");
                crate::metrics::mqtt_refused("no_mqtt_credential");
                return AuthResult::BadUsernameOrPassword;
            }
            devices::MqttLogin::Refused => {
                tracing::info!(username = %user, "mqtt connection refused: bad username or password");
                return AuthResult::BadUsernameOrPassword;
            }
        };
        if !client_id_matches(client_id, &device.id) {
            tracing::info!(device = %device.id, client_id, "mqtt connection refused: the client id must be the device id or start with <device id>-");
            return AuthResult::NotAuthorized;
        }
        // The Will is published by the broker on the device's behalf: the same ACL as a PUBLISH.
        if let Some(topic) = will_topic {
            let client = acl::Client {
                role: device.role,
                device_id: &device.id,
                branch: &self.branch,
            };
            if !acl::allows(client, topic, acl::Access::Publish) {
                tracing::info!(device = %device.id, %topic, "mqtt connection refused: the Last Will's topic is one the device may not publish to");
                crate::metrics::mqtt_refused("will_not_authorized");
                return AuthResult::NotAuthorized;
            }
        }
        if let Err(others) = self.admit(&device.id, client_id).await {
            tracing::info!(device = %device.id, client_id, sessions = others, max = self.max_sessions_per_device, "mqtt connection refused: the device holds mqtt.max_sessions_per_device sessions under other client ids");
            crate::metrics::mqtt_refused("too_many_sessions");
            return AuthResult::NotAuthorized;
        }
        self.devices
            .lock()
            .expect("device map lock is never poisoned")
            .insert(device.id.clone(), device.role);
        self.remember(conn.clone(), credential).await;
        tracing::debug!(device = %device.id, role = device.role.as_str(), "mqtt client authenticated");
        AuthResult::Allow(false, None)
    }

    /// Remember which credential the connection `conn` authenticated with. Past twice
    /// `mqtt.max_clients` entries, those without a session (a handshake that failed after
    /// authentication) are dropped first, so the map stays bounded.
    async fn remember(&self, conn: Id, credential: String) {
        let full = {
            let mut map = self
                .credentials
                .lock()
                .expect("credential map lock is never poisoned");
            map.insert(conn, credential);
            map.len() > self.max_clients.saturating_mul(2).max(64)
        };
        if !full {
            return;
        }
        let scx = self
            .scx
            .lock()
            .expect("context slot lock is never poisoned")
            .clone();
        let Some(scx) = scx else { return };
        let live: std::collections::HashSet<Id> = scx
            .extends
            .shared()
            .await
            .iter()
            .filter_map(|e| e.session())
            .map(|s| s.id.clone())
            .collect();
        let now = rmqtt::utils::timestamp_millis();
        let window = i64::try_from(ADMIT_WINDOW.as_millis()).unwrap_or(i64::MAX);
        // A connection authenticated moments ago may not have its session yet: kept.
        self.credentials
            .lock()
            .expect("credential map lock is never poisoned")
            .retain(|id, _| live.contains(id) || now.saturating_sub(id.create_time) < window);
    }

    /// Admit `client_id` unless `device_id` already holds `mqtt.max_sessions_per_device`
    /// sessions (connected or kept offline) under other client ids, counting the ones admitted
    /// moments ago whose session is not registered yet. A reconnect under the same id takes its
    /// old session over and adds none. Err: how many the device holds.
    async fn admit(&self, device_id: &str, client_id: &str) -> Result<(), usize> {
        let scx = self
            .scx
            .lock()
            .expect("context slot lock is never poisoned")
            .clone();
        let mut others: std::collections::HashSet<String> = match scx {
            Some(scx) => {
                let shared = scx.extends.shared().await;
                shared
                    .iter()
                    .filter_map(|e| e.session())
                    .filter(|s| {
                        s.id.username.as_deref() == Some(device_id) && &*s.id.client_id != client_id
                    })
                    .map(|s| s.id.client_id.to_string())
                    .collect()
            }
            None => Default::default(),
        };
        let now = std::time::Instant::now();
        let mut admitting = self
            .admitting
            .lock()
            .expect("admission lock is never poisoned");
        let recent = admitting.entry(device_id.to_owned()).or_default();
        recent.retain(|(c, at)| now.duration_since(*at) < ADMIT_WINDOW && c != client_id);
        others.extend(recent.iter().map(|(c, _)| c.clone()));
        if others.len() >= self.max_sessions_per_device {
            return Err(others.len());
        }
        recent.push((client_id.to_owned(), now));
        Ok(())
    }

    fn allowed(&self, username: Option<&str>, topic: &str, access: acl::Access) -> bool {
        let Some(device_id) = username else {
            return false;
        };
        let role = self
            .devices
            .lock()
            .expect("device map lock is never poisoned")
            .get(device_id)
            .copied();
        role.is_some_and(|role| {
            acl::allows(
                acl::Client {
                    role,
                    device_id,
                    branch: &self.branch,
                },
                topic,
                access,
            )
        })
    }
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(ci) => {
                let result = self
                    .authenticate(
                        ci.id(),
                        ci.username().map(|u| u.as_ref()),
                        ci.password().map(|p| p.as_ref()),
                        ci.client_id(),
                        will_topic(ci),
                    )
                    .await;
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => {
                let topic: &TopicFilter = &sub.topic_filter;
                let ok = self.allowed(s.id.username.as_deref(), topic, acl::Access::Subscribe);
                let result = if ok {
                    SubscribeAclResult::new_success(sub.opts.qos(), None)
                } else {
                    tracing::info!(device = ?s.id.username, filter = %topic, "mqtt subscribe refused");
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(s, p) => {
                let ok = self.allowed(s.id.username.as_deref(), &p.topic, acl::Access::Publish);
                let result = if ok {
                    // The last step before rmqtt forwards it: wait for room ([`flow`]).
                    let from = From::from_custom(s.id.clone());
                    self.flow.admit(&s.scx, &from, p).await;
                    self.persist.routing(p).await;
                    PublishAclResult::allow()
                } else {
                    tracing::info!(device = ?s.id.username, topic = %p.topic, "mqtt publish refused");
                    // Refused without disconnecting: MQTT 5 clients get PUBACK "not authorized".
                    PublishAclResult::rejected(false, Some("not authorized: sentra/<branch>/... topics are published by the appliance only".into()))
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::SessionTerminated(s, _) => {
                self.credentials
                    .lock()
                    .expect("credential map lock is never poisoned")
                    .remove(&s.id);
                self.persist.terminated(s).await;
                (true, acc)
            }
            Parameter::ClientConnected(s) => {
                self.flow.connected(s);
                self.persist.connected(&s.scx, s).await;
                (true, acc)
            }
            Parameter::ClientDisconnected(s, _) => {
                self.flow.disconnected(&s.id);
                self.persist.disconnected(s).await;
                (true, acc)
            }
            Parameter::SessionSubscribed(s, sub) => {
                self.persist
                    .subscribed(s, &sub.topic_filter, sub.opts.qos())
                    .await;
                (true, acc)
            }
            Parameter::SessionUnsubscribed(s, unsub) => {
                self.persist.unsubscribed(s, &unsub.topic_filter).await;
                (true, acc)
            }
            Parameter::MessageAcked(s, _, p) => {
                self.persist.done(&s.id, p).await;
                (true, acc)
            }
            Parameter::MessageDelivered(s, _, p) => {
                self.flow.left(&s.id, p, true);
                (true, acc)
            }
            Parameter::MessageDropped(to, _, p, reason) => {
                if let Some(to) = to {
                    self.flow.left(to, p, false);
                    self.persist.done(to, p).await;
                }
                let reason = match reason {
                    Reason::MessageQueueFull => "queue_full",
                    Reason::MessageExpiration => "expired",
                    Reason::PublishResult(_) | Reason::DelayedPublishRefused => "refused",
                    _ => "other",
                };
                tracing::debug!(client = ?to.as_ref().map(|t| &t.client_id), topic = %p.topic, reason, "mqtt message dropped");
                crate::metrics::mqtt_dropped(reason);
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

/// Per-connection parameters: rmqtt's own ([`DefaultFitter`], from the listener settings), with
/// two changes it has no setting for.
///
/// - **Keep Alive**: below `mqtt.min_keep_alive_secs` it is raised to it. MQTT 5 lets the server
///   say so (Server Keep Alive in the CONNACK, which the client must then use), so an MQTT 5
///   client asking for 0 is raised rather than refused: refusing would only make it retry.
///   MQTT 3.1/3.1.1 cannot be told. Keep Alive 0 is legal there and the field requires the
///   broker to accept it (interoperability suites use it for every connection), so it is
///   accepted, and the broker closes the connection after `mqtt.zero_keep_alive_idle_secs`
///   without a packet from the client: a tablet that vanished without a FIN no longer holds its
///   connection and session forever. (rmqtt alone can only refuse 0 or never time out.) A small
///   non-zero value is accepted and the broker times out from the minimum; the client merely
///   pings more often than it needs to (rmqtt alone would refuse it).
/// - **Session expiry** is capped at `mqtt.session_expiry_secs` even when that is 0 (rmqtt reads
///   a 0 cap as "no cap").
struct Fitters {
    min_keep_alive: u16,
    zero_keep_alive_idle: u16,
    max_session_expiry: Duration,
}

impl FitterManager for Fitters {
    fn create(&self, conn_info: Arc<ConnectInfo>, id: Id, cfg: ListenerConfig) -> FitterType {
        let v5 = conn_info.proto_ver() == rmqtt::codec::types::MQTT_LEVEL_5;
        Arc::new(BoxFitter {
            inner: DefaultFitter::new(conn_info, id, cfg),
            v5,
            min_keep_alive: self.min_keep_alive,
            zero_keep_alive_idle: self.zero_keep_alive_idle,
            max_session_expiry: self.max_session_expiry,
        })
    }
}

struct BoxFitter {
    inner: DefaultFitter,
    v5: bool,
    min_keep_alive: u16,
    zero_keep_alive_idle: u16,
    max_session_expiry: Duration,
}

#[async_trait]
impl Fitter for BoxFitter {
    /// `keep_alive` is the client's value (for MQTT 5, what the CONNACK will tell it); the answer
    /// is how long the broker waits for a packet from the client before closing the connection.
    fn keep_alive(&self, keep_alive: &mut u16) -> rmqtt::Result<u16> {
        if *keep_alive == 0 && !self.v5 {
            return Ok(self.zero_keep_alive_idle);
        }
        // For MQTT 5 this is the Server Keep Alive the CONNACK carries.
        if *keep_alive < self.min_keep_alive {
            *keep_alive = self.min_keep_alive;
        }
        self.inner.keep_alive(keep_alive)
    }

    fn max_mqueue_len(&self) -> usize {
        self.inner.max_mqueue_len()
    }

    fn mqueue_rate_limit(&self) -> (std::num::NonZeroU32, Duration) {
        self.inner.mqueue_rate_limit()
    }

    fn max_inflight(&self) -> NonZeroU16 {
        self.inner.max_inflight()
    }

    fn session_expiry_interval(&self, d: Option<&Disconnect>) -> Duration {
        self.inner
            .session_expiry_interval(d)
            .min(self.max_session_expiry)
    }

    fn message_expiry_interval(&self, publish: &rmqtt::types::CodecPublish) -> Duration {
        self.inner.message_expiry_interval(publish)
    }

    fn max_client_topic_aliases(&self) -> u16 {
        self.inner.max_client_topic_aliases()
    }

    fn max_server_topic_aliases(&self) -> u16 {
        self.inner.max_server_topic_aliases()
    }
}

/// Retained messages in memory, capped at [`MAX_RETAINED`] topics, and written through to the
/// store: a restart (an update, a power cut) takes them back from there ([`persist::retained`]).
struct Retained {
    inner: DefaultRetainStorage,
    store: SharedStore,
}

impl Retained {
    /// The retained messages the store kept.
    async fn open(store: SharedStore, system: &Id) -> Retained {
        let retained = Retained {
            inner: DefaultRetainStorage::default(),
            store,
        };
        let kept = persist::retained(&retained.store, system).await;
        let count = kept.len();
        for (topic, retain, left) in kept {
            if let Err(error) = retained.inner.set_with_timeout(&topic, retain, left).await {
                tracing::warn!(%error, %topic, "mqtt: a kept retained message could not be restored");
            }
        }
        if count > 0 {
            tracing::info!(count, "mqtt retained messages restored from the store");
        }
        retained
    }
}

#[async_trait]
impl RetainStorage for Retained {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry_interval: Option<Duration>,
    ) -> rmqtt::Result<()> {
        if !retain.publish.payload.is_empty()
            && RetainStorage::count(&self.inner).await >= MAX_RETAINED as isize
            && self.inner.get_message(topic).await?.is_empty()
        {
            tracing::warn!(%topic, max = MAX_RETAINED, "retained message refused: the broker keeps at most this many");
            return Ok(());
        }
        let kept = store::mqtt::Retained {
            topic: topic.to_string(),
            qos: retain.publish.qos.value(),
            payload: retain.publish.payload.to_vec(),
            expires_at: expiry_interval.map(|left| {
                time::OffsetDateTime::now_utc()
                    .unix_timestamp()
                    .saturating_add(i64::try_from(left.as_secs()).unwrap_or(i64::MAX))
            }),
        };
        self.inner
            .set_with_timeout(topic, retain, expiry_interval)
            .await?;
        persist::write(&self.store, move |w| store::mqtt::retain(w, &kept)).await;
        Ok(())
    }

    async fn get(&self, topic_filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.inner.get_message(topic_filter).await
    }

    async fn count(&self) -> isize {
        RetainStorage::count(&self.inner).await
    }

    async fn max(&self) -> isize {
        RetainStorage::max(&self.inner).await
    }
}

#[cfg(test)]
mod tests {
    use super::{client_id_matches, proxy_v1};

    #[test]
    fn the_proxy_line_names_the_client() {
        let peer = "192.168.1.23:50123".parse().expect("addr");
        let local = "192.168.1.2:8883".parse().expect("addr");
        assert_eq!(
            proxy_v1(peer, Some(local)),
            "PROXY TCP4 192.168.1.23 192.168.1.2 50123 8883\r\n"
        );
        assert_eq!(proxy_v1(peer, None), "PROXY UNKNOWN\r\n");
    }

    #[test]
    fn client_ids_belong_to_their_device() {
        let dev = "0190e0c2-aaaa-7bbb-8ccc-000000000001";
        for (cid, want) in [
            (dev, true),
            ("0190e0c2-aaaa-7bbb-8ccc-000000000001-kds", true),
            ("0190e0c2-aaaa-7bbb-8ccc-000000000001-", false),
            ("0190e0c2-aaaa-7bbb-8ccc-000000000001x", false),
            ("0190e0c2-aaaa-7bbb-8ccc-00000000000", false),
            ("sentra-edge", false),
            ("", false),
        ] {
            assert_eq!(client_id_matches(cid, dev), want, "{cid:?}");
        }
    }
}
