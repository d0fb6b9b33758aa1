package main_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// logStoppedCleanly is the worker's last line after a drain that settled
// everything (worker.go; the deploy tests match it too).
const logStoppedCleanly = "cmdtrack stopped cleanly"

// stopCleanly stops the workers as systemd does, SIGTERM to all at once so
// that replicas drain side by side, and requires of each a clean stop: exit
// status 0, and its line saying so. The bound is generous: a drain on a
// busy machine takes a few seconds, a worker that does not stop for ever.
func stopCleanly(t *testing.T, workers ...*testenv.Worker) {
	t.Helper()
	for _, w := range workers {
		w.Signal(syscall.SIGTERM)
	}
	for i, w := range workers {
		require.Equal(t, 0, w.Wait(20*time.Second), "worker %d: exit status", i)
		require.Equal(t, 1, w.LogCount(logStoppedCleanly), "worker %d: %q", i, logStoppedCleanly)
	}
}
