-- Issue 16: a successor box for a branch whose box died, and numbers that never repeat.

-- A device enrolled with `replaces` names the device it succeeds; the replaced device names its
-- successor and is revoked in the same transaction. A device is replaced at most once.
-- `number_series`: the invoice and credit-note series the cloud handed the device (4 Crockford
-- base-32 characters), unique in its branch; NULL for a branch's first box, which numbers
-- without one.
alter table devices
    add column replaces      uuid references devices (id),
    add column replaced_by   uuid references devices (id),
    add column replaced_at   timestamptz,
    add column number_series text check (number_series ~ '^[0-9A-HJKMNP-TV-Z]{4}$');
create unique index devices_replaced_once on devices (replaces) where replaces is not null;
create unique index devices_branch_number_series on devices (branch_id, number_series)
    where number_series is not null;

-- Every invoice and credit-note number a branch holds, once: ingest parks a document whose
-- number the branch already holds under another id, and this key settles two pushes that race
-- with the same number. Numbers that repeated before this migration keep their first holder.
create table document_numbers (
    branch_id   text not null,
    number      text not null,
    kind        text not null check (kind in ('invoice', 'credit_note')),
    document_id text not null,
    primary key (branch_id, number)
);
insert into document_numbers (branch_id, number, kind, document_id)
select distinct on (branch_id, number) branch_id, number, kind, id
  from (select branch_id, number, 'invoice' as kind, id, issued_at from invoices
        union all
        select branch_id, number, 'credit_note', id, issued_at from credit_notes) d
 order by branch_id, number, issued_at, id;

-- The part lines of a work order (its DISPENSE movements), for a successor's snapshot of the
-- branch's open work orders. On a large table this build holds ingest's inserts for its
-- duration: migrate in a quiet hour.
create index stock_movements_work_order_idx on stock_movements (branch_id, work_order_id)
    where work_order_id is not null;
