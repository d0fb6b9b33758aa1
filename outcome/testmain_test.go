package outcome_test

import (
	"testing"

	"github.com/cmdtrack/cmdtrack/internal/testenv"
)

// TestMain removes the containers that testenv started, if any.
func TestMain(m *testing.M) { testenv.Main(m) }
