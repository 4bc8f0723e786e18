-- The outbox's counter without a page of its own. Until 0016 every event also rewrote the
-- one-row table `outbox_state` (next_seq, last_hlc, total_bytes): one of the seven encrypted
-- pages a work order's commit writes, for three values the events already hold. The next
-- sequence number is one past the newest event (sequence numbers are the table's rowid, so
-- that is one B-tree seek, on the page the commit writes anyway), and the clock is the later of
-- the newest event's stamp and the last stamp observed from the cloud.
--
-- What is left to keep moves to `outbox_clock`, which an append no longer writes:
--   last_hlc         the clock as last moved by the cloud (an event's own stamp is in its row);
--   total_bytes      payload bytes of the events up to `counted_through`, folded forward every
--                    few hundred events (store::outbox::FOLD_EVERY), so the outbox's pending bytes
--                    stay one short sum away however long the backlog.
--
-- Builds from before this migration still read and write `outbox_state` by name, through the
-- view and its trigger below, with the same answers: a rollback after an update keeps numbering
-- where the newer build stopped. Their append passes through the trigger, which folds the
-- count up to the new event; a renumbering (next_seq moving by more than the one event an
-- append adds, with no bytes added) recounts. So this keeps every readable_by.

CREATE TABLE outbox_clock (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    last_hlc        TEXT NOT NULL,
    total_bytes     INTEGER NOT NULL,
    counted_through INTEGER NOT NULL
) STRICT;

INSERT INTO outbox_clock (id, last_hlc, total_bytes, counted_through)
SELECT 1, last_hlc, total_bytes, next_seq - 1 FROM outbox_state WHERE id = 1;

DROP TABLE outbox_state;

CREATE VIEW outbox_state (id, next_seq, last_hlc, total_bytes, counted_through) AS
SELECT
    1,
    coalesce((SELECT max(seq) FROM sync_event_logs), 0) + 1,
    max(c.last_hlc, coalesce((SELECT hlc FROM sync_event_logs ORDER BY seq DESC LIMIT 1), '')),
    c.total_bytes + (
        SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0)
        FROM sync_event_logs WHERE seq > c.counted_through
    ),
    c.counted_through
FROM outbox_clock c WHERE c.id = 1;

-- An older build's writes: an append (next_seq one up, bytes added), a stamp from the cloud
-- (next_seq unchanged) or a renumbering after a restored backup's fork (next_seq up by the
-- shift, the events already moved, no bytes added). next_seq itself is derived: what is kept
-- is the clock and the count, folded up to the newest event.
CREATE TRIGGER outbox_state_update INSTEAD OF UPDATE ON outbox_state
BEGIN
    UPDATE outbox_clock SET
        last_hlc = NEW.last_hlc,
        total_bytes = CASE
            WHEN NEW.next_seq = OLD.next_seq OR NEW.total_bytes <> OLD.total_bytes
                THEN OLD.total_bytes
            ELSE (SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM sync_event_logs)
        END,
        counted_through = OLD.next_seq - 1
    WHERE id = 1;
END;
