-- Issue 21, items 2 and 3: staff on shared devices, and the cash drawer's day.
--
-- Staff are master data operators author per branch (`PUT /v1/branches/{branch}/staff/{id}`, in
-- the change log like tariffs); the PIN is stored only as its argon2 PHC string. Shifts and
-- branch days are projected from the branch's events: `shift:opened`, `shift:closed`,
-- `branch_day:closed`, `branch_day:reopened`. Each projection is idempotent: an event sent twice
-- changes nothing the second time (`seq` orders a day's closes and reopens).
create table staff (
    branch_id  text        not null references branches (id),
    id         text        not null,
    name       text        not null,
    role       text        not null check (role in ('CASHIER', 'STOREKEEPER', 'MECHANIC_LEAD', 'MANAGER')),
    active     boolean     not null,
    pin_hash   text        not null,
    updated_at timestamptz not null default now(),
    primary key (branch_id, id)
);

create table staff_shifts (
    branch_id     text        not null,
    id            text        not null,
    staff_id      text        not null,
    device_id     text        not null,
    day           date        not null,
    opening_float bigint      not null check (opening_float >= 0),
    opened_at     timestamptz not null,
    status        text        not null check (status in ('OPEN', 'CLOSED')),
    closed_at     timestamptz,
    cash          bigint,
    edc           bigint,
    qris          bigint,
    expected_cash bigint,
    counted_cash  bigint,
    difference    bigint,
    reason        text,
    box_id        uuid        not null,
    primary key (branch_id, id)
);
create index staff_shifts_day on staff_shifts (branch_id, day);

create table branch_days (
    branch_id     text        not null,
    day           date        not null,
    status        text        not null check (status in ('CLOSED', 'REOPENED')),
    manager_id    text        not null,
    closed_at     timestamptz not null,
    shifts        bigint      not null,
    cash          bigint      not null,
    edc           bigint      not null,
    qris          bigint      not null,
    expected_cash bigint      not null,
    counted_cash  bigint      not null,
    difference    bigint      not null,
    reason        text,
    reopened_at   timestamptz,
    reopened_by   text,
    reopen_reason text,
    seq           bigint      not null,
    primary key (branch_id, day)
);
