//! A branch LAN in miniature for tests that need one: two network namespaces, the box's and a
//! tablet's, joined by a veth pair, each with an address on one /24, loopback up and a multicast
//! route (a bare namespace has no default route, and mDNS must leave by the LAN side). Deleted
//! on drop, also when the test fails half-way.
//!
//! One file for both test crates: the system tests use it as `sentra_system_tests::netns`, the
//! box's tests include it by path (`appliance/tests/it/main.rs`). Making namespaces needs root,
//! as the tests have here and in CI; without it `VethLan::new` fails and says so.

use std::net::Ipv4Addr;
use std::process::Command;

/// Run `ip` with `args`; panics with its error output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}; install iproute2 (scripts/test.sh does)"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `f` on a thread that has entered namespace `ns` (sockets it makes, and threads it
/// starts, live there).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// The two namespaces and the box's end of the veth pair.
pub struct VethLan {
    pub box_ns: String,
    pub tablet_ns: String,
    pub box_if: String,
}

impl VethLan {
    /// `tag` (a few letters) keeps the names of concurrent tests apart; `why` says in the
    /// failure message what the test needs root for.
    pub fn new(tag: &str, box_addr: Ipv4Addr, tablet_addr: Ipv4Addr, why: &str) -> VethLan {
        assert!(
            rustix::process::geteuid().is_root(),
            "{why} needs root to make network namespaces (run the tests as root, as CI does)"
        );
        let id = std::process::id() % 1_000_000;
        // The guard exists before the first namespace, so whatever is made is removed.
        let lan = VethLan {
            box_ns: format!("sentra-{tag}box-{id}"),
            tablet_ns: format!("sentra-{tag}tab-{id}"),
            // Interface names are at most 15 bytes.
            box_if: format!("{tag}b{id}"),
        };
        let tablet_if = format!("{tag}t{id}");
        ip(&["netns", "add", &lan.box_ns]);
        ip(&["netns", "add", &lan.tablet_ns]);
        ip(&[
            "link",
            "add",
            &lan.box_if,
            "netns",
            &lan.box_ns,
            "type",
            "veth",
            "peer",
            "name",
            &tablet_if,
            "netns",
            &lan.tablet_ns,
        ]);
        for (ns, ifname, addr) in [
            (&lan.box_ns, &lan.box_if, box_addr),
            (&lan.tablet_ns, &tablet_if, tablet_addr),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ]);
            ip(&["-n", ns, "link", "set", ifname, "multicast", "on", "up"]);
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", ifname]);
        }
        lan
    }
}

impl Drop for VethLan {
    fn drop(&mut self) {
        for ns in [&self.box_ns, &self.tablet_ns] {
            // Deleting a namespace also deletes its end of the veth pair (and with it the pair).
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
