-- Rental completion (issue 4: the car came back).

-- A COMPLETED booking keeps the days up to its return (and the turnover buffer after it) in the
-- exclusion constraint: completion shrinks `period` to end at the return, so an early return
-- frees the rest and a late one never reaches into the next renter's days.
alter table bookings drop constraint bookings_no_overlap;
alter table bookings add constraint bookings_no_overlap exclude using gist (
    branch_id with =, asset_id with =, period with &&
) where (state in ('HELD', 'CONFIRMED', 'COMPLETED'));

-- The return facts, as the counter reported them (rupiah).
alter table bookings
    add column completed_at  timestamptz,
    add column returned_at   timestamptz,
    add column damage_charge bigint check (damage_charge >= 0),
    add column late_charge   bigint check (late_charge >= 0);

-- What completion still owes the payment gateway: capturing the charges (if any) and releasing
-- the rest of the pre-authorisation, at most 24 h after COMPLETED. One row per completed
-- booking paid through the gateway, written in the completion's transaction, worked by the
-- sweeper (`FOR UPDATE SKIP LOCKED`) until both are done: a crash or a failing gateway only
-- delays it. The idempotency keys go to the gateway, so a retry after a lost answer never
-- captures or releases twice.
create table payment_settlements (
    booking_id      uuid        primary key references bookings (id),
    payment_ref     text        not null,
    capture_amount  bigint      not null check (capture_amount >= 0),
    capture_key     text        not null,
    captured_at     timestamptz,
    release_key     text        not null,
    release_due_at  timestamptz not null,
    released_at     timestamptz,
    attempts        integer     not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    created_at      timestamptz not null default now()
);
create index payment_settlements_due_idx on payment_settlements (next_attempt_at)
    where released_at is null;
