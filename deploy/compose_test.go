package deploy_test

import (
	"context"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	composeloader "github.com/compose-spec/compose-go/v2/loader"
	composetypes "github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

// docker-compose.yml: valid as `docker compose` reads it, and consistent with
// the Dockerfile and the configuration.

// loadCompose loads docker-compose.yml as `docker compose` would with env as
// the whole environment. compose-go validates against the Compose JSON schema
// (unknown keys and wrong types are errors) and checks the cross-references
// (depends_on, volumes).
func loadCompose(t *testing.T, env composetypes.Mapping) (*composetypes.Project, string) {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(repoRoot, "docker-compose.yml"))
	require.NoError(t, err)
	project, err := composeloader.LoadWithContext(context.Background(), composetypes.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []composetypes.ConfigFile{{Filename: abs}},
		Environment: env,
	}, func(o *composeloader.Options) { o.SetProjectName("cmdtrack", true) })
	require.NoError(t, err)
	return project, abs
}

// The images come from the environment where it names them, and are the
// official ones (and the Dockerfile's defaults) where it does not.
func TestComposeImagesFromEnvironment(t *testing.T) {
	t.Parallel()
	project, _ := loadCompose(t, composetypes.Mapping{})
	ct, err := project.GetService("cmdtrack")
	require.NoError(t, err)
	require.Equal(t, "cmdtrack:dev", ct.Image)
	require.NotNil(t, ct.Build)
	// Unset, they are not passed, and the Dockerfile's defaults apply.
	require.Nil(t, ct.Build.Args["GO_IMAGE"])
	require.Nil(t, ct.Build.Args["RUNTIME_IMAGE"])

	env := composetypes.Mapping{
		"CMDTRACK_POSTGRES_IMAGE": "mirror.example/postgres:15",
		"CMDTRACK_RABBITMQ_IMAGE": "mirror.example/rabbitmq:3.13",
		"CMDTRACK_IMAGE":          "cmdtrack:test",
		"GO_IMAGE":                "mirror.example/golang:1.26",
		"RUNTIME_IMAGE":           "mirror.example/static:nonroot",
	}
	project, _ = loadCompose(t, env)
	images := map[string]string{}
	for name, s := range project.Services {
		images[name] = s.Image
	}
	require.Equal(t, map[string]string{
		"postgres":       env["CMDTRACK_POSTGRES_IMAGE"],
		"rabbitmq":       env["CMDTRACK_RABBITMQ_IMAGE"],
		"cmdtrack":       env["CMDTRACK_IMAGE"],
		"loadgen":        env["CMDTRACK_IMAGE"],
		"console":        env["CMDTRACK_IMAGE"],
		"console-reader": env["CMDTRACK_POSTGRES_IMAGE"],
	}, images)
	ct, err = project.GetService("cmdtrack")
	require.NoError(t, err)
	args := deref(ct.Build.Args)
	require.Equal(t, env["GO_IMAGE"], args["GO_IMAGE"])
	require.Equal(t, env["RUNTIME_IMAGE"], args["RUNTIME_IMAGE"])
	require.Equal(t, "compose", args["VERSION"])
	// Every build argument is one the Dockerfile declares.
	dockerfile := string(readFile(t, "Dockerfile"))
	for name := range ct.Build.Args {
		require.Regexpf(t, `(?m)^ARG `+name+`\b`, dockerfile, "docker-compose.yml passes build argument %s", name)
	}
}

func TestCompose(t *testing.T) {
	t.Parallel()
	// An empty environment keeps the test hermetic.
	project, abs := loadCompose(t, composetypes.Mapping{})

	names := slices.Sorted(func(yield func(string) bool) {
		for n := range project.Services {
			if !yield(n) {
				return
			}
		}
	})
	require.Equal(t, []string{"cmdtrack", "console", "console-reader", "loadgen", "postgres", "rabbitmq"}, names)
	svc := func(name string) composetypes.ServiceConfig {
		s, err := project.GetService(name)
		require.NoError(t, err)
		return s
	}
	healthTest := func(s composetypes.ServiceConfig) string {
		require.NotNilf(t, s.HealthCheck, "%s has a healthcheck", s.Name)
		require.False(t, s.HealthCheck.Disable)
		return strings.Join(s.HealthCheck.Test, " ")
	}

	pg := svc("postgres")
	require.Equal(t, "postgres:15-alpine", pg.Image)
	require.Contains(t, healthTest(pg), "pg_isready")
	// Over TCP: on a first start the image's entrypoint runs an init server on
	// the Unix socket only, which a socket check finds ready; the real server
	// then restarts, and a service started on that word was refused
	// (console-reader exited 2 in make test/docker).
	require.Contains(t, healthTest(pg), "-h 127.0.0.1", "postgres' healthcheck must ask over TCP")
	pgEnv := deref(pg.Environment)

	rmq := svc("rabbitmq")
	require.Regexp(t, `^rabbitmq:3\.13`, rmq.Image)
	ep := strings.Join(rmq.Entrypoint, " ")
	require.Contains(t, ep, "rabbitmq-plugins enable --offline rabbitmq_amqp1_0")
	require.Regexp(t, `docker-entrypoint\.sh rabbitmq-server$`, ep)
	// ping answers before the listeners are up; the load generator needs them.
	require.Contains(t, healthTest(rmq), "rabbitmq-diagnostics -q check_port_connectivity")

	ct := svc("cmdtrack")
	require.NotNil(t, ct.Build)
	require.Equal(t, filepath.Dir(abs), ct.Build.Context)
	require.NotEmpty(t, ct.Image)
	for _, dep := range []string{"postgres", "rabbitmq"} {
		require.Containsf(t, ct.DependsOn, dep, "cmdtrack depends_on %s", dep)
		require.Equal(t, composetypes.ServiceConditionHealthy, ct.DependsOn[dep].Condition)
	}
	env := deref(ct.Environment)
	requireKnownVars(t, "docker-compose.yml", slices.Collect(mapKeys(env)))
	requireCompleteConfig(t, "docker-compose.yml", env)
	require.Equal(t, "amqp://guest:guest@rabbitmq:5672/", env["CMDTRACK_AMQP_URL"])
	require.Equal(t, "/queue/cmdtrack", env["CMDTRACK_AMQP_QUEUE"])
	require.Equal(t, "text", env["CMDTRACK_LOG_FORMAT"])
	db, err := url.Parse(env["CMDTRACK_DATABASE_URL"])
	require.NoError(t, err)
	require.Equal(t, "postgres", db.Hostname())
	require.Equal(t, pgEnv["POSTGRES_USER"], db.User.Username())
	pw, _ := db.User.Password()
	require.Equal(t, pgEnv["POSTGRES_PASSWORD"], pw)
	require.Equal(t, "/"+pgEnv["POSTGRES_DB"], db.Path)
	port := opsPortOf(t, "docker-compose.yml", env["CMDTRACK_OPS_ADDR"])
	require.Len(t, ct.Ports, 1)
	require.EqualValues(t, port, ct.Ports[0].Target)
	if ct.StopGracePeriod != nil {
		require.Greater(t, time.Duration(*ct.StopGracePeriod), shutdownGrace(t, env))
	}

	// The console: the same image, as the reader role the one-shot
	// console-reader makes, published on loopback only.
	cs := svc("console")
	require.Equal(t, ct.Image, cs.Image)
	require.Nil(t, cs.Build)
	require.Equal(t, []string{"console"}, []string(cs.Command))
	require.Contains(t, cs.DependsOn, "console-reader")
	require.Equal(t, composetypes.ServiceConditionCompletedSuccessfully, cs.DependsOn["console-reader"].Condition)
	cenv := deref(cs.Environment)
	requireKnownVars(t, "docker-compose.yml console", slices.Collect(mapKeys(cenv)))
	requireCompleteConfig(t, "docker-compose.yml console", cenv)
	cdb, err := url.Parse(cenv["CMDTRACK_DATABASE_URL"])
	require.NoError(t, err)
	require.Equal(t, "cmdtrack_console", cdb.User.Username())
	require.NotEmpty(t, cenv["CMDTRACK_CONSOLE_USER"], "beyond the container's loopback the console needs credentials")
	require.NotEmpty(t, cenv["CMDTRACK_CONSOLE_PASSWORD"])
	require.Len(t, cs.Ports, 1)
	require.Equal(t, "127.0.0.1", cs.Ports[0].HostIP)
	cr := svc("console-reader")
	require.Equal(t, pg.Image, cr.Image, "psql from the PostgreSQL image")
	require.Contains(t, strings.Join(cr.Command, " "), "cmdtrack_console")
	require.Equal(t, composetypes.ServiceConditionHealthy, cr.DependsOn["postgres"].Condition)

	lg := svc("loadgen")
	require.Equal(t, ct.Image, lg.Image, "the load generator uses the cmdtrack image")
	require.Nil(t, lg.Build)
	require.Equal(t, composetypes.PullPolicyNever, lg.PullPolicy)
	require.Equal(t, []string{"/iotda-sim"}, []string(lg.Entrypoint))
	require.Contains(t, lg.DependsOn, "rabbitmq")
	require.Equal(t, composetypes.ServiceConditionHealthy, lg.DependsOn["rabbitmq"].Condition)
	require.Contains(t, lg.DependsOn, "cmdtrack")
	require.Contains(t, []string{"", "no"}, lg.Restart)
	args := []string(lg.Command)
	require.NotEmpty(t, args)
	require.Equal(t, "publish", args[0])
	flags := map[string]string{}
	for i := 1; i+1 < len(args); i += 2 {
		require.Truef(t, strings.HasPrefix(args[i], "-"), "loadgen argument %q is not a flag", args[i])
		flags[strings.TrimLeft(args[i], "-")] = args[i+1]
	}
	simFlags, err := simPublishFlags(t)
	require.NoError(t, err)
	for f := range flags {
		require.Truef(t, simFlags[f], "loadgen passes -%s, which `iotda-sim publish -h` does not list", f)
	}
	require.Equal(t, env["CMDTRACK_AMQP_URL"], flags["url"])
	require.Equal(t, env["CMDTRACK_AMQP_QUEUE"], flags["queue"])
	require.Equal(t, "2000", flags["commands"])
	require.Equal(t, "200", flags["rate"])
}

func deref(m composetypes.MappingWithEquals) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
