-- Records both sides edit. Customers and vehicles merge per field, last writer wins by HLC
-- (ties by origin), every contest logged; work-order notes and inspection remarks are automerge
-- documents, one per record.

create table record_fields (
    branch_id  text        not null references branches (id),
    entity     text        not null check (entity in ('customer', 'vehicle')),
    entity_id  text        not null,
    field      text        not null,
    -- JSON null: the field was cleared.
    value      jsonb       not null,
    hlc        text        not null,
    -- A device id, or 'cloud'.
    origin     text        not null,
    updated_at timestamptz not null default now(),
    primary key (branch_id, entity, entity_id, field)
);

-- Every time two values met for one field: the one kept and the one that lost.
create table field_overwrites (
    id          bigserial   primary key,
    branch_id   text        not null references branches (id),
    entity      text        not null,
    entity_id   text        not null,
    field       text        not null,
    kept_value  jsonb       not null,
    kept_hlc    text        not null,
    kept_origin text        not null,
    lost_value  jsonb       not null,
    lost_hlc    text        not null,
    lost_origin text        not null,
    at          timestamptz not null default now()
);
create index field_overwrites_record on field_overwrites (branch_id, entity, entity_id);

-- The records as the cloud team reads them: one row each, fields as a JSON object.
create view customers as
    select branch_id, entity_id as id, jsonb_object_agg(field, value) as fields, max(updated_at) as updated_at
    from record_fields where entity = 'customer' group by branch_id, entity_id;
create view vehicles as
    select branch_id, entity_id as id, jsonb_object_agg(field, value) as fields, max(updated_at) as updated_at
    from record_fields where entity = 'vehicle' group by branch_id, entity_id;

create table documents (
    branch_id  text        not null references branches (id),
    record     text        not null check (record in ('work_order', 'inspection')),
    record_id  text        not null,
    -- The saved automerge document; notes and checklist are its rendering, for queries.
    doc        bytea       not null,
    notes      text        not null,
    checklist  jsonb       not null,
    updated_at timestamptz not null default now(),
    primary key (branch_id, record, record_id)
);
