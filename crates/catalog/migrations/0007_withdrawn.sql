-- A seller may take an available listing off sale: `withdrawn`, for good (POST
-- /api/sneakers/{id}/withdraw, announced as sneaker.updated).
ALTER TABLE sneakers DROP CONSTRAINT sneakers_status_check;
ALTER TABLE sneakers ADD CONSTRAINT sneakers_status_check
    CHECK (status IN ('available', 'reserved', 'sold', 'expired', 'withdrawn'));
