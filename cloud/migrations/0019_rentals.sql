-- Issue 21, item 1: the rental counter.
--
-- Tariffs are master data operators author per branch and SKU (`PUT /v1/branches/{branch}/
-- tariffs/{sku}`, in the change log like parts and assets). A rental is projected from the
-- branch's events: handed over (`rental:handed_over`), returned (`rental:returned`), its invoice
-- (`rental_invoice:issued`, numbered in the branch's invoice series and claimed in
-- `document_numbers` like every invoice) and the money it moved (`rental_payment:received`).
--
-- Money a rental moved is signed: DEPOSIT and PAYMENT positive, REFUND negative. Payments by
-- method for a day or a shift are `payments` (workshop invoices) plus `rental_payments`, each
-- summed by `method`: the refunds subtract what went back out of the drawer. Per rental, the
-- rows add up to its invoice's total. Both money tables are append-only.
create table tariffs (
    branch_id        text        not null references branches (id),
    sku              text        not null,
    daily_rate       bigint      not null check (daily_rate > 0),
    deposit          bigint      not null check (deposit >= 0),
    late_fee_per_day bigint      not null check (late_fee_per_day >= 0),
    updated_at       timestamptz not null default now(),
    primary key (branch_id, sku)
);

create table rentals (
    branch_id              text        not null,
    booking_id             text        not null,
    agreement_number       text        not null,
    asset_id               text        not null,
    sku                    text        not null,
    customer               text        not null,
    first_day              date        not null,
    last_day               date        not null,
    daily_rate             bigint      not null,
    deposit                bigint      not null,
    late_fee_per_day       bigint      not null,
    handover_inspection_id text        not null,
    handover_hash          text        not null,
    handover_photos        bigint      not null,
    handed_over_at         timestamptz not null,
    return_inspection_id   text,
    return_hash            text,
    return_photos          bigint,
    returned_at            timestamptz,
    return_day             date,
    late_days              bigint,
    invoice_id             text,
    deposit_applied        bigint,
    paid                   bigint,
    refunded               bigint,
    device_id              uuid        not null,
    seq                    bigint      not null,
    primary key (branch_id, booking_id)
);

create table rental_invoices (
    branch_id  text        not null,
    id         text        not null,
    number     text        not null,
    booking_id text        not null,
    lines      jsonb       not null,
    subtotal   bigint      not null check (subtotal >= 0),
    tax        bigint      not null check (tax >= 0),
    total      bigint      not null check (total = subtotal + tax),
    issued_at  timestamptz not null,
    device_id  uuid        not null,
    seq        bigint      not null,
    primary key (branch_id, id)
);
create index rental_invoices_booking_idx on rental_invoices (branch_id, booking_id);

create table rental_payments (
    branch_id   text        not null,
    id          text        not null,
    booking_id  text        not null,
    invoice_id  text,
    kind        text        not null check (kind in ('DEPOSIT', 'PAYMENT', 'REFUND')),
    method      text        not null check (method in ('CASH', 'EDC', 'QRIS')),
    amount      bigint      not null check ((kind = 'REFUND' and amount < 0) or (kind <> 'REFUND' and amount > 0)),
    reference   text,
    received_at timestamptz not null,
    device_id   uuid        not null,
    seq         bigint      not null,
    primary key (branch_id, id)
);
create index rental_payments_booking_idx on rental_payments (branch_id, booking_id);
create index rental_payments_received_idx on rental_payments (branch_id, received_at);

create trigger rental_invoices_append_only before update or delete on rental_invoices
    for each row execute function refuse_money_change();
create trigger rental_payments_append_only before update or delete on rental_payments
    for each row execute function refuse_money_change();
