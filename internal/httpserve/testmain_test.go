package httpserve_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests if any left a goroutine running: Serve must not
// leave its own, nor a connection's, behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
