-- The branch's record. STRICT tables; every domain change also appends to sync_event_logs in
-- the same transaction (see store::outbox).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- The outbox: per-device gapless sequence, HLC stamp, the change itself.
CREATE TABLE sync_event_logs (
    seq            INTEGER PRIMARY KEY,
    device_id      TEXT NOT NULL,
    hlc            TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    entity         TEXT NOT NULL,
    entity_id      TEXT NOT NULL,
    op             TEXT NOT NULL,
    payload        TEXT NOT NULL,
    created_at     TEXT NOT NULL
) STRICT;

-- total_bytes: payload bytes ever appended, so pending bytes need no scan of a long backlog.
CREATE TABLE outbox_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq    INTEGER NOT NULL,
    last_hlc    TEXT NOT NULL,
    total_bytes INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO outbox_state (id, next_seq, last_hlc) VALUES (1, 1, '000000000000000-0000000000');

-- Master data: authored in the cloud later (server priority), seeded by `demo` for now.
CREATE TABLE parts (
    sku        TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    barcode    TEXT UNIQUE,
    price      INTEGER NOT NULL CHECK (price >= 0),
    unit       TEXT NOT NULL DEFAULT 'pcs',
    updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE mechanics (
    id     TEXT PRIMARY KEY,
    name   TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
) STRICT;

CREATE TABLE assets (
    id    TEXT PRIMARY KEY,
    sku   TEXT NOT NULL,
    plate TEXT NOT NULL,
    name  TEXT NOT NULL
) STRICT;

-- Stock is movements (deltas) only; the level is their sum, so edge and cloud changes add up.
CREATE TABLE stock_movements (
    id            TEXT PRIMARY KEY,
    sku           TEXT NOT NULL REFERENCES parts (sku),
    delta         INTEGER NOT NULL CHECK (delta <> 0),
    reason        TEXT NOT NULL CHECK (reason IN ('RECEIPT', 'DISPENSE', 'ADJUSTMENT')),
    work_order_id TEXT,
    reference     TEXT,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL
) STRICT;
CREATE INDEX stock_movements_sku ON stock_movements (sku);

-- The sum of each part's movements, maintained in the same transaction as every movement
-- (invariant: on_hand = SUM(delta)), so a level read does not grow with years of history.
CREATE TABLE stock_levels (
    sku     TEXT PRIMARY KEY REFERENCES parts (sku),
    on_hand INTEGER NOT NULL
) STRICT;

CREATE TABLE work_orders (
    id             TEXT PRIMARY KEY,
    customer_name  TEXT NOT NULL,
    customer_phone TEXT,
    vehicle_plate  TEXT NOT NULL,
    complaint      TEXT NOT NULL,
    mechanic_id    TEXT REFERENCES mechanics (id),
    status         TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    created_by     TEXT NOT NULL
) STRICT;
CREATE INDEX work_orders_status ON work_orders (status, created_at);

CREATE TABLE work_order_parts (
    id            TEXT PRIMARY KEY,
    work_order_id TEXT NOT NULL REFERENCES work_orders (id),
    sku           TEXT NOT NULL REFERENCES parts (sku),
    qty           INTEGER NOT NULL CHECK (qty > 0),
    unit_price    INTEGER NOT NULL CHECK (unit_price >= 0),
    movement_id   TEXT NOT NULL UNIQUE REFERENCES stock_movements (id),
    created_at    TEXT NOT NULL
) STRICT;
CREATE INDEX work_order_parts_wo ON work_order_parts (work_order_id);

-- Money is append-only: invoices and payments are never updated or deleted; corrections are
-- credit notes.
CREATE TABLE invoices (
    id            TEXT PRIMARY KEY,
    number        TEXT NOT NULL UNIQUE,
    work_order_id TEXT NOT NULL UNIQUE REFERENCES work_orders (id),
    lines         TEXT NOT NULL,
    subtotal      INTEGER NOT NULL,
    tax           INTEGER NOT NULL,
    total         INTEGER NOT NULL,
    issued_at     TEXT NOT NULL,
    issued_by     TEXT NOT NULL
) STRICT;

CREATE TABLE number_counters (
    series   TEXT NOT NULL,
    period   TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (series, period)
) STRICT;

CREATE TABLE payments (
    id          TEXT PRIMARY KEY,
    invoice_id  TEXT NOT NULL REFERENCES invoices (id),
    method      TEXT NOT NULL CHECK (method IN ('CASH', 'EDC', 'QRIS')),
    amount      INTEGER NOT NULL CHECK (amount > 0),
    reference   TEXT,
    received_at TEXT NOT NULL,
    received_by TEXT NOT NULL
) STRICT;
CREATE INDEX payments_invoice ON payments (invoice_id);

CREATE TABLE credit_notes (
    id         TEXT PRIMARY KEY,
    number     TEXT NOT NULL UNIQUE,
    invoice_id TEXT NOT NULL REFERENCES invoices (id),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    reason     TEXT NOT NULL,
    issued_at  TEXT NOT NULL,
    issued_by  TEXT NOT NULL
) STRICT;
CREATE INDEX credit_notes_invoice ON credit_notes (invoice_id);

CREATE TRIGGER invoices_immutable BEFORE UPDATE ON invoices
BEGIN SELECT RAISE(ABORT, 'invoices are immutable; issue a credit note'); END;
CREATE TRIGGER invoices_no_delete BEFORE DELETE ON invoices
BEGIN SELECT RAISE(ABORT, 'invoices are immutable; issue a credit note'); END;
CREATE TRIGGER payments_immutable BEFORE UPDATE ON payments
BEGIN SELECT RAISE(ABORT, 'payments are append-only'); END;
CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments
BEGIN SELECT RAISE(ABORT, 'payments are append-only'); END;
CREATE TRIGGER credit_notes_immutable BEFORE UPDATE ON credit_notes
BEGIN SELECT RAISE(ABORT, 'credit notes are append-only'); END;

-- Handover inspections: hash-chained per asset (see domain::inspection).
CREATE TABLE inspections (
    id                TEXT PRIMARY KEY,
    asset_id          TEXT NOT NULL REFERENCES assets (id),
    kind              TEXT NOT NULL CHECK (kind IN ('HANDOVER', 'RETURN')),
    chain_index       INTEGER NOT NULL,
    checklist         TEXT NOT NULL,
    photos            TEXT NOT NULL,
    signature         TEXT NOT NULL,
    odometer_km       INTEGER,
    fuel_percent      INTEGER,
    remarks           TEXT,
    inspector         TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    prev_hash         TEXT,
    tamper_proof_hash TEXT NOT NULL,
    UNIQUE (asset_id, chain_index)
) STRICT;

-- Print jobs: committed before the API answers; the print worker (a later change) sends them.
CREATE TABLE print_jobs (
    id          TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    ref_id      TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    printed_at  TEXT,
    last_error  TEXT
) STRICT;

-- Local security state (not synced): paired devices and pending pairing codes.
CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;

CREATE TABLE pairing_codes (
    code_hash  TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
) STRICT;

-- Idempotency: the answer to a write, kept with its key so a retry gets the same answer.
CREATE TABLE idempotency_keys (
    device_id    TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER NOT NULL,
    response     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (device_id, key)
) STRICT;
