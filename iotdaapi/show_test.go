package iotdaapi_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/iotdafake"
	"github.com/cmdtrack/cmdtrack/iotdaapi"
)

const testCommand = "b1224afb-e9f0-4916-8220-b6bab568e888"

// showSetup starts the fake API over HTTPS and a client that trusts its CA.
func showSetup(t *testing.T) (*iotdafake.Server, *iotdaapi.Client) {
	t.Helper()
	api := iotdafake.Start(t)
	c, err := iotdaapi.New(iotdaapi.Config{
		Endpoint: api.URL, ProjectID: iotdafake.Project, Token: iotdafake.Token, CAFile: api.CAFile,
	})
	require.NoError(t, err)
	return api, c
}

// The answer of "Query a Command with a Specific ID", as its API reference
// lists the fields, over TLS verified against the CA file.
func TestShowAsyncDeviceCommand(t *testing.T) {
	t.Parallel()
	api, c := showSetup(t)
	body := `{"device_id":"` + testDevice + `","command_id":"` + testCommand + `","service_id":"Switch",
		"command_name":"ON_OFF","paras":{"value":"ON"},"expire_time":0,"status":"SUCCESSFUL",
		"result":{"result_code":0,"result_detail":{"value":"ON"}},"created_time":"20151212T121212Z",
		"sent_time":"20151212T121213Z","delivered_time":"20151212T121214Z","response_time":"20151212T121215Z",
		"send_strategy":"immediately"}`
	api.SetAnswers(testCommand, iotdafake.Answer{Body: body})

	got, err := c.ShowAsyncDeviceCommand(context.Background(), testDevice, testCommand)
	require.NoError(t, err)
	require.Equal(t, 1, api.Calls(testCommand))
	require.Equal(t, testDevice, api.Device(testCommand))
	require.Equal(t, "SUCCESSFUL", got.Status)
	require.Equal(t, "20151212T121215Z", got.ResponseTime)
	require.Equal(t, "20151212T121214Z", got.DeliveredTime)
	require.Equal(t, "20151212T121213Z", got.SentTime)
	require.JSONEq(t, `{"result_code":0,"result_detail":{"value":"ON"}}`, string(got.Result))
	require.Equal(t, 0, *got.ExpireTime)
	require.JSONEq(t, body, string(got.Raw), "the body is kept as received")
}

func TestShowAsyncDeviceCommandErrors(t *testing.T) {
	t.Parallel()
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name       string
		answer     iotdafake.Answer
		class      iotdaapi.ErrorClass
		retryAfter time.Duration // at least this much
		phrase     string
	}{
		{"404 unknown command", iotdafake.Answer{Status: 404, Body: `{"error_code":"IOTDA.014016","error_msg":"The command does not exist."}`},
			iotdaapi.ClassNotFound, 0, "not found"},
		{"401", iotdafake.Answer{Status: 401, Body: `{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information"}`},
			iotdaapi.ClassAuth, 0, "check AK/SK or token"},
		{"403", iotdafake.Answer{Status: 403, Body: `{"error_code":"IOTDA.000004","error_msg":"Insufficient permission."}`},
			iotdaapi.ClassAuth, 0, "IAM permissions"},
		{"429 with Retry-After seconds", iotdafake.Answer{Status: 429, Header: map[string]string{"Retry-After": "7"}, Body: `{"error_code":"APIG.0308","error_msg":"The throttling threshold has been reached"}`},
			iotdaapi.ClassRateLimited, 7 * time.Second, "rate limited"},
		{"429 with Retry-After date", iotdafake.Answer{Status: 429, Header: map[string]string{"Retry-After": date}},
			iotdaapi.ClassRateLimited, 80 * time.Second, "rate limited"},
		{"403 throttling code", iotdafake.Answer{Status: 403, Body: `{"error_code":"IOTDA.021101","error_msg":"Request reached the maximum rate limit."}`},
			iotdaapi.ClassRateLimited, 0, "rate limited"},
		{"503", iotdafake.Answer{Status: 503, Body: `<html>Service Unavailable</html>`},
			iotdaapi.ClassUnavailable, 0, "platform error"},
		{"gateway 404: wrong endpoint", iotdafake.Answer{Status: 404, Body: `{"error_code":"APIG.0101","error_msg":"The API does not exist or has not been published in the environment"}`},
			iotdaapi.ClassEndpoint, 0, "check the endpoint"},
		{"not JSON", iotdafake.Answer{Body: `<html>maintenance</html>`},
			iotdaapi.ClassBadResponse, 0, "decode show command response"},
		{"another command", iotdafake.Answer{Body: `{"command_id":"someone-else","status":"SENT"}`},
			iotdaapi.ClassBadResponse, 0, `not "` + testCommand + `"`},
		{"another device", iotdafake.Answer{Body: `{"device_id":"someone-else","command_id":"` + testCommand + `","status":"SENT"}`},
			iotdaapi.ClassBadResponse, 0, `device "someone-else", not "` + testDevice + `"`},
		{"no status", iotdafake.Answer{Body: `{"command_id":"` + testCommand + `"}`},
			iotdaapi.ClassBadResponse, 0, "no status"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api, c := showSetup(t)
			api.SetAnswers(testCommand, tc.answer)
			got, err := c.ShowAsyncDeviceCommand(context.Background(), testDevice, testCommand)
			require.Nil(t, got)
			require.Equal(t, tc.class, iotdaapi.Classify(err), "%v", err)
			require.ErrorContains(t, err, tc.phrase)
			if tc.retryAfter > 0 {
				var apiErr *iotdaapi.APIError
				require.ErrorAs(t, err, &apiErr)
				require.GreaterOrEqual(t, apiErr.RetryAfter, tc.retryAfter)
				require.LessOrEqual(t, apiErr.RetryAfter, 91*time.Second)
				require.True(t, apiErr.Retryable())
			}
		})
	}
}

func TestShowAsyncDeviceCommandTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	api, c := showSetup(t)
	api.SetAnswers(testCommand, iotdafake.Answer{Delay: time.Minute})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.ShowAsyncDeviceCommand(ctx, testDevice, testCommand)
	require.Equal(t, iotdaapi.ClassUnavailable, iotdaapi.Classify(err), "a timeout is retryable: %v", err)

	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err = c.ShowAsyncDeviceCommand(ctx, testDevice, testCommand)
	require.Equal(t, iotdaapi.ClassCanceled, iotdaapi.Classify(err), "%v", err)
}

func TestShowAsyncDeviceCommandValidatesIDs(t *testing.T) {
	t.Parallel()
	api, c := showSetup(t)
	for _, ids := range [][2]string{{"dev/../x", testCommand}, {testDevice, "cmd?x=1"}, {testDevice, string(make([]byte, 101))}} {
		_, err := c.ShowAsyncDeviceCommand(context.Background(), ids[0], ids[1])
		var vErr *iotdaapi.ValidationError
		require.ErrorAs(t, err, &vErr)
		require.Equal(t, iotdaapi.ClassRejected, iotdaapi.Classify(err))
	}
	require.Empty(t, api.AllCalls(), "invalid ids never reach the API")
}

// Certificate verification is never off: without the CA file the test
// server's certificate is refused, as an endpoint problem (not retryable).
func TestTLSVerification(t *testing.T) {
	t.Parallel()
	api, _ := showSetup(t)
	api.SetAnswers(testCommand, iotdafake.Answer{Body: `{"command_id":"` + testCommand + `","status":"SENT"}`})

	c, err := iotdaapi.New(iotdaapi.Config{Endpoint: api.URL, ProjectID: iotdafake.Project, Token: iotdafake.Token})
	require.NoError(t, err)
	_, err = c.ShowAsyncDeviceCommand(context.Background(), testDevice, testCommand)
	require.Equal(t, iotdaapi.ClassEndpoint, iotdaapi.Classify(err), "%v", err)
	require.ErrorContains(t, err, "certificate")
	require.Zero(t, api.Calls(testCommand))

	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	for _, cfg := range []iotdaapi.Config{
		{CAFile: notPEM},
		{CAFile: filepath.Join(t.TempDir(), "missing.pem")},
		{CAFile: api.CAFile, HTTPClient: &http.Client{}},
		{HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}, //nolint:gosec // the point: it is refused
	} {
		cfg.Endpoint, cfg.ProjectID, cfg.Token = api.URL, iotdafake.Project, iotdafake.Token
		_, err := iotdaapi.New(cfg)
		var vErr *iotdaapi.ValidationError
		require.ErrorAs(t, err, &vErr)
		require.Contains(t, vErr.Field, "Config.")
	}
}

// A GET is signed too: without a body there is no Content-Type to sign, and
// the gateway's check (refVerify) still passes.
func TestShowAsyncDeviceCommandAKSK(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var verr error
	var signed string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		verr = refVerify(r, nil, testAK, testSK)
		signed = r.Header.Get("Authorization")
		_, _ = io.WriteString(w, `{"device_id":"`+testDevice+`","command_id":"`+testCommand+`","status":"DELIVERED","delivered_time":"20241202T082959Z"}`)
	}))
	t.Cleanup(srv.Close)
	c := newAKSKClient(t, srv.URL)
	got, err := c.ShowAsyncDeviceCommand(context.Background(), testDevice, testCommand)
	require.NoError(t, err)
	require.Equal(t, "DELIVERED", got.Status)
	mu.Lock()
	defer mu.Unlock()
	require.NoError(t, verr)
	require.Contains(t, signed, "SignedHeaders=host;instance-id;x-project-id;x-sdk-date,")
}
