package store

// LockName is the name of the advisory lock (TryLock) under which one
// replica at a time runs the background job called job ("upkeep",
// "reconcile"): one scheme, so that an operator looking at pg_locks, or a
// new job, finds them alike.
func LockName(job string) string { return "cmdtrack." + job }
