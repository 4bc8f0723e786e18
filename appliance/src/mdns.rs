//! The box announces itself on the branch LAN over mDNS/DNS-SD, so a tablet that lost the box's
//! address (a new DHCP lease) finds it again by browsing instead of asking a technician.
//!
//! One service, `_sentra._tcp.local.`, whose instance and host name are both
//! `sentra-<branch>-<short id>` (lower case; the short id is the first 6 hex characters of the
//! SHA-256 of the store's install id, so it is stable across restarts and restores, and two boxes
//! of one branch on one LAN still differ). Its SRV record names the API port, and its TXT record
//! carries what a tablet needs before its first request:
//!
//! | key      | value                                                                       |
//! |----------|-----------------------------------------------------------------------------|
//! | `branch` | the branch code as the box serves it (enrolled, else configured), e.g. `JKT01` |
//! | `fp`     | the TLS certificate's fingerprint, `sha256:<hex>` (empty until the box has one) |
//! | `api`    | the API's port                                                              |
//! | `mqtt`   | the MQTT broker's port (absent when `mqtt.enabled = false`)                 |
//!
//! The addresses are not fixed at start: mdns-sd checks the host's interfaces every few seconds
//! (`enable_addr_auto`) and announces added and withdrawn addresses itself, which is what makes
//! a changed lease visible to a browsing tablet. Loopback is left out (a tablet cannot reach it).
//!
//! mdns-sd runs its own thread (a `mio` poll loop, no async runtime); this module's task only
//! starts it, logs what it reports, and at shutdown unregisters the service (a goodbye packet with
//! TTL 0, so browsers drop the box at once rather than after the record's TTL) and stops the
//! thread. Blocking waits on it run on `spawn_blocking`, never on the API's runtime. A failure
//! here is logged and the box keeps serving: being findable by name is a convenience, the API is
//! not.

use std::time::Duration;

use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceInfo, UnregisterStatus};
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

/// The DNS-SD service type every box announces (RFC 6763, "_sentra" is ours).
pub const SERVICE_TYPE: &str = "_sentra._tcp.local.";

/// How long shutdown waits for the goodbye packet and the mdns-sd thread.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// What the box announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The branch code as served (the enrolled identity's, else the config's).
    pub branch: String,
    /// The store's install id (`meta.device_id`); only a hash prefix of it is announced.
    pub install_id: String,
    /// The TLS certificate's fingerprint (`sha256:<hex>`), empty while the box has none.
    pub fingerprint: String,
    pub api_port: u16,
    /// None: `mqtt.enabled = false`.
    pub mqtt_port: Option<u16>,
}

impl Announcement {
    /// `sentra-<branch>-<short id>`: the instance name and the host label (`<name>.local`).
    pub fn name(&self) -> String {
        name(&self.branch, &self.install_id)
    }

    /// The mdns-sd service: no address of its own (they follow the interfaces), the TXT keys.
    pub fn service_info(&self) -> Result<ServiceInfo, mdns_sd::Error> {
        let name = self.name();
        let mut txt = vec![
            ("branch", self.branch.clone()),
            ("fp", self.fingerprint.clone()),
            ("api", self.api_port.to_string()),
        ];
        if let Some(mqtt) = self.mqtt_port {
            txt.push(("mqtt", mqtt.to_string()));
        }
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &name,
            &format!("{name}.local."),
            "",
            self.api_port,
            &txt[..],
        )?;
        Ok(info.enable_addr_auto())
    }
}

/// The announced name of a box: `sentra-<branch>-<short id>`, lower case, a valid DNS label
/// (branch codes are A-Z and 0-9, the short id hex).
pub fn name(branch: &str, install_id: &str) -> String {
    let digest = sha2::Sha256::digest(install_id.as_bytes());
    let short = hex::encode(&digest[..3]);
    format!("sentra-{}-{short}", branch.to_ascii_lowercase())
}

/// Announce `what` until `cancel`, then unregister. Never fails the daemon (see the module doc).
pub async fn run(what: Announcement, cancel: CancellationToken) -> anyhow::Result<()> {
    let daemon = match start(&what) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "mDNS announcement not started; tablets must use the box's address (check that the LAN interface is up and multicast is allowed)");
            cancel.cancelled().await;
            return Ok(());
        }
    };
    let fullname = format!("{}.{SERVICE_TYPE}", what.name());
    tracing::info!(name = %what.name(), service = SERVICE_TYPE, "announcing the box over mDNS");
    match daemon.monitor() {
        Ok(events) => loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                ev = events.recv_async() => match ev {
                    Ok(ev) => log_event(ev),
                    // The mdns-sd thread ended on its own: nothing more to watch.
                    Err(_) => {
                        tracing::warn!("mDNS thread stopped; the box is no longer announced");
                        cancel.cancelled().await;
                        break;
                    }
                },
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "mDNS events unavailable; announcing without them");
            cancel.cancelled().await;
        }
    }
    // Goodbye, then stop the thread; both answer on channels, so wait off the runtime.
    let _ = tokio::task::spawn_blocking(move || stop(&daemon, &fullname)).await;
    Ok(())
}

fn start(what: &Announcement) -> Result<ServiceDaemon, mdns_sd::Error> {
    let info = what.service_info()?;
    let daemon = ServiceDaemon::new()?;
    // A tablet cannot reach the box's loopback addresses; announcing them there only confuses
    // local browsers.
    daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
    daemon.register(info)?;
    Ok(daemon)
}

fn log_event(ev: DaemonEvent) {
    match ev {
        DaemonEvent::IpAdd(ip) => tracing::info!(%ip, "mDNS: announcing a new address"),
        DaemonEvent::IpDel(ip) => tracing::info!(%ip, "mDNS: address withdrawn"),
        DaemonEvent::NameChange(c) => tracing::warn!(
            from = %c.original,
            to = %c.new_name,
            "mDNS: another device on the LAN holds this name; announcing under another one"
        ),
        DaemonEvent::Error(e) => tracing::warn!(error = %e, "mDNS"),
        other => tracing::debug!(event = ?other, "mDNS"),
    }
}

fn stop(daemon: &ServiceDaemon, fullname: &str) {
    match daemon.unregister(fullname) {
        Ok(done) => match done.recv_timeout(STOP_WAIT) {
            Ok(UnregisterStatus::OK) => tracing::debug!("mDNS: goodbye sent"),
            Ok(other) => tracing::debug!(status = ?other, "mDNS: unregister"),
            Err(e) => {
                tracing::warn!(error = %e, "mDNS: no goodbye sent; tablets drop the box when its records expire")
            }
        },
        Err(e) => tracing::warn!(error = %e, "mDNS: unregister failed"),
    }
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(STOP_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement() -> Announcement {
        Announcement {
            branch: "JKT01".into(),
            install_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            fingerprint: format!("sha256:{}", "ab".repeat(32)),
            api_port: 8443,
            mqtt_port: Some(8883),
        }
    }

    #[test]
    fn the_name_is_stable_lower_case_and_a_dns_label() {
        let a = announcement();
        let n = a.name();
        assert_eq!(
            n,
            name("JKT01", &a.install_id),
            "the same id, the same name"
        );
        assert!(n.starts_with("sentra-jkt01-"), "{n}");
        assert_eq!(n.len(), "sentra-jkt01-".len() + 6);
        assert!(n.len() <= 63);
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        assert_ne!(
            n,
            name("JKT01", "another install"),
            "another box, another name"
        );
        // The longest branch code still makes a DNS label.
        assert!(name(&"A".repeat(16), "x").len() <= 63);
    }

    #[test]
    fn the_txt_record_carries_branch_fingerprint_and_ports() {
        let info = announcement().service_info().expect("valid service");
        assert_eq!(info.get_type(), SERVICE_TYPE);
        assert_eq!(info.get_port(), 8443);
        assert!(info.is_addr_auto(), "addresses follow the interfaces");
        assert_eq!(info.get_property_val_str("branch"), Some("JKT01"));
        assert_eq!(
            info.get_property_val_str("fp"),
            Some(format!("sha256:{}", "ab".repeat(32)).as_str())
        );
        assert_eq!(info.get_property_val_str("api"), Some("8443"));
        assert_eq!(info.get_property_val_str("mqtt"), Some("8883"));
        let no_mqtt = Announcement {
            mqtt_port: None,
            ..announcement()
        }
        .service_info()
        .expect("valid service");
        assert_eq!(
            no_mqtt.get_property("mqtt").map(|p| p.key().to_owned()),
            None
        );
    }
}
