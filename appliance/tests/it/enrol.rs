//! `sentra-edge enroll` before the network: the token is read the cloud's way at the box, so a
//! mistyped one is refused with what to do (exit 2) and nothing is sent. `--cloud` points at a
//! TCP listener the test owns; after the command exited, a connection it had made would wait in
//! the listener's queue, so an empty queue proves it made none.

use std::io::{ErrorKind, Write as _};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use sentra_protocol::enrol_token::{EnrolToken, RANDOM_BYTES, qr_content};

use crate::harness::{BIN, Site};

/// A listener nobody else knows of, and the cloud URL naming it.
fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

fn assert_never_connected(listener: &TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("the box connected to the cloud (from {peer})"),
        Err(e) => panic!("accept: {e}"),
    }
}

/// `enroll ARGS` on `site` with `stdin` as its standard input (a pipe: not a terminal).
fn enroll(site: &Site, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .arg("enroll")
        .args(args)
        .arg("--config")
        .arg(&site.config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sentra-edge enroll");
    let mut input = child.stdin.take().expect("stdin");
    // The box may exit before reading (a bad --token): a closed pipe is no failure here.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn a_token() -> EnrolToken {
    EnrolToken::from_random([0x5a; RANDOM_BYTES])
}

/// The token with its `n`th character changed (to another character of the alphabet).
fn with_typo(token: &EnrolToken, n: usize) -> String {
    let mut chars: Vec<char> = token.canonical().chars().collect();
    chars[n] = if chars[n] == 'X' { 'Y' } else { 'X' };
    chars.into_iter().collect()
}

#[test]
fn a_mistyped_token_is_refused_before_the_network_is_used() {
    let site = Site::new();
    let (cloud, url) = listener();
    let token = a_token();

    // On the command line: one wrong character, two swapped, a U, one missing.
    let mut swapped: Vec<char> = token.canonical().chars().collect();
    let at = (0..swapped.len() - 1)
        .find(|&i| swapped[i] != swapped[i + 1])
        .expect("two different neighbours");
    swapped.swap(at, at + 1);
    let swapped: String = swapped.into_iter().collect();
    let missing = &token.canonical()[1..];
    for (typed, says) in [
        (
            with_typo(&token, 5),
            "the token has a typo: check it against the sheet",
        ),
        (swapped, "the token has a typo"),
        (
            format!("U{missing}"),
            "'U' (character 1) cannot be in an enrolment token",
        ),
        (
            missing.to_owned(),
            "the token has 16 characters, an enrolment token has 17",
        ),
    ] {
        let (code, out, err) = enroll(&site, &["--cloud", &url, "--token", &typed], "");
        assert_eq!(code, 2, "{typed}: {out}{err}");
        assert!(err.contains(says), "{typed}: {err}");
        assert_never_connected(&cloud);
    }

    // At the prompt (stdin is a pipe: one line), typed or scanned.
    let (code, _, err) = enroll(
        &site,
        &["--cloud", &url],
        &format!("{}\n", with_typo(&token, 16)),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the token has a typo"), "{err}");
    let scanned = qr_content(&token, Some(&url)).replace(&token.grouped(), &with_typo(&token, 0));
    let (code, _, err) = enroll(&site, &[], &format!("{scanned}\n"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the token has a typo"), "{err}");
    // Nothing typed at all.
    let (code, _, err) = enroll(&site, &["--cloud", &url], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no token given"), "{err}");
    assert_never_connected(&cloud);

    let (_, status, _) = site.cli(&["status"]);
    assert!(status.contains("not enrolled"), "{status}");
}

/// The control: a right token read from the prompt does go to the cloud `--cloud` names (here a
/// listener that takes the connection and hangs up, so the enrolment fails after the network).
#[test]
fn a_right_token_at_the_prompt_goes_to_the_cloud() {
    let site = Site::new();
    let (cloud, url) = listener();
    cloud.set_nonblocking(false).expect("blocking");
    let hang_up = std::thread::spawn(move || {
        let (connection, _) = cloud.accept().expect("the box connects");
        drop(connection);
    });
    let typed = a_token().grouped().to_lowercase();
    let (code, out, err) = enroll(
        &site,
        &["--cloud", &url, "--attempts", "1"],
        &format!("{typed}\n"),
    );
    hang_up.join().expect("the listener took one connection");
    assert_eq!(code, 1, "the cloud hung up: {out}{err}");
    assert!(err.contains("the token is still valid"), "{err}");
}
