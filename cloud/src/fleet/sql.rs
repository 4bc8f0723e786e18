//! The fleet view's SQL, in a file of its own (only constants, no imports) so the page's bench
//! runs the very queries the page does (`benches/fleet_page.rs` includes it).
//!
//! Parameters: `$1` is `fleet.offline_after_secs`; [`MATCHES`] takes `$2`..`$6`.

/// Every live device with its latest heartbeat, judged by the rules of `DeviceRow::view` (record.rs):
/// `online` (a heartbeat no older than `$1`, `fleet.offline_after_secs`) and `attention` (not
/// online, or the heartbeat's stored `concerns` verdict). The page's filter, counts and order
/// are computed by PostgreSQL from these two columns; the texts shown come from `view`.
pub const JUDGED: &str = "
    WITH latest AS (
        SELECT d.id, d.branch_id, b.name AS branch_name, d.hostname, d.replaces, d.channel,
               coalesce(h.version, d.version) AS version, h.received_at, h.update_state, h.body,
               h.backlog, h.backlog_bytes, h.backlog_oldest_secs,
               floor(extract(epoch FROM now() - h.received_at))::bigint AS age_secs,
               h.attention AS concerns
        FROM devices d JOIN branches b ON b.id = d.branch_id
        LEFT JOIN device_heartbeats h ON h.device_id = d.id
        WHERE d.revoked_at IS NULL
    ), judged AS (
        SELECT *, coalesce(age_secs <= $1::bigint, false) AS online,
               NOT coalesce(age_secs <= $1::bigint, false) OR coalesce(concerns, false) AS attention
        FROM latest
    )";

/// The columns of a `DeviceRow` (record.rs), from `judged` or a part of it.
pub const ROW_COLUMNS: &str = "
    SELECT id::text AS id, branch_id, branch_name, hostname, replaces::text AS replaces, channel,
           version,
           to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_seen,
           age_secs, update_state, body::text AS body";

/// Whether a `judged` row matches a [`Filter`] (`$2` pattern, `$3` branch, `$4` version, `$5`
/// state, `$6` channel; each NULL for "any").
pub const MATCHES: &str = "
    ($2::text IS NULL OR branch_id ILIKE $2 OR branch_name ILIKE $2 OR hostname ILIKE $2)
    AND ($3::text IS NULL OR branch_id = $3)
    AND ($4::text IS NULL OR coalesce(version, 'unknown') = $4)
    AND ($5::text IS NULL OR CASE $5 WHEN 'online' THEN online WHEN 'offline' THEN NOT online
                                      WHEN 'never-seen' THEN received_at IS NULL ELSE attention END)
    AND ($6::text IS NULL OR channel = $6)";

/// Attention first, then longest offline first (never seen counts as not offline), then branch.
pub const ATTENTION_ORDER: &str = "
    ORDER BY attention DESC, CASE WHEN online THEN -1 ELSE coalesce(age_secs, -1) END DESC,
             branch_id, id";

/// A page of the matching devices (`$7` rows, NULL for all, after `$8`). The page is chosen
/// first and only its rows are turned into text (the heartbeat's body above all): at 10 000
/// devices, converting every body before the sort was most of the query's time.
pub fn page() -> String {
    format!(
        "{JUDGED}, chosen AS (SELECT * FROM judged WHERE {MATCHES} {ATTENTION_ORDER} LIMIT $7 OFFSET $8)
         {ROW_COLUMNS} FROM chosen {ATTENTION_ORDER}"
    )
}

/// The fleet's counts: devices, online, needing attention, and matching the filter.
pub fn counts() -> String {
    format!(
        "{JUDGED} SELECT count(*), count(*) FILTER (WHERE online), count(*) FILTER (WHERE attention),
                         count(*) FILTER (WHERE {MATCHES})
         FROM judged"
    )
}

/// Devices by version, by update state and by channel: `(kind, key, count)` rows.
pub fn groups() -> String {
    format!(
        "{JUDGED} SELECT CASE WHEN grouping(version) = 0 THEN 'version'
                             WHEN grouping(update_state) = 0 THEN 'update' ELSE 'channel' END,
                        coalesce(CASE WHEN grouping(version) = 0 THEN version
                                      WHEN grouping(update_state) = 0 THEN update_state
                                      ELSE channel END, 'unknown'),
                        count(*)
         FROM judged GROUP BY GROUPING SETS ((version), (update_state), (channel))"
    )
}
