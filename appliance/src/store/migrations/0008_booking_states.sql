-- Bookings change state from the counter (issue 4): staff confirm, cancel and complete them
-- through the box. SQLite cannot widen a CHECK in place: the table is rebuilt with the same
-- rows, adding CANCELLED and COMPLETED, and the payment reference the counter confirmed with.
CREATE TABLE bookings_new (
    id           TEXT PRIMARY KEY,
    asset_id     TEXT NOT NULL REFERENCES assets (id),
    sku          TEXT NOT NULL,
    first_day    TEXT NOT NULL,
    last_day     TEXT NOT NULL CHECK (last_day >= first_day),
    customer     TEXT NOT NULL,
    tier         TEXT NOT NULL CHECK (tier IN ('platinum', 'gold', 'silver', 'basic')),
    state        TEXT NOT NULL
                 CHECK (state IN ('TENTATIVE', 'HELD', 'CONFIRMED', 'REJECTED', 'CANCELLED',
                                  'COMPLETED')),
    source       TEXT NOT NULL CHECK (source IN ('cloud', 'sync')),
    cloud_id     TEXT,
    expires_at   TEXT,
    reject_code  TEXT,
    reason       TEXT,
    requested_by TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    decided_at   TEXT
) STRICT;
INSERT INTO bookings_new SELECT id, asset_id, sku, first_day, last_day, customer, tier, state,
    source, cloud_id, expires_at, reject_code, reason, requested_by, created_at, decided_at
    FROM bookings;
DROP TABLE bookings;
ALTER TABLE bookings_new RENAME TO bookings;
CREATE INDEX bookings_asset_days ON bookings (asset_id, first_day);
