//! Backpressure for QoS 1/2: a publisher waits for room in its online subscribers' queues
//! instead of rmqtt dropping what it already acknowledged.
//!
//! **Where rmqtt 0.24 drops** (read in its `session.rs` and `queue.rs`). A PUBLISH from a client
//! goes through the ACL hook and is then forwarded (`SessionState::forwards` →
//! `Shared::forwards_to`) into each subscriber session's *unbounded* channel; the publisher's
//! PUBACK follows at once: nothing on that path ever waits for a subscriber. Each subscriber's
//! session task moves what arrives on its channel into its deliver queue (`mqtt.max_queued_messages`
//! long) and takes from that queue only while its in-flight window (`mqtt.max_inflight`) has
//! room. When the queue is full, the `Policy::Early` rmqtt sets for QoS 1/2 evicts the oldest
//! queued message (QoS 0: the new one), and the `MessageDropped` hook reports it. A publisher
//! faster than a subscriber's acknowledgements therefore loses acknowledged messages as soon as
//! 64 + 1000 are pending, and until the subscriber's task runs, every forwarded message sits in
//! the unbounded channel (the memory the bench saw grow). `mqueue_rate_limit` (unlimited by
//! default) only paces the queue's reader; it drops nothing and backs nothing up.
//!
//! rmqtt has no setting that makes a publisher wait, but its hooks are awaited on the
//! publisher's own task, so a hook that waits holds back that client: its socket is not read
//! meanwhile (TCP slows the sender down) and its PUBACK comes once the message is routed.
//! [`Flow`] is that wait, called from the publish ACL hook (the last step before rmqtt forwards)
//! and from the daemon's in-process publisher:
//! - for each **online** session a QoS 1/2 message will be forwarded to (rmqtt's own router
//!   match, so the same sessions), it waits until `admitted + queued < limit`, where `admitted`
//!   counts the messages this gate let through for that session that have not left its queue
//!   yet (delivered or dropped: the `MessageDelivered` / `MessageDropped` hooks; a message is
//!   recognised by its payload buffer, which every forwarded copy shares) and `queued` is the
//!   queue's length now. A message in the channel is counted in `admitted`, a message already in
//!   the queue may be counted twice (the bound is conservative), and messages that reach the
//!   queue another way (a takeover's backlog, a retry of the in-flight window) are in `queued`.
//!   `limit` leaves room under `mqtt.max_queued_messages` for the in-flight window coming back on
//!   a retry ([`Flow::new`]). So an online subscriber's queue never overflows with messages the
//!   gate let through, and nothing acknowledged is evicted while it is connected;
//! - **offline** sessions (persistent, not connected) are not waited for: their queue keeps
//!   `mqtt.max_queued_messages` and past it rmqtt evicts the oldest, counted in
//!   `sentra_edge_mqtt_messages_dropped_total{reason="queue_full"}`. That is the bound on memory
//!   a tablet that went away can pin;
//! - a subscriber that takes **no message at all for `mqtt.stalled_subscriber_secs`** while a
//!   publisher waits for it (a frozen app whose TCP connection stays open, or two clients each
//!   waiting for the other) is disconnected and counted in
//!   `sentra_edge_mqtt_stalled_subscribers_total`; its session goes offline (above) and the
//!   publisher goes on. Without that, one frozen tablet would stop every live event on the branch;
//! - a client's own messages coming back to it (it subscribes to what it publishes) are not
//!   waited for: its task cannot empty its queue while it waits;
//! - QoS 0 is never held back: at most once, dropped when a queue is full, as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::session::Session;
use rmqtt::types::{ClientId, From, Id, Message, MessageQueueType, Publish, QoS, Reason};
use tokio::sync::Notify;
use tokio::time::Instant;

/// A forwarded message as the hooks see it: every copy rmqtt makes shares the payload buffer.
type Tag = (usize, usize);

fn tag(p: &Publish) -> Tag {
    (p.payload.as_ptr() as usize, p.payload.len())
}

/// The gate shared by the hooks and the in-process publisher.
pub(super) struct Flow {
    /// A session may hold `admitted + queued` below this.
    limit: usize,
    stall: Duration,
    state: Mutex<State>,
    room: Notify,
}

#[derive(Default)]
struct State {
    /// Online sessions by client id.
    online: HashMap<ClientId, Online>,
    /// Publishers waiting now (a release wakes them only then).
    waiting: usize,
}

struct Online {
    /// The connection: a takeover's old session must not touch its successor's entry.
    id: Id,
    queue: MessageQueueType,
    /// Messages admitted for this session and not yet out of its queue, by tag.
    pending: HashMap<Tag, u32>,
    admitted: usize,
    /// The last time this session took a message out of its queue (or connected).
    progress: Instant,
}

impl Flow {
    /// `max_queued` and `max_inflight` are the session limits (`mqtt.*`); `stall` is
    /// `mqtt.stalled_subscriber_secs`.
    pub(super) fn new(max_queued: usize, max_inflight: usize, stall: Duration) -> Self {
        // Room for the in-flight window that rmqtt puts back in the queue on a retry.
        let reserve = max_inflight.min(max_queued / 2);
        Self {
            limit: max_queued.saturating_sub(reserve).max(1),
            stall,
            state: Mutex::default(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("flow lock is never poisoned")
    }

    /// A client connected: from now on publishers wait for room in its queue.
    pub(super) fn connected(&self, s: &Session) {
        let entry = Online {
            id: s.id.clone(),
            queue: s.deliver_queue().clone(),
            pending: HashMap::new(),
            admitted: 0,
            progress: Instant::now(),
        };
        let waiting = {
            let mut st = self.lock();
            st.online.insert(s.id.client_id.clone(), entry);
            st.waiting
        };
        // A publisher waiting for the session this one took over re-checks.
        if waiting > 0 {
            self.room.notify_waiters();
        }
    }

    /// A connection ended: its session (if kept) is offline, nobody waits for it.
    pub(super) fn disconnected(&self, id: &Id) {
        let waiting = {
            let mut st = self.lock();
            if st.online.get(&id.client_id).is_some_and(|o| &o.id == id) {
                st.online.remove(&id.client_id);
            }
            st.waiting
        };
        if waiting > 0 {
            self.room.notify_waiters();
        }
    }

    /// A message left `id`'s queue: `delivered` (sent to the client) or dropped.
    pub(super) fn left(&self, id: &Id, p: &Publish, delivered: bool) {
        if p.qos == QoS::AtMostOnce && !delivered {
            return;
        }
        let waiting = {
            let mut st = self.lock();
            let Some(o) = st.online.get_mut(&id.client_id) else {
                return;
            };
            if &o.id != id {
                return;
            }
            if delivered {
                o.progress = Instant::now();
            }
            let t = tag(p);
            let released = match o.pending.get_mut(&t) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    true
                }
                Some(_) => {
                    o.pending.remove(&t);
                    true
                }
                None => false,
            };
            if released {
                o.admitted = o.admitted.saturating_sub(1);
            }
            st.waiting
        };
        if waiting > 0 {
            self.room.notify_waiters();
        }
    }

    /// Wait until every online session `p` (from `from`) will be forwarded to at QoS 1/2 has
    /// room for it, and count it there. Returns at once for QoS 0.
    pub(super) async fn admit(&self, scx: &ServerContext, from: &From, p: &Publish) {
        if p.qos == QoS::AtMostOnce {
            return;
        }
        let targets: Vec<ClientId> = {
            let router = scx.extends.router().await;
            match router.matches(from.id.clone(), &p.topic).await {
                Ok(mut by_node) => by_node
                    .remove(&scx.node.id())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, client_id, opts, _, group)| {
                        group.is_none()
                            && p.qos.less_value(opts.qos()) != QoS::AtMostOnce
                            && *client_id != from.id.client_id
                    })
                    .map(|(_, client_id, ..)| client_id)
                    .collect(),
                // rmqtt's own forwarding fails the same way and forwards nothing.
                Err(_) => return,
            }
        };
        let t = tag(p);
        for client_id in targets {
            self.reserve(scx, &client_id, t).await;
        }
    }

    /// Count one message for `client_id`, waiting for room while it is online.
    async fn reserve(&self, scx: &ServerContext, client_id: &ClientId, t: Tag) {
        let started = Instant::now();
        let mut counted_wait = false;
        loop {
            // Registered before the check: a release after it wakes this waiter.
            let notified = self.room.notified();
            let deadline = {
                let mut st = self.lock();
                let Some(o) = st.online.get_mut(client_id) else {
                    return;
                };
                if o.admitted + o.queue.len() < self.limit {
                    o.admitted += 1;
                    *o.pending.entry(t).or_default() += 1;
                    return;
                }
                let deadline = o.progress.max(started) + self.stall;
                st.waiting += 1;
                deadline
            };
            if !counted_wait {
                counted_wait = true;
                crate::metrics::mqtt_publish_waited();
            }
            // Woken by a release anywhere, or the deadline: either way look again.
            let _ = tokio::time::timeout_at(deadline, notified).await;
            let stalled = {
                let mut st = self.lock();
                st.waiting = st.waiting.saturating_sub(1);
                match st.online.get(client_id) {
                    Some(o)
                        if o.admitted + o.queue.len() >= self.limit
                            && o.progress.max(started) + self.stall <= Instant::now() =>
                    {
                        let id = o.id.clone();
                        st.online.remove(client_id);
                        Some(id)
                    }
                    _ => None,
                }
            };
            if let Some(id) = stalled {
                self.close_stalled(scx, id).await;
                return;
            }
        }
    }

    /// Disconnect a subscriber that took nothing for `stall` while a publisher waited for it.
    async fn close_stalled(&self, scx: &ServerContext, id: Id) {
        tracing::warn!(client = %id.client_id, device = ?id.username, secs = self.stall.as_secs(), "mqtt subscriber disconnected: it accepted no message for mqtt.stalled_subscriber_secs while a publisher waited for room in its queue; its session continues offline");
        crate::metrics::mqtt_stalled();
        let entry = scx.extends.shared().await.entry(id.clone());
        if entry.session().is_some_and(|s| s.id == id)
            && let Some(tx) = entry.tx()
        {
            let _ = tx.unbounded_send(Message::Closed(Reason::from_static(
                "stalled: no message accepted for mqtt.stalled_subscriber_secs",
            )));
        }
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::Flow;
    use std::time::Duration;

    #[test]
    fn the_limit_leaves_room_for_the_window_and_is_never_zero() {
        let s = Duration::from_secs(30);
        assert_eq!(Flow::new(1000, 64, s).limit, 936);
        assert_eq!(Flow::new(10, 64, s).limit, 5);
        assert_eq!(Flow::new(3, 2, s).limit, 2);
        assert_eq!(Flow::new(1, 64, s).limit, 1);
    }
}
