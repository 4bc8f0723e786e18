//! The ECR link to the EDC card terminal, pure: frames, their check byte, and the messages.
//!
//! Shaped like the ECR protocols Indonesian bank terminals speak on their serial port:
//!
//! ```text
//! frame   = STX body ETX LRC          STX 0x02, ETX 0x03
//! LRC     = XOR of every byte after STX up to and including ETX
//! body    = 1..=MAX_BODY printable ASCII bytes (0x20..=0x7E), fields separated by '|'
//! ```
//!
//! The receiver of a frame answers `ACK` (0x06) when its LRC is right and `NAK` (0x15) when it
//! is not; the sender sends a frame at most [`MAX_SENDS`] times, waiting [`ACK_WAIT_MS`] for each
//! answer. Bytes outside a frame are line noise and skipped (counted, bounded).
//!
//! Messages (amounts in whole rupiah, 1..=12 digits; `ref` is the box's reference for this sale,
//! 1..=32 letters and digits, echoed by the terminal):
//!
//! ```text
//! box → terminal   SALE|<ref>|<amount>
//! terminal → box   APPROVED|<ref>|<approval code>|<masked card>|<terminal id>
//!                  DECLINED|<ref>|<response code>|<message>
//!                  BUSY|<ref>                       (the terminal is in another transaction)
//! ```
//!
//! An approval code is 6 letters or digits, a masked card 12..=19 digits and `*` with at most
//! the first 6 and last 4 digits shown, a terminal id 8 letters or digits, a response code 2
//! letters or digits, a message up to 40 printable characters. Anything else is refused as a
//! [`ProtocolError`]; nothing here panics on any input (property-tested).

use std::fmt;

pub const STX: u8 = 0x02;
pub const ETX: u8 = 0x03;
pub const ACK: u8 = 0x06;
pub const NAK: u8 = 0x15;
/// The longest body: the longest message above is well under it.
pub const MAX_BODY: usize = 256;
/// A frame is sent at most this many times (the first and two resends after a NAK or silence).
pub const MAX_SENDS: u32 = 3;
/// How long the sender waits for ACK or NAK after a frame.
pub const ACK_WAIT_MS: u64 = 2_000;
/// Noise bytes (outside frames, or bad frames) tolerated while waiting for one answer.
pub const MAX_NOISE: usize = 1_024;

/// The check byte of a body: XOR over body and ETX.
pub fn lrc(body: &[u8]) -> u8 {
    body.iter().fold(ETX, |acc, b| acc ^ b)
}

/// `STX body ETX LRC`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(body.len() + 3);
    f.push(STX);
    f.extend_from_slice(body);
    f.push(ETX);
    f.push(lrc(body));
    f
}

/// What the [`Deframer`] found in the bytes pushed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// A frame whose LRC matched: its body. Answer it with ACK.
    Frame(Vec<u8>),
    /// A frame whose LRC did not match, or an over-long or non-printable one. Answer NAK.
    BadFrame,
    Ack,
    Nak,
    /// This many bytes outside any frame were skipped.
    Noise(usize),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Idle,
    Body,
    Lrc,
}

/// Cuts the byte stream from the other side into frames, ACKs and NAKs. Keeps at most
/// [`MAX_BODY`] bytes.
#[derive(Debug, Default)]
pub struct Deframer {
    state: State,
    body: Vec<u8>,
    bad: bool,
}

impl Deframer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8], mut out: impl FnMut(Unit)) {
        for &b in bytes {
            match self.state {
                State::Idle => match b {
                    STX => {
                        self.state = State::Body;
                        self.body.clear();
                        self.bad = false;
                    }
                    ACK => out(Unit::Ack),
                    NAK => out(Unit::Nak),
                    _ => out(Unit::Noise(1)),
                },
                State::Body => match b {
                    ETX => self.state = State::Lrc,
                    STX => {
                        // A new frame started before this one ended: the first is lost.
                        out(Unit::BadFrame);
                        self.body.clear();
                        self.bad = false;
                    }
                    _ => {
                        if !(0x20..=0x7E).contains(&b) || self.body.len() >= MAX_BODY {
                            self.bad = true;
                        } else if !self.bad {
                            self.body.push(b);
                        }
                    }
                },
                State::Lrc => {
                    self.state = State::Idle;
                    if !self.bad && !self.body.is_empty() && lrc(&self.body) == b {
                        out(Unit::Frame(std::mem::take(&mut self.body)));
                    } else {
                        self.body.clear();
                        out(Unit::BadFrame);
                    }
                }
            }
        }
    }

    /// Whether a frame is half received.
    pub fn in_frame(&self) -> bool {
        self.state != State::Idle
    }
}

/// The sale the box asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub reference: String,
    pub amount: i64,
}

/// What the terminal said about a sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Approved(Approval),
    Declined(Decline),
    Busy { reference: String },
}

impl Reply {
    pub fn reference(&self) -> &str {
        match self {
            Reply::Approved(a) => &a.reference,
            Reply::Declined(d) => &d.reference,
            Reply::Busy { reference } => reference,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Approval {
    pub reference: String,
    pub approval_code: String,
    pub masked_card: String,
    pub terminal_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    pub reference: String,
    pub code: String,
    pub message: String,
}

/// A message that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn alnum(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub fn valid_reference(s: &str) -> bool {
    alnum(s, 1, 32)
}

fn valid_masked_card(s: &str) -> bool {
    let b = s.as_bytes();
    if !(12..=19).contains(&b.len()) || !b.iter().all(|c| c.is_ascii_digit() || *c == b'*') {
        return false;
    }
    // PCI DSS: at most the first six and the last four digits in the clear.
    let middle = &b[6.min(b.len())..b.len().saturating_sub(4)];
    !middle.is_empty() && middle.iter().all(|&c| c == b'*')
}

impl Sale {
    pub fn body(&self) -> Vec<u8> {
        format!("SALE|{}|{}", self.reference, self.amount).into_bytes()
    }

    /// The terminal's side (the sandbox): a SALE body.
    pub fn parse(body: &[u8]) -> Result<Sale, ProtocolError> {
        let text = std::str::from_utf8(body).map_err(|_| ProtocolError("not ASCII".into()))?;
        let mut f = text.split('|');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some("SALE"), Some(r), Some(a), None)
                if valid_reference(r)
                    && (1..=12).contains(&a.len())
                    && a.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let amount: i64 = a
                    .parse()
                    .map_err(|_| ProtocolError("amount out of range".into()))?;
                if amount < 1 {
                    return Err(ProtocolError("amount must be positive".into()));
                }
                Ok(Sale {
                    reference: r.into(),
                    amount,
                })
            }
            _ => Err(ProtocolError(format!(
                "not a SALE message: {:?}",
                printable(body)
            ))),
        }
    }
}

impl Reply {
    /// Parse a terminal's answer.
    pub fn parse(body: &[u8]) -> Result<Reply, ProtocolError> {
        let bad = || {
            ProtocolError(format!(
                "not an answer the box knows: {:?}",
                printable(body)
            ))
        };
        let text = std::str::from_utf8(body).map_err(|_| bad())?;
        let f: Vec<&str> = text.splitn(6, '|').collect();
        match f.as_slice() {
            ["APPROVED", r, code, card, tid]
                if valid_reference(r)
                    && alnum(code, 6, 6)
                    && valid_masked_card(card)
                    && alnum(tid, 8, 8) =>
            {
                Ok(Reply::Approved(Approval {
                    reference: (*r).into(),
                    approval_code: (*code).into(),
                    masked_card: (*card).into(),
                    terminal_id: (*tid).into(),
                }))
            }
            ["DECLINED", r, code, message]
                if valid_reference(r) && alnum(code, 2, 2) && message.len() <= 40 =>
            {
                Ok(Reply::Declined(Decline {
                    reference: (*r).into(),
                    code: (*code).into(),
                    message: (*message).into(),
                }))
            }
            ["BUSY", r] if valid_reference(r) => Ok(Reply::Busy {
                reference: (*r).into(),
            }),
            _ => Err(bad()),
        }
    }

    pub fn body(&self) -> Vec<u8> {
        match self {
            Reply::Approved(a) => format!(
                "APPROVED|{}|{}|{}|{}",
                a.reference, a.approval_code, a.masked_card, a.terminal_id
            ),
            Reply::Declined(d) => format!("DECLINED|{}|{}|{}", d.reference, d.code, d.message),
            Reply::Busy { reference } => format!("BUSY|{reference}"),
        }
        .into_bytes()
    }
}

/// Bytes fit for a log line: printable ASCII as is, the rest as `\xNN`, at most 80 shown.
pub fn printable(b: &[u8]) -> String {
    let mut s: String = b
        .iter()
        .take(80)
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect();
    if b.len() > 80 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn units(bytes: &[u8]) -> Vec<Unit> {
        let mut d = Deframer::new();
        let mut out = Vec::new();
        d.push(bytes, |u| out.push(u));
        out
    }

    #[test]
    fn a_frame_round_trips_and_its_lrc_is_checked() {
        let body = b"SALE|0190ABC|150000";
        let f = frame(body);
        assert_eq!(f[0], STX);
        assert_eq!(f[f.len() - 2], ETX);
        assert_eq!(units(&f), vec![Unit::Frame(body.to_vec())]);
        let mut bad = f.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert_eq!(units(&bad), vec![Unit::BadFrame]);
        assert_eq!(
            units(&[ACK, b'x', NAK]),
            vec![Unit::Ack, Unit::Noise(1), Unit::Nak]
        );
        // A frame cut by a new STX is lost; the second one stands.
        let mut cut = b"\x02SALE|1".to_vec();
        cut.extend(frame(b"BUSY|1"));
        assert_eq!(
            units(&cut),
            vec![Unit::BadFrame, Unit::Frame(b"BUSY|1".to_vec())]
        );
    }

    #[test]
    fn replies_parse_and_print_the_same() {
        for r in [
            Reply::Approved(Approval {
                reference: "A1".into(),
                approval_code: "123ABC".into(),
                masked_card: "411111******1111".into(),
                terminal_id: "SNTR0001".into(),
            }),
            Reply::Declined(Decline {
                reference: "A1".into(),
                code: "51".into(),
                message: "SALDO TIDAK CUKUP".into(),
            }),
            Reply::Busy {
                reference: "A1".into(),
            },
        ] {
            assert_eq!(Reply::parse(&r.body()), Ok(r.clone()));
        }
        for bad in [
            &b"APPROVED|A1|12345|411111******1111|SNTR0001"[..],
            b"APPROVED|A1|123456|4111111111111111|SNTR0001",
            b"APPROVED|A1|123456|411111******1111|SNTR0001|x",
            b"DECLINED|A1|051|NO",
            b"HELLO",
            b"",
            b"BUSY|",
        ] {
            assert!(Reply::parse(bad).is_err(), "{}", printable(bad));
        }
        assert_eq!(
            Sale::parse(b"SALE|R1|5000"),
            Ok(Sale {
                reference: "R1".into(),
                amount: 5000
            })
        );
        assert!(Sale::parse(b"SALE|R1|0").is_err());
        assert!(Sale::parse(b"SALE|R1|-5").is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_deframe_without_panic_and_frames_are_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            for u in units(&bytes) {
                if let Unit::Frame(b) = u {
                    prop_assert!(!b.is_empty() && b.len() <= MAX_BODY);
                    prop_assert!(b.iter().all(|c| (0x20..=0x7E).contains(c)));
                    let _ = Reply::parse(&b);
                    let _ = Sale::parse(&b);
                }
            }
        }

        #[test]
        fn any_printable_body_survives_framing_split_anywhere(
            body in proptest::collection::vec(0x20u8..=0x7E, 1..MAX_BODY),
            split in 0usize..300,
        ) {
            let f = frame(&body);
            let at = split.min(f.len());
            let mut d = Deframer::new();
            let mut out = Vec::new();
            d.push(&f[..at], |u| out.push(u));
            d.push(&f[at..], |u| out.push(u));
            prop_assert_eq!(out, vec![Unit::Frame(body)]);
        }
    }
}
