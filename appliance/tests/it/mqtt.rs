//! The embedded MQTT broker, driven with a real client library (rumqttc, MQTT 3.1.1 and 5)
//! against the real daemon: authentication, revocation, topic permissions by role, the live
//! events the API's changes cause, retained sync state across a restart, QoS 1 across a client
//! reconnect, Keep Alive 0, and a taken port.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::harness::{Device, Edge, Site};

/// A bound so a broken broker fails the test instead of hanging it (not a timing assertion).
const WAIT: Duration = Duration::from_secs(30);

/// An MQTT 3.1.1 client whose event loop runs in a task; incoming packets arrive on `rx`.
struct V3 {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Result<Packet, String>>,
    task: tokio::task::JoinHandle<()>,
}

fn options(addr: SocketAddr, client_id: &str, user: &str, pass: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_credentials(user, pass);
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Connect; Ok after CONNACK, Err with the refusal otherwise.
async fn connect_v3(opts: MqttOptions) -> Result<(V3, bool), String> {
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(Ok(p)).is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    match tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("connack in time")
    {
        Some(Ok(Packet::ConnAck(ack))) if ack.code == rumqttc::ConnectReturnCode::Success => {
            Ok((V3 { client, rx, task }, ack.session_present))
        }
        Some(Ok(other)) => Err(format!("unexpected first packet {other:?}")),
        Some(Err(e)) => Err(e),
        None => Err("event loop ended".into()),
    }
}

impl V3 {
    async fn subscribe(&mut self, filter: &str, qos: QoS) -> rumqttc::SubscribeReasonCode {
        self.client.subscribe(filter, qos).await.expect("subscribe");
        loop {
            match self.next().await {
                Packet::SubAck(ack) => return ack.return_codes[0],
                _ => continue,
            }
        }
    }

    async fn next(&mut self) -> Packet {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a packet in time")
            .expect("event loop running")
            .expect("connection up")
    }

    /// The next PUBLISH on `topic` (others are skipped), as JSON.
    async fn publish_on(&mut self, topic: &str) -> (rumqttc::Publish, Value) {
        loop {
            if let Packet::Publish(p) = self.next().await
                && p.topic == topic
            {
                let v = serde_json::from_slice(&p.payload).expect("json payload");
                return (p, v);
            }
        }
    }

    /// Wait until the broker closes the connection.
    async fn closed(&mut self) -> String {
        loop {
            match tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .expect("closed in time")
            {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return e,
                None => return "event loop ended".into(),
            }
        }
    }
}

async fn connect_device(edge: &Edge, dev: &Device) -> V3 {
    let addr = edge.mqtt.expect("broker running");
    connect_v3(options(addr, &dev.id, &dev.id, &dev.token))
        .await
        .expect("paired device connects")
        .0
}

async fn started() -> (Site, Edge) {
    let site = Site::new();
    site.load_demo_data();
    let edge = site.start().await;
    (site, edge)
}

#[tokio::test]
async fn mqtt_pairing_credentials_connect_and_wrong_ones_are_refused() {
    let (site, edge) = started().await;
    let addr = edge.mqtt.expect("broker running");
    // The pairing answer carries the broker credentials.
    let code = site.pairing_code("tablet");
    let (s, body) = edge
        .call(
            None,
            reqwest::Method::POST,
            "/v1/pair",
            Some(json!({"code": code, "device_name": "Tablet MQTT"})),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id = body["device"]["id"].as_str().expect("id");
    let token = body["token"].as_str().expect("token");
    assert_eq!(body["mqtt"]["username"], id);
    assert_eq!(body["mqtt"]["password"], token);
    assert_eq!(body["mqtt"]["port"], addr.port());
    assert_eq!(body["mqtt"]["client_id"], id);
    assert_eq!(body["mqtt"]["topics"], "sentra/JKT01/#");

    // Right credentials: accepted, MQTT 3.1.1.
    connect_v3(options(addr, id, id, token))
        .await
        .expect("accepted");
    // A wrong password, an unknown user, another device's token, no credentials: refused.
    let other = edge.pair(&site, "pos").await;
    for (cid, user, pass) in [
        (id, id, "sek_wrong"),
        (id, "nobody", token),
        (id, id, other.token.as_str()),
        (other.id.as_str(), id, token),
    ] {
        let err = connect_v3(options(addr, cid, user, pass))
            .await
            .err()
            .unwrap_or_else(|| panic!("{cid}/{user} must be refused"));
        assert!(err.contains("Connection refused"), "{err}");
    }
    let mut anon = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    anon.set_keep_alive(Duration::from_secs(30));
    assert!(connect_v3(anon).await.is_err(), "anonymous must be refused");
    // A client id that is not the device's is refused even with the right password.
    let err = connect_v3(options(addr, "sentra-edge", id, token))
        .await
        .err()
        .expect("foreign client id refused");
    assert!(err.contains("Connection refused"), "{err}");
    // `<device id>-<suffix>` is the device's own second connection.
    connect_v3(options(addr, &format!("{id}-kds"), id, token))
        .await
        .expect("suffixed client id accepted");
}

#[tokio::test]
async fn mqtt_keep_alive_zero_is_accepted_on_3_1_1_and_5() {
    let (site, edge) = started().await;
    let addr = edge.mqtt.expect("broker running");
    let dev = edge.pair(&site, "tablet").await;
    let mut o = options(addr, &dev.id, &dev.id, &dev.token);
    o.set_keep_alive(Duration::ZERO);
    let (mut c, _) = connect_v3(o).await.expect("keep alive 0 accepted (3.1.1)");
    assert!(matches!(
        c.subscribe("sentra/JKT01/#", QoS::AtLeastOnce).await,
        rumqttc::SubscribeReasonCode::Success(_)
    ));

    // MQTT 5 with Keep Alive 0, written by hand (rumqttc's v5 client refuses to send it).
    let ack = connect_v5_raw(addr, &format!("{}-v5", dev.id), &dev.id, &dev.token, 0).await;
    assert_eq!(ack[0], 0x20, "CONNACK: {ack:?}");
    assert_eq!(ack[3], 0x00, "reason code success: {ack:?}");
    let bad = connect_v5_raw(addr, &format!("{}-v5b", dev.id), &dev.id, "sek_wrong", 0).await;
    assert_eq!(bad[3], 0x86, "bad user name or password: {bad:?}");
}

/// An MQTT 5 CONNECT (clean start, username, password, `keep_alive`) on a fresh socket; returns
/// the first bytes of the answer (the CONNACK).
async fn connect_v5_raw(
    addr: SocketAddr,
    client_id: &str,
    user: &str,
    pass: &str,
    keep_alive: u16,
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let field = |v: &mut Vec<u8>, s: &str| {
        v.extend_from_slice(&u16::try_from(s.len()).expect("short").to_be_bytes());
        v.extend_from_slice(s.as_bytes());
    };
    let mut body = Vec::new();
    field(&mut body, "MQTT");
    body.push(5); // protocol level
    body.push(0xC2); // user name, password, clean start
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.push(0); // no properties
    field(&mut body, client_id);
    field(&mut body, user);
    field(&mut body, pass);
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        packet.push(b);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(&packet).await.expect("send CONNECT");
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("CONNACK in time")
        .expect("read");
    buf.truncate(n);
    assert!(n >= 4, "short CONNACK {buf:?}");
    buf
}

#[tokio::test]
async fn mqtt_revoked_device_is_disconnected_and_refused() {
    let (site, edge) = started().await;
    let addr = edge.mqtt.expect("broker running");
    let admin = edge.pair(&site, "admin").await;
    let tablet = edge.pair(&site, "tablet").await;
    let mut c = connect_device(&edge, &tablet).await;
    let (s, b) = edge
        .post(
            &admin,
            &format!("/v1/devices/{}/revoke", tablet.id),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The live connection ends...
    c.closed().await;
    // ...and the credentials no longer work.
    let err = connect_v3(options(addr, &tablet.id, &tablet.id, &tablet.token))
        .await
        .err()
        .expect("revoked device refused");
    assert!(err.contains("Connection refused"), "{err}");
}

#[tokio::test]
async fn mqtt_topic_permissions_by_role() {
    let (site, edge) = started().await;
    let addr = edge.mqtt.expect("broker running");
    for role in ["tablet", "pos", "storekeeper", "admin"] {
        let dev = edge.pair(&site, role).await;
        let mut c = connect_device(&edge, &dev).await;
        for (filter, ok) in [
            ("sentra/JKT01/#", true),
            ("sentra/JKT01/work-orders/+", true),
            ("sentra/JKT02/#", false),
            ("sentra/+/sync", false),
            ("#", false),
            ("$SYS/#", false),
        ] {
            let code = c.subscribe(filter, QoS::AtLeastOnce).await;
            assert_eq!(
                matches!(code, rumqttc::SubscribeReasonCode::Success(_)),
                ok,
                "{role} subscribing {filter}: {code:?}"
            );
        }
    }

    // A tablet publishing as the system (MQTT 5, so the refusal is visible in the PUBACK), and
    // to its own presence topic.
    let tablet = edge.pair(&site, "tablet").await;
    let keeper = edge.pair(&site, "storekeeper").await;
    let mut watcher = connect_device(&edge, &keeper).await;
    watcher
        .subscribe("sentra/JKT01/stock/#", QoS::AtLeastOnce)
        .await;
    watcher
        .subscribe("sentra/JKT01/devices/#", QoS::AtLeastOnce)
        .await;
    let mut o5 =
        rumqttc::v5::MqttOptions::new(tablet.id.clone(), addr.ip().to_string(), addr.port());
    o5.set_credentials(tablet.id.clone(), tablet.token.clone());
    let (c5, mut ev5) = rumqttc::v5::AsyncClient::new(o5, 10);
    let (tx, mut acks) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = ev5.poll().await {
            if let rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(a)) = e {
                let _ = tx.send(a.reason);
            }
        }
    });
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::mqttbytes::v5::PubAckReason;
    c5.publish(
        "sentra/JKT01/stock/BRK-PAD-FR",
        Q5::AtLeastOnce,
        false,
        r#"{"sku":"BRK-PAD-FR","on_hand":999}"#,
    )
    .await
    .expect("publish");
    let reason = tokio::time::timeout(WAIT, acks.recv())
        .await
        .expect("puback")
        .expect("ack");
    assert_eq!(reason, PubAckReason::NotAuthorized);
    c5.publish(
        format!("sentra/JKT01/devices/{}", tablet.id),
        Q5::AtLeastOnce,
        false,
        r#"{"online":true}"#,
    )
    .await
    .expect("publish");
    let reason = tokio::time::timeout(WAIT, acks.recv())
        .await
        .expect("puback")
        .expect("ack");
    assert!(
        matches!(
            reason,
            PubAckReason::Success | PubAckReason::NoMatchingSubscribers
        ),
        "{reason:?}"
    );
    // The forged stock level never reached the watcher: the first message it gets is the
    // presence one, published after it.
    let first = loop {
        if let Packet::Publish(p) = watcher.next().await {
            break p;
        }
    };
    assert_eq!(first.topic, format!("sentra/JKT01/devices/{}", tablet.id));
}

#[tokio::test]
async fn mqtt_events_follow_the_api_at_min_qos() {
    let (site, edge) = started().await;
    let tablet = edge.pair(&site, "tablet").await;
    let keeper = edge.pair(&site, "storekeeper").await;
    let pos = edge.pair(&site, "pos").await;
    let mut q1 = connect_device(&edge, &keeper).await;
    assert!(matches!(
        q1.subscribe("sentra/JKT01/#", QoS::AtLeastOnce).await,
        rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)
    ));
    let mut q0 = connect_device(&edge, &pos).await;
    q0.subscribe("sentra/JKT01/work-orders/#", QoS::AtMostOnce)
        .await;

    let (s, wo) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Budi", "vehicle_plate": "B1234XYZ", "complaint": "Rem bunyi"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    let id = wo["id"].as_str().expect("id");
    let topic = format!("sentra/JKT01/work-orders/{id}");
    let (p, v) = q1.publish_on(&topic).await;
    assert_eq!(v["status"], "OPEN");
    assert_eq!(v["op"], "created");
    assert_eq!(
        p.qos,
        QoS::AtLeastOnce,
        "QoS 1 publish to a QoS 1 subscriber"
    );
    let (p0, _) = q0.publish_on(&topic).await;
    assert_eq!(p0.qos, QoS::AtMostOnce, "min(publish, subscription) QoS");

    let (s, b) = edge
        .post(
            &tablet,
            &format!("/v1/work-orders/{id}/status"),
            json!({"status": "IN_PROGRESS"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, v) = q1.publish_on(&topic).await;
    assert_eq!(v["status"], "IN_PROGRESS");

    let (_, stock) = edge.get(&keeper, "/v1/stock/BRK-PAD-FR").await;
    let before = stock["on_hand"].as_i64().expect("on_hand");
    let (s, b) = edge
        .post(
            &keeper,
            &format!("/v1/work-orders/{id}/parts"),
            json!({"sku": "BRK-PAD-FR", "qty": 2}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, v) = q1.publish_on("sentra/JKT01/stock/BRK-PAD-FR").await;
    assert_eq!(v["on_hand"], before - 2);
    assert_eq!(v["delta"], -2);
    assert_eq!(v["reason"], "DISPENSE");
    assert_eq!(v["work_order_id"], id);

    let (s, b) = edge
        .post(
            &tablet,
            &format!("/v1/work-orders/{id}/status"),
            json!({"status": "DONE"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, inv) = edge
        .post(
            &pos,
            "/v1/invoices",
            json!({"work_order_id": id, "labour": [{"description": "Jasa", "amount": 100000}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    let (s, job) = edge
        .post(
            &pos,
            &format!("/v1/invoices/{}/print", inv["id"].as_str().expect("id")),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job_id = job["id"].as_str().expect("job id");
    let (_, v) = q1
        .publish_on(&format!("sentra/JKT01/print-jobs/{job_id}"))
        .await;
    assert_eq!(v["id"], job_id);
    assert!(v["status"].is_string(), "{v}");
}

#[tokio::test]
async fn mqtt_sync_state_is_retained_for_late_subscribers_and_after_a_restart() {
    let (site, edge) = started().await;
    let keeper = edge.pair(&site, "storekeeper").await;
    let mut c = connect_device(&edge, &keeper).await;
    c.subscribe("sentra/JKT01/sync", QoS::AtLeastOnce).await;
    let (p, v) = c.publish_on("sentra/JKT01/sync").await;
    assert!(p.retain, "a late subscriber gets the retained sync state");
    assert_eq!(v["link"], "unenrolled");
    assert!(v["pending_events"].as_u64().expect("pending") > 0, "{v}");
    let pending = v["pending_events"].clone();
    drop(c);
    assert_eq!(edge.stop().await, 0);

    let edge = site.start().await;
    let mut c = connect_device(&edge, &keeper).await;
    c.subscribe("sentra/JKT01/sync", QoS::AtLeastOnce).await;
    let (p, v) = c.publish_on("sentra/JKT01/sync").await;
    assert!(p.retain, "retained again after the restart");
    assert_eq!(v["pending_events"], pending);
}

#[tokio::test]
async fn mqtt_qos1_messages_wait_for_a_persistent_session() {
    let (site, edge) = started().await;
    let tablet = edge.pair(&site, "tablet").await;
    let keeper = edge.pair(&site, "storekeeper").await;
    let addr = edge.mqtt.expect("broker running");
    let persistent = || {
        let mut o = options(addr, &keeper.id, &keeper.id, &keeper.token);
        o.set_clean_session(false);
        o
    };
    let (mut c, _) = connect_v3(persistent()).await.expect("connect");
    c.subscribe("sentra/JKT01/work-orders/#", QoS::AtLeastOnce)
        .await;
    // The link drops (the client's socket closes without a DISCONNECT).
    c.task.abort();
    drop(c);

    // While it is away, a work order is opened.
    let (s, wo) = edge
        .post(
            &tablet,
            "/v1/work-orders",
            json!({"customer_name": "Sari", "vehicle_plate": "B1BEN", "complaint": "Oli"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    let id = wo["id"].as_str().expect("id");

    let (mut c, session_present) = connect_v3(persistent()).await.expect("reconnect");
    assert!(session_present, "the broker kept the session");
    let (p, v) = c
        .publish_on(&format!("sentra/JKT01/work-orders/{id}"))
        .await;
    assert_eq!(v["status"], "OPEN");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn mqtt_port_taken_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let site = Site::new();
    let out = tokio::process::Command::new(crate::harness::BIN)
        .arg("run")
        .arg("--config")
        .arg(&site.config)
        .env("SENTRA_EDGE__MQTT__LISTEN", addr.to_string())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("mqtt.listen {addr}")), "{err}");
    assert!(err.contains("using this port"), "{err}");
}
