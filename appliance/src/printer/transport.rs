//! Getting bytes to the printer: a network printer (raw TCP, port 9100), a USB printer's device
//! file (`/dev/usb/lp*` or the udev name `/dev/sentra/printer`), a serial printer's tty (set to
//! `printer.baud` and its framing, raw, by `serial_line`), or a plain file (the demo). Owns the DLE EOT status exchange and the "bytes went out" confirmation.
//!
//! Only the network transport is read from: a USB printer class device and a tty opened as a file
//! cannot be read with a timeout without a blocked thread, so there the job is confirmed when the
//! kernel took the bytes, and paper-out shows only as a write that does not finish in time.
//!
//! Confirmation on the network: after the job's bytes we ask for the status again; the printer
//! answers a real-time `DLE EOT` after everything before it on the connection has arrived, so an
//! answer means the whole job reached the printer (and says whether the paper ran out on it).

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::config::{PrinterConfig, PrinterKind, SerialLine};

/// DLE EOT 1 (printer), 2 (offline cause), 4 (paper roll sensor), sent together.
pub const STATUS_QUERY: &[u8] = b"\x10\x04\x01\x10\x04\x02\x10\x04\x04";

/// Where the printer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Network(String),
    Usb(PathBuf),
    Serial(PathBuf),
    File(PathBuf),
}

impl Target {
    pub fn from_config(c: &PrinterConfig) -> Target {
        match c.kind {
            PrinterKind::Network => Target::Network(c.address.clone()),
            PrinterKind::Usb => Target::Usb(c.address.clone().into()),
            PrinterKind::Serial => Target::Serial(c.address.clone().into()),
            PrinterKind::File => Target::File(c.address.clone().into()),
        }
    }

    /// How a technician names it: `printer 192.168.1.50:9100`.
    pub fn describe(&self) -> String {
        match self {
            Target::Network(a) => format!("network printer {a}"),
            Target::Usb(p) => format!("usb printer {}", p.display()),
            Target::Serial(p) => format!("serial printer {}", p.display()),
            Target::File(p) => format!("printer file {}", p.display()),
        }
    }

    /// Open a connection, giving up after `timeout`; a tty is set to `line` first.
    pub async fn connect(
        &self,
        timeout: Duration,
        line: &SerialLine,
    ) -> Result<Connection, PrinterError> {
        match self {
            Target::Network(addr) => {
                let stream = tokio::time::timeout(timeout, TcpStream::connect(addr.as_str()))
                    .await
                    .map_err(|_| {
                        PrinterError::Offline(format!(
                            "{}: no answer within {} ms; is it switched on and on this network?",
                            self.describe(),
                            timeout.as_millis()
                        ))
                    })?
                    .map_err(|e| {
                        PrinterError::Offline(format!(
                            "{}: {}; is it switched on and on this network?",
                            self.describe(),
                            io_reason(&e)
                        ))
                    })?;
                let _ = stream.set_nodelay(true);
                Ok(Connection::Tcp(stream))
            }
            Target::Usb(path) | Target::Serial(path) => {
                // A tty (a serial printer, or a USB one in CDC-ACM mode) gets `printer.baud` and
                // its framing, in raw mode; /dev/usb/lp* is not a tty and is left as it is.
                let (open_path, line) = (path.clone(), *line);
                let opened = tokio::time::timeout(
                    timeout,
                    tokio::task::spawn_blocking(move || {
                        crate::serial_line::open(&open_path, false, &line, false)
                    }),
                )
                .await
                .map_err(|_| PrinterError::Offline(format!("{}: open timed out", self.describe())))?
                .map_err(|e| PrinterError::Offline(format!("{}: {e}", self.describe())))?
                .map_err(|e| {
                    PrinterError::Offline(format!(
                        "{}: {}; is it plugged in and switched on? (udev names it /dev/sentra/printer)",
                        self.describe(),
                        io_reason(&e)
                    ))
                })?;
                if opened.tty {
                    tracing::debug!(printer = %self.describe(), baud = line.baud, "serial line set");
                }
                Ok(Connection::Device(tokio::fs::File::from_std(opened.file)))
            }
            Target::File(path) => {
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| {
                        PrinterError::Offline(format!("{}: {}", self.describe(), io_reason(&e)))
                    })?;
                Ok(Connection::File(file))
            }
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::NotFound => "no such device".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (is sentra-edge in the lp group?)".into()
        }
        _ => e.to_string(),
    }
}

/// Why a job did not print this time. Every one is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrinterError {
    #[error("{0}")]
    Offline(String),
    #[error("{0}: out of paper; load a new roll")]
    PaperOut(String),
    #[error("{0}: cover open; close it")]
    CoverOpen(String),
    #[error("{0}: reports an error (offline, cutter or head); check the printer")]
    Error(String),
}

impl PrinterError {
    /// The state word `status` shows.
    pub fn state(&self) -> &'static str {
        match self {
            PrinterError::Offline(_) => "offline",
            PrinterError::PaperOut(_) => "paper_out",
            PrinterError::CoverOpen(_) => "cover_open",
            PrinterError::Error(_) => "error",
        }
    }
}

/// The three status bytes of [`STATUS_QUERY`], decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    pub offline: bool,
    pub cover_open: bool,
    pub paper_out: bool,
    pub paper_near_end: bool,
    pub error: bool,
}

impl Status {
    /// Decode the answers to DLE EOT 1, 2 and 4. Each status byte has bits 1 and 4 set and bits
    /// 0 and 7 clear; anything else is not a status answer.
    pub fn parse(b: [u8; 3]) -> Option<Status> {
        if b.iter().any(|b| b & 0x93 != 0x12) {
            return None;
        }
        Some(Status {
            offline: b[0] & 0x08 != 0,
            cover_open: b[1] & 0x04 != 0,
            paper_out: b[1] & 0x20 != 0 || b[2] & 0x60 != 0,
            paper_near_end: b[2] & 0x0c != 0,
            error: b[1] & 0x40 != 0,
        })
    }

    /// What stops printing, if anything (paper first: it is what the cashier can fix).
    pub fn problem(&self, target: &str) -> Option<PrinterError> {
        if self.paper_out {
            Some(PrinterError::PaperOut(target.into()))
        } else if self.cover_open {
            Some(PrinterError::CoverOpen(target.into()))
        } else if self.error || self.offline {
            Some(PrinterError::Error(target.into()))
        } else {
            None
        }
    }
}

/// An open way to the printer.
#[derive(Debug)]
pub enum Connection {
    Tcp(TcpStream),
    Device(tokio::fs::File),
    File(tokio::fs::File),
}

impl Connection {
    /// Whether the printer can answer status queries on this connection.
    pub fn bidirectional(&self) -> bool {
        matches!(self, Connection::Tcp(_))
    }

    /// Ask DLE EOT 1, 2, 4 and read the three answers. Only on a bidirectional connection.
    pub async fn status(
        &mut self,
        target: &str,
        timeout: Duration,
    ) -> Result<Status, PrinterError> {
        let Connection::Tcp(s) = self else {
            return Ok(Status::default());
        };
        let exchange = async {
            s.write_all(STATUS_QUERY).await?;
            let mut b = [0u8; 3];
            s.read_exact(&mut b).await?;
            Ok::<_, std::io::Error>(b)
        };
        let bytes = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| {
                PrinterError::Offline(format!(
                    "{target}: no answer to the status query within {} ms (set printer.status_query = false for a printer that never answers)",
                    timeout.as_millis()
                ))
            })?
            .map_err(|e| PrinterError::Offline(format!("{target}: {}", io_reason(&e))))?;
        Status::parse(bytes).ok_or_else(|| {
            PrinterError::Error(format!(
                "{target}: answered the status query with {bytes:02x?}, not a status"
            ))
        })
    }

    /// Send `bytes` and make sure they left: flushed (and for a file, on disk).
    pub async fn send(
        &mut self,
        target: &str,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<(), PrinterError> {
        let write = async {
            match self {
                Connection::Tcp(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Connection::Device(f) => {
                    f.write_all(bytes).await?;
                    f.flush().await
                }
                Connection::File(f) => {
                    f.write_all(bytes).await?;
                    f.flush().await?;
                    f.sync_data().await
                }
            }
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| {
                PrinterError::Offline(format!(
                    "{target}: did not take the job within {} ms (out of paper or jammed?)",
                    timeout.as_millis()
                ))
            })?
            .map_err(|e| PrinterError::Offline(format!("{target}: {}", io_reason(&e))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bytes_decode() {
        let ok = 0x12;
        for (bytes, want) in [
            ([ok, ok, ok], Some(Status::default())),
            (
                [ok, ok, 0x72],
                Some(Status {
                    paper_out: true,
                    ..Status::default()
                }),
            ),
            (
                [ok, ok, 0x1e],
                Some(Status {
                    paper_near_end: true,
                    ..Status::default()
                }),
            ),
            (
                [0x1a, 0x16, ok],
                Some(Status {
                    offline: true,
                    cover_open: true,
                    ..Status::default()
                }),
            ),
            (
                [ok, 0x32, ok],
                Some(Status {
                    paper_out: true,
                    ..Status::default()
                }),
            ),
            ([0x00, ok, ok], None),
            ([ok, ok, 0xff], None),
        ] {
            assert_eq!(Status::parse(bytes), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn problems_name_what_to_do() {
        let s = Status {
            paper_out: true,
            cover_open: true,
            ..Status::default()
        };
        assert_eq!(
            s.problem("network printer 10.0.0.5:9100")
                .expect("a problem")
                .to_string(),
            "network printer 10.0.0.5:9100: out of paper; load a new roll"
        );
        assert_eq!(Status::default().problem("x"), None);
    }
}
