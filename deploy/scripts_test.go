package deploy_test

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ---------------------------------------------------------------------------
// The provisioning scripts

// `-h` prints the script's usage (its opening comment) and nothing of its
// code: needing neither root nor Docker, it is where a new user starts.
func TestScriptsHelpIsTheUsage(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"dockerenv.sh", "testenv.sh"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, flag := range []string{"-h", "--help", "help"} {
				var stdout, stderr bytes.Buffer
				cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts", name), flag)
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				require.NoError(t, cmd.Run(), "%s %s: %s", name, flag, stderr.String())
				require.Empty(t, stdout.String(), "%s %s: stdout is for export lines only", name, flag)
				usage := stderr.String()
				require.Contains(t, usage, "Usage: scripts/"+name+" COMMAND", "%s %s", name, flag)
				for _, code := range []string{"set -", "readonly ", "main \"$@\"", "()"} {
					if i := strings.Index(usage, code); i >= 0 {
						line, _, _ := strings.Cut(usage[i:], "\n")
						t.Fatalf("%s %s prints code, not only its usage: %q", name, flag, line)
					}
				}
				require.Less(t, strings.Count(usage, "\n"), 60, "%s %s: the usage is the opening comment", name, flag)
			}
		})
	}
}

// The local base image is verified: debootstrap gets Debian's archive keyring
// explicitly, since on a host that is not Debian it would otherwise fetch the
// packages without checking a signature (and only warn).
func TestDebootstrapVerifiesTheArchive(t *testing.T) {
	t.Parallel()
	script := string(readFile(t, "scripts/dockerenv.sh"))
	calls := regexp.MustCompile(`(?m)^\s*debootstrap\s.*$`).FindAllString(script, -1)
	require.NotEmpty(t, calls, "no debootstrap call found in scripts/dockerenv.sh")
	for _, c := range calls {
		require.Regexp(t, `--keyring[= ]`, c, "debootstrap without --keyring: %s", strings.TrimSpace(c))
	}
	require.Contains(t, script, "debian-archive-keyring", "the keyring's package is installed where missing")
}
