package main

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConfigErrorsAreOneClearLine(t *testing.T) {
	base := map[string]string{
		"CMDTRACK_DATABASE_URL": "postgres://u:hunter2@db/x",
		"CMDTRACK_AMQP_URL":     "amqps://iot.example:5671",
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"missing database", map[string]string{"CMDTRACK_DATABASE_URL": ""}, "CMDTRACK_DATABASE_URL"},
		{"bad int", map[string]string{"CMDTRACK_BATCH_SIZE": "many"}, "CMDTRACK_BATCH_SIZE"},
		{"out of range", map[string]string{"CMDTRACK_AMQP_CREDIT": "1"}, "CMDTRACK_AMQP_CREDIT"},
		{"bad duration", map[string]string{"CMDTRACK_BATCH_WAIT": "soon"}, "CMDTRACK_BATCH_WAIT"},
		{"bad log level", map[string]string{"CMDTRACK_LOG_LEVEL": "loud"}, "CMDTRACK_LOG_LEVEL"},
		{"access key alone", map[string]string{"CMDTRACK_AMQP_ACCESS_KEY": "AK"}, "CMDTRACK_AMQP_ACCESS_CODE"},
		{"too many queues", map[string]string{"CMDTRACK_AMQP_QUEUE": "a,b,c,d,e,f,g,h,i,j,k"}, "CMDTRACK_AMQP_QUEUE"},
		{"bad age", map[string]string{"CMDTRACK_RETENTION_HISTORY": "-3d"}, "CMDTRACK_RETENTION_HISTORY"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range base {
				t.Setenv(k, v)
			}
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			code := mainStatus(nil, &out, &out)
			require.Equal(t, 2, code)
			require.Contains(t, out.String(), c.want)
			require.Equal(t, 1, strings.Count(out.String(), "\n"), "one line: %q", out.String())
			require.NotContains(t, out.String(), "hunter2")
		})
	}
}

func TestConfigDefaultsAndAges(t *testing.T) {
	t.Setenv("CMDTRACK_DATABASE_URL", "postgres://db/x")
	t.Setenv("CMDTRACK_AMQP_URL", "amqp://localhost")
	t.Setenv("CMDTRACK_AMQP_QUEUE", "/queue/a,/queue/b")
	t.Setenv("CMDTRACK_RETENTION_HISTORY", "90d")
	t.Setenv("CMDTRACK_RETENTION_DEAD_LETTERS", "36h")
	c, err := loadConfig("run")
	require.NoError(t, err)
	require.Equal(t, []string{"/queue/a", "/queue/b"}, c.AMQPQueue)
	require.Equal(t, Age(90*24*time.Hour), c.RetentionHistory)
	require.Equal(t, Age(36*time.Hour), c.RetentionDeadLetters)
	require.Equal(t, 1024, c.AMQPCredit)
	require.Equal(t, "127.0.0.1:9464", c.OpsAddr, "ops server on loopback unless told otherwise")
}

// Every setting has a line in `cmdtrack -h`.
func TestUsageListsEveryVariable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.Equal(t, 0, mainStatus([]string{"-h"}, &out, &out))
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		require.Contains(t, out.String(), "CMDTRACK_", typ.Field(i).Name)
	}
	require.Equal(t, typ.NumField(), strings.Count(out.String(), "  CMDTRACK_"))
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.Equal(t, 2, mainStatus([]string{"frobnicate"}, &out, &out))
	require.Contains(t, out.String(), `unknown command "frobnicate"`)
	out.Reset()
	require.Equal(t, 0, mainStatus([]string{"version"}, &out, &out))
	require.True(t, strings.HasPrefix(out.String(), "cmdtrack "))
}

// mainStatus runs cmdtrack as main does and returns its exit status.
func mainStatus(args []string, stdout, stderr *bytes.Buffer) int {
	return exitStatus(run(context.Background(), args, stdout, stderr), stderr)
}
