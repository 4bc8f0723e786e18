//! The store's side of sync: this box's cloud identity (enrolment), how far push and pull have
//! got, acknowledging pushed events, and applying what the cloud sends (master data wins,
//! rejections are kept for staff to see). The network side lives in `crate::sync`.

use std::fmt;

use rusqlite::{Connection, OptionalExtension as _};
use sentra_protocol::EntityKind;
use sentra_protocol::ed25519_dalek::SigningKey;
use sentra_protocol::sync::{BookingDecision, ChangeBody, Parked, PullPage};
use serde::Serialize;

use super::{Ctx, DomainError, Result, StoreError, WriteTx, bookings, master, shared};

/// Who this box is to the cloud. The signing key stays in the encrypted store.
#[derive(Clone)]
pub struct Identity {
    pub cloud_url: String,
    pub device_id: String,
    pub branch_id: String,
    pub branch_name: String,
    pub signing_key: SigningKey,
    pub enrolled_at: String,
    /// The release public key (hex) the cloud gave at enrolment: pinned, never replaced by a
    /// later answer. None: the cloud had none (updates need `update.release_public_key`).
    pub release_public_key: Option<String>,
    /// The release channel the cloud named at enrolment.
    pub channel: Option<String>,
}

const RELEASE_KEY_META: &str = "release_public_key";
const CHANNEL_META: &str = "channel";

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("cloud_url", &self.cloud_url)
            .field("device_id", &self.device_id)
            .field("branch_id", &self.branch_id)
            .field("release_public_key", &self.release_public_key)
            .field("channel", &self.channel)
            .field("signing_key", &"<redacted>")
            .finish()
    }
}

pub fn identity(conn: &Connection) -> Result<Option<Identity>> {
    let row: Option<(String, String, String, String, String, String)> = conn
        .query_row("SELECT cloud_url, device_id, branch_id, branch_name, signing_key, enrolled_at FROM cloud_identity WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .optional()?;
    row.map(
        |(cloud_url, device_id, branch_id, branch_name, key, enrolled_at)| {
            let bytes: [u8; 32] = hex::decode(&key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt("cloud_identity.signing_key".into()))?;
            Ok(Identity {
                cloud_url,
                device_id,
                branch_id,
                branch_name,
                signing_key: SigningKey::from_bytes(&bytes),
                enrolled_at,
                release_public_key: super::meta(conn, RELEASE_KEY_META)?,
                channel: super::meta(conn, CHANNEL_META)?,
            })
        },
    )
    .transpose()
}

/// The branch this box serves: the enrolled one, else the configured one.
pub fn branch_id(conn: &Connection, ctx: &Ctx) -> Result<String> {
    Ok(conn
        .prepare_cached("SELECT branch_id FROM cloud_identity WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or_else(|| ctx.branch_id.clone()))
}

/// Keep the identity the cloud gave at enrolment. A box is enrolled once.
pub fn save_identity(w: &mut WriteTx<'_>, id: &Identity) -> Result<()> {
    if identity(w.conn())?.is_some() {
        return Err(DomainError::conflict(
            "already_enrolled",
            "this box is already enrolled; its identity is not replaced",
        )
        .into());
    }
    w.conn().execute(
        "INSERT INTO cloud_identity (id, cloud_url, device_id, branch_id, branch_name, signing_key, enrolled_at) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
        (&id.cloud_url, &id.device_id, &id.branch_id, &id.branch_name, hex::encode(id.signing_key.to_bytes()), &id.enrolled_at),
    )?;
    for (key, value) in [
        (RELEASE_KEY_META, &id.release_public_key),
        (CHANNEL_META, &id.channel),
    ] {
        if let Some(value) = value {
            super::set_meta(w.conn(), key, value)?;
        }
    }
    Ok(())
}

/// Where sync stands, as stored.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SyncState {
    pub last_ack_seq: u64,
    pub last_ack_at: Option<String>,
    pub pull_cursor: u64,
    pub last_pull_at: Option<String>,
    /// Cloud clock minus ours, in milliseconds, as last measured.
    pub clock_skew_ms: i64,
    pub last_error: Option<String>,
    /// Events the cloud parked (failed validation).
    pub parked_events: u64,
}

pub fn state(conn: &Connection) -> Result<SyncState> {
    let mut s = conn.query_row(
        "SELECT last_ack_seq, last_ack_at, pull_cursor, last_pull_at, clock_skew_ms, last_error FROM sync_state WHERE id = 1",
        [],
        |r| {
            Ok(SyncState {
                last_ack_seq: r.get::<_, i64>(0)? as u64,
                last_ack_at: r.get(1)?,
                pull_cursor: r.get::<_, i64>(2)? as u64,
                last_pull_at: r.get(3)?,
                clock_skew_ms: r.get(4)?,
                last_error: r.get(5)?,
                parked_events: 0,
            })
        },
    )?;
    s.parked_events = conn.query_row("SELECT count(*) FROM sync_rejections", [], |r| {
        r.get::<_, i64>(0)
    })? as u64;
    Ok(s)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rejection {
    pub seq: u64,
    pub entity: String,
    pub entity_id: String,
    pub reason: String,
    pub received_at: String,
}

pub fn rejections(conn: &Connection, limit: u32) -> Result<Vec<Rejection>> {
    let mut stmt = conn.prepare_cached("SELECT seq, entity, entity_id, reason, received_at FROM sync_rejections ORDER BY seq DESC LIMIT ?1")?;
    Ok(stmt
        .query_map([limit], |r| {
            Ok(Rejection {
                seq: r.get::<_, i64>(0)? as u64,
                entity: r.get(1)?,
                entity_id: r.get(2)?,
                reason: r.get(3)?,
                received_at: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

fn record_rejections(w: &WriteTx<'_>, parked: &[Parked]) -> Result<()> {
    for p in parked {
        w.conn()
            .prepare_cached("INSERT OR IGNORE INTO sync_rejections (seq, entity, entity_id, reason, received_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute((p.seq as i64, p.entity.as_str(), &p.entity_id, &p.reason, w.now_str()))?;
    }
    Ok(())
}

/// The cloud holds every event up to `cursor`: move the acknowledgement there (never back, never
/// past what exists) and remember what it parked.
pub fn acknowledge(
    w: &mut WriteTx<'_>,
    cursor: u64,
    parked: &[Parked],
    skew_ms: i64,
) -> Result<u64> {
    let conn = w.conn();
    let (last, next): (i64, i64) =
        conn.query_row("SELECT (SELECT last_ack_seq FROM sync_state WHERE id = 1), (SELECT next_seq FROM outbox_state WHERE id = 1)", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let to = (cursor as i64).min(next - 1);
    if to > last {
        let bytes = super::outbox::payload_bytes(conn, last, to)?;
        conn.prepare_cached("UPDATE sync_state SET last_ack_seq = ?1, acked_bytes = acked_bytes + ?2, last_ack_at = ?3, clock_skew_ms = ?4, last_error = NULL WHERE id = 1")?
            .execute((to, bytes, w.now_str(), skew_ms))?;
    }
    record_rejections(w, parked)?;
    Ok(to.max(last) as u64)
}

/// The cloud expects `expected_seq` next but we thought it had more (its database was restored):
/// send again from there.
/// Returns the acknowledgement it leaves.
pub fn rewind(w: &mut WriteTx<'_>, expected_seq: u64) -> Result<u64> {
    let to = expected_seq.saturating_sub(1) as i64;
    let conn = w.conn();
    let bytes = super::outbox::payload_bytes(conn, 0, to)?;
    conn.execute("UPDATE sync_state SET last_ack_seq = ?1, acked_bytes = ?2 WHERE id = 1 AND last_ack_seq > ?1", (to, bytes))?;
    Ok(conn.query_row(
        "SELECT last_ack_seq FROM sync_state WHERE id = 1",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// The cloud holds other events than ours from `fork_seq` on: this store was restored from a
/// backup, and the box it was taken from went on numbering after it. Ours from `fork_seq` on are
/// renumbered, in order and otherwise untouched, to start at `expected` (after everything the
/// cloud holds), and the acknowledgement moves to `expected - 1`: the events before `fork_seq`
/// were found identical, and no event of ours is left in between. Nothing is dropped; the photos
/// waiting on an event follow its new number. The caller checked `fork_seq < expected`.
/// Returns the acknowledgement it leaves.
pub fn renumber_after_fork(w: &mut WriteTx<'_>, fork_seq: u64, expected: u64) -> Result<u64> {
    let conn = w.conn();
    let (last, next): (i64, i64) = conn.query_row(
        "SELECT (SELECT last_ack_seq FROM sync_state WHERE id = 1), (SELECT next_seq FROM outbox_state WHERE id = 1)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // The numbers come from the cloud: each step checked, so a wild answer is an error, not an
    // overflow (or seqs past what SQLite's integers hold).
    let fork = i64::try_from(fork_seq).ok();
    let to = i64::try_from(expected.saturating_sub(1)).ok();
    let shift = fork
        .zip(to)
        .and_then(|(fork, to)| to.checked_add(1)?.checked_sub(fork));
    let fits = |fork: i64, shift: i64| {
        shift > 0 && fork > last && fork < next && next.checked_add(shift).is_some()
    };
    let (Some(fork), Some(to), Some(shift)) = (fork, to, shift) else {
        return Err(StoreError::Corrupt(format!(
            "a fork at seq {fork_seq} with {expected} expected next is out of range"
        )));
    };
    if !fits(fork, shift) {
        return Err(StoreError::Corrupt(format!(
            "a fork at seq {fork_seq} with {expected} expected next does not fit an acknowledgement at {last}"
        )));
    }
    let same = super::outbox::payload_bytes(conn, last, fork - 1)?;
    // Through negative numbers: SQLite checks the key row by row, and a shifted row may land on
    // one not yet moved.
    for table in ["sync_event_logs", "blob_refs"] {
        conn.execute(
            &format!("UPDATE {table} SET seq = -(seq + ?1) WHERE seq >= ?2"),
            (shift, fork),
        )?;
        conn.execute(&format!("UPDATE {table} SET seq = -seq WHERE seq < 0"), [])?;
    }
    super::outbox::shifted(conn, fork, shift)?;
    conn.execute(
        "UPDATE sync_state SET last_ack_seq = ?1, acked_bytes = acked_bytes + ?2, last_ack_at = ?3 WHERE id = 1",
        (to, same, w.now_str()),
    )?;
    Ok(to as u64)
}

/// Apply one pulled page in one transaction: master data (the cloud wins), rejections, shared
/// record fields (later stamp wins), documents (merged) and booking decisions; then move
/// the pull cursor. Returns how many changes were applied.
pub fn apply_pull(w: &mut WriteTx<'_>, page: &PullPage) -> Result<usize> {
    let mut applied = 0;
    for change in &page.changes {
        match &change.body {
            ChangeBody::Part(p) => master::upsert(
                w,
                &[master::Part {
                    sku: p.sku.clone(),
                    name: p.name.clone(),
                    barcode: p.barcode.clone(),
                    price: p.price,
                    unit: p.unit.clone(),
                }],
                &[],
                &[],
            )?,
            ChangeBody::Mechanic(m) => master::upsert(
                w,
                &[],
                &[master::Mechanic {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    active: m.active,
                }],
                &[],
            )?,
            ChangeBody::Asset(a) => master::upsert(
                w,
                &[],
                &[],
                &[master::Asset {
                    id: a.id.clone(),
                    sku: a.sku.clone(),
                    plate: a.plate.clone(),
                    name: a.name.clone(),
                }],
            )?,
            ChangeBody::Rejection(p) => {
                record_rejections(w, std::slice::from_ref(p))?;
                // A booking request the cloud could not even read is refused like a taken one.
                if p.entity == EntityKind::Booking.as_str() {
                    bookings::apply_decision(
                        w,
                        &BookingDecision {
                            booking_id: p.entity_id.clone(),
                            state: "REJECTED".into(),
                            cloud_id: None,
                            expires_at: None,
                            code: Some("parked".into()),
                            reason: Some(p.reason.clone()),
                        },
                    )?;
                }
            }
            ChangeBody::BookingDecision(d) => {
                bookings::apply_decision(w, d)?;
            }
            ChangeBody::Tariff(t) => {
                if !super::rentals::upsert_tariff(w, t)? {
                    continue;
                }
            }
            ChangeBody::Staff(s) => {
                if !super::staff::upsert_staff(w, s)? {
                    continue;
                }
            }
            // A record or document this build cannot use is skipped (and logged) rather than
            // stalling every later change behind it.
            ChangeBody::Field(f) => {
                if !shared::apply_pulled_field(w, f)? {
                    continue;
                }
            }
            ChangeBody::Document(d) => {
                if !shared::apply_pulled_document(w, d)? {
                    continue;
                }
            }
        }
        applied += 1;
    }
    w.conn().execute(
        "UPDATE sync_state SET pull_cursor = max(pull_cursor, ?1), last_pull_at = ?2 WHERE id = 1",
        (page.cursor as i64, w.now_str()),
    )?;
    Ok(applied)
}

/// Remember the last failure and the measured skew (shown by `status`).
pub fn record_attempt(w: &mut WriteTx<'_>, error: Option<&str>, skew_ms: i64) -> Result<()> {
    w.conn().execute(
        "UPDATE sync_state SET last_error = ?1, clock_skew_ms = ?2 WHERE id = 1",
        (error, skew_ms),
    )?;
    w.ctx().clock.set_offset_ms(skew_ms);
    Ok(())
}
