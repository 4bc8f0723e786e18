//! Property tests of the enrolment token (`sentra_protocol::enrol_token`): every token made
//! reads back, and its check character catches every single wrong character and every swap of
//! two neighbours, at every position, before the network is used.

use proptest::prelude::*;
use sentra_protocol::enrol_token::{
    ALPHABET, EnrolToken, RANDOM_BYTES, Scanned, TOKEN_CHARS, TokenError, parse_scanned, qr_content,
};

fn any_token() -> impl Strategy<Value = EnrolToken> {
    any::<[u8; RANDOM_BYTES]>().prop_map(EnrolToken::from_random)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tokens_read_back_in_every_written_form(token in any_token()) {
        let grouped = token.grouped();
        prop_assert_eq!(grouped.len(), TOKEN_CHARS + 4);
        prop_assert!(token.canonical().bytes().all(|b| ALPHABET.contains(&b)));
        prop_assert_eq!(EnrolToken::parse(&grouped), Ok(token.clone()));
        prop_assert_eq!(EnrolToken::parse(token.canonical()), Ok(token.clone()));
        prop_assert_eq!(EnrolToken::parse(&grouped.to_lowercase()), Ok(token.clone()));
        prop_assert_eq!(EnrolToken::parse(&grouped.replace('-', " ")), Ok(token.clone()));
        let read_sloppily = grouped.replace('1', "I").replace('0', "o");
        prop_assert_eq!(EnrolToken::parse(&read_sloppily), Ok(token.clone()));
    }

    /// Every position, every other character of the alphabet: a typo.
    #[test]
    fn every_single_substitution_is_caught(token in any_token()) {
        let canonical: Vec<u8> = token.canonical().bytes().collect();
        for position in 0..TOKEN_CHARS {
            for &other in ALPHABET.iter().filter(|&&c| c != canonical[position]) {
                let mut typed = canonical.clone();
                typed[position] = other;
                let typed = String::from_utf8(typed).expect("ASCII");
                prop_assert_eq!(EnrolToken::parse(&typed), Err(TokenError::Typo), "{} at {}", typed, position);
            }
        }
    }

    /// Every pair of neighbours, the check character included: a swap is a typo unless the two
    /// are the same character.
    #[test]
    fn every_adjacent_transposition_is_caught(token in any_token()) {
        let canonical: Vec<u8> = token.canonical().bytes().collect();
        for position in 0..TOKEN_CHARS - 1 {
            if canonical[position] == canonical[position + 1] {
                continue;
            }
            let mut typed = canonical.clone();
            typed.swap(position, position + 1);
            let typed = String::from_utf8(typed).expect("ASCII");
            prop_assert_eq!(EnrolToken::parse(&typed), Err(TokenError::Typo), "{} at {}", typed, position);
        }
    }

    /// A character left out or typed twice is a wrong length, never taken for a token.
    #[test]
    fn a_missing_or_extra_character_is_a_wrong_length(token in any_token(), position in 0..TOKEN_CHARS) {
        let canonical = token.canonical();
        let missing = format!("{}{}", &canonical[..position], &canonical[position + 1..]);
        prop_assert_eq!(EnrolToken::parse(&missing), Err(TokenError::WrongLength { found: TOKEN_CHARS - 1 }));
        let doubled = format!("{}{}", &canonical[..=position], &canonical[position..]);
        prop_assert_eq!(EnrolToken::parse(&doubled), Err(TokenError::WrongLength { found: TOKEN_CHARS + 1 }));
    }

    /// Whatever a keyboard or a scanner types: an answer, never a panic; and what parses is a
    /// token whose canonical form parses to itself.
    #[test]
    fn any_line_is_answered(line in "\\PC{0,600}") {
        if let Ok(scanned) = parse_scanned(&line) {
            prop_assert_eq!(EnrolToken::parse(scanned.token.canonical()), Ok(scanned.token.clone()));
        }
        let _ = EnrolToken::parse(&line);
    }

    #[test]
    fn token_shaped_lines_are_answered(line in "(sentra://enrol\\?)?[0-9A-Za-z%&=:/ -]{0,40}") {
        let _ = parse_scanned(&line);
    }

    #[test]
    fn the_qr_content_scans_back(token in any_token(), host in "[a-z][a-z0-9.-]{0,30}", port in proptest::option::of(1_u16..)) {
        let url = match port {
            Some(port) => format!("https://{host}:{port}"),
            None => format!("https://{host}"),
        };
        prop_assert_eq!(parse_scanned(&qr_content(&token, Some(&url))), Ok(Scanned { token: token.clone(), cloud: Some(url) }));
        prop_assert_eq!(parse_scanned(&qr_content(&token, None)), Ok(Scanned { token, cloud: None }));
    }
}
