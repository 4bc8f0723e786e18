-- Issue 21, item 2: voids. A payment taken in error is taken back at the branch, the day it was
-- received, with a manager's approval (`payment:voided`). The payment's row stays (money the
-- cloud recorded is append-only); its void is a row here, and every read of money received
-- leaves voided payments out. Applied idempotently: a void sent twice is one row.
create table payment_voids (
    branch_id  text        not null,
    payment_id text        not null,
    invoice_id text        not null,
    manager_id text        not null,
    reason     text        not null,
    voided_at  timestamptz not null,
    device_id  uuid        not null,
    seq        bigint      not null,
    primary key (branch_id, payment_id),
    foreign key (branch_id, payment_id) references payments (branch_id, id)
);
