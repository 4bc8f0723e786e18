//! `sentra-edge doctor`: check what a branch box needs and say, one line each, what is fine and
//! what a technician should do. It reads the configuration, proves the store key and opens the
//! store, then asks the running daemon through what it leaves in the data directory
//! (`daemon-state.json`, `broker-state.json`, `scanner-state.json`) and its sockets (the local
//! API's `/healthz`, a TCP connect to the broker), and the printer state the print worker keeps in
//! the store. Nothing is changed.
//!
//! [`Report::exit_code`]: 0 when nothing needs action, 1 otherwise (2 and 3 stay the CLI's for a
//! bad configuration and an unreadable store, as for every command).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::config::Config;
use crate::scanner::{self, PortState};
use crate::store::{Store, outbox, print_jobs, sync as store_sync};

/// How long one network check may take on the box itself.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub needs_action: bool,
    pub line: String,
}

impl Check {
    fn ok(line: impl Into<String>) -> Self {
        Check {
            needs_action: false,
            line: line.into(),
        }
    }
    fn fix(line: impl Into<String>) -> Self {
        Check {
            needs_action: true,
            line: line.into(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn push(&mut self, c: Check) {
        self.checks.push(c);
    }

    pub fn exit_code(&self) -> u8 {
        u8::from(self.checks.iter().any(|c| c.needs_action))
    }

    /// One line per check: `ok   ...` or `FIX  ...`, then a summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(if c.needs_action { "FIX  " } else { "ok   " });
            out.push_str(&c.line);
            out.push('\n');
        }
        let n = self.checks.iter().filter(|c| c.needs_action).count();
        if n == 0 {
            out.push_str("all checks passed\n");
        } else {
            out.push_str(&format!("{n} check(s) need action (lines marked FIX)\n"));
        }
        out
    }
}

/// Where to reach a daemon listening on `addr` from this machine (0.0.0.0 → loopback).
fn local(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// `GET /healthz` over TLS to a server that must present `pin`.
async fn healthz_tls(addr: SocketAddr, pin: crate::lan::Fingerprint) -> Result<String, String> {
    let probe = crate::watchdog::https_status(addr, pin, "/healthz");
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(200)) => Ok("200".into()),
        Ok(Ok(status)) => Err(format!("answered {status}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// `GET /healthz` with a plain HTTP/1.0 request: the status line, or why not.
async fn healthz(addr: SocketAddr) -> Result<String, String> {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(4096)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        let status = text.lines().next().unwrap_or_default().to_owned();
        if status.contains(" 200 ") {
            Ok(status)
        } else {
            Err(format!("answered {status:?}"))
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())))
}

async fn tcp_probe(addr: impl tokio::net::ToSocketAddrs) -> Result<(), String> {
    use std::io::ErrorKind as K;
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(match e.kind() {
            K::ConnectionRefused => "connection refused".to_owned(),
            K::HostUnreachable | K::NetworkUnreachable => "unreachable".to_owned(),
            _ => e.to_string().to_lowercase(),
        }),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// Reach the configured printer the way the worker would, without sending anything: a TCP
/// connect for a network printer, the device file for USB and serial.
async fn probe_printer(config: &Config) -> Result<(), String> {
    use crate::config::PrinterKind;
    let p = &config.printer;
    match p.kind {
        PrinterKind::Network => tcp_probe(p.address.as_str())
            .await
            .map_err(|e| format!("{e}; is it switched on and on this network?")),
        PrinterKind::Usb | PrinterKind::Serial => {
            if Path::new(&p.address).exists() {
                Ok(())
            } else {
                Err("not present; is it plugged in and switched on? (see the udev rule in the README)".into())
            }
        }
        PrinterKind::File => Ok(()),
    }
}

/// The checks that need the store open (`store`) and a configuration that loaded.
pub async fn run(config: &Config, store: &Store, report: &mut Report) {
    let data_dir = &config.store.data_dir;
    let device = store.ctx().device_id.clone();
    let read = store
        .read(move |c| {
            Ok((
                outbox::status(c, &device)?,
                store_sync::state(c)?,
                store_sync::identity(c)?,
                print_jobs::printer_state(c)?,
                print_jobs::queue_length(c)?,
                crate::store::lan::identity(c)?,
            ))
        })
        .await;
    let (outbox, sync, identity, printer, queued, lan) = match read {
        Ok(v) => v,
        Err(e) => {
            report.push(Check::fix(format!(
                "store {}: cannot be read: {e}",
                config.db_path().display()
            )));
            return;
        }
    };
    report.push(Check::ok(format!(
        "store {}: opens with its key; {} events, {} waiting for the cloud",
        config.db_path().display(),
        outbox.last_seq,
        outbox.pending_events
    )));
    report.push(photos(config, store).await);
    let pin = match lan.map(|(cert, key)| crate::lan::Identity::from_pem(&cert, &key)) {
        None => {
            report.push(Check::ok(
                "certificate: not made yet; the daemon makes it at its first start",
            ));
            None
        }
        Some(Ok(id)) => {
            let fp = id.fingerprint();
            report.push(Check::ok(format!(
                "certificate {fp}: tablets pin this (curl: --pinnedpubkey {}){}",
                fp.curl_pin(),
                if config.lan.plain {
                    "; lan.plain = true: plain HTTP and MQTT are also served, tokens readable on the Wi-Fi"
                } else {
                    ""
                }
            )));
            Some(fp)
        }
        Some(Err(e)) => {
            report.push(Check::fix(format!("certificate: {e}")));
            None
        }
    };

    // The daemon.
    let daemon = crate::daemon::running(data_dir);
    let running = match &daemon {
        None => {
            report.push(Check::fix(format!(
                "daemon: not running (no live daemon-state.json in {}); start it: systemctl start sentra-edge, then see journalctl -u sentra-edge",
                data_dir.display()
            )));
            false
        }
        Some(d) => match match (pin, d.fingerprint.is_some()) {
            // A daemon that states a certificate serves HTTPS on `api`; an older one, HTTP.
            (Some(pin), true) => healthz_tls(local(d.api), pin).await,
            (None, true) => Err("the store holds no certificate to check it against".into()),
            (_, false) => healthz(local(d.api)).await,
        } {
            Ok(_) => {
                report.push(Check::ok(format!(
                    "api {}: answering (sentra-edge {}, pid {}, up since {})",
                    d.api, d.version, d.pid, d.started_at
                )));
                true
            }
            Err(e) => {
                report.push(Check::fix(format!(
                    "api {}: {e}; the daemon (pid {}) is not answering: restart it (systemctl restart sentra-edge)",
                    d.api, d.pid
                )));
                false
            }
        },
    };

    // The broker.
    if !config.mqtt.enabled {
        report.push(Check::ok("broker: disabled (mqtt.enabled = false)"));
    } else if !running {
        report.push(Check::fix(format!(
            "broker {}: not listening, the daemon is not running",
            config.mqtt.listen
        )));
    } else {
        match crate::broker::read_state_file(data_dir).filter(|b| crate::daemon::pid_alive(b.pid)) {
            None => report.push(Check::fix(format!(
                "broker {}: no state from the daemon yet; if this persists, see journalctl -u sentra-edge",
                config.mqtt.listen
            ))),
            Some(b) => match tcp_probe(local(b.address)).await {
                Ok(()) => report.push(Check::ok(format!(
                    "broker {}: listening, {} client{}",
                    b.address,
                    b.clients,
                    if b.clients == 1 { "" } else { "s" }
                ))),
                Err(e) => report.push(Check::fix(format!(
                    "broker {}: {e}; restart the daemon (systemctl restart sentra-edge)",
                    b.address
                ))),
            },
        }
    }

    // The printer, as the print worker last recorded it.
    let stale = if running {
        ""
    } else {
        " (recorded before the daemon stopped)"
    };
    match (&printer, config.printer.enabled) {
        (_, false) => report.push(Check::ok(format!(
            "printer: disabled (printer.enabled = false); {queued} job(s) wait"
        ))),
        (None, true) => {
            let target = format!(
                "{} printer {}",
                config.printer.kind.as_str(),
                config.printer.address
            );
            match probe_printer(config).await {
                Ok(()) => report.push(Check::ok(format!(
                    "printer {target}: reachable; not used by the daemon yet; {queued} job(s) queued"
                ))),
                Err(why) => report.push(Check::fix(format!(
                    "printer {target}: {why}; {queued} job(s) wait"
                ))),
            }
        }
        (Some(p), true) => match p.state.as_str() {
            // The worker has not seen a problem (or has not tried yet): try it ourselves.
            "ready" | "idle" => match probe_printer(config).await {
                Ok(()) => report.push(Check::ok(format!(
                    "printer {}: reachable, {} since {}; {queued} job(s) queued{stale}",
                    p.target, p.state, p.since
                ))),
                Err(why) => report.push(Check::fix(format!(
                    "printer {}: {why}; {queued} job(s) wait",
                    p.target
                ))),
            },
            _ => report.push(Check::fix(format!(
                "printer {}: {} since {}{stale}: {}; {queued} job(s) wait",
                p.target,
                p.state,
                p.since,
                p.detail
                    .clone()
                    .unwrap_or_else(|| "see journalctl -u sentra-edge".into())
            ))),
        },
    }

    // The scanner, from the daemon's state file.
    let sc = scanner::read_state_file(data_dir);
    match sc {
        _ if !config.scanner.enabled => {
            report.push(Check::ok("scanner: disabled (scanner.enabled = false)"));
        }
        None => report.push(Check::fix(format!(
            "scanner {}: state unknown; the daemon has not reported it (is it running?)",
            config.scanner.device.display()
        ))),
        Some(s) => match s.state {
            PortState::Connected => report.push(Check::ok(format!(
                "scanner {}: connected; {} scans, last {}",
                s.device,
                s.scans,
                s.last_scan_at.as_deref().unwrap_or("never")
            ))),
            PortState::Disabled => report.push(Check::ok("scanner: disabled")),
            PortState::Starting => {
                report.push(Check::ok(format!("scanner {}: starting", s.device)))
            }
            PortState::Absent => report.push(Check::fix(format!(
                "scanner {}: not present; is it plugged in? (see the udev rule in the README){}",
                s.device, stale
            ))),
            PortState::Error => report.push(Check::fix(
                s.detail
                    .clone()
                    .unwrap_or_else(|| format!("scanner {}: error", s.device)),
            )),
        },
    }

    // The cloud.
    match &identity {
        None => report.push(Check::fix(format!(
            "cloud: not enrolled; {} change(s) wait in the outbox. Enrol: sentra-edge-admin enroll, and scan the enrolment sheet at the prompt",
            outbox.pending_events
        ))),
        Some(id) => match sync.last_error {
            Some(e) => report.push(Check::fix(format!(
                "cloud {}: last attempt failed: {e}; {} change(s) wait (oldest {}). Check the internet link",
                id.cloud_url,
                outbox.pending_events,
                outbox.oldest_pending_at.as_deref().unwrap_or("-")
            ))),
            None => report.push(Check::ok(format!(
                "cloud {}: last ack {}, {} change(s) waiting",
                id.cloud_url,
                sync.last_ack_at.as_deref().unwrap_or("never"),
                outbox.pending_events
            ))),
        },
    }

    // Updates: fail closed without a release key, so a box without one silently never updates.
    let pinned = identity
        .as_ref()
        .and_then(|id| id.release_public_key.as_deref());
    report.push(match crate::update::release_key(config, pinned) {
        Ok(Some(key)) => Check::ok(format!(
            "updates: releases verified with key {} ({})",
            sentra_protocol::fleet::key_id(&key),
            if config.update.release_public_key.trim().is_empty() {
                "pinned at enrolment"
            } else {
                "update.release_public_key"
            }
        )),
        Ok(None) if identity.is_none() => Check::ok(
            "updates: off until enrolment (the cloud gives the release key then)".to_owned(),
        ),
        Ok(None) => Check::fix(
            "updates: off, no release key: every release is refused. The cloud gave none at enrolment; ask the cloud team for it (releases.public_key) and set update.release_public_key".to_owned(),
        ),
        Err(e) => Check::fix(format!("updates: off: {e}")),
    });

    // Backups: the timer's, or any `sentra-edge backup`.
    let dir = &config.store.data_dir;
    let last = crate::backup::last(dir);
    report.push(match &last {
        None => Check::fix(
            "backup: none made on this box; systemctl enable --now sentra-edge-backup.timer (daily), or sentra-edge-admin backup FILE".to_owned(),
        ),
        Some(last) => {
            let age = crate::backup::age_secs(last, time::OffsetDateTime::now_utc());
            let line = format!(
                "backup: last good one {} at {} ({} bytes)",
                last.path.display(),
                last.at,
                last.bytes
            );
            match age {
                Some(age) if age < crate::backup::STALE_AFTER_SECS => Check::ok(line),
                _ => Check::fix(format!(
                    "{line}, over {} h ago; systemctl status sentra-edge-backup.timer, journalctl -u sentra-edge-backup",
                    crate::backup::STALE_AFTER_SECS / 3600
                )),
            }
        }
    });
    // Its copy in the cloud. Not a FIX: an offline branch's backups wait for the link, and the
    // box's own copies are what a restore on site uses.
    if let Some(last) = &last {
        let uploaded = crate::backup::uploaded(dir);
        report.push(Check::ok(match (&uploaded, config.blobs.upload_backups) {
            (_, false) => "backup in the cloud: off (blobs.upload_backups = false)".to_owned(),
            (Some(up), true) if Some(&up.sha256) == last.sha256.as_ref() => format!(
                "backup in the cloud: the newest (taken {}), confirmed {}",
                up.taken_at, up.at
            ),
            (up, true) => format!(
                "backup in the cloud: {}; the newest goes up while the box is enrolled and the cloud reachable (journalctl -u sentra-edge, \"backup not uploaded\" says why not)",
                up.as_ref().map_or_else(
                    || "none yet".to_owned(),
                    |up| format!("the one taken {}", up.taken_at)
                )
            ),
        }));
    }
}

/// Photos: how many wait for the cloud, and whether a new one would still fit.
async fn photos(config: &Config, store: &Store) -> Check {
    let blobs = store.blobs();
    let stats = match blobs.stats().await {
        Ok(s) => s,
        Err(e) => {
            return Check::fix(format!(
                "photos {}: cannot be read: {e}",
                blobs.path().display()
            ));
        }
    };
    let limit = config.blobs.max_bytes;
    let free = crate::store::blobs::free_bytes(blobs.path()).ok();
    let line = format!(
        "photos {}: {} kept ({} MB of {} MB), {} waiting for the cloud ({} MB)",
        blobs.path().display(),
        stats.count,
        stats.bytes / 1_000_000,
        limit / 1_000_000,
        stats.pending_count,
        stats.pending_bytes / 1_000_000
    );
    if stats.pending_bytes.saturating_mul(10) >= limit.saturating_mul(9) {
        Check::fix(format!(
            "{line}: nearly full of photos the cloud does not have; tablets will get 507 storage_full. Check the internet link"
        ))
    } else if free.is_some_and(|f| f < config.blobs.min_free_bytes) {
        Check::fix(format!(
            "{line}: the disk has {} MB free, under blobs.min_free_bytes; new photos are refused. Free disk space",
            free.unwrap_or(0) / 1_000_000
        ))
    } else {
        Check::ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_and_rendering() {
        let mut r = Report::default();
        r.push(Check::ok("store: fine"));
        assert_eq!(r.exit_code(), 0);
        assert!(r.render().ends_with("all checks passed\n"));
        r.push(Check::fix("printer: off"));
        assert_eq!(r.exit_code(), 1);
        let text = r.render();
        assert!(
            text.contains("ok   store: fine\nFIX  printer: off\n"),
            "{text}"
        );
    }

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        assert_eq!(
            local("0.0.0.0:1883".parse().expect("addr")),
            "127.0.0.1:1883".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(
            local("192.168.1.5:1883".parse().expect("addr")),
            "192.168.1.5:1883".parse::<SocketAddr>().expect("addr")
        );
    }
}
