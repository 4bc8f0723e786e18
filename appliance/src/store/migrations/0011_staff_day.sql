-- Staff on shared devices and the cash drawer's day (issue 21 items 2 and 3). Additive: new
-- tables and nullable columns only, so builds before this one still read and write the store
-- (they keep their readable_by).

-- Staff members as last pulled from the cloud (the cloud's value wins). The PIN only as its
-- argon2 PHC string.
CREATE TABLE staff (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('CASHIER', 'STOREKEEPER', 'MECHANIC_LEAD', 'MANAGER')),
    active     INTEGER NOT NULL CHECK (active IN (0, 1)),
    pin_hash   TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

-- Who acted: the paired device that asked, and the staff member whose session it sent (none
-- when the request carried no staff session).
ALTER TABLE sync_event_logs ADD COLUMN acting_device TEXT;
ALTER TABLE sync_event_logs ADD COLUMN acting_staff TEXT;

-- A cashier's shift on one device: opened with a float; closed with the cash counted. The
-- totals are the payments the device took between open and close, by method.
CREATE TABLE shifts (
    id             TEXT PRIMARY KEY,
    staff_id       TEXT NOT NULL REFERENCES staff (id),
    device_id      TEXT NOT NULL,
    day            TEXT NOT NULL,
    opening_float  INTEGER NOT NULL CHECK (opening_float >= 0),
    opened_at      TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('OPEN', 'CLOSED')),
    closed_at      TEXT,
    cash           INTEGER,
    edc            INTEGER,
    qris           INTEGER,
    expected_cash  INTEGER,
    counted_cash   INTEGER CHECK (counted_cash >= 0),
    difference     INTEGER,
    reason         TEXT
) STRICT;
-- At most one open shift per device.
CREATE UNIQUE INDEX shifts_open_device ON shifts (device_id) WHERE status = 'OPEN';
CREATE INDEX shifts_day ON shifts (day);

-- A branch day a manager closed (and maybe reopened). No row: the day is open.
CREATE TABLE branch_days (
    day           TEXT PRIMARY KEY,
    status        TEXT NOT NULL CHECK (status IN ('CLOSED', 'REOPENED')),
    manager_id    TEXT NOT NULL,
    closed_at     TEXT NOT NULL,
    shifts        INTEGER NOT NULL,
    cash          INTEGER NOT NULL,
    edc           INTEGER NOT NULL,
    qris          INTEGER NOT NULL,
    expected_cash INTEGER NOT NULL,
    counted_cash  INTEGER NOT NULL,
    difference    INTEGER NOT NULL,
    reason        TEXT,
    reopened_at   TEXT,
    reopened_by   TEXT,
    reopen_reason TEXT
) STRICT;
