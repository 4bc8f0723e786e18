-- Rental booking (issue 4). PostgreSQL decides: the exclusion constraint below makes two live
-- bookings of one asset on overlapping days impossible, whatever Redis, locks or retries do.
-- Redis (calendar, locks, waitlist) is a fast path rebuilt from these rows.

create extension if not exists btree_gist;

-- Unpartitioned on purpose: on PostgreSQL 15 an exclusion constraint cannot span partitions.
create table bookings (
    id               uuid        primary key,
    branch_id        text        not null,
    asset_id         text        not null,
    sku              text        not null,
    -- The rental days as asked for (inclusive), and the days the asset is taken: those plus the
    -- turnover buffer, as a half-open range. Only `period` takes part in the constraint.
    first_day        date        not null,
    last_day         date        not null check (last_day >= first_day),
    period           daterange   not null,
    state            text        not null
                     check (state in ('HELD', 'CONFIRMED', 'COMPLETED', 'EXPIRED', 'CANCELLED')),
    customer         text        not null,
    tier             text        not null check (tier in ('platinum', 'gold', 'silver', 'basic')),
    -- Who asked (`device:<uuid>` or `token:<name>`) and the Idempotency-Key they sent: a retry
    -- with the same key gets this row back instead of a second hold.
    created_by       text        not null,
    idempotency_key  text,
    request_digest   bytea       not null,
    hold_expires_at  timestamptz not null,
    -- Fencing: the lock token the hold was taken under (Redlock), if any.
    lock_token       text,
    payment_ref      text,
    -- A payment that arrived for a hold that had lapsed: never given the slot, refunded instead.
    refund_due       boolean     not null default false,
    created_at       timestamptz not null default now(),
    confirmed_at     timestamptz,
    ended_at         timestamptz,
    -- Set once the side effects of an ended hold (calendar release, lock release, waitlist
    -- promotion) are done; a row ended but not released is picked up again by the sweeper.
    released_at      timestamptz,
    foreign key (branch_id, asset_id) references assets (branch_id, id),
    unique (created_by, idempotency_key),
    constraint bookings_no_overlap exclude using gist (
        branch_id with =, asset_id with =, period with &&
    ) where (state in ('HELD', 'CONFIRMED'))
);

-- The sweeper's queue: due holds, oldest first.
create index bookings_due_holds_idx on bookings (hold_expires_at) where state = 'HELD';
-- Ended bookings whose side effects are still to do.
create index bookings_unreleased_idx on bookings (ended_at)
    where state in ('EXPIRED', 'CANCELLED') and released_at is null;

-- Availability by SKU scans the assets of a SKU.
create index assets_sku_idx on assets (sku);

-- Payment gateway webhooks already handled, by the gateway's event id: a redelivery is answered
-- from here and changes nothing.
create table payment_webhooks (
    event_id    text        primary key,
    booking_id  uuid,
    kind        text        not null,
    outcome     text        not null,
    received_at timestamptz not null default now()
);

-- Waitlists per SKU and day. PostgreSQL holds the entries and who was offered what; Redis's
-- sorted set `waitlist:<SKU>:<Date>` mirrors the order (tier, then arrival) for fast reads.
-- An entry is promoted at most once: WAITING → OFFERED in the transaction that releases the
-- lapsed or cancelled booking, with the offer (a hold of its own window) in the same commit.
create table waitlist_entries (
    id             uuid        primary key,
    sku            text        not null,
    day            date        not null,
    customer       text        not null,
    tier           text        not null check (tier in ('platinum', 'gold', 'silver', 'basic')),
    tier_rank      smallint    not null check (tier_rank between 0 and 3),
    created_by     text        not null,
    created_at     timestamptz not null default clock_timestamp(),
    state          text        not null default 'WAITING' check (state in ('WAITING', 'OFFERED')),
    offer_booking  uuid        unique references bookings (id),
    offered_at     timestamptz
);
create index waitlist_head_idx on waitlist_entries (sku, day, tier_rank, created_at)
    where state = 'WAITING';
