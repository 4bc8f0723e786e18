//! A simulated fleet of `n` boxes written straight into the database, as heartbeats would leave
//! it (branch, device, latest heartbeat with its body and the cloud's attention verdict): for the
//! fleet page at 10 000 boxes, in the tests (`fleet_scale.rs`) and the bench
//! (`benches/fleet_page.rs`), where enrolling and signing 10 000 boxes over HTTP would cost
//! minutes and say nothing about the page.
//!
//! Box `i` (1-based) is, by the rules below (and [`SimBox::of`], which the tests count with):
//! never seen every 500th; silent for 3 h every 40th; unhealthy every 31st; rolled back every
//! 97th; downloading 2.0.0 every 53rd; on 2.0.0 every 3rd; on channel canary every 10th.

use sqlx::PgConnection;

/// What box `i` of a simulated fleet is.
#[derive(Debug, Clone, Copy)]
pub struct SimBox {
    pub never_seen: bool,
    pub offline: bool,
    pub attention: bool,
    pub new_version: bool,
    pub canary: bool,
}

impl SimBox {
    pub fn of(i: usize) -> SimBox {
        let never_seen = i.is_multiple_of(500);
        let offline = never_seen || i.is_multiple_of(40);
        let heard = !never_seen;
        SimBox {
            never_seen,
            offline,
            attention: offline || (heard && (i.is_multiple_of(31) || i.is_multiple_of(97))),
            new_version: i.is_multiple_of(3),
            canary: i.is_multiple_of(10),
        }
    }
}

/// Writes boxes `1..=n` (branches `SIM00001`…, hostnames `box-1`…).
pub async fn insert(db: &mut PgConnection, n: usize) {
    let n = i32::try_from(n).expect("a fleet under 2^31");
    for sql in [
        "INSERT INTO branches (id, name)
         SELECT format('SIM%s', lpad(i::text, 5, '0')), format('Bengkel %s', i)
         FROM generate_series(1, $1) i",
        "INSERT INTO devices (id, branch_id, hostname, version, channel)
         SELECT gen_random_uuid(), format('SIM%s', lpad(i::text, 5, '0')), format('box-%s', i),
                CASE WHEN i % 3 = 0 THEN '2.0.0' ELSE '1.0.0' END,
                CASE WHEN i % 10 = 0 THEN 'canary' ELSE 'stable' END
         FROM generate_series(1, $1) i",
        "INSERT INTO device_heartbeats (device_id, received_at, version, update_state, healthy,
                                        backlog, backlog_bytes, backlog_oldest_secs, body, attention)
         SELECT d.id,
                now() - CASE WHEN s.i % 40 = 0 THEN interval '3 hours' ELSE interval '20 seconds' END,
                d.version, s.state, s.i % 31 <> 0, 3, 2048, 12,
                jsonb_build_object(
                    'version', d.version, 'uptime_secs', 3600,
                    'update', CASE s.state
                        WHEN 'rolled-back' THEN '{\"state\": \"rolled-back\", \"target_version\": \"2.0.0\", \"reason\": \"not ready within 60 s\"}'::jsonb
                        WHEN 'downloading' THEN '{\"state\": \"downloading\", \"target_version\": \"2.0.0\"}'::jsonb
                        ELSE '{\"state\": \"idle\"}'::jsonb END,
                    'healthy', s.i % 31 <> 0,
                    'backlog', '{\"count\": 3, \"bytes\": 2048, \"oldest_age_secs\": 12}'::jsonb,
                    'parked', 0, 'skew_ms', 40,
                    'resources', '{\"disk_total_bytes\": 64000000000, \"disk_free_bytes\": 40000000000, \"mem_total_bytes\": 8000000000, \"mem_available_bytes\": 5000000000, \"store_bytes\": 52000000}'::jsonb,
                    'printer', 'ready', 'scanner', 'connected',
                    'download', CASE WHEN s.state = 'downloading'
                        THEN jsonb_build_object('received_bytes', (s.i * 7919) % 40000000, 'total_bytes', 40000000) END),
                s.i % 31 = 0 OR s.i % 97 = 0
         FROM (SELECT i, format('SIM%s', lpad(i::text, 5, '0')) AS branch,
                      CASE WHEN i % 97 = 0 THEN 'rolled-back' WHEN i % 53 = 0 THEN 'downloading'
                           ELSE 'idle' END AS state
               FROM generate_series(1, $1) i WHERE i % 500 <> 0) s
         JOIN devices d ON d.branch_id = s.branch",
    ] {
        sqlx::query(sql)
            .bind(n)
            .execute(&mut *db)
            .await
            .expect("write the simulated fleet");
    }
    sqlx::query("ANALYZE branches, devices, device_heartbeats")
        .execute(&mut *db)
        .await
        .expect("analyze");
}
