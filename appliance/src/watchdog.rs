//! Telling systemd how the daemon is: READY once everything that serves the branch is serving,
//! STATUS lines for `systemctl status`, and the watchdog (`WatchdogSec=` in
//! `systemd/sentra-edge.service`).
//!
//! The watchdog is pinged only after a probe proved the daemon does its work: a write went
//! through the store's writer thread and committed, and the local API answered `/readyz` over
//! its own socket (which reads through the reader pool). A daemon with a wedged writer, a dead
//! API task or a runtime that no longer schedules stops pinging, and systemd restarts it; a
//! free-running timer would keep pinging a daemon that serves nobody. Outside systemd (no
//! `NOTIFY_SOCKET`, no `WATCHDOG_USEC`) nothing is sent and no probe runs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::supervisor::Supervisor;

/// What the probe checks. Every listener that serves the branch LAN belongs here.
#[derive(Debug, Clone)]
pub struct Targets {
    pub store: Store,
    /// The local API's HTTPS address (`/readyz` is asked over TLS, pinning `fingerprint`).
    pub api: SocketAddr,
    /// The box's certificate: the probe checks the API presents it.
    pub fingerprint: crate::lan::Fingerprint,
    /// The MQTT broker's listener, once the daemon runs one: the probe then also needs a TCP
    /// connection to it to succeed. The broker's start must come before READY (`daemon::run`).
    pub broker: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("store writer did not commit a write within {0:?}")]
    WriterSlow(Duration),
    #[error("store writer: {0}")]
    Writer(#[from] crate::store::StoreError),
    #[error("local API {addr}: {detail}")]
    Api { addr: SocketAddr, detail: String },
    #[error("MQTT broker {addr}: {detail}")]
    Broker { addr: SocketAddr, detail: String },
}

/// Tell systemd the daemon is ready (a no-op outside systemd).
pub fn ready(status: &str) {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tell systemd the daemon is stopping (a no-op outside systemd).
pub fn stopping() {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping: finishing requests and queued writes"),
    ]);
}

/// Start the watchdog task if systemd asked for one (`WATCHDOG_USEC` for this process).
/// Returns the probe interval, half the watchdog timeout as sd_watchdog_enabled(3) advises.
pub fn spawn(supervisor: &Supervisor, targets: Targets) -> Option<Duration> {
    let timeout = sd_notify::watchdog_enabled()?;
    let every = (timeout / 2).max(Duration::from_millis(100));
    let cancel = supervisor.token();
    supervisor.spawn("watchdog", async move {
        run(targets, every, cancel).await;
        Ok(())
    });
    Some(every)
}

async fn run(targets: Targets, every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Each check may take at most one interval, so a stuck one is noticed in time.
        match probe(&targets, every).await {
            Ok(()) => {
                if failing {
                    tracing::info!("watchdog: store and API answer again");
                    failing = false;
                }
                let _ = sd_notify::notify(&[
                    sd_notify::NotifyState::Watchdog,
                    sd_notify::NotifyState::Status("serving"),
                ]);
            }
            Err(e) => {
                let status = format!("watchdog: not pinging: {e}");
                if !failing {
                    tracing::warn!(error = %e, "watchdog: probe failed; not pinging systemd");
                    failing = true;
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]);
            }
        }
    }
}

/// Proof that the store's writer thread answers: an (empty) write went through it and its
/// transaction committed within `limit`. The watchdog's probe and `/readyz` both ask this, so a
/// box whose writer died or is wedged is neither pinged nor ready.
pub async fn writer_commits(store: &Store, limit: Duration) -> Result<(), ProbeError> {
    tokio::time::timeout(limit, store.write(|_| Ok(())))
        .await
        .map_err(|_| ProbeError::WriterSlow(limit))??;
    Ok(())
}

/// One round: a write through the writer thread, `/readyz` through the API, the broker's port.
pub async fn probe(targets: &Targets, limit: Duration) -> Result<(), ProbeError> {
    writer_commits(&targets.store, limit).await?;
    let api = loopback(targets.api);
    let api_err = |detail: String| ProbeError::Api { addr: api, detail };
    let status = tokio::time::timeout(limit, https_status(api, targets.fingerprint, "/readyz"))
        .await
        .map_err(|_| api_err(format!("no answer to /readyz within {limit:?}")))?
        .map_err(|e| api_err(e.to_string()))?;
    if status != 200 {
        return Err(api_err(format!("/readyz answered {status}")));
    }
    if let Some(broker) = targets.broker {
        let broker = loopback(broker);
        let err = |detail: String| ProbeError::Broker {
            addr: broker,
            detail,
        };
        tokio::time::timeout(limit, TcpStream::connect(broker))
            .await
            .map_err(|_| err(format!("no connection within {limit:?}")))?
            .map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// A wildcard listen address is reached through the loopback of its family.
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// The status code of `GET path` over TLS to a server presenting `pin` (HTTP/1.1, connection
/// closed after it). `doctor` asks the same way.
pub async fn https_status(
    addr: SocketAddr,
    pin: crate::lan::Fingerprint,
    path: &str,
) -> std::io::Result<u16> {
    let tcp = TcpStream::connect(addr).await?;
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(crate::lan::client_config(pin)));
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut conn = connector.connect(name, tcp).await?;
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        let read = conn.read(&mut head[n..]).await?;
        if read == 0 {
            break;
        }
        n += read;
    }
    // "HTTP/1.1 200 OK"
    std::str::from_utf8(&head[..n])
        .ok()
        .and_then(|s| s.split(' ').nth(1))
        .and_then(|code| code.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_probed_on_loopback() {
        let cases = [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:8080", "[::1]:8080"),
            ("192.168.1.10:8080", "192.168.1.10:8080"),
            ("127.0.0.1:1", "127.0.0.1:1"),
        ];
        for (listen, probed) in cases {
            let listen: SocketAddr = listen.parse().expect("valid");
            assert_eq!(loopback(listen).to_string(), probed, "{listen}");
        }
    }
}
