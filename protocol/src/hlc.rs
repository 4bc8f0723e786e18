//! Hybrid logical clock (Kulkarni et al.): a physical millisecond clock plus a logical counter,
//! so stamps are monotonic on one device even when its wall clock steps back (an RTC reset, an
//! NTP correction), and causally ordered across devices once they exchange stamps.
//!
//! Invariants: a clock never hands out a stamp at or below one it handed out or observed before;
//! a remote stamp further ahead of our wall clock than the configured bound is refused rather than
//! dragging every later stamp into the future.

use std::fmt;
use std::str::FromStr;

/// One stamp. Ordered by wall time, then counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// Counter that orders stamps sharing one `wall_ms`.
    pub logical: u32,
}

/// Why a stamp could not be parsed or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HlcError {
    #[error("hlc stamp {0:?} is not of the form <15 digits>-<10 digits>")]
    Malformed(String),
    #[error("hlc stamp {remote} is {ahead_ms} ms ahead of the local clock (bound {max_ms} ms)")]
    TooFarAhead {
        remote: Hlc,
        ahead_ms: u64,
        max_ms: u64,
    },
}

const WALL_DIGITS: usize = 15;
const LOGICAL_DIGITS: usize = 10;

impl Hlc {
    pub const fn new(wall_ms: u64, logical: u32) -> Self {
        Self { wall_ms, logical }
    }
}

/// Fixed-width decimal, so the text form sorts like the stamp: `000001795400000123-0000000002`.
impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:0w$}-{:0l$}",
            self.wall_ms,
            self.logical,
            w = WALL_DIGITS,
            l = LOGICAL_DIGITS
        )
    }
}

impl FromStr for Hlc {
    type Err = HlcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || HlcError::Malformed(s.to_owned());
        let (wall, logical) = s.split_once('-').ok_or_else(malformed)?;
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(wall, WALL_DIGITS) || !digits(logical, LOGICAL_DIGITS) {
            return Err(malformed());
        }
        Ok(Hlc {
            wall_ms: wall.parse().map_err(|_| malformed())?,
            logical: logical.parse().map_err(|_| malformed())?,
        })
    }
}

impl serde::Serialize for Hlc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Hlc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The clock state of one device. The caller persists `last()` with the events it stamps, and
/// passes the wall time in, so the rules below are pure.
#[derive(Debug, Clone)]
pub struct HlcClock {
    last: Hlc,
    max_ahead_ms: u64,
}

impl HlcClock {
    /// Default bound on how far a remote stamp may run ahead of our wall clock: one hour covers
    /// a badly set branch PC without letting a broken one poison every later stamp.
    pub const DEFAULT_MAX_AHEAD_MS: u64 = 60 * 60 * 1000;

    pub fn new(last: Hlc, max_ahead_ms: u64) -> Self {
        Self { last, max_ahead_ms }
    }

    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A stamp for a local event at wall time `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        self.last = if now_ms > self.last.wall_ms {
            Hlc::new(now_ms, 0)
        } else {
            bump(self.last)
        };
        self.last
    }

    /// Merge a stamp received from elsewhere, returning the stamp for the receive event.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) -> Result<Hlc, HlcError> {
        if remote.wall_ms > now_ms.saturating_add(self.max_ahead_ms) {
            return Err(HlcError::TooFarAhead {
                remote,
                ahead_ms: remote.wall_ms - now_ms,
                max_ms: self.max_ahead_ms,
            });
        }
        let wall = now_ms.max(self.last.wall_ms).max(remote.wall_ms);
        self.last = if wall == now_ms && wall > self.last.wall_ms && wall > remote.wall_ms {
            Hlc::new(wall, 0)
        } else {
            let base = if wall == self.last.wall_ms && wall == remote.wall_ms {
                self.last.logical.max(remote.logical)
            } else if wall == self.last.wall_ms {
                self.last.logical
            } else if wall == remote.wall_ms {
                remote.logical
            } else {
                return Ok(self.set(Hlc::new(wall, 0)));
            };
            bump(Hlc::new(wall, base))
        };
        Ok(self.last)
    }

    fn set(&mut self, h: Hlc) -> Hlc {
        self.last = h;
        h
    }
}

/// The next stamp after `h` without moving wall time, except when the counter is exhausted.
fn bump(h: Hlc) -> Hlc {
    match h.logical.checked_add(1) {
        Some(l) => Hlc::new(h.wall_ms, l),
        None => Hlc::new(h.wall_ms.saturating_add(1), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: u64 = 1_000;

    #[test]
    fn tick_table() {
        // (last, now, expected)
        let cases = [
            (Hlc::new(0, 0), 100, Hlc::new(100, 0)),
            (Hlc::new(100, 0), 100, Hlc::new(100, 1)),
            (Hlc::new(100, 5), 90, Hlc::new(100, 6)), // wall clock stepped back
            (Hlc::new(100, 5), 101, Hlc::new(101, 0)),
            (Hlc::new(100, u32::MAX), 100, Hlc::new(101, 0)), // counter exhausted
        ];
        for (last, now, want) in cases {
            let mut c = HlcClock::new(last, BOUND);
            assert_eq!(c.tick(now), want, "tick({last}, {now})");
            assert!(c.last() > last);
        }
    }

    #[test]
    fn observe_table() {
        // (last, remote, now, expected)
        let cases = [
            (Hlc::new(10, 0), Hlc::new(5, 0), 20, Hlc::new(20, 0)),
            (Hlc::new(10, 3), Hlc::new(10, 7), 5, Hlc::new(10, 8)),
            (Hlc::new(10, 9), Hlc::new(10, 7), 5, Hlc::new(10, 10)),
            (Hlc::new(10, 9), Hlc::new(12, 2), 5, Hlc::new(12, 3)),
            (Hlc::new(15, 4), Hlc::new(12, 2), 5, Hlc::new(15, 5)),
            (Hlc::new(15, 4), Hlc::new(12, 2), 15, Hlc::new(15, 5)),
            (Hlc::new(15, 4), Hlc::new(15, 2), 15, Hlc::new(15, 5)),
            (Hlc::new(1, 0), Hlc::new(900, 1), 100, Hlc::new(900, 2)),
        ];
        for (last, remote, now, want) in cases {
            let mut c = HlcClock::new(last, BOUND);
            let got = c.observe(remote, now).expect("within bound");
            assert_eq!(
                got, want,
                "observe(last {last}, remote {remote}, now {now})"
            );
            assert!(got > last && got > remote);
        }
    }

    #[test]
    fn observe_refuses_far_future() {
        let mut c = HlcClock::new(Hlc::new(10, 0), BOUND);
        let err = c.observe(Hlc::new(5_000, 0), 100).unwrap_err();
        assert!(
            matches!(
                err,
                HlcError::TooFarAhead {
                    ahead_ms: 4_900,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(c.last(), Hlc::new(10, 0), "a refused stamp changes nothing");
    }

    #[test]
    fn text_form_round_trips_and_sorts() {
        let stamps = [
            Hlc::new(0, 0),
            Hlc::new(9, 10),
            Hlc::new(10, 0),
            Hlc::new(1_795_400_000_123, 2),
        ];
        for w in stamps.windows(2) {
            assert!(w[0].to_string() < w[1].to_string());
        }
        for h in stamps {
            assert_eq!(h.to_string().parse::<Hlc>(), Ok(h));
        }
        assert_eq!(
            Hlc::new(1_795_400_000_123, 2).to_string(),
            "001795400000123-0000000002"
        );
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in [
            "",
            "1-2",
            "001795400000123",
            "00179540000012x-0000000002",
            "001795400000123-000000002",
            "001795400000123_0000000002",
        ] {
            assert!(bad.parse::<Hlc>().is_err(), "{bad:?}");
        }
    }
}
