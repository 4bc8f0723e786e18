//! The embedded MQTT broker beside Mosquitto on the same machine, with the same client library
//! (rumqttc, MQTT 3.1.1) and the same workload, in one run:
//!
//! - throughput, QoS 0 and QoS 1: one publisher, one subscriber, BENCH_MESSAGES 100-byte
//!   messages, each numbered; messages received per second (first publish to last delivery), and
//!   how many *distinct* messages arrived (a retransmission counts once; a broker may drop QoS 0
//!   for a slow subscriber, never an acknowledged QoS 1 message);
//! - fan-out: one publisher, 10 subscribers, QoS 0 and QoS 1; deliveries per second;
//! - QoS 1 to a persistent subscriber (`clean_session=false`): ours commits each message to the
//!   encrypted store before the publisher's PUBACK and keeps it until the subscriber
//!   acknowledges it (`broker::persist`); Debian's Mosquitto (`persistence true`) keeps it in
//!   memory and writes its whole state every `autosave_interval` (30 min) and at a clean stop;
//!   the session is ended after the row;
//! - latency: one message at a time, publish to delivery, QoS 0 and QoS 1 (p50/p99);
//! - the same broker with Nagle's algorithm on (rmqtt's default), QoS 1 throughput and latency;
//! - memory: resident size of the process ours runs in (with its store; the clients run in a
//!   child process, so their buffers are not counted) and of Mosquitto, before and after, and
//!   ours' peak.
//!
//! Ours runs in-process with the daemon's defaults (`mqtt.*` keys) and a device's credentials,
//! publishing on the one topic a device may publish to (its presence topic); Mosquitto is the
//! system's on 127.0.0.1:1883 (anonymous from localhost, as Debian ships it). If Mosquitto is
//! not running, only ours is measured.
//!
//! The run **fails** (non-zero exit, after printing every row) when ours lost a QoS 1 message
//! whose subscriber stayed connected; a loss by Mosquitto is printed, not failed on.
//!
//! `cargo bench -p sentra-edge --bench broker`
//! Env: BENCH_MESSAGES (50000), BENCH_FANOUT_MESSAGES (10000), BENCH_LATENCY_SAMPLES (2000),
//! BENCH_CLIENT_INFLIGHT (100: the client's window of unacknowledged QoS 1 publishes).
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sentra_edge::broker::Broker;
use sentra_edge::config::Config;
use sentra_edge::daemon;
use sentra_edge::domain::{Name, Role};
use sentra_edge::store::{StoreKey, devices};
use tokio::sync::mpsc;

const MOSQUITTO: &str = "127.0.0.1:1883";
/// A delivery that has not come after this ends a phase (counted as lost).
const IDLE: Duration = Duration::from_secs(5);

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a count")),
        Err(_) => Ok(default),
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Target {
    name: String,
    addr: SocketAddr,
    /// (device id, MQTT password) for ours; None for anonymous Mosquitto.
    creds: Option<(String, String)>,
    topic: String,
}

impl Target {
    fn options(&self, suffix: &str, inflight: u16, clean: bool) -> MqttOptions {
        let id = match &self.creds {
            Some((dev, _)) => format!("{dev}-{suffix}"),
            None => format!("bench-{suffix}-{}", std::process::id()),
        };
        let mut o = MqttOptions::new(id, self.addr.ip().to_string(), self.addr.port());
        o.set_keep_alive(Duration::from_secs(60));
        o.set_inflight(inflight);
        o.set_clean_session(clean);
        o.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((dev, password)) = &self.creds {
            o.set_credentials(dev.clone(), password.clone());
        }
        o
    }
}

/// A connected client whose event loop runs in a task; deliveries (their arrival instants) come
/// on the channel.
async fn client(
    t: &Target,
    suffix: &str,
    inflight: u16,
    sub: Option<QoS>,
) -> anyhow::Result<(AsyncClient, mpsc::UnboundedReceiver<(Instant, Bytes)>)> {
    client_with(t, suffix, inflight, sub, true).await
}

/// [`client`] with a persistent session when not `clean`.
async fn client_with(
    t: &Target,
    suffix: &str,
    inflight: u16,
    sub: Option<QoS>,
    clean: bool,
) -> anyhow::Result<(AsyncClient, mpsc::UnboundedReceiver<(Instant, Bytes)>)> {
    let (c, mut ev) = AsyncClient::new(t.options(suffix, inflight, clean), 10_000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send((Instant::now(), p.payload)).is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(_) | Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    tokio::time::timeout(IDLE, ready.recv())
        .await
        .context("connack")?
        .context("connection refused")?;
    if let Some(q) = sub {
        c.subscribe(t.topic.clone(), q).await?;
        tokio::time::timeout(IDLE, ready.recv())
            .await
            .context("suback")?
            .context("subscription refused")?;
    }
    Ok((c, rx))
}

/// One publisher, `subs` subscribers (persistent sessions when not `clean`, ended afterwards),
/// `n` messages: (deliveries per second, delivered, expected).
async fn throughput(
    t: &Target,
    qos: QoS,
    subs: usize,
    n: usize,
    inflight: u16,
    clean: bool,
) -> anyhow::Result<(f64, usize, usize)> {
    let mut rxs = Vec::new();
    let mut keep = Vec::new();
    let suffix = |i: usize| {
        if clean {
            format!("s{i}")
        } else {
            format!("k{i}")
        }
    };
    for i in 0..subs {
        let (c, rx) = client_with(t, &suffix(i), inflight, Some(qos), clean).await?;
        keep.push(c);
        rxs.push(rx);
    }
    let (publisher, _prx) = client(t, "p", inflight, None).await?;
    let start = Instant::now();
    let topic = t.topic.clone();
    let p2 = publisher.clone();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            if p2
                .publish_bytes(topic.clone(), qos, false, numbered(i))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut counters = Vec::new();
    for mut rx in rxs {
        counters.push(tokio::spawn(async move {
            // Distinct messages: a QoS 1 retransmission must not hide a lost one.
            let mut seen = vec![false; n];
            let mut got = 0usize;
            let mut last = Instant::now();
            while got < n {
                match tokio::time::timeout(IDLE, rx.recv()).await {
                    Ok(Some((at, payload))) => {
                        if let Some(i) = number(&payload).filter(|&i| i < n)
                            && !seen[i]
                        {
                            seen[i] = true;
                            got += 1;
                        }
                        last = at;
                    }
                    _ => break,
                }
            }
            (got, last)
        }));
    }
    let mut delivered = 0;
    let mut end = start;
    for c in counters {
        let (got, last) = c.await?;
        delivered += got;
        end = end.max(last);
    }
    sender.await?;
    let secs = end.duration_since(start).as_secs_f64().max(1e-9);
    let _ = publisher.disconnect().await;
    for c in keep {
        let _ = c.disconnect().await;
    }
    if !clean {
        // A clean start on the same client ids ends the persistent sessions.
        for i in 0..subs {
            let (c, _) = client(t, &suffix(i), inflight, None).await?;
            let _ = c.disconnect().await;
        }
    }
    Ok((delivered as f64 / secs, delivered, n * subs))
}

/// Message `i`: its number in the first 8 bytes, 100 bytes in all.
fn numbered(i: usize) -> Bytes {
    let mut b = vec![b'x'; 100];
    b[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Bytes::from(b)
}

fn number(payload: &[u8]) -> Option<usize> {
    let head: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    usize::try_from(u64::from_be_bytes(head)).ok()
}

/// One message at a time: publish → delivery, `samples` times.
async fn latency(t: &Target, qos: QoS, samples: usize) -> anyhow::Result<(Duration, Duration)> {
    let (sub, mut rx) = client(t, "ls", 100, Some(qos)).await?;
    let (publisher, _p) = client(t, "lp", 100, None).await?;
    let payload = Bytes::from(vec![b'x'; 100]);
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples + 50 {
        let sent = Instant::now();
        publisher
            .publish_bytes(t.topic.clone(), qos, false, payload.clone())
            .await?;
        let (at, _) = tokio::time::timeout(IDLE, rx.recv())
            .await
            .context("latency: message lost")?
            .context("latency: connection lost")?;
        if i >= 50 {
            lat.push(at.duration_since(sent));
        }
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    let _ = publisher.disconnect().await;
    let _ = sub.disconnect().await;
    Ok((pct(0.50), pct(0.99)))
}

fn rss_kb(pid: &str) -> Option<u64> {
    status_kb(pid, "VmRSS:")
}

/// A size line of /proc/PID/status, in kB (`VmRSS:` now, `VmHWM:` the peak so far).
fn status_kb(pid: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mosquitto_pid() -> Option<String> {
    std::fs::read_to_string("/run/mosquitto/mosquitto.pid")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// What the client process runs: the targets and the knobs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Plan {
    ours_nagle: Target,
    targets: Vec<Target>,
    n: usize,
    fan_n: usize,
    samples: usize,
    inflight: u16,
}

/// Set in the client process to its [`Plan`] (JSON).
const PLAN_ENV: &str = "SENTRA_BENCH_BROKER_PLAN";

fn main() -> anyhow::Result<()> {
    if let Ok(plan) = std::env::var(PLAN_ENV) {
        return clients(serde_json::from_str(&plan).context("the client process's plan")?);
    }
    let n = env_usize("BENCH_MESSAGES", 50_000)?;
    let fan_n = env_usize("BENCH_FANOUT_MESSAGES", 10_000)?;
    let samples = env_usize("BENCH_LATENCY_SAMPLES", 2_000)?;
    let inflight = u16::try_from(env_usize("BENCH_CLIENT_INFLIGHT", 100)?)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::Builder::new()
        .prefix("sentra-bench-broker-")
        .tempdir()?;
    let mut config = Config::defaults();
    config.store.data_dir = dir.path().to_owned();
    config.mqtt.listen = "127.0.0.1:0".parse()?;
    // Every client here is the one bench device (11 at once in the fan-out phases); the
    // per-device session cap (4 by default) would refuse the fifth.
    config.mqtt.max_sessions_per_device = 64;
    let (store, dev, password) = runtime.block_on(async {
        let store = daemon::open_store_with(&config, StoreKey::generate()).await?;
        let (dev, creds) = store
            .write(|w| {
                devices::create_direct(w, &Name::parse("bench").expect("valid"), Role::Tablet)
            })
            .await?;
        anyhow::Ok((store, dev, creds.mqtt_password))
    })?;
    let broker = Broker::start(&config.mqtt, store.clone(), config.branch.id.clone(), None)?;
    // The same broker with Nagle's algorithm left on (rmqtt's default), to show what it costs.
    let nagle = Broker::start_with(
        &config.mqtt,
        store.clone(),
        config.branch.id.clone(),
        false,
        None,
    )?;
    let ours = Target {
        name: "sentra-edge (rmqtt)".to_owned(),
        addr: broker.local_addr(),
        creds: Some((dev.id.clone(), password.clone())),
        topic: format!("sentra/{}/devices/{}", config.branch.id, dev.id),
    };
    let ours_nagle = Target {
        name: "ours, Nagle on".to_owned(),
        addr: nagle.local_addr(),
        ..ours.clone()
    };
    let mosq = Target {
        name: "mosquitto".to_owned(),
        addr: MOSQUITTO.parse()?,
        creds: None,
        topic: format!("bench/{}/t", std::process::id()),
    };
    let mosquitto_up =
        std::net::TcpStream::connect_timeout(&mosq.addr, Duration::from_secs(1)).is_ok();
    let mut targets = vec![ours];
    if mosquitto_up {
        targets.push(mosq);
    } else {
        println!("mosquitto is not listening on {MOSQUITTO}: measuring ours only");
    }
    let self_pid = std::process::id().to_string();
    println!(
        "broker bench: {n} msgs (100 B) per throughput phase, fan-out 10 x {fan_n}, {samples} latency samples, client in-flight {inflight}, max_inflight (ours) {}",
        config.mqtt.max_inflight
    );
    println!(
        "memory before: ours (this process, with its store; the clients run in a child) {} kB, mosquitto {} kB",
        rss_kb(&self_pid).unwrap_or(0),
        mosquitto_pid().and_then(|p| rss_kb(&p)).unwrap_or(0)
    );
    let plan = Plan {
        ours_nagle,
        targets,
        n,
        fan_n,
        samples,
        inflight,
    };
    let status = std::process::Command::new(std::env::current_exe()?)
        .env(PLAN_ENV, serde_json::to_string(&plan)?)
        .status()
        .context("starting the client process")?;
    println!(
        "memory after: ours {} kB (peak {} kB), mosquitto {} kB",
        rss_kb(&self_pid).unwrap_or(0),
        status_kb(&self_pid, "VmHWM:").unwrap_or(0),
        mosquitto_pid().and_then(|p| rss_kb(&p)).unwrap_or(0)
    );
    // What ours did to keep QoS 1 whole: publishes held back, and messages dropped (QoS 0 only).
    for line in sentra_edge::metrics::render().lines().filter(|l| {
        l.starts_with("sentra_edge_mqtt_publish_waits_total")
            || l.starts_with("sentra_edge_mqtt_messages_dropped_total")
            || l.starts_with("sentra_edge_mqtt_stalled_subscribers_total")
            || l.starts_with("sentra_edge_mqtt_kept_messages")
    }) {
        println!("ours: {line}");
    }
    broker.stop();
    nagle.stop();
    runtime.block_on(store.shutdown());
    if !status.success() {
        bail!("the client process failed ({status}); its output is above");
    }
    Ok(())
}

/// The client process: every phase against every target, on its own runtime.
fn clients(plan: Plan) -> anyhow::Result<()> {
    let Plan {
        ours_nagle,
        targets,
        n,
        fan_n,
        samples,
        inflight,
    } = plan;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // QoS 1 rows of ours that lost a message: the run fails on them.
    let mut lost: Vec<String> = Vec::new();
    runtime.block_on(async {
        // What the earlier attempt saw: QoS 1 with Nagle on.
        let (rate, got, want) =
            throughput(&ours_nagle, QoS::AtLeastOnce, 1, n.min(5_000), inflight, true).await?;
        println!(
            "{:<20} throughput QoS 1: {rate:>9.0} msg/s  ({got}/{want} delivered)",
            ours_nagle.name
        );
        if got < want {
            lost.push(format!(
                "{}: throughput QoS 1 delivered {got} of {want}",
                ours_nagle.name
            ));
        }
        let (p50, p99) = latency(&ours_nagle, QoS::AtLeastOnce, samples.min(500)).await?;
        println!(
            "{:<20} latency QoS 1: p50 {:>6} us  p99 {:>6} us",
            ours_nagle.name,
            p50.as_micros(),
            p99.as_micros()
        );
        for t in &targets {
            for (label, qos) in [("QoS 0", QoS::AtMostOnce), ("QoS 1", QoS::AtLeastOnce)] {
                let (rate, got, want) = throughput(t, qos, 1, n, inflight, true).await?;
                println!(
                    "{:<20} throughput {label}: {rate:>9.0} msg/s  ({got}/{want} delivered)",
                    t.name
                );
                note_loss(&mut lost, t, qos, &format!("throughput {label}"), got, want);
            }
            for (label, qos) in [("QoS 0", QoS::AtMostOnce), ("QoS 1", QoS::AtLeastOnce)] {
                let (rate, got, want) = throughput(t, qos, 10, fan_n, inflight, true).await?;
                println!(
                    "{:<20} fan-out 10 {label}: {rate:>9.0} deliveries/s  ({got}/{want} delivered)",
                    t.name
                );
                note_loss(&mut lost, t, qos, &format!("fan-out 10 {label}"), got, want);
            }
            let (rate, got, want) =
                throughput(t, QoS::AtLeastOnce, 1, n, inflight, false).await?;
            println!(
                "{:<20} throughput QoS 1, persistent subscriber: {rate:>9.0} msg/s  ({got}/{want} delivered)",
                t.name
            );
            note_loss(
                &mut lost,
                t,
                QoS::AtLeastOnce,
                "throughput QoS 1, persistent subscriber",
                got,
                want,
            );
            for (label, qos) in [("QoS 0", QoS::AtMostOnce), ("QoS 1", QoS::AtLeastOnce)] {
                let (p50, p99) = latency(t, qos, samples).await?;
                println!(
                    "{:<20} latency {label}: p50 {:>6} us  p99 {:>6} us",
                    t.name,
                    p50.as_micros(),
                    p99.as_micros()
                );
            }
        }
        anyhow::Ok(())
    })?;
    if targets.is_empty() {
        bail!("nothing measured");
    }
    if !lost.is_empty() {
        bail!(
            "acknowledged QoS 1 messages lost with the subscriber online: {}",
            lost.join("; ")
        );
    }
    Ok(())
}

/// Remember a QoS 1 loss by ours (the run fails on it); print one by Mosquitto.
fn note_loss(lost: &mut Vec<String>, t: &Target, qos: QoS, row: &str, got: usize, want: usize) {
    if qos == QoS::AtMostOnce || got >= want {
        return;
    }
    if t.creds.is_some() {
        lost.push(format!("{}: {row} delivered {got} of {want}", t.name));
    } else {
        println!(
            "{:<20} (lost {} QoS 1 messages in {row})",
            t.name,
            want - got
        );
    }
}
