-- Replica inserts and book changes no longer notify from inside the writing transaction: a
-- NOTIFY makes PostgreSQL serialise the commits of every notifying transaction in the
-- cluster on one lock, held through the commit's WAL flush, so the books' writer and the
-- consumers waited on each other's flushes. Whoever writes announces after the commit instead
-- (sneakerstop_messaging::announce; live::book_changed, ReplicaWait::inserted).
DROP TRIGGER IF EXISTS products_replica_notify ON products;
DROP TRIGGER IF EXISTS payment_methods_replica_notify ON payment_methods;
DROP FUNCTION IF EXISTS replica_notify();
DROP TRIGGER IF EXISTS asks_book_notify ON asks;
DROP TRIGGER IF EXISTS bids_book_notify ON bids;
DROP TRIGGER IF EXISTS sales_book_notify ON sales;
DROP FUNCTION IF EXISTS book_notify();
