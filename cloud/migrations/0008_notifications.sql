-- Customer notifications (issue 8): the schedule the publisher sends to RabbitMQ and the
-- worker's record of what the messaging gateway accepted. A row is written in the same
-- transaction as what causes it (an invoice projected at ingest, a booking changing state), so a
-- crash either keeps both or neither; (cause, kind) is unique, so a re-ingest, a retried
-- transaction or a second path to the same state schedules once.

create table notifications (
    id                 uuid        primary key default gen_random_uuid(),
    -- What caused it: 'invoice:<branch>/<invoice id>' or 'booking:<booking uuid>'.
    cause              text        not null,
    kind               text        not null check (kind in (
                           'service_reminder', 'booking_held', 'booking_confirmed',
                           'booking_expired', 'waitlist_offer')),
    branch_id          text        not null,
    -- The recipient in international form, digits only (62…); null: nobody to send to.
    phone              text,
    -- The template's parameters (names, plate, days): personal data, never logged.
    params             jsonb       not null,
    due_at             timestamptz not null,
    -- SCHEDULED: waiting in PostgreSQL until due. PUBLISHED: a message is in RabbitMQ (first
    -- try or a retry waiting out its backoff). SENDING: a worker claimed it and may be talking
    -- to the gateway. SENT, DEAD (retries exhausted or refused for good), SKIPPED (no phone,
    -- or superseded before it was sent): final.
    state              text        not null default 'SCHEDULED' check (state in (
                           'SCHEDULED', 'PUBLISHED', 'SENDING', 'SENT', 'DEAD', 'SKIPPED')),
    attempts           integer     not null default 0,
    -- Why it was skipped or died, or the last failed attempt's error.
    reason             text,
    gateway_message_id text,
    created_at         timestamptz not null default now(),
    published_at       timestamptz,
    sending_at         timestamptz,
    finished_at        timestamptz,
    unique (cause, kind)
);

-- The publisher's queue: due rows, oldest first.
create index notifications_due_idx on notifications (due_at) where state = 'SCHEDULED';

-- A phone number as WhatsApp wants it: digits only, country code first. Numbers written the
-- Indonesian way (08…) get 62 in front of the national number; anything shorter than 8 or
-- longer than 15 digits (E.164's limit) is no number at all.
create function notification_phone(raw text) returns text language sql immutable as $$
    select case
        when length(d) < 8 or length(d) > 15 then null
        when d like '0%' then '62' || substr(d, 2)
        else d
    end
    from (select regexp_replace(coalesce(raw, ''), '[^0-9]', '', 'g') as d) as digits
$$;

-- Schedules one notification now, skipped with a reason when there is no phone; a second one
-- for the same (cause, kind) is ignored.
create function schedule_notification(
    p_cause text, p_kind text, p_branch text, p_phone text, p_params jsonb, p_due timestamptz
) returns void language sql as $$
    insert into notifications (cause, kind, branch_id, phone, params, due_at, state, reason, finished_at)
    values (p_cause, p_kind, p_branch, p_phone, p_params, p_due,
            case when p_phone is null then 'SKIPPED' else 'SCHEDULED' end,
            case when p_phone is null then 'the customer has no usable phone number' end,
            case when p_phone is null then now() end)
    on conflict (cause, kind) do nothing
$$;

-- Booking events notify the customer, whichever code path changed the row (the HTTP API, an
-- offline booking decided at ingest, the sweeper, the booking path expiring a lapsed hold, a
-- waitlist promotion): a trigger is the one place all of them pass, inside their transaction.
-- The phone is the customer record's (`record_fields`, field `phone`) for the booking's
-- customer id in its branch.
create function notify_booking_change() returns trigger language plpgsql as $$
declare
    v_kind  text;
    v_phone text;
begin
    if tg_op = 'INSERT' then
        if new.state <> 'HELD' then
            return null;
        end if;
        v_kind := case when new.idempotency_key like 'waitlist:%' then 'waitlist_offer' else 'booking_held' end;
    elsif new.state is distinct from old.state then
        v_kind := case new.state
            when 'CONFIRMED' then 'booking_confirmed'
            when 'EXPIRED' then 'booking_expired'
        end;
        if v_kind is null then
            return null;
        end if;
        -- A hold message not yet sent is out of date once the booking is decided.
        update notifications
        set state = 'SKIPPED', reason = 'superseded by ' || v_kind, finished_at = now()
        where cause = 'booking:' || new.id and kind in ('booking_held', 'waitlist_offer')
          and state = 'SCHEDULED';
    else
        return null;
    end if;
    select notification_phone(value #>> '{}') into v_phone
    from record_fields
    where branch_id = new.branch_id and entity = 'customer' and entity_id = new.customer
      and field = 'phone';
    perform schedule_notification(
        'booking:' || new.id, v_kind, new.branch_id, v_phone,
        jsonb_build_object('booking_id', new.id, 'asset_id', new.asset_id, 'sku', new.sku,
                           'first_day', new.first_day, 'last_day', new.last_day,
                           'hold_expires_at', new.hold_expires_at),
        now());
    return null;
end
$$;

create trigger bookings_notify after insert or update of state on bookings
    for each row execute function notify_booking_change();
