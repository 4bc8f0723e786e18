-- A vehicle's history in insertion order. 0013 declared this index newest first
-- (created_at DESC, id DESC), so every new work order went in at the front of its vehicle's
-- entries. At the front of the index (one busy vehicle, the benchmark's plate, a fleet car)
-- SQLite cannot append a page there: it rebalanced three leaves and their parent every two or
-- three writes, 1.2 more encrypted pages per commit on average. In ascending order a new work
-- order goes in after its vehicle's older ones, and the same query reads the index backwards
-- for "newest first" without a sort. Same name and columns: builds that know only 0013 use it
-- the same way.

DROP INDEX work_orders_by_vehicle;
CREATE INDEX work_orders_by_vehicle ON work_orders (vehicle_id, created_at, id)
    WHERE vehicle_id IS NOT NULL;
