package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"syscall"

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/store"
)

// serveConsole serves the read-only console until ctx ends. It needs only
// SELECT (README, "The console"): run it as the cmdtrack_reader role.
func serveConsole(ctx context.Context, cfg *Config, st *store.Store, log *slog.Logger) error {
	ccfg := cfg.console()
	h, err := console.NewHandler(st.Pool(), ccfg, log)
	if err != nil {
		return err
	}
	srv, err := console.Listen(ccfg, h, log)
	if err != nil {
		// An address in use may free up (systemd retries, exit 1); a
		// malformed address or a bad certificate will not (exit 2).
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "listen" && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return err
		}
		return usageError{err}
	}
	log.Info("console serving", "addr", srv.Addr(), "tls", ccfg.CertFile != "",
		"basic_auth", ccfg.User != "", "token", ccfg.Token != "", "client_certs", ccfg.ClientCAFile != "")
	if err := srv.Serve(ctx, cfg.ShutdownGrace); err != nil {
		return err
	}
	log.Info("console stopped")
	return nil
}
