-- The rental counter (issue 21): tariffs per SKU (master data the cloud authors), and a rental
-- per booking from handover to settlement. Additive: new tables only, which builds before this
-- one never read, so it keeps their readable_by.

-- What renting a SKU costs here, as last pulled (the cloud's value wins). Integer rupiah.
CREATE TABLE tariffs (
    sku              TEXT PRIMARY KEY,
    daily_rate       INTEGER NOT NULL CHECK (daily_rate > 0),
    deposit          INTEGER NOT NULL CHECK (deposit >= 0),
    late_fee_per_day INTEGER NOT NULL CHECK (late_fee_per_day >= 0),
    updated_at       TEXT NOT NULL
) STRICT;

-- One rental per booking: the agreement made at handover (the tariff as agreed, the handover
-- inspection it is tied to), then the return (its inspection, the late days, the invoice).
CREATE TABLE rentals (
    booking_id             TEXT PRIMARY KEY REFERENCES bookings (id),
    agreement_number       TEXT NOT NULL UNIQUE,
    asset_id               TEXT NOT NULL,
    sku                    TEXT NOT NULL,
    customer               TEXT NOT NULL,
    first_day              TEXT NOT NULL,
    last_day               TEXT NOT NULL,
    daily_rate             INTEGER NOT NULL CHECK (daily_rate > 0),
    deposit                INTEGER NOT NULL CHECK (deposit >= 0),
    late_fee_per_day       INTEGER NOT NULL CHECK (late_fee_per_day >= 0),
    handover_inspection_id TEXT NOT NULL UNIQUE REFERENCES inspections (id),
    handed_over_at         TEXT NOT NULL,
    handed_over_by         TEXT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('OUT', 'RETURNED')),
    return_inspection_id   TEXT UNIQUE REFERENCES inspections (id),
    returned_at            TEXT,
    return_day             TEXT,
    late_days              INTEGER CHECK (late_days >= 0),
    damage                 TEXT,
    invoice_id             TEXT,
    returned_by            TEXT
) STRICT;

-- A rental's invoice: no work order; numbered in the branch's invoice series. Append-only.
CREATE TABLE rental_invoices (
    id         TEXT PRIMARY KEY,
    number     TEXT NOT NULL UNIQUE,
    booking_id TEXT NOT NULL UNIQUE REFERENCES rentals (booking_id),
    lines      TEXT NOT NULL,
    subtotal   INTEGER NOT NULL,
    tax        INTEGER NOT NULL,
    total      INTEGER NOT NULL,
    issued_at  TEXT NOT NULL,
    issued_by  TEXT NOT NULL
) STRICT;

-- Money a rental moved, signed: DEPOSIT and PAYMENT in (> 0), REFUND out (< 0). Summed by
-- method they are what the drawer took; per rental they add up to its invoice. Append-only.
CREATE TABLE rental_payments (
    id          TEXT PRIMARY KEY,
    booking_id  TEXT NOT NULL REFERENCES rentals (booking_id),
    invoice_id  TEXT REFERENCES rental_invoices (id),
    kind        TEXT NOT NULL CHECK (kind IN ('DEPOSIT', 'PAYMENT', 'REFUND')),
    method      TEXT NOT NULL CHECK (method IN ('CASH', 'EDC', 'QRIS')),
    amount      INTEGER NOT NULL CHECK ((kind = 'REFUND' AND amount < 0) OR (kind <> 'REFUND' AND amount > 0)),
    reference   TEXT,
    received_at TEXT NOT NULL,
    received_by TEXT NOT NULL
) STRICT;
CREATE INDEX rental_payments_booking ON rental_payments (booking_id);
CREATE INDEX rental_payments_received ON rental_payments (received_at);

CREATE TRIGGER rental_invoices_immutable BEFORE UPDATE ON rental_invoices
BEGIN SELECT RAISE(ABORT, 'invoices are immutable; issue a credit note'); END;
CREATE TRIGGER rental_invoices_no_delete BEFORE DELETE ON rental_invoices
BEGIN SELECT RAISE(ABORT, 'invoices are immutable; issue a credit note'); END;
CREATE TRIGGER rental_payments_immutable BEFORE UPDATE ON rental_payments
BEGIN SELECT RAISE(ABORT, 'payments are append-only'); END;
CREATE TRIGGER rental_payments_no_delete BEFORE DELETE ON rental_payments
BEGIN SELECT RAISE(ABORT, 'payments are append-only'); END;
