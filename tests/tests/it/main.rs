//! Whole-system tests: `sentra-edge` and `sentra-cloud` over real sockets with PostgreSQL (and
//! Redis for booking), the files that put the edge on a box (static binary, systemd, udev,
//! provisioning), and the cloud's container image and Kubernetes manifests.

mod booking;
mod cloud_image;
mod firewall;
mod heartbeat;
mod image;
mod journal;
mod kubernetes;
mod life;
mod observability;
mod photos;
mod provisioning;
mod rental;
mod replacement;
mod shared;
mod staff;
mod static_binary;
mod stock;
mod sync;
mod systemd;
mod udev;
mod update;
mod vehicles;
