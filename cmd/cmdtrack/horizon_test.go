package main_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/iotdafake"
	"github.com/cmdtrack/cmdtrack/internal/testenv"
	"github.com/cmdtrack/cmdtrack/notification"
)

// A stuck horizon longer than a time.Duration holds (some 292 years)
// overflowed: reconcile logged that no command was selected and then asked
// about every open command, however old (issue 26, item 10). It is refused,
// in one line naming the setting and what to set, and nothing is asked.
func TestStuckHorizonTooLongRefused(t *testing.T) {
	t.Parallel()
	st, _, dbURL := testenv.Schema(t)
	api := iotdafake.Start(t)
	stuck(t, st, "ancient", "dev-1", notification.Sent, 40*24*time.Hour)
	api.Set(iotdafake.Command{DeviceID: "dev-1", CommandID: "ancient", Status: "SUCCESSFUL", ResponseTime: apiTime(39 * 24 * time.Hour)})
	_, err := st.Pool().Exec(context.Background(), `UPDATE cmdtrack_settings SET stuck_horizon = '300 years'`)
	require.NoError(t, err)

	cmd := exec.Command(testenv.Binary(t), "reconcile")
	cmd.Env = append(cmd.Environ(), "CMDTRACK_DATABASE_URL="+dbURL, "CMDTRACK_LOG_FORMAT=text")
	for k, v := range apiEnv(api) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, _ := cmd.CombinedOutput()
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), string(out))
	line := lastLine(string(out))
	t.Logf("refused: %s", line)
	require.Contains(t, line, "cmdtrack_settings.stuck_horizon (300 years)")
	require.Contains(t, line, "UPDATE cmdtrack_settings SET stuck_horizon")
	require.Empty(t, api.AllCalls(), "no command is asked about")
	require.Equal(t, "SENT", status(t, st, "ancient"))
}
