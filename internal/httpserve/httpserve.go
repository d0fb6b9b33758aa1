// Package httpserve runs an http.Server until its context ends and then
// stops it gracefully: the one serve loop of cmdtrack's HTTP servers (the
// console, the HTTP push receiver and the ops endpoints).
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Serve answers requests on ln with srv until ctx ends or ln fails, then
// stops: it takes no new connection and lets the requests in hand finish
// for up to grace, after which it closes their connections. It serves
// HTTPS, with srv.TLSConfig's certificates, when srv.TLSConfig is set.
//
// ctx says when to stop. Its end is the asked-for stop, not a failure, and
// it does not reach the requests: those in hand when it ends still get
// their grace (the grace's deadline is of its own, on ctx's values).
//
// Serve returns nil when it stopped because ctx ended, including when
// requests had to be cut at the grace (their clients see a closed
// connection). It returns ln's error, naming the server as name, when ln
// failed; the requests in hand then get their grace too. Either way Serve
// returns only once srv's serve goroutine has: a handler that ignores its
// request's context may still run after a cut, nothing else of srv does.
func Serve(ctx context.Context, name string, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	var err error
	served := false
	select {
	case err = <-errc:
		served = true
	case <-ctx.Done():
	}
	// ctx may have ended already: the shutdown has a deadline of its own.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if srv.Shutdown(sctx) != nil {
		_ = srv.Close()
	}
	if !served {
		err = <-errc
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s on %s: %w", name, ln.Addr(), err)
}
