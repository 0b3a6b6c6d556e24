-- The outbox no longer notifies from inside the writing transaction. A NOTIFY makes
-- PostgreSQL serialise the commit of every notifying transaction in the cluster on one lock,
-- held through the commit's WAL flush, so outbox writes could not share WAL flushes (group
-- commit): pgbench measured a sixth of the same inserts' rate without the trigger. The
-- process that committed announces it instead, after the commit (sneakerstop_messaging::
-- announce); the relay still polls as the backstop.
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
