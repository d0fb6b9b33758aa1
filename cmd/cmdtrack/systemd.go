package main

import (
	"context"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// systemd's notify protocol; all of it is a no-op unless NOTIFY_SOCKET is set
// (Type=notify in deploy/systemd/cmdtrack.service).
const (
	sdReady    = sd.SdNotifyReady
	sdStopping = sd.SdNotifyStopping
)

func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("systemd notify failed", "state", state, "err", err)
	}
}

// watchdog pings systemd at a third of WatchdogSec for as long as live says
// the worker is not wedged; if it is, the pings stop and systemd restarts
// the service. It returns when ctx ends.
func watchdog(ctx context.Context, live func(context.Context) error, log *slog.Logger) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := live(ctx); err != nil {
				log.Error("withholding systemd watchdog ping", "err", err)
				continue
			}
			notify(log, sd.SdNotifyWatchdog)
		}
	}
}
