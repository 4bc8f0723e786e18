//! Persistent MQTT sessions that outlive the daemon: rmqtt keeps sessions in memory only, so
//! without this a restart (an update, a crash, a power cut) lost every QoS 1 message queued for
//! a tablet that was away, and the tablet's subscriptions with it.
//!
//! What is kept, in the encrypted store (`store::mqtt`): each session that outlives its
//! connection (MQTT 3.1.1 `clean_session=false`, MQTT 5 a Session Expiry Interval above 0), its
//! subscriptions, and every QoS 1/2 message routed to it, from before the broker hands the
//! message to the session ([`Persist::routing`], at the same two places the publisher's flow
//! control waits) until the client acknowledges it (`MessageAcked`) or the broker drops it
//! (`MessageDropped`, counted there). A message is written once per session it goes to, in one
//! store transaction per publish.
//!
//! Retained messages are written through to the store too (`Retained` in the broker's module)
//! and taken back at start ([`retained`]), their expiry still running.
//!
//! After a restart the kept sessions are not in rmqtt: their subscriptions are matched here, so
//! what is published for them meanwhile is kept too; when the client connects again (not as a
//! clean start) its subscriptions are made again and then its kept messages sent to it at
//! once, oldest first (one published in between may come before them, or twice). Its CONNACK
//! still says "no session present" (rmqtt made a new one); a client that subscribes again on
//! that gets each kept message once, not twice.
//!
//! Invariants:
//! - a kept message is deleted only by its client's acknowledgement, the broker dropping it, a
//!   newer one past `mqtt.max_queued_messages` (+ `mqtt.max_inflight` while the broker holds the
//!   session) for that session, or the session ending (a clean start, its expiry, its
//!   device's revocation, a restore from backup);
//! - keeping is waited for (the publisher's PUBACK comes after the commit), deleting is not (a
//!   restart just after an acknowledgement may send that message once more: at least once);
//! - only messages routed to persistent sessions touch the store: clean sessions (the benchmark's,
//!   most POS) cost one lock and an empty map lookup per publish and acknowledgement;
//! - a store that cannot be written is logged and the message still goes out (live delivery is
//!   never held hostage to the store), so what was not kept is what a restart can still lose.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmqtt::context::ServerContext;
use rmqtt::session::Session;
use rmqtt::types::{ConnectInfo, From, Id, Publish, QoS, Subscribe, TopicFilter};

use super::SharedStore;
use crate::store;

/// A persistent session as this module follows it.
#[derive(Debug, Default)]
struct Kept {
    /// Its subscriptions: the filter as subscribed, parsed, and the QoS granted.
    filters: Vec<(String, rmqtt::topic::Topic, QoS)>,
    /// Restored at start and not taken up by a connection yet: when it expires (unix seconds).
    restored: Option<i64>,
    /// Messages kept for it in the store.
    messages: u64,
}

pub(super) struct Persist {
    store: SharedStore,
    /// Messages kept at most for a session restored at start (`mqtt.max_queued_messages`, the
    /// broker's own bound for an offline session).
    cap: usize,
    /// For a session the broker holds: its queue and in-flight window and the message being
    /// routed, so that the broker's own drop (which takes the kept copy with it, counted there)
    /// always comes first.
    live_cap: usize,
    /// The daemon's own identity: restored messages are sent as from it.
    system: Id,
    /// Shared with the acknowledgements' store writes, which finish on their own.
    sessions: Arc<Mutex<HashMap<String, Kept>>>,
}

type Sessions = Arc<Mutex<HashMap<String, Kept>>>;

fn lock(sessions: &Sessions) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
    sessions.lock().expect("session map lock is never poisoned")
}

/// Runs `f` in a store write; `None` (logged) when the store is gone (the broker stopped) or
/// the write failed.
pub(super) async fn write<T, F>(store: &SharedStore, f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(&mut store::WriteTx<'_>) -> store::Result<T> + Send + 'static,
{
    let store = store
        .lock()
        .expect("store slot lock is never poisoned")
        .clone()?;
    match store.write(f).await {
        Ok(t) => Some(t),
        Err(error) => {
            tracing::warn!(%error, "mqtt: a store write for the broker's persistent state failed");
            None
        }
    }
}

/// The retained messages kept in the store, as the broker takes them at start (the expired
/// ones deleted): each with how long it has left.
pub(super) async fn retained(
    store: &SharedStore,
    system: &Id,
) -> Vec<(
    rmqtt::types::TopicName,
    rmqtt::types::Retain,
    Option<std::time::Duration>,
)> {
    let now = now_secs();
    let kept = write(store, move |w| store::mqtt::retained(w, now))
        .await
        .unwrap_or_default();
    kept.into_iter()
        .map(|r| {
            let left = r.expires_at.map(|at| {
                std::time::Duration::from_secs(
                    u64::try_from(at.saturating_sub(now))
                        .unwrap_or(1)
                        .min(u64::from(u32::MAX)),
                )
            });
            let topic = rmqtt::types::TopicName::from(r.topic.as_str());
            let retain = rmqtt::types::Retain {
                msg_id: None,
                from: From::from_system(system.clone()),
                publish: publish(r.topic, r.qos, r.payload, true),
            };
            (topic, retain, left)
        })
        .collect()
}

/// A message this module sends again (kept or retained), as the broker takes it.
fn publish(topic: String, qos: u8, payload: Vec<u8>, retain: bool) -> Publish {
    let p = rmqtt::types::CodecPublish {
        dup: false,
        retain,
        qos: qos_of(qos),
        topic: topic.into(),
        packet_id: None,
        payload: payload.into(),
        properties: Some(Default::default()),
    };
    <rmqtt::types::CodecPublish as Into<Publish>>::into(p)
        .create_time(rmqtt::utils::timestamp_millis())
}

fn publish_count(sessions: &Sessions) {
    crate::metrics::mqtt_kept(lock(sessions).values().map(|k| k.messages).sum());
}

fn qos_of(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// How long `s` outlives its connection, if it does.
async fn expiry(s: &Session) -> Option<(u64, bool)> {
    let ci = s.connect_info().await.ok()?;
    let (kept, clean_start) = match ci.as_ref() {
        ConnectInfo::V3(_, c) => (!c.clean_session, c.clean_session),
        ConnectInfo::V5(_, c) => (true, c.clean_start),
    };
    let secs = s.fitter.session_expiry_interval(None).as_secs();
    (kept && secs > 0).then_some((secs, clean_start))
}

impl Persist {
    /// Loads the kept sessions (deleting the expired ones).
    pub(super) async fn open(
        store: SharedStore,
        queue: usize,
        inflight: usize,
        system: Id,
    ) -> Persist {
        let persist = Persist {
            store,
            cap: queue.max(1),
            // + 1: a message is kept before the broker queues it and drops its oldest.
            live_cap: queue.saturating_add(inflight).saturating_add(1),
            system,
            sessions: Arc::default(),
        };
        let now = now_secs();
        let restored = persist.write(move |w| store::mqtt::restore(w, now)).await;
        if let Some(sessions) = restored {
            let mut map = persist.lock();
            for session in sessions {
                let filters = session
                    .subscriptions
                    .iter()
                    .filter_map(|(f, q)| Some((f.clone(), f.parse().ok()?, qos_of(*q))))
                    .collect();
                map.insert(
                    session.client_id,
                    Kept {
                        filters,
                        restored: Some(session.expires_at),
                        messages: session.messages,
                    },
                );
            }
            tracing::info!(
                sessions = map.len(),
                messages = map.values().map(|k| k.messages).sum::<u64>(),
                "mqtt persistent sessions restored from the store"
            );
        }
        persist.publish_count();
        persist
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        lock(&self.sessions)
    }

    fn publish_count(&self) {
        publish_count(&self.sessions);
    }

    async fn write<T, F>(&self, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut store::WriteTx<'_>) -> store::Result<T> + Send + 'static,
    {
        write(&self.store, f).await
    }

    /// A connection took up a session: a clean start ends what was kept under its client id; a
    /// persistent session is marked connected, and one restored at start gets its
    /// subscriptions back and its kept messages sent.
    pub(super) async fn connected(&self, scx: &ServerContext, s: &Session) {
        let client = s.id.client_id.to_string();
        let persistent = expiry(s).await;
        let clean_start = persistent.is_none_or(|(_, clean)| clean);
        let (known, restored) = {
            let mut map = self.lock();
            let known = map.contains_key(&client);
            if clean_start {
                map.remove(&client);
            }
            let restored = match map.get_mut(&client) {
                Some(k) => k
                    .restored
                    .take()
                    .map(|expires| (expires, k.filters.clone())),
                None => None,
            };
            (known, restored)
        };
        if clean_start && known {
            let c = client.clone();
            self.write(move |w| store::mqtt::forget(w, &c)).await;
            self.publish_count();
        }
        let Some((secs, _)) = persistent else {
            return;
        };
        let c = client.clone();
        let now = now_secs();
        self.write(move |w| store::mqtt::seen(w, &c, secs, true, now))
            .await;
        self.lock().entry(client.clone()).or_default();
        let Some((expires, filters)) = restored else {
            return;
        };
        if expires <= now {
            // It expired while nobody held it: start afresh.
            let c = client.clone();
            self.write(move |w| {
                store::mqtt::forget(w, &c)?;
                store::mqtt::seen(w, &c, secs, true, now)
            })
            .await;
            if let Some(k) = self.lock().get_mut(&client) {
                *k = Kept::default();
            }
            self.publish_count();
            return;
        }
        let entry = scx.extends.shared().await.entry(s.id.clone());
        for (filter, _, qos) in &filters {
            let sub = Subscribe::from_v3(&TopicFilter::from(filter.as_str()), *qos, false, false);
            match sub {
                Ok(sub) => {
                    if let Err(error) = entry.subscribe(&sub).await {
                        tracing::warn!(%error, client, filter, "mqtt: a kept subscription could not be made again");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, client, filter, "mqtt: a kept subscription is not a topic filter")
                }
            }
        }
        let c = client.clone();
        let messages = self
            .write(move |w| store::mqtt::messages(w.conn(), &c))
            .await
            .unwrap_or_default();
        let count = messages.len();
        for m in messages {
            let p = publish(m.topic, m.qos, m.payload, false);
            if entry
                .publish(From::from_system(self.system.clone()), p)
                .await
                .is_err()
            {
                tracing::warn!(
                    client,
                    "mqtt: the session closed while its kept messages were sent; they stay kept"
                );
                break;
            }
        }
        tracing::info!(
            client,
            subscriptions = filters.len(),
            messages = count,
            "mqtt: a session kept across a restart was taken up again"
        );
    }

    /// A persistent session's connection ended: its expiry runs from now, unless a newer
    /// connection already took the session over.
    pub(super) async fn disconnected(&self, s: &Session) {
        let client = s.id.client_id.to_string();
        if !self.lock().contains_key(&client) {
            return;
        }
        let Some((secs, _)) = expiry(s).await else {
            return;
        };
        if s.scx.extends.shared().await.entry(s.id.clone()).id_same() == Some(false) {
            return;
        }
        let now = now_secs();
        self.write(move |w| store::mqtt::seen(w, &client, secs, false, now))
            .await;
    }

    /// The session ended (rmqtt cleaned it: a clean session's disconnect, a clean start's
    /// takeover, its expiry): what was kept for it goes.
    pub(super) async fn terminated(&self, s: &Session) {
        let client = s.id.client_id.to_string();
        if self.lock().remove(&client).is_none() {
            return;
        }
        self.write(move |w| store::mqtt::forget(w, &client)).await;
        self.publish_count();
    }

    /// The device `device_id` was revoked: every session kept under its client ids ends,
    /// those restored at start (which the broker does not hold, so its disconnect does not
    /// reach them) included.
    pub(super) async fn forget_device(&self, device_id: &str) {
        let clients: Vec<String> = self
            .lock()
            .extract_if(|c, _| super::client_id_matches(c, device_id))
            .map(|(c, _)| c)
            .collect();
        if clients.is_empty() {
            return;
        }
        self.write(move |w| {
            for c in &clients {
                store::mqtt::forget(w, c)?;
            }
            Ok(())
        })
        .await;
        self.publish_count();
    }

    pub(super) async fn subscribed(&self, s: &Session, filter: &str, qos: QoS) {
        let Some((secs, _)) = expiry(s).await else {
            return;
        };
        let Ok(parsed) = filter.parse::<rmqtt::topic::Topic>() else {
            return;
        };
        let client = s.id.client_id.to_string();
        {
            let mut map = self.lock();
            let k = map.entry(client.clone()).or_default();
            k.filters.retain(|(f, ..)| f != filter);
            k.filters.push((filter.to_owned(), parsed, qos));
        }
        let f = filter.to_owned();
        let now = now_secs();
        self.write(move |w| {
            store::mqtt::seen(w, &client, secs, true, now)?;
            store::mqtt::subscribe(w, &client, &f, qos.value())
        })
        .await;
    }

    pub(super) async fn unsubscribed(&self, s: &Session, filter: &str) {
        let client = s.id.client_id.to_string();
        {
            let mut map = self.lock();
            let Some(k) = map.get_mut(&client) else {
                return;
            };
            k.filters.retain(|(f, ..)| f != filter);
        }
        let f = filter.to_owned();
        self.write(move |w| store::mqtt::unsubscribe(w, &client, &f))
            .await;
    }

    /// `p` is about to be routed: kept for every persistent session it goes to (at the QoS it
    /// gets there), before any of them can receive it.
    pub(super) async fn routing(&self, p: &Publish) {
        if p.qos == QoS::AtMostOnce {
            return;
        }
        let now = now_secs();
        // Each target, and whether it is a restored session (its kept copies are its only
        // queue, so an eviction is a drop) rather than one the broker holds (the broker counts
        // its own drops; an eviction only trims a copy whose deletion has not landed yet).
        let (to, restored): (Vec<(String, u8, usize)>, Vec<bool>) = {
            let map = self.lock();
            if map.is_empty() {
                return;
            }
            map.iter()
                .filter(|(_, k)| k.restored.is_none_or(|expires| expires > now))
                .filter_map(|(client, k)| {
                    let granted = k
                        .filters
                        .iter()
                        .filter(|(_, parsed, _)| parsed.matches_str(&*p.topic))
                        .map(|(_, _, q)| p.qos.less_value(*q))
                        .max()?;
                    let cap = if k.restored.is_some() {
                        self.cap
                    } else {
                        self.live_cap
                    };
                    (granted != QoS::AtMostOnce)
                        .then(|| ((client.clone(), granted.value(), cap), k.restored.is_some()))
                })
                .unzip()
        };
        if to.is_empty() {
            return;
        }
        let topic = p.topic.to_string();
        let payload = p.payload.clone();
        let targets = to.clone();
        let Some(evicted) = self
            .write(move |w| store::mqtt::keep(w, &targets, &topic, &payload))
            .await
        else {
            return;
        };
        {
            let mut map = self.lock();
            for (client, _, cap) in &to {
                if let Some(k) = map.get_mut(client) {
                    k.messages = (k.messages + 1).min(*cap as u64);
                }
            }
        }
        let dropped: usize = evicted
            .iter()
            .zip(&restored)
            .filter_map(|(n, restored)| restored.then_some(*n))
            .sum();
        for _ in 0..dropped {
            crate::metrics::mqtt_dropped("queue_full");
        }
        self.publish_count();
    }

    /// The session `id` acknowledged `p`, or the broker dropped it for `id`: its kept copy goes.
    /// The deletion is not waited for (the session's task goes on at once, and the store's
    /// writer commits it with the next messages kept): a restart before it commits sends the
    /// message once more, which at-least-once allows.
    pub(super) async fn done(&self, id: &Id, p: &Publish) {
        if p.qos == QoS::AtMostOnce {
            return;
        }
        let client = id.client_id.to_string();
        if self.lock().get(&client).is_none_or(|k| k.messages == 0) {
            return;
        }
        let Some(store) = self
            .store
            .lock()
            .expect("store slot lock is never poisoned")
            .clone()
        else {
            return;
        };
        let topic = p.topic.to_string();
        let payload = p.payload.clone();
        let sessions = self.sessions.clone();
        // Queued now, so it is applied before the next message's `keep` (which may otherwise
        // find this copy still there, evict another one past the cap and count a drop twice).
        let c = client.clone();
        let deleted = store.write_queued(move |w| store::mqtt::done(w, &c, &topic, &payload));
        tokio::spawn(async move {
            match deleted.await {
                Ok(true) => {
                    if let Some(k) = lock(&sessions).get_mut(&client) {
                        k.messages = k.messages.saturating_sub(1);
                    }
                    publish_count(&sessions);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "mqtt: an acknowledged message's kept copy could not be deleted; it comes again after a restart");
                }
            }
        });
    }
}
