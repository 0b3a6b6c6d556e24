-- Products can be corrected by an admin: each correction is a new version (product.updated),
-- applied by the market's replica by version, as listings are.
ALTER TABLE products ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version >= 1);
ALTER TABLE products ADD COLUMN updated_at timestamptz;
UPDATE products SET updated_at = created_at;
ALTER TABLE products ALTER COLUMN updated_at SET NOT NULL, ALTER COLUMN updated_at SET DEFAULT now();
