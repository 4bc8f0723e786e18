-- The print worker's bookkeeping. An attempt is recorded (attempts + 1, last_attempt_at) and
-- committed BEFORE its bytes are sent: a job with attempts > 0 that is still QUEUED may have
-- reached the paper, so its next copy is marked as a reprint.

-- The one-time pairing code a pairing_qr job prints. Pairing codes are otherwise stored only as
-- hashes; this copy lives in the encrypted store until the job is printed or fails, then is
-- cleared. Never part of an outbox event.
ALTER TABLE print_jobs ADD COLUMN secret TEXT;
ALTER TABLE print_jobs ADD COLUMN last_attempt_at TEXT;

-- The worker's queue: QUEUED jobs in the order they were queued (rowid).
CREATE INDEX print_jobs_queued ON print_jobs (status) WHERE status = 'QUEUED';
