//! The barcode scanner: decoder throughput, and scan-to-notice latency through a real
//! pseudo-terminal, each beside its raw floor, in one run.
//!
//! - Decoder: a buffer of mixed frames (EAN-13, GS1-128, GS1 DataMatrix, Code 128, a bad check
//!   digit, noise) through `Framer` + `decode`; the floor is counting the line ends of the same
//!   buffer (what any framer must at least do).
//! - Latency: the scanner task runs in-process on a throwaway store (demo data), reading the slave
//!   of a pty through a symlink; the bench writes one frame into the master and waits for the
//!   `Notice::Scan` the store announces. Look-ups (no pick slip) and dispenses (a slip open: one
//!   committed, fsynced write each). Floors: the pty alone (write on the master → line read on
//!   the slave) and the same dispense written straight to the store (no scanner).
//!
//! - Scan to MQTT: the same dispense scans, until the `sentra/<branch>/scans/<scanner>` message
//!   reaches a paired device subscribed over TCP to the in-process broker (QoS 1).
//!
//! `cargo bench -p sentra-edge --bench scanner`
//! Env: BENCH_SCANS (1000 per latency phase), BENCH_DECODE_FRAMES (200000).
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sentra_edge::config::{Config, ScannerConfig};
use sentra_edge::daemon;
use sentra_edge::domain::{Name, Plate, Qty, Sku, Text};
use sentra_edge::scanner::decode::{Framer, Piece, decode};
use sentra_edge::scanner::{self, ScannerHandle};
use sentra_edge::store::pick_slips::ScanOutcome;
use sentra_edge::store::vehicles::Party;
use sentra_edge::store::workshop::{self, NewWorkOrder};
use sentra_edge::store::{Notice, Store, StoreKey, pick_slips};
use sentra_edge::supervisor::Supervisor;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_serial::{SerialPort as _, SerialStream};

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a count")),
        Err(_) => Ok(default),
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut lat: Vec<Duration>) {
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<44} n={:<6} p50={:>7.3} ms  p99={:>7.3} ms  max={:>7.3} ms",
        lat.len(),
        ms(pct(&lat, 0.50)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap_or(&Duration::ZERO)),
    );
}

const MIX: &[&[u8]] = &[
    b"]E08991234567891\r\n",
    b"]C1010899555666777210LOT-7\x1d17271231\r\n",
    b"]d201089977788899941725063021SN-9\r\n",
    b"]C0SKU-OIL-10W40\r\n",
    b"]E08991234567892\r\n",
    b"\xf8\x80\xfe\x00\r\n",
    b"8990011223340\r\n",
];

fn bench_decoder(frames: usize) {
    let mut buf = Vec::new();
    for i in 0..frames {
        buf.extend_from_slice(MIX[i % MIX.len()]);
    }
    // Floor: find every line end.
    let t = Instant::now();
    let mut lines = 0usize;
    for _ in 0..5 {
        lines += std::hint::black_box(&buf)
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
    }
    let floor = t.elapsed() / 5;
    std::hint::black_box(lines);
    // Framer + decode, read in 1 KiB chunks like the port.
    let t = Instant::now();
    let (mut ok, mut rejected, mut noise) = (0usize, 0usize, 0usize);
    for _ in 0..5 {
        let mut f = Framer::new();
        for chunk in buf.chunks(1024) {
            f.push(chunk, |p| match p {
                Piece::Frame(fr) => match decode(&fr) {
                    Ok(s) => {
                        std::hint::black_box(s);
                        ok += 1;
                    }
                    Err(_) => rejected += 1,
                },
                Piece::Noise(n) => noise += n,
            });
        }
    }
    let took = t.elapsed() / 5;
    let mb = buf.len() as f64 / 1e6;
    println!(
        "decoder: {frames} frames, {:.1} MB: framer+decode {:>8.1} MB/s ({:>6.2} M frames/s); floor (count line ends) {:>8.1} MB/s  [ok {}, rejected {}, noise bytes {} per pass]",
        mb,
        mb / took.as_secs_f64(),
        frames as f64 / took.as_secs_f64() / 1e6,
        mb / floor.as_secs_f64(),
        ok / 5,
        rejected / 5,
        noise / 5,
    );
}

/// The pty alone: frame written on the master, line read back on the slave.
async fn pty_floor(n: usize) -> anyhow::Result<Vec<Duration>> {
    let (mut master, mut slave) = SerialStream::pair()?;
    let mut lat = Vec::with_capacity(n);
    let mut buf = [0u8; 256];
    for _ in 0..n {
        let t = Instant::now();
        master.write_all(MIX[0]).await?;
        let mut got = 0;
        while !buf[..got].contains(&b'\n') {
            got += slave.read(&mut buf[got..]).await?;
        }
        lat.push(t.elapsed());
    }
    Ok(lat)
}

async fn scan_latency(
    store: &Store,
    master: &mut SerialStream,
    frame: &[u8],
    n: usize,
    want: &str,
) -> anyhow::Result<Vec<Duration>> {
    let mut notices = store.subscribe();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        master.write_all(frame).await?;
        loop {
            // Other notices (events, printer state) pass by.
            if let Notice::Scan(s) =
                tokio::time::timeout(Duration::from_secs(10), notices.recv()).await??
            {
                lat.push(t.elapsed());
                let got = match &s.outcome {
                    ScanOutcome::Dispensed { .. } => "dispensed",
                    ScanOutcome::Lookup { .. } => "lookup",
                    ScanOutcome::Rejected { .. } => "rejected",
                };
                if got != want {
                    bail!("expected {want}, got {:?}", s.outcome);
                }
                break;
            }
        }
    }
    Ok(lat)
}

fn main() -> anyhow::Result<()> {
    let scans = env_usize("BENCH_SCANS", 1000)?;
    let frames = env_usize("BENCH_DECODE_FRAMES", 200_000)?;
    bench_decoder(frames);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dir = tempfile::Builder::new()
            .prefix("sentra-bench-scanner-")
            .tempdir()?;
        let mut config = Config::defaults();
        config.store.data_dir = dir.path().to_owned();
        let store = daemon::open_store_with(&config, StoreKey::generate()).await?;
        daemon::load_demo_data(&store).await?;
        let sku = Sku::parse("OIL-10W40-1L").map_err(|e| anyhow::anyhow!("{}", e.0))?;
        let (sku2, qty) = (
            sku.clone(),
            Qty::new(Qty::MAX).map_err(|e| anyhow::anyhow!("{}", e.0))?,
        );
        store
            .write(move |w| {
                workshop::receive(w, "bench", &sku2, qty, None)?;
                Ok(())
            })
            .await?;

        let link = dir.path().join("scanner");
        let (mut master, slave) = SerialStream::pair()?;
        std::os::unix::fs::symlink(slave.name().context("pty name")?, &link)?;
        let cfg = ScannerConfig {
            enabled: true,
            kind: sentra_edge::config::ScannerKind::Serial,
            device: link,
            baud: 9600,
            name: "bench".into(),
            retry_max_ms: 200,
        };
        let supervisor = Supervisor::new();
        let handle = ScannerHandle::new(&cfg);
        scanner::spawn(
            &supervisor,
            store.clone(),
            cfg,
            dir.path().to_owned(),
            handle.clone(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while handle.status().state != scanner::PortState::Connected {
            if Instant::now() > deadline {
                bail!("scanner never connected: {:?}", handle.status());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        report("floor: pty write -> line read", pty_floor(scans).await?);
        // Warm up, then measure look-ups.
        scan_latency(&store, &mut master, MIX[0], 50, "lookup").await?;
        report(
            "scan -> notice, look-up (no slip)",
            scan_latency(&store, &mut master, MIX[0], scans, "lookup").await?,
        );
        report(
            "scan -> notice, rejected (bad check digit)",
            scan_latency(&store, &mut master, MIX[4], scans, "rejected").await?,
        );

        // A pick slip open: every scan is a committed dispense.
        let wo = store
            .write(|w| {
                let new = NewWorkOrder {
                    party: Party {
                        customer_name: Some(Name::parse("Bench").expect("valid")),
                        customer_phone: None,
                        vehicle_plate: Some(Plate::parse("B 1 BEN").expect("valid")),
                        vehicle_id: None,
                        customer_id: None,
                    },
                    complaint: Text::parse("bench").expect("valid"),
                    mechanic_id: None,
                };
                workshop::create(w, "bench", &new)
            })
            .await?;
        let wo_id = wo.id.clone();
        store
            .write(move |w| pick_slips::open(w, "bench", &wo_id))
            .await?;
        report(
            "scan -> notice, dispense (slip open)",
            scan_latency(&store, &mut master, MIX[0], scans, "dispensed").await?,
        );
        // Floor: the same dispense straight into the store.
        let mut floor = Vec::with_capacity(scans);
        for _ in 0..scans {
            let (id, s) = (wo.id.clone(), sku.clone());
            let one = Qty::new(1).map_err(|e| anyhow::anyhow!("{}", e.0))?;
            let t = Instant::now();
            store
                .write(move |w| workshop::dispense(w, "bench", &id, &s, one))
                .await?;
            floor.push(t.elapsed());
        }
        report("floor: store.write(dispense), no scanner", floor);

        // Scan -> MQTT: the daemon's broker and bridge in-process, a paired device subscribed
        // over TCP to the scanner's topic (QoS 1), the slip still open (each scan dispenses).
        let (mqtt_cfg, bstore, branch) = (
            sentra_edge::config::MqttConfig {
                listen: "127.0.0.1:0".parse()?,
                ..config.mqtt.clone()
            },
            store.clone(),
            config.branch.id.clone(),
        );
        // Blocking (it builds the broker's own runtime): off the async threads.
        let broker = tokio::task::spawn_blocking(move || {
            sentra_edge::broker::Broker::start(&mqtt_cfg, bstore, branch, None)
        })
        .await??;
        let bridge = sentra_edge::broker::bridge::Bridge {
            store: store.clone(),
            broker: broker.handle(),
            branch: config.branch.id.clone(),
            sync: sentra_edge::sync::SyncHandle::default(),
            data_dir: dir.path().to_owned(),
        };
        let (notices, cancel) = (store.subscribe(), supervisor.token());
        supervisor.spawn(
            "mqtt-bridge",
            async move { bridge.run(notices, cancel).await },
        );
        let (dev, creds) = store
            .write(|w| {
                sentra_edge::store::devices::create_direct(
                    w,
                    &Name::parse("bench tablet").expect("valid"),
                    sentra_edge::domain::Role::Tablet,
                )
            })
            .await?;
        let addr = broker.local_addr();
        let mut o = rumqttc::MqttOptions::new(dev.id.clone(), addr.ip().to_string(), addr.port());
        o.set_credentials(dev.id.clone(), creds.mqtt_password);
        let (client, mut ev) = rumqttc::AsyncClient::new(o, 100);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let poller = tokio::spawn(async move {
            while let Ok(e) = ev.poll().await {
                if let rumqttc::Event::Incoming(p) = e
                    && tx.send((Instant::now(), p)).is_err()
                {
                    return;
                }
            }
        });
        client
            .subscribe(
                format!("sentra/{}/scans/bench", config.branch.id),
                rumqttc::QoS::AtLeastOnce,
            )
            .await?;
        loop {
            let (_, p) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await?
                .context("mqtt client stopped")?;
            if matches!(p, rumqttc::Packet::SubAck(_)) {
                break;
            }
        }
        let mut lat = Vec::with_capacity(scans);
        for _ in 0..scans {
            let t = Instant::now();
            master.write_all(MIX[0]).await?;
            loop {
                let (at, p) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await?
                    .context("mqtt client stopped")?;
                if let rumqttc::Packet::Publish(p) = p {
                    if !p.payload.windows(9).any(|w| w == b"dispensed") {
                        bail!(
                            "expected a dispense, got {}",
                            String::from_utf8_lossy(&p.payload)
                        );
                    }
                    lat.push(at.duration_since(t));
                    break;
                }
            }
        }
        report("scan -> MQTT message at a subscriber, dispense", lat);
        poller.abort();

        supervisor.token().cancel();
        drop(master);
        supervisor.wait().await;
        tokio::task::spawn_blocking(move || broker.stop()).await?;
        store.shutdown().await;
        drop(slave);
        anyhow::Ok(())
    })
}
