package testenv

import (
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// envChromium names the browser the console's browser tests drive, if it
// is not Debian's chromium on PATH.
const envChromium = "CMDTRACK_TEST_CHROMIUM"

// Chromium returns the path of a Chromium (or Chrome) for the console's
// browser tests: CMDTRACK_TEST_CHROMIUM, else chromium on PATH, which
// scripts/testenv.sh installs (Debian's package). Without one the test fails
// with how to get it: it never skips, but under -short (make test/unit).
func Chromium(t testing.TB) string {
	t.Helper()
	needServices(t)
	if p := os.Getenv(envChromium); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	require.FailNow(t, "no Chromium for the console's browser tests",
		"run `scripts/testenv.sh up` (or `make test`), which installs Debian's chromium (apt-get install -y chromium), "+
			"or set %s to a Chromium or Chrome binary", envChromium)
	return ""
}
