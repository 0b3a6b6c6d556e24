-- Replica inserts no longer notify from inside the consumer's transaction: a NOTIFY makes
-- PostgreSQL serialise the commits of every notifying transaction in the cluster on one
-- lock, held through the commit's WAL flush. Whoever writes the replica announces it after
-- the commit instead (sneakerstop_messaging::replica, ReplicaWait::inserted).
DROP TRIGGER IF EXISTS sneakers_replica_notify ON sneakers;
DROP FUNCTION IF EXISTS replica_notify();
