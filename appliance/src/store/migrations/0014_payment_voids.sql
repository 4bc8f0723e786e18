-- Voids (issue 21 item 2): a payment taken in error (wrong method, wrong invoice, typed twice)
-- is taken back the same day with a manager's approval. The payment's row moves here from
-- `payments`, whole, with who voided it and why: every sum over `payments` (an invoice's balance,
-- a shift's and a day's totals) is right without knowing of voids, so builds before this one
-- read the store correctly too (additive: it keeps their readable_by).
CREATE TABLE payment_voids (
    id          TEXT PRIMARY KEY,
    invoice_id  TEXT NOT NULL REFERENCES invoices (id),
    method      TEXT NOT NULL CHECK (method IN ('CASH', 'EDC', 'QRIS')),
    amount      INTEGER NOT NULL CHECK (amount > 0),
    reference   TEXT,
    received_at TEXT NOT NULL,
    received_by TEXT NOT NULL,
    voided_at   TEXT NOT NULL,
    voided_by   TEXT NOT NULL,
    manager_id  TEXT NOT NULL,
    reason      TEXT NOT NULL
) STRICT;
CREATE INDEX payment_voids_invoice ON payment_voids (invoice_id);

-- A payment leaves `payments` only into `payment_voids` (the void's own transaction inserts
-- there first); anything else is refused as before.
DROP TRIGGER payments_no_delete;
CREATE TRIGGER payments_no_delete BEFORE DELETE ON payments
WHEN NOT EXISTS (SELECT 1 FROM payment_voids WHERE id = OLD.id)
BEGIN SELECT RAISE(ABORT, 'payments are append-only; only a void moves one to payment_voids'); END;
CREATE TRIGGER payment_voids_immutable BEFORE UPDATE ON payment_voids
BEGIN SELECT RAISE(ABORT, 'voids are append-only'); END;
CREATE TRIGGER payment_voids_no_delete BEFORE DELETE ON payment_voids
BEGIN SELECT RAISE(ABORT, 'voids are append-only'); END;
