package console

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pageSize is the rows on one page of a list.
const pageSize = 50

// listStatement is one page of a list: pageSize+1 rows, so that the caller
// knows whether there is a next page.
type listStatement struct {
	sql  string
	args []any
	// inOrder: run it with inOrderOnly, so that the planner takes the index
	// that gives the statement's order, the only plan without a sort.
	inOrder bool
}

// inOrderOnly leaves a filtered list one plan that needs no sort: the scan of
// the index whose leading columns are the filter's and which then holds the
// list's order, stopping at the page. Without it the planner may prefer
// another index that gives the order with a filter (the day index, or the
// status index for a product and a status), estimating from the filter's
// share of the table that a page comes after a few hundred rows, which is
// wrong when the matching rows are old or the pair is rare: every row
// newer than them is read. A sort over the filter's rows is no better.
const inOrderOnly = `SELECT set_config('enable_sort', 'off', true), set_config('enable_incremental_sort', 'off', true)`

// queryList runs a list's statement and reads its rows with scan.
func queryList[T any](ctx context.Context, db *pgxpool.Pool, st listStatement, scan func(pgx.Rows) (T, error)) (T, error) {
	if !st.inOrder {
		rows, err := db.Query(ctx, st.sql, st.args...)
		if err != nil {
			var zero T
			return zero, err
		}
		return scan(rows)
	}
	var out T
	// The settings are local to this transaction.
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, inOrderOnly); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, st.sql, st.args...)
		if err != nil {
			return err
		}
		out, err = scan(rows)
		return err
	})
	return out, err
}

// cutPage cuts a list read one row past its page, so that its reader knows
// whether another page follows, to the page; last is the page's last row
// when one follows (the next page's cursor), nil on the last page.
func cutPage[T any](list []T, size int) (page []T, last *T) {
	if len(list) <= size {
		return list, nil
	}
	return list[:size], &list[size-1]
}
