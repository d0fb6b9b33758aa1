package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lease is an advisory lock (named as LockName names them) held for as long
// as its holder lives, on a connection of its own, so that one replica at a
// time does a job continuously rather than per run: exporting what every
// replica would read the same from the database. The lock is released when
// Release is called, or by PostgreSQL when the session ends (the process
// died, the connection broke), and another replica's Keep then takes it.
type Lease struct {
	s    *Store
	name string

	mu   sync.Mutex
	conn *pgx.Conn // nil: not held
	held atomic.Bool
}

// Lease returns the lease of lock name, not yet taken.
func (s *Store) Lease(name string) *Lease { return &Lease{s: s, name: name} }

// lockKey is the advisory lock's key for a name, per schema (as TryLock's).
const lockKey = `hashtextextended($1 || ':' || coalesce(current_schema(), ''), 0)`

// Keep takes the lock if it is free, or checks that the session holding it
// is still there, and reports whether it is held now. An error (the
// database away) leaves it not held.
func (l *Lease) Keep(ctx context.Context) (bool, error) {
	held, err := l.keep(ctx)
	return held, interpretError(err)
}

func (l *Lease) keep(ctx context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		// The session alive is the lock held.
		err := l.conn.Ping(ctx)
		if err == nil {
			return true, nil
		}
		l.closeLocked(ctx, false)
		return false, fmt.Errorf("lease %s: the session holding it is gone: %w", l.name, err)
	}
	conn, err := pgx.ConnectConfig(ctx, l.s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", l.name, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+lockKey+`)`, l.name).Scan(&ok); err != nil || !ok {
		l.conn = conn
		l.closeLocked(ctx, false)
		if err != nil {
			return false, fmt.Errorf("lease %s: %w", l.name, err)
		}
		return false, nil
	}
	l.conn = conn
	l.held.Store(true)
	return true, nil
}

// Held reports whether the last Keep found the lock held. Quick: it asks
// nothing of the database, and does not wait for a Keep in progress.
func (l *Lease) Held() bool { return l.held.Load() }

// Release gives the lock up, at once, for another replica to take.
func (l *Lease) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeLocked(context.Background(), true)
}

func (l *Lease) closeLocked(ctx context.Context, unlock bool) {
	if l.conn == nil {
		return
	}
	l.held.Store(false)
	// Closing must happen whether ctx has ended or not.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// The server releases a closed session's locks only once its backend
	// has exited; unlocking first frees the lock for the next taker now.
	if unlock {
		_, _ = l.conn.Exec(ctx, `SELECT pg_advisory_unlock(`+lockKey+`)`, l.name)
	}
	_ = l.conn.Close(ctx)
	l.conn = nil
}
