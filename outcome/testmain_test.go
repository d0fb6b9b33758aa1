package outcome_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// TestMain removes the containers that testenv started, if any, then fails
// the tests if any left a goroutine running (testcontainers' reaper
// connection aside: see testenv.IgnoreReaper).
func TestMain(m *testing.M) { goleak.VerifyTestMain(testenv.M(m), testenv.IgnoreReaper) }
