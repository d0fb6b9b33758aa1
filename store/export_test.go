package store

// QueueWrites is queueWrites, for tests that hold a transaction open.
var QueueWrites = queueWrites
