package store

import "context"

// WithMoveBatches makes MaintainPartitions, under the context it returns,
// move pages of the default partition per batch and call after once each
// batch has committed: an error from it stops the run there, as a crash
// would.
func WithMoveBatches(ctx context.Context, pages int, after func(batch int) error) context.Context {
	return context.WithValue(ctx, moveTuningKey{}, moveTuning{pages: pages, afterBatch: after})
}
