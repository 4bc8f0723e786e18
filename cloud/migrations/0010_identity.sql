-- Identity checks before a first rental (issue 8): the customer's KTP read by the provider's OCR
-- and their selfie matched against it with liveness. Only the outcome is kept: never the images,
-- never the NIK in clear (a keyed hash to recognise the same NIK again, and its last four digits
-- for staff to compare with the card in front of them).

-- The customer's standing: one row per customer reference (the `customer` of bookings). A
-- verified customer stays verified; a later failed attempt is only logged.
create table customer_identities (
    customer      text        primary key,
    state         text        not null check (state in ('VERIFIED', 'REJECTED')),
    reason        text,
    nik_hmac      bytea,
    nik_last4     text        check (nik_last4 ~ '^[0-9]{4}$'),
    provider_ref  text,
    checked_by    text        not null,
    verified_at   timestamptz,
    checked_at    timestamptz not null default now()
);

-- Every attempt, for the audit trail (who asked, what the provider said).
create table identity_checks (
    id            bigserial   primary key,
    customer      text        not null,
    outcome       text        not null check (outcome in ('VERIFIED', 'REJECTED')),
    reason        text,
    provider_ref  text,
    checked_by    text        not null,
    at            timestamptz not null default now()
);
create index identity_checks_customer on identity_checks (customer, at);
