//! What `sentra-edge enroll` enrols with: the token (from `--token`, or asked for at the prompt,
//! where a technician types it or a keyboard-mode scanner types the sheet's QR) and the cloud's
//! URL (`--cloud`, or the one the QR carries). A technician at a terminal who typed the token is
//! also asked whether the box replaces a dead one (`--replaces`), so a replacement needs no flag.
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
    /// The dead box this one succeeds (`--replaces`, or answered at the prompt), in the cloud's
    /// spelling of a device id.
    pub replaces: Option<String>,
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
/// else the URL the scanned QR carried. The dead box replaced: `--replaces` (already read by
/// [`parse_replaces`]) if given; else, when the token was typed at a terminal, the next question.
/// `Err` is the message for the technician (exit 2).
pub fn resolve<R: BufRead, W: Write>(
    cloud_flag: Option<&str>,
    token_flag: Option<&str>,
    replaces_flag: Option<String>,
    prompt: Prompt<'_, R, W>,
) -> Result<Entered, String> {
    let (scanned, replaces) = match token_flag {
        Some(raw) => (
            enrol_token::parse_scanned(raw).map_err(|e| format!("--token: {e}"))?,
            replaces_flag,
        ),
        None => {
            let Prompt {
                input,
                output,
                interactive,
            } = prompt;
            let scanned = ask(
                cloud_flag,
                Prompt {
                    input: &mut *input,
                    output: &mut *output,
                    interactive,
                },
            )?;
            let replaces = match replaces_flag {
                Some(id) => Some(id),
                None if interactive => ask_replaces(input, output)?,
                None => None,
            };
            (scanned, replaces)
        }
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
        replaces,
    })
}

/// Asks a technician at a terminal whether this box replaces a dead one: an empty line is a new
/// box, a device id a replacement; [`TRIES`] tries at something else. The end of input is no
/// answer (`Err`): nothing has been sent, and guessing "a new box" would start the branch's work
/// over on a box meant to carry it on.
fn ask_replaces<R: BufRead, W: Write>(
    input: &mut R,
    output: &mut W,
) -> Result<Option<String>, String> {
    let mut last = String::new();
    for attempt in 1..=TRIES {
        let question = if attempt == 1 {
            "Does this box replace a dead box of the branch? Type the dead box's device id (the fleet page shows it), or press Enter for a new box: ".to_owned()
        } else {
            format!("Try {attempt} of {TRIES}. Dead box's device id, or Enter for a new box: ")
        };
        let _ = write!(output, "{question}").and_then(|()| output.flush());
        let line = match read_line(input)? {
            Some(line) => line,
            None => {
                return Err(
                    "enrolment stopped before saying whether this box replaces another; nothing was sent: run `sentra-edge enroll` again"
                        .to_owned(),
                );
            }
        };
        if line.trim().is_empty() {
            return Ok(None);
        }
        match device_id(&line) {
            Ok(id) => return Ok(Some(id)),
            Err(error) => {
                last = error;
                if attempt < TRIES {
                    let _ = writeln!(output, "{last}");
                }
            }
        }
    }
    Err(format!(
        "{last} ({TRIES} tries; run `sentra-edge enroll` again to start over)"
    ))
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
    device_id(raw).map_err(|e| format!("--replaces {e}"))
}

/// A device id as typed, in the cloud's spelling; `Err` says what was typed and what is expected.
fn device_id(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    uuid::Uuid::parse_str(trimmed)
        .ok()
        .filter(|_| trimmed.len() == 36)
        .map(|id| id.hyphenated().to_string())
        .ok_or_else(|| {
            format!(
                "{:?}: expected the dead box's device id, 36 characters like 0190f5c2-1a2b-7c3d-8e4f-5a6b7c8d9e0f (`sentra-cloud devices list` or the fleet page shows it)",
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
            None,
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
            &format!("{typo}\nnot-a-token\n{good}\n\n"),
            true,
        );
        let entered = result.expect("the third try is right");
        assert_eq!(entered.token, token());
        assert_eq!(entered.replaces, None, "Enter: a new box");
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
    fn a_terminal_is_asked_whether_the_box_replaces_a_dead_one() {
        let good = token().grouped();
        let id = "0190f5c2-1a2b-7c3d-8e4f-5a6b7c8d9e0f";
        let (result, shown) = run(
            Some("https://c"),
            None,
            &format!("{good}\nJKT01\n {}\n", id.to_uppercase()),
            true,
        );
        assert_eq!(result.expect("second try").replaces.as_deref(), Some(id));
        assert!(shown.contains("replace a dead box"), "{shown}");
        assert!(
            shown.contains("\"JKT01\": expected the dead box's device id"),
            "{shown}"
        );
        assert!(shown.contains("Try 2 of 3"), "{shown}");

        let (result, _) = run(Some("https://c"), None, &format!("{good}\n"), true);
        assert!(
            result
                .expect_err("no answer at the end of input")
                .contains("nothing was sent")
        );
        let (result, _) = run(Some("https://c"), None, &format!("{good}\na\nb\nc\n"), true);
        assert!(result.expect_err("three wrong ids").contains("3 tries"));

        // A pipe and `--token` are never asked; `--replaces` is not asked again.
        let (result, shown) = run(Some("https://c"), None, &format!("{good}\n"), false);
        assert_eq!(result.expect("pipe").replaces, None);
        assert!(shown.is_empty(), "{shown}");
        let mut input = std::io::Cursor::new(format!("{good}\n").into_bytes());
        let mut output = Vec::new();
        let entered = resolve(
            Some("https://c"),
            None,
            Some(id.to_owned()),
            Prompt {
                input: &mut input,
                output: &mut output,
                interactive: true,
            },
        )
        .expect("flag given");
        assert_eq!(entered.replaces.as_deref(), Some(id));
        assert!(!String::from_utf8_lossy(&output).contains("replace a dead box"));
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
