package testenv

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/cmdtrack once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cmdtrack-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cmdtrack")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "github.com/cmdtrack/cmdtrack/cmd/cmdtrack")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// Worker is a cmdtrack process started by a test.
type Worker struct {
	t       testing.TB
	cmd     *exec.Cmd
	OpsAddr string
	out     *syncBuffer
	done    chan struct{}
	code    int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartWorker runs the real binary with env (CMDTRACK_* settings) plus an
// ops server on a free loopback port. It is killed when the test ends.
func StartWorker(t testing.TB, env map[string]string, args ...string) *Worker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ops := ln.Addr().String()
	require.NoError(t, ln.Close())

	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), "CMDTRACK_OPS_ADDR="+ops, "CMDTRACK_LOG_FORMAT=text", "CMDTRACK_LOG_LEVEL=debug")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	w := &Worker{t: t, cmd: cmd, OpsAddr: ops, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = w.out, w.out
	require.NoError(t, cmd.Start())
	go func() {
		_ = cmd.Wait()
		w.code = cmd.ProcessState.ExitCode()
		close(w.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.done
		if t.Failed() {
			t.Logf("worker %d output:\n%s", cmd.Process.Pid, w.out.String())
		}
	})
	return w
}

// Signal sends sig to the worker.
func (w *Worker) Signal(sig syscall.Signal) { _ = w.cmd.Process.Signal(sig) }

// Wait waits up to d for the worker to exit and returns its exit code.
func (w *Worker) Wait(d time.Duration) int {
	w.t.Helper()
	select {
	case <-w.done:
		return w.code
	case <-time.After(d):
		w.t.Fatalf("worker did not exit within %s", d)
		return -1
	}
}

// Exited reports whether the worker has exited.
func (w *Worker) Exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// Output is what the worker logged so far.
func (w *Worker) Output() string { return w.out.String() }

// Get fetches an ops endpoint and returns the status code and body.
func (w *Worker) Get(path string) (int, string) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + w.OpsAddr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// WaitReady waits until /readyz answers 200.
func (w *Worker) WaitReady(d time.Duration) {
	w.t.Helper()
	require.Eventually(w.t, func() bool {
		code, _ := w.Get("/readyz")
		return code == http.StatusOK
	}, d, 50*time.Millisecond, "worker never became ready")
}
