//! The box is found by name: a real `sentra-edge run` in one network namespace announces
//! `_sentra._tcp`, a real mDNS browser (mdns-sd) in another namespace, joined to the first by a
//! veth pair, finds its service, TXT record and address; after the box's address changes (a new
//! DHCP lease, as far as the box can tell), a new browse finds the new address.
//!
//! The test makes its namespaces itself (`ip netns`), so it needs root, as it has here and in CI;
//! without root it fails and says so rather than passing without having looked.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use mdns_sd::{ResolvedService, ServiceDaemon, ServiceEvent};
use tokio::process::Command;

use crate::harness::{BIN, Edge, Site};
use crate::netns::{VethLan, in_ns, ip};

/// How long a browse may take to find what it looks for. The box checks its interfaces every
/// 5 s (mdns-sd's default), and CI is a busy 2-core machine.
const BROWSE_LIMIT: Duration = Duration::from_secs(60);

const SERVICE: &str = "_sentra._tcp.local.";
const BOX_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 10);
const NEW_BOX_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 11);
const TABLET_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 20);

/// Browse for `_sentra._tcp` from inside `ns` with a fresh mDNS daemon until `wanted` accepts a
/// resolved service, or `BROWSE_LIMIT` passes (then `None`). The mdns-sd thread is started inside
/// the namespace and so lives there.
fn browse(
    ns: &str,
    wanted: impl Fn(&ResolvedService) -> bool + Send + 'static,
) -> Option<ResolvedService> {
    in_ns(ns, move || {
        let mdns = ServiceDaemon::new().expect("mdns browser");
        let events = mdns.browse(SERVICE).expect("browse");
        let deadline = Instant::now() + BROWSE_LIMIT;
        let mut found = None;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match events.recv_timeout(left) {
                Ok(ServiceEvent::ServiceResolved(s)) if wanted(&s) => {
                    found = Some(*s);
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if let Ok(done) = mdns.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
        found
    })
}

/// The fingerprint `sentra-edge status --json` reports for this box (any `sha256:` value in it),
/// or "" while the box has no TLS identity: the TXT `fp` must say the same.
fn status_fingerprint(status: &serde_json::Value) -> String {
    fn find(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::String(s) if s.starts_with("sha256:") => Some(s.clone()),
            serde_json::Value::Array(a) => a.iter().find_map(find),
            serde_json::Value::Object(o) => o.values().find_map(find),
            _ => None,
        }
    }
    find(status).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tablet_finds_the_box_by_browsing_and_again_after_its_address_changed() {
    let lan = VethLan::new("md", BOX_ADDR, TABLET_ADDR, "the mDNS browse test");
    // A real box: TLS only, as the announcement names the TLS ports.
    let site = Site::tls_only("");
    let (code, out, err) = site.cli(&["status", "--json"]);
    assert_eq!(code, 0, "status: {err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status json");
    let name = status["mdns"]["name"]
        .as_str()
        .expect("status names the announced box")
        .to_owned();
    assert!(name.starts_with("sentra-jkt01-"), "{name}");
    let fp = status_fingerprint(&status);

    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lan.box_ns, BIN, "run", "--config"])
        .arg(&site.config);
    let edge = Edge::spawn_command(
        cmd,
        &[
            ("SENTRA_EDGE__LAN__MDNS", "true"),
            ("SENTRA_EDGE__API__TLS_LISTEN", "0.0.0.0:0"),
            ("SENTRA_EDGE__MQTT__TLS_LISTEN", "0.0.0.0:0"),
        ],
    )
    .await;
    let api_port: u16 = edge
        .tls_base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the API's port");
    let mqtt_port = edge.mqtt_tls.expect("the broker runs").port();
    assert!(
        fp.starts_with("sha256:"),
        "status shows the fingerprint: {fp:?}"
    );

    let instance = format!("{name}.{SERVICE}");
    let found = {
        let instance = instance.clone();
        let ns = lan.tablet_ns.clone();
        tokio::task::spawn_blocking(move || {
            browse(&ns, move |s| {
                s.get_fullname() == instance && s.get_addresses_v4().contains(&BOX_ADDR)
            })
        })
        .await
        .expect("browse")
    }
    .unwrap_or_else(|| panic!("no {instance} at {BOX_ADDR} within {BROWSE_LIMIT:?}"));
    assert_eq!(found.get_hostname(), format!("{name}.local."));
    assert_eq!(found.get_port(), api_port, "the SRV record names the API");
    assert_eq!(found.get_property_val_str("branch"), Some("JKT01"));
    assert_eq!(found.get_property_val_str("fp"), Some(fp.as_str()));
    assert_eq!(
        found.get_property_val_str("api"),
        Some(api_port.to_string().as_str())
    );
    assert_eq!(
        found.get_property_val_str("mqtt"),
        Some(mqtt_port.to_string().as_str())
    );

    // A new lease: the old address goes, another comes. The API listens on 0.0.0.0, so the box
    // serves on the new address at once; the announcement must follow.
    ip(&[
        "-n",
        &lan.box_ns,
        "addr",
        "del",
        &format!("{BOX_ADDR}/24"),
        "dev",
        &lan.box_if,
    ]);
    ip(&[
        "-n",
        &lan.box_ns,
        "addr",
        "add",
        &format!("{NEW_BOX_ADDR}/24"),
        "dev",
        &lan.box_if,
    ]);
    let again = {
        let instance = instance.clone();
        let ns = lan.tablet_ns.clone();
        tokio::task::spawn_blocking(move || {
            browse(&ns, move |s| {
                s.get_fullname() == instance && s.get_addresses_v4().contains(&NEW_BOX_ADDR)
            })
        })
        .await
        .expect("browse")
    }
    .unwrap_or_else(|| {
        panic!("{instance} not found at its new address {NEW_BOX_ADDR} within {BROWSE_LIMIT:?}")
    });
    let addrs: HashSet<Ipv4Addr> = again.get_addresses_v4();
    assert!(
        !addrs.contains(&BOX_ADDR),
        "the old address is still announced: {addrs:?}"
    );
    assert_eq!(again.get_property_val_str("fp"), Some(fp.as_str()));

    // A clean stop unregisters (the goodbye) and exits 0.
    assert_eq!(edge.stop().await, 0);
    drop(lan);
}
