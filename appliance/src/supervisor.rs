//! The supervisor owns every task of the daemon. Tasks are spawned through it, watch its
//! cancellation token, and are awaited on shutdown: SIGTERM or SIGINT cancels, the HTTP server
//! stops taking connections and finishes the requests in flight, then the store finishes the
//! writes already queued and closes. Nothing is half-written because a write is one transaction.
//! Each task runs in a `task` span whose `component` field is its name, so its log lines can be
//! picked out (`journalctl -u sentra-edge COMPONENT=sync`).

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Default)]
pub struct Supervisor {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawn a named task; it should return when `token()` is cancelled.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        // Every log line of the task carries `component` (COMPONENT= in the journal). The span
        // is at ERROR level so that it exists whatever level logging is filtered to.
        let span = tracing::error_span!("task", component = name);
        self.tasks.spawn(tracing::Instrument::instrument(
            async move {
                match fut.await {
                    Ok(()) => tracing::debug!(task = name, "task finished"),
                    Err(e) => {
                        tracing::error!(
                            task = name,
                            error = format!("{e:#}"),
                            "task failed; shutting down"
                        );
                        cancel.cancel();
                    }
                }
            },
            span,
        ));
    }

    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Cancel on SIGTERM or SIGINT (whichever comes first).
    pub fn cancel_on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                _ = cancel.cancelled() => return,
            }
            cancel.cancel();
        });
        Ok(())
    }

    /// Wait for cancellation, then for every task to finish.
    pub async fn wait(&self) {
        self.cancel.cancelled().await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}
