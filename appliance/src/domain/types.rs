//! Validated newtypes for values that arrive from devices. Each parses once, at the edge, with an
//! error that says what was expected; serde uses the same parser, so a bad field in a JSON body
//! is reported with its path.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused; the API adds the field's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, Invalid> {
                let check: fn(String) -> Result<String, Invalid> = $check;
                check(s.into()).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = Invalid;
            fn try_from(s: String) -> Result<Self, Invalid> {
                Self::parse(s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// Longest SKU, in characters.
pub const SKU_MAX: usize = 32;
/// Longest SKU, plate or phone number as sent (surrounding spaces and separators included).
pub const SKU_RAW_MAX: usize = 64;
pub const PLATE_RAW_MAX: usize = 32;
pub const PHONE_RAW_MAX: usize = 32;
/// Longest display name, in characters (after trimming).
pub const NAME_MAX: usize = 120;
/// Longest free text, in characters (after trimming).
pub const TEXT_MAX: usize = 2000;
/// Longest id, in characters.
pub const ID_MAX: usize = 64;
/// A phone number's digits, fewest and most.
pub const PHONE_DIGITS_MIN: usize = 8;
pub const PHONE_DIGITS_MAX: usize = 16;

fn bounded_text(s: String, what: &str, max: usize) -> Result<String, Invalid> {
    // Counted before trimming: what the document's maxLength counts.
    if s.chars().count() > max {
        return Err(Invalid(format!("{what} must be at most {max} characters")));
    }
    let t = s.trim();
    if t.is_empty() {
        return Err(Invalid(format!("{what} must not be empty")));
    }
    if t.chars().count() > max {
        return Err(Invalid(format!("{what} must be at most {max} characters")));
    }
    if t.chars().any(char::is_control) {
        return Err(Invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(t.to_owned())
}

text_newtype!(
    /// A part's stock-keeping unit: 1–32 of `A-Z 0-9 - _ .`, upper-cased.
    Sku,
    |s| {
        let u = s.trim().to_ascii_uppercase();
        if s.chars().count() > SKU_RAW_MAX || u.is_empty() || u.len() > SKU_MAX || !u.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(Invalid(format!("{s:?} is not a SKU; expected 1-32 characters of A-Z, 0-9, '-', '_', '.'")));
        }
        Ok(u)
    }
);

/// A plate as the box stores and looks it up: upper case, the region letters, the digits and
/// the suffix letters split by single spaces however they were typed (`"b 1234  xyz"`,
/// `"B1234XYZ"` and `"B 1234 XYZ"` are one plate). Refused: more than [`PLATE_RAW_MAX`]
/// characters, or not 1–2 letters, 1–4 digits, 0–3 letters.
pub fn normalise_plate(s: &str) -> Result<String, Invalid> {
    if s.chars().count() > PLATE_RAW_MAX {
        return Err(Invalid(format!(
            "{s:?} is not a vehicle plate; expected at most {PLATE_RAW_MAX} characters, e.g. \"B 1234 XYZ\""
        )));
    }
    let compact: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let letters1 = compact
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    let rest = &compact[letters1..];
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    let tail = &rest[digits..];
    let ok = (1..=2).contains(&letters1)
        && (1..=4).contains(&digits)
        && tail.len() <= 3
        && tail.chars().all(|c| c.is_ascii_alphabetic());
    if !ok {
        return Err(Invalid(format!(
            "{s:?} is not a vehicle plate; expected e.g. \"B 1234 XYZ\""
        )));
    }
    let (region, number) = compact.split_at(letters1);
    let (number, suffix) = number.split_at(digits);
    Ok([region, number, suffix]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" "))
}

text_newtype!(
    /// An Indonesian vehicle registration plate (TNKB), normalised by [`normalise_plate`]:
    /// `B 1234 XYZ`. Region code 1–2 letters, 1–4 digits, 0–3 letters.
    Plate,
    |s| normalise_plate(&s)
);

text_newtype!(
    /// A person's or thing's display name, 1–120 characters.
    Name,
    |s| bounded_text(s, "name", NAME_MAX)
);

text_newtype!(
    /// A stock adjustment's note, 1–500 characters (`ADJUSTMENT_NOTE_MAX`).
    Note,
    |s| bounded_text(s, "note", sentra_protocol::workshop::ADJUSTMENT_NOTE_MAX)
);

text_newtype!(
    /// Free text written by staff (a complaint, a reason, a note), 1–2000 characters.
    Text,
    |s| bounded_text(s, "text", TEXT_MAX)
);

text_newtype!(
    /// An identifier we issued (a UUID) or master data's code: 1–64 of `A-Za-z0-9-_`.
    Id,
    |s| {
        if s.is_empty() || s.len() > ID_MAX || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            return Err(Invalid(format!("{s:?} is not an id; expected 1-64 characters of A-Z, a-z, 0-9, '-', '_'")));
        }
        Ok(s)
    }
);

text_newtype!(
    /// A SHA-256 digest in lower-case hex (64 characters).
    Digest,
    |s| {
        let l = s.to_ascii_lowercase();
        if l.len() != 64 || !l.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Invalid(format!("{s:?} is not a SHA-256 digest; expected 64 hex characters")));
        }
        Ok(l)
    }
);

text_newtype!(
    /// An Indonesian phone number: digits with an optional leading `+`, 8–16 digits.
    Phone,
    |s| {
        if s.chars().count() > PHONE_RAW_MAX {
            return Err(Invalid(format!("{s:?} is not a phone number; expected at most {PHONE_RAW_MAX} characters")));
        }
        let t: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let digits = t.strip_prefix('+').unwrap_or(&t);
        if !(PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid(format!("{s:?} is not a phone number; expected 8-16 digits, e.g. \"0812 3456 7890\"")));
        }
        Ok(t)
    }
);

/// Integer rupiah. Money never uses floating point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Rupiah(i64);

impl Rupiah {
    /// One billion rupiah: far above any single line a branch writes, far below overflow.
    pub const MAX_LINE: i64 = 1_000_000_000;

    pub fn new(v: i64) -> Result<Self, Invalid> {
        if v <= 0 || v > Self::MAX_LINE {
            return Err(Invalid(format!(
                "{v} is not a valid amount; expected whole rupiah from 1 to {}",
                Self::MAX_LINE
            )));
        }
        Ok(Self(v))
    }
    pub fn get(self) -> i64 {
        self.0
    }
}
impl TryFrom<i64> for Rupiah {
    type Error = Invalid;
    fn try_from(v: i64) -> Result<Self, Invalid> {
        Self::new(v)
    }
}
impl From<Rupiah> for i64 {
    fn from(v: Rupiah) -> i64 {
        v.0
    }
}

/// A positive quantity of a part, 1–10 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Qty(i64);

impl Qty {
    pub const MAX: i64 = 10_000;
    pub fn new(v: i64) -> Result<Self, Invalid> {
        if !(1..=Self::MAX).contains(&v) {
            return Err(Invalid(format!(
                "{v} is not a valid quantity; expected 1 to {}",
                Self::MAX
            )));
        }
        Ok(Self(v))
    }
    pub fn get(self) -> i64 {
        self.0
    }
}
/// A counted quantity on the shelf: 0 (nothing there) to `Qty::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Counted(i64);

impl Counted {
    pub fn new(v: i64) -> Result<Self, Invalid> {
        if !(0..=Qty::MAX).contains(&v) {
            return Err(Invalid(format!(
                "{v} is not a valid count; expected 0 to {}",
                Qty::MAX
            )));
        }
        Ok(Self(v))
    }
    pub fn get(self) -> i64 {
        self.0
    }
}
impl TryFrom<i64> for Counted {
    type Error = Invalid;
    fn try_from(v: i64) -> Result<Self, Invalid> {
        Self::new(v)
    }
}
impl From<Counted> for i64 {
    fn from(v: Counted) -> i64 {
        v.0
    }
}

impl TryFrom<i64> for Qty {
    type Error = Invalid;
    fn try_from(v: i64) -> Result<Self, Invalid> {
        Self::new(v)
    }
}
impl From<Qty> for i64 {
    fn from(v: Qty) -> i64 {
        v.0
    }
}

/// What a paired device is for; each role may do only its job (see `api::Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A mechanic's or inspector's tablet: work orders, inspections.
    Tablet,
    /// The cashier: invoices, payments, printing.
    Pos,
    /// The storekeeper terminal: stock receipts and dispensing parts.
    Storekeeper,
    /// The branch manager: everything, including revoking devices.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Tablet, Role::Pos, Role::Storekeeper, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Tablet => "tablet",
            Role::Pos => "pos",
            Role::Storekeeper => "storekeeper",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Invalid(format!(
                    "{s:?} is not a role; expected tablet, pos, storekeeper or admin"
                ))
            })
    }
}

impl std::str::FromStr for Role {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        Self::parse(s)
    }
}

/// How a payment was made (the protocol's, so the cloud checks the same methods).
pub use sentra_protocol::workshop::PaymentMethod;

/// The characters Rust's `str::trim` and `char::is_whitespace` take for white space (Unicode
/// White_Space), as a regex class body: patterns spell it out because a schema's `\s` is
/// ECMA-262's, which differs (it has U+FEFF, lacks U+0085).
pub const WHITE_SPACE: &str =
    r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Visible text as `bounded_text` takes it: no control characters, at least one character that
/// is not white space.
pub fn visible_text() -> String {
    let cc = r"\x00-\x1f\x7f-\x9f";
    format!("^[^{cc}]*[^{WHITE_SPACE}{cc}][^{cc}]*$")
}

/// The OpenAPI schemas of the newtypes, built from the same constants as their checks, so the
/// document cannot promise more or less than the parser accepts. Patterns describe the canonical
/// form; the parsers also trim surrounding spaces (and upper-case SKUs and plates).
mod schemas {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
    use utoipa::openapi::{KnownFormat, RefOr};

    use super::*;

    fn text(pattern: String, min: usize, max: usize, description: String) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .pattern(Some(pattern))
            .min_length(Some(min))
            .max_length(Some(max))
            .description(Some(description))
            .into()
    }

    fn integer(min: i64, max: i64, description: String) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Integer))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(min))
            .maximum(Some(max))
            .description(Some(description))
            .into()
    }

    macro_rules! schema {
        ($t:ty, $body:expr) => {
            impl utoipa::PartialSchema for $t {
                fn schema() -> RefOr<Schema> {
                    $body
                }
            }
            impl utoipa::ToSchema for $t {}
        };
    }

    schema!(
        Sku,
        text(
            format!("^[ \t\n\r]*[A-Za-z0-9._-]{{1,{SKU_MAX}}}[ \t\n\r]*$"),
            1,
            SKU_RAW_MAX,
            format!("A part's SKU: 1-{SKU_MAX} of A-Z, 0-9, '-', '_', '.' (stored upper-cased)")
        )
    );
    schema!(
        Plate,
        text(
            r"^[ \t\n\r]*[A-Za-z][ \t\n\r]*([A-Za-z][ \t\n\r]*)?[0-9][ \t\n\r]*([0-9][ \t\n\r]*){0,3}([A-Za-z][ \t\n\r]*){0,3}$".to_owned(),
            2,
            PLATE_RAW_MAX,
            "A vehicle plate (TNKB): 1-2 letters, 1-4 digits, 0-3 letters, e.g. \"B 1234 XYZ\"".to_owned()
        )
    );
    schema!(
        Name,
        text(
            visible_text(),
            1,
            NAME_MAX,
            format!("A display name: 1-{NAME_MAX} characters, not blank, no control characters")
        )
    );
    schema!(
        Text,
        text(
            visible_text(),
            1,
            TEXT_MAX,
            format!("Free text: 1-{TEXT_MAX} characters, not blank, no control characters")
        )
    );
    schema!(
        Note,
        text(
            visible_text(),
            1,
            sentra_protocol::workshop::ADJUSTMENT_NOTE_MAX,
            format!(
                "A note: 1-{} characters, not blank, no control characters",
                sentra_protocol::workshop::ADJUSTMENT_NOTE_MAX
            )
        )
    );
    schema!(
        Id,
        text(
            format!("^[A-Za-z0-9_-]{{1,{ID_MAX}}}$"),
            1,
            ID_MAX,
            format!("An id: 1-{ID_MAX} of A-Z, a-z, 0-9, '-', '_'")
        )
    );
    schema!(
        Digest,
        text(
            "^[0-9A-Fa-f]{64}$".to_owned(),
            64,
            64,
            "A SHA-256 digest: 64 hex characters (stored lower-case)".to_owned()
        )
    );
    schema!(
        Phone,
        text(
            format!(r"^[ -]*(\+[ -]*)?([0-9][ -]*){{{PHONE_DIGITS_MIN},{PHONE_DIGITS_MAX}}}$"),
            PHONE_DIGITS_MIN,
            PHONE_RAW_MAX,
            format!(
                "A phone number: {PHONE_DIGITS_MIN}-{PHONE_DIGITS_MAX} digits, optional leading '+', spaces and dashes ignored"
            )
        )
    );
    schema!(
        Rupiah,
        integer(
            1,
            Rupiah::MAX_LINE,
            format!("Whole rupiah, 1 to {}", Rupiah::MAX_LINE)
        )
    );
    schema!(
        Qty,
        integer(1, Qty::MAX, format!("A quantity, 1 to {}", Qty::MAX))
    );
    schema!(
        Counted,
        integer(
            0,
            Qty::MAX,
            format!("A counted quantity, 0 to {}", Qty::MAX)
        )
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates() {
        let cases = [
            ("B 1234 XYZ", Some("B 1234 XYZ")),
            ("b1234xyz", Some("B 1234 XYZ")),
            ("  AB  12   C ", Some("AB 12 C")),
            ("DK 1", Some("DK 1")),
            ("1234", None),
            ("ABC 1234", None),
            ("B 12345 X", None),
            ("B 1234 WXYZ", None),
            ("B-1234", None),
            ("b 1234  xyz", Some("B 1234 XYZ")),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                Plate::parse(input).ok().as_ref().map(Plate::as_str),
                want,
                "{input:?}"
            );
        }
    }

    mod plate_props {
        use super::super::normalise_plate;
        use proptest::prelude::*;

        /// Scatters spaces through a plate and changes the case of its letters.
        fn retyped(plate: &str, spaces: &[u8], lower: &[bool]) -> String {
            let mut out = String::new();
            for (i, c) in plate.chars().filter(|c| *c != ' ').enumerate() {
                out.push_str(&" ".repeat(usize::from(spaces.get(i).copied().unwrap_or(0) % 3)));
                out.push(if lower.get(i).copied().unwrap_or(false) {
                    c.to_ascii_lowercase()
                } else {
                    c
                });
            }
            out
        }

        proptest! {
            #[test]
            fn one_plate_however_typed(
                region in "[A-Z]{1,2}",
                number in "[0-9]{1,4}",
                suffix in "[A-Z]{0,3}",
                spaces in proptest::collection::vec(any::<u8>(), 9),
                lower in proptest::collection::vec(any::<bool>(), 9),
            ) {
                let canonical = [region.as_str(), number.as_str(), suffix.as_str()]
                    .iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(" ");
                let typed = retyped(&canonical, &spaces, &lower);
                prop_assert_eq!(normalise_plate(&typed), Ok(canonical.clone()));
                prop_assert_eq!(normalise_plate(&canonical), Ok(canonical));
            }

            #[test]
            fn idempotent_and_canonical(s in "\\PC{0,40}") {
                if let Ok(n) = normalise_plate(&s) {
                    prop_assert_eq!(normalise_plate(&n), Ok(n.clone()));
                    prop_assert!(!n.contains("  ") && n.trim() == n);
                    prop_assert!(n.chars().all(|c| c == ' ' || c.is_ascii_uppercase() || c.is_ascii_digit()));
                }
            }
        }
    }

    #[test]
    fn skus_and_ids() {
        assert_eq!(
            Sku::parse(" oil-10w40 ").map(|s| s.0),
            Ok("OIL-10W40".into())
        );
        for bad in ["", "has space", "ü", &"X".repeat(33)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Id::parse("0190f0a4-8c1e-7cc0-8000-000000000000").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(Id::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn amounts_and_quantities() {
        assert!(Rupiah::new(0).is_err());
        assert!(Rupiah::new(-5).is_err());
        assert!(Rupiah::new(Rupiah::MAX_LINE + 1).is_err());
        assert_eq!(Rupiah::new(15_000).map(Rupiah::get), Ok(15_000));
        assert!(Qty::new(0).is_err());
        assert!(Qty::new(Qty::MAX + 1).is_err());
    }

    #[test]
    fn text_and_phone() {
        assert!(Name::parse("   ").is_err());
        assert!(Name::parse("a\u{7}b").is_err());
        assert_eq!(Name::parse(" Budi ").map(|n| n.0), Ok("Budi".into()));
        assert_eq!(
            Phone::parse("0812-3456 7890").map(|p| p.0),
            Ok("081234567890".into())
        );
        assert!(Phone::parse("12ab").is_err());
        assert!(Digest::parse("AB".repeat(32)).is_ok());
        assert!(Digest::parse("zz".repeat(32)).is_err());
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        assert!(Role::parse("root").is_err());
    }
}
