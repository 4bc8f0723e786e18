//! A keyboard-mode (HID) scanner through its evdev node: open `scanner.device`, grab it, read
//! `input_event` records, and keep at it across unplug and replug (`scanner.kind = "hid"`).
//!
//! The grab (`EVIOCGRAB`) gives the box the scanner's key events alone: without it every scan
//! would also be typed into the console (or a desktop session) as keystrokes. The ioctl is made
//! through the `evdev` crate (`RawDevice::grab`), because the workspace forbids `unsafe` and a
//! raw ioctl needs it; the crate is used only for that, the records are read and translated here
//! (`keys`), so the translation is a pure function the tests feed with real records. A file that
//! is not an event node (a FIFO in the tests, a wrong path) cannot be grabbed: that is logged
//! and shown in the scanner's status, and its records are read all the same.
//!
//! Reading is non-blocking through the runtime's reactor (`AsyncFd`), so cancellation never waits
//! on a blocked thread. Unplugging shows as `ENODEV` or end of file; the path is then reopened
//! with the same backoff as a serial scanner.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::decode::{Framer, Piece};
use super::keys::KeyStream;
use super::{PortState, ScannerHandle};
use crate::backoff::Backoff;
use crate::config::ScannerConfig;

/// First wait after a failed open or a lost device (as for a serial scanner).
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// A partial line older than this is thrown away: a scanner types a barcode's keys a few
/// milliseconds apart, so a pause this long means the rest is not coming (unplugged mid-scan).
const FRAME_GAP: Duration = Duration::from_millis(300);
/// Bytes read at once: a whole number of records (42 × 24).
const READ_BYTES: usize = 1008;

/// An open event node (or whatever the path named), and whether it is grabbed.
pub struct Opened {
    fd: AsyncFd<File>,
    /// Holds the grab for as long as the device is open (the grab belongs to the open file).
    _grab: Option<evdev::raw_stream::RawDevice>,
    /// Why it is not grabbed, in words for the status.
    pub not_grabbed: Option<String>,
}

/// Open `path` non-blocking and try to grab it.
pub fn open(path: &Path) -> std::io::Result<Opened> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let (grab, not_grabbed) = match file.try_clone().map(OwnedFd::from) {
        Ok(dup) => match evdev::raw_stream::RawDevice::from_fd(dup) {
            Ok(mut dev) => match dev.grab() {
                Ok(()) => (Some(dev), None),
                Err(e) => (
                    None,
                    Some(format!(
                        "not grabbed ({e}): another program holds it, so scans may also type into it"
                    )),
                ),
            },
            Err(e) => (
                None,
                Some(format!(
                    "not an input event device ({e}); read without a grab"
                )),
            ),
        },
        Err(e) => (None, Some(format!("not grabbed: {e}"))),
    };
    // `new` is deprecated for I/O safety with borrowed descriptors; this one owns its File.
    #[allow(deprecated)]
    let fd = AsyncFd::new(file)?;
    Ok(Opened {
        fd,
        _grab: grab,
        not_grabbed,
    })
}

impl Opened {
    /// Read what is there, waiting for it; `Ok(0)` is end of file.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|f| f.get_ref().read(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

enum End {
    Cancelled,
    Lost(String),
}

/// Open, grab, read, reopen, until `cancel` (as `transport::run` does for a serial scanner).
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
        match open(&cfg.device) {
            Ok(opened) => {
                if was_connected {
                    handle.count_reconnect();
                }
                was_connected = true;
                match &opened.not_grabbed {
                    None => {
                        tracing::info!(scanner = %cfg.name, %device, "keyboard scanner connected and grabbed")
                    }
                    Some(why) => {
                        tracing::warn!(scanner = %cfg.name, %device, "keyboard scanner connected but {why}")
                    }
                }
                handle.set_state(
                    PortState::Connected,
                    opened
                        .not_grabbed
                        .as_ref()
                        .map(|why| format!("scanner {device}: {why}")),
                );
                backoff.reset();
                match read_events(&opened, &handle, &frames, &cancel).await {
                    End::Cancelled => return Ok(()),
                    End::Lost(why) => {
                        tracing::warn!(scanner = %cfg.name, %device, why, "keyboard scanner lost; reopening");
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

fn describe_open_error(device: &str, e: &std::io::Error) -> (PortState, String) {
    use std::io::ErrorKind as Io;
    match e.kind() {
        Io::NotFound => (
            PortState::Absent,
            format!(
                "scanner {device}: no such device; is it plugged in? (udev names a keyboard-mode scanner /dev/sentra-scanner-hid)"
            ),
        ),
        Io::PermissionDenied => (
            PortState::Error,
            format!(
                "scanner {device}: permission denied; is the sentra user in the input group (udev/70-sentra.rules)?"
            ),
        ),
        _ => (PortState::Error, format!("scanner {device}: {e}")),
    }
}

async fn read_events(
    opened: &Opened,
    handle: &ScannerHandle,
    frames: &mpsc::Sender<Vec<u8>>,
    cancel: &CancellationToken,
) -> End {
    let mut keys = KeyStream::new();
    let mut framer = Framer::new();
    let mut buf = [0u8; READ_BYTES];
    let mut typed = Vec::with_capacity(READ_BYTES);
    loop {
        // Only a half-typed line expires; a half-read record never does (an event node hands
        // out whole records, and dropping part of one would misalign every record after it).
        let pending = framer.pending() > 0;
        let gap = async {
            if pending {
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
            r = opened.read(&mut buf) => r,
        };
        let n = match n {
            Ok(0) => return lost(&mut framer, handle, "end of file".into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return lost(&mut framer, handle, e.to_string()),
        };
        typed.clear();
        keys.push(&buf[..n], &mut typed);
        let mut out = Vec::new();
        framer.push(&typed, |p| out.push(p));
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
