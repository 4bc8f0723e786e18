-- Rental bookings taken at this branch (issue 4). Online, the cloud holds the booking and this row
-- is the branch's copy of its answer (HELD with the payment window). Offline, the row is
-- TENTATIVE and its `booking:requested` event (same transaction) carries it to the cloud, whose
-- decision, pulled later, makes it CONFIRMED or REJECTED with the reason.
CREATE TABLE bookings (
    id           TEXT PRIMARY KEY,
    asset_id     TEXT NOT NULL REFERENCES assets (id),
    sku          TEXT NOT NULL,
    first_day    TEXT NOT NULL,
    last_day     TEXT NOT NULL CHECK (last_day >= first_day),
    customer     TEXT NOT NULL,
    tier         TEXT NOT NULL CHECK (tier IN ('platinum', 'gold', 'silver', 'basic')),
    state        TEXT NOT NULL
                 CHECK (state IN ('TENTATIVE', 'HELD', 'CONFIRMED', 'REJECTED')),
    -- How it was decided: `cloud` (answered within the request) or `sync` (taken offline).
    source       TEXT NOT NULL CHECK (source IN ('cloud', 'sync')),
    cloud_id     TEXT,
    expires_at   TEXT,
    reject_code  TEXT,
    reason       TEXT,
    requested_by TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    decided_at   TEXT
) STRICT;
CREATE INDEX bookings_asset_days ON bookings (asset_id, first_day);

-- The cloud's live bookings of this branch's assets (whoever made them) as of the last pull:
-- availability while the link is down. Replaced whole at each pull.
CREATE TABLE booking_calendar (
    cloud_id   TEXT PRIMARY KEY,
    asset_id   TEXT NOT NULL,
    sku        TEXT NOT NULL,
    first_day  TEXT NOT NULL,
    last_day   TEXT NOT NULL,
    -- Exclusive end of the taken days (turnover buffer included).
    free_from  TEXT NOT NULL,
    state      TEXT NOT NULL,
    expires_at TEXT
) STRICT;
CREATE INDEX booking_calendar_asset ON booking_calendar (asset_id, first_day);

CREATE TABLE booking_calendar_state (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    as_of                TEXT,
    turnover_buffer_days INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO booking_calendar_state (id, as_of, turnover_buffer_days) VALUES (1, NULL, 0);
