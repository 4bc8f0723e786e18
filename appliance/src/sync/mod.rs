//! The sync daemon: the only code (with `update`) that talks to the cloud.
//!
//! Push reads the outbox in `seq` order in batches bounded in bytes, sends each signed, and moves
//! the acknowledgement to the cloud's cursor; an interrupted batch is simply sent again (the cloud
//! skips what it has). Pull pages through the branch's change log and applies each page in one
//! transaction. While the link is down it retries with jittered backoff capped at
//! `sync.retry_max_ms`, so a returning link is used within seconds; new outbox events wake it at
//! once. Memory is two batches (the one in flight, the next read meanwhile), whatever the
//! backlog. When a pull is due it also fetches the calendar of the branch's assets (availability
//! while offline).
//!
//! The API asks the cloud directly only for what cannot wait for the outbox (a booking at the
//! counter, availability) and only through [`booking`], with the client this daemon built and
//! shared in [`SyncHandle`] and a short bound (`sync.booking_timeout_ms`).

pub mod backups;
pub mod blobs;
pub mod booking;
pub mod client;
pub mod heartbeat;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use client::{CloudClient, PushOutcome, SyncError};

use crate::backoff::Backoff;
use crate::config::SyncConfig;
use crate::store::{self, Store, sync as state};

/// How many changes to ask for per pull page.
const PULL_PAGE: u32 = 1000;
/// How often an un-enrolled box looks again for the identity `enroll` writes.
const ENROLL_POLL: Duration = Duration::from_secs(2);
/// After a refusal that retrying soon cannot fix (revoked, protocol mismatch): look again later.
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// The link as the daemon sees it now (not stored: it is about this process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// No identity yet: changes wait in the outbox.
    Unenrolled,
    /// Enrolled, first attempt not finished.
    Connecting,
    Online,
    /// The link or the cloud is down; retrying.
    Offline,
    /// The cloud refuses this box (revoked, or something retrying cannot fix).
    Refused,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkStatus {
    pub state: LinkState,
    pub cloud_url: Option<String>,
    /// Since when the link has been in this state.
    pub since: String,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
}

/// Shared between the daemon and the API: the link's state, and the daemon's signed client once
/// it has one (for [`booking`]).
#[derive(Debug, Clone)]
pub struct SyncHandle {
    status: Arc<Mutex<LinkStatus>>,
    client: Arc<Mutex<Option<(CloudClient, String)>>>,
    /// Wakes the photo uploader: a new photo, or events acknowledged (photos may now go up).
    uploader: Arc<tokio::sync::Notify>,
}

impl Default for SyncHandle {
    fn default() -> Self {
        Self {
            status: Arc::new(Mutex::new(LinkStatus {
                state: LinkState::Unenrolled,
                cloud_url: None,
                since: store::format_time(time::OffsetDateTime::now_utc()),
                last_success_at: None,
                last_error: None,
            })),
            client: Arc::new(Mutex::new(None)),
            uploader: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

impl SyncHandle {
    pub fn get(&self) -> LinkStatus {
        self.status
            .lock()
            .expect("link status lock is never poisoned")
            .clone()
    }

    /// Tell the photo uploader to look again.
    pub fn wake_uploader(&self) {
        self.uploader.notify_one();
    }

    /// The daemon's client and the branch it serves, if enrolled.
    fn client(&self) -> Option<(CloudClient, String)> {
        self.client
            .lock()
            .expect("client lock is never poisoned")
            .clone()
    }

    fn set_client(&self, client: CloudClient, branch: String) {
        *self.client.lock().expect("client lock is never poisoned") = Some((client, branch));
    }

    fn set(&self, state: LinkState, error: Option<String>) {
        let mut s = self
            .status
            .lock()
            .expect("link status lock is never poisoned");
        let now = store::format_time(time::OffsetDateTime::now_utc());
        if s.state != state {
            if state == LinkState::Offline || state == LinkState::Online {
                tracing::info!(from = ?s.state, to = ?state, error = error.as_deref().unwrap_or(""), "sync link");
            }
            s.state = state;
            s.since = now.clone();
        }
        if state == LinkState::Online {
            s.last_success_at = Some(now);
            s.last_error = None;
        } else if error.is_some() {
            s.last_error = error;
        }
        crate::metrics::sync_link(state == LinkState::Online);
    }

    fn set_url(&self, url: &str) {
        self.status
            .lock()
            .expect("link status lock is never poisoned")
            .cloud_url = Some(url.to_owned());
    }
}

/// Run until `cancel`.
pub async fn run(
    store: Store,
    cfg: SyncConfig,
    handle: SyncHandle,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut notices = store.subscribe();
    loop {
        let identity = loop {
            match store.read(state::identity).await? {
                Some(i) => break i,
                None => {
                    handle.set(LinkState::Unenrolled, None);
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(ENROLL_POLL) => {}
                    }
                }
            }
        };
        handle.set_url(&identity.cloud_url);
        let client = match CloudClient::new(&cfg, &identity, store.ctx().clock.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "sync cannot start");
                handle.set(LinkState::Refused, Some(e.to_string()));
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(REFUSED_RETRY) => continue,
                }
            }
        };
        handle.set_client(client.clone(), identity.branch_id.clone());
        if handle.get().state == LinkState::Unenrolled {
            handle.set(LinkState::Connecting, None);
        }
        let mut backoff =
            Backoff::new(client::FIRST_RETRY, Duration::from_millis(cfg.retry_max_ms));
        let mut last_pull: Option<Instant> = None;
        let pull_every = Duration::from_secs(cfg.pull_interval_secs);
        loop {
            let pull_due = last_pull.is_none_or(|t| t.elapsed() >= pull_every);
            let wait = match round(&store, &client, &identity, &cfg, pull_due, &handle).await {
                Ok(()) => {
                    backoff.reset();
                    handle.wake_uploader();
                    if pull_due {
                        last_pull = Some(Instant::now());
                    }
                    handle.set(LinkState::Online, None);
                    None
                }
                Err(e) => {
                    let transient = e.is_transient();
                    crate::metrics::sync_error(e.kind());
                    handle.set(
                        if transient {
                            LinkState::Offline
                        } else {
                            LinkState::Refused
                        },
                        Some(e.to_string()),
                    );
                    let msg = e.to_string();
                    let skew = store.ctx().clock.offset_ms();
                    let _ = store
                        .write(move |w| state::record_attempt(w, Some(&msg), skew))
                        .await;
                    if !transient {
                        tracing::warn!(error = %e, "sync refused; trying again in a minute");
                    }
                    Some(if transient {
                        backoff.next_wait()
                    } else {
                        REFUSED_RETRY
                    })
                }
            };
            let until_pull =
                last_pull.map_or(Duration::ZERO, |t| pull_every.saturating_sub(t.elapsed()));
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait.unwrap_or(until_pull)) => {}
                // New changes: push now (while online; offline, the backoff decides).
                r = notices.recv(), if wait.is_none() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        return Ok(());
                    }
                    // Let a burst of writes land so they travel in one batch.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while notices.try_recv().is_ok() {}
                }
            }
        }
    }
}

/// Push everything pending, then pull if due.
async fn round(
    store: &Store,
    client: &CloudClient,
    identity: &state::Identity,
    cfg: &SyncConfig,
    pull_due: bool,
    handle: &SyncHandle,
) -> Result<(), SyncError> {
    // Only this task moves the acknowledgement and the pull cursor: read them once per round and
    // follow them from the answers, not with a store read per batch.
    let (mut from, mut cursor) = store
        .read(|c| state::state(c).map(|s| (s.last_ack_seq, s.pull_cursor)))
        .await?;
    let (max_events, max_bytes) = (cfg.batch_events, cfg.batch_bytes);
    let read_after =
        move |from| move |c: &_| store::outbox::events_after(c, from, max_events, max_bytes);
    // The batch after the one in flight, read while the cloud works on that one (a backlog's
    // drain then costs the cloud's time, not the cloud's plus the store's). Used only when the
    // cloud took the whole batch in flight: every other answer moves `from` elsewhere. Empty, it
    // ends the round like a fresh read would: an event committed after it is announced after
    // its commit, and that notice starts the next round. Only once the cloud has answered in
    // this round: a box whose link is down reads one batch per attempt, not two.
    let mut ahead: Option<Vec<sentra_protocol::Event>> = None;
    let mut answered = false;
    loop {
        let mut events = match ahead.take() {
            Some(events) => events,
            None => store.read(read_after(from)).await?,
        };
        if events.is_empty() {
            break;
        }
        let (first, last) = (events[0].seq, events[events.len() - 1].seq);
        for e in &mut events {
            // On the wire the device is the enrolled identity.
            e.device_id.clone_from(&identity.device_id);
        }
        let n = events.len();
        let read_ahead = async {
            if answered {
                store.read(read_after(last)).await.ok()
            } else {
                None
            }
        };
        let (outcome, next) = tokio::join!(client.push(events), read_ahead);
        answered = true;
        match outcome? {
            PushOutcome::Ack(ack) => {
                // The link works: say so now, not only after a long drain.
                handle.set(LinkState::Online, None);
                crate::metrics::sync_pushed(n as u64);
                if !ack.parked.is_empty() {
                    tracing::warn!(count = ack.parked.len(), first = ack.parked[0].seq, reason = %ack.parked[0].reason, "cloud parked events");
                }
                let skew = store.ctx().clock.offset_ms();
                // Never past this batch: the cloud vouched for these events only, and a
                // restored store's later ones may carry numbers the cloud holds other events
                // under (the next batch finds that out).
                let cursor = ack.cursor.min(last);
                let acked = store
                    .write(move |w| state::acknowledge(w, cursor, &ack.parked, skew))
                    .await?;
                from = acked;
                // Outbox rows past the acknowledgement change only in this task (renumbering
                // after a fork, a rewind): what was read ahead is still what the store holds.
                ahead = next.filter(|_| acked == last);
                if acked < last {
                    // The cloud holds less than we sent without saying why: do not spin.
                    return Err(SyncError::Protocol {
                        status: 200,
                        detail: format!("sent {first}..={last}, cloud acknowledged up to {acked}"),
                    });
                }
            }
            PushOutcome::Fork { fork_seq, expected } => {
                if !(first..=last).contains(&fork_seq) || expected <= fork_seq {
                    return Err(SyncError::Protocol {
                        status: 409,
                        detail: format!(
                            "sent {first}..={last}, cloud says fork at {fork_seq} expecting {expected}"
                        ),
                    });
                }
                // Restored from a backup: the cloud holds what the old box did after it under
                // the same numbers. Ours move after the cloud's; none is taken for a duplicate.
                tracing::warn!(
                    fork_seq,
                    expected,
                    "the cloud holds other events under our sequence numbers (was this store restored?); renumbering ours after them"
                );
                from = store
                    .write(move |w| state::renumber_after_fork(w, fork_seq, expected))
                    .await?;
            }
            PushOutcome::Gap(expected) if expected > first => {
                // A cloud that holds events we re-sent answers with an acknowledgement (same
                // content) or a fork (other content), never a gap ahead of them. Moving our
                // acknowledgement there unchecked is how a restored box lost its new events:
                // stop and say so instead (the next round tries again).
                return Err(SyncError::Protocol {
                    status: 409,
                    detail: format!(
                        "sent {first}..={last}, the cloud expects {expected} without checking what it holds; not moving the acknowledgement"
                    ),
                });
            }
            PushOutcome::Gap(expected) => {
                tracing::warn!(
                    expected,
                    first,
                    "cloud expects earlier events (was it restored?); sending again from there"
                );
                from = store.write(move |w| state::rewind(w, expected)).await?;
            }
        }
    }
    if pull_due {
        loop {
            let page = client.pull(cursor, PULL_PAGE).await?;
            let more = page.more && page.cursor > cursor;
            cursor = cursor.max(page.cursor);
            store.write(move |w| state::apply_pull(w, &page)).await?;
            if !more {
                break;
            }
        }
        match client.calendar().await {
            Ok(snapshot) => {
                store
                    .write(move |w| store::bookings::replace_calendar(w, &snapshot))
                    .await?;
            }
            // A cloud from before bookings: nothing to keep.
            Err(SyncError::Refused { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What `enroll` did: the identity, and for a successor what it took over.
#[derive(Debug)]
pub struct Enrolled {
    pub identity: state::Identity,
    /// The number series the cloud handed this box (None: the branch's first box).
    pub number_series: Option<String>,
    /// With `--replaces`: the open state loaded from the cloud.
    pub loaded: Option<store::successor::Loaded>,
}

/// `sentra-edge enroll`: make a key pair here, trade the token for an identity, keep both in the
/// encrypted store. Retries an unreachable cloud a few times, saying why.
///
/// With `replaces` (a dead box of the same branch) the store must be fresh (checked before the
/// token is used, and again in the transaction); the cloud retires that box, and this one fetches
/// the branch's open state and loads it in the same transaction that saves its identity, so the
/// daemon never syncs a successor without it.
pub async fn enroll(
    store: &Store,
    cfg: &SyncConfig,
    cloud_url: &str,
    token: &str,
    replaces: Option<&str>,
    attempts: u32,
    say: impl Fn(&str),
) -> Result<Enrolled, SyncError> {
    if let Some(i) = store.read(state::identity).await? {
        return Err(SyncError::Refused {
            status: 409,
            code: "already_enrolled".into(),
            message: format!(
                "this box is already enrolled as device {} of branch {}",
                i.device_id, i.branch_id
            ),
        });
    }
    if replaces.is_some()
        && let Err(why) = store.read(store::successor::check_fresh).await?
    {
        return Err(SyncError::Refused {
            status: 409,
            code: "not_fresh".into(),
            message: why,
        });
    }
    let url = client::check_url(cloud_url, cfg.allow_plain_http)?;
    let mut seed = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut seed);
    let key = sentra_protocol::ed25519_dalek::SigningKey::from_bytes(&seed);
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "sentra-edge".into());
    let mut backoff = Backoff::new(
        client::FIRST_RETRY,
        Duration::from_millis(cfg.retry_max_ms.max(2_000)),
    );
    let mut attempt = 1;
    let answer = loop {
        match client::enroll(cfg, &url, token, &key, &hostname, replaces).await {
            Ok(a) => break a,
            Err(e) if e.is_transient() && attempt < attempts => {
                let wait = backoff.next_wait();
                say(&format!(
                    "attempt {attempt}/{attempts}: {e}; is the box online and the URL right? retrying in {:.1} s",
                    wait.as_secs_f64()
                ));
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    if let Ok(server) = i64::try_from(answer.server_time_ms) {
        store.ctx().clock.set_offset_ms(
            server - (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
        );
    }
    // Pinned only if it is a key: a garbled one would refuse every release as surely as none,
    // and `doctor` says so either way.
    let release_public_key =
        answer.release_public_key.and_then(
            |hex_key| match sentra_protocol::auth::parse_public_key(&hex_key) {
                Ok(key) => Some(hex::encode(key.as_bytes())),
                Err(_) => {
                    tracing::warn!(
                        "the cloud's release key is not an ed25519 public key; not pinned"
                    );
                    None
                }
            },
        );
    // A series the cloud vouches for, or none (a branch's first box): anything else would put
    // numbers on receipts that no rule checked.
    let number_series = match answer.number_series {
        Some(series) if sentra_protocol::successor::is_number_series(&series) => Some(series),
        Some(series) => {
            return Err(SyncError::Protocol {
                status: 200,
                detail: format!(
                    "the enrolment answer's number series {series:?} is not 4 Crockford base-32 characters"
                ),
            });
        }
        None => None,
    };
    let identity = state::Identity {
        cloud_url: url,
        device_id: answer.device_id,
        branch_id: answer.branch_id,
        branch_name: answer.branch_name,
        signing_key: key,
        enrolled_at: store::format_time(time::OffsetDateTime::now_utc()),
        release_public_key,
        channel: answer.channel,
    };
    let snapshot = match replaces {
        None => None,
        Some(old) => {
            if answer.replaces.as_deref() != Some(old) {
                return Err(SyncError::Protocol {
                    status: 200,
                    detail: format!(
                        "asked to replace {old}, the cloud's answer names {:?}",
                        answer.replaces
                    ),
                });
            }
            let Some(series) = &number_series else {
                return Err(SyncError::Protocol {
                    status: 200,
                    detail: "the cloud gave a successor no number series".into(),
                });
            };
            let client = CloudClient::new(cfg, &identity, store.ctx().clock.clone())?;
            Some(
                fetch_snapshot(&client, old, series, attempts, &say)
                    .await
                    .map_err(|e| successor_unfinished(&identity.device_id, e))?,
            )
        }
    };
    let saved = identity.clone();
    let series = number_series.clone();
    let loaded = store
        .write(move |w| {
            state::save_identity(w, &saved)?;
            if let Some(series) = &series {
                store::successor::pin_number_series(w, series)?;
            }
            snapshot
                .map(|snapshot| store::successor::load(w, &snapshot))
                .transpose()
        })
        .await?;
    Ok(Enrolled {
        identity,
        number_series,
        loaded,
    })
}

/// A successor enrolled in the cloud whose snapshot did not arrive: its token is used and the
/// dead box retired, so the way on is a new token and this (never used) identity to replace.
fn successor_unfinished(device: &str, e: SyncError) -> SyncError {
    // Not transient: the token is used, so trying the same command again cannot help.
    SyncError::Refused {
        status: 409,
        code: "snapshot_failed".into(),
        message: format!(
            "the cloud enrolled this box as device {device}, but the branch's open state could not be fetched ({e}); nothing was saved here. Ask for a new enrolment token and run enroll again with --replaces {device}"
        ),
    }
}

/// Every page of every section, each checked before it is kept; a page that fails for the
/// link is asked again (up to `attempts` times), with the same key.
async fn fetch_snapshot(
    client: &CloudClient,
    predecessor: &str,
    number_series: &str,
    attempts: u32,
    say: &impl Fn(&str),
) -> Result<store::successor::Snapshot, SyncError> {
    use sentra_protocol::successor::{DEFAULT_PAGE, MAX_SNAPSHOT_ROWS, Section};
    let mut snapshot = store::successor::Snapshot {
        predecessor: predecessor.to_owned(),
        number_series: number_series.to_owned(),
        ..Default::default()
    };
    for section in Section::ALL {
        let mut after: Option<String> = None;
        loop {
            let mut attempt = 1;
            let page = loop {
                match client
                    .successor_page(section, after.as_deref(), DEFAULT_PAGE)
                    .await
                {
                    Ok(page) => break page,
                    Err(e) if e.is_transient() && attempt < attempts => {
                        say(&format!(
                            "snapshot {} (attempt {attempt}/{attempts}): {e}; retrying",
                            section.as_str()
                        ));
                        tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            };
            page.check(section, predecessor, number_series)
                .map_err(|e| SyncError::Protocol {
                    status: 200,
                    detail: e.to_string(),
                })?;
            let rows =
                page.parts.len() + page.mechanics.len() + page.work_orders.len() + page.stock.len();
            // A page that promises more brings rows and moves the key (and the row bound below
            // ends any longer circle): a cloud going round in circles is an error, not a hang.
            if let Some(next) = &page.next
                && (rows == 0 || after.as_ref() == Some(next))
            {
                return Err(SyncError::Protocol {
                    status: 200,
                    detail: format!(
                        "successor snapshot, section {}: page key {next:?} does not move on",
                        section.as_str()
                    ),
                });
            }
            let next = page.next.clone();
            snapshot.parts.extend(page.parts);
            snapshot.mechanics.extend(page.mechanics);
            snapshot.work_orders.extend(page.work_orders);
            snapshot.stock.extend(page.stock);
            if snapshot.rows() > MAX_SNAPSHOT_ROWS {
                return Err(SyncError::Protocol {
                    status: 200,
                    detail: format!(
                        "the successor snapshot holds more than {MAX_SNAPSHOT_ROWS} rows; this box cannot take it in one transaction"
                    ),
                });
            }
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    Ok(snapshot)
}
