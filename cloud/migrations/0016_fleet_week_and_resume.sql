-- The fleet page's charts and a rollout's history (issue 20).

-- The fleet's online/offline count, one row an hour: the worst sample of that hour (the most
-- devices offline), taken by every replica's fleet task every few minutes, so an outage of a
-- quarter of an hour still shows on the week's chart. Kept 8 days (see fleet::COUNTS_RETENTION).
create table fleet_counts (
    hour    timestamptz primary key,
    devices integer     not null check (devices >= 0),
    online  integer     not null check (online >= 0),
    offline integer     not null check (offline >= 0)
);

-- The age of a box's oldest change not yet in the cloud, with each heartbeat's other figures,
-- for the device page's chart. Rows from before this migration have none.
alter table heartbeat_history add column backlog_oldest_secs bigint;

-- What happened to a rollout and who did it: started, widened, a wave opened, halted (with the
-- threshold's reason), completed, and an operator's pause, resume (a halted rollout only with a
-- reason) and abort. `by` is the operator's token name, `cli:<user>` from the command line, or
-- `rollout` for what it did by itself. A halted rollout is no longer terminal: an operator may
-- resume it once the cause is fixed, which gives its failed devices another try.
create table rollout_events (
    id         bigserial   primary key,
    rollout_id uuid        not null references rollouts (id),
    at         timestamptz not null default now(),
    action     text        not null,
    by         text        not null,
    reason     text
);
create index rollout_events_rollout_idx on rollout_events (rollout_id, id);
