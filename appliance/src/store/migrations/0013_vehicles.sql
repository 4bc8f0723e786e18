-- Customers and vehicles as records (issue 21 item 5): a work order names the vehicle and the
-- customer records (`record_fields`) it is for. Nullable: work orders from before have none.
-- Additive, so builds that do not know it still read the store.

ALTER TABLE work_orders ADD COLUMN vehicle_id TEXT;
ALTER TABLE work_orders ADD COLUMN customer_id TEXT;

-- A vehicle's history, newest first.
CREATE INDEX work_orders_by_vehicle ON work_orders (vehicle_id, created_at DESC, id DESC)
    WHERE vehicle_id IS NOT NULL;

-- Finding a vehicle by its (normalised) plate and a customer by phone: the JSON text of the
-- value is compared as stored.
CREATE INDEX record_fields_by_value ON record_fields (entity, field, value);
