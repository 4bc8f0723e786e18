//! [`SerialTerminal`]: the ECR protocol (`protocol`) over the terminal's serial port.
//!
//! The port is opened for each sale (8N1 at `edc.baud`, raw, non-blocking through the runtime's
//! reactor) and closed after it, so a terminal unplugged and plugged back between two sales is
//! simply found again, and nothing holds the port while the terminal is used by hand.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use super::protocol::{self, Deframer, Reply, Sale, Unit};
use super::{EdcError, SaleOutcome, Terminal};
use crate::config::SerialLine;

#[derive(Debug, Clone)]
pub struct SerialTerminal {
    path: PathBuf,
    baud: u32,
    timeout: Duration,
}

impl SerialTerminal {
    pub fn new(path: PathBuf, baud: u32, timeout: Duration) -> Self {
        Self {
            path,
            baud,
            timeout,
        }
    }

    fn describe(&self) -> String {
        format!("EDC terminal {}", self.path.display())
    }
}

/// The open port and what was read but not yet taken.
struct Port {
    fd: AsyncFd<File>,
    deframer: Deframer,
    units: VecDeque<Unit>,
    noise: usize,
}

impl Port {
    async fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        let write = async {
            while !bytes.is_empty() {
                let mut guard = self.fd.writable().await?;
                match guard.try_io(|f| f.get_ref().write(bytes)) {
                    Ok(Ok(n)) => bytes = &bytes[n..],
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => {}
                }
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_millis(protocol::ACK_WAIT_MS), write)
            .await
            .map_err(|_| std::io::Error::other("the port does not take bytes (flow control?)"))?
    }

    /// The next unit from the terminal, or `None` at `deadline`.
    async fn next(&mut self, deadline: Instant) -> Result<Option<Unit>, EdcError> {
        loop {
            if let Some(u) = self.units.pop_front() {
                if let Unit::Noise(n) = u {
                    self.noise += n;
                    if self.noise > protocol::MAX_NOISE {
                        return Err(EdcError::Protocol(format!(
                            "more than {} bytes of line noise",
                            protocol::MAX_NOISE
                        )));
                    }
                    continue;
                }
                return Ok(Some(u));
            }
            let mut buf = [0u8; 256];
            let read = async {
                loop {
                    let mut guard = self.fd.readable().await?;
                    match guard.try_io(|f| f.get_ref().read(&mut buf)) {
                        Ok(r) => return r,
                        Err(_would_block) => {}
                    }
                }
            };
            let n = match tokio::time::timeout_at(deadline, read).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => {
                    return Err(EdcError::Unavailable("the port closed (unplugged?)".into()));
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(EdcError::Unavailable(e.to_string())),
            };
            let units = &mut self.units;
            self.deframer.push(&buf[..n], |u| units.push_back(u));
        }
    }
}

#[async_trait::async_trait]
impl Terminal for SerialTerminal {
    async fn sale(&self, reference: &str, amount: i64) -> Result<SaleOutcome, EdcError> {
        let unavailable =
            |e: std::io::Error| EdcError::Unavailable(format!("{}: {e}", self.describe()));
        let opened =
            crate::serial_line::open(&self.path, true, &SerialLine::plain(self.baud), true)
                .map_err(unavailable)?;
        if opened.tty {
            // Whatever the terminal said before this sale is not about it.
            let _ = rustix::termios::tcflush(&opened.file, rustix::termios::QueueSelector::IFlush);
        }
        // `new` is deprecated for I/O safety with borrowed descriptors; this one owns its File.
        #[allow(deprecated)]
        let fd = AsyncFd::new(opened.file).map_err(unavailable)?;
        let mut port = Port {
            fd,
            deframer: Deframer::new(),
            units: VecDeque::new(),
            noise: 0,
        };
        let sale = protocol::frame(
            &Sale {
                reference: reference.to_owned(),
                amount,
            }
            .body(),
        );

        // The sale, until the terminal acknowledges it.
        let mut acked = false;
        for _ in 0..protocol::MAX_SENDS {
            port.write_all(&sale).await.map_err(unavailable)?;
            let deadline = Instant::now() + Duration::from_millis(protocol::ACK_WAIT_MS);
            loop {
                match port.next(deadline).await? {
                    None | Some(Unit::Nak) => break,
                    Some(Unit::Ack) => {
                        acked = true;
                        break;
                    }
                    // Not an answer to a frame it has not acknowledged: skip.
                    Some(Unit::Frame(_) | Unit::BadFrame | Unit::Noise(_)) => {}
                }
            }
            if acked {
                break;
            }
        }
        if !acked {
            return Err(EdcError::Unavailable(format!(
                "{}: no ACK to the sale after {} sends; is it switched on, connected, and in ECR mode?",
                self.describe(),
                protocol::MAX_SENDS
            )));
        }

        // Its answer: the customer inserts or taps the card and types the PIN meanwhile.
        let deadline = Instant::now() + self.timeout;
        let mut bad_frames = 0;
        loop {
            match port.next(deadline).await? {
                None => return Err(EdcError::Timeout(self.timeout.as_millis() as u64)),
                Some(Unit::Frame(body)) => {
                    port.write_all(&[protocol::ACK])
                        .await
                        .map_err(unavailable)?;
                    let reply = Reply::parse(&body).map_err(|e| EdcError::Protocol(e.0))?;
                    if reply.reference() != reference {
                        return Err(EdcError::Protocol(format!(
                            "an answer for sale {:?}, not this one ({reference})",
                            reply.reference()
                        )));
                    }
                    return match reply {
                        Reply::Approved(a) => Ok(SaleOutcome::Approved(a)),
                        Reply::Declined(d) => Ok(SaleOutcome::Declined(d)),
                        Reply::Busy { .. } => Err(EdcError::Busy),
                    };
                }
                Some(Unit::BadFrame) => {
                    bad_frames += 1;
                    if bad_frames >= protocol::MAX_SENDS {
                        return Err(EdcError::Protocol(format!(
                            "{bad_frames} answers in a row failed their check byte"
                        )));
                    }
                    port.write_all(&[protocol::NAK])
                        .await
                        .map_err(unavailable)?;
                }
                Some(Unit::Ack | Unit::Nak | Unit::Noise(_)) => {}
            }
        }
    }
}
