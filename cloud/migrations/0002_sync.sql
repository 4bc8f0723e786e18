-- Edge ⇄ cloud sync (issue 3): device identity, the ingest record, the projections the cloud
-- team queries, master data, and the per-branch change log that devices pull.
--
-- High-volume tables (events and projections) carry no foreign keys: their branch_id always
-- comes from the authenticated device's row, never from a payload, and a per-row key check would
-- cost ingest throughput for nothing.

-- The per-branch change-log counter. Moved by `UPDATE ... RETURNING` inside the transaction that
-- writes the change, so cursors are gapless and commit-ordered per branch (the row lock is held
-- until commit): a reader never sees cursor N+1 before N.
alter table branches add column change_seq bigint not null default 0 check (change_seq >= 0);

alter table devices
    add column hostname text,
    add column version  text;

-- One-time enrolment tokens: only the SHA-256 of the token is stored.
create table enrollment_tokens (
    token_hash bytea       primary key check (length(token_hash) = 32),
    branch_id  text        not null references branches (id),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at    timestamptz,
    device_id  uuid        references devices (id)
);

-- Tokens for non-device clients (customer portal, cloud team); only the hash is stored.
create table api_tokens (
    id         bigint      generated always as identity primary key,
    name       text        not null,
    role       text        not null check (role in ('portal', 'operator')),
    token_hash bytea       not null unique check (length(token_hash) = 32),
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);

-- Nonces of signed device requests, kept for twice the allowed clock skew: a replay older than
-- that is refused by its timestamp anyway.
create table request_nonces (
    device_id uuid        not null,
    nonce     text        not null,
    seen_at   timestamptz not null default now(),
    primary key (device_id, nonce)
);
create index request_nonces_seen_at_idx on request_nonces (seen_at);

-- The highest outbox seq the cloud holds (applied or parked) per device.
create table device_cursors (
    device_id  uuid        primary key references devices (id),
    branch_id  text        not null references branches (id),
    last_seq   bigint      not null default 0 check (last_seq >= 0),
    updated_at timestamptz not null default now()
);

-- Every applied event, as received. Partitioned by branch so a branch's history stays together
-- and partitions can be moved or vacuumed independently.
create table events (
    branch_id      text        not null,
    device_id      uuid        not null,
    seq            bigint      not null check (seq > 0),
    hlc            text        not null,
    schema_version integer     not null,
    entity         text        not null,
    entity_id      text        not null,
    op             text        not null,
    payload        jsonb       not null,
    received_at    timestamptz not null default now(),
    primary key (branch_id, device_id, seq)
) partition by hash (branch_id);

create table events_p0 partition of events for values with (modulus 8, remainder 0);
create table events_p1 partition of events for values with (modulus 8, remainder 1);
create table events_p2 partition of events for values with (modulus 8, remainder 2);
create table events_p3 partition of events for values with (modulus 8, remainder 3);
create table events_p4 partition of events for values with (modulus 8, remainder 4);
create table events_p5 partition of events for values with (modulus 8, remainder 5);
create table events_p6 partition of events for values with (modulus 8, remainder 6);
create table events_p7 partition of events for values with (modulus 8, remainder 7);

-- Events that failed validation, with the reason; never applied to the projections. `entity`,
-- `hlc` and `payload` are kept as received, even when they are what failed.
create table parked_events (
    branch_id      text        not null,
    device_id      uuid        not null,
    seq            bigint      not null check (seq > 0),
    hlc            text        not null,
    schema_version integer     not null,
    entity         text        not null,
    entity_id      text        not null,
    op             text        not null,
    payload        jsonb       not null,
    reason         text        not null,
    parked_at      timestamptz not null default now(),
    primary key (branch_id, device_id, seq)
);

-- Projections. Each row names the event that created it (device_id, seq).

create table work_orders (
    branch_id      text        not null,
    id             text        not null,
    customer_name  text        not null,
    customer_phone text,
    vehicle_plate  text        not null,
    complaint      text        not null,
    mechanic_id    text,
    -- Per-field last-writer-wins by HLC (the text form sorts like the stamp).
    mechanic_hlc   text        not null,
    status         text        not null,
    status_hlc     text        not null,
    created_at     timestamptz not null,
    updated_at     timestamptz not null,
    device_id      uuid        not null,
    seq            bigint      not null,
    primary key (branch_id, id)
);

-- Stock: movements are deltas; a level is maintained additively from the movements inserted,
-- so changes from every device add up.
create table stock_movements (
    branch_id     text        not null,
    id            text        not null,
    sku           text        not null,
    delta         bigint      not null check (delta <> 0),
    reason        text        not null check (reason in ('RECEIPT', 'DISPENSE', 'ADJUSTMENT')),
    work_order_id text,
    line_id       text,
    unit_price    bigint      check (unit_price >= 0),
    reference     text,
    moved_at      timestamptz not null,
    device_id     uuid        not null,
    seq           bigint      not null,
    primary key (branch_id, id)
);
create index stock_movements_sku_idx on stock_movements (branch_id, sku);

create table stock_levels (
    branch_id  text        not null,
    sku        text        not null,
    on_hand    bigint      not null,
    updated_at timestamptz not null default now(),
    primary key (branch_id, sku)
);

-- Money: append-only (integer rupiah). Corrections are credit notes.
create table invoices (
    branch_id     text        not null,
    id            text        not null,
    number        text        not null,
    work_order_id text        not null,
    lines         jsonb       not null,
    subtotal      bigint      not null check (subtotal >= 0),
    tax           bigint      not null check (tax >= 0),
    total         bigint      not null check (total = subtotal + tax),
    issued_at     timestamptz not null,
    device_id     uuid        not null,
    seq           bigint      not null,
    primary key (branch_id, id)
);
create index invoices_work_order_idx on invoices (branch_id, work_order_id);

create table payments (
    branch_id   text        not null,
    id          text        not null,
    invoice_id  text        not null,
    method      text        not null check (method in ('CASH', 'EDC', 'QRIS')),
    amount      bigint      not null check (amount > 0),
    reference   text,
    received_at timestamptz not null,
    device_id   uuid        not null,
    seq         bigint      not null,
    primary key (branch_id, id)
);
create index payments_invoice_idx on payments (branch_id, invoice_id);

create table credit_notes (
    branch_id  text        not null,
    id         text        not null,
    number     text        not null,
    invoice_id text        not null,
    amount     bigint      not null check (amount > 0),
    reason     text        not null,
    issued_at  timestamptz not null,
    device_id  uuid        not null,
    seq        bigint      not null,
    primary key (branch_id, id)
);
create index credit_notes_invoice_idx on credit_notes (branch_id, invoice_id);

create function refuse_money_change() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only: % refused', tg_table_name, tg_op;
end
$$;

create trigger invoices_append_only before update or delete on invoices
    for each row execute function refuse_money_change();
create trigger payments_append_only before update or delete on payments
    for each row execute function refuse_money_change();
create trigger credit_notes_append_only before update or delete on credit_notes
    for each row execute function refuse_money_change();

create table inspections (
    branch_id         text        not null,
    id                text        not null,
    asset_id          text        not null,
    kind              text        not null check (kind in ('HANDOVER', 'RETURN')),
    chain_index       bigint      not null check (chain_index >= 0),
    checklist         jsonb       not null,
    photos            jsonb       not null,
    signature         jsonb       not null,
    odometer_km       bigint,
    fuel_percent      bigint,
    remarks           text,
    inspector         text        not null,
    created_at        timestamptz not null,
    prev_hash         text,
    tamper_proof_hash text        not null,
    device_id         uuid        not null,
    seq               bigint      not null,
    primary key (branch_id, id)
);
create index inspections_asset_idx on inspections (branch_id, asset_id, chain_index);

-- Master data, authored in the cloud per branch; every change is also in branch_changes.

create table parts (
    branch_id  text        not null references branches (id),
    sku        text        not null,
    name       text        not null,
    barcode    text,
    price      bigint      not null check (price >= 0),
    unit       text        not null,
    updated_at timestamptz not null default now(),
    primary key (branch_id, sku)
);

create table mechanics (
    branch_id  text        not null references branches (id),
    id         text        not null,
    name       text        not null,
    active     boolean     not null,
    updated_at timestamptz not null default now(),
    primary key (branch_id, id)
);

create table assets (
    branch_id  text        not null references branches (id),
    id         text        not null,
    sku        text        not null,
    plate      text        not null,
    name       text        not null,
    updated_at timestamptz not null default now(),
    primary key (branch_id, id)
);

-- What the cloud tells a branch, in order: `cursor` comes from branches.change_seq (see above),
-- `body` is the protocol's ChangeBody (with its `kind` tag).
create table branch_changes (
    branch_id  text        not null references branches (id),
    cursor     bigint      not null check (cursor > 0),
    kind       text        not null,
    body       jsonb       not null,
    created_at timestamptz not null default now(),
    primary key (branch_id, cursor)
);

-- Last-writer-wins updates of one work-order field (status or mechanic), by primary key, one row
-- at a time, in key order. A per-key loop rather than one `UPDATE … FROM unnest(…)`: with a join,
-- the plan depends on statistics, and on a table that grows by thousands of rows between
-- autovacuum's analyses the planner scans the whole branch for every batch. A primary-key
-- equality is always an index probe.
create function apply_work_order_field(
    p_branch text, p_field text, p_ids text[], p_values text[], p_hlcs text[], p_ats timestamptz[]
) returns void language plpgsql as $$
declare
    r record;
begin
    for r in select * from unnest(p_ids, p_values, p_hlcs, p_ats) as u(id, value, hlc, at) order by id loop
        if p_field = 'status' then
            update work_orders
               set status = r.value, status_hlc = r.hlc, updated_at = greatest(updated_at, r.at)
             where branch_id = p_branch and id = r.id and status_hlc < r.hlc;
        elsif p_field = 'mechanic' then
            update work_orders
               set mechanic_id = r.value, mechanic_hlc = r.hlc, updated_at = greatest(updated_at, r.at)
             where branch_id = p_branch and id = r.id and mechanic_hlc < r.hlc;
        else
            raise exception 'apply_work_order_field: unknown field %', p_field;
        end if;
    end loop;
end
$$;
