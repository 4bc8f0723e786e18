-- Customers and vehicles as records (issue 21 item 5): a work order names the vehicle and the
-- customer records (`record_fields`, entities 'vehicle' and 'customer') it is for. Null on work
-- orders from boxes that did not send them.
alter table work_orders add column vehicle_id text, add column customer_id text;

create index work_orders_by_vehicle on work_orders (branch_id, vehicle_id) where vehicle_id is not null;

-- The service reminder is per vehicle: a newer invoice's reminder replaces the pending one of an
-- older invoice for the same vehicle. The vehicle is in the reminder's params; this finds them.
create index notifications_reminder_vehicle on notifications (branch_id, (params ->> 'vehicle_id'))
    where kind = 'service_reminder' and params ? 'vehicle_id';
