-- The link to the cloud: this box's identity (its ed25519 key never leaves the encrypted store),
-- how far push and pull have got, and what the cloud refused.

CREATE TABLE cloud_identity (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    cloud_url   TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    branch_id   TEXT NOT NULL,
    branch_name TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    enrolled_at TEXT NOT NULL
) STRICT;

-- Outbox events with seq <= last_ack_seq are in the cloud; the rest are pending.
CREATE TABLE sync_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_ack_seq  INTEGER NOT NULL DEFAULT 0,
    acked_bytes   INTEGER NOT NULL DEFAULT 0,
    last_ack_at   TEXT,
    pull_cursor   INTEGER NOT NULL DEFAULT 0,
    last_pull_at  TEXT,
    clock_skew_ms INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
) STRICT;
INSERT INTO sync_state (id) VALUES (1);

-- Events the cloud parked (failed validation), as told at push or pull.
CREATE TABLE sync_rejections (
    seq         INTEGER PRIMARY KEY,
    entity      TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    received_at TEXT NOT NULL
) STRICT;
