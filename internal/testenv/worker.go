package testenv

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// repoRoot is the main module's root, found from this file's place in it,
// so that a binary is built the same way from any module's tests.
var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

var (
	buildMu  sync.Mutex
	builtDir string
	built    = map[string]string{}
)

// Build builds the main module's command pkg (for example "cmd/cmdtrack")
// once per test binary, with the race detector when the tests have it, and
// returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin
	}
	if builtDir == "" {
		dir, err := os.MkdirTemp("", "cmdtrack-bin-")
		require.NoError(t, err)
		builtDir = dir
	}
	bin := filepath.Join(builtDir, filepath.Base(pkg))
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./"+pkg)...)
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build ./%s:\n%s", pkg, out)
	built[pkg] = bin
	return bin
}

// Binary builds cmd/cmdtrack (see Build) and returns its path.
func Binary(t testing.TB) string { return Build(t, "cmd/cmdtrack") }

// Worker is a cmdtrack process started by a test.
type Worker struct {
	t       testing.TB
	cmd     *exec.Cmd
	OpsAddr string
	out     *LogBuffer
	done    chan struct{}
	code    int
}

// LogBuffer collects the log lines that several goroutines write.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LogBuffer) String() string {
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
	cmd.Env = append(os.Environ(), "CMDTRACK_OPS_ADDR="+ops, "CMDTRACK_LOG_FORMAT=json", "CMDTRACK_LOG_LEVEL=debug")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	w := &Worker{t: t, cmd: cmd, OpsAddr: ops, out: &LogBuffer{}, done: make(chan struct{})}
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

// Output is what the worker wrote so far (JSON log records, and a last
// plain line on stderr if it exits with an error).
func (w *Worker) Output() string { return w.out.String() }

// LogRecord is one JSON log record of the worker.
type LogRecord map[string]any

// Logs are the worker's log records so far.
func (w *Worker) Logs() []LogRecord {
	var out []LogRecord
	for _, line := range strings.Split(w.out.String(), "\n") {
		var r LogRecord
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] != nil {
			out = append(out, r)
		}
	}
	return out
}

// LogCount counts the log records whose message is msg. Tests pass the
// message constants the code logs, so a change of wording cannot make a
// check pass silently.
func (w *Worker) LogCount(msg string) int {
	n := 0
	for _, r := range w.Logs() {
		if r["msg"] == msg {
			n++
		}
	}
	return n
}

// LogsAtLeast are the log records at level or above.
func (w *Worker) LogsAtLeast(level slog.Level) []LogRecord {
	var out []LogRecord
	for _, r := range w.Logs() {
		var l slog.Level
		if s, ok := r["level"].(string); ok && l.UnmarshalText([]byte(s)) == nil && l >= level {
			out = append(out, r)
		}
	}
	return out
}

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
