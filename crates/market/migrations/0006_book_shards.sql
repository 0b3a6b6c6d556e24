-- Who owns which books (docs/market.md, "Who owns a book"). A book belongs to the shard of
-- its product (the product id's last byte modulo the number of shards, 16); each shard is
-- owned by one instance at a time, which holds its books in memory and is their only
-- writer. An owner renews its lease every 250 ms; a lease not renewed for 3 s may be taken
-- by another instance, and every claim increments the shard's epoch. Every batch a writer
-- commits first reads its shards' rows FOR SHARE with the epoch it claimed them at: a
-- writer that lost a shard (its lease lapsed and another took it) can never write that
-- shard's books again, and a claim waits for a batch in flight to end.
CREATE TABLE book_shards (
    shard       smallint    PRIMARY KEY,
    epoch       bigint      NOT NULL DEFAULT 0,
    owner       uuid,
    address     text,
    lease_until timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO book_shards (shard) SELECT generate_series(0, 15);

-- The instances that share the books, each seen within its lease: how many there are
-- decides each one's fair share of the shards.
CREATE TABLE book_members (
    member     uuid        PRIMARY KEY,
    seen_until timestamptz NOT NULL
);
