//! TLS on the branch LAN, with real clients on real sockets: a box set up like a real one
//! (`lan.plain = false`) serves the API over HTTPS and MQTT over TLS with its own certificate,
//! which a client pins by the fingerprint `sentra-edge pair` printed; a client pinning anything
//! else is refused at the handshake, before it sends a byte of HTTP; the plain ports are closed.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::StatusCode;
use rumqttc::{QoS, TlsConfiguration, Transport};
use serde_json::json;

use crate::harness::{Edge, Site, pinned_client};
use crate::mqtt::{connect_v3, options};

/// What `sentra-edge pair` printed: the code and the pairing URI.
fn pair_cli(site: &Site) -> (String, String) {
    let (code, out, err) = site.cli(&["pair", "--role", "tablet"]);
    assert_eq!(code, 0, "pair: {err}");
    let uri = out
        .split_whitespace()
        .find(|w| w.starts_with("sentra://pair?"))
        .unwrap_or_else(|| panic!("a pairing URI in:\n{out}"))
        .to_owned();
    assert!(
        out.contains("--pinnedpubkey sha256//"),
        "the curl pin is printed:\n{out}"
    );
    let code = uri
        .split("code=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("code=")
        .to_owned();
    (code, uri)
}

async fn tls_box() -> (Site, Edge) {
    let site = Site::tls_only("");
    site.load_demo_data();
    let edge = site.start().await;
    assert!(edge.base.starts_with("https://"), "{}", edge.base);
    (site, edge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinning_client_pairs_reads_and_writes_over_https() {
    let (site, edge) = tls_box().await;
    let (code, uri) = pair_cli(&site);
    // The URI names the box's HTTPS address and the certificate it presents.
    assert_eq!(
        uri,
        format!(
            "sentra://pair?url={}&code={code}&fp={}",
            edge.base, edge.fingerprint
        )
    );
    // A tablet takes the fingerprint from the URI, and pins it.
    let fp = uri.split("fp=").nth(1).expect("fp=");
    let tablet = pinned_client(fp);
    let pair = tablet
        .post(format!("{}/v1/pair", edge.base))
        .json(&json!({"code": code, "device_name": "Tablet TLS"}))
        .send()
        .await
        .expect("pair over https");
    assert_eq!(pair.status(), StatusCode::CREATED);
    let body: serde_json::Value = pair.json().await.expect("json");
    let token = body["token"].as_str().expect("token");
    assert_eq!(body["mqtt"]["tls"], true);
    assert_eq!(
        body["mqtt"]["port"],
        edge.mqtt_tls.expect("mqtt tls").port()
    );
    assert!(
        body["mqtt"].get("plain_port").is_none(),
        "no plain port on a real box: {body}"
    );

    let wo = tablet
        .post(format!("{}/v1/work-orders", edge.base))
        .bearer_auth(token)
        .header("Idempotency-Key", "tls-wo-1")
        .json(&json!({"customer_name": "Budi", "vehicle_plate": "B1234XYZ", "complaint": "Rem bunyi"}))
        .send()
        .await
        .expect("write over https");
    assert_eq!(wo.status(), StatusCode::CREATED);
    let id = wo.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let read = tablet
        .get(format!("{}/v1/work-orders/{id}", edge.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("read over https");
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(
        read.json::<serde_json::Value>().await.expect("json")["status"],
        "OPEN"
    );

    // status shows the same fingerprint (text and JSON).
    let (c, out, err) = site.cli(&["status", "--json"]);
    assert_eq!(c, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("status json");
    assert_eq!(v["lan"]["fingerprint"], edge.fingerprint);
    let (c, out, err) = site.cli(&["status"]);
    assert_eq!(c, 0, "{err}");
    assert!(out.contains(&edge.fingerprint), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pinning_another_key_is_refused_before_it_sends_anything() {
    let (site, edge) = tls_box().await;
    let (code, _) = pair_cli(&site);
    let wrong = format!("sha256:{}", "00".repeat(32));
    let impostor = pinned_client(&wrong);
    let refused = impostor
        .post(format!("{}/v1/pair", edge.base))
        .json(&json!({"code": code, "device_name": "Impostor"}))
        .send()
        .await
        .expect_err("the handshake fails");
    assert!(refused.is_connect(), "{refused:?}");
    // The request never reached the box: the code is still unused, and redeems once.
    let right = pinned_client(&edge.fingerprint);
    let pair = right
        .post(format!("{}/v1/pair", edge.base))
        .json(&json!({"code": code, "device_name": "Tablet"}))
        .send()
        .await
        .expect("pair");
    assert_eq!(pair.status(), StatusCode::CREATED);
    // A restart, and a restore of a backup, present the same certificate (pins survive).
    let pinned = edge.fingerprint.clone();
    let backup = site.dir.path().join("box.backup");
    let (c, _, err) = site.cli(&["backup", backup.to_str().expect("utf-8")]);
    assert_eq!(c, 0, "backup: {err}");
    edge.stop().await;
    let (c, _, err) = site.cli(&["restore", backup.to_str().expect("utf-8")]);
    assert_eq!(c, 0, "restore: {err}");
    let again = site.start().await;
    assert_eq!(again.fingerprint, pinned);
    let v: serde_json::Value =
        serde_json::from_str(&site.cli(&["status", "--json"]).1).expect("json");
    assert_eq!(v["lan"]["fingerprint"], pinned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_delivers_store_events_to_a_pinning_client() {
    let (site, edge) = tls_box().await;
    let tablet = edge.pair(&site, "tablet").await;
    let keeper = edge.pair(&site, "storekeeper").await;
    let addr = edge.mqtt_tls.expect("mqtt over tls");
    let pin = sentra_edge::lan::Fingerprint::parse(&edge.fingerprint).expect("fp");
    let tls = |pin| {
        Transport::Tls(TlsConfiguration::Rustls(Arc::new(
            sentra_edge::lan::client_config(pin),
        )))
    };
    let mut opts = options(addr, &keeper.id, &keeper.id, &keeper.mqtt);
    opts.set_transport(tls(pin));
    let (mut sub, _) = connect_v3(opts).await.expect("connects over TLS");
    assert!(matches!(
        sub.subscribe("sentra/JKT01/#", QoS::AtLeastOnce).await,
        rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)
    ));
    let (s, wo) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Budi", "vehicle_plate": "B1234XYZ", "complaint": "Rem bunyi"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    let topic = format!(
        "sentra/JKT01/work-orders/{}",
        wo["id"].as_str().expect("id")
    );
    let (_, v) = sub.publish_on(&topic).await;
    assert_eq!(v["status"], "OPEN");

    // Pinning another key: refused at the handshake, the credentials never sent.
    let mut wrong = options(addr, &tablet.id, &tablet.id, &tablet.mqtt);
    wrong.set_transport(tls(sentra_edge::lan::Fingerprint([0; 32])));
    let err = connect_v3(wrong).await.err().expect("refused");
    assert!(
        err.to_lowercase().contains("tls") || err.contains("certificate"),
        "{err}"
    );
    // Plain MQTT spoken to the TLS port gets no CONNACK.
    let plain = connect_v3(options(addr, &tablet.id, &tablet.id, &tablet.mqtt)).await;
    assert!(plain.is_err(), "plain MQTT on the TLS port was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_lan_plain_the_plain_ports_are_closed() {
    // Two ports that were free a moment ago, named as the plain listeners.
    let free = || -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
    };
    let (api, mqtt) = (free(), free());
    let site = Site::tls_only("");
    let (api_s, mqtt_s) = (api.to_string(), mqtt.to_string());
    let edge = Edge::spawn(
        &site.config,
        &[
            ("SENTRA_EDGE__API__LISTEN", api_s.as_str()),
            ("SENTRA_EDGE__MQTT__LISTEN", mqtt_s.as_str()),
        ],
    )
    .await;
    assert!(edge.mqtt.is_none() && edge.mqtt_tls.is_some());
    let err = tokio::net::TcpStream::connect(mqtt)
        .await
        .expect_err("nothing listens on the plain MQTT port");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{mqtt}");
    // The plain API port keeps a loopback-only door for the health probes (an updater from
    // before TLS asks `/readyz` there): it answers them and nothing else.
    let door = format!("http://{api}");
    let client = crate::harness::http_client();
    for probe in ["/healthz", "/readyz"] {
        let r = client
            .get(format!("{door}{probe}"))
            .send()
            .await
            .expect("probe door");
        assert_eq!(r.status(), StatusCode::OK, "{probe}");
    }
    for (method, path) in [
        ("GET", "/v1/work-orders"),
        ("POST", "/v1/pair"),
        ("GET", "/metrics"),
    ] {
        let r = client
            .request(method.parse().expect("method"), format!("{door}{path}"))
            .send()
            .await
            .expect("probe door");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    // ...and it listens on loopback only: every listening socket on that port is 127.0.0.1.
    let listening = listening_addresses(api.port());
    assert!(
        !listening.is_empty() && listening.iter().all(|a| a.is_loopback()),
        "the plain API port listens on {listening:?}"
    );
    // Plain HTTP spoken to the HTTPS port gets no HTTP answer.
    let plain_url = edge.base.replacen("https://", "http://", 1);
    let answer = crate::harness::http_client()
        .get(format!("{plain_url}/healthz"))
        .send()
        .await;
    assert!(
        answer.map(|r| r.status() != StatusCode::OK).unwrap_or(true),
        "plain HTTP on the TLS port answered 200"
    );
    // And the pinned client is served.
    let ok = edge
        .http
        .get(format!("{}/healthz", edge.base))
        .send()
        .await
        .expect("https");
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_garbled_handshake_is_closed_and_the_box_serves_on() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let site = Site::tls_only("header_read_timeout_secs = 1\nmax_connections = 2\n");
    let edge = site.start().await;
    let addr = edge.tls_base.trim_start_matches("https://").to_owned();
    // Silent clients hold both connection slots until the header-read timeout closes them; the
    // handshake counts against the same slot and timeout as a request head.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    for mut s in silent {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("closed by the server, not left open")
            .unwrap_or(0);
        assert_eq!(n, 0, "a silent client gets nothing but the close");
    }
    // Garbage instead of a ClientHello: closed (at most a TLS alert), no HTTP answer.
    let mut junk = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    junk.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        junk.read_to_end(&mut answer),
    )
    .await
    .expect("closed");
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "plain HTTP got an HTTP answer"
    );
    // The box serves the next pinned client.
    let ok = edge
        .http
        .get(format!("{}/healthz", edge.tls_base))
        .send()
        .await
        .expect("https");
    assert_eq!(ok.status(), StatusCode::OK);
}

/// The local addresses of the IPv4 and IPv6 sockets listening on `port` (from /proc/net/tcp*).
fn listening_addresses(port: u16) -> Vec<std::net::IpAddr> {
    let mut found = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is "ADDR:PORT" in hex; state 0A is LISTEN.
            let (Some(local), Some(&"0A")) = (cols.get(1), cols.get(3)) else {
                continue;
            };
            let Some((addr, p)) = local.split_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16) != Ok(port) {
                continue;
            }
            let bytes = hex::decode(addr).expect("hex address in /proc/net/tcp");
            // The kernel prints each 32-bit word in host (little-endian) order.
            let fixed: Vec<u8> = bytes
                .chunks(4)
                .flat_map(|w| w.iter().rev().copied())
                .collect();
            found.push(if v6 {
                let a: [u8; 16] = fixed.try_into().expect("16 bytes");
                std::net::IpAddr::from(a)
            } else {
                let a: [u8; 4] = fixed.try_into().expect("4 bytes");
                std::net::IpAddr::from(a)
            });
        }
    }
    found
}
