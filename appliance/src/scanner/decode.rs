//! The scanner's bytes → scans: pure, no I/O, no clock.
//!
//! Two steps. [`Framer`] cuts the byte stream into frames at CR, LF or CRLF; a line holding
//! bytes no scanner sends for a barcode (control characters other than GS, bytes ≥ 0x80: noise,
//! or a scanner at the wrong baud rate) or longer than [`MAX_FRAME`] is dropped whole and its
//! bytes counted as noise. Memory stays bounded: an over-long line is not buffered, only counted.
//! [`decode`] then reads one frame: an optional AIM symbology identifier (`]E0` EAN-13, `]E4`
//! EAN-8, `]C0` Code 128, `]C1` GS1-128, `]d2` GS1 DataMatrix, `]Q3` GS1 QR, `]e0` GS1 DataBar,
//! others passed through by name), EAN/UPC check digits, and GS1 element strings (application
//! identifiers; GS, 0x1D, ends a variable-length field). A frame that fails a check is a
//! [`Reject`] with a reason; nothing here panics on any input (a fuzz target checks that).

use std::fmt;

/// The longest frame kept. A GS1 DataMatrix on a part label is well under 200 characters; a line
/// past this is a scanner gone wrong (or one at the wrong baud rate that never sends a CR or LF).
pub const MAX_FRAME: usize = 512;

const GS: u8 = 0x1D;

/// What the framer found in the bytes pushed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// One line's bytes, without its terminator.
    Frame(Vec<u8>),
    /// This many bytes were dropped: a line with bytes a barcode frame never holds, an over-long
    /// line, or a partial line thrown away by [`Framer::flush_partial`].
    Noise(usize),
}

/// Cuts a byte stream into frames at CR, LF or CRLF. Keeps at most [`MAX_FRAME`] bytes.
#[derive(Debug, Default)]
pub struct Framer {
    line: Vec<u8>,
    /// Bytes of the current line that are dropped rather than kept (over-long or noisy line).
    dropped: usize,
    noisy: bool,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; each frame or run of noise found is handed to `out` in order.
    pub fn push(&mut self, bytes: &[u8], mut out: impl FnMut(Piece)) {
        for &b in bytes {
            if b == b'\r' || b == b'\n' {
                self.end_line(&mut out);
                continue;
            }
            let frame_byte = (0x20..0x7F).contains(&b) || b == GS;
            if !frame_byte {
                self.noisy = true;
            }
            if self.noisy || self.line.len() >= MAX_FRAME {
                // Once a line is noise it is never a frame: count it, keep nothing.
                self.noisy = true;
                self.dropped += self.line.len() + 1;
                self.line.clear();
            } else {
                self.line.push(b);
            }
        }
    }

    /// Bytes of an unfinished line waiting for their terminator.
    pub fn pending(&self) -> usize {
        self.line.len() + self.dropped
    }

    /// Throw away an unfinished line (the scanner went quiet mid-frame, or was unplugged): a
    /// later frame must not be glued onto its first half. Returns the noise it makes, if any.
    pub fn flush_partial(&mut self) -> Option<Piece> {
        let n = self.pending();
        self.line.clear();
        self.dropped = 0;
        self.noisy = false;
        (n > 0).then_some(Piece::Noise(n))
    }

    fn end_line(&mut self, out: &mut impl FnMut(Piece)) {
        if self.noisy {
            // The terminator belongs to the noise too.
            out(Piece::Noise(self.dropped + self.line.len() + 1));
        } else if !self.line.is_empty() {
            out(Piece::Frame(std::mem::take(&mut self.line)));
        }
        // An empty line (the LF of a CRLF, or a bare terminator) is neither.
        self.line.clear();
        self.dropped = 0;
        self.noisy = false;
    }
}

/// Which barcode the scanner read, from its AIM identifier (or, without one, guessed from the
/// data: 8, 12 or 13 digits are taken as EAN/UPC and their check digit enforced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Symbology {
    Ean13,
    Ean8,
    /// Only without an AIM identifier (12 digits); with `]E0` UPC-A arrives as EAN-13.
    UpcA,
    Code128,
    Gs1_128,
    DataMatrix,
    Gs1DataMatrix,
    Qr,
    Gs1Qr,
    Gs1DataBar,
    /// Another AIM identifier (`]A0` Code 39, `]I0` ITF…), passed through without a check.
    Other(String),
    /// No AIM identifier and not EAN/UPC-shaped: plain text.
    Unknown,
}

impl Symbology {
    /// The stable name used in notices and metrics.
    pub fn as_str(&self) -> &str {
        match self {
            Symbology::Ean13 => "ean13",
            Symbology::Ean8 => "ean8",
            Symbology::UpcA => "upca",
            Symbology::Code128 => "code128",
            Symbology::Gs1_128 => "gs1-128",
            Symbology::DataMatrix => "datamatrix",
            Symbology::Gs1DataMatrix => "gs1-datamatrix",
            Symbology::Qr => "qr",
            Symbology::Gs1Qr => "gs1-qr",
            Symbology::Gs1DataBar => "gs1-databar",
            Symbology::Other(aim) => aim,
            Symbology::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Symbology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One GS1 element: application identifier and its value as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub ai: String,
    pub value: String,
}

/// A frame that decoded and passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub symbology: Symbology,
    /// The data after the AIM identifier; GS separators shown as `|`, fit for logs and JSON.
    pub code: String,
    /// The GTIN as 14 digits, when the code carries one (EAN/UPC, or GS1 AI 01).
    pub gtin: Option<String>,
    /// GS1 elements in the order sent (empty for non-GS1 codes).
    pub elements: Vec<Element>,
}

impl Scan {
    pub fn element(&self, ai: &str) -> Option<&str> {
        self.elements
            .iter()
            .find(|e| e.ai == ai)
            .map(|e| e.value.as_str())
    }

    /// Batch or lot (AI 10).
    pub fn batch(&self) -> Option<&str> {
        self.element("10")
    }

    /// Serial number (AI 21).
    pub fn serial(&self) -> Option<&str> {
        self.element("21")
    }

    /// Count of items (AI 30).
    pub fn count(&self) -> Option<u64> {
        self.element("30").and_then(|v| v.parse().ok())
    }

    /// Expiry date (AI 17) as `YYYY-MM-DD`; day `00` means the month's last day.
    pub fn expiry(&self) -> Option<String> {
        self.element("17").and_then(gs1_date)
    }

    /// Net weight in kg (AI 310x, x decimals), as a decimal string.
    pub fn net_weight_kg(&self) -> Option<String> {
        let e = self
            .elements
            .iter()
            .find(|e| e.ai.len() == 4 && e.ai.starts_with("310"))?;
        let decimals = usize::from(e.ai.as_bytes()[3] - b'0');
        Some(with_decimals(&e.value, decimals))
    }

    /// Barcode values a catalogue may hold for this code, most specific first: the data itself,
    /// and for a GTIN its 14-, 13-, 12- and 8-digit forms (leading zeros dropped).
    pub fn lookup_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if self.elements.is_empty() {
            keys.push(self.code.clone());
        }
        if let Some(g) = &self.gtin {
            for len in [14, 13, 12, 8] {
                let cut = 14 - len;
                if g.as_bytes()[..cut].iter().all(|&b| b == b'0') {
                    let k = g[cut..].to_owned();
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
        }
        keys
    }
}

/// Why a frame was refused. Nothing is dispensed for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("{symbology} check digit is {found}, expected {expected}")]
    CheckDigit {
        symbology: &'static str,
        expected: char,
        found: char,
    },
    #[error("{symbology} needs {expected} digits, got {found:?}")]
    Shape {
        symbology: &'static str,
        expected: usize,
        found: String,
    },
    #[error("AIM identifier {aim:?} with no data")]
    Empty { aim: String },
    #[error("incomplete AIM identifier {0:?}")]
    Aim(String),
    #[error("GS1 data: {0}")]
    Gs1(String),
}

impl Reject {
    /// A short stable code for notices and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::CheckDigit { .. } => "check_digit",
            Reject::Shape { .. } => "bad_length",
            Reject::Empty { .. } => "empty",
            Reject::Aim(_) => "bad_aim",
            Reject::Gs1(_) => "bad_gs1",
        }
    }
}

/// Decode one frame (as cut by [`Framer`]).
pub fn decode(frame: &[u8]) -> Result<Scan, Reject> {
    // The framer only passes printable ASCII and GS; a caller that did not use it gets the same
    // treatment as noise rather than a panic.
    let text: String = frame
        .iter()
        .map(|&b| {
            if b == GS || (0x20..0x7F).contains(&b) {
                b as char
            } else {
                char::REPLACEMENT_CHARACTER
            }
        })
        .collect();
    if let Some(rest) = text.strip_prefix(']') {
        let mut chars = rest.chars();
        let (Some(sym), Some(modifier)) = (chars.next(), chars.next()) else {
            return Err(Reject::Aim(text));
        };
        let data = chars.as_str();
        let symbology = aim(sym, modifier);
        if data.is_empty() {
            return Err(Reject::Empty {
                aim: format!("]{sym}{modifier}"),
            });
        }
        return match symbology {
            Symbology::Ean13 => ean(data, 13, symbology, "ean13"),
            Symbology::Ean8 => ean(data, 8, symbology, "ean8"),
            Symbology::Gs1_128
            | Symbology::Gs1DataMatrix
            | Symbology::Gs1Qr
            | Symbology::Gs1DataBar => gs1(data, symbology),
            _ => plain(data, symbology),
        };
    }
    let digits = text.bytes().all(|b| b.is_ascii_digit());
    match text.len() {
        13 if digits => ean(&text, 13, Symbology::Ean13, "ean13"),
        12 if digits => ean(&text, 12, Symbology::UpcA, "upca"),
        8 if digits => ean(&text, 8, Symbology::Ean8, "ean8"),
        _ => plain(&text, Symbology::Unknown),
    }
}

/// The symbology an AIM identifier `]` `sym` `modifier` names.
fn aim(sym: char, modifier: char) -> Symbology {
    match (sym, modifier) {
        ('E', '0') => Symbology::Ean13,
        ('E', '4') => Symbology::Ean8,
        ('C', '1') => Symbology::Gs1_128,
        ('C', _) => Symbology::Code128,
        ('d', '2') => Symbology::Gs1DataMatrix,
        ('d', _) => Symbology::DataMatrix,
        ('Q', '3') => Symbology::Gs1Qr,
        ('Q', _) => Symbology::Qr,
        ('e', '0') => Symbology::Gs1DataBar,
        _ => Symbology::Other(format!("]{sym}{modifier}")),
    }
}

/// The AIM identifier's symbology (or `Unknown`) and the data after it, for a frame that did
/// not decode: its notice still says what the scanner claimed it read.
pub fn split_aim(frame: &[u8]) -> (Symbology, &[u8]) {
    match frame {
        [b']', sym, modifier, data @ ..] if sym.is_ascii() && modifier.is_ascii() => {
            (aim(char::from(*sym), char::from(*modifier)), data)
        }
        _ => (Symbology::Unknown, frame),
    }
}

/// Bytes as printable text: GS as `|`, anything else unprintable as `?`.
pub fn printable(data: &[u8]) -> String {
    data.iter()
        .map(|&b| match b {
            GS => '|',
            0x20..0x7F => char::from(b),
            _ => '?',
        })
        .collect()
}

fn plain(data: &str, symbology: Symbology) -> Result<Scan, Reject> {
    Ok(Scan {
        symbology,
        code: shown(data),
        gtin: None,
        elements: Vec::new(),
    })
}

fn shown(data: &str) -> String {
    data.replace(GS as char, "|")
}

fn ean(data: &str, len: usize, symbology: Symbology, name: &'static str) -> Result<Scan, Reject> {
    if data.len() != len || !data.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reject::Shape {
            symbology: name,
            expected: len,
            found: shown(data),
        });
    }
    check_gtin(data, name)?;
    Ok(Scan {
        symbology,
        code: data.to_owned(),
        gtin: Some(format!("{data:0>14}")),
        elements: Vec::new(),
    })
}

/// The GS1 check digit of `body` (all digits): weights 3, 1, 3… from the right.
pub fn gs1_check_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// `digits` (ASCII digits, at least 2) ends with its GS1 check digit.
fn check_gtin(digits: &str, symbology: &'static str) -> Result<(), Reject> {
    let b = digits.as_bytes();
    let (body, last) = b.split_at(b.len() - 1);
    let expected = gs1_check_digit(body);
    if last[0] - b'0' != expected {
        return Err(Reject::CheckDigit {
            symbology,
            expected: char::from(b'0' + expected),
            found: char::from(last[0]),
        });
    }
    Ok(())
}

/// How long an AI's value is and what it may hold.
#[derive(Clone, Copy)]
enum Len {
    Fixed(usize),
    Upto(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Numeric,
    /// GS1 "set 82": printable ASCII without space.
    Alnum,
    /// Numeric with a trailing GS1 check digit (GTIN, SSCC).
    CheckDigit,
    /// YYMMDD, day 00 allowed.
    Date,
}

/// The application identifiers we understand: enough for part labels (GTIN, batch, dates,
/// serial, count, weights, internal codes). Others are refused with their number: guessing an
/// unknown AI's length would misread everything after it.
fn ai_spec(data: &str) -> Option<(usize, Len, Kind)> {
    let two = data.get(..2)?;
    let three = data.get(..3);
    let four = data.get(..4);
    use Kind::*;
    use Len::*;
    Some(match two {
        "00" => (2, Fixed(18), CheckDigit),
        "01" | "02" => (2, Fixed(14), CheckDigit),
        "10" => (2, Upto(20), Alnum),
        "11" | "12" | "13" | "15" | "16" | "17" => (2, Fixed(6), Date),
        "20" => (2, Fixed(2), Numeric),
        "21" | "22" => (2, Upto(20), Alnum),
        "30" | "37" => (2, Upto(8), Numeric),
        "90" | "91" | "92" | "93" | "94" | "95" | "96" | "97" | "98" | "99" => (2, Upto(90), Alnum),
        "24" | "25" | "40" => match three? {
            "240" | "241" | "250" | "251" | "400" | "401" | "403" => (3, Upto(30), Alnum),
            _ => return None,
        },
        "31" | "32" | "33" | "34" | "35" | "36" => {
            let f = four?;
            let b = f.as_bytes();
            if !b[2].is_ascii_digit() || !b[3].is_ascii_digit() {
                return None;
            }
            (4, Fixed(6), Numeric)
        }
        _ => return None,
    })
}

fn gs1(data: &str, symbology: Symbology) -> Result<Scan, Reject> {
    let mut rest = data.strip_prefix(GS as char).unwrap_or(data);
    let mut elements = Vec::new();
    while !rest.is_empty() {
        let (ai_len, len, kind) = ai_spec(rest).ok_or_else(|| {
            let head: String = rest.chars().take(4).collect();
            Reject::Gs1(format!(
                "unknown application identifier at {:?}",
                shown(&head)
            ))
        })?;
        let ai = &rest[..ai_len];
        let after = &rest[ai_len..];
        let (value, next) = match len {
            Len::Fixed(n) => {
                let v = after.get(..n).ok_or_else(|| {
                    Reject::Gs1(format!(
                        "AI ({ai}) needs {n} characters, got {:?}",
                        shown(after)
                    ))
                })?;
                let next = &after[n..];
                // Some encoders put a GS after a fixed field too; it is harmless.
                (v, next.strip_prefix(GS as char).unwrap_or(next))
            }
            Len::Upto(max) => {
                let end = after.find(GS as char).unwrap_or(after.len());
                let v = &after[..end];
                if v.is_empty() || v.len() > max {
                    return Err(Reject::Gs1(format!(
                        "AI ({ai}) holds 1 to {max} characters, got {}",
                        v.len()
                    )));
                }
                let next = &after[end..];
                (v, next.strip_prefix(GS as char).unwrap_or(next))
            }
        };
        check_value(ai, value, kind)?;
        elements.push(Element {
            ai: ai.to_owned(),
            value: value.to_owned(),
        });
        rest = next;
    }
    if elements.is_empty() {
        return Err(Reject::Gs1("no application identifiers".into()));
    }
    let gtin = elements
        .iter()
        .find(|e| e.ai == "01")
        .map(|e| e.value.clone());
    Ok(Scan {
        symbology,
        code: shown(data),
        gtin,
        elements,
    })
}

fn check_value(ai: &str, v: &str, kind: Kind) -> Result<(), Reject> {
    let bad = |what: &str| Err(Reject::Gs1(format!("AI ({ai}) {what}: {:?}", shown(v))));
    match kind {
        Kind::Alnum => {
            if !v.bytes().all(|b| (0x21..0x7F).contains(&b)) {
                return bad("holds characters outside GS1 set 82");
            }
        }
        Kind::Numeric | Kind::CheckDigit | Kind::Date => {
            if !v.bytes().all(|b| b.is_ascii_digit()) {
                return bad("must be digits");
            }
        }
    }
    match kind {
        Kind::CheckDigit => {
            check_gtin(v, "gs1").map_err(|e| Reject::Gs1(format!("AI ({ai}) {e}")))?;
        }
        Kind::Date if gs1_date(v).is_none() => return bad("is not a date YYMMDD"),
        _ => {}
    }
    Ok(())
}

/// GS1 YYMMDD → `YYYY-MM-DD` (century by the GS1 sliding window around 2000–2049/1950–1999,
/// simplified: 00–49 → 20xx); day 00 is the month's last day.
fn gs1_date(v: &str) -> Option<String> {
    if v.len() != 6 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| v[r].parse::<u32>().ok();
    let (yy, mm, dd) = (n(0..2)?, n(2..4)?, n(4..6)?);
    let year = if yy < 50 { 2000 + yy } else { 1900 + yy };
    if !(1..=12).contains(&mm) {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let last = match mm {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let day = if dd == 0 { last } else { dd };
    (day <= last).then(|| format!("{year:04}-{mm:02}-{day:02}"))
}

fn with_decimals(digits: &str, decimals: usize) -> String {
    let trimmed = digits.trim_start_matches('0');
    let padded = format!("{trimmed:0>width$}", width = decimals + 1);
    let (int, frac) = padded.split_at(padded.len() - decimals);
    if frac.is_empty() {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    }
}

/// The decoder's properties on arbitrary bytes, shared by the fuzz target (`appliance/fuzz`) and
/// the corpus regression test: the framer keeps frames bounded and clean, accounts for every
/// byte, cuts the same frames however the bytes are split across reads, and [`decode`] never
/// panics and only accepts GTINs whose check digit holds. Panics (an assertion) on a violation.
#[doc(hidden)]
pub fn check_properties(data: &[u8]) {
    // The first byte chooses where the stream is split into two reads.
    let (split, input) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s), rest),
        None => (0, data),
    };
    let run = |chunks: &[&[u8]]| {
        let mut f = Framer::new();
        let mut pieces = Vec::new();
        for c in chunks {
            f.push(c, |p| pieces.push(p));
        }
        (pieces, f.pending())
    };
    let (whole, pending) = run(&[input]);
    let cut = split.min(input.len());
    let (parts, pending2) = run(&[&input[..cut], &input[cut..]]);
    assert_eq!(whole, parts, "framing depends on how bytes arrive");
    assert_eq!(pending, pending2);
    let mut accounted = pending;
    for p in &whole {
        match p {
            Piece::Frame(f) => {
                assert!(
                    !f.is_empty() && f.len() <= MAX_FRAME,
                    "frame of {} bytes",
                    f.len()
                );
                assert!(
                    f.iter().all(|&b| b == GS || (0x20..0x7F).contains(&b)),
                    "a frame holds a byte no barcode frame holds"
                );
                accounted += f.len() + 1;
                match decode(f) {
                    Ok(scan) => {
                        if let Some(g) = &scan.gtin {
                            assert_eq!(g.len(), 14, "gtin {g}");
                            assert!(g.bytes().all(|b| b.is_ascii_digit()), "gtin {g}");
                            let (body, check) = g.as_bytes().split_at(13);
                            assert_eq!(gs1_check_digit(body), check[0] - b'0', "gtin {g}");
                        }
                        let _ = (scan.lookup_keys(), scan.expiry(), scan.net_weight_kg());
                    }
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
            Piece::Noise(n) => {
                assert!(*n > 0);
                accounted += n;
            }
        }
    }
    // Terminators of empty lines are in neither; nothing is counted twice.
    assert!(
        accounted <= input.len(),
        "{accounted} bytes accounted of {}",
        input.len()
    );
    // Decoding raw input (not cut by the framer) must not panic either.
    let _ = decode(input);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> Vec<Piece> {
        let mut f = Framer::new();
        let mut out = Vec::new();
        f.push(input, |p| out.push(p));
        out
    }

    fn frame(s: &str) -> Piece {
        Piece::Frame(s.as_bytes().to_vec())
    }

    #[test]
    fn framing_cr_lf_crlf_and_partial() {
        assert_eq!(
            frames(b"AB\rCD\nEF\r\nGH"),
            vec![frame("AB"), frame("CD"), frame("EF")]
        );
        // Empty lines are nothing; a partial line waits for its terminator across pushes.
        let mut f = Framer::new();
        let mut out = Vec::new();
        f.push(b"\r\n\n12", |p| out.push(p));
        assert!(out.is_empty());
        assert_eq!(f.pending(), 2);
        f.push(b"34\r\n", |p| out.push(p));
        assert_eq!(out, vec![frame("1234")]);
        // A partial line thrown away is counted as noise and never glued to the next frame.
        f.push(b"99", |p| out.push(p));
        assert_eq!(f.flush_partial(), Some(Piece::Noise(2)));
        assert_eq!(f.flush_partial(), None);
    }

    #[test]
    fn noise_and_overlong_lines_are_counted_not_kept() {
        // A wrong baud rate: high bytes, control bytes; the whole line goes, the next survives.
        assert_eq!(
            frames(b"\xfe\x80AB\x00C\r\nOK\r"),
            vec![Piece::Noise(7), frame("OK")]
        );
        let long = vec![b'7'; MAX_FRAME + 10];
        let mut input = long.clone();
        input.extend_from_slice(b"\nNEXT\n");
        assert_eq!(
            frames(&input),
            vec![Piece::Noise(MAX_FRAME + 11), frame("NEXT")]
        );
        // Exactly MAX_FRAME is still a frame.
        let mut input = vec![b'7'; MAX_FRAME];
        input.push(b'\n');
        assert_eq!(frames(&input), vec![Piece::Frame(vec![b'7'; MAX_FRAME])]);
        // GS is part of a frame, not noise.
        assert_eq!(frames(b"]C1a\x1db\n"), vec![frame("]C1a\x1db")]);
    }

    /// (frame, symbology, gtin) for frames that must decode.
    const GOOD: &[(&str, &str, Option<&str>)] = &[
        ("]E08991234567891", "ean13", Some("08991234567891")),
        ("]E04006381333931", "ean13", Some("04006381333931")),
        // UPC-A 036000291452 arrives as EAN-13 with a leading zero.
        ("]E00036000291452", "ean13", Some("00036000291452")),
        ("]E496385074", "ean8", Some("00000096385074")),
        ("8991234567891", "ean13", Some("08991234567891")),
        ("036000291452", "upca", Some("00036000291452")),
        ("96385074", "ean8", Some("00000096385074")),
        ("]C0SKU-OIL-10W40", "code128", None),
        (
            "]C1010899123456789110ABC123\x1d17270531",
            "gs1-128",
            Some("08991234567891"),
        ),
        (
            "]d201089912345678911724022921SN-0001",
            "gs1-datamatrix",
            Some("08991234567891"),
        ),
        ("]Q30108991234567891", "gs1-qr", Some("08991234567891")),
        ("]Q1https://example.id/p/1", "qr", None),
        ("]A0CODE39", "]A0", None),
        ("]C1991234", "gs1-128", None),
        ("HELLO 123", "unknown", None),
    ];

    #[test]
    fn good_frames_decode() {
        for (input, sym, gtin) in GOOD {
            let scan = decode(input.as_bytes()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(scan.symbology.as_str(), *sym, "{input:?}");
            assert_eq!(scan.gtin.as_deref(), *gtin, "{input:?}");
        }
    }

    #[test]
    fn gs1_elements_are_parsed() {
        let s = decode(b"]C101089912345678911027-AB\x1d1727053121XYZ\x1d3012\x1d3103001250")
            .expect("valid");
        assert_eq!(s.batch(), Some("27-AB"));
        assert_eq!(s.expiry().as_deref(), Some("2027-05-31"));
        assert_eq!(s.serial(), Some("XYZ"));
        assert_eq!(s.count(), Some(12));
        assert_eq!(s.net_weight_kg().as_deref(), Some("1.250"));
        assert_eq!(
            s.code,
            "01089912345678911027-AB|1727053121XYZ|3012|3103001250"
        );
        // Day 00 is the month's last day; a leading GS (FNC1 sent as GS) is tolerated.
        let s = decode(b"]C1\x1d17280200").expect("valid");
        assert_eq!(s.expiry().as_deref(), Some("2028-02-29"));
        assert_eq!(
            decode(b"]C13100000500")
                .expect("valid")
                .net_weight_kg()
                .as_deref(),
            Some("500")
        );
    }

    /// (frame, reject code, words the reason must contain).
    const BAD: &[(&[u8], &str, &str)] = &[
        (b"]E08991234567890", "check_digit", "expected 1"),
        (b"8991234567895", "check_digit", "ean13 check digit is 5"),
        (b"036000291453", "check_digit", "upca"),
        (b"]E496385075", "check_digit", "ean8"),
        (b"]E0899123456789", "bad_length", "13 digits"),
        (b"]E0899123456789X", "bad_length", "13"),
        (b"]E4123", "bad_length", "8 digits"),
        (b"]E0", "empty", "no data"),
        (b"]E", "bad_aim", "incomplete"),
        (b"]C10108991234567890", "bad_gs1", "check digit"),
        (b"]C1010899123456789", "bad_gs1", "needs 14"),
        (b"]C18812345", "bad_gs1", "unknown application identifier"),
        (b"]C117271332", "bad_gs1", "not a date"),
        (b"]C110\x1d17270101", "bad_gs1", "1 to 20"),
        (b"]C1101234567890123456789012", "bad_gs1", "1 to 20"),
        (b"]C130ABC", "bad_gs1", "digits"),
        (b"]C110A B", "bad_gs1", "set 82"),
        (b"]d2\x1d", "bad_gs1", "no application identifiers"),
    ];

    #[test]
    fn bad_frames_are_rejected_with_a_reason() {
        for (input, code, words) in BAD {
            match decode(input) {
                Ok(s) => panic!("{:?} decoded as {s:?}", String::from_utf8_lossy(input)),
                Err(e) => {
                    assert_eq!(e.code(), *code, "{:?}: {e}", String::from_utf8_lossy(input));
                    assert!(
                        e.to_string().contains(words),
                        "{:?}: {e} lacks {words:?}",
                        String::from_utf8_lossy(input)
                    );
                }
            }
        }
    }

    #[test]
    fn lookup_keys_cover_gtin_forms() {
        let s = decode(b"]E00036000291452").expect("valid");
        assert_eq!(
            s.lookup_keys(),
            vec!["0036000291452", "00036000291452", "036000291452"]
        );
        let s = decode(b"]C10108991234567891").expect("valid");
        assert_eq!(s.lookup_keys(), vec!["08991234567891", "8991234567891"]);
        let s = decode(b"]C0SKU-1").expect("valid");
        assert_eq!(s.lookup_keys(), vec!["SKU-1"]);
    }

    /// The fuzz corpus (appliance/fuzz/corpus/decode, minimised) replayed on stable Rust.
    #[test]
    fn fuzz_corpus_holds_the_properties() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/decode");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("the committed fuzz corpus") {
            let path = entry.expect("entry").path();
            let data = std::fs::read(&path).expect("read corpus file");
            check_properties(&data);
            n += 1;
        }
        assert!(n >= 20, "only {n} corpus files in {dir}");
    }

    #[test]
    fn any_bytes_decode_or_reject_without_panicking() {
        for input in [
            &b""[..],
            b"]",
            b"]\xff\xfe",
            b"]C1\x1d\x1d\x1d",
            b"]C13100",
            b"]C1310",
            b"]C131",
            b"]C12",
            b"\xff",
        ] {
            let _ = decode(input);
        }
    }
}
