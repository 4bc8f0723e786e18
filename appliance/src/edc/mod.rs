//! The EDC card terminal at the cashier, behind the [`Terminal`] trait: the box sends a sale's
//! amount, the terminal answers approved (approval code, masked card, terminal id), declined, or
//! busy. `POST /v1/invoices/{id}/payments` with method `EDC` and no `reference` drives it
//! (`api::edc`); with a typed approval code the payment is recorded as before, which stays the
//! way to take a card while the terminal is down or not connected.
//!
//! - `protocol`: the pure ECR protocol (frames, LRC, ACK/NAK, messages), documented there.
//! - `serial`: [`SerialTerminal`], the protocol over the terminal's serial port (`edc.device`).
//! - `sandbox`: a terminal that answers by the amount, on any byte stream (a pseudo-terminal in
//!   the tests, `sentra-edge edc-sandbox`).
//!
//! Invariants: one sale at a time per box ([`EdcHandle::begin`] refuses a second as busy);
//! nothing is recorded unless the terminal approved; every wait is bounded (ACK wait × sends,
//! `edc.timeout_ms` for the answer) and every byte from the terminal is bounded and checked.

pub mod protocol;
pub mod sandbox;
pub mod serial;

use std::sync::Arc;
use std::time::Duration;

pub use protocol::{Approval, Decline};
pub use serial::SerialTerminal;

use crate::config::EdcConfig;

/// What a sale ended in, when the terminal gave an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaleOutcome {
    Approved(Approval),
    Declined(Decline),
}

/// Why a sale has no answer. Nothing was recorded in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdcError {
    /// The terminal said it is in another transaction.
    #[error("the card terminal is busy with another transaction")]
    Busy,
    /// The terminal took the sale (ACK) but gave no answer within `edc.timeout_ms`.
    #[error("the card terminal gave no answer within {0} ms")]
    Timeout(u64),
    /// The port could not be opened, or the terminal never acknowledged the sale.
    #[error("the card terminal does not answer: {0}")]
    Unavailable(String),
    /// It answered with something the protocol does not allow.
    #[error("the card terminal answered something unreadable: {0}")]
    Protocol(String),
}

/// A card terminal the box can ask for a sale.
#[async_trait::async_trait]
pub trait Terminal: Send + Sync + std::fmt::Debug {
    /// Ask for `amount` rupiah under the box's `reference` (1..=32 letters and digits); returns
    /// the terminal's answer or why there is none.
    async fn sale(&self, reference: &str, amount: i64) -> Result<SaleOutcome, EdcError>;
}

/// The configured terminal (if any) and the one-sale-at-a-time lock, shared by the API.
#[derive(Debug, Clone, Default)]
pub struct EdcHandle {
    terminal: Option<Arc<dyn Terminal>>,
    busy: Arc<tokio::sync::Mutex<()>>,
}

/// Held while a sale runs on the terminal.
pub type SaleGuard = tokio::sync::OwnedMutexGuard<()>;

impl EdcHandle {
    /// From `edc.*`: a serial terminal when `edc.device` is set, else none.
    pub fn from_config(cfg: &EdcConfig) -> Self {
        match &cfg.device {
            Some(path) => Self::with(Arc::new(SerialTerminal::new(
                path.clone(),
                cfg.baud,
                Duration::from_millis(cfg.timeout_ms),
            ))),
            None => Self::default(),
        }
    }

    pub fn with(terminal: Arc<dyn Terminal>) -> Self {
        Self {
            terminal: Some(terminal),
            busy: Arc::default(),
        }
    }

    pub fn configured(&self) -> bool {
        self.terminal.is_some()
    }

    /// The terminal and the right to use it now, or `None` when another sale is running.
    pub fn begin(&self) -> Option<(Arc<dyn Terminal>, SaleGuard)> {
        let terminal = self.terminal.clone()?;
        let guard = self.busy.clone().try_lock_owned().ok()?;
        Some((terminal, guard))
    }
}
