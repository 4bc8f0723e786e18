//! Power cuts and shutdowns under load: a child `sentra-edge` taking a storm of writes is killed
//! with SIGKILL at random moments, many times; every write that got a 2xx is there after restart,
//! the outbox is gapless with exactly one event per change, and `PRAGMA integrity_check` is ok.
//! SIGTERM under the same storm exits 0 and loses nothing acknowledged either.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Notify;

use crate::harness::{Device, Edge, Site, open_db};

/// Concurrent writers in the storm.
const WRITERS: usize = 6;

/// What the storm got acknowledged.
#[derive(Default)]
struct Acked {
    work_orders: std::sync::Mutex<Vec<String>>,
    receipts: AtomicU64,
    attempted_receipts: AtomicU64,
    count: AtomicU64,
}

/// Start writers against `edge` until `stop`; `reached` fires when `target` writes were acknowledged.
fn storm(
    edge: &Edge,
    tablet: &Device,
    store: &Device,
    acked: &Arc<Acked>,
    target: u64,
    stop: &Arc<AtomicBool>,
    reached: &Arc<Notify>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let (http, base) = (edge.http.clone(), edge.base.clone());
            let (tablet, store) = (tablet.token.clone(), store.token.clone());
            let (acked, stop, reached) = (acked.clone(), stop.clone(), reached.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let receipt = (w as u64 + i).is_multiple_of(3);
                    let req = if receipt {
                        acked.attempted_receipts.fetch_add(1, Ordering::SeqCst);
                        http.post(format!("{base}/v1/stock/receipts")).bearer_auth(&store).json(&json!({"sku": "OIL-10W40-1L", "qty": 1}))
                    } else {
                        http.post(format!("{base}/v1/work-orders"))
                            .bearer_auth(&tablet)
                            .json(&json!({"customer_name": format!("storm {w}-{i}"), "vehicle_plate": "B 9 ST", "complaint": "crash test"}))
                    };
                    let Ok(resp) = req.send().await else { break };
                    if resp.status() != StatusCode::CREATED {
                        break;
                    }
                    let Ok(body) = resp.json::<serde_json::Value>().await else { break };
                    if receipt {
                        acked.receipts.fetch_add(1, Ordering::SeqCst);
                    } else {
                        acked.work_orders.lock().expect("lock").push(body["id"].as_str().expect("id").to_owned());
                    }
                    if acked.count.fetch_add(1, Ordering::SeqCst) + 1 >= target {
                        reached.notify_one();
                    }
                }
            })
        })
        .collect()
}

/// A small deterministic generator, seeded from the clock and printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn verify(site: &Site, acked: &Acked) {
    let db = open_db(site);
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    let wos = acked.work_orders.lock().expect("lock").clone();
    let mut missing = Vec::new();
    for id in &wos {
        let n: i64 = db
            .query_row(
                "SELECT count(*) FROM work_orders WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .expect("query");
        if n != 1 {
            missing.push(id.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged work orders lost: {missing:?}",
        missing.len(),
        wos.len()
    );
    let on_hand: i64 = db
        .query_row(
            "SELECT sum(delta) FROM stock_movements WHERE sku = 'OIL-10W40-1L'",
            [],
            |r| r.get(0),
        )
        .expect("stock");
    let level: i64 = db
        .query_row(
            "SELECT on_hand FROM stock_levels WHERE sku = 'OIL-10W40-1L'",
            [],
            |r| r.get(0),
        )
        .expect("level");
    assert_eq!(level, on_hand, "the kept level is the sum of the movements");
    let (got, tried) = (
        acked.receipts.load(Ordering::SeqCst) as i64,
        acked.attempted_receipts.load(Ordering::SeqCst) as i64,
    );
    assert!(
        on_hand >= 20 + got && on_hand <= 20 + tried,
        "stock {on_hand}: acknowledged {got} receipts, attempted {tried}"
    );
    let (events, max, next): (i64, i64, i64) = db
        .query_row("SELECT (SELECT count(*) FROM sync_event_logs), (SELECT max(seq) FROM sync_event_logs), (SELECT next_seq FROM outbox_state)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("outbox");
    assert_eq!((events, next), (max, max + 1), "outbox gapless");
    let changes: i64 = db
        .query_row(
            "SELECT (SELECT count(*) FROM work_orders) + (SELECT count(*) FROM stock_movements)
                    + (SELECT count(DISTINCT entity || '/' || entity_id) FROM record_fields)",
            [],
            |r| r.get(0),
        )
        .expect("changes");
    assert_eq!(events, changes, "exactly one event per change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_a_write_storm_loses_nothing_acknowledged() {
    let rounds: u64 = std::env::var("SENTRA_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed = std::env::var("SENTRA_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test: {rounds} rounds, SENTRA_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let store = edge.pair(&site, "storekeeper").await;
    edge.kill().await;

    let acked = Arc::new(Acked::default());
    for round in 0..rounds {
        let edge = site.start().await;
        let stop = Arc::new(AtomicBool::new(false));
        let reached = Arc::new(Notify::new());
        // Kill after a random number of acknowledged writes, while the writers keep going.
        let target = acked.count.load(Ordering::SeqCst) + 5 + rng.next(120);
        let writers = storm(&edge, &tablet, &store, &acked, target, &stop, &reached);
        reached.notified().await;
        edge.kill().await;
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.expect("writer");
        }
        eprintln!(
            "round {round}: {} writes acknowledged so far",
            acked.count.load(Ordering::SeqCst)
        );
        verify(&site, &acked);
    }
    // And the daemon starts and serves again after all that.
    let edge = site.start().await;
    let (s, _) = edge.get(&tablet, "/v1/work-orders?limit=1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(edge.stop().await, 0);
    verify(&site, &acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_a_write_storm_exits_cleanly() {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    let tablet = edge.pair(&site, "tablet").await;
    let store = edge.pair(&site, "storekeeper").await;
    let acked = Arc::new(Acked::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reached = Arc::new(Notify::new());
    let writers = storm(&edge, &tablet, &store, &acked, 100, &stop, &reached);
    reached.notified().await;
    assert_eq!(edge.stop().await, 0, "SIGTERM under load is a clean exit");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    verify(&site, &acked);
}
