-- Issue 15, item 5 (cloud half): abandoned photo uploads are swept.
--
-- When an upload last heard from its device: `POST .../uploads` (start or resume), every part
-- and `complete` set it to now(). `blobs::sweep` deletes uploads untouched for
-- `UPLOAD_ABANDONED_AFTER` (2 days) with their staged objects; a device that comes back later
-- starts a new upload. Existing uploads count as touched when this runs, so none is swept
-- before it had the whole period.
alter table blob_uploads
    add column touched_at timestamptz not null default now();

create index blob_uploads_touched_at on blob_uploads (touched_at);
