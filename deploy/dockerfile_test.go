package deploy_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/stretchr/testify/require"
)

// The Dockerfile and .dockerignore.

type dockerInstr struct {
	Cmd  string // upper case
	Args string
	Line int
}

// parseDockerfile returns the instructions, with continuation lines joined
// and comments dropped.
func parseDockerfile(t *testing.T, src string) []dockerInstr {
	t.Helper()
	var out []dockerInstr
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{Cmd: strings.ToUpper(cmd), Args: strings.Join(strings.Fields(args), " "), Line: start})
		cur.Reset()
	}
	require.Zero(t, cur.Len(), "Dockerfile ends inside a continued instruction")
	return out
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	instrs := parseDockerfile(t, string(readFile(t, "Dockerfile")))

	type stage struct {
		name, base string
		instrs     []dockerInstr
	}
	var stages []*stage
	globalArgs := map[string]bool{}
	for _, in := range instrs {
		switch {
		case in.Cmd == "FROM":
			f := strings.Fields(in.Args)
			var st stage
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.name = f[i+1]
					i++
				default:
					st.base = f[i]
				}
			}
			stages = append(stages, &st)
		case len(stages) == 0:
			require.Containsf(t, []string{"ARG"}, in.Cmd, "line %d: only ARG may precede the first FROM", in.Line)
			name, _, _ := strings.Cut(in.Args, "=")
			globalArgs[name] = true
		default:
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage build")

	// Base images are build arguments.
	require.True(t, globalArgs["GO_IMAGE"], "ARG GO_IMAGE before the first FROM")
	require.True(t, globalArgs["RUNTIME_IMAGE"], "ARG RUNTIME_IMAGE before the first FROM")
	stageNames := map[string]bool{}
	for _, st := range stages {
		require.Regexpf(t, `^\$\{?(GO_IMAGE|RUNTIME_IMAGE)\}?$`, st.base, "stage %q: base image must be ${GO_IMAGE} or ${RUNTIME_IMAGE}", st.name)
		stageNames[st.name] = true
	}
	build := stages[0]
	require.Regexp(t, `GO_IMAGE`, build.base)

	// The build: static, trimmed, versioned, both commands.
	var buildRun string
	for _, in := range build.instrs {
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			buildRun = in.Args
		}
	}
	require.NotEmpty(t, buildRun, "a RUN with go build in the first stage")
	require.Contains(t, buildRun, "CGO_ENABLED=0")
	require.Contains(t, buildRun, "-trimpath")
	require.Regexp(t, `-ldflags "-s -w -X main\.Version=\$\{?VERSION\}?"`, buildRun)
	for _, pkg := range regexp.MustCompile(`\./cmd/[a-z0-9-]+`).FindAllString(buildRun, -1) {
		_, err := os.Stat(filepath.Join(repoRoot, pkg, "main.go"))
		require.NoErrorf(t, err, "the Dockerfile builds %s", pkg)
	}
	require.Contains(t, buildRun, "./cmd/cmdtrack")
	require.Contains(t, buildRun, "./cmd/iotda-sim")

	// Every COPY --from names an earlier stage.
	for _, st := range stages {
		for _, in := range st.instrs {
			if m := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(in.Args); in.Cmd == "COPY" && m != nil {
				require.Truef(t, stageNames[m[1]], "line %d: COPY --from=%s names no stage", in.Line, m[1])
			}
		}
	}

	// Every runtime stage runs as a numeric non-root user; the last one
	// (the default target) is cmdtrack.
	find := func(st *stage, cmd string) []string {
		var args []string
		for _, in := range st.instrs {
			if in.Cmd == cmd {
				args = append(args, in.Args)
			}
		}
		return args
	}
	for _, st := range stages[1:] {
		users := find(st, "USER")
		require.NotEmptyf(t, users, "stage %q has no USER", st.name)
		user := users[len(users)-1]
		uid, gid, _ := strings.Cut(user, ":")
		for _, id := range []string{uid, gid} {
			if id == "" {
				continue
			}
			n, err := strconv.Atoi(id)
			require.NoErrorf(t, err, "stage %q: USER %q must be numeric (runAsNonRoot cannot check names)", st.name, user)
			require.NotZerof(t, n, "stage %q: USER %q is root", st.name, user)
		}
		require.Equal(t, strconv.Itoa(nonRootUID), uid)
	}
	final := stages[len(stages)-1]
	require.Equal(t, []string{`["/cmdtrack"]`}, find(final, "ENTRYPOINT"))
	require.Contains(t, find(final, "EXPOSE"), strconv.Itoa(opsPort))
	env := strings.Join(find(final, "ENV"), " ")
	require.Regexp(t, `(^| )CMDTRACK_OPS_ADDR=:`+strconv.Itoa(opsPort)+`( |$)`, env)
	copies := strings.Join(find(final, "COPY"), "\n")
	require.Contains(t, copies, "/cmdtrack")
	require.Contains(t, copies, "/iotda-sim", "the compose load generator runs /iotda-sim from the same image")
}

func TestDockerignoreKeepsSources(t *testing.T) {
	t.Parallel()
	patterns, err := ignorefile.ReadAll(bytes.NewReader(readFile(t, ".dockerignore")))
	require.NoError(t, err)
	pm, err := patternmatcher.New(patterns)
	require.NoError(t, err)
	excluded := func(rel string) bool {
		ok, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		require.NoError(t, err)
		return ok
	}
	require.True(t, excluded(".git/HEAD"))
	for _, f := range []string{"go.mod", "go.sum", "cmd/cmdtrack/main.go", "migrations/001_initial.sql"} {
		require.Falsef(t, excluded(f), ".dockerignore excludes %s, which the build needs", f)
	}
	// Every non-test Go file and every embedded file must reach the build.
	n := 0
	err = filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || rel == "deploy" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") || filepath.Dir(rel) == "migrations" {
			require.Falsef(t, excluded(rel), ".dockerignore excludes %s", rel)
			n++
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, n, 5)
}
