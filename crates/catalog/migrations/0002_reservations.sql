-- Which order holds a reserved or sold pair, so only that order's cancellation releases it.
ALTER TABLE sneakers ADD COLUMN held_by_order uuid;
