-- Fleet: releases (signed manifests and their artifacts), channels, rollouts in waves, device
-- heartbeats (latest and a bounded history) and the fleet page's sessions.

-- Which channel a device follows; every device starts on 'stable'.
alter table devices add column channel text not null default 'stable';

-- A release: the artifact itself (stored out of line and uncompressed, so a Range request reads
-- only the chunks it needs) and the signed manifest exactly as served.
create table releases (
    version    text        primary key,
    channel    text        not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    sha256     text        not null,
    size       bigint      not null check (size >= 0),
    manifest   text        not null,
    signature  text        not null,
    key_id     text        not null,
    artifact   bytea       not null
);
alter table releases alter column artifact set storage external;

-- Which share of a fleet a device falls in for one rollout: 0..9999 from SHA-256 of the rollout
-- and device ids, so each rollout picks its early devices afresh, deterministically.
create function fleet_bucket(rollout uuid, device uuid) returns integer
language sql immutable strict as $$
    select ((get_byte(h, 0)::bigint << 24 | get_byte(h, 1)::bigint << 16
             | get_byte(h, 2)::bigint << 8 | get_byte(h, 3)::bigint) % 10000)::integer
    from (select sha256(convert_to(rollout::text || '/' || device::text, 'UTF8')) as h) as d
$$;

create table rollouts (
    id                    uuid        primary key default gen_random_uuid(),
    channel               text        not null,
    version               text        not null references releases (version),
    -- running: waves advance; paused: nobody new is offered the release; halted: failures passed
    -- the threshold (terminal, like aborted); completed: every wave reached its success share.
    state                 text        not null check (state in ('running', 'paused', 'halted', 'aborted', 'completed')),
    -- Percentages of the channel's fleet, ascending; wave 0 is the canaries.
    waves                 integer[]   not null,
    current_wave          integer     not null default 0,
    -- Devices named as the first group (wave 0).
    canaries              uuid[]      not null default '{}',
    success_threshold_pct integer     not null check (success_threshold_pct between 1 and 100),
    failure_threshold_pct integer     not null check (failure_threshold_pct between 1 and 100),
    reason                text,
    created_by            text        not null,
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now()
);
-- One live rollout per channel.
create unique index rollouts_one_live_per_channel on rollouts (channel) where state in ('running', 'paused');

-- Each device's part in a rollout. wave: 0 canary, i the first wave (1-based) whose percentage
-- covers its bucket, null when the rollout's percentages do not reach it.
create table rollout_devices (
    rollout_id uuid        not null references rollouts (id),
    device_id  uuid        not null references devices (id),
    bucket     integer     not null,
    wave       integer,
    -- pending: not offered yet; offered: told to install; updating; succeeded; failed.
    state      text        not null default 'pending' check (state in ('pending', 'offered', 'updating', 'succeeded', 'failed')),
    reason     text,
    updated_at timestamptz not null default now(),
    primary key (rollout_id, device_id)
);
create index rollout_devices_device_idx on rollout_devices (device_id);

-- The latest heartbeat of each device.
create table device_heartbeats (
    device_id    uuid        primary key references devices (id),
    received_at  timestamptz not null default now(),
    version      text        not null,
    update_state text        not null,
    healthy      boolean     not null,
    backlog      bigint      not null,
    backlog_bytes bigint     not null,
    backlog_oldest_secs bigint,
    body         jsonb       not null
);

-- Every heartbeat's figures, kept for a day and a bit (see fleet::HISTORY_RETENTION).
create table heartbeat_history (
    device_id    uuid        not null references devices (id),
    received_at  timestamptz not null default now(),
    version      text        not null,
    update_state text        not null,
    healthy      boolean     not null,
    backlog      bigint      not null,
    backlog_bytes bigint     not null,
    skew_ms      bigint      not null,
    disk_free_bytes bigint,
    mem_available_bytes bigint
);
create index heartbeat_history_device_idx on heartbeat_history (device_id, received_at);
create index heartbeat_history_received_idx on heartbeat_history (received_at);

-- Fleet page logins: a cookie's secret (hashed) for an operator token, or a one-time login
-- link's ticket (hashed) that is traded for such a session.
create table fleet_sessions (
    secret_hash bytea       primary key,
    token_id    bigint      not null references api_tokens (id),
    ticket      boolean     not null,
    expires_at  timestamptz not null
);
