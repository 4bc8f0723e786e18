-- Inspection photos (issue 8). The photos themselves are in blobs.db (store::blobs); this table
-- says which outbox event references which photo, so the uploader sends a photo only after the
-- cloud acknowledged the event that says what it is for.
CREATE TABLE blob_refs (
    digest TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (digest, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX blob_refs_seq ON blob_refs (seq);

-- Inspections recorded before this migration reference photos too.
INSERT OR IGNORE INTO blob_refs (digest, seq)
SELECT j.value, e.seq
FROM inspections i
JOIN sync_event_logs e ON e.entity = 'inspection' AND e.entity_id = i.id
JOIN json_each(i.photos) j
UNION
SELECT json_extract(i.signature, '$.digest'), e.seq
FROM inspections i
JOIN sync_event_logs e ON e.entity = 'inspection' AND e.entity_id = i.id;
