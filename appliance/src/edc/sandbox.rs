//! A sandbox card terminal: the terminal's side of the ECR protocol on any byte stream (the
//! master side of a pseudo-terminal whose slave the box opens as `edc.device`). It answers by the
//! amount's last three digits, so a test or a technician picks the case by the price:
//!
//! | amount ends in | answer |
//! | --- | --- |
//! | `051` | declined, `51 SALDO TIDAK CUKUP` |
//! | `005` | declined, `05 DO NOT HONOR` |
//! | `097` | busy |
//! | `098` | garbage: line noise, then answers whose check byte is always wrong |
//! | `099` | acknowledges the sale and never answers (the box times out) |
//! | `096` | approved, but the first copy of the answer has a wrong check byte (a resend) |
//! | anything else | approved: approval code `SB` + 4 digits, card `411111******1111`, terminal `SNTR0001` |
//!
//! Every sale it took is kept in a [`SaleLog`], so a test can say how many sales reached it.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::protocol::{self, Approval, Decline, Deframer, Reply, Sale, Unit};

/// The sales the sandbox received, in order.
#[derive(Debug, Clone, Default)]
pub struct SaleLog(Arc<Mutex<Vec<Sale>>>);

impl SaleLog {
    pub fn sales(&self) -> Vec<Sale> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn push(&self, sale: Sale) {
        if let Ok(mut v) = self.0.lock() {
            v.push(sale);
        }
    }
}

/// An answer waiting for the box's ACK.
struct Pending {
    frame: Vec<u8>,
    /// Copies still to be sent with a wrong check byte.
    corrupt: u32,
    sends: u32,
}

impl Pending {
    fn next_copy(&mut self) -> Vec<u8> {
        self.sends += 1;
        let mut f = self.frame.clone();
        if self.corrupt > 0 {
            self.corrupt -= 1;
            if let Some(last) = f.last_mut() {
                *last ^= 0x5A;
            }
        }
        f
    }
}

/// Serve the box on `io` until it closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    log: SaleLog,
) -> std::io::Result<()> {
    let mut deframer = Deframer::new();
    let mut buf = [0u8; 256];
    let mut approvals: u32 = 0;
    let mut pending: Option<Pending> = None;
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let mut units = Vec::new();
        deframer.push(&buf[..n], |u| units.push(u));
        for unit in units {
            match unit {
                Unit::BadFrame => io.write_all(&[protocol::NAK]).await?,
                Unit::Ack => pending = None,
                Unit::Nak => {
                    if let Some(p) = pending.as_mut().filter(|p| p.sends < protocol::MAX_SENDS) {
                        io.write_all(&p.next_copy()).await?;
                    }
                }
                Unit::Noise(_) => {}
                Unit::Frame(body) => {
                    let Ok(sale) = Sale::parse(&body) else {
                        io.write_all(&[protocol::NAK]).await?;
                        continue;
                    };
                    io.write_all(&[protocol::ACK]).await?;
                    log.push(sale.clone());
                    let tail = sale.amount % 1000;
                    let reference = sale.reference.clone();
                    let declined = |code: &str, message: &str| {
                        Reply::Declined(Decline {
                            reference: reference.clone(),
                            code: code.into(),
                            message: message.into(),
                        })
                    };
                    let (reply, corrupt) = match tail {
                        51 => (declined("51", "SALDO TIDAK CUKUP"), 0),
                        5 => (declined("05", "DO NOT HONOR"), 0),
                        97 => (
                            Reply::Busy {
                                reference: reference.clone(),
                            },
                            0,
                        ),
                        99 => {
                            pending = None;
                            continue;
                        }
                        98 => {
                            io.write_all(b"\xff\xfe+++ATH0\r\n").await?;
                            (declined("00", "GARBAGE"), u32::MAX)
                        }
                        _ => {
                            approvals = approvals.wrapping_add(1) % 10_000;
                            (
                                Reply::Approved(Approval {
                                    reference: reference.clone(),
                                    approval_code: format!("SB{approvals:04}"),
                                    masked_card: "411111******1111".into(),
                                    terminal_id: "SNTR0001".into(),
                                }),
                                u32::from(tail == 96),
                            )
                        }
                    };
                    let mut p = Pending {
                        frame: protocol::frame(&reply.body()),
                        corrupt,
                        sends: 0,
                    };
                    io.write_all(&p.next_copy()).await?;
                    pending = Some(p);
                }
            }
        }
        io.flush().await?;
    }
}
