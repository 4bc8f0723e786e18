//! Logging: to the journal (with structured fields) when systemd started us with our output
//! connected to it, to stderr otherwise (a terminal, a test, a container). In the journal every
//! event has its fields in upper case, `TARGET` (the module), `COMPONENT` (the supervisor task it
//! ran in: api, sync, printer, scanner, watchdog) and journald's own `_SYSTEMD_UNIT`. Secrets are never
//! logged: keys, tokens and pairing codes have redacting `Debug` impls or are never passed to
//! a log macro.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Install the global subscriber. `level` is an EnvFilter directive; `RUST_LOG` wins if set.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let registry = tracing_subscriber::registry().with(filter);
    // systemd sets JOURNAL_STREAM when stdout/stderr go to the journal.
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        // Without a prefix a span or event field `component` is `COMPONENT=` in the journal, as
        // the docs promise (`journalctl -u sentra-edge COMPONENT=sync`); the crate's default
        // prefix would make it `F_COMPONENT`. None of our field names is one of journald's own
        // (MESSAGE, PRIORITY, CODE_FILE/LINE/FUNC, SYSLOG_*), so nothing is overwritten.
        let _ = registry
            .with(
                journald
                    .with_field_prefix(None)
                    .with_syslog_identifier("sentra-edge".into()),
            )
            .try_init();
        return;
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(ansi),
        )
        .try_init();
}
