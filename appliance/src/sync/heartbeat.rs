//! The heartbeat sender: tells the cloud how this box is (`POST /v1/devices/heartbeat`, signed
//! like every sync request) every `sync.heartbeat_interval_secs`, and early when something a
//! person would want to know changes (printer or scanner state, the backlog starting or
//! draining, newly parked events). It records the answer's target release in
//! `<data_dir>/update-target.json` (atomically; removed when there is none) for the updater.
//!
//! Invariants: it only reads (store reads, statvfs, /proc), never writes the store; a failed
//! heartbeat is logged and retried at the next tick, it never touches the sync daemon's backoff.

use std::path::Path;
use std::time::{Duration, Instant};

use sentra_protocol::fleet::{
    Backlog, BackupStatus, Heartbeat, HeartbeatAnswer, Resources, TargetRelease, UpdateReport,
    UpdateState,
};
use tokio_util::sync::CancellationToken;

use super::client::CloudClient;
use crate::config::Config;
use crate::scanner::ScannerHandle;
use crate::store::{self, Store, sync as state};

/// How often the box looks for a change worth an early heartbeat; also the least time between
/// two heartbeats, so a flapping printer cannot flood the cloud.
const CHANGE_CHECK: Duration = Duration::from_secs(5);
/// Where the latest target release is written, in the data directory.
pub const TARGET_FILE: &str = "update-target.json";

/// Run until `cancel`.
pub async fn run(
    store: Store,
    config: Config,
    scanner: ScannerHandle,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (cfg, data_dir) = (&config.sync, &config.store.data_dir);
    let started = Instant::now();
    let every = Duration::from_secs(cfg.heartbeat_interval_secs);
    let mut client: Option<CloudClient> = None;
    let mut release_key = String::new();
    let mut last_sent: Option<(Instant, String)> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(CHANGE_CHECK) => {}
        }
        if client.is_none() {
            let Some(identity) = store.read(state::identity).await? else {
                continue;
            };
            release_key =
                crate::update::release_key_id(&config, identity.release_public_key.as_deref());
            match CloudClient::new(cfg, &identity, store.ctx().clock.clone()) {
                Ok(c) => client = Some(c),
                Err(error) => {
                    tracing::warn!(%error, "heartbeat cannot start");
                    continue;
                }
            }
        }
        let Some(cloud) = &client else { continue };
        let beat = match collect(&store, &scanner, data_dir, started).await {
            Ok(beat) => Heartbeat {
                release_key: Some(release_key.clone()),
                ..beat
            },
            Err(error) => {
                tracing::warn!(%error, "heartbeat: reading the box's state failed");
                continue;
            }
        };
        let shape = fingerprint(&beat);
        let due = last_sent
            .as_ref()
            .is_none_or(|(at, old)| at.elapsed() >= every || *old != shape);
        if !due {
            continue;
        }
        match cloud.heartbeat(&beat).await {
            Ok(answer) => {
                last_sent = Some((Instant::now(), shape));
                record_target(data_dir, &answer).await;
            }
            Err(error) => {
                // Try again at the interval, not every few seconds, while the link is down.
                last_sent = Some((Instant::now(), shape));
                tracing::debug!(%error, "heartbeat not delivered");
            }
        }
    }
}

/// What changes make an early heartbeat.
fn fingerprint(beat: &Heartbeat) -> String {
    format!(
        "{:?}|{:?}|{:?}|{}|{}|{}",
        beat.printer,
        beat.scanner,
        beat.paired_clients,
        beat.backlog.count == 0,
        beat.parked,
        beat.healthy
    )
}

async fn collect(
    store: &Store,
    scanner: &ScannerHandle,
    data_dir: &Path,
    started: Instant,
) -> Result<Heartbeat, store::StoreError> {
    let device = store.ctx().device_id.clone();
    let (outbox, sync, printer, devices) = store
        .read(move |c| {
            Ok((
                store::outbox::status(c, &device)?,
                state::state(c)?,
                store::print_jobs::printer_state(c)?,
                store::devices::list(c)?,
            ))
        })
        .await?;
    let paired_clients = devices.iter().filter(|d| d.revoked_at.is_none()).count() as u64;
    let now = time::OffsetDateTime::now_utc();
    let oldest_age_secs = outbox
        .oldest_pending_at
        .as_deref()
        .and_then(|at| store::parse_time(at).ok())
        .map(|at| u64::try_from((now - at).whole_seconds()).unwrap_or(0));
    let scanner_state = serde_json::to_value(scanner.status().state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned));
    let dir = data_dir.to_owned();
    let (resources, broker) = tokio::task::spawn_blocking(move || (resources(&dir), broker(&dir)))
        .await
        .unwrap_or_default();
    Ok(Heartbeat {
        version: crate::update::RUNNING_VERSION.clone(),
        uptime_secs: started.elapsed().as_secs(),
        // The updater's latest state, so its outcome outlives its own one-off heartbeats.
        update: crate::update::read_state(data_dir).unwrap_or(UpdateReport {
            state: UpdateState::Idle,
            target_version: None,
            reason: None,
        }),
        healthy: true,
        backlog: Backlog {
            count: outbox.pending_events,
            bytes: outbox.pending_bytes,
            oldest_age_secs,
        },
        parked: sync.parked_events,
        // The store keeps cloud minus ours; the heartbeat says ours minus the cloud's.
        skew_ms: -store.ctx().clock.offset_ms(),
        resources,
        printer: printer.map(|p| p.state),
        scanner: scanner_state,
        broker,
        paired_clients: Some(paired_clients),
        release_key: None,
        backup: Some(BackupStatus {
            age_secs: crate::backup::last(data_dir)
                .and_then(|last| crate::backup::age_secs(&last, now)),
        }),
        download: crate::update::read_download(data_dir),
    })
}

/// The broker's state as this daemon's bridge last wrote it: `listening on ADDR, N clients`, or
/// `off` when no broker of this process runs (`mqtt.enabled = false`, or not started yet).
fn broker(data_dir: &Path) -> Option<String> {
    match crate::broker::read_state_file(data_dir) {
        Some(b) if b.pid == std::process::id() => Some(format!(
            "listening on {}, {} client(s)",
            b.address, b.clients
        )),
        _ => Some("off".to_owned()),
    }
}

/// Disk of the data directory (statvfs), memory (/proc/meminfo) and the store's files.
fn resources(data_dir: &Path) -> Resources {
    let mut out = Resources::default();
    if let Ok(fs) = rustix::fs::statvfs(data_dir) {
        out.disk_total_bytes = Some(fs.f_blocks.saturating_mul(fs.f_frsize));
        out.disk_free_bytes = Some(fs.f_bavail.saturating_mul(fs.f_frsize));
    }
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        let kib = |name: &str| {
            meminfo
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|k| k * 1024)
        };
        out.mem_total_bytes = kib("MemTotal:");
        out.mem_available_bytes = kib("MemAvailable:");
    }
    let size = |name: &str| std::fs::metadata(data_dir.join(name)).map_or(0, |m| m.len());
    out.store_bytes = Some(size("sentra.db") + size("sentra.db-wal"));
    out
}

/// Writes (or removes) the target file for the updater; a failure is logged, never fatal.
async fn record_target(data_dir: &Path, answer: &HeartbeatAnswer) {
    let path = data_dir.join(TARGET_FILE);
    let target: Option<TargetRelease> = answer.target.clone();
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        match target {
            Some(target) => {
                let dir = path.parent().unwrap_or(Path::new("."));
                let mut file = tempfile::NamedTempFile::new_in(dir)?;
                serde_json::to_writer(&mut file, &target)?;
                file.as_file().sync_all()?;
                file.persist(&path).map_err(|e| e.error)?;
                Ok(())
            }
            None => match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            },
        }
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "heartbeat: recording the target release failed"),
        Err(error) => tracing::warn!(%error, "heartbeat: recording task failed"),
    }
    if let Some(target) = &answer.target {
        tracing::info!(version = %target.version, rollout = %target.rollout_id, "the cloud offers a release");
    }
}
