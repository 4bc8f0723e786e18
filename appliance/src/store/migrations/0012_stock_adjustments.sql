-- Stock that matches the shelf (issue 21 item 4): why an ADJUSTMENT moved stock, the parts a
-- work order gave back, and the storekeeper's cycle counts.
--
-- Not additive for older builds: they would invoice a work order's parts without the returned
-- quantity, so this migration names its own version as readable_by (schema.rs).

-- An ADJUSTMENT's kind (COUNT, DAMAGE, RETURN_TO_SUPPLIER, WORK_ORDER_RETURN), its note, and
-- the count that applied it. NULL on every other movement.
ALTER TABLE stock_movements ADD COLUMN adjustment TEXT
    CHECK (adjustment IN ('COUNT', 'DAMAGE', 'RETURN_TO_SUPPLIER', 'WORK_ORDER_RETURN'));
ALTER TABLE stock_movements ADD COLUMN note TEXT;
ALTER TABLE stock_movements ADD COLUMN count_id TEXT;

-- How much of a dispensed line came back to the shelf unused; the invoice bills qty - returned.
ALTER TABLE work_order_parts ADD COLUMN returned INTEGER NOT NULL DEFAULT 0
    CHECK (returned >= 0 AND returned <= qty);

-- A cycle count: store-room working state like pick slips (not synced, no events of its own);
-- what it changes reaches the cloud as COUNT adjustments (stock movements naming it).
CREATE TABLE stock_counts (
    id          TEXT PRIMARY KEY,
    -- OPEN, APPLIED or CANCELLED; only OPEN takes lines, only OPEN is applied or cancelled.
    status      TEXT NOT NULL CHECK (status IN ('OPEN', 'APPLIED', 'CANCELLED')),
    -- 1: only the SKUs in stock_count_skus may be counted; 0: any part in the catalogue.
    scoped      INTEGER NOT NULL CHECK (scoped IN (0, 1)),
    note        TEXT,
    opened_at   TEXT NOT NULL,
    opened_by   TEXT NOT NULL,
    closed_at   TEXT,
    closed_by   TEXT
) STRICT;
CREATE INDEX stock_counts_status ON stock_counts (status, opened_at);

CREATE TABLE stock_count_skus (
    count_id TEXT NOT NULL REFERENCES stock_counts (id),
    sku      TEXT NOT NULL REFERENCES parts (sku),
    PRIMARY KEY (count_id, sku)
) STRICT;

-- What was counted per SKU. `expected` is the box's level when the SKU was first counted in
-- this count; movements after that are kept on top when the count is applied.
CREATE TABLE stock_count_lines (
    count_id      TEXT NOT NULL REFERENCES stock_counts (id),
    sku           TEXT NOT NULL REFERENCES parts (sku),
    counted       INTEGER NOT NULL CHECK (counted >= 0),
    expected      INTEGER NOT NULL,
    first_at      TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    -- The COUNT adjustment the apply made for this line, when it differed.
    movement_id   TEXT REFERENCES stock_movements (id),
    PRIMARY KEY (count_id, sku)
) STRICT;
