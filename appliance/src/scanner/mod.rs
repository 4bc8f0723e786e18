//! The storekeeper's barcode scanner: bytes from a serial port become scans, scans become
//! dispenses or look-ups in the store, and each outcome is announced as a [`Notice::Scan`].
//!
//! - `decode`: the pure decoder (framing, AIM identifiers, check digits, GS1 elements).
//! - `transport`: the port (tokio-serial), reopened across unplug and replug.
//! - `keys`: the pure translation of a keyboard-mode scanner's key events into the same bytes.
//! - `hid`: a keyboard-mode (HID) scanner's evdev node, grabbed, reopened across unplug.
//! - this module: the task that applies scans through `store::pick_slips` and the shared
//!   [`ScannerHandle`] that `GET /v1/scanner`, `/metrics` and `sentra-edge status` read.
//!
//! Invariants: a scan changes stock only through `store::pick_slips::scan` (which dispenses via
//! `workshop::dispense`); its notice is announced only after that write committed; bytes that
//! are not frames are counted, never acted on; nothing here blocks the runtime.

pub mod decode;
pub mod hid;
pub mod keys;
pub mod transport;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::{ScannerConfig, ScannerKind};
use crate::store::pick_slips::{self, ScanInput, ScanNotice, ScanOutcome};
use crate::store::{Notice, Store};
use crate::supervisor::Supervisor;

/// Scans kept in memory for `GET /v1/scanner`.
const RECENT: usize = 50;
/// Frames waiting for the store; a full queue slows reading (the tty buffers), never drops.
const QUEUE: usize = 64;
/// How often the state file for `sentra-edge status` is refreshed when something changed.
const STATE_FILE_EVERY: Duration = Duration::from_secs(1);
/// The state file's name in the data directory.
pub const STATE_FILE: &str = "scanner-state.json";

/// Whether the port is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    Starting,
    Connected,
    /// The device path does not exist or went away (unplugged).
    Absent,
    /// It exists but cannot be used (permissions, busy, I/O error).
    Error,
    /// `scanner.enabled = false`.
    Disabled,
}

/// The scanner's state and counters, as `status`, `doctor` and the API show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScannerStatus {
    pub name: String,
    pub device: String,
    pub state: PortState,
    /// What is wrong, in words a technician can act on; while connected, only a keyboard-mode
    /// scanner that could not be grabbed says why here.
    pub detail: Option<String>,
    /// When `state` last changed.
    pub since: String,
    /// Lines received that looked like frames.
    pub frames: u64,
    /// Frames that dispensed or looked a part up.
    pub scans: u64,
    /// Frames refused (bad check digit, unknown barcode, no stock…).
    pub rejected: u64,
    /// Bytes dropped as noise (wrong baud rate, line noise, over-long or cut-off lines).
    pub noise_bytes: u64,
    pub reconnects: u64,
    pub last_scan_at: Option<String>,
}

#[derive(Debug)]
struct Shared {
    status: ScannerStatus,
    recent: VecDeque<ScanNotice>,
    dirty: bool,
}

/// The live scanner state, shared by the port, the scan task and the API.
#[derive(Debug, Clone)]
pub struct ScannerHandle(Arc<Mutex<Shared>>);

impl Default for ScannerHandle {
    fn default() -> Self {
        Self::new(&ScannerConfig {
            enabled: false,
            kind: ScannerKind::Serial,
            device: PathBuf::new(),
            baud: 9600,
            name: String::new(),
            retry_max_ms: 2000,
        })
    }
}

impl ScannerHandle {
    pub fn new(cfg: &ScannerConfig) -> Self {
        let state = if cfg.enabled {
            PortState::Starting
        } else {
            PortState::Disabled
        };
        Self(Arc::new(Mutex::new(Shared {
            status: ScannerStatus {
                name: cfg.name.clone(),
                device: cfg.device.display().to_string(),
                state,
                detail: None,
                since: now(),
                frames: 0,
                scans: 0,
                rejected: 0,
                noise_bytes: 0,
                reconnects: 0,
                last_scan_at: None,
            },
            recent: VecDeque::with_capacity(RECENT),
            dirty: true,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        f(&mut self
            .0
            .lock()
            .expect("scanner state lock is never held across a panic"))
    }

    pub fn status(&self) -> ScannerStatus {
        self.with(|s| s.status.clone())
    }

    /// The latest scans, newest first.
    pub fn recent(&self) -> Vec<ScanNotice> {
        self.with(|s| s.recent.iter().rev().cloned().collect())
    }

    /// Returns whether anything changed (so a repeated failure is logged once).
    fn set_state(&self, state: PortState, detail: Option<String>) -> bool {
        crate::metrics::scanner_connected(state == PortState::Connected);
        self.with(|s| {
            if s.status.state == state && s.status.detail == detail {
                return false;
            }
            s.status.state = state;
            s.status.detail = detail;
            s.status.since = now();
            s.dirty = true;
            true
        })
    }

    fn count_noise(&self, n: usize) {
        crate::metrics::scanner_noise(n as u64);
        self.with(|s| {
            s.status.noise_bytes += n as u64;
            s.dirty = true;
        });
    }

    fn count_frame(&self) {
        self.with(|s| {
            s.status.frames += 1;
            s.dirty = true;
        });
    }

    fn count_reconnect(&self) {
        self.with(|s| s.status.reconnects += 1);
    }

    fn record(&self, notice: &ScanNotice) {
        let rejected = matches!(notice.outcome, ScanOutcome::Rejected { .. });
        crate::metrics::scanner_scan(if rejected { "rejected" } else { "ok" });
        self.with(|s| {
            if rejected {
                s.status.rejected += 1;
            } else {
                s.status.scans += 1;
            }
            s.status.last_scan_at = Some(notice.at.clone());
            if s.recent.len() == RECENT {
                s.recent.pop_front();
            }
            s.recent.push_back(notice.clone());
            s.dirty = true;
        });
    }

    /// The status if it changed since the last call.
    fn take_dirty(&self) -> Option<ScannerStatus> {
        self.with(|s| std::mem::take(&mut s.dirty).then(|| s.status.clone()))
    }
}

fn now() -> String {
    crate::store::format_time(time::OffsetDateTime::now_utc())
}

/// Start the scanner's tasks under `supervisor` (nothing when disabled). `data_dir` receives the
/// state file that `sentra-edge status` reads.
pub fn spawn(
    supervisor: &Supervisor,
    store: Store,
    cfg: ScannerConfig,
    data_dir: PathBuf,
    handle: ScannerHandle,
) {
    if !cfg.enabled {
        write_state_file(&data_dir, &handle.status());
        return;
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let (port_cfg, port_handle, cancel) = (cfg.clone(), handle.clone(), supervisor.token());
    supervisor.spawn("scanner-port", async move {
        match port_cfg.kind {
            ScannerKind::Serial => transport::run(port_cfg, port_handle, tx, cancel).await,
            ScannerKind::Hid => hid::run(port_cfg, port_handle, tx, cancel).await,
        }
    });
    // It stops when the port task (which watches the cancellation token) closes the channel, so
    // frames already read are still applied.
    supervisor.spawn("scanner", async move {
        apply_scans(store, cfg.name, handle, data_dir, rx).await
    });
}

/// Decode each frame, apply it to the store, record and announce the outcome.
async fn apply_scans(
    store: Store,
    scanner: String,
    handle: ScannerHandle,
    data_dir: PathBuf,
    mut frames: mpsc::Receiver<Vec<u8>>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(STATE_FILE_EVERY);
    loop {
        let frame = tokio::select! {
            f = frames.recv() => f,
            _ = tick.tick() => {
                if let Some(status) = handle.take_dirty() {
                    let dir = data_dir.clone();
                    let _ = tokio::task::spawn_blocking(move || write_state_file(&dir, &status)).await;
                }
                continue;
            }
        };
        let Some(frame) = frame else {
            if let Some(status) = handle.take_dirty() {
                write_state_file(&data_dir, &status);
            }
            return Ok(());
        };
        let input = scan_input(&scanner, &frame);
        let (code, symbology) = (input.code.clone(), input.symbology.clone());
        match store.write(move |w| pick_slips::scan(w, &input)).await {
            Ok(outcome) => {
                let notice = ScanNotice {
                    scanner: scanner.clone(),
                    code,
                    symbology,
                    outcome,
                    at: now(),
                };
                tracing::info!(scanner = %notice.scanner, code = %notice.code, symbology = %notice.symbology, outcome = ?notice.outcome, "scan");
                handle.record(&notice);
                store.announce(Notice::Scan(notice));
            }
            Err(crate::store::StoreError::Closed) => return Ok(()),
            Err(e) => {
                // The scanner beeped but nothing was recorded: say so loudly.
                tracing::error!(scanner = %scanner, %code, error = %e, "scan could not be applied; scan it again");
                let notice = ScanNotice {
                    scanner: scanner.clone(),
                    code,
                    symbology,
                    outcome: ScanOutcome::Rejected {
                        pick_slip_id: None,
                        reason: "store_error".into(),
                        message: format!("the scan could not be recorded ({e}); scan it again"),
                    },
                    at: now(),
                };
                handle.record(&notice);
                store.announce(Notice::Scan(notice));
            }
        }
    }
}

/// What the store needs to know about one frame.
pub fn scan_input(scanner: &str, frame: &[u8]) -> ScanInput {
    match decode::decode(frame) {
        Ok(scan) => ScanInput {
            scanner: scanner.to_owned(),
            lookup_keys: scan.lookup_keys(),
            code: scan.code,
            symbology: scan.symbology.as_str().to_owned(),
            rejected: None,
        },
        Err(reject) => {
            let (symbology, data) = decode::split_aim(frame);
            ScanInput {
                scanner: scanner.to_owned(),
                code: decode::printable(data),
                symbology: symbology.as_str().to_owned(),
                lookup_keys: Vec::new(),
                rejected: Some((reject.code().to_owned(), reject.to_string())),
            }
        }
    }
}

/// Write the status atomically (temporary file, rename) for `sentra-edge status`.
fn write_state_file(dir: &Path, status: &ScannerStatus) {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(status).expect("the status always serialises");
    if let Err(e) = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, &path)) {
        tracing::debug!(path = %path.display(), error = %e, "scanner state file not written");
    }
}

/// The state the daemon last wrote to `data_dir`, if any (for `sentra-edge status`).
pub fn read_state_file(data_dir: &Path) -> Option<ScannerStatus> {
    let text = std::fs::read(data_dir.join(STATE_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// One line for `sentra-edge status`, from the daemon's state file.
pub fn describe(status: Option<&ScannerStatus>) -> String {
    let Some(s) = status else {
        return "unknown: the daemon has not written its scanner state (is it running?)".into();
    };
    let state = match s.state {
        PortState::Starting => "starting",
        PortState::Connected => "connected",
        PortState::Absent => "absent",
        PortState::Error => "error",
        PortState::Disabled => return "disabled (scanner.enabled = false)".into(),
    };
    format!(
        "{} on {}: {state} since {}{}; {} frames, {} scans, {} rejected, {} noise bytes, {} reconnects, last scan {}",
        s.name,
        s.device,
        s.since,
        s.detail
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default(),
        s.frames,
        s.scans,
        s.rejected,
        s.noise_bytes,
        s.reconnects,
        s.last_scan_at.as_deref().unwrap_or("never"),
    )
}
