//! The README's walkthrough, run as printed against a real `sentra-edge demo`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::harness::{BIN, signal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_works_against_the_demo() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let block = readme
        .split("<!-- walkthrough:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- walkthrough:end -->").next())
        .and_then(|b| b.split("```sh").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("a ```sh block between the walkthrough markers");

    let mut demo = Command::new(BIN)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("demo");
    let mut lines = BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let mut exports = String::new();
    let mut dir = None;
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if let Some(d) = line.trim().strip_prefix("data (deleted on exit): ") {
                dir = Some(std::path::PathBuf::from(d));
            }
            if line.starts_with("export ") {
                exports.push_str(&line);
                exports.push('\n');
            }
            if line.starts_with("sentra-edge: api listening on ") {
                return;
            }
        }
        panic!("demo exited before listening");
    })
    .await
    .expect("demo started");
    assert!(
        exports.contains("export API=https://")
            && exports.contains("export PIN=sha256//")
            && exports.contains("export TABLET_CODE="),
        "{exports}"
    );
    // The walkthrough goes over HTTPS with the pinned key, never plain HTTP.
    assert!(
        !block.contains("http://") && block.contains("--pinnedpubkey \"$PIN\""),
        "{block}"
    );
    // A wrong pin is refused before anything is sent: the walkthrough's pin is what keeps it safe.
    let wrong = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{exports}curl -sfk --pinnedpubkey sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \"$API/healthz\""
        ))
        .output()
        .await
        .expect("bash");
    assert_eq!(
        wrong.status.code(),
        Some(90),
        "curl's exit code for a public key that does not match its pin"
    );

    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(format!("{exports}{block}"))
        .output()
        .await
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the README walkthrough failed:\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        r#""status":"IN_PROGRESS""#,
        r#""on_hand":19"#,
        r#""code":"insufficient_stock""#,
        r#""subtotal":425000,"tax":46750,"total":471750,"status":"PAID""#,
        r#""valid":true"#,
        r#"{"plate":"B 1234 XYZ","visits":[{"status":"INVOICED","paid":"PAID"}]}"#,
        r#""pending_events":14"#,
        r#"{"size":4,"state":"stored"}"#,
        r#""photos":1"#,
        r#"{"sku":"AVANZA-2024","daily_rate":350000,"deposit":1000000,"late_fee_per_day":100000}"#,
        r#""status":"OUT","deposit_held":1000000,"printed":["rental_agreement","rental_delivery_note"]"#,
        r#""subtotal":800000,"tax":88000,"total":888000,"status":"PAID""#,
        r#""settlement":{"deposit_applied":888000,"paid_by_customer":0,"refunded":112000}"#,
        r#"{"state":"COMPLETED"}"#,
        r#"{"differing":1,"lines":[{"sku":"BRK-PAD-FR","expected":19,"counted":18,"difference":-1},{"sku":"OIL-10W40-1L","expected":20,"counted":20,"difference":0}]}"#,
        r#"{"status":"APPLIED"}"#,
        r#"{"sku":"BRK-PAD-FR","counted_on_hand":18}"#,
        r#"{"status":"CLOSED","expected_cash":500000,"counted_cash":495000,"difference":-5000}"#,
        r#"{"status":"CLOSED","totals":{"cash":-112000,"edc":1000000,"qris":471750},"difference":-5000}"#,
        r#""day_closed""#,
        r#"{"status":"REOPENED"}"#,
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} missing from the walkthrough's output:\n{stdout}"
        );
    }

    // Ctrl-C ends the demo cleanly and removes its directory.
    let dir = dir.expect("the demo names its data directory");
    assert!(dir.exists());
    signal(demo.id().expect("running"), "INT");
    let status = tokio::time::timeout(Duration::from_secs(30), demo.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
