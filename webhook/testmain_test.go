package webhook_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if any left a goroutine running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
