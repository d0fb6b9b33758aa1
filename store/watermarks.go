package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// QueueWatermarks returns when each queue's messages were last settled, as
// SaveQueueWatermarks saved it. ctx bounds the query.
func (s *Store) QueueWatermarks(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.pool.Query(ctx, `SELECT queue, consumed_at FROM queue_watermarks`)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read queue watermarks: %w", err))
	}
	out := map[string]time.Time{}
	var q string
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&q, &at}, func() error {
		out[q] = at
		return nil
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("read queue watermarks: %w", err))
	}
	return out, nil
}

// SaveQueueWatermarks records when each queue's messages were last settled;
// an earlier time never replaces a later one (another replica's). ctx bounds
// the statement.
func (s *Store) SaveQueueWatermarks(ctx context.Context, marks map[string]time.Time) error {
	if len(marks) == 0 {
		return nil
	}
	queues := make([]string, 0, len(marks))
	times := make([]time.Time, 0, len(marks))
	for q, at := range marks {
		queues, times = append(queues, q), append(times, at)
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO queue_watermarks (queue, consumed_at)
		SELECT * FROM unnest($1::text[], $2::timestamptz[]) ORDER BY 1
		ON CONFLICT (queue) DO UPDATE SET consumed_at = greatest(queue_watermarks.consumed_at, EXCLUDED.consumed_at)`,
		queues, times)
	if err != nil {
		return interpretError(fmt.Errorf("save queue watermarks: %w", err))
	}
	return nil
}
