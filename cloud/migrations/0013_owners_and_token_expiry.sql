-- Issue 15, items 6 and 7.

-- API tokens an operator can manage: an optional expiry, when it was last used (written at most
-- once per replica per token cache period), and names unique among live tokens, so
-- `api-token revoke NAME` means one token. Live duplicates from before get their id appended.
alter table api_tokens
    add column expires_at   timestamptz,
    add column last_used_at timestamptz;
update api_tokens t set name = t.name || '#' || t.id
 where t.revoked_at is null
   and exists (select 1 from api_tokens o
                where o.name = t.name and o.revoked_at is null and o.id < t.id);
create unique index api_tokens_live_name on api_tokens (name) where revoked_at is null;

-- The customers of a portal (an API token with role portal, by name): the record an identity
-- check of that portal attaches to, as a branch's checks attach to its shared customer records.
create table portal_customers (
    portal     text        not null,
    id         text        not null check (length(id) between 1 and 200),
    name       text        not null check (length(name) between 1 and 120),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (portal, id)
);

-- An identity check belongs to the customer record of its owner: `branch:<id>` or
-- `portal:<token name>`. Existing rows get the owner their checker stands for; a check made by
-- an operator token before owners existed belongs to nobody ('unowned') and clears no booking:
-- the customer is checked again by their branch or portal.
alter table customer_identities add column owner text;
alter table identity_checks add column owner text;
update customer_identities c set owner = coalesce(
    (select 'branch:' || d.branch_id from devices d where c.checked_by = 'device:' || d.id::text),
    (select 'portal:' || t.name from api_tokens t
      where c.checked_by = 'token:' || t.name and t.role = 'portal' limit 1),
    'unowned');
update identity_checks c set owner = coalesce(
    (select 'branch:' || d.branch_id from devices d where c.checked_by = 'device:' || d.id::text),
    (select 'portal:' || t.name from api_tokens t
      where c.checked_by = 'token:' || t.name and t.role = 'portal' limit 1),
    'unowned');
alter table customer_identities alter column owner set not null;
alter table identity_checks alter column owner set not null;
alter table customer_identities drop constraint customer_identities_pkey;
alter table customer_identities add primary key (owner, customer);
drop index identity_checks_customer;
create index identity_checks_customer on identity_checks (owner, customer, at);
