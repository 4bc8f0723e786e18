//! What the cloud's benches share to start replicas: `sentra-cloud serve` on a port of its own
//! over the bench's database and the machine's (or `SENTRA_TEST_REDIS_URL`'s) Redis.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_sentra-cloud");

pub fn redis_url() -> String {
    std::env::var("SENTRA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Starts `serve` (logging at `rust_log`) and waits for its `listening on ADDR` line; the child
/// (killed on drop) and its base URL.
pub async fn serve(database_url: &str, rust_log: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url())
        .env("SENTRA_CLOUD__HTTP__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("read the address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("serve printed {line:?}"))
        .to_owned();
    (child, format!("http://{addr}"))
}
