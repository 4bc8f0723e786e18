//! What `sentra-edge enroll` enrols with: the token (from `--token`, or asked for at the prompt,
//! where a technician types it or a keyboard-mode scanner types the sheet's QR) and the cloud's
//! URL (`--cloud`, or the one the QR carries).
//!
//! Every token is read by `sentra_protocol::enrol_token`, the cloud's own reading, so a typo
//! is refused here, with what to do, before the network is used. On a terminal the prompt asks
//! up to [`TRIES`] times with the error in between; from a pipe it reads one line and a bad one
//! is the answer. Nothing here does more I/O than the reader and writer it is given.

use std::io::{BufRead, Read, Write};

use sentra_protocol::enrol_token::{self, EnrolToken, MAX_INPUT_CHARS};

/// Times a technician at a terminal may try before `enroll` gives up.
pub const TRIES: usize = 3;

/// Longest line read from the prompt: more than any token or enrolment URI (their parser looks
/// at [`MAX_INPUT_CHARS`]), bounded so a pipe cannot make the box buffer without end.
const MAX_LINE_BYTES: usize = 4 * MAX_INPUT_CHARS;

/// The token and the cloud to enrol with, both checked as far as the box can without the network.
#[derive(Debug)]
pub struct Entered {
    pub token: EnrolToken,
    pub cloud: String,
}

/// Where the token comes from when `--token` is left out.
pub struct Prompt<'a, R, W> {
    pub input: &'a mut R,
    /// Where the question and the errors between tries go (stderr: stdout is the result's).
    pub output: &'a mut W,
    /// Whether a person is at a terminal: [`TRIES`] tries, else one line.
    pub interactive: bool,
}

/// Resolves the token and the cloud: `--token` if given, else the prompt; `--cloud` if given,
/// else the URL the scanned QR carried. `Err` is the message for the technician (exit 2).
pub fn resolve<R: BufRead, W: Write>(
    cloud_flag: Option<&str>,
    token_flag: Option<&str>,
    prompt: Prompt<'_, R, W>,
) -> Result<Entered, String> {
    let scanned = match token_flag {
        Some(raw) => enrol_token::parse_scanned(raw).map_err(|e| format!("--token: {e}"))?,
        None => ask(cloud_flag, prompt)?,
    };
    let cloud = match (cloud_flag, scanned.cloud) {
        (Some(flag), Some(scanned)) if !same_url(flag, &scanned) => {
            return Err(format!(
                "the enrolment code is for the cloud at {scanned}, but --cloud says {flag}: check which is right for this branch (leave --cloud out to use the code's)"
            ));
        }
        (Some(flag), _) => flag.trim().to_owned(),
        (None, Some(scanned)) => scanned,
        (None, None) => {
            return Err(
                "the token alone does not say which cloud to enrol with: run again with --cloud URL (the enrolment sheet names it)"
                    .to_owned(),
            );
        }
    };
    Ok(Entered {
        token: scanned.token,
        cloud,
    })
}

fn ask<R: BufRead, W: Write>(
    cloud_flag: Option<&str>,
    prompt: Prompt<'_, R, W>,
) -> Result<enrol_token::Scanned, String> {
    let Prompt {
        input,
        output,
        interactive,
    } = prompt;
    let tries = if interactive { TRIES } else { 1 };
    let mut last = String::new();
    for attempt in 1..=tries {
        if interactive {
            let question = match (attempt, cloud_flag) {
                (1, Some(cloud)) => format!(
                    "Enrolling with {cloud}. Scan the QR code on the enrolment sheet, or type the token: "
                ),
                (1, None) => {
                    "Scan the QR code on the enrolment sheet, or type the token: ".to_owned()
                }
                (n, _) => format!("Try {n} of {tries}. Token: "),
            };
            // The question is a courtesy: a terminal that cannot show it can still be typed at.
            let _ = write!(output, "{question}").and_then(|()| output.flush());
        }
        let parsed = match read_line(input) {
            Ok(Some(line)) => enrol_token::parse_scanned(&line).map_err(|e| e.to_string()),
            Ok(None) => {
                return Err(if last.is_empty() {
                    enrol_token::TokenError::Empty.to_string()
                } else {
                    last
                });
            }
            Err(why) => Err(why),
        };
        match parsed {
            Ok(scanned) => return Ok(scanned),
            Err(error) => {
                last = error;
                if interactive && attempt < tries {
                    let _ = writeln!(output, "{last}");
                }
            }
        }
    }
    Err(if interactive {
        format!("{last} ({tries} tries; run `sentra-edge enroll` again to start over)")
    } else {
        last
    })
}

/// One line of at most [`MAX_LINE_BYTES`], without its end; `None` at the end of input. A line
/// too long is read to its end and answered as text the parser refuses.
fn read_line<R: BufRead>(input: &mut R) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    // Spelled out: on a generic `R`, `.take` would pick `R`'s own (by value) over `&mut R`'s.
    let read = <&mut R as Read>::take(&mut *input, MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the token: {e}"))?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
        // Drop the rest of the overlong line, so the next try starts on a line of its own.
        loop {
            let mut rest = Vec::new();
            let n = <&mut R as Read>::take(&mut *input, MAX_LINE_BYTES as u64)
                .read_until(b'\n', &mut rest)
                .map_err(|e| format!("cannot read the token: {e}"))?;
            if n == 0 || rest.last() == Some(&b'\n') {
                break;
            }
        }
        return Ok(Some("x".repeat(MAX_INPUT_CHARS + 1)));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| "what was typed is not text: type the token from the sheet".to_owned())
}

/// The same cloud, however the sheet and the technician wrote it.
fn same_url(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
    norm(a) == norm(b)
}

/// `--replaces`: the device id (a UUID, as `sentra-cloud devices list` and the fleet page show
/// it) of the dead box this one succeeds, in the cloud's spelling. `Err` is the message for the
/// technician (exit 2), before the network is used.
pub fn parse_replaces(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    uuid::Uuid::parse_str(trimmed)
        .ok()
        .filter(|_| trimmed.len() == 36)
        .map(|id| id.hyphenated().to_string())
        .ok_or_else(|| {
            format!(
                "--replaces {:?}: expected the dead box's device id, 36 characters like 0190f5c2-1a2b-7c3d-8e4f-5a6b7c8d9e0f (`sentra-cloud devices list` or the fleet page shows it)",
                trimmed.chars().take(60).collect::<String>()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> EnrolToken {
        EnrolToken::from_random([9; enrol_token::RANDOM_BYTES])
    }

    fn run(
        cloud: Option<&str>,
        flag: Option<&str>,
        typed: &str,
        interactive: bool,
    ) -> (Result<Entered, String>, String) {
        let mut input = std::io::Cursor::new(typed.as_bytes().to_vec());
        let mut output = Vec::new();
        let result = resolve(
            cloud,
            flag,
            Prompt {
                input: &mut input,
                output: &mut output,
                interactive,
            },
        );
        (result, String::from_utf8_lossy(&output).into_owned())
    }

    #[test]
    fn a_terminal_gets_three_tries_with_the_error_in_between() {
        let good = token().grouped();
        let other = if good.starts_with('7') { '8' } else { '7' };
        let typo = format!("{other}{}", &good[1..]);
        let (result, shown) = run(
            Some("https://cloud.example"),
            None,
            &format!("{typo}\nnot-a-token\n{good}\n"),
            true,
        );
        let entered = result.expect("the third try is right");
        assert_eq!(entered.token, token());
        assert_eq!(entered.cloud, "https://cloud.example");
        assert!(
            shown.contains("Enrolling with https://cloud.example"),
            "{shown}"
        );
        assert!(shown.contains("the token has a typo"), "{shown}");
        assert!(shown.contains("Try 3 of 3"), "{shown}");

        let (result, _) = run(Some("https://c"), None, "a\nb\nc\nnever read\n", true);
        let message = result.expect_err("three wrong tries");
        assert!(message.contains("3 tries"), "{message}");
    }

    #[test]
    fn a_pipe_gets_one_line_and_no_question() {
        let (result, shown) = run(Some("https://c"), None, "7KQ2\n", false);
        assert!(result.expect_err("one bad line").contains("17"));
        assert!(shown.is_empty(), "{shown}");
        let (result, _) = run(Some("https://c"), None, "", false);
        assert!(result.expect_err("nothing").starts_with("no token given"));
        let (result, _) = run(Some("https://c"), None, &"7".repeat(10_000), false);
        assert!(
            result
                .expect_err("too long")
                .contains("not an enrolment token")
        );
    }

    #[test]
    fn the_scanned_uri_gives_the_cloud() {
        let uri = enrol_token::qr_content(&token(), Some("https://cloud.example"));
        let (result, _) = run(None, None, &format!("{uri}\r\n"), false);
        let entered = result.expect("scanned");
        assert_eq!(entered.cloud, "https://cloud.example");
        let (result, _) = run(Some("HTTPS://cloud.example/"), None, &uri, false);
        assert!(result.is_ok(), "the same cloud, written otherwise");
        let (result, _) = run(Some("https://other.example"), None, &uri, false);
        assert!(result.expect_err("mismatch").contains("--cloud says"));
        let (result, _) = run(None, Some(&token().grouped()), "", false);
        assert!(result.expect_err("no cloud").contains("--cloud URL"));
        let (result, _) = run(None, Some(&uri), "", false);
        assert!(result.is_ok(), "--token takes the URI too");
    }

    #[test]
    fn replaces_is_a_device_id() {
        let id = "0190F5C2-1A2B-7C3D-8E4F-5A6B7C8D9E0F";
        assert_eq!(
            parse_replaces(&format!("  {id}\n")).as_deref(),
            Ok("0190f5c2-1a2b-7c3d-8e4f-5a6b7c8d9e0f")
        );
        for bad in [
            "",
            "JKT01",
            "0190f5c21a2b7c3d8e4f5a6b7c8d9e0f",
            "{0190f5c2-1a2b-7c3d-8e4f-5a6b7c8d9e0f}",
            "0190f5c2-1a2b-7c3d-8e4f-5a6b7c8d9e0",
        ] {
            let e = parse_replaces(bad).expect_err(bad);
            assert!(
                e.contains("--replaces") && e.contains("devices list"),
                "{e}"
            );
        }
    }
}
