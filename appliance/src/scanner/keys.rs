//! A keyboard-mode (HID) scanner's key events → the bytes a serial scanner would have sent:
//! pure, no I/O, no clock.
//!
//! A scanner left as a USB keyboard "types" each barcode: key presses with Shift for capitals,
//! then Enter (or Tab). Linux hands them to us as `struct input_event` records read from its
//! evdev node. [`Records`] cuts the byte stream into records (a read may end inside one, a FIFO
//! in tests does), [`Keyboard`] follows the modifier keys and turns each key press into one byte
//! with the US layout, which the scanner's [`Framer`](super::decode::Framer) then cuts into frames
//! exactly as it does for a serial scanner:
//! - printable ASCII keys (letters with Shift or Caps Lock, digits, punctuation, the keypad);
//! - Enter, keypad Enter and Tab: the terminator (CR);
//! - Ctrl+] : GS (0x1D), the GS1 field separator as keyboard-mode scanners send it;
//! - any other key pressed (F-keys, arrows, Escape, a key with Alt or another Ctrl combination):
//!   a NUL byte, which makes its whole line noise in the framer (counted, never a frame).
//!
//! Releases, autorepeat and every other event type (SYN, MSC scan codes, LEDs) produce nothing.
//! Memory is fixed: one partial record and a few modifier flags; the framer bounds line length.
//! Only the 64-bit record layout is read (`x86_64`, `aarch64`: the boxes we ship).

/// `sizeof(struct input_event)` on 64-bit Linux: `timeval` (2 × 8), type, code (2 × 2), value (4).
pub const EVENT_SIZE: usize = 24;

/// `EV_KEY`: a key or button changed state.
pub const EV_KEY: u16 = 0x01;
/// `EV_SYN`: the end of one report.
pub const EV_SYN: u16 = 0x00;
/// `EV_MSC`: with `MSC_SCAN`, the HID usage of the key (sent before each key event).
pub const EV_MSC: u16 = 0x04;

/// What a key press means to a barcode line: the byte for the framer.
pub const TERMINATOR: u8 = b'\r';
/// The GS1 group separator.
pub const GS: u8 = 0x1D;
/// Makes the framer drop the line as noise (any byte outside a frame's alphabet would).
pub const UNKNOWN: u8 = 0x00;

// Linux key codes (include/uapi/linux/input-event-codes.h) the translation needs by name.
pub const KEY_TAB: u16 = 15;
pub const KEY_ENTER: u16 = 28;
pub const KEY_LEFTCTRL: u16 = 29;
pub const KEY_LEFTSHIFT: u16 = 42;
pub const KEY_RIGHTSHIFT: u16 = 54;
pub const KEY_LEFTALT: u16 = 56;
pub const KEY_CAPSLOCK: u16 = 58;
pub const KEY_NUMLOCK: u16 = 69;
pub const KEY_KPENTER: u16 = 96;
pub const KEY_RIGHTCTRL: u16 = 97;
pub const KEY_RIGHTALT: u16 = 100;
pub const KEY_RIGHTBRACE: u16 = 27;

/// One `input_event` without its time stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

impl InputEvent {
    pub fn key(code: u16, value: i32) -> Self {
        Self {
            kind: EV_KEY,
            code,
            value,
        }
    }

    /// Read one record as the kernel lays it out (native byte order).
    pub fn from_record(r: &[u8; EVENT_SIZE]) -> Self {
        Self {
            kind: u16::from_ne_bytes([r[16], r[17]]),
            code: u16::from_ne_bytes([r[18], r[19]]),
            value: i32::from_ne_bytes([r[20], r[21], r[22], r[23]]),
        }
    }

    /// The record the kernel would hand us (zero time stamp): for tests and the sandbox.
    pub fn to_record(self) -> [u8; EVENT_SIZE] {
        let mut r = [0u8; EVENT_SIZE];
        r[16..18].copy_from_slice(&self.kind.to_ne_bytes());
        r[18..20].copy_from_slice(&self.code.to_ne_bytes());
        r[20..24].copy_from_slice(&self.value.to_ne_bytes());
        r
    }
}

/// Cuts a byte stream into records; keeps at most one partial record.
#[derive(Debug, Default)]
pub struct Records {
    partial: [u8; EVENT_SIZE],
    len: usize,
}

impl Records {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; each complete record is handed to `out` in order.
    pub fn push(&mut self, mut bytes: &[u8], mut out: impl FnMut(InputEvent)) {
        while !bytes.is_empty() {
            let take = (EVENT_SIZE - self.len).min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            self.partial[self.len..self.len + take].copy_from_slice(head);
            self.len += take;
            bytes = rest;
            if self.len == EVENT_SIZE {
                out(InputEvent::from_record(&self.partial));
                self.len = 0;
            }
        }
    }

    /// Bytes of an unfinished record (thrown away with [`Self::clear`] when the device is lost).
    pub fn pending(&self) -> usize {
        self.len
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// The US layout: key code → (unshifted, shifted) ASCII. Letters are lower case here; Shift and
/// Caps Lock make them capitals.
pub fn us_layout(code: u16) -> Option<(u8, u8)> {
    const ROW_DIGITS: &[u8; 12] = b"1234567890-=";
    const ROW_DIGITS_SHIFT: &[u8; 12] = b"!@#$%^&*()_+";
    Some(match code {
        2..=13 => {
            let i = usize::from(code - 2);
            (ROW_DIGITS[i], ROW_DIGITS_SHIFT[i])
        }
        16..=25 => pair(b"qwertyuiop", code - 16),
        26 => (b'[', b'{'),
        27 => (b']', b'}'),
        30..=38 => pair(b"asdfghjkl", code - 30),
        39 => (b';', b':'),
        40 => (b'\'', b'"'),
        41 => (b'`', b'~'),
        43 => (b'\\', b'|'),
        44..=50 => pair(b"zxcvbnm", code - 44),
        51 => (b',', b'<'),
        52 => (b'.', b'>'),
        53 => (b'/', b'?'),
        57 => (b' ', b' '),
        // The keypad, as with Num Lock on (scanners that "type on the keypad" assume it).
        55 => (b'*', b'*'),
        71 => (b'7', b'7'),
        72 => (b'8', b'8'),
        73 => (b'9', b'9'),
        74 => (b'-', b'-'),
        75 => (b'4', b'4'),
        76 => (b'5', b'5'),
        77 => (b'6', b'6'),
        78 => (b'+', b'+'),
        79 => (b'1', b'1'),
        80 => (b'2', b'2'),
        81 => (b'3', b'3'),
        82 => (b'0', b'0'),
        83 => (b'.', b'.'),
        98 => (b'/', b'/'),
        _ => return None,
    })
}

fn pair(row: &[u8], i: u16) -> (u8, u8) {
    // Callers pass an index inside `row` (their match arm's range); `get` keeps it total anyway.
    let c = row.get(usize::from(i)).copied().unwrap_or(b'?');
    (c, c.to_ascii_uppercase())
}

/// The modifier state of the grabbed keyboard and the translation of its key presses.
#[derive(Debug, Default, Clone)]
pub struct Keyboard {
    left_shift: bool,
    right_shift: bool,
    left_ctrl: bool,
    right_ctrl: bool,
    left_alt: bool,
    right_alt: bool,
    caps_lock: bool,
}

impl Keyboard {
    pub fn new() -> Self {
        Self::default()
    }

    /// The byte one event stands for, if any.
    pub fn feed(&mut self, ev: InputEvent) -> Option<u8> {
        if ev.kind != EV_KEY {
            return None;
        }
        let pressed = ev.value == 1;
        let held = ev.value != 0;
        // Modifiers follow presses and releases (a repeat changes nothing).
        let modifier = match ev.code {
            KEY_LEFTSHIFT => Some(&mut self.left_shift),
            KEY_RIGHTSHIFT => Some(&mut self.right_shift),
            KEY_LEFTCTRL => Some(&mut self.left_ctrl),
            KEY_RIGHTCTRL => Some(&mut self.right_ctrl),
            KEY_LEFTALT => Some(&mut self.left_alt),
            KEY_RIGHTALT => Some(&mut self.right_alt),
            _ => None,
        };
        if let Some(flag) = modifier {
            *flag = held;
            return None;
        }
        if !pressed {
            // A release, or autorepeat: a scanner never holds a key, so a repeat is not a second
            // character.
            return None;
        }
        match ev.code {
            KEY_CAPSLOCK => {
                self.caps_lock = !self.caps_lock;
                return None;
            }
            KEY_NUMLOCK => return None,
            _ => {}
        }
        let ctrl = self.left_ctrl || self.right_ctrl;
        let alt = self.left_alt || self.right_alt;
        let shift = self.left_shift || self.right_shift;
        if ctrl && !alt && !shift && ev.code == KEY_RIGHTBRACE {
            return Some(GS);
        }
        if ctrl || alt {
            return Some(UNKNOWN);
        }
        if matches!(ev.code, KEY_ENTER | KEY_KPENTER | KEY_TAB) {
            return Some(TERMINATOR);
        }
        let Some((plain, shifted)) = us_layout(ev.code) else {
            return Some(UNKNOWN);
        };
        let upper = if plain.is_ascii_lowercase() {
            shift != self.caps_lock
        } else {
            shift
        };
        Some(if upper { shifted } else { plain })
    }
}

/// Records → keys → bytes for the framer, in one step.
#[derive(Debug, Default)]
pub struct KeyStream {
    pub records: Records,
    pub keyboard: Keyboard,
}

impl KeyStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed raw bytes from the event node; the framer's bytes are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let keyboard = &mut self.keyboard;
        self.records.push(bytes, |ev| {
            if let Some(b) = keyboard.feed(ev) {
                out.push(b);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::decode::{Framer, MAX_FRAME, Piece};
    use super::*;

    /// How a scanner types `c` on a US keyboard: the key code and whether Shift is held.
    fn stroke(c: u8) -> Option<(u16, bool)> {
        (0u16..256).find_map(|code| {
            let (plain, shifted) = us_layout(code)?;
            // The main block, not the keypad (both type digits; either would do).
            if (71..=83).contains(&code) || code == 55 || code == 98 {
                return None;
            }
            if plain == c {
                Some((code, false))
            } else if shifted == c {
                Some((code, true))
            } else {
                None
            }
        })
    }

    /// The records a scanner sends for `line` and its terminator, with the SYN and MSC events a
    /// real keyboard interleaves.
    fn typed(line: &[u8], terminator: u16) -> Vec<u8> {
        let mut evs = Vec::new();
        let mut key = |code: u16, value: i32| {
            evs.push(InputEvent {
                kind: EV_MSC,
                code: 4,
                value: 0x7_0000 + i32::from(code),
            });
            evs.push(InputEvent::key(code, value));
            evs.push(InputEvent {
                kind: EV_SYN,
                code: 0,
                value: 0,
            });
        };
        for &c in line {
            if c == GS {
                key(KEY_LEFTCTRL, 1);
                key(KEY_RIGHTBRACE, 1);
                key(KEY_RIGHTBRACE, 0);
                key(KEY_LEFTCTRL, 0);
                continue;
            }
            let (code, shift) = stroke(c).expect("a typeable character");
            if shift {
                key(KEY_LEFTSHIFT, 1);
            }
            key(code, 1);
            key(code, 0);
            if shift {
                key(KEY_LEFTSHIFT, 0);
            }
        }
        key(terminator, 1);
        key(terminator, 0);
        evs.into_iter().flat_map(InputEvent::to_record).collect()
    }

    fn frames(bytes: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, usize) {
        let mut keys = KeyStream::new();
        let mut framer = Framer::new();
        let (mut found, mut noise) = (Vec::new(), 0);
        let mut rest = bytes;
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks
                .get(i)
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            i += 1;
            let (now, later) = rest.split_at(n);
            rest = later;
            let mut out = Vec::new();
            keys.push(now, &mut out);
            framer.push(&out, |p| match p {
                Piece::Frame(f) => found.push(f),
                Piece::Noise(n) => noise += n,
            });
        }
        (found, noise)
    }

    #[test]
    fn a_typed_ean13_and_a_gs1_code_come_out_as_lines() {
        let bytes = [
            typed(b"4006381333931", KEY_ENTER),
            typed(b"]d2010950110153000317250531\x1d10ABC-12", KEY_TAB),
            typed(b"Part #7 (Rev: b)", KEY_KPENTER),
        ]
        .concat();
        let (found, noise) = frames(&bytes, &[]);
        assert_eq!(
            found,
            vec![
                b"4006381333931".to_vec(),
                b"]d2010950110153000317250531\x1d10ABC-12".to_vec(),
                b"Part #7 (Rev: b)".to_vec(),
            ]
        );
        assert_eq!(noise, 0);
    }

    #[test]
    fn the_layout_is_us() {
        for (code, shift, want) in [
            (30, false, b'a'),
            (30, true, b'A'),
            (2, true, b'!'),
            (3, true, b'@'),
            (11, false, b'0'),
            (12, true, b'_'),
            (27, true, b'}'),
            (40, true, b'"'),
            (53, true, b'?'),
            (79, false, b'1'),
        ] {
            let mut k = Keyboard::new();
            if shift {
                k.feed(InputEvent::key(KEY_RIGHTSHIFT, 1));
            }
            assert_eq!(
                k.feed(InputEvent::key(code, 1)),
                Some(want),
                "key {code} shift {shift}"
            );
        }
        // Caps Lock capitalises letters only; Shift with Caps Lock gives lower case.
        let mut k = Keyboard::new();
        k.feed(InputEvent::key(KEY_CAPSLOCK, 1));
        k.feed(InputEvent::key(KEY_CAPSLOCK, 0));
        assert_eq!(k.feed(InputEvent::key(30, 1)), Some(b'A'));
        assert_eq!(k.feed(InputEvent::key(2, 1)), Some(b'1'));
        k.feed(InputEvent::key(KEY_LEFTSHIFT, 1));
        assert_eq!(k.feed(InputEvent::key(30, 1)), Some(b'a'));
    }

    #[test]
    fn unknown_keys_and_other_combinations_make_the_line_noise() {
        let mut bytes = typed(b"ABC", KEY_ENTER);
        // F1 in the middle of the next line, then Alt+1, then a good line.
        let mut bad: Vec<u8> = [
            InputEvent::key(30, 1),
            InputEvent::key(59, 1),
            InputEvent::key(59, 0),
            InputEvent::key(31, 1),
            InputEvent::key(KEY_ENTER, 1),
            InputEvent::key(KEY_LEFTALT, 1),
            InputEvent::key(2, 1),
            InputEvent::key(KEY_LEFTALT, 0),
            InputEvent::key(KEY_ENTER, 1),
        ]
        .into_iter()
        .flat_map(InputEvent::to_record)
        .collect();
        bytes.append(&mut bad);
        bytes.extend(typed(b"OK1", KEY_ENTER));
        let (found, noise) = frames(&bytes, &[]);
        assert_eq!(found, vec![b"ABC".to_vec(), b"OK1".to_vec()]);
        assert_eq!(noise, 4 + 2, "a, F1, s, CR; Alt+1, CR");
    }

    #[test]
    fn autorepeat_and_releases_type_nothing() {
        let mut k = Keyboard::new();
        assert_eq!(k.feed(InputEvent::key(30, 1)), Some(b'a'));
        assert_eq!(k.feed(InputEvent::key(30, 2)), None);
        assert_eq!(k.feed(InputEvent::key(30, 0)), None);
    }

    proptest! {
        #[test]
        fn any_typed_line_comes_back_whole_in_any_chunking(
            line in proptest::collection::vec(
                prop_oneof![20 => 0x20u8..0x7F, 1 => Just(GS)], 1..MAX_FRAME),
            chunks in proptest::collection::vec(1usize..100, 0..40),
            tab in any::<bool>(),
        ) {
            // A line of only spaces is still a frame for the framer (it trims nothing).
            let bytes = typed(&line, if tab { KEY_TAB } else { KEY_ENTER });
            let (found, noise) = frames(&bytes, &chunks);
            prop_assert_eq!(found, vec![line]);
            prop_assert_eq!(noise, 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_frames_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            chunks in proptest::collection::vec(1usize..64, 0..64),
        ) {
            let (found, _) = frames(&bytes, &chunks);
            for f in found {
                prop_assert!(!f.is_empty() && f.len() <= MAX_FRAME);
                prop_assert!(f.iter().all(|&b| (0x20..0x7F).contains(&b) || b == GS));
            }
        }

        #[test]
        fn arbitrary_key_events_type_only_frame_bytes(
            evs in proptest::collection::vec((0u16..0x20, 0u16..0x300, -1i32..3), 0..2000),
        ) {
            let bytes: Vec<u8> = evs
                .into_iter()
                .flat_map(|(kind, code, value)| InputEvent { kind, code, value }.to_record())
                .collect();
            let (found, _) = frames(&bytes, &[]);
            for f in found {
                prop_assert!(f.len() <= MAX_FRAME);
                prop_assert!(f.iter().all(|&b| (0x20..0x7F).contains(&b) || b == GS));
            }
        }
    }
}
