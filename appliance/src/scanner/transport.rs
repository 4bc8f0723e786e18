//! The scanner's serial port (tokio-serial): open the configured path, read, cut frames, and keep
//! at it across unplug and replug.
//!
//! Unplugging a USB scanner shows as EOF or EIO on the open descriptor; the udev symlink then
//! disappears and comes back (maybe to another ttyACM) when it is plugged in again. So on any end
//! of reading the port is closed and the *path* is reopened, with backoff from
//! [`MIN_BACKOFF`] to `scanner.retry_max_ms`. Frames go to the scanner task over a channel; noise
//! is only counted. The state (connected, absent, error) lives in the [`ScannerHandle`].

use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;
use tokio_serial::SerialPortBuilderExt as _;
use tokio_util::sync::CancellationToken;

use super::decode::{Framer, Piece};
use super::{PortState, ScannerHandle};
use crate::backoff::Backoff;
use crate::config::ScannerConfig;

/// First wait after a failed open or a lost device.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// A partial line older than this is thrown away: at 1200 baud a character takes ~8 ms, so a
/// scanner never pauses this long inside a frame; the first half of a frame cut by an unplug
/// must not be glued to the next scan.
pub const FRAME_GAP: Duration = Duration::from_millis(300);

/// Why reading a port ended.
enum End {
    Cancelled,
    Lost(String),
}

/// Open, read, reopen, until `cancel`. Frames are sent to `frames`; returns when cancelled or
/// when the frame consumer is gone.
pub async fn run(
    cfg: ScannerConfig,
    handle: ScannerHandle,
    frames: mpsc::Sender<Vec<u8>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let device = cfg.device.display().to_string();
    let mut backoff = Backoff::new(MIN_BACKOFF, Duration::from_millis(cfg.retry_max_ms));
    let mut was_connected = false;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        match tokio_serial::new(&device, cfg.baud)
            .timeout(Duration::from_millis(100))
            .open_native_async()
        {
            Ok(port) => {
                if was_connected {
                    handle.count_reconnect();
                }
                was_connected = true;
                handle.set_state(PortState::Connected, None);
                tracing::info!(scanner = %cfg.name, %device, "scanner connected");
                backoff.reset();
                match read_port(port, &handle, &frames, &cancel).await {
                    End::Cancelled => return Ok(()),
                    End::Lost(why) => {
                        tracing::warn!(scanner = %cfg.name, %device, why, "scanner lost; reopening");
                        handle.set_state(
                            PortState::Absent,
                            Some(format!("scanner {device}: {why}; is it plugged in?")),
                        );
                    }
                }
            }
            Err(e) => {
                let (state, detail) = describe_open_error(&device, &e);
                if handle.set_state(state, Some(detail.clone())) {
                    tracing::warn!(scanner = %cfg.name, %device, "{detail}");
                }
            }
        }
        if frames.is_closed() {
            return Ok(());
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff.next_wait()) => {}
        }
    }
}

fn describe_open_error(device: &str, e: &tokio_serial::Error) -> (PortState, String) {
    use std::io::ErrorKind as Io;
    use tokio_serial::ErrorKind as K;
    match e.kind() {
        K::Io(Io::NotFound) => (
            PortState::Absent,
            format!(
                "scanner {device}: no such device; is it plugged in? (see the README for the udev rule)"
            ),
        ),
        K::Io(Io::PermissionDenied) => (
            PortState::Error,
            format!(
                "scanner {device}: permission denied; is the sentra user in the dialout group?"
            ),
        ),
        K::NoDevice => (
            PortState::Error,
            format!("scanner {device}: busy; another program has it open"),
        ),
        _ => (
            PortState::Error,
            format!("scanner {device}: {}", e.description),
        ),
    }
}

async fn read_port(
    mut port: tokio_serial::SerialStream,
    handle: &ScannerHandle,
    frames: &mpsc::Sender<Vec<u8>>,
    cancel: &CancellationToken,
) -> End {
    let mut framer = Framer::new();
    let mut buf = [0u8; 1024];
    loop {
        let gap = async {
            if framer.pending() > 0 {
                tokio::time::sleep(FRAME_GAP).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let n = tokio::select! {
            _ = cancel.cancelled() => return End::Cancelled,
            _ = gap => {
                if let Some(Piece::Noise(n)) = framer.flush_partial() {
                    handle.count_noise(n);
                }
                continue;
            }
            r = port.read(&mut buf) => r,
        };
        let n = match n {
            Ok(0) => return lost(&mut framer, handle, "end of file".into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return lost(&mut framer, handle, e.to_string()),
        };
        let mut out = Vec::new();
        framer.push(&buf[..n], |p| out.push(p));
        for piece in out {
            match piece {
                Piece::Noise(n) => handle.count_noise(n),
                Piece::Frame(f) => {
                    handle.count_frame();
                    if frames.send(f).await.is_err() {
                        return End::Cancelled;
                    }
                }
            }
        }
    }
}

fn lost(framer: &mut Framer, handle: &ScannerHandle, why: String) -> End {
    if let Some(Piece::Noise(n)) = framer.flush_partial() {
        handle.count_noise(n);
    }
    End::Lost(why)
}
