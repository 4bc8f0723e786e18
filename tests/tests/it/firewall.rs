//! The image's firewall (`image/files/nftables.conf`): it parses (`nft -c -f`), the image build
//! installs and enables it, and, loaded into a network namespace of its own (the test makes two,
//! the box's and a tablet's, joined by a veth pair), it lets the tablet reach the API and MQTT
//! TLS ports and mDNS but not the plain ports or anything else, lets the box reach itself on
//! loopback, and with the LAN restricted to another interface lets the tablet reach nothing.
//!
//! Needs root (namespaces, nftables), as the tests have here and in CI; without it the test
//! fails and says so.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use sentra_system_tests::netns::{VethLan, in_ns, ip};

use crate::systemd::repo;

const BOX_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 78, 10);
const TABLET_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 78, 20);
/// What the tablet may reach: the TLS API, MQTT over TLS.
const OPEN_TCP: [u16; 2] = [8443, 8883];
/// What it may not: the legacy plain ports (closed until a technician opens them), PostgreSQL
/// as a stand-in for anything else that might listen.
const CLOSED_TCP: [u16; 3] = [8080, 1883, 5432];
/// A reachable port connects at once on a veth; allow for a loaded CI machine.
const OPEN_LIMIT: Duration = Duration::from_secs(20);
/// A dropped SYN never connects, however long one waits; this only bounds the test's time.
const CLOSED_WAIT: Duration = Duration::from_secs(2);

fn ruleset() -> std::path::PathBuf {
    repo().join("image/files/nftables.conf")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}; scripts/test.sh installs iproute2 and nftables"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Load `rules` (a ruleset file's text) into the box's namespace.
fn load(lan: &VethLan, rules: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nftables.conf");
    std::fs::write(&path, rules).expect("write ruleset");
    run(Command::new("ip")
        .args(["netns", "exec", &lan.box_ns, "nft", "-f"])
        .arg(&path));
}

/// Whether a TCP connection to `to` completes from inside `ns` (a listener is there: a closed
/// port would be refused, not dropped, without the firewall).
fn connects(ns: &str, to: SocketAddr, wait: Duration) -> bool {
    in_ns(ns, move || TcpStream::connect_timeout(&to, wait).is_ok())
}

/// Whether a datagram sent from `ns` to the box's `port` arrives at the box's socket `rx`.
fn datagram_arrives(ns: &str, rx: &UdpSocket, port: u16, wait: Duration) -> bool {
    let to = SocketAddr::from((BOX_ADDR, port));
    in_ns(ns, move || {
        let tx = UdpSocket::bind((TABLET_ADDR, 0)).expect("udp bind");
        tx.send_to(b"sentra", to).expect("udp send");
    });
    rx.set_read_timeout(Some(wait)).expect("read timeout");
    let mut buf = [0u8; 16];
    matches!(rx.recv_from(&mut buf), Ok((6, _)))
}

#[test]
fn the_ruleset_parses() {
    assert!(
        is_root(),
        "nft -c needs root (CAP_NET_ADMIN) to check a ruleset; run the tests as root, as CI does"
    );
    // In a namespace of its own, so the check touches nothing of the machine's.
    let ns = format!("sentra-fwchk-{}", std::process::id());
    ip(&["netns", "add", &ns]);
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "-c", "-f"])
        .arg(ruleset())
        .output();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let out = out.expect("nft; scripts/test.sh installs nftables");
    assert!(
        out.status.success(),
        "nft -c -f image/files/nftables.conf:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_image_installs_and_enables_the_firewall() {
    let customize =
        std::fs::read_to_string(repo().join("image/customize.sh")).expect("customize.sh");
    assert!(
        customize
            .contains(r#"install -D -m 0644 "$files/nftables.conf" "$root/etc/nftables.conf""#),
        "image/customize.sh does not install image/files/nftables.conf as /etc/nftables.conf"
    );
    let enable = customize
        .split("systemctl enable")
        .nth(1)
        .expect("customize.sh enables units");
    let enable = &enable[..enable.find("\n\n").expect("the enable command ends")];
    assert!(
        enable.split_whitespace().any(|w| w == "nftables.service"),
        "the image does not enable nftables.service"
    );
    let packages = std::fs::read_to_string(repo().join("image/packages")).expect("packages");
    assert!(
        packages.lines().any(|l| l.trim() == "nftables"),
        "image/packages lacks nftables"
    );
    let modules = std::fs::read_to_string(repo().join("image/modules.keep")).expect("modules");
    for dir in [
        "net/netfilter/*",
        "net/ipv4/netfilter/*",
        "net/ipv6/netfilter/*",
    ] {
        assert!(
            modules.lines().any(|l| l.trim() == dir),
            "image/modules.keep lacks {dir}: the image's kernel could not load the firewall"
        );
    }
}

#[test]
fn the_firewall_opens_only_the_lan_services() {
    let lan = VethLan::new("fw", BOX_ADDR, TABLET_ADDR, "the firewall test");
    let rules = std::fs::read_to_string(ruleset()).expect("ruleset");
    // Something listens on every port the test tries, so only the firewall can stop a connection.
    let listeners: Vec<TcpListener> = in_ns(&lan.box_ns, || {
        OPEN_TCP
            .iter()
            .chain(&CLOSED_TCP)
            .map(|p| TcpListener::bind((Ipv4Addr::UNSPECIFIED, *p)).expect("listen"))
            .collect()
    });
    let (mdns_rx, other_rx) = in_ns(&lan.box_ns, || {
        (
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 5353)).expect("udp 5353"),
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 5354)).expect("udp 5354"),
        )
    });
    load(&lan, &rules);

    for port in OPEN_TCP {
        assert!(
            connects(&lan.tablet_ns, (BOX_ADDR, port).into(), OPEN_LIMIT),
            "the tablet cannot reach the box's port {port}"
        );
    }
    for port in CLOSED_TCP {
        assert!(
            !connects(&lan.tablet_ns, (BOX_ADDR, port).into(), CLOSED_WAIT),
            "the tablet reached the box's port {port}, which the firewall must close"
        );
        // The box itself still reaches it (the watchdog probes the API over loopback).
        assert!(
            connects(&lan.box_ns, (Ipv4Addr::LOCALHOST, port).into(), OPEN_LIMIT),
            "the box cannot reach its own port {port} over loopback"
        );
    }
    assert!(
        datagram_arrives(&lan.tablet_ns, &mdns_rx, 5353, OPEN_LIMIT),
        "mDNS (udp 5353) does not reach the box"
    );
    assert!(
        !datagram_arrives(&lan.tablet_ns, &other_rx, 5354, CLOSED_WAIT),
        "udp 5354 reached the box"
    );

    // The legacy opt-in, as the technician's guide has it: remove the # of the plain ports' line.
    let plain = rules.replace(
        "# tcp dport { 8080, 1883 } accept",
        "tcp dport { 8080, 1883 } accept",
    );
    assert_ne!(
        plain, rules,
        "the ruleset has the commented plain-ports line"
    );
    load(&lan, &plain);
    for port in [8080, 1883] {
        assert!(
            connects(&lan.tablet_ns, (BOX_ADDR, port).into(), OPEN_LIMIT),
            "with the plain ports opened the tablet cannot reach {port}"
        );
    }

    // The LAN on one interface only, as the guide has it: the tablet's side is another one now.
    let one_if = rules.replace(
        "\n        jump lan\n",
        "\n        iifname \"enp9s9\" jump lan\n",
    );
    assert_ne!(one_if, rules, "the ruleset has the `jump lan` line");
    load(&lan, &one_if);
    assert!(
        !connects(&lan.tablet_ns, (BOX_ADDR, 8443).into(), CLOSED_WAIT),
        "with the LAN restricted to another interface the tablet still reached the API"
    );
    assert!(connects(
        &lan.box_ns,
        (Ipv4Addr::LOCALHOST, 8443).into(),
        OPEN_LIMIT
    ));
    drop(listeners);
}
