//! The one-time enrolment token as people handle it: made by `sentra-cloud enrollment-token`,
//! typed or scanned at the box by `sentra-edge enroll`. One implementation for both sides, so
//! the box refuses a typo before it uses the network and the cloud hashes exactly what the box
//! sends.
//!
//! The token is 80 random bits as 16 characters of Crockford's base 32 (`0-9`, `A-Z` without
//! I, L, O, U) and one check character, shown in groups of four: `7KQ2-M9XW-3HDP-R5TA-3`.
//! Reading is forgiving as Crockford's is: any case, I and L read as 1, O as 0, hyphens and
//! white space ignored. [`EnrolToken::canonical`] (17 upper-case characters, no hyphens) is what
//! the box sends and what the cloud stores the SHA-256 of.
//!
//! The check character: why not Crockford's mod-37 check symbol. Five of its 37 values are the
//! symbols `* ~ $ = U`, awkward to read off a sheet, to type on a console, and (`=`) inside the
//! QR's URI; drawing again when one comes up would leave fewer than 80 bits. So the check here
//! is a weighted sum over GF(32) (the polynomial x⁵ + x² + 1, weights the powers of x, i.e. a
//! Damm check over the quasigroup `a ∘ b = x·a + b`): it is always one of the 32 token
//! characters and, like mod 37, it catches every single wrong character (a nonzero error times a
//! nonzero weight is nonzero in a field) and every swap of two neighbours, the check character
//! included (the error is `(a − b)·(x + 1)·xᵏ`, nonzero when `a ≠ b`). `tests/enrol_token.rs`
//! checks both over every position and every substitution.
//!
//! Tokens issued before this form (64 hex characters, no check character) stay valid until they
//! expire: [`EnrolToken::parse`] reads them as [`EnrolToken::Legacy`], lower-cased, which is how
//! the cloud hashed them.
//!
//! The QR on the cloud team's sheet holds [`qr_content`]: the bare token, or
//! `sentra://enrol?cloud=<url>&token=<token>` when the cloud knows the URL boxes reach it at;
//! [`parse_scanned`] reads either (what a keyboard-mode scanner types at the prompt), and a token
//! typed by hand.

use std::fmt;

/// Crockford's base-32 alphabet: the value of a character is its index.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Random bytes in a token: 80 bits, 16 characters.
pub const RANDOM_BYTES: usize = 10;

/// Characters of a token without separators: 16 random ones and the check character.
pub const TOKEN_CHARS: usize = 17;

/// Hex characters of a token in the form issued before this one.
pub const LEGACY_HEX_CHARS: usize = 64;

/// The longest line [`parse_scanned`] looks at: a scanned URI with a long cloud URL fits easily;
/// anything longer is not a token.
pub const MAX_INPUT_CHARS: usize = 512;

/// The scheme and path of the enrolment QR's URI.
pub const URI_PREFIX: &str = "sentra://enrol?";

/// An example in the token's shape, for messages and guides (its check character is right).
pub const EXAMPLE: &str = "7KQ2-M9XW-3HDP-R5TA-3";

const DATA_CHARS: usize = TOKEN_CHARS - 1;

/// The reduction of x⁵ + x² + 1 (primitive, so multiplying by x permutes the 31 nonzero values).
const MODULUS: u8 = 0b10_0101;

/// An enrolment token, normalised. Its `Debug` hides it: a token is a secret until it is used.
#[derive(Clone, PartialEq, Eq)]
pub enum EnrolToken {
    /// The short form: 17 characters of [`ALPHABET`], the last the check character.
    Short(String),
    /// The form issued before: 64 lower-case hex characters.
    Legacy(String),
}

impl fmt::Debug for EnrolToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnrolToken::Short(_) => f.write_str("EnrolToken::Short(<redacted>)"),
            EnrolToken::Legacy(_) => f.write_str("EnrolToken::Legacy(<redacted>)"),
        }
    }
}

/// Why what was typed or scanned is not a token; each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "no token given: type the enrolment token from the sheet (like {EXAMPLE}), or scan its QR code"
    )]
    Empty,
    #[error(
        "that is not an enrolment token (more than {MAX_INPUT_CHARS} characters): type the token from the sheet (like {EXAMPLE}), or scan its QR code"
    )]
    TooLong,
    #[error(
        "{character:?} (character {position}) cannot be in an enrolment token, which has only digits and letters (never U) and hyphens: check it against the sheet"
    )]
    BadCharacter { character: char, position: usize },
    #[error(
        "the token has {found} characters, an enrolment token has {TOKEN_CHARS} (like {EXAMPLE}; hyphens and spaces do not count): check it against the sheet for a missing or extra character"
    )]
    WrongLength { found: usize },
    #[error("the token has a typo: check it against the sheet, character by character")]
    Typo,
    #[error(
        "the scanned code is a Sentra link but not a whole enrolment code ({0}): scan it again, or type the token from the sheet"
    )]
    BadLink(&'static str),
}

impl EnrolToken {
    /// The token made of `random` (from the operating system's generator; the caller draws it,
    /// as this crate does no I/O).
    pub fn from_random(random: [u8; RANDOM_BYTES]) -> EnrolToken {
        let mut values = [0_u8; TOKEN_CHARS];
        let mut bits: u32 = 0;
        let mut held = 0;
        let mut next = 0;
        for byte in random {
            bits = (bits << 8) | u32::from(byte);
            held += 8;
            while held >= 5 {
                held -= 5;
                // Masked to 5 bits, so the cast keeps every bit that matters.
                values[next] = ((bits >> held) & 0x1f) as u8;
                next += 1;
            }
            bits &= (1 << held) - 1;
        }
        values[DATA_CHARS] = check_value(&values[..DATA_CHARS]);
        EnrolToken::Short(values.iter().map(|&v| symbol(v)).collect())
    }

    /// Reads a token as typed: any case, I and L as 1, O as 0, hyphens and white space ignored;
    /// 64 hex characters are the old form.
    pub fn parse(raw: &str) -> Result<EnrolToken, TokenError> {
        if raw.chars().count() > MAX_INPUT_CHARS {
            return Err(TokenError::TooLong);
        }
        let mut values = Vec::with_capacity(TOKEN_CHARS);
        let mut hex = true;
        for (index, character) in raw.trim().chars().enumerate() {
            if character == '-' || character.is_whitespace() {
                continue;
            }
            let value = value_of(character).ok_or(TokenError::BadCharacter {
                character,
                position: index + 1,
            })?;
            hex &= character.is_ascii_hexdigit();
            values.push(value);
        }
        match values.len() {
            0 => Err(TokenError::Empty),
            TOKEN_CHARS => {
                if remainder(&values) != 0 {
                    return Err(TokenError::Typo);
                }
                Ok(EnrolToken::Short(
                    values.iter().map(|&v| symbol(v)).collect(),
                ))
            }
            LEGACY_HEX_CHARS if hex => Ok(EnrolToken::Legacy(
                raw.chars()
                    .filter(char::is_ascii_hexdigit)
                    .map(|c| c.to_ascii_lowercase())
                    .collect(),
            )),
            found => Err(TokenError::WrongLength { found }),
        }
    }

    /// What the box sends and the cloud hashes: the short form's 17 upper-case characters, or
    /// the old form's 64 lower-case hex ones.
    pub fn canonical(&self) -> &str {
        match self {
            EnrolToken::Short(s) | EnrolToken::Legacy(s) => s,
        }
    }

    /// For people: the short form in groups of four (`7KQ2-M9XW-3HDP-R5TA-3`); the old form as
    /// it is.
    pub fn grouped(&self) -> String {
        match self {
            EnrolToken::Short(s) => {
                let mut out = String::with_capacity(s.len() + s.len() / 4);
                for (index, character) in s.chars().enumerate() {
                    if index > 0 && index % 4 == 0 {
                        out.push('-');
                    }
                    out.push(character);
                }
                out
            }
            EnrolToken::Legacy(s) => s.clone(),
        }
    }

    pub fn is_legacy(&self) -> bool {
        matches!(self, EnrolToken::Legacy(_))
    }
}

/// What the enrolment QR holds: `sentra://enrol?cloud=<url>&token=<token>` when the cloud's URL
/// is known (the box then needs no `--cloud`), else the bare grouped token (upper case, so the QR
/// uses its compact alphanumeric mode).
pub fn qr_content(token: &EnrolToken, cloud_url: Option<&str>) -> String {
    match cloud_url {
        Some(url) => format!(
            "{URI_PREFIX}cloud={}&token={}",
            percent_encode(url),
            token.grouped()
        ),
        None => token.grouped(),
    }
}

/// A token as scanned or typed, and the cloud's URL when the enrolment QR carried one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub token: EnrolToken,
    pub cloud: Option<String>,
}

/// Reads one line from the prompt (or `--token`): an enrolment URI as a keyboard-mode scanner
/// types it (any case), or a token.
pub fn parse_scanned(line: &str) -> Result<Scanned, TokenError> {
    if line.chars().count() > MAX_INPUT_CHARS {
        return Err(TokenError::TooLong);
    }
    let line = line.trim();
    let Some(query) = strip_prefix_ignore_case(line, URI_PREFIX) else {
        return Ok(Scanned {
            token: EnrolToken::parse(line)?,
            cloud: None,
        });
    };
    let mut token = None;
    let mut cloud = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name.eq_ignore_ascii_case("token") {
            token = Some(percent_decode(value).ok_or(TokenError::BadLink("a damaged token"))?);
        } else if name.eq_ignore_ascii_case("cloud") {
            let url = percent_decode(value).ok_or(TokenError::BadLink("a damaged cloud URL"))?;
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://"))
                || url.chars().any(char::is_control)
            {
                return Err(TokenError::BadLink("its cloud URL is not http(s)"));
            }
            cloud = Some(url);
        }
        // Any other parameter is for a later version: ignored.
    }
    let token = token.ok_or(TokenError::BadLink("no token in it"))?;
    Ok(Scanned {
        token: EnrolToken::parse(&token)?,
        cloud,
    })
}

fn strip_prefix_ignore_case<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let head = line.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| line.get(prefix.len()..))
        .flatten()
}

/// Percent-encodes what would end or confuse a query value; a URL's `:` and `/` stay readable.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b":/.-_~@!$'()*,;".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let digits = value.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(digits, 16).ok()?);
            index += 3;
        } else {
            out.push(byte);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of a character as typed, read the forgiving way; `None` if it cannot be in a token.
fn value_of(character: char) -> Option<u8> {
    let upper = match character.to_ascii_uppercase() {
        'I' | 'L' => '1',
        'O' => '0',
        other => other,
    };
    let byte = u8::try_from(upper).ok()?;
    ALPHABET
        .iter()
        .position(|&symbol| symbol == byte)
        .and_then(|index| u8::try_from(index).ok())
}

/// The character of a value below 32.
fn symbol(value: u8) -> char {
    char::from(ALPHABET[usize::from(value & 0x1f)])
}

/// `x · value` in GF(32).
fn times_x(value: u8) -> u8 {
    let shifted = value << 1;
    if shifted & 0x20 == 0 {
        shifted
    } else {
        shifted ^ MODULUS
    }
}

/// Horner's rule over GF(32): Σ valueᵢ · x^(n-1-i). Zero for a whole token.
fn remainder(values: &[u8]) -> u8 {
    values
        .iter()
        .fold(0, |sum, &value| times_x(sum) ^ (value & 0x1f))
}

/// The check value that makes [`remainder`] of the whole token zero.
fn check_value(data: &[u8]) -> u8 {
    times_x(remainder(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_a_token() {
        let token = EnrolToken::parse(EXAMPLE).expect("the example parses");
        assert_eq!(token.grouped(), EXAMPLE);
        assert_eq!(token.canonical(), "7KQ2M9XW3HDPR5TA3");
    }

    #[test]
    fn tokens_from_random_bytes_carry_all_80_bits() {
        assert_eq!(
            EnrolToken::from_random([0; RANDOM_BYTES]).canonical(),
            "00000000000000000"
        );
        let all = EnrolToken::from_random([0xff; RANDOM_BYTES]);
        assert!(all.canonical().starts_with("ZZZZZZZZZZZZZZZZ"));
        let one = EnrolToken::from_random([0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(one.canonical().starts_with("0000000000000001"));
        let top = EnrolToken::from_random([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(top.canonical().starts_with("G000000000000000"));
    }

    #[test]
    fn messages_tell_the_technician_what_to_do() {
        assert_eq!(
            EnrolToken::parse("7KQ2-M9XW-3HDP-R5TA-K")
                .expect_err("typo")
                .to_string(),
            "the token has a typo: check it against the sheet, character by character"
        );
        assert!(matches!(
            EnrolToken::parse("7KQ2-M9XW-3HDP-R5TA"),
            Err(TokenError::WrongLength { found: 16 })
        ));
        assert_eq!(
            EnrolToken::parse("7KQ2-M9XU-3HDP-R5TA-J"),
            Err(TokenError::BadCharacter {
                character: 'U',
                position: 9
            })
        );
        assert_eq!(EnrolToken::parse(" - "), Err(TokenError::Empty));
    }

    #[test]
    fn forgiving_reading() {
        let token = EnrolToken::from_random([0x42; RANDOM_BYTES]);
        let sloppy = token
            .grouped()
            .to_lowercase()
            .replace('1', "l")
            .replace('0', "o")
            .replace('-', " ");
        assert_eq!(EnrolToken::parse(&format!("  {sloppy}\r\n")), Ok(token));
    }

    #[test]
    fn legacy_hex_tokens_stay_valid() {
        let hex = "0123456789abcdef".repeat(4);
        let token = EnrolToken::parse(&hex.to_uppercase()).expect("legacy");
        assert!(token.is_legacy());
        assert_eq!(token.canonical(), hex);
        // 64 characters that are not all hex are not the old form.
        assert!(matches!(
            EnrolToken::parse(&"K".repeat(64)),
            Err(TokenError::WrongLength { found: 64 })
        ));
    }

    #[test]
    fn qr_content_and_scanning_round_trip() {
        let token = EnrolToken::from_random([7; RANDOM_BYTES]);
        let bare = qr_content(&token, None);
        assert_eq!(
            parse_scanned(&bare),
            Ok(Scanned {
                token: token.clone(),
                cloud: None
            })
        );
        let url = "https://cloud.sentra.id:8443/a b&c";
        let uri = qr_content(&token, Some(url));
        assert!(
            uri.starts_with("sentra://enrol?cloud=https://cloud.sentra.id:8443/a%20b%26c&token=")
        );
        let scanned = parse_scanned(&uri.to_uppercase()).expect("a scanner with caps lock");
        assert_eq!(scanned.token, token);
        assert_eq!(
            parse_scanned(&format!("{uri}\n")),
            Ok(Scanned {
                token,
                cloud: Some(url.to_owned())
            })
        );
        assert!(matches!(
            parse_scanned("sentra://enrol?cloud=https://x"),
            Err(TokenError::BadLink(_))
        ));
        assert!(matches!(
            parse_scanned("sentra://enrol?cloud=ftp://x&token=1"),
            Err(TokenError::BadLink(_))
        ));
        assert!(matches!(
            parse_scanned("sentra://enrol?token=%zz"),
            Err(TokenError::BadLink(_))
        ));
    }
}
