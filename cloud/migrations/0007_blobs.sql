-- Inspection photos (issue 8). The bytes live in the object store (`blobs/<sha256>`, staged parts
-- under `uploads/<upload id>/<part>`); PostgreSQL records which photos are whole and which uploads
-- are in progress with the parts they already have, so an upload resumes across a restart of
-- either side and any replica can take the next part.
create table blobs (
    digest     text        primary key check (digest ~ '^[0-9a-f]{64}$'),
    size       bigint      not null check (size >= 0),
    branch_id  text        not null,
    device_id  uuid        not null,
    stored_at  timestamptz not null default now()
);

create table blob_uploads (
    id         uuid        primary key,
    branch_id  text        not null,
    device_id  uuid        not null,
    digest     text        not null check (digest ~ '^[0-9a-f]{64}$'),
    size       bigint      not null check (size >= 0),
    created_at timestamptz not null default now(),
    -- One upload per device and photo: a device that lost its upload id asks again and resumes.
    unique (device_id, digest)
);

create table blob_upload_parts (
    upload_id  uuid        not null references blob_uploads (id) on delete cascade,
    n          integer     not null check (n >= 0),
    size       integer     not null check (size >= 0),
    -- How many times this part arrived: resumption sends only the missing parts, and tests read it.
    received   integer     not null default 1,
    primary key (upload_id, n)
);
