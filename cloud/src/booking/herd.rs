//! A replica's own herd, when PostgreSQL decides alone (Redis down, or no lock node answered).
//!
//! Without the Redlock in front, every request of a herd for the same asset-days would reach
//! PostgreSQL, and the advisory lock on the asset queues their inserts one after another: a
//! thousand clients at once waited up to 600 ms for their 409 (docs/benchmarks.md). Here the
//! first request of a replica for the asset-days goes on to PostgreSQL (the leader); the ones
//! arriving while it is on its way wait for its answer instead. If PostgreSQL held the days for
//! it, or found them taken, the days are taken for the waiters too: they were in flight at the
//! same moment, so answering them `409` is what PostgreSQL would have answered had they queued
//! just behind the leader. Any other ending (an error, the leader's client gone, a replay of an
//! earlier request) lets each waiter go on to PostgreSQL itself, as before.
//!
//! A waiter with an `Idempotency-Key` may be the retry of a request that already made its
//! booking: it looks its key up (one indexed read, no lock) before it is told `409`, and a
//! waiter with the leader's own key goes on to PostgreSQL, which has its answer once the leader
//! is done. Other replicas are not coordinated: each sends at most one request of a herd at a
//! time, and PostgreSQL still decides between them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use time::Date;
use tokio::sync::watch;

/// What a herd is about: the same SKU's asset of one branch, the same days (turnover included).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HerdKey {
    pub branch: String,
    pub sku: String,
    pub asset_id: String,
    pub start: Date,
    pub end: Date,
}

/// How the leader's request ended, as far as its waiters are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decided {
    /// PostgreSQL held the days for the leader, or found them taken: taken for the waiters.
    Taken,
    /// Anything else: each waiter asks PostgreSQL itself.
    Undecided,
}

/// Who made the leader's request: a waiter with the same caller and key is its retry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Retry {
    created_by: String,
    key: String,
}

struct Flight {
    /// None while the leader is on its way.
    outcome: watch::Receiver<Option<Decided>>,
    leader_key: Option<Retry>,
}

/// The requests of this replica in flight to PostgreSQL, by asset-days. Bounded by the requests
/// in flight: an entry lives only while its leader's request does, and only its leader removes
/// it (the key's next flight can start only once it is gone).
#[derive(Default)]
pub struct Herds {
    flights: Mutex<HashMap<HerdKey, Flight>>,
}

/// A request's part in its herd.
pub enum Joined {
    /// First of its herd here: goes on to PostgreSQL and tells the others with [`Leader::done`]
    /// (or, dropped on the way, lets them go on themselves).
    Leader(Leader),
    /// Another request was on its way: its answer, once it has one.
    Waiter(Waiter),
}

pub struct Leader {
    herds: Arc<Herds>,
    key: HerdKey,
    outcome: Option<watch::Sender<Option<Decided>>>,
}

pub struct Waiter {
    outcome: watch::Receiver<Option<Decided>>,
    /// This request has the leader's caller and key: it is its retry.
    is_retry: bool,
}

impl Herds {
    /// Joins the herd of `key`: leads it, or waits for its leader. `created_by` and
    /// `idempotency_key` name the request, so that a retry never waits to be refused.
    pub fn join(
        self: &Arc<Self>,
        key: HerdKey,
        created_by: &str,
        idempotency_key: Option<&str>,
    ) -> Joined {
        let mine = idempotency_key.map(|key| Retry {
            created_by: created_by.to_owned(),
            key: key.to_owned(),
        });
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = flights.get(&key) {
            return Joined::Waiter(Waiter {
                outcome: flight.outcome.clone(),
                is_retry: mine.is_some() && flight.leader_key == mine,
            });
        }
        let (sender, receiver) = watch::channel(None);
        flights.insert(
            key.clone(),
            Flight {
                outcome: receiver,
                leader_key: mine,
            },
        );
        Joined::Leader(Leader {
            herds: Arc::clone(self),
            key,
            outcome: Some(sender),
        })
    }

    /// Requests in flight, with others waiting on them or not.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Leader {
    /// The leader's answer: its waiters are told, and the next request for the days leads anew.
    pub fn done(mut self, decided: Decided) {
        self.finish(decided);
    }

    fn finish(&mut self, decided: Decided) {
        let Some(sender) = self.outcome.take() else {
            return;
        };
        // The entry is this leader's: only it removes it, and none is added while it is there.
        self.herds
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        // No receiver left (every waiter gone) is fine.
        let _ = sender.send(Some(decided));
    }
}

impl Drop for Leader {
    /// A leader dropped on its way (its client went away, or its task ended otherwise) decided
    /// nothing for the others.
    fn drop(&mut self) {
        self.finish(Decided::Undecided);
    }
}

impl Waiter {
    /// Waits for the leader: `Taken` when its answer is this request's too; `Undecided` when
    /// this request must ask PostgreSQL itself (the leader failed or went away, or this is its
    /// retry).
    pub async fn outcome(mut self) -> Decided {
        // A leader gone without a word (its sender dropped) decided nothing.
        let decided = match self.outcome.wait_for(Option::is_some).await {
            Ok(decided) => *decided,
            Err(_) => None,
        };
        // The retry waited only so that PostgreSQL has its first attempt's answer to replay.
        match decided {
            Some(decided) if !self.is_retry => decided,
            _ => Decided::Undecided,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(asset: &str) -> HerdKey {
        HerdKey {
            branch: "JKT01".to_owned(),
            sku: "AVZ".to_owned(),
            asset_id: asset.to_owned(),
            start: time::macros::date!(2026 - 12 - 01),
            end: time::macros::date!(2026 - 12 - 02),
        }
    }

    fn leader(role: Joined) -> Leader {
        match role {
            Joined::Leader(leader) => leader,
            Joined::Waiter(_) => panic!("expected to lead"),
        }
    }

    fn waiter(role: Joined) -> Waiter {
        match role {
            Joined::Waiter(waiter) => waiter,
            Joined::Leader(_) => panic!("expected to wait"),
        }
    }

    #[tokio::test]
    async fn waiters_get_the_leaders_decision_and_the_next_request_leads_anew() {
        let herds = Arc::new(Herds::default());
        let first = leader(herds.join(key("AVZ-0"), "portal", None));
        let second = waiter(herds.join(key("AVZ-0"), "portal", Some("k2")));
        let third = waiter(herds.join(key("AVZ-0"), "portal", None));
        // Another asset is another herd.
        let other = leader(herds.join(key("AVZ-1"), "portal", None));
        assert_eq!(herds.in_flight(), 2);
        let waiting = tokio::spawn(async move { (second.outcome().await, third.outcome().await) });
        first.done(Decided::Taken);
        assert_eq!(waiting.await.unwrap(), (Decided::Taken, Decided::Taken));
        assert_eq!(herds.in_flight(), 1);
        let _next = leader(herds.join(key("AVZ-0"), "portal", None));
        drop(other);
        assert_eq!(herds.in_flight(), 1);
    }

    #[tokio::test]
    async fn a_leader_gone_or_undecided_lets_its_waiters_ask_postgresql() {
        let herds = Arc::new(Herds::default());
        let first = leader(herds.join(key("AVZ-0"), "portal", None));
        let second = waiter(herds.join(key("AVZ-0"), "portal", None));
        drop(first);
        assert_eq!(second.outcome().await, Decided::Undecided);
        assert_eq!(herds.in_flight(), 0);

        let first = leader(herds.join(key("AVZ-0"), "portal", None));
        let second = waiter(herds.join(key("AVZ-0"), "portal", None));
        first.done(Decided::Undecided);
        assert_eq!(second.outcome().await, Decided::Undecided);
    }

    #[tokio::test]
    async fn the_leaders_retry_is_never_refused_by_it() {
        let herds = Arc::new(Herds::default());
        let first = leader(herds.join(key("AVZ-0"), "portal", Some("k1")));
        let retry = waiter(herds.join(key("AVZ-0"), "portal", Some("k1")));
        // The same key from another caller is not the retry.
        let stranger = waiter(herds.join(key("AVZ-0"), "kiosk", Some("k1")));
        first.done(Decided::Taken);
        assert_eq!(retry.outcome().await, Decided::Undecided);
        assert_eq!(stranger.outcome().await, Decided::Taken);
    }
}
