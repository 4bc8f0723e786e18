//! Integration tests for `sentra-edge`: each test starts the real binary on its own temporary
//! directory and a free port, and drives it over HTTP and its command line.

mod harness;

mod bad_input;
mod booking;
mod cli;
mod contract;
mod crash;
mod doctor;
mod edc;
mod enrol;
mod flow;
mod idempotency;
mod limits;
mod mdns;
mod mqtt;
#[path = "../../../tests/src/netns.rs"]
mod netns;
mod photos;
mod printer;
mod readme;
mod rental;
mod roles;
mod scanner;
mod scanner_hid;
mod shared;
mod staff;
mod stock;
mod store_security;
mod systemd;
mod tls;
mod vehicles;
