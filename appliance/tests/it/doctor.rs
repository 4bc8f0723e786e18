//! `sentra-edge doctor` against a real daemon whose printer refuses connections and whose scanner
//! is not plugged in, with one MQTT client connected; then with the daemon stopped.

use std::time::Duration;

use crate::harness::Site;

/// Run doctor until `pred` holds on its output (the daemon reports states within a second or
/// two); fails after a minute.
fn doctor_until(site: &Site, what: &str, pred: impl Fn(&str) -> bool) -> (i32, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = site.cli(&["doctor"]);
        if pred(&out) {
            return (code, out);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "doctor never showed {what}:\n{out}\n{err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn doctor_explains_a_refusing_printer_and_a_missing_scanner() {
    // A port that refuses: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let devdir = tempfile::tempdir().expect("tempdir");
    let scanner = devdir.path().join("scanner");
    let site = Site::with_config(&format!(
        "[printer]\nkind = \"network\"\naddress = \"{closed}\"\nretry_max_ms = 200\ntimeout_ms = 1000\n[scanner]\ndevice = {:?}\nretry_max_ms = 200\n",
        scanner.display().to_string()
    ));
    let edge = site.start().await;
    let mqtt = edge.mqtt.expect("broker running");
    // One MQTT client connected.
    let dev = edge.pair(&site, "tablet").await;
    let mut o = rumqttc::MqttOptions::new(dev.id.clone(), "127.0.0.1", mqtt.port());
    o.set_credentials(dev.id.clone(), dev.mqtt.clone());
    let (_client, mut ev) = rumqttc::AsyncClient::new(o, 10);
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });

    let site2 = std::sync::Arc::new(site);
    let s = site2.clone();
    let (code, out) = tokio::task::spawn_blocking(move || {
        doctor_until(&s, "the printer refusing and one client", |o| {
            o.contains("connection refused") && o.contains("listening, 1 client\n")
        })
    })
    .await
    .expect("doctor");
    assert_eq!(code, 1, "{out}");
    let line = |prefix: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
            .to_owned()
    };
    assert!(line("ok   config").contains("branch JKT01"), "{out}");
    assert!(line("ok   store").contains("opens with its key"), "{out}");
    assert!(line("ok   api").contains("answering"), "{out}");
    assert_eq!(
        line("ok   broker"),
        format!(
            "ok   broker {}: listening, 1 client",
            edge.mqtt_tls.expect("mqtt tls")
        )
    );
    let printer = line("FIX  printer");
    assert!(
        printer.contains(&format!("{closed}"))
            && printer.contains("connection refused; is it switched on and on this network?"),
        "{printer}"
    );
    let sc = line("FIX  scanner");
    assert!(
        sc.contains(&format!(
            "{}: not present; is it plugged in? (see the udev rule",
            scanner.display()
        )),
        "{sc}"
    );
    assert!(line("FIX  cloud").contains("not enrolled"), "{out}");
    assert!(
        line("ok   updates").contains("off until enrolment"),
        "{out}"
    );
    assert!(
        line("FIX  backup").contains("sentra-edge-backup.timer"),
        "{out}"
    );

    // The daemon stopped: doctor says so and what to do.
    assert_eq!(edge.stop().await, 0);
    let (code, out, _) = site2.cli(&["doctor"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FIX  daemon: not running"), "{out}");
    assert!(out.contains("systemctl start sentra-edge"), "{out}");
    assert!(
        out.contains("FIX  broker 127.0.0.1:0: not listening"),
        "{out}"
    );

    // What the daily timer runs: dated backups, the newest two kept, and doctor content.
    let backups = tempfile::tempdir().expect("tempdir");
    let dir = backups.path().to_str().expect("utf-8");
    for _ in 0..3 {
        let (code, out, err) = site2.cli(&["backup", "--into", dir, "--keep", "2"]);
        assert_eq!(code, 0, "{out}{err}");
        // Named by the second: the next one gets a name of its own.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let kept = std::fs::read_dir(backups.path()).expect("list").count();
    assert_eq!(kept, 2, "the oldest of three went");
    let (_, out, _) = site2.cli(&["doctor"]);
    assert!(out.contains("ok   backup: last good one"), "{out}");
}

#[test]
fn doctor_reports_a_bad_config_with_exit_code_2() {
    let site = Site::with_config("[mqtt]\nmax_clients = 0\n");
    let (code, out, err) = site.cli(&["doctor"]);
    // A second [mqtt] table (the harness writes one) is invalid TOML: a configuration error.
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.starts_with("FIX  config"), "{out}");
}
