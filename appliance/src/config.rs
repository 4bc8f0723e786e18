//! The one typed configuration of `sentra-edge`: TOML at `/etc/sentra/edge.toml`, then
//! `SENTRA_EDGE__<SECTION>__<KEY>` environment overrides, then validation.
//!
//! Every key is listed once in [`KEYS`] with its default and the reason for it; the example file
//! `appliance/edge.example.toml` is generated from that table (`sentra-edge config defaults`) and
//! a test keeps the two equal. Every bad or unknown key is reported, not just the first. Secrets
//! never live here: the store key comes from a key file or a systemd credential.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use time::UtcOffset;

/// Where `run` looks when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/sentra/edge.toml";
/// Environment override prefix: `SENTRA_EDGE__API__LISTEN=0.0.0.0:8081`.
pub const ENV_PREFIX: &str = "SENTRA_EDGE__";

/// One documented key.
pub struct Key {
    pub section: &'static str,
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every key there is, with its default and why.
pub const KEYS: &[Key] = &[
    Key {
        section: "branch",
        name: "id",
        default: "DEMO01",
        doc: "Branch code: the prefix of invoice numbers and the <branch> of MQTT topics until the box is enrolled; from then on the branch the cloud named at enrolment is used (a different value here is logged). 2-16 of A-Z, 0-9.",
    },
    Key {
        section: "branch",
        name: "name",
        default: "Sentra Demo Branch",
        doc: "Branch name printed on receipts and shown to staff.",
    },
    Key {
        section: "branch",
        name: "utc_offset",
        default: "+07:00",
        doc: "The branch's time zone offset (WIB +07:00, WITA +08:00, WIT +09:00); invoice months follow local time.",
    },
    Key {
        section: "store",
        name: "data_dir",
        default: "/var/lib/sentra",
        doc: "Directory of the encrypted store (sentra.db with its -wal and -shm).",
    },
    Key {
        section: "store",
        name: "key_file",
        default: "/etc/sentra/store.key",
        doc: "Store key (64 hex characters) when no systemd credential named store-key is passed; never put the key itself here.",
    },
    Key {
        section: "store",
        name: "readers",
        default: "4",
        doc: "Read connections: reads run beside the single writer; 4 covers a branch's tablets on 2 cores.",
    },
    Key {
        section: "store",
        name: "max_batch",
        default: "128",
        doc: "Writes committed together (one fsync) when they queue up: group commit keeps latency flat under bursts.",
    },
    Key {
        section: "api",
        name: "listen",
        default: "0.0.0.0:8080",
        doc: "Address of the local API over plain HTTP, served only when lan.plain = true (legacy POS that cannot speak TLS). Port 0 picks a free port.",
    },
    Key {
        section: "api",
        name: "tls_listen",
        default: "0.0.0.0:8443",
        doc: "Address of the local API over HTTPS (the box's own certificate, pinned by tablets at pairing) for tablets and POS on the branch LAN. Port 0 picks a free port.",
    },
    Key {
        section: "api",
        name: "max_body_bytes",
        default: "65536",
        doc: "Largest request body accepted; a work order or invoice is a few hundred bytes.",
    },
    Key {
        section: "api",
        name: "request_timeout_ms",
        default: "10000",
        doc: "A request still unanswered after this is answered 503; a tablet on bad Wi-Fi then retries with its Idempotency-Key.",
    },
    Key {
        section: "api",
        name: "max_connections",
        default: "256",
        doc: "Connections served at once; past it new ones wait in the kernel's backlog. A branch has tens of devices; LimitNOFILE in the unit leaves room above this.",
    },
    Key {
        section: "api",
        name: "header_read_timeout_secs",
        default: "30",
        doc: "A connection must send its request head within this (and is closed after this long idle): a client stalling mid-header cannot hold a connection.",
    },
    Key {
        section: "api",
        name: "pair_per_minute",
        default: "10",
        doc: "Pairing attempts a minute from one address (POST /v1/pair); past it 429 with Retry-After. Guessing a code takes millions of tries; a technician pairs a handful.",
    },
    Key {
        section: "sync",
        name: "batch_bytes",
        default: "262144",
        doc: "Largest push batch in payload bytes: a dropped link re-sends at most one batch, and memory stays bounded however long the backlog.",
    },
    Key {
        section: "sync",
        name: "batch_events",
        default: "2000",
        doc: "Most events in one push batch.",
    },
    Key {
        section: "sync",
        name: "pull_interval_secs",
        default: "30",
        doc: "How often to ask the cloud for master data and decisions when nothing else prompts it.",
    },
    Key {
        section: "sync",
        name: "heartbeat_interval_secs",
        default: "60",
        doc: "How often to tell the cloud how this box is (version, backlog, disk, printer...); a change is reported within seconds anyway. The fleet page shows a box offline after three missed beats.",
    },
    Key {
        section: "sync",
        name: "retry_max_ms",
        default: "4000",
        doc: "Longest wait between attempts while the link is down (with jitter), so a returning link is used within about 5 s.",
    },
    Key {
        section: "sync",
        name: "request_timeout_ms",
        default: "30000",
        doc: "A cloud request unanswered after this counts as a dropped link; the batch is sent again.",
    },
    Key {
        section: "sync",
        name: "booking_timeout_ms",
        default: "3000",
        doc: "Longest wait for the cloud's answer to a booking or availability question at the counter; past it the booking is taken as TENTATIVE (decided at the next sync) and availability comes from the last pulled calendar.",
    },
    Key {
        section: "sync",
        name: "ca_file",
        default: "",
        doc: "PEM file of the CA the cloud's certificate must chain to (pin the fleet's CA); empty uses the system's roots.",
    },
    Key {
        section: "sync",
        name: "allow_plain_http",
        default: "false",
        doc: "Allow an http:// cloud URL that is not on this machine (labs only); https is required otherwise.",
    },
    Key {
        section: "lan",
        name: "plain",
        default: "false",
        doc: "Also serve the API on api.listen (HTTP) and the broker on mqtt.listen (MQTT without TLS), for legacy POS that cannot speak TLS. Anyone on the branch Wi-Fi can read tokens there: keep it false on a real box (`sentra-edge demo` sets it). When false, api.listen's port still answers /healthz and /readyz on 127.0.0.1 only, for an updater from before TLS.",
    },
    Key {
        section: "lan",
        name: "advertise_host",
        default: "",
        doc: "The name or address tablets reach the box by, in the pairing QR (sentra://pair?url=https://<host>:<port>...). Empty: the box's primary IPv4 address, else its hostname.",
    },
    Key {
        section: "lan",
        name: "mdns",
        default: "true",
        doc: "Announce the box on the branch LAN over mDNS/DNS-SD (_sentra._tcp, as sentra-<branch>-<id>.local) so a tablet that lost the box's address finds it again by browsing. Off only where multicast is unwanted (tests that start many daemons).",
    },
    Key {
        section: "pairing",
        name: "code_ttl_secs",
        default: "600",
        doc: "How long a pairing code from `sentra-edge pair` stays valid: long enough to walk to the tablet.",
    },
    Key {
        section: "printer",
        name: "enabled",
        default: "true",
        doc: "Send queued print jobs to the printer. When false, jobs stay queued (nothing is lost) until it is enabled.",
    },
    Key {
        section: "printer",
        name: "kind",
        default: "usb",
        doc: "How the receipt printer is attached: network (TCP, port 9100), usb (/dev/usb/lp* or the udev name), serial (a tty set up by udev), or file (append to a file; the demo uses this).",
    },
    Key {
        section: "printer",
        name: "address",
        default: "/dev/sentra/printer",
        doc: "network: host:port, e.g. 192.168.1.50:9100; usb, serial, file: the path. /dev/sentra/printer is the name our udev rule gives the USB printer.",
    },
    Key {
        section: "printer",
        name: "width_mm",
        default: "58",
        doc: "Paper width: 58 (32 columns, the common small printer) or 80 (48 columns).",
    },
    Key {
        section: "printer",
        name: "header",
        default: "",
        doc: "Lines printed under the branch name on every document (address, phone, NPWP); | separates lines.",
    },
    Key {
        section: "printer",
        name: "status_query",
        default: "true",
        doc: "Ask a network printer for its status (DLE EOT) before and after each job: paper out or cover open then waits instead of printing into nothing. Turn off only for a printer that never answers.",
    },
    Key {
        section: "printer",
        name: "timeout_ms",
        default: "5000",
        doc: "Longest wait to connect, to send a job, or for a status answer; past it the printer counts as offline and the job is retried.",
    },
    Key {
        section: "printer",
        name: "retry_max_ms",
        default: "5000",
        doc: "Longest wait between attempts while the printer is offline or out of paper, so a fixed printer is used within about 5 s.",
    },
    Key {
        section: "printer",
        name: "baud",
        default: "9600",
        doc: "Serial speed the box sets on the printer's tty (kind serial, or a USB printer that shows up as a tty): it must match the printer's DIP switches or self-test page. Ignored for a network printer or /dev/usb/lp*.",
    },
    Key {
        section: "printer",
        name: "data_bits",
        default: "8",
        doc: "Data bits on the printer's tty: 8 (every ESC/POS printer's default) or 7.",
    },
    Key {
        section: "printer",
        name: "parity",
        default: "none",
        doc: "Parity on the printer's tty: none, even or odd.",
    },
    Key {
        section: "printer",
        name: "stop_bits",
        default: "1",
        doc: "Stop bits on the printer's tty: 1 or 2.",
    },
    Key {
        section: "printer",
        name: "flow_control",
        default: "rtscts",
        doc: "Flow control on the printer's tty: rtscts (hardware, the ESC/POS default: the printer holds the box back while its buffer is full), xonxoff, or none (a cable without RTS/CTS).",
    },
    Key {
        section: "scanner",
        name: "enabled",
        default: "true",
        doc: "Read the storekeeper's barcode scanner. While its device is missing the daemon keeps looking for it (status says absent).",
    },
    Key {
        section: "scanner",
        name: "device",
        default: "/dev/sentra/scanner",
        doc: "The scanner's serial device: the udev symlink (see the README), so replugging into another USB port keeps the name.",
    },
    Key {
        section: "scanner",
        name: "baud",
        default: "9600",
        doc: "Serial speed; USB CDC-ACM scanners ignore it, RS-232 ones must match (a mismatch shows as noise bytes in status).",
    },
    Key {
        section: "scanner",
        name: "name",
        default: "storeroom",
        doc: "The scanner's name: the <scanner> of sentra/<branch>/scans/<scanner> and the label in status. 1-32 of a-z, 0-9, - and _.",
    },
    Key {
        section: "scanner",
        name: "retry_max_ms",
        default: "2000",
        doc: "Longest wait between attempts to open a missing or failed scanner (backoff from 100 ms), so a replugged scanner reads within about 2 s.",
    },
    Key {
        section: "scanner",
        name: "kind",
        default: "serial",
        doc: "serial: the scanner in USB serial (CDC-ACM) or RS-232 mode, device a tty; hid: a scanner left as a USB keyboard, device its event node (/dev/sentra-scanner-hid, or /dev/input/by-id/...-event-kbd). The box grabs a hid scanner so its scans never type into a console.",
    },
    Key {
        section: "edc",
        name: "device",
        default: "",
        doc: "The EDC card terminal's serial port (its ECR cable or USB serial, e.g. /dev/ttyUSB0). Empty: no terminal; an EDC payment then needs the approval code typed from the terminal's slip.",
    },
    Key {
        section: "edc",
        name: "baud",
        default: "9600",
        doc: "Serial speed of the terminal's ECR port (8 data bits, no parity, 1 stop bit), as set in the terminal's ECR menu.",
    },
    Key {
        section: "edc",
        name: "timeout_ms",
        default: "90000",
        doc: "Longest wait for the terminal's answer to a sale: the customer inserts or taps the card and types the PIN. Past it the payment is refused as timed out, nothing recorded; the cashier retries or types the approval code.",
    },
    Key {
        section: "mqtt",
        name: "enabled",
        default: "true",
        doc: "Run the branch MQTT broker (live events for tablets and POS). When false nothing listens on mqtt.listen and pairing answers mqtt: null.",
    },
    Key {
        section: "mqtt",
        name: "listen",
        default: "0.0.0.0:1883",
        doc: "Address of the MQTT broker without TLS, served only when lan.plain = true (legacy POS). MQTT 3.1, 3.1.1 and 5 on one port. Port 0 picks a free port (tests, demo).",
    },
    Key {
        section: "mqtt",
        name: "tls_listen",
        default: "0.0.0.0:8883",
        doc: "Address of the MQTT broker over TLS (the same certificate as the API) on the branch LAN. Port 0 picks a free port (tests, demo).",
    },
    Key {
        section: "mqtt",
        name: "max_clients",
        default: "256",
        doc: "Most MQTT connections at once; a branch has tens of devices, so more is a misbehaving client and is refused.",
    },
    Key {
        section: "mqtt",
        name: "max_inflight",
        default: "64",
        doc: "QoS 1/2 messages sent to one client and not yet acknowledged; more wait in its queue. Large enough that a tablet on Wi-Fi is not throttled by round trips.",
    },
    Key {
        section: "mqtt",
        name: "max_queued_messages",
        default: "1000",
        doc: "Messages kept per client while it is slow or offline (persistent sessions), so memory stays bounded (about 1000 x 1 KB per client). For a connected client a QoS 1/2 publisher waits for room instead (nothing acknowledged is dropped); for an offline session the oldest queued QoS 1/2 message (or the new QoS 0 one) is dropped and counted.",
    },
    Key {
        section: "mqtt",
        name: "stalled_subscriber_secs",
        default: "30",
        doc: "A connected client that accepts no message for this long while a QoS 1/2 publisher waits for room in its queue (a frozen app on an open connection) is disconnected, so one stuck tablet cannot hold up the branch's live events; its persistent session continues offline.",
    },
    Key {
        section: "mqtt",
        name: "session_expiry_secs",
        default: "7200",
        doc: "How long the broker keeps an offline client's persistent session (clean_session=false) and its queued QoS 1/2 messages; an MQTT 5 client asking for longer gets this (the CONNACK says so), so a session cannot pin memory for years.",
    },
    Key {
        section: "mqtt",
        name: "max_sessions_per_device",
        default: "4",
        doc: "Sessions (connected or kept offline) one device credential may hold under different client ids; a tablet needs one or two, more is a loop or an abuse that would use up mqtt.max_clients for the whole branch. Past it the CONNECT is refused (not authorized).",
    },
    Key {
        section: "mqtt",
        name: "min_keep_alive_secs",
        default: "10",
        doc: "Smallest Keep Alive the broker works with: MQTT 5 clients asking for less (0 included) are told this value in the CONNACK (Server Keep Alive); MQTT 3.1.1 clients asking for less simply ping more often than needed.",
    },
    Key {
        section: "mqtt",
        name: "zero_keep_alive_idle_secs",
        default: "600",
        doc: "An MQTT 3.1/3.1.1 client with Keep Alive 0 (legal, and used by interoperability suites) is disconnected after this long without sending a packet, so a tablet that vanished without closing its socket does not hold its connection and session forever.",
    },
    Key {
        section: "mqtt",
        name: "max_packet_bytes",
        default: "65536",
        doc: "Largest MQTT packet accepted; our events are a few hundred bytes.",
    },
    Key {
        section: "update",
        name: "release_public_key",
        default: "",
        doc: "The release signing public key (hex, from `sentra-cloud release keygen`). Empty: the key the cloud gave at enrolment, which a box set up by the guide has; set it only to override that one (a key rotation). With neither, every update is refused: the updater fails closed.",
    },
    Key {
        section: "update",
        name: "install_root",
        default: "/var/lib/sentra/app",
        doc: "Where releases live: releases/<version>/sentra-edge and the `current` link the service starts; the previous release stays for rollback.",
    },
    Key {
        section: "update",
        name: "restart_command",
        default: "systemctl restart sentra-edge",
        doc: "Run with sh -c after each swap of `current` (the update and a rollback) to restart the daemon on the release `current` points to.",
    },
    Key {
        section: "update",
        name: "health_window_secs",
        default: "45",
        doc: "How long a new release has after its restart to answer /readyz on the local API with its version; after that it is rolled back. 45 s keeps restart-to-rollback under a minute (the old release starts in about 2 s).",
    },
    Key {
        section: "update",
        name: "download_attempts",
        default: "5",
        doc: "Tries to fetch an artifact; each one after an interruption resumes with HTTP Range where the staged bytes end.",
    },
    Key {
        section: "blobs",
        name: "max_bytes",
        default: "4000000000",
        doc: "Inspection photos kept on the box (blobs.db). Past this, photos the cloud already has are deleted oldest first; photos not yet uploaded are never deleted, and when they alone fill it a new photo is refused (507 storage_full).",
    },
    Key {
        section: "blobs",
        name: "min_free_bytes",
        default: "500000000",
        doc: "Free disk space kept for the store and the system: a photo that would leave less is refused (507 storage_full) after uploaded photos were deleted to make room.",
    },
    Key {
        section: "blobs",
        name: "max_photo_bytes",
        default: "20000000",
        doc: "Largest photo PUT /v1/blobs/{sha256} accepts (a tablet's photo is 2-8 MB); the body is read up to this and refused past it (413).",
    },
    Key {
        section: "blobs",
        name: "part_bytes",
        default: "524288",
        doc: "Size of a photo's upload parts (and of its chunks in blobs.db): an interrupted upload resumes at a part boundary. At most 1048576, the cloud's signed body limit.",
    },
    Key {
        section: "blobs",
        name: "max_concurrent_uploads",
        default: "4",
        doc: "Photos PUT /v1/blobs/{sha256} receives at once; another one is answered 503 uploads_busy with Retry-After before its body is read. Each is streamed to disk a part at a time, so this bounds memory to about this many parts and staged disk to this many photos.",
    },
    Key {
        section: "blobs",
        name: "unreferenced_photo_hours",
        default: "72",
        doc: "A photo no inspection references this long after it arrived is deleted (a tablet that sent the photo and never the inspection). Photos an inspection names are kept until the cloud has them.",
    },
    Key {
        section: "blobs",
        name: "upload_backups",
        default: "true",
        doc: "An enrolled box uploads its backups (each one the daily sentra-edge-backup.timer writes, encrypted with the store key, which stays on the box) to the cloud's object store, after its photos, within a minute of the backup, or each one it kept when the link is back; the cloud keeps each box's newest 7. Off: backups stay on the box's disk only.",
    },
    Key {
        section: "log",
        name: "level",
        default: "info",
        doc: "Log filter (tracing EnvFilter syntax), e.g. info or sentra_edge=debug.",
    },
];

#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub branch: BranchConfig,
    pub store: StoreConfig,
    pub api: ApiConfig,
    pub lan: LanConfig,
    pub pairing: PairingConfig,
    pub sync: SyncConfig,
    pub printer: PrinterConfig,
    pub scanner: ScannerConfig,
    pub edc: EdcConfig,
    pub mqtt: MqttConfig,
    pub update: UpdateConfig,
    pub blobs: BlobsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobsConfig {
    pub max_bytes: u64,
    pub min_free_bytes: u64,
    pub max_photo_bytes: usize,
    pub part_bytes: usize,
    pub max_concurrent_uploads: usize,
    pub unreferenced_photo_hours: u64,
    pub upload_backups: bool,
}

impl BlobsConfig {
    pub fn limits(&self) -> crate::store::blobs::Limits {
        crate::store::blobs::Limits {
            max_bytes: self.max_bytes,
            min_free_bytes: self.min_free_bytes,
            part_bytes: self.part_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    pub enabled: bool,
    /// The plain listener, served only when `lan.plain` (the broker is told by `plain`).
    pub listen: SocketAddr,
    pub tls_listen: SocketAddr,
    /// Copied from `lan.plain`: whether `listen` is served.
    pub plain: bool,
    pub max_clients: usize,
    pub max_inflight: u16,
    pub max_queued_messages: usize,
    pub session_expiry_secs: u64,
    pub max_packet_bytes: u32,
    pub max_sessions_per_device: usize,
    pub min_keep_alive_secs: u16,
    pub zero_keep_alive_idle_secs: u16,
    pub stalled_subscriber_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConfig {
    /// Hex of the ed25519 public key; empty when none is configured (every update refused).
    pub release_public_key: String,
    pub install_root: PathBuf,
    pub restart_command: String,
    pub health_window_secs: u64,
    pub download_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterConfig {
    pub enabled: bool,
    pub kind: PrinterKind,
    pub address: String,
    pub width: crate::printer::document::PaperWidth,
    /// Header lines, already split at `|`.
    pub header: Vec<String>,
    pub status_query: bool,
    pub timeout_ms: u64,
    pub retry_max_ms: u64,
    /// How the box sets up the printer's tty, when it is one.
    pub line: SerialLine,
}

/// A serial line's settings (`printer.baud`, `data_bits`, `parity`, `stop_bits`, `flow_control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialLine {
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
    pub flow: FlowControl,
}

impl SerialLine {
    /// 8 data bits, no parity, 1 stop bit, no flow control: what EDC terminals' ECR ports use.
    pub fn plain(baud: u32) -> Self {
        Self {
            baud,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow: FlowControl::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

impl Parity {
    pub fn as_str(self) -> &'static str {
        match self {
            Parity::None => "none",
            Parity::Even => "even",
            Parity::Odd => "odd",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "none" => Ok(Parity::None),
            "even" => Ok(Parity::Even),
            "odd" => Ok(Parity::Odd),
            _ => Err("expected none, even or odd".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControl {
    None,
    RtsCts,
    XonXoff,
}

impl FlowControl {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowControl::None => "none",
            FlowControl::RtsCts => "rtscts",
            FlowControl::XonXoff => "xonxoff",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "none" => Ok(FlowControl::None),
            "rtscts" => Ok(FlowControl::RtsCts),
            "xonxoff" => Ok(FlowControl::XonXoff),
            _ => Err("expected rtscts, xonxoff or none".into()),
        }
    }
}

/// The EDC card terminal on a serial port (`edc::`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdcConfig {
    /// None: no terminal (an EDC payment needs its typed approval code).
    pub device: Option<PathBuf>,
    pub baud: u32,
    pub timeout_ms: u64,
}

/// How the barcode scanner is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScannerKind {
    /// A tty: USB serial (CDC-ACM) or RS-232.
    Serial,
    /// A USB keyboard (HID): an evdev node, grabbed.
    Hid,
}

impl ScannerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScannerKind::Serial => "serial",
            ScannerKind::Hid => "hid",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "serial" => Ok(ScannerKind::Serial),
            "hid" => Ok(ScannerKind::Hid),
            _ => Err("expected serial or hid".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrinterKind {
    Network,
    Usb,
    Serial,
    File,
}

impl PrinterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrinterKind::Network => "network",
            PrinterKind::Usb => "usb",
            PrinterKind::Serial => "serial",
            PrinterKind::File => "file",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "network" => Ok(PrinterKind::Network),
            "usb" => Ok(PrinterKind::Usb),
            "serial" => Ok(PrinterKind::Serial),
            "file" => Ok(PrinterKind::File),
            _ => Err("expected network, usb, serial or file".into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannerConfig {
    pub enabled: bool,
    pub kind: ScannerKind,
    pub device: PathBuf,
    pub baud: u32,
    pub name: String,
    pub retry_max_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    pub batch_bytes: usize,
    pub batch_events: u32,
    pub pull_interval_secs: u64,
    pub heartbeat_interval_secs: u64,
    pub retry_max_ms: u64,
    pub request_timeout_ms: u64,
    pub booking_timeout_ms: u64,
    /// None: the system's roots.
    pub ca_file: Option<PathBuf>,
    pub allow_plain_http: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchConfig {
    pub id: String,
    pub name: String,
    pub utc_offset: UtcOffset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    pub readers: usize,
    pub max_batch: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// The plain HTTP listener, served only when `lan.plain`.
    pub listen: SocketAddr,
    pub tls_listen: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
    pub max_connections: usize,
    pub header_read_timeout_secs: u64,
    pub pair_per_minute: u32,
}

/// The box on the branch LAN as a whole (what is not one listener's setting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanConfig {
    /// Plain HTTP and MQTT beside TLS, for legacy POS (`api.listen`, `mqtt.listen`).
    pub plain: bool,
    /// None: the primary IPv4 address, else the hostname (`lan::advertise_host`).
    pub advertise_host: Option<String>,
    /// Announce `_sentra._tcp` over mDNS (`mdns.rs`).
    pub mdns: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingConfig {
    pub code_ttl_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub level: String,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No secrets live in Config; keep it that way by printing it as the TOML an operator reads.
        f.write_str(&self.to_toml())
    }
}

/// Every problem found while loading, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// Where a value came from, for error messages.
#[derive(Clone)]
enum Origin {
    Default,
    File(PathBuf),
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(v) => write!(f, "environment {v}"),
        }
    }
}

impl Config {
    /// Defaults only: what `demo` starts from.
    pub fn defaults() -> Self {
        Self::load_from(None, std::iter::empty()).expect("the built-in defaults are valid")
    }

    /// Load `path` (if any; a missing explicit file is an error), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigErrors> {
        Self::load_from(path, std::env::vars())
    }

    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let mut raw: BTreeMap<(String, String), (String, Origin)> = KEYS
            .iter()
            .map(|k| {
                (
                    (k.section.into(), k.name.into()),
                    (k.default.into(), Origin::Default),
                )
            })
            .collect();

        if let Some(path) = path {
            match std::fs::read_to_string(path) {
                Ok(text) => merge_toml(&text, path, &mut raw, &mut errors),
                Err(e) => errors.push(format!("config file {}: {e}", path.display())),
            }
        }
        for (var, value) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                errors.push(format!(
                    "environment {var}: expected {ENV_PREFIX}<SECTION>__<KEY>"
                ));
                continue;
            };
            let id = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            match raw.get_mut(&id) {
                Some(slot) => *slot = (value, Origin::Env(var)),
                None => errors.push(format!("environment {var}: unknown key {}.{}", id.0, id.1)),
            }
        }

        let mut p = Parser {
            raw: &raw,
            errors: &mut errors,
        };
        let mut config = Config {
            branch: BranchConfig {
                id: p.get("branch", "id", parse_branch_id),
                name: p.get("branch", "name", |s| non_empty(s).map(str::to_owned)),
                utc_offset: p.get("branch", "utc_offset", parse_offset),
            },
            store: StoreConfig {
                data_dir: p.get("store", "data_dir", parse_path),
                key_file: p.get("store", "key_file", parse_path),
                readers: p.get("store", "readers", |s| parse_range(s, 1, 64)),
                max_batch: p.get("store", "max_batch", |s| parse_range(s, 1, 10_000)),
            },
            api: ApiConfig {
                listen: p.get("api", "listen", |s| {
                    SocketAddr::from_str(s)
                        .map_err(|_| "expected an address and port, e.g. 0.0.0.0:8080".into())
                }),
                tls_listen: p.get("api", "tls_listen", |s| {
                    SocketAddr::from_str(s)
                        .map_err(|_| "expected an address and port, e.g. 0.0.0.0:8443".into())
                }),
                max_body_bytes: p.get("api", "max_body_bytes", |s| parse_range(s, 1024, 16 << 20)),
                request_timeout_ms: p.get("api", "request_timeout_ms", |s| {
                    parse_range(s, 100, 600_000)
                }),
                max_connections: p.get("api", "max_connections", |s| parse_range(s, 1, 100_000)),
                header_read_timeout_secs: p.get("api", "header_read_timeout_secs", |s| {
                    parse_range(s, 1, 3600)
                }),
                pair_per_minute: p.get("api", "pair_per_minute", |s| parse_range(s, 1, 10_000)),
            },
            sync: SyncConfig {
                batch_bytes: p.get("sync", "batch_bytes", |s| {
                    parse_range(s, 4096, sentra_protocol::sync::MAX_PUSH_BYTES / 2)
                }),
                batch_events: p.get("sync", "batch_events", |s| parse_range(s, 1, 10_000)),
                pull_interval_secs: p
                    .get("sync", "pull_interval_secs", |s| parse_range(s, 1, 86_400)),
                heartbeat_interval_secs: p.get("sync", "heartbeat_interval_secs", |s| {
                    parse_range(s, 5, 3_600)
                }),
                retry_max_ms: p.get("sync", "retry_max_ms", |s| parse_range(s, 10, 600_000)),
                request_timeout_ms: p.get("sync", "request_timeout_ms", |s| {
                    parse_range(s, 100, 600_000)
                }),
                booking_timeout_ms: p.get("sync", "booking_timeout_ms", |s| {
                    parse_range(s, 100, 60_000)
                }),
                ca_file: p.get("sync", "ca_file", |s| {
                    Ok((!s.trim().is_empty()).then(|| PathBuf::from(s)))
                }),
                allow_plain_http: p.get("sync", "allow_plain_http", parse_bool),
            },
            lan: LanConfig {
                plain: p.get("lan", "plain", parse_bool),
                advertise_host: p.get("lan", "advertise_host", parse_host),
                mdns: p.get("lan", "mdns", parse_bool),
            },
            pairing: PairingConfig {
                code_ttl_secs: p.get("pairing", "code_ttl_secs", |s| parse_range(s, 30, 86_400)),
            },
            printer: PrinterConfig {
                enabled: p.get("printer", "enabled", parse_bool),
                kind: p.get("printer", "kind", PrinterKind::parse),
                address: p.get("printer", "address", |s| non_empty(s).map(str::to_owned)),
                width: p.get(
                    "printer",
                    "width_mm",
                    crate::printer::document::PaperWidth::parse,
                ),
                header: p.get("printer", "header", |s| {
                    Ok(s.split('|')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect())
                }),
                status_query: p.get("printer", "status_query", parse_bool),
                timeout_ms: p.get("printer", "timeout_ms", |s| parse_range(s, 100, 600_000)),
                retry_max_ms: p.get("printer", "retry_max_ms", |s| parse_range(s, 10, 600_000)),
                line: SerialLine {
                    baud: p.get("printer", "baud", parse_baud),
                    data_bits: p.get("printer", "data_bits", |s| parse_range(s, 7, 8)),
                    parity: p.get("printer", "parity", Parity::parse),
                    stop_bits: p.get("printer", "stop_bits", |s| parse_range(s, 1, 2)),
                    flow: p.get("printer", "flow_control", FlowControl::parse),
                },
            },
            scanner: ScannerConfig {
                enabled: p.get("scanner", "enabled", parse_bool),
                device: p.get("scanner", "device", parse_path),
                baud: p.get("scanner", "baud", |s| parse_range(s, 1200, 921_600)),
                name: p.get("scanner", "name", parse_scanner_name),
                retry_max_ms: p.get("scanner", "retry_max_ms", |s| parse_range(s, 100, 600_000)),
                kind: p.get("scanner", "kind", ScannerKind::parse),
            },
            edc: EdcConfig {
                device: p.get("edc", "device", |s| {
                    Ok((!s.trim().is_empty()).then(|| PathBuf::from(s.trim())))
                }),
                baud: p.get("edc", "baud", parse_baud),
                timeout_ms: p.get("edc", "timeout_ms", |s| parse_range(s, 1_000, 300_000)),
            },
            mqtt: MqttConfig {
                enabled: p.get("mqtt", "enabled", parse_bool),
                listen: p.get("mqtt", "listen", |s| {
                    SocketAddr::from_str(s)
                        .map_err(|_| "expected an address and port, e.g. 0.0.0.0:1883".into())
                }),
                tls_listen: p.get("mqtt", "tls_listen", |s| {
                    SocketAddr::from_str(s)
                        .map_err(|_| "expected an address and port, e.g. 0.0.0.0:8883".into())
                }),
                // Set from `lan.plain` below (one key, parsed once).
                plain: false,
                max_clients: p.get("mqtt", "max_clients", |s| parse_range(s, 1, 100_000)),
                max_inflight: p.get("mqtt", "max_inflight", |s| parse_range(s, 1, 65_535)),
                max_queued_messages: p.get("mqtt", "max_queued_messages", |s| {
                    parse_range(s, 1, 1_000_000)
                }),
                session_expiry_secs: p.get("mqtt", "session_expiry_secs", |s| {
                    parse_range(s, 0, 30 * 86_400)
                }),
                max_packet_bytes: p.get("mqtt", "max_packet_bytes", |s| {
                    parse_range(s, 1024, 16 << 20)
                }),
                max_sessions_per_device: p.get("mqtt", "max_sessions_per_device", |s| {
                    parse_range(s, 1, 1000)
                }),
                min_keep_alive_secs: p
                    .get("mqtt", "min_keep_alive_secs", |s| parse_range(s, 1, 3600)),
                zero_keep_alive_idle_secs: p.get("mqtt", "zero_keep_alive_idle_secs", |s| {
                    parse_range(s, 1, 65_535)
                }),
                stalled_subscriber_secs: p.get("mqtt", "stalled_subscriber_secs", |s| {
                    parse_range(s, 1, 3600)
                }),
            },
            update: UpdateConfig {
                release_public_key: p.get("update", "release_public_key", |s| {
                    let s = s.trim();
                    if s.is_empty() {
                        return Ok(String::new());
                    }
                    match hex::decode(s) {
                        Ok(b) if b.len() == 32 => Ok(s.to_ascii_lowercase()),
                        _ => Err(
                            "expected 64 hex characters (release keygen prints them) or empty"
                                .into(),
                        ),
                    }
                }),
                install_root: p.get("update", "install_root", parse_path),
                restart_command: p.get("update", "restart_command", |s| {
                    non_empty(s).map(str::to_owned)
                }),
                health_window_secs: p
                    .get("update", "health_window_secs", |s| parse_range(s, 1, 3_600)),
                download_attempts: p.get("update", "download_attempts", |s| parse_range(s, 1, 100)),
            },
            blobs: BlobsConfig {
                max_bytes: p.get("blobs", "max_bytes", |s| parse_range(s, 1 << 20, u64::MAX)),
                min_free_bytes: p.get("blobs", "min_free_bytes", |s| parse_range(s, 0, u64::MAX)),
                max_photo_bytes: p.get("blobs", "max_photo_bytes", |s| {
                    parse_range(s, 1024, 256 << 20)
                }),
                part_bytes: p.get("blobs", "part_bytes", |s| {
                    parse_range(s, 1024, sentra_protocol::sync::MAX_PUSH_BYTES)
                }),
                max_concurrent_uploads: p
                    .get("blobs", "max_concurrent_uploads", |s| parse_range(s, 1, 64)),
                unreferenced_photo_hours: p.get("blobs", "unreferenced_photo_hours", |s| {
                    parse_range(s, 1, 24 * 365)
                }),
                upload_backups: p.get("blobs", "upload_backups", parse_bool),
            },
            log: LogConfig {
                level: p.get("log", "level", |s| {
                    tracing_subscriber::EnvFilter::try_new(s)
                        .map(|_| s.to_owned())
                        .map_err(|e| e.to_string())
                }),
            },
        };
        config.mqtt.plain = config.lan.plain;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The configuration as TOML, every key with its documentation.
    pub fn to_toml(&self) -> String {
        let value = |section: &str, name: &str| -> String {
            match (section, name) {
                ("branch", "id") => self.branch.id.clone(),
                ("branch", "name") => self.branch.name.clone(),
                ("branch", "utc_offset") => format_offset(self.branch.utc_offset),
                ("store", "data_dir") => self.store.data_dir.display().to_string(),
                ("store", "key_file") => self.store.key_file.display().to_string(),
                ("store", "readers") => self.store.readers.to_string(),
                ("store", "max_batch") => self.store.max_batch.to_string(),
                ("api", "listen") => self.api.listen.to_string(),
                ("api", "tls_listen") => self.api.tls_listen.to_string(),
                ("lan", "plain") => self.lan.plain.to_string(),
                ("lan", "advertise_host") => self.lan.advertise_host.clone().unwrap_or_default(),
                ("api", "max_body_bytes") => self.api.max_body_bytes.to_string(),
                ("api", "request_timeout_ms") => self.api.request_timeout_ms.to_string(),
                ("api", "max_connections") => self.api.max_connections.to_string(),
                ("api", "header_read_timeout_secs") => {
                    self.api.header_read_timeout_secs.to_string()
                }
                ("api", "pair_per_minute") => self.api.pair_per_minute.to_string(),
                ("sync", "batch_bytes") => self.sync.batch_bytes.to_string(),
                ("sync", "batch_events") => self.sync.batch_events.to_string(),
                ("sync", "pull_interval_secs") => self.sync.pull_interval_secs.to_string(),
                ("sync", "heartbeat_interval_secs") => {
                    self.sync.heartbeat_interval_secs.to_string()
                }
                ("sync", "retry_max_ms") => self.sync.retry_max_ms.to_string(),
                ("sync", "request_timeout_ms") => self.sync.request_timeout_ms.to_string(),
                ("sync", "booking_timeout_ms") => self.sync.booking_timeout_ms.to_string(),
                ("sync", "ca_file") => self
                    .sync
                    .ca_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                ("sync", "allow_plain_http") => self.sync.allow_plain_http.to_string(),
                ("pairing", "code_ttl_secs") => self.pairing.code_ttl_secs.to_string(),
                ("printer", "enabled") => self.printer.enabled.to_string(),
                ("printer", "kind") => self.printer.kind.as_str().to_owned(),
                ("printer", "address") => self.printer.address.clone(),
                ("printer", "width_mm") => self.printer.width.as_mm().to_string(),
                ("printer", "header") => self.printer.header.join(" | "),
                ("printer", "status_query") => self.printer.status_query.to_string(),
                ("printer", "timeout_ms") => self.printer.timeout_ms.to_string(),
                ("printer", "retry_max_ms") => self.printer.retry_max_ms.to_string(),
                ("printer", "baud") => self.printer.line.baud.to_string(),
                ("printer", "data_bits") => self.printer.line.data_bits.to_string(),
                ("printer", "parity") => self.printer.line.parity.as_str().to_owned(),
                ("printer", "stop_bits") => self.printer.line.stop_bits.to_string(),
                ("printer", "flow_control") => self.printer.line.flow.as_str().to_owned(),
                ("scanner", "enabled") => self.scanner.enabled.to_string(),
                ("scanner", "device") => self.scanner.device.display().to_string(),
                ("scanner", "baud") => self.scanner.baud.to_string(),
                ("scanner", "name") => self.scanner.name.clone(),
                ("scanner", "retry_max_ms") => self.scanner.retry_max_ms.to_string(),
                ("scanner", "kind") => self.scanner.kind.as_str().to_owned(),
                ("edc", "device") => self
                    .edc
                    .device
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                ("edc", "baud") => self.edc.baud.to_string(),
                ("edc", "timeout_ms") => self.edc.timeout_ms.to_string(),
                ("mqtt", "enabled") => self.mqtt.enabled.to_string(),
                ("mqtt", "listen") => self.mqtt.listen.to_string(),
                ("mqtt", "tls_listen") => self.mqtt.tls_listen.to_string(),
                ("mqtt", "max_clients") => self.mqtt.max_clients.to_string(),
                ("mqtt", "max_inflight") => self.mqtt.max_inflight.to_string(),
                ("mqtt", "max_queued_messages") => self.mqtt.max_queued_messages.to_string(),
                ("mqtt", "session_expiry_secs") => self.mqtt.session_expiry_secs.to_string(),
                ("mqtt", "max_packet_bytes") => self.mqtt.max_packet_bytes.to_string(),
                ("mqtt", "max_sessions_per_device") => {
                    self.mqtt.max_sessions_per_device.to_string()
                }
                ("mqtt", "min_keep_alive_secs") => self.mqtt.min_keep_alive_secs.to_string(),
                ("mqtt", "zero_keep_alive_idle_secs") => {
                    self.mqtt.zero_keep_alive_idle_secs.to_string()
                }
                ("mqtt", "stalled_subscriber_secs") => {
                    self.mqtt.stalled_subscriber_secs.to_string()
                }
                ("lan", "mdns") => self.lan.mdns.to_string(),
                ("update", "release_public_key") => self.update.release_public_key.clone(),
                ("update", "install_root") => self.update.install_root.display().to_string(),
                ("update", "restart_command") => self.update.restart_command.clone(),
                ("update", "health_window_secs") => self.update.health_window_secs.to_string(),
                ("update", "download_attempts") => self.update.download_attempts.to_string(),
                ("blobs", "max_bytes") => self.blobs.max_bytes.to_string(),
                ("blobs", "min_free_bytes") => self.blobs.min_free_bytes.to_string(),
                ("blobs", "max_photo_bytes") => self.blobs.max_photo_bytes.to_string(),
                ("blobs", "part_bytes") => self.blobs.part_bytes.to_string(),
                ("blobs", "max_concurrent_uploads") => {
                    self.blobs.max_concurrent_uploads.to_string()
                }
                ("blobs", "unreferenced_photo_hours") => {
                    self.blobs.unreferenced_photo_hours.to_string()
                }
                ("blobs", "upload_backups") => self.blobs.upload_backups.to_string(),
                ("log", "level") => self.log.level.clone(),
                _ => unreachable!("KEYS and to_toml list the same keys (tested)"),
            }
        };
        let mut out = String::from(
            "# sentra-edge configuration: /etc/sentra/edge.toml\n# Every key, its default and why. Override any key with SENTRA_EDGE__<SECTION>__<KEY>.\n",
        );
        let mut section = "";
        for k in KEYS {
            if k.section != section {
                section = k.section;
                out.push_str(&format!("\n[{section}]\n"));
            }
            let v = value(k.section, k.name);
            let rendered = if v.parse::<i64>().is_ok() || v.parse::<bool>().is_ok() {
                v
            } else {
                toml_string(&v)
            };
            out.push_str(&format!("# {}\n{} = {}\n", k.doc, k.name, rendered));
        }
        out
    }

    pub fn db_path(&self) -> PathBuf {
        self.store.data_dir.join("sentra.db")
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn merge_toml(
    text: &str,
    path: &Path,
    raw: &mut BTreeMap<(String, String), (String, Origin)>,
    errors: &mut Vec<String>,
) {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!(
                "config file {}: {}",
                path.display(),
                e.to_string().trim_end()
            ));
            return;
        }
    };
    for (section, body) in table {
        let Some(body) = body.as_table() else {
            errors.push(format!(
                "config file {}: {section} must be a [section]",
                path.display()
            ));
            continue;
        };
        for (key, value) in body {
            let id = (section.clone(), key.clone());
            let Some(slot) = raw.get_mut(&id) else {
                errors.push(format!(
                    "config file {}: unknown key {section}.{key}",
                    path.display()
                ));
                continue;
            };
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    errors.push(format!(
                        "config file {}: {section}.{key}: expected a string or number, found {}",
                        path.display(),
                        other.type_str()
                    ));
                    continue;
                }
            };
            *slot = (text, Origin::File(path.to_owned()));
        }
    }
}

struct Parser<'a> {
    raw: &'a BTreeMap<(String, String), (String, Origin)>,
    errors: &'a mut Vec<String>,
}

impl Parser<'_> {
    /// Parse one key; on error record it and return the (valid) default so parsing goes on.
    fn get<T>(
        &mut self,
        section: &str,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        let (text, origin) = &self.raw[&(section.to_owned(), name.to_owned())];
        match parse(text) {
            Ok(v) => v,
            Err(e) => {
                self.errors
                    .push(format!("{section}.{name} = {text:?} ({origin}): {e}"));
                let default = KEYS
                    .iter()
                    .find(|k| k.section == section && k.name == name)
                    .map(|k| k.default);
                parse(default.expect("every parsed key is in KEYS"))
                    .expect("every default parses (tested)")
            }
        }
    }
}

fn non_empty(s: &str) -> Result<&str, String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s)
    }
}

/// Empty, or a host name or address a tablet can put in a URL (no scheme, port or path).
fn parse_host(s: &str) -> Result<Option<String>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let ok = s.len() <= 253
        && (s.parse::<std::net::IpAddr>().is_ok()
            || s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    if ok {
        Ok(Some(s.to_owned()))
    } else {
        Err("expected a host name (e.g. sentra-jkt01.local) or an IP address, without scheme or port".into())
    }
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    non_empty(s).map(PathBuf::from)
}

fn parse_range<T: FromStr + PartialOrd + fmt::Display + Copy>(
    s: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    match s.trim().parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// The speeds every UART and the kernel's termios know by name.
pub const BAUD_RATES: [u32; 9] = [
    1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200, 230_400,
];

fn parse_baud(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(b) if BAUD_RATES.contains(&b) => Ok(b),
        _ => Err(format!(
            "expected one of {}",
            BAUD_RATES.map(|b| b.to_string()).join(", ")
        )),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected true or false".into())
}

fn parse_branch_id(s: &str) -> Result<String, String> {
    if (2..=16).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        Ok(s.to_owned())
    } else {
        Err("expected 2-16 characters of A-Z and 0-9, e.g. JKT01".into())
    }
}

fn parse_scanner_name(s: &str) -> Result<String, String> {
    if (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        Ok(s.to_owned())
    } else {
        Err("expected 1-32 characters of a-z, 0-9, - and _ (it is an MQTT topic level), e.g. storeroom".into())
    }
}

fn parse_offset(s: &str) -> Result<UtcOffset, String> {
    let fmt = time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    UtcOffset::parse(s, &fmt).map_err(|_| "expected an offset like +07:00".into())
}

fn format_offset(o: UtcOffset) -> String {
    let (h, m, _) = o.as_hms();
    format!(
        "{}{:02}:{:02}",
        if o.is_negative() { '-' } else { '+' },
        h.abs(),
        m.abs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn lan_settings_parse_and_bad_hosts_are_refused() {
        let env = |k: &str, v: &str| vec![(format!("{ENV_PREFIX}LAN__{k}"), v.to_owned())];
        let c = Config::load_from(None, env("PLAIN", "true")).expect("valid");
        assert!(c.lan.plain && c.mqtt.plain, "mqtt follows lan.plain");
        for host in ["sentra-jkt01.local", "192.168.1.20", "fe80::1"] {
            let c = Config::load_from(None, env("ADVERTISE_HOST", host)).expect(host);
            assert_eq!(c.lan.advertise_host.as_deref(), Some(host));
        }
        for bad in ["https://box", "box:8443", "a b", "box/x", "-.."] {
            let e = Config::load_from(None, env("ADVERTISE_HOST", bad)).expect_err(bad);
            assert!(e.0[0].contains("lan.advertise_host"), "{e}");
        }
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let c = Config::defaults();
        assert_eq!(c.api.listen.port(), 8080);
        // A real box speaks TLS only: HTTPS on 8443, MQTT over TLS on 8883, no plain listeners.
        assert_eq!(c.api.tls_listen.port(), 8443);
        assert_eq!(c.mqtt.tls_listen.port(), 8883);
        assert!(!c.lan.plain && !c.mqtt.plain);
        assert_eq!(c.lan.advertise_host, None);
        assert_eq!(
            c.branch.utc_offset,
            UtcOffset::from_hms(7, 0, 0).expect("valid")
        );
        // The committed example file is exactly what the code documents.
        let example = include_str!("../edge.example.toml");
        assert_eq!(
            example,
            c.to_toml(),
            "regenerate with: sentra-edge config defaults > appliance/edge.example.toml"
        );
        // And it loads back to the same configuration.
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("edge.toml");
        std::fs::write(&p, example).expect("write");
        assert_eq!(Config::load_from(Some(&p), []).expect("loads"), c);
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("edge.toml");
        std::fs::write(
            &p,
            "[api]\nlisten = \"127.0.0.1:9000\"\n[branch]\nid = \"JKT01\"\n",
        )
        .expect("write");
        let c = Config::load_from(
            Some(&p),
            env(&[
                ("SENTRA_EDGE__API__LISTEN", "127.0.0.1:9001"),
                ("OTHER", "x"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.api.listen.port(), 9001);
        assert_eq!(c.branch.id, "JKT01");
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("edge.toml");
        std::fs::write(&p, "[api]\nlisten = \"nope\"\nmax_body_bytes = 5\n[store]\ndat_dir = \"/x\"\n[branch]\nid = \"lower\"\n").expect("write");
        let err = Config::load_from(
            Some(&p),
            env(&[
                ("SENTRA_EDGE__STORE__READERS", "0"),
                ("SENTRA_EDGE__NOPE__X", "1"),
                ("SENTRA_EDGE__BAD", "1"),
            ]),
        )
        .expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "api.listen",
            "api.max_body_bytes",
            "unknown key store.dat_dir",
            "branch.id",
            "store.readers",
            "unknown key nope.x",
            "SENTRA_EDGE__BAD",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert_eq!(err.0.len(), 7, "{text}");
    }

    #[test]
    fn scanner_keys_are_checked() {
        let c = Config::load_from(
            None,
            env(&[
                ("SENTRA_EDGE__SCANNER__DEVICE", "/dev/ttyACM0"),
                ("SENTRA_EDGE__SCANNER__ENABLED", "false"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.scanner.device, PathBuf::from("/dev/ttyACM0"));
        assert!(!c.scanner.enabled);
        let err = Config::load_from(
            None,
            env(&[
                ("SENTRA_EDGE__SCANNER__NAME", "store/room"),
                ("SENTRA_EDGE__SCANNER__BAUD", "12"),
                ("SENTRA_EDGE__SCANNER__DEVICE", ""),
            ]),
        )
        .expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "scanner.name",
            "MQTT topic level",
            "scanner.baud",
            "scanner.device",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn device_keys_are_checked() {
        let c = Config::defaults();
        assert_eq!(c.scanner.kind, ScannerKind::Serial);
        assert_eq!(c.edc.device, None);
        assert_eq!(
            c.printer.line,
            SerialLine {
                baud: 9600,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 1,
                flow: FlowControl::RtsCts,
            }
        );
        let c = Config::load_from(
            None,
            env(&[
                ("SENTRA_EDGE__SCANNER__KIND", "hid"),
                ("SENTRA_EDGE__PRINTER__BAUD", "115200"),
                ("SENTRA_EDGE__PRINTER__PARITY", "even"),
                ("SENTRA_EDGE__PRINTER__FLOW_CONTROL", "xonxoff"),
                ("SENTRA_EDGE__EDC__DEVICE", "/dev/ttyUSB0"),
                ("SENTRA_EDGE__EDC__TIMEOUT_MS", "60000"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.scanner.kind, ScannerKind::Hid);
        assert_eq!(c.printer.line.baud, 115_200);
        assert_eq!(c.printer.line.parity, Parity::Even);
        assert_eq!(c.printer.line.flow, FlowControl::XonXoff);
        assert_eq!(c.edc.device, Some(PathBuf::from("/dev/ttyUSB0")));
        assert_eq!(c.edc.timeout_ms, 60_000);
        let err = Config::load_from(
            None,
            env(&[
                ("SENTRA_EDGE__SCANNER__KIND", "usb"),
                ("SENTRA_EDGE__PRINTER__BAUD", "12345"),
                ("SENTRA_EDGE__PRINTER__DATA_BITS", "9"),
                ("SENTRA_EDGE__PRINTER__PARITY", "mark"),
                ("SENTRA_EDGE__PRINTER__STOP_BITS", "3"),
                ("SENTRA_EDGE__PRINTER__FLOW_CONTROL", "dtr"),
                ("SENTRA_EDGE__EDC__BAUD", "0"),
                ("SENTRA_EDGE__EDC__TIMEOUT_MS", "999999"),
            ]),
        )
        .expect_err("invalid");
        assert_eq!(err.0.len(), 8, "{err}");
    }

    #[test]
    fn malformed_toml_and_missing_file_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("edge.toml");
        std::fs::write(&p, "[api\nlisten=").expect("write");
        assert!(Config::load_from(Some(&p), []).is_err());
        assert!(Config::load_from(Some(&dir.path().join("missing.toml")), []).is_err());
    }
}
