//! A stand-in for a newer release that migrates the store and then fails its health window, for
//! the life-cycle test (tests/it/life.rs) to publish through the cloud and the box's updater to
//! install inside the booted image.
//!
//! sentra-edge.service starts it as `sentra-edge run --config FILE`, with the store key as its
//! credential. It applies what a newer build's additive migration applies (a new table, the
//! schema version one up, `meta.min_reader_version` untouched: what `store::schema` writes for a
//! migration older builds can read), says so on stderr (the journal), and then execs, with the
//! same arguments, the newest release that passed its health check here (`<install_root>/good`).
//! That process serves and acknowledges writes on the migrated store, but answers `/readyz` with
//! its own version, never with this release's: the updater rolls this release back when its
//! health window ends, as it would a real release that never became healthy.
//!
//! Only the tests build it; it ships in no image.

use std::convert::Infallible;
use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use sentra_edge::config::Config;
use sentra_edge::store::StoreKey;

/// The table the "newer release" adds; its one row names this stand-in.
const TABLE: &str = "future_release_feature";

fn main() -> ExitCode {
    match run() {
        // `run` only returns when the exec failed.
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("sentra-future-release: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<Infallible, String> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let config_path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| PathBuf::from(&w[1]));
    let config = Config::load(config_path.as_deref()).map_err(|e| e.to_string())?;
    let (_, key_path) = StoreKey::load(&config.store.key_file).map_err(|e| e.to_string())?;
    let key =
        std::fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let conn = rusqlite::Connection::open(config.db_path()).map_err(|e| e.to_string())?;
    conn.pragma_update(None, "key", format!("x'{}'", key.trim()))
        .map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    let before: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| format!("read the schema version: {e}"))?;
    let exists: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = ?1",
            [TABLE],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    if exists {
        eprintln!("sentra-future-release: the store is already at schema {before}");
    } else {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             CREATE TABLE {TABLE} (id TEXT PRIMARY KEY) STRICT;
             INSERT INTO {TABLE} VALUES ('written by the future release');
             PRAGMA user_version = {};
             COMMIT;",
            before + 1
        ))
        .map_err(|e| format!("migrate: {e}"))?;
        eprintln!(
            "sentra-future-release: migrated the store from schema {before} to {} (additive)",
            before + 1
        );
    }
    drop(conn);
    let root = config.update.install_root;
    let good = std::fs::read_to_string(root.join("good"))
        .map_err(|e| format!("{}: {e}", root.join("good").display()))?;
    let exe = root.join("releases").join(good.trim()).join("sentra-edge");
    eprintln!(
        "sentra-future-release: serving with {}, never ready as this release",
        exe.display()
    );
    let error = std::process::Command::new(&exe).args(&args).exec();
    Err(format!("exec {}: {error}", exe.display()))
}
