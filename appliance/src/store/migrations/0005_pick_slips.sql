-- Pick slips: the storekeeper opens one for a work order, and each part scanned while it is open
-- is dispensed to that work order (through workshop::dispense, so stock rules and the outbox
-- hold). A slip is the store room's working state, like a pairing code: it is not synced and
-- emits no event of its own; the dispenses made through it are ordinary stock movements.
CREATE TABLE pick_slips (
    id            TEXT PRIMARY KEY,
    work_order_id TEXT NOT NULL REFERENCES work_orders (id),
    status        TEXT NOT NULL CHECK (status IN ('OPEN', 'CLOSED')),
    opened_at     TEXT NOT NULL,
    opened_by     TEXT NOT NULL,
    closed_at     TEXT,
    closed_by     TEXT
) STRICT;
-- One open slip at a time: a scan must know which work order its part goes to.
CREATE UNIQUE INDEX pick_slips_one_open ON pick_slips (status) WHERE status = 'OPEN';

-- Every scan made while a slip was open, dispensed or rejected (with the reason), so the
-- storekeeper can see what the scanner did.
CREATE TABLE pick_slip_scans (
    id           TEXT PRIMARY KEY,
    pick_slip_id TEXT NOT NULL REFERENCES pick_slips (id),
    scanner      TEXT NOT NULL,
    code         TEXT NOT NULL,
    symbology    TEXT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('DISPENSED', 'REJECTED')),
    sku          TEXT,
    line_id      TEXT,
    reason       TEXT,
    message      TEXT,
    at           TEXT NOT NULL
) STRICT;
CREATE INDEX pick_slip_scans_slip ON pick_slip_scans (pick_slip_id, at);
