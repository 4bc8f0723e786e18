-- Issue 16, item 2: the boxes' daily backups in the object store.
--
-- A box records a backup (`POST /v1/backups`) before uploading it through the photo upload
-- protocol; `blobs::start` accepts a digest only when an inspection of the branch names it or
-- the same device recorded a backup of it at the declared size. The bytes are one object per
-- digest (`blobs/<sha256>`, recorded in `blobs` once whole), encrypted with the box's store key.
-- Each device keeps its newest 7 records (`blobs::backups::prune`).
create table device_backups (
    device_id   uuid        not null,
    branch_id   text        not null,
    digest      text        not null check (digest ~ '^[0-9a-f]{64}$'),
    size        bigint      not null check (size > 0),
    taken_at    timestamptz not null,
    events      bigint      not null check (events >= 0),
    recorded_at timestamptz not null default now(),
    primary key (device_id, digest)
);

create index device_backups_newest on device_backups (device_id, taken_at desc);
create index device_backups_branch on device_backups (branch_id, taken_at desc);
create index device_backups_digest on device_backups (digest);
