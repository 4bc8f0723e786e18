//! Who may do what on the branch broker: one pure function, [`allows`], from (device, topic,
//! publish or subscribe) to yes or no. The broker's hooks call it for every SUBSCRIBE filter and
//! every PUBLISH of a LAN client; the daemon's own messages never pass here (they are forwarded
//! in-process and no LAN client can take that identity).
//!
//! The rules:
//! - **Subscribe**: every paired role (tablet, pos, storekeeper, admin) may subscribe to any
//!   filter under `sentra/<its branch>/` (`sentra/<branch>/#` included). Wildcards in the first
//!   two levels, other branches, `$SYS/...`, shared subscriptions (`$share/...`) and anything
//!   outside `sentra/` are refused.
//! - **Publish**: the `sentra/<branch>/...` topics are the system's: work orders, scans, stock,
//!   print jobs, bookings and sync state are published only by the daemon, after the store committed the
//!   change, so a tablet cannot fake a scan or a stock level. The one topic a device may publish
//!   to (any role alike) is its own presence topic `sentra/<branch>/devices/<device id>`, typically
//!   as its Last Will ("offline") and a retained "online" on connect. Changes go through the
//!   local API, which validates, authorises and writes them to the outbox.

use crate::domain::Role;

/// What a client asks to do with a topic (a topic name to publish, a filter to subscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Publish,
    Subscribe,
}

/// The authenticated client asking.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub role: Role,
    pub device_id: &'a str,
    pub branch: &'a str,
}

/// May `client` do `access` on `topic`?
pub fn allows(client: Client<'_>, topic: &str, access: Access) -> bool {
    let mut levels = topic.split('/');
    if levels.next() != Some("sentra") || levels.next() != Some(client.branch) {
        return false;
    }
    let rest: Vec<&str> = levels.collect();
    if rest.is_empty() || rest.iter().any(|l| l.contains('\0')) {
        return false;
    }
    match access {
        // Every role sees its own branch; which levels follow is up to the filter, as long as it
        // is a valid filter (the broker checks `#` and `+` placement).
        Access::Subscribe => match client.role {
            Role::Tablet | Role::Pos | Role::Storekeeper | Role::Admin => true,
        },
        // Only the device's own presence topic; never a wildcard (a topic name has none anyway).
        Access::Publish => match client.role {
            Role::Tablet | Role::Pos | Role::Storekeeper | Role::Admin => {
                rest.len() == 2
                    && rest[0] == "devices"
                    && rest[1] == client.device_id
                    && !client.device_id.is_empty()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "0190e0c2-aaaa-7bbb-8ccc-000000000001";

    fn check(role: Role, topic: &str, access: Access, want: bool) {
        let client = Client {
            role,
            device_id: DEV,
            branch: "JKT01",
        };
        assert_eq!(
            allows(client, topic, access),
            want,
            "{role:?} {access:?} {topic:?}"
        );
    }

    #[test]
    fn subscribe_only_under_own_branch() {
        use Access::Subscribe as S;
        for role in Role::ALL {
            for (topic, want) in [
                ("sentra/JKT01/#", true),
                ("sentra/JKT01/work-orders/+", true),
                ("sentra/JKT01/work-orders/0190e0c2", true),
                ("sentra/JKT01/scans/storeroom", true),
                ("sentra/JKT01/stock/#", true),
                ("sentra/JKT01/sync", true),
                ("sentra/JKT01/+/x", true),
                ("sentra/JKT01", false),
                ("sentra/JKT02/#", false),
                ("sentra/+/#", false),
                ("sentra/#", false),
                ("#", false),
                ("+/JKT01/#", false),
                ("$SYS/#", false),
                ("$share/g/sentra/JKT01/#", false),
                ("other/JKT01/#", false),
                ("sentra/jkt01/#", false),
                ("", false),
            ] {
                check(role, topic, S, want);
            }
        }
    }

    #[test]
    fn publish_only_own_presence() {
        use Access::Publish as P;
        let own = format!("sentra/JKT01/devices/{DEV}");
        for role in Role::ALL {
            for (topic, want) in [
                (own.as_str(), true),
                ("sentra/JKT01/devices/someone-else", false),
                (
                    "sentra/JKT02/devices/0190e0c2-aaaa-7bbb-8ccc-000000000001",
                    false,
                ),
                ("sentra/JKT01/work-orders/1", false),
                ("sentra/JKT01/scans/storeroom", false),
                ("sentra/JKT01/stock/OLI-10W40", false),
                ("sentra/JKT01/print-jobs/1", false),
                ("sentra/JKT01/sync", false),
                ("sentra/JKT01/devices", false),
                (
                    "sentra/JKT01/devices/0190e0c2-aaaa-7bbb-8ccc-000000000001/x",
                    false,
                ),
                ("other", false),
            ] {
                check(role, topic, P, want);
            }
        }
    }

    #[test]
    fn an_empty_device_id_owns_nothing() {
        let client = Client {
            role: Role::Admin,
            device_id: "",
            branch: "JKT01",
        };
        assert!(!allows(client, "sentra/JKT01/devices/", Access::Publish));
    }
}
