//! Rollouts: a release offered to a channel's devices in waves (named canaries first, then
//! growing percentages of the channel chosen by `fleet_bucket`), going on when a wave's success
//! share is reached and halting itself when failures pass the threshold.
//!
//! Invariants:
//! - every decision about a rollout (a device's progress, the next wave, a halt) is made in the
//!   transaction that holds the rollout's row lock, so replicas never decide twice;
//! - shares are counted over every device admitted so far (waves 0..=current), whether or not it
//!   has reported: a silent device holds a rollout back, it never pushes it on;
//! - a halted or aborted rollout offers nothing to anyone; a paused one offers only to devices it
//!   had already told;
//! - a device that failed is not offered the same rollout again, unless an operator resumes the
//!   halted rollout (with a reason: what was fixed), which gives its failed devices another try
//!   and counts the halt threshold afresh;
//! - what happens to a rollout (started, widened, a wave opened, halted, completed, an operator's
//!   pause, resume or abort) is appended to `rollout_events` in the transaction that does it.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use sentra_protocol::fleet::{Heartbeat, TargetRelease, UpdateState};

use crate::web::ApiError;

/// Percentages a rollout goes through when none are given: a tenth, half, then the whole
/// channel, cut at the requested percentage.
pub const DEFAULT_WAVES: [i32; 3] = [10, 50, 100];
/// Share of admitted devices that must be on the new version before the next wave starts.
pub const DEFAULT_SUCCESS_THRESHOLD_PCT: i32 = 90;
/// Share of admitted devices whose update failed (failure, rolled back, unhealthy after) that
/// halts the rollout. Low: three canaries and one bad box is enough to stop.
pub const DEFAULT_FAILURE_THRESHOLD_PCT: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<RolloutError> for ApiError {
    fn from(error: RolloutError) -> Self {
        match error {
            RolloutError::Invalid(message) => ApiError::Invalid(message),
            RolloutError::NotFound(message) => ApiError::NotFound(message),
            RolloutError::Conflict(message) => ApiError::Conflict {
                code: "rollout_state",
                message,
                details: None,
            },
            RolloutError::Db(error) => ApiError::database(&error),
        }
    }
}

/// What `rollout --channel C --percent P` asks for.
#[derive(Debug, Clone)]
pub struct Plan {
    pub channel: String,
    pub percent: i32,
    /// None: the newest release published on the channel.
    pub version: Option<String>,
    pub canaries: Vec<String>,
    /// None: [`DEFAULT_WAVES`] below `percent`, then `percent`.
    pub waves: Option<Vec<i32>>,
    pub success_threshold_pct: i32,
    pub failure_threshold_pct: i32,
    pub by: String,
}

/// A rollout's row and counts, as the fleet page and JSON show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RolloutSummary {
    pub id: String,
    pub channel: String,
    pub version: String,
    pub state: String,
    pub reason: Option<String>,
    pub waves: Vec<i32>,
    pub current_wave: i32,
    pub success_threshold_pct: i32,
    pub failure_threshold_pct: i32,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// Devices of the channel when it started (and enrolled since).
    pub devices: i64,
    /// In waves 0..=current_wave.
    pub admitted: i64,
    pub pending: i64,
    pub offered: i64,
    pub updating: i64,
    pub succeeded: i64,
    pub failed: i64,
}

pub const SUMMARY_SQL: &str = "
    SELECT r.id::text, r.channel, r.version, r.state, r.reason, r.waves, r.current_wave,
           r.success_threshold_pct, r.failure_threshold_pct, r.created_by,
           to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at,
           to_char(r.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS updated_at,
           count(d.device_id) AS devices,
           count(d.device_id) FILTER (WHERE d.wave <= r.current_wave) AS admitted,
           count(d.device_id) FILTER (WHERE d.wave <= r.current_wave AND d.state = 'pending') AS pending,
           count(d.device_id) FILTER (WHERE d.state = 'offered') AS offered,
           count(d.device_id) FILTER (WHERE d.state = 'updating') AS updating,
           count(d.device_id) FILTER (WHERE d.state = 'succeeded') AS succeeded,
           count(d.device_id) FILTER (WHERE d.state = 'failed') AS failed
    FROM rollouts r LEFT JOIN rollout_devices d ON d.rollout_id = r.id";

pub async fn summary(db: &PgPool, id: &str) -> Result<RolloutSummary, RolloutError> {
    let uuid = parse_id(id)?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SUMMARY_SQL} WHERE r.id = $1::uuid GROUP BY r.id"
    )))
    .bind(uuid)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| RolloutError::NotFound(format!("no rollout {id}")))
}

/// Live rollouts first, then the most recent ones.
pub async fn recent(db: &PgPool, limit: i64) -> Result<Vec<RolloutSummary>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SUMMARY_SQL} GROUP BY r.id
         ORDER BY (r.state IN ('running', 'paused', 'halted')) DESC, r.created_at DESC LIMIT $1"
    )))
    .bind(limit)
    .fetch_all(db)
    .await
}

fn parse_id(id: &str) -> Result<String, RolloutError> {
    uuid::Uuid::parse_str(id)
        .map(|uuid| uuid.hyphenated().to_string())
        .map_err(|_| RolloutError::NotFound(format!("no rollout {id}")))
}

/// The waves a plan asks for, checked: ascending percentages from 1 to 100, ending at `percent`.
pub fn waves_for(percent: i32, waves: Option<&[i32]>) -> Result<Vec<i32>, String> {
    if !(1..=100).contains(&percent) {
        return Err(format!("--percent {percent}: expected 1 to 100"));
    }
    let mut out: Vec<i32> = match waves {
        Some(waves) => waves.to_vec(),
        None => DEFAULT_WAVES.into_iter().filter(|&p| p < percent).collect(),
    };
    if out.last() != Some(&percent) {
        out.push(percent);
    }
    if out.windows(2).any(|pair| pair[0] >= pair[1]) || out.iter().any(|p| !(1..=100).contains(p)) {
        return Err(format!(
            "waves {out:?}: expected ascending percentages from 1 to 100 ending at --percent {percent}"
        ));
    }
    Ok(out)
}

/// `rollout --channel C --percent P`: starts a rollout, or widens the channel's current one of
/// the same version to `P` percent (a completed rollout goes on running). Returns its id.
pub async fn start(db: &PgPool, plan: &Plan) -> Result<String, RolloutError> {
    sentra_protocol::fleet::check_channel(&plan.channel).map_err(RolloutError::Invalid)?;
    for (name, value) in [
        ("--success-threshold", plan.success_threshold_pct),
        ("--failure-threshold", plan.failure_threshold_pct),
    ] {
        if !(1..=100).contains(&value) {
            return Err(RolloutError::Invalid(format!(
                "{name} {value}: expected a percentage from 1 to 100"
            )));
        }
    }
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('rollout:' || $1))")
        .bind(&plan.channel)
        .execute(&mut *tx)
        .await?;
    let current: Option<(String, String, String, Vec<i32>)> = sqlx::query_as(
        "SELECT id::text, version, state, waves FROM rollouts
         WHERE channel = $1 AND state IN ('running', 'paused', 'completed')
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(&plan.channel)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((id, version, state, mut waves)) = current
        && plan.version.as_ref().is_none_or(|v| *v == version)
    {
        let top = waves.last().copied().unwrap_or(0);
        if plan.percent <= top {
            return Err(RolloutError::Conflict(format!(
                "rollout {id} of {version} on {} already reaches {top} %; give a larger --percent, or abort it",
                plan.channel
            )));
        }
        waves.push(plan.percent);
        sqlx::query(
            "UPDATE rollouts SET waves = $2, state = CASE WHEN state = 'completed' THEN 'running' ELSE state END,
                    updated_at = now() WHERE id = $1::uuid",
        )
        .bind(&id)
        .bind(&waves)
        .execute(&mut *tx)
        .await?;
        assign_waves(&mut tx, &id).await?;
        record(
            &mut tx,
            &id,
            "widened",
            &plan.by,
            Some(&format!(
                "to {} % of channel {}",
                plan.percent, plan.channel
            )),
        )
        .await?;
        tx.commit().await?;
        let _ = state;
        return Ok(id);
    }
    let live: Option<(String, String)> = sqlx::query_as(
        "SELECT id::text, version FROM rollouts WHERE channel = $1 AND state IN ('running', 'paused')",
    )
    .bind(&plan.channel)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((id, version)) = live {
        return Err(RolloutError::Conflict(format!(
            "channel {} has rollout {id} of {version} live; abort it first (sentra-cloud rollout abort --channel {})",
            plan.channel, plan.channel
        )));
    }
    let version = match &plan.version {
        Some(version) => version.clone(),
        None => sqlx::query_scalar(
            "SELECT version FROM releases WHERE channel = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(&plan.channel)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            RolloutError::Invalid(format!(
                "no release published on channel {}; publish one (sentra-cloud release publish) or give --version",
                plan.channel
            ))
        })?,
    };
    let exists: Option<String> =
        sqlx::query_scalar("SELECT version FROM releases WHERE version = $1")
            .bind(&version)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Err(RolloutError::Invalid(format!(
            "no release {version}; publish it first"
        )));
    }
    let waves = waves_for(plan.percent, plan.waves.as_deref()).map_err(RolloutError::Invalid)?;
    let mut canaries = Vec::new();
    for canary in &plan.canaries {
        let found: Option<(String, String)> = sqlx::query_as(
            "SELECT id::text, channel FROM devices WHERE id::text = $1 AND revoked_at IS NULL",
        )
        .bind(
            uuid::Uuid::parse_str(canary)
                .map(|u| u.hyphenated().to_string())
                .unwrap_or_default(),
        )
        .fetch_optional(&mut *tx)
        .await?;
        match found {
            Some((id, channel)) if channel == plan.channel => canaries.push(id),
            Some((id, channel)) => {
                return Err(RolloutError::Invalid(format!(
                    "canary {id} follows channel {channel}, not {}",
                    plan.channel
                )));
            }
            None => {
                return Err(RolloutError::Invalid(format!(
                    "canary {canary:?} is not an enrolled device"
                )));
            }
        }
    }
    let id: String = sqlx::query_scalar(
        "INSERT INTO rollouts (channel, version, state, waves, canaries, success_threshold_pct, failure_threshold_pct, created_by)
         VALUES ($1, $2, 'running', $3, $4::uuid[], $5, $6, $7) RETURNING id::text",
    )
    .bind(&plan.channel)
    .bind(&version)
    .bind(&waves)
    .bind(&canaries)
    .bind(plan.success_threshold_pct)
    .bind(plan.failure_threshold_pct)
    .bind(&plan.by)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO rollout_devices (rollout_id, device_id, bucket)
         SELECT $1::uuid, id, fleet_bucket($1::uuid, id) FROM devices
         WHERE channel = $2 AND revoked_at IS NULL",
    )
    .bind(&id)
    .bind(&plan.channel)
    .execute(&mut *tx)
    .await?;
    assign_waves(&mut tx, &id).await?;
    let percentages: Vec<String> = waves.iter().map(|p| format!("{p} %")).collect();
    record(
        &mut tx,
        &id,
        "started",
        &plan.by,
        Some(&format!(
            "{} canaries, then {} of channel {}",
            canaries.len(),
            percentages.join(", "),
            plan.channel
        )),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Who marks what a rollout did by itself in its history.
pub const BY_ROLLOUT: &str = "rollout";

/// Appends `action` (by `by`, for `reason`) to rollout `id`'s history.
async fn record(
    conn: &mut PgConnection,
    id: &str,
    action: &str,
    by: &str,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO rollout_events (rollout_id, action, by, reason) VALUES ($1::uuid, $2, $3, $4)",
    )
    .bind(id)
    .bind(action)
    .bind(by)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// One line of a rollout's history.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RolloutEvent {
    pub at: String,
    pub action: String,
    pub by: String,
    pub reason: Option<String>,
}

/// How many lines of its history a rollout's page shows (newest first).
pub const HISTORY_SHOWN: i64 = 100;

/// Rollout `id`'s history, newest first, at most [`HISTORY_SHOWN`] lines.
pub async fn history(db: &PgPool, id: &str) -> Result<Vec<RolloutEvent>, RolloutError> {
    let uuid = parse_id(id)?;
    Ok(sqlx::query_as(
        "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at, action, by, reason
         FROM rollout_events WHERE rollout_id = $1::uuid ORDER BY id DESC LIMIT $2",
    )
    .bind(uuid)
    .bind(HISTORY_SHOWN)
    .fetch_all(db)
    .await?)
}

/// One wave of a rollout and where its devices are (wave 0: the canaries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct WaveCount {
    pub wave: i32,
    pub devices: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Told or updating.
    pub busy: i64,
    pub pending: i64,
}

/// Rollout `id`'s waves with their devices' states, wave by wave (at most one row per wave).
pub async fn wave_counts(db: &PgPool, id: &str) -> Result<Vec<WaveCount>, RolloutError> {
    let uuid = parse_id(id)?;
    Ok(sqlx::query_as(
        "SELECT wave, count(*) AS devices,
                count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
                count(*) FILTER (WHERE state = 'failed') AS failed,
                count(*) FILTER (WHERE state IN ('offered', 'updating')) AS busy,
                count(*) FILTER (WHERE state = 'pending') AS pending
         FROM rollout_devices WHERE rollout_id = $1::uuid AND wave IS NOT NULL
         GROUP BY wave ORDER BY wave",
    )
    .bind(uuid)
    .fetch_all(db)
    .await?)
}

/// An operator's reason, checked: trimmed, one line of at most [`super::MAX_TEXT`] characters;
/// None when absent or blank.
pub fn check_reason(reason: Option<&str>) -> Result<Option<String>, RolloutError> {
    let Some(reason) = reason.map(str::trim).filter(|reason| !reason.is_empty()) else {
        return Ok(None);
    };
    if reason.chars().count() > super::MAX_TEXT || reason.chars().any(char::is_control) {
        return Err(RolloutError::Invalid(format!(
            "reason: expected one line of at most {} characters",
            super::MAX_TEXT
        )));
    }
    Ok(Some(reason.to_owned()))
}

/// Sets each device's wave from its bucket and the rollout's canaries and percentages.
async fn assign_waves(conn: &mut PgConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rollout_devices d SET wave = CASE
             WHEN d.device_id = ANY (r.canaries) THEN 0
             ELSE (SELECT min(w.i)::integer FROM unnest(r.waves) WITH ORDINALITY AS w(p, i) WHERE d.bucket < w.p * 100)
         END
         FROM rollouts r WHERE r.id = $1::uuid AND d.rollout_id = r.id",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// What an operator can do to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Abort,
}

impl Action {
    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            "abort" => Some(Action::Abort),
            _ => None,
        }
    }

    /// As in a URL: `pause`, `resume`, `abort`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Abort => "abort",
        }
    }

    /// The states it may be taken in, and the state it leads to.
    pub fn transition(self) -> (&'static [&'static str], &'static str) {
        match self {
            Action::Pause => (&["running"], "paused"),
            Action::Resume => (&["paused", "halted"], "running"),
            Action::Abort => (&["running", "paused", "halted"], "aborted"),
        }
    }

    /// Whether it may be taken in `state`; a halted rollout's resume needs a reason too.
    pub fn allowed_in(self, state: &str) -> bool {
        self.transition().0.contains(&state)
    }

    /// What the rollout's history says it was.
    fn past(self) -> &'static str {
        match self {
            Action::Pause => "paused",
            Action::Resume => "resumed",
            Action::Abort => "aborted",
        }
    }
}

/// Pauses, resumes or aborts rollout `id` for operator `by`, with `reason` (required to resume a
/// halted rollout: what was fixed); its new state. Resuming a halted rollout gives its failed
/// devices another try (they are offered the release again) and is refused when a newer or live
/// rollout took over its channel.
pub async fn act(
    db: &PgPool,
    id: &str,
    action: Action,
    by: &str,
    reason: Option<&str>,
) -> Result<String, RolloutError> {
    let uuid = parse_id(id)?;
    let reason = check_reason(reason)?;
    let mut tx = db.begin().await?;
    let channel: Option<String> =
        sqlx::query_scalar("SELECT channel FROM rollouts WHERE id = $1::uuid")
            .bind(&uuid)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(channel) = channel else {
        return Err(RolloutError::NotFound(format!("no rollout {id}")));
    };
    // The lock `start` takes: no rollout starts on the channel while this one is resumed.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('rollout:' || $1))")
        .bind(&channel)
        .execute(&mut *tx)
        .await?;
    let (state, superseded): (String, bool) = sqlx::query_as(
        "SELECT r.state, EXISTS (SELECT 1 FROM rollouts o WHERE o.channel = r.channel AND o.id <> r.id
                    AND (o.created_at > r.created_at OR o.state IN ('running', 'paused')))
         FROM rollouts r WHERE r.id = $1::uuid FOR UPDATE",
    )
    .bind(&uuid)
    .fetch_one(&mut *tx)
    .await?;
    let (from, to) = action.transition();
    if !from.contains(&state.as_str()) {
        return Err(RolloutError::Conflict(format!(
            "rollout {uuid} is {state}; it can be {}d only when {}",
            action.as_str(),
            from.join(" or ")
        )));
    }
    if action == Action::Resume && state == "halted" {
        if reason.is_none() {
            return Err(RolloutError::Invalid(
                "reason: resuming a halted rollout needs a reason (what was fixed)".to_owned(),
            ));
        }
        if superseded {
            return Err(RolloutError::Conflict(format!(
                "rollout {uuid} is halted and channel {channel} has a newer or live rollout since; start a new one instead"
            )));
        }
        let retried = sqlx::query(
            "UPDATE rollout_devices SET state = 'pending', reason = NULL, updated_at = now()
             WHERE rollout_id = $1::uuid AND state = 'failed'",
        )
        .bind(&uuid)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tracing::info!(rollout = %uuid, retried, "halted rollout resumed: its failed devices get another try");
    }
    // The card's reason says who stopped it (and why); running again clears it (the history keeps it).
    sqlx::query(
        "UPDATE rollouts SET state = $2, updated_at = now(),
                reason = CASE WHEN $2 = 'running' THEN NULL
                              ELSE $2 || ' by ' || $3 || coalesce(': ' || $4, '') END
         WHERE id = $1::uuid",
    )
    .bind(&uuid)
    .bind(to)
    .bind(by)
    .bind(&reason)
    .execute(&mut *tx)
    .await?;
    record(&mut tx, &uuid, action.past(), by, reason.as_deref()).await?;
    tx.commit().await?;
    tracing::info!(rollout = %uuid, state = %to, %by, "rollout changed by an operator");
    Ok(to.to_owned())
}

/// The live (or halted) rollout of `channel`, for the commands that name a channel.
pub async fn live_on(db: &PgPool, channel: &str) -> Result<String, RolloutError> {
    sqlx::query_scalar(
        "SELECT id::text FROM rollouts WHERE channel = $1 AND state IN ('running', 'paused', 'halted')
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(channel)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| RolloutError::NotFound(format!("channel {channel} has no live rollout")))
}

/// id, version, state, waves, current wave, success and failure thresholds.
type RolloutRow = (String, String, String, Vec<i32>, i32, i32, i32);

/// Records what `beat` says about the device's part in its channel's newest rollout, moves the
/// rollout on (next wave, halt, completion) and returns what the device should install.
pub async fn on_heartbeat(
    conn: &mut PgConnection,
    device_id: &str,
    channel: &str,
    beat: &Heartbeat,
) -> Result<Option<TargetRelease>, sqlx::Error> {
    let rollout: Option<RolloutRow> = sqlx::query_as(
        "SELECT id::text, version, state, waves, current_wave, success_threshold_pct, failure_threshold_pct
         FROM rollouts WHERE channel = $1 ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
    )
    .bind(channel)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((id, version, state, waves, mut current_wave, success_pct, failure_pct)) = rollout
    else {
        return Ok(None);
    };
    if state == "aborted" {
        return Ok(None);
    }
    // A device enrolled (or moved to the channel) after the rollout started joins it.
    sqlx::query(
        "INSERT INTO rollout_devices (rollout_id, device_id, bucket, wave)
         SELECT r.id, $2::uuid, fleet_bucket(r.id, $2::uuid),
                (SELECT min(w.i)::integer FROM unnest(r.waves) WITH ORDINALITY AS w(p, i)
                 WHERE fleet_bucket(r.id, $2::uuid) < w.p * 100)
         FROM rollouts r WHERE r.id = $1::uuid
         ON CONFLICT DO NOTHING",
    )
    .bind(&id)
    .bind(device_id)
    .execute(&mut *conn)
    .await?;
    let (wave, mine): (Option<i32>, String) = sqlx::query_as(
        "SELECT wave, state FROM rollout_devices WHERE rollout_id = $1::uuid AND device_id = $2::uuid",
    )
    .bind(&id)
    .bind(device_id)
    .fetch_one(&mut *conn)
    .await?;
    let admitted = wave.is_some_and(|wave| wave <= current_wave);
    let (next, reason) = if admitted {
        device_progress(&mine, &state, &version, beat)
    } else {
        (mine.clone(), None)
    };
    if next != mine || reason.is_some() {
        sqlx::query(
            "UPDATE rollout_devices SET state = $3, reason = $4, updated_at = now()
             WHERE rollout_id = $1::uuid AND device_id = $2::uuid",
        )
        .bind(&id)
        .bind(device_id)
        .bind(&next)
        .bind(&reason)
        .execute(&mut *conn)
        .await?;
    }

    let mut state = state;
    if state == "running" {
        loop {
            let (admitted_n, succeeded, failed): (i64, i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed')
                 FROM rollout_devices WHERE rollout_id = $1::uuid AND wave <= $2",
            )
            .bind(&id)
            .bind(current_wave)
            .fetch_one(&mut *conn)
            .await?;
            if admitted_n > 0 && failed * 100 >= i64::from(failure_pct) * admitted_n {
                let reason = format!(
                    "{failed} of {admitted_n} devices failed the update in wave {current_wave} ({} %), at or above the {failure_pct} % threshold",
                    failed * 100 / admitted_n
                );
                tracing::warn!(rollout = %id, %version, %reason, "rollout halted");
                sqlx::query(
                    "UPDATE rollouts SET state = 'halted', reason = $2, updated_at = now() WHERE id = $1::uuid",
                )
                .bind(&id)
                .bind(&reason)
                .execute(&mut *conn)
                .await?;
                record(conn, &id, "halted", BY_ROLLOUT, Some(&reason)).await?;
                state = "halted".to_owned();
                break;
            }
            if succeeded * 100 < i64::from(success_pct) * admitted_n {
                break;
            }
            let last_wave = i32::try_from(waves.len()).unwrap_or(i32::MAX);
            if current_wave >= last_wave {
                tracing::info!(rollout = %id, %version, "rollout completed");
                sqlx::query(
                    "UPDATE rollouts SET state = 'completed', updated_at = now() WHERE id = $1::uuid",
                )
                .bind(&id)
                .execute(&mut *conn)
                .await?;
                record(conn, &id, "completed", BY_ROLLOUT, None).await?;
                state = "completed".to_owned();
                break;
            }
            current_wave += 1;
            tracing::info!(rollout = %id, %version, wave = current_wave, "rollout goes on to the next wave");
            sqlx::query(
                "UPDATE rollouts SET current_wave = $2, updated_at = now() WHERE id = $1::uuid",
            )
            .bind(&id)
            .bind(current_wave)
            .execute(&mut *conn)
            .await?;
            let share = usize::try_from(current_wave - 1)
                .ok()
                .and_then(|i| waves.get(i))
                .copied()
                .unwrap_or(0);
            record(
                conn,
                &id,
                "wave",
                BY_ROLLOUT,
                Some(&format!(
                    "wave {current_wave} of {} ({share} %) opened",
                    waves.len()
                )),
            )
            .await?;
        }
    }

    let admitted = wave.is_some_and(|wave| wave <= current_wave);
    let offer = beat.version != version
        && admitted
        && match state.as_str() {
            "running" | "completed" => next != "failed",
            "paused" => next == "offered" || next == "updating",
            _ => false,
        };
    if offer && next == "pending" {
        // Admitted by this very heartbeat's evaluation: it is being told now.
        sqlx::query(
            "UPDATE rollout_devices SET state = 'offered', updated_at = now()
             WHERE rollout_id = $1::uuid AND device_id = $2::uuid",
        )
        .bind(&id)
        .bind(device_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(offer.then(|| TargetRelease {
        manifest_url: sentra_protocol::fleet::manifest_path(&version),
        version,
        rollout_id: id,
    }))
}

/// A device's next state in a rollout from its heartbeat, and the failure reason if any.
/// `mine` is its current state; `rollout_state` the rollout's.
pub fn device_progress(
    mine: &str,
    rollout_state: &str,
    version: &str,
    beat: &Heartbeat,
) -> (String, Option<String>) {
    let about_this = beat
        .update
        .target_version
        .as_deref()
        .is_none_or(|target| target == version);
    if beat.version == version {
        if beat.healthy && !beat.update.state.is_failed() {
            return ("succeeded".to_owned(), None);
        }
        return (
            "failed".to_owned(),
            Some(
                beat.update
                    .reason
                    .clone()
                    .unwrap_or_else(|| "not healthy after the update".to_owned()),
            ),
        );
    }
    if about_this && beat.update.state.is_failed() && mine != "pending" {
        let what = if beat.update.state == UpdateState::RolledBack {
            "rolled back"
        } else {
            "update failed"
        };
        let reason = match &beat.update.reason {
            Some(reason) => format!("{what}: {reason}"),
            None => what.to_owned(),
        };
        return ("failed".to_owned(), Some(reason));
    }
    if mine == "failed" || mine == "succeeded" {
        return (mine.to_owned(), None);
    }
    if about_this && beat.update.state.is_in_progress() && mine != "pending" {
        return ("updating".to_owned(), None);
    }
    if mine == "pending" && (rollout_state == "running" || rollout_state == "completed") {
        return ("offered".to_owned(), None);
    }
    (mine.to_owned(), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentra_protocol::fleet::{UpdateReport, UpdateState};

    fn beat(version: &str, state: UpdateState, healthy: bool) -> Heartbeat {
        serde_json::from_value(serde_json::json!({
            "version": version, "uptime_secs": 1, "healthy": healthy,
            "update": UpdateReport { state, target_version: Some("2.0.0".into()), reason: None },
        }))
        .expect("a heartbeat")
    }

    #[test]
    fn device_progress_follows_the_heartbeat() {
        use UpdateState::*;
        for (mine, rollout, version, state, healthy, expected) in [
            ("pending", "running", "1.0.0", Idle, true, "offered"),
            ("pending", "paused", "1.0.0", Idle, true, "pending"),
            ("offered", "running", "1.0.0", Downloading, true, "updating"),
            ("updating", "running", "2.0.0", Success, true, "succeeded"),
            ("updating", "running", "2.0.0", Success, false, "failed"),
            ("updating", "running", "1.0.0", RolledBack, true, "failed"),
            ("offered", "running", "1.0.0", Failure, true, "failed"),
            ("failed", "running", "1.0.0", Idle, true, "failed"),
            ("succeeded", "running", "2.0.0", Idle, true, "succeeded"),
        ] {
            let (got, _) = device_progress(mine, rollout, "2.0.0", &beat(version, state, healthy));
            assert_eq!(
                got, expected,
                "{mine} {rollout} {version} {state:?} {healthy}"
            );
        }
    }

    #[test]
    fn waves_end_at_the_percentage() {
        assert_eq!(waves_for(100, None), Ok(vec![10, 50, 100]));
        assert_eq!(waves_for(30, None), Ok(vec![10, 30]));
        assert_eq!(waves_for(5, None), Ok(vec![5]));
        assert_eq!(waves_for(50, Some(&[5, 20])), Ok(vec![5, 20, 50]));
        assert!(waves_for(50, Some(&[20, 5])).is_err());
        assert!(waves_for(0, None).is_err());
        assert!(waves_for(101, None).is_err());
    }
}
