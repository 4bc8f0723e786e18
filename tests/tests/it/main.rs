//! Whole-system tests: `sentra-edge` and `sentra-cloud` over real sockets with PostgreSQL (and
//! Redis for booking), and the files that put the edge on a box (static binary, systemd, udev,
//! provisioning).

mod booking;
mod firewall;
mod heartbeat;
mod image;
mod observability;
mod photos;
mod provisioning;
mod shared;
mod static_binary;
mod sync;
mod systemd;
mod udev;
mod update;
