package console

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// rowCounter keeps the rows each statement returned.
type rowCounter struct {
	mu   sync.Mutex
	rows map[string]int64
}

type sqlKey struct{}

func (c *rowCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, sqlKey{}, d.SQL)
}

func (c *rowCounter) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	sql, _ := ctx.Value(sqlKey{}).(string)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rows[sql] += d.CommandTag.RowsAffected()
}

// The overview reads the hourly rollups (migrations 011 and 020) summed by
// product and status in SQL: the rows it reads follow the products and
// statuses, not the week's hours. At 10 M messages it read the week's
// 12,000 cells of each hour and summed them in Go, most of the page's time
// (docs/benchmarks.md, "Device messages at 10 M"). The sums are the same.
func TestOverviewReadsTheRollupsSummed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _, url := testenv.Schema(t)
	now := time.Now().UTC()
	hour := now.Truncate(time.Hour)
	// Every hour of the last 8 days: 2 products, 3 statuses, n = 1 in the
	// last 24 hours and 10 before.
	for _, q := range []string{
		`INSERT INTO command_outcomes_hourly (hour, product_id, status, commands)`,
		`INSERT INTO message_outcomes_hourly (hour, product_id, status, messages)`,
	} {
		_, err := st.Pool().Exec(ctx, q+`
			SELECT $1::timestamptz - h * interval '1 hour', p, s, CASE WHEN h < 24 THEN 1 ELSE 10 END
			FROM generate_series(0, 191) h, unnest(ARRAY['prod-a', 'prod-b']) p,
				unnest(ARRAY['FAILED', 'TIMEOUT', 'PENDING']) s`, hour)
		require.NoError(t, err)
	}

	rc := &rowCounter{rows: map[string]int64{}}
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	cfg.ConnConfig.Tracer = rc
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	o, err := loadOverview(ctx, db, now)
	require.NoError(t, err)

	read := 0
	for sql, n := range rc.rows {
		if strings.Contains(sql, "outcomes_hourly") {
			read++
			require.LessOrEqual(t, n, int64(2*3), "rows read by\n%s", sql)
		}
	}
	require.Equal(t, 2, read, "statements reading the rollups: %v", rc.rows)

	require.Len(t, o.Windows, 2)
	// 24 hours: hours 0-23, one each; 7 days: also hours 24-167, ten each.
	for i, per := range []int64{24, 24 + 144*10} {
		w := o.Windows[i]
		require.Equal(t, 2*3*per, w.Total.Commands, w.Name)
		require.Equal(t, 2*3*per, w.Messages.Total.Messages, w.Name)
		require.Len(t, w.Products, 2, w.Name)
		require.Equal(t, "prod-a", w.Products[0].ProductID)
		require.Equal(t, per, w.Products[1].Failed, w.Name)
		require.Len(t, w.Messages.Products, 2, w.Name)
		require.Equal(t, per, w.Messages.Products[1].Pending, w.Name)
	}
}
