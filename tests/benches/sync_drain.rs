//! Draining a long offline backlog: the edge's outbox of N events (default 500 000) to a real
//! `sentra-cloud` and PostgreSQL on loopback, timed from enrolment to the last acknowledgement,
//! with the edge's peak memory and the local API's write latency measured while it drains.
//!
//! `cargo bench -p sentra-system-tests --bench sync_drain` (env BENCH_BACKLOG, BENCH_API_CLIENTS;
//! `SENTRA_EDGE_BIN=<scripts/build-static.sh's binary>` measures the shipped static build)
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sentra_system_tests::{Cloud, EdgeSite, eventually};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Peak resident memory of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let backlog = env("BENCH_BACKLOG", 500_000);
    let cloud = Cloud::start().await;
    let site = EdgeSite::new("DRN01", "");

    let t = Instant::now();
    site.write_offline_backlog(backlog).await;
    println!(
        "backlog: {backlog} events written offline in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let edge = site.start().await;
    let pid = edge.child.id().expect("edge pid");
    let tablet = site.pair(&edge, "tablet").await;
    let rss_before = peak_rss_mib(pid);

    // The branch keeps working while the backlog drains: one tablet writing continuously.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (http, url, token, stop) = (
            edge.http.clone(),
            edge.url.clone(),
            tablet.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/v1/work-orders"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"customer_name": "Walk-in", "vehicle_plate": "D 1 AB", "complaint": "Cek rem"}))
                    .send()
                    .await
                    .expect("write during drain");
                assert_eq!(r.status(), 201);
                lat.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            lat
        })
    };

    let started = Instant::now();
    site.enroll(&cloud.url, &cloud.enrollment_token("DRN01"));
    eventually(
        Duration::from_secs(1800),
        "the backlog to drain",
        || async {
            let st = edge.sync_status(&tablet).await;
            (st["last_acked_seq"].as_u64()? >= backlog as u64).then_some(())
        },
    )
    .await;
    let drain = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat = writer.await.expect("writer");
    lat.sort();
    let rss = peak_rss_mib(pid);
    let rate = backlog as f64 / drain.as_secs_f64();

    println!();
    println!("| figure | value | aim |");
    println!("| --- | --- | --- |");
    println!("| backlog | {backlog} events | 500 000 |");
    println!(
        "| drain time (enrol → last ack) | {:.1} s ({rate:.0} events/s) | ≤ 60 s |",
        drain.as_secs_f64()
    );
    println!("| edge peak RSS (VmHWM) | {rss:.1} MiB (at start {rss_before:.1} MiB) | ≤ 128 MB |");
    println!(
        "| local API write latency while draining ({} writes) | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | p99 ≤ 15 ms |",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    );
    edge.kill().await;
}
