-- Stock that matches the shelf (issue 21 item 4): an ADJUSTMENT says why (COUNT, DAMAGE,
-- RETURN_TO_SUPPLIER, WORK_ORDER_RETURN), may carry the storekeeper's note, and names the box's
-- cycle count that applied it. NULL on every other movement; the level is still the sum of
-- the deltas (stock_levels), so nothing else changes.
alter table stock_movements
    add column adjustment text
        check (adjustment in ('COUNT', 'DAMAGE', 'RETURN_TO_SUPPLIER', 'WORK_ORDER_RETURN')),
    add column note text check (char_length(note) <= 500),
    add column count_id text;

