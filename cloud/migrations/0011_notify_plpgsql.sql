-- The two helpers of 0008 as PL/pgSQL. As `language sql` functions that cannot be inlined (one
-- reads a subquery, the other inserts), PostgreSQL 15 parsed and planned their bodies again on
-- every call; the booking trigger calls both for every hold, and that was a sixth of
-- PostgreSQL's time per hold (docs/benchmarks.md). PL/pgSQL keeps each statement's plan for the
-- session. What they return and write is unchanged.

create or replace function notification_phone(raw text) returns text language plpgsql immutable as $$
declare
    d text := regexp_replace(coalesce(raw, ''), '[^0-9]', '', 'g');
begin
    return case
        when length(d) < 8 or length(d) > 15 then null
        when d like '0%' then '62' || substr(d, 2)
        else d
    end;
end
$$;

create or replace function schedule_notification(
    p_cause text, p_kind text, p_branch text, p_phone text, p_params jsonb, p_due timestamptz
) returns void language plpgsql as $$
begin
    insert into notifications (cause, kind, branch_id, phone, params, due_at, state, reason, finished_at)
    values (p_cause, p_kind, p_branch, p_phone, p_params, p_due,
            case when p_phone is null then 'SKIPPED' else 'SCHEDULED' end,
            case when p_phone is null then 'the customer has no usable phone number' end,
            case when p_phone is null then now() end)
    on conflict (cause, kind) do nothing;
end
$$;

-- The booking trigger of 0008 with the insert written out instead of a call to
-- schedule_notification: every hold runs it, and the call was one more statement (a `PERFORM`
-- and the function's own executor) for each. Same rows, same skip rule.
create or replace function notify_booking_change() returns trigger language plpgsql as $$
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
    insert into notifications (cause, kind, branch_id, phone, params, due_at, state, reason, finished_at)
    values ('booking:' || new.id, v_kind, new.branch_id, v_phone,
            jsonb_build_object('booking_id', new.id, 'asset_id', new.asset_id, 'sku', new.sku,
                               'first_day', new.first_day, 'last_day', new.last_day,
                               'hold_expires_at', new.hold_expires_at),
            now(),
            case when v_phone is null then 'SKIPPED' else 'SCHEDULED' end,
            case when v_phone is null then 'the customer has no usable phone number' end,
            case when v_phone is null then now() end)
    on conflict (cause, kind) do nothing;
    return null;
end
$$;
