-- Records both sides edit. Customers and vehicles: one row per field, last writer wins by HLC
-- (ties by origin); contests between writers logged. Work-order notes and inspection remarks:
-- one automerge document per record.

CREATE TABLE record_fields (
    entity     TEXT NOT NULL CHECK (entity IN ('customer', 'vehicle')),
    entity_id  TEXT NOT NULL,
    field      TEXT NOT NULL,
    value      TEXT NOT NULL,          -- JSON; null clears the field
    hlc        TEXT NOT NULL,
    origin     TEXT,                   -- NULL: this box; else 'cloud' or a device id
    updated_at TEXT NOT NULL,
    PRIMARY KEY (entity, entity_id, field)
) WITHOUT ROWID;

CREATE TABLE field_overwrites (
    id          INTEGER PRIMARY KEY,
    entity      TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    field       TEXT NOT NULL,
    kept_value  TEXT NOT NULL,
    kept_hlc    TEXT NOT NULL,
    kept_origin TEXT,
    lost_value  TEXT NOT NULL,
    lost_hlc    TEXT NOT NULL,
    lost_origin TEXT,
    at          TEXT NOT NULL
);

CREATE TABLE documents (
    record     TEXT NOT NULL CHECK (record IN ('work_order', 'inspection')),
    record_id  TEXT NOT NULL,
    doc        BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (record, record_id)
) WITHOUT ROWID;

-- This store's automerge actor: random, made once, never reused by another store.
CREATE TABLE replica (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    actor BLOB NOT NULL
);
INSERT INTO replica (id, actor) VALUES (1, randomblob(16));
