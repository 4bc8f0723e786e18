-- The first tables: the branches the cloud serves and the devices (edge appliances) enrolled
-- for them. Ingest, booking and fleet add their own tables in later migrations.

create table branches (
    id         text        primary key,
    name       text        not null,
    created_at timestamptz not null default now()
);

create table devices (
    id         uuid        primary key,
    branch_id  text        not null references branches (id),
    public_key bytea,
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);

create index devices_branch_id_idx on devices (branch_id);
