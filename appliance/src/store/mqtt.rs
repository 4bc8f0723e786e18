//! The broker's persistent MQTT sessions (`crate::broker::persist` keeps them here): each
//! session that outlives its connection, its subscriptions, and the QoS 1/2 messages routed to
//! it that it has not acknowledged; and its retained messages. The box's own state: not
//! synced, no event.
//!
//! Invariants:
//! - a message is here from before the broker hands it to the session until the session
//!   acknowledges it (or the broker drops it, counted), so a restart or a power cut in between
//!   loses nothing that was routed to the session;
//! - at most `cap` messages a session (the oldest go first, as in the broker's own queue);
//! - a session past its expiry is deleted with its subscriptions and messages at the next start.

use rusqlite::{Connection, OptionalExtension};

use super::{Result, WriteTx};

/// A kept session as the broker finds it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub client_id: String,
    /// Unix seconds after which it is gone unless its client came back.
    pub expires_at: i64,
    /// Topic filter and QoS of each subscription.
    pub subscriptions: Vec<(String, u8)>,
    /// How many messages it kept.
    pub messages: u64,
}

/// A kept message, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub qos: u8,
    pub payload: Vec<u8>,
}

/// At start: deletes the sessions past their expiry (with what they kept), counts the ones a
/// connection held when the daemon stopped as disconnected `now`, and returns the rest.
pub fn restore(w: &mut WriteTx<'_>, now: i64) -> Result<Vec<Session>> {
    let conn = w.conn();
    conn.execute(
        "DELETE FROM mqtt_sessions WHERE connected = 0 AND seen_at + expiry_secs <= ?1",
        [now],
    )?;
    conn.execute(
        "UPDATE mqtt_sessions SET connected = 0, seen_at = ?1 WHERE connected = 1",
        [now],
    )?;
    let mut sessions: Vec<Session> = conn
        .prepare(
            "SELECT client_id, seen_at + expiry_secs,
                    (SELECT count(*) FROM mqtt_messages m WHERE m.client_id = s.client_id)
             FROM mqtt_sessions s ORDER BY client_id",
        )?
        .query_map([], |r| {
            Ok(Session {
                client_id: r.get(0)?,
                expires_at: r.get(1)?,
                subscriptions: Vec::new(),
                messages: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut subs = conn.prepare(
        "SELECT filter, qos FROM mqtt_subscriptions WHERE client_id = ?1 ORDER BY filter",
    )?;
    for session in &mut sessions {
        session.subscriptions = subs
            .query_map([&session.client_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(sessions)
}

/// The session `client_id` connected (`connected`) or disconnected at `now`; made if new.
pub fn seen(
    w: &mut WriteTx<'_>,
    client_id: &str,
    expiry_secs: u64,
    connected: bool,
    now: i64,
) -> Result<()> {
    w.conn().execute(
        "INSERT INTO mqtt_sessions (client_id, expiry_secs, connected, seen_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (client_id) DO UPDATE
         SET expiry_secs = excluded.expiry_secs, connected = excluded.connected,
             seen_at = excluded.seen_at",
        (
            client_id,
            // MQTT's own bound (a u32 of seconds), so `seen_at + expiry_secs` stays an integer
            // whatever the configuration says.
            i64::from(u32::try_from(expiry_secs).unwrap_or(u32::MAX).max(1)),
            connected,
            now,
        ),
    )?;
    Ok(())
}

/// The session subscribed to `filter` (replacing an earlier subscription to it).
pub fn subscribe(w: &mut WriteTx<'_>, client_id: &str, filter: &str, qos: u8) -> Result<()> {
    w.conn().execute(
        "INSERT INTO mqtt_subscriptions (client_id, filter, qos) VALUES (?1, ?2, ?3)
         ON CONFLICT (client_id, filter) DO UPDATE SET qos = excluded.qos",
        (client_id, filter, qos),
    )?;
    Ok(())
}

pub fn unsubscribe(w: &mut WriteTx<'_>, client_id: &str, filter: &str) -> Result<()> {
    w.conn().execute(
        "DELETE FROM mqtt_subscriptions WHERE client_id = ?1 AND filter = ?2",
        (client_id, filter),
    )?;
    Ok(())
}

/// The session ended (a clean start, its expiry): it goes with everything it kept.
pub fn forget(w: &mut WriteTx<'_>, client_id: &str) -> Result<()> {
    w.conn().execute(
        "DELETE FROM mqtt_sessions WHERE client_id = ?1",
        [client_id],
    )?;
    Ok(())
}

/// Every kept session and message goes (a restore from backup); nothing to do in a store from
/// before the tables existed.
pub fn forget_all(conn: &Connection) -> Result<()> {
    let has: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'mqtt_sessions')",
        [],
        |r| r.get(0),
    )?;
    if has {
        conn.execute_batch(
            "DELETE FROM mqtt_messages; DELETE FROM mqtt_subscriptions; DELETE FROM mqtt_sessions;
             DELETE FROM mqtt_retained;",
        )?;
    }
    Ok(())
}

/// Keeps one message for each of `to` (client id, the QoS it gets, how many that session may
/// keep at most): for each, how many of its older messages made room.
pub fn keep(
    w: &mut WriteTx<'_>,
    to: &[(String, u8, usize)],
    topic: &str,
    payload: &[u8],
) -> Result<Vec<usize>> {
    let conn = w.conn();
    let mut insert = conn.prepare_cached(
        "INSERT INTO mqtt_messages (client_id, topic, qos, payload)
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM mqtt_sessions WHERE client_id = ?1)",
    )?;
    let mut evict = conn.prepare_cached(
        "DELETE FROM mqtt_messages WHERE client_id = ?1 AND id <= (
             SELECT id FROM mqtt_messages WHERE client_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?;
    let mut evicted = Vec::with_capacity(to.len());
    for (client_id, qos, cap) in to {
        insert.execute((client_id, topic, qos, payload))?;
        let cap = i64::try_from((*cap).max(1)).unwrap_or(i64::MAX);
        evicted.push(evict.execute((client_id, cap))?);
    }
    Ok(evicted)
}

/// The session acknowledged (or the broker dropped) a message: its oldest kept copy goes.
/// Whether there was one.
pub fn done(w: &mut WriteTx<'_>, client_id: &str, topic: &str, payload: &[u8]) -> Result<bool> {
    let id: Option<i64> = w
        .conn()
        .prepare_cached(
            "SELECT id FROM mqtt_messages WHERE client_id = ?1 AND topic = ?2 AND payload = ?3
             ORDER BY id LIMIT 1",
        )?
        .query_row((client_id, topic, payload), |r| r.get(0))
        .optional()?;
    if let Some(id) = id {
        w.conn()
            .execute("DELETE FROM mqtt_messages WHERE id = ?1", [id])?;
    }
    Ok(id.is_some())
}

/// What the session `client_id` kept, oldest first.
pub fn messages(conn: &Connection, client_id: &str) -> Result<Vec<Message>> {
    Ok(conn
        .prepare("SELECT topic, qos, payload FROM mqtt_messages WHERE client_id = ?1 ORDER BY id")?
        .query_map([client_id], |r| {
            Ok(Message {
                topic: r.get(0)?,
                qos: r.get(1)?,
                payload: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// How many messages all sessions keep.
pub fn kept(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row("SELECT count(*) FROM mqtt_messages", [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A retained message as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    pub topic: String,
    pub qos: u8,
    pub payload: Vec<u8>,
    /// Unix seconds, if it expires.
    pub expires_at: Option<i64>,
}

/// The topic's retained message is now `r` (an empty payload deletes it).
pub fn retain(w: &mut WriteTx<'_>, r: &Retained) -> Result<()> {
    if r.payload.is_empty() {
        w.conn()
            .execute("DELETE FROM mqtt_retained WHERE topic = ?1", [&r.topic])?;
    } else {
        w.conn().execute(
            "INSERT INTO mqtt_retained (topic, qos, payload, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (topic) DO UPDATE
             SET qos = excluded.qos, payload = excluded.payload, expires_at = excluded.expires_at",
            (&r.topic, r.qos, &r.payload, r.expires_at),
        )?;
    }
    Ok(())
}

/// At start: the retained messages not expired at `now` (the expired ones are deleted).
pub fn retained(w: &mut WriteTx<'_>, now: i64) -> Result<Vec<Retained>> {
    let conn = w.conn();
    conn.execute(
        "DELETE FROM mqtt_retained WHERE expires_at IS NOT NULL AND expires_at <= ?1",
        [now],
    )?;
    Ok(conn
        .prepare("SELECT topic, qos, payload, expires_at FROM mqtt_retained ORDER BY topic")?
        .query_map([], |r| {
            Ok(Retained {
                topic: r.get(0)?,
                qos: r.get(1)?,
                payload: r.get(2)?,
                expires_at: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}
