package iotdaapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/iotdaapi"
)

// seedResponse is the 200 example from the "Deliver an Asynchronous Command"
// API reference.
const seedResponse = `{
  "device_id" : "c1224afb-e9f0-4916-8220-b6bab568e888",
  "command_id" : "b1224afb-e9f0-4916-8220-b6bab568e888",
  "service_id" : "Switch",
  "command_name" : "ON_OFF",
  "send_strategy" : "immediately",
  "paras" : {
    "value" : "ON"
  },
  "expire_time" : 0,
  "status" : "SENT",
  "created_time" : "20151212T121212Z"
}`

const (
	testProject  = "0123456789abcdef0123456789abcdef"
	testInstance = "2f1e5d4c-3b2a-4f10-9e8d-7c6b5a493827"
	testDevice   = "c1224afb-e9f0-4916-8220-b6bab568e888"
	testAK       = "AKTESTEXAMPLE"
	testSK       = "SKTESTEXAMPLE-secret"
)

var fixedNow = time.Date(2024, 12, 2, 8, 30, 0, 0, time.UTC)

// recorded is what the fake IoTDA saw, checked on the test goroutine
// (require must not be called from the handler goroutine).
type recorded struct {
	req  *http.Request
	body []byte
}

// fakeIoTDA plays the API: it checks the route, verifies the AK/SK signature
// like the gateway (401 APIGW.0301 on mismatch) and then runs respond.
type fakeIoTDA struct {
	srv  *httptest.Server
	hits atomic.Int32

	mu   sync.Mutex
	last *recorded
}

func newFakeIoTDA(t *testing.T, respond http.HandlerFunc) *fakeIoTDA {
	t.Helper()
	f := &fakeIoTDA{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.last = &recorded{req: r.Clone(context.WithoutCancel(r.Context())), body: body}
		f.mu.Unlock()

		wantPath := "/v5/iot/" + testProject + "/devices/" + testDevice + "/async-commands"
		if r.Method != http.MethodPost || r.URL.Path != wantPath {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error_code":"APIGW.0101","error_msg":"The API does not exist or has not been published in the environment"}`)
			return
		}
		if r.Header.Get("Authorization") != "" {
			if err := refVerify(r, body, testAK, testSK); err != nil {
				w.Header().Set("X-Request-Id", "req-sig")
				w.WriteHeader(http.StatusUnauthorized)
				_ = json.NewEncoder(w).Encode(map[string]string{"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication information: " + err.Error()})
				return
			}
		}
		respond(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIoTDA) lastRequest(t *testing.T) *recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotNil(t, f.last, "server received no request")
	return f.last
}

func respondJSON(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func newAKSKClient(t *testing.T, endpoint string) *iotdaapi.Client {
	t.Helper()
	c, err := iotdaapi.New(iotdaapi.Config{
		Endpoint:   endpoint,
		ProjectID:  testProject,
		InstanceID: testInstance,
		AccessKey:  testAK,
		SecretKey:  testSK,
		Now:        func() time.Time { return fixedNow },
	})
	require.NoError(t, err)
	return c
}

func validRequest() iotdaapi.AsyncCommandRequest {
	return iotdaapi.AsyncCommandRequest{
		ServiceID:    "reboot",
		CommandName:  "ON_OFF",
		Paras:        json.RawMessage(`{"value" : "ON"}`),
		ExpireTime:   intPtr(0),
		SendStrategy: iotdaapi.SendImmediately,
	}
}

func TestSendAsyncCommand_AKSK(t *testing.T) {
	t.Parallel()
	f := newFakeIoTDA(t, respondJSON(http.StatusOK, seedResponse))
	c := newAKSKClient(t, f.srv.URL)

	resp, err := c.SendAsyncCommand(context.Background(), testDevice, validRequest())
	require.NoError(t, err)

	// Request as seen by the server.
	got := f.lastRequest(t)
	require.Equal(t, http.MethodPost, got.req.Method)
	require.Equal(t, "/v5/iot/"+testProject+"/devices/"+testDevice+"/async-commands", got.req.URL.Path)
	require.Equal(t, "application/json", got.req.Header.Get("Content-Type"))
	require.Equal(t, testInstance, got.req.Header.Get("Instance-Id"))
	require.Equal(t, testProject, got.req.Header.Get("X-Project-Id"))
	require.Equal(t, "20241202T083000Z", got.req.Header.Get("X-Sdk-Date"))
	require.Empty(t, got.req.Header.Get("X-Auth-Token"))
	require.Regexp(t, `^SDK-HMAC-SHA256 Access=AKTESTEXAMPLE, SignedHeaders=content-type;host;instance-id;x-project-id;x-sdk-date, Signature=[0-9a-f]{64}$`,
		got.req.Header.Get("Authorization"))
	require.NoError(t, refVerify(got.req, got.body, testAK, testSK))
	require.JSONEq(t, `{"service_id":"reboot","command_name":"ON_OFF","paras":{"value":"ON"},"expire_time":0,"send_strategy":"immediately"}`,
		string(got.body))

	// Response parsed from the API reference example.
	require.Equal(t, "c1224afb-e9f0-4916-8220-b6bab568e888", resp.DeviceID)
	require.Equal(t, "b1224afb-e9f0-4916-8220-b6bab568e888", resp.CommandID)
	require.Equal(t, "Switch", resp.ServiceID)
	require.Equal(t, "ON_OFF", resp.CommandName)
	require.Equal(t, iotdaapi.SendImmediately, resp.SendStrategy)
	require.JSONEq(t, `{"value":"ON"}`, string(resp.Paras))
	require.Equal(t, 0, *resp.ExpireTime)
	require.Equal(t, "SENT", resp.Status)
	require.Equal(t, "20151212T121212Z", resp.CreatedTime)
	created, err := resp.Created()
	require.NoError(t, err)
	require.Equal(t, time.Date(2015, 12, 12, 12, 12, 12, 0, time.UTC), created)
	require.Equal(t, time.UTC, created.Location())
}

// A wrong secret must be caught by the gateway-side verification, proving the
// fake really checks signatures rather than accepting anything.
func TestSendAsyncCommand_WrongSecretRejected(t *testing.T) {
	t.Parallel()
	f := newFakeIoTDA(t, respondJSON(http.StatusOK, seedResponse))
	c, err := iotdaapi.New(iotdaapi.Config{
		Endpoint: f.srv.URL, ProjectID: testProject, AccessKey: testAK, SecretKey: "not-the-secret",
	})
	require.NoError(t, err)

	_, err = c.SendAsyncCommand(context.Background(), testDevice, validRequest())
	var apiErr *iotdaapi.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusUnauthorized, apiErr.StatusCode)
	require.Equal(t, "APIGW.0301", apiErr.ErrorCode)
	require.Equal(t, "req-sig", apiErr.RequestID)
	require.False(t, apiErr.Retryable())
}

func TestSendAsyncCommand_Token(t *testing.T) {
	t.Parallel()
	f := newFakeIoTDA(t, respondJSON(http.StatusOK, seedResponse))
	c, err := iotdaapi.New(iotdaapi.Config{Endpoint: f.srv.URL, ProjectID: testProject, Token: "iam-token-value"})
	require.NoError(t, err)

	req := validRequest()
	req.SendStrategy, req.ExpireTime = iotdaapi.SendDelay, intPtr(3600)
	req.Paras = json.RawMessage(`{"cmd":"a<b&c>d"}`)
	_, err = c.SendAsyncCommand(context.Background(), testDevice, req)
	require.NoError(t, err)

	got := f.lastRequest(t)
	require.Equal(t, "iam-token-value", got.req.Header.Get("X-Auth-Token"))
	require.Empty(t, got.req.Header.Get("Authorization"))
	require.Empty(t, got.req.Header.Get("X-Sdk-Date"))
	require.Empty(t, got.req.Header.Get("Instance-Id"), "Instance-Id is sent only when configured")
	// No HTML escaping: the device receives the characters as written.
	//nolint:testifylint // the exact bytes are what is sent and signed, not just equivalent JSON
	require.Equal(t, `{"service_id":"reboot","command_name":"ON_OFF","paras":{"cmd":"a<b&c>d"},"expire_time":3600,"send_strategy":"delay"}`,
		string(got.body))
}

func TestSendAsyncCommand_OptionalFieldsOmitted(t *testing.T) {
	t.Parallel()
	f := newFakeIoTDA(t, respondJSON(http.StatusOK, seedResponse))
	c := newAKSKClient(t, f.srv.URL)

	_, err := c.SendAsyncCommand(context.Background(), testDevice, iotdaapi.AsyncCommandRequest{
		Paras: json.RawMessage(`{}`), SendStrategy: iotdaapi.SendDelay,
	})
	require.NoError(t, err)
	//nolint:testifylint // the exact bytes are what is sent and signed, not just equivalent JSON
	require.Equal(t, `{"paras":{},"send_strategy":"delay"}`, string(f.lastRequest(t).body))
}

func TestSendAsyncCommand_APIErrors(t *testing.T) {
	t.Parallel()
	longHTML := "<html>" + strings.Repeat("x", 2000) + "</html>"
	tests := []struct {
		name        string
		status      int
		body        string
		requestID   string
		wantCode    string
		wantMsg     string
		wantReqID   string
		wantRetry   bool
		wantPhrases []string
	}{
		{
			name: "400 bad request", status: 400, requestID: "r-400",
			body:     `{"error_code":"IOTDA.000006","error_msg":"Invalid input data."}`,
			wantCode: "IOTDA.000006", wantMsg: "Invalid input data.", wantReqID: "r-400",
			wantPhrases: []string{"bad request", "HTTP 400", "IOTDA.000006", "Invalid input data.", "r-400"},
		},
		{
			name: "401 request id from body", status: 401,
			body:     `{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information","request_id":"body-req"}`,
			wantCode: "APIGW.0301", wantMsg: "Incorrect IAM authentication information", wantReqID: "body-req",
			wantPhrases: []string{"authentication failed", "check AK/SK or token"},
		},
		{
			name: "403 forbidden", status: 403, requestID: "r-403",
			body:     `{"error_code":"IOTDA.000004","error_msg":"Insufficient permission."}`,
			wantCode: "IOTDA.000004", wantMsg: "Insufficient permission.", wantReqID: "r-403",
			wantPhrases: []string{"forbidden", "IAM permissions", "instance id"},
		},
		{
			name: "404 not found", status: 404, requestID: "r-404",
			body:     `{"error_code":"IOTDA.014016","error_msg":"The device does not exist."}`,
			wantCode: "IOTDA.014016", wantMsg: "The device does not exist.", wantReqID: "r-404",
			wantPhrases: []string{"not found (device, command or project)", "IOTDA.014016"},
		},
		{
			name: "429 throttled", status: 429,
			body:     `{"error_code":"IOTDA.000010","error_msg":"Too many requests."}`,
			wantCode: "IOTDA.000010", wantMsg: "Too many requests.", wantRetry: true,
			wantPhrases: []string{"rate limited", "retryable"},
		},
		{
			name: "500 internal", status: 500, requestID: "r-500",
			body:     `{"error_code":"IOTDA.000002","error_msg":"Internal server error."}`,
			wantCode: "IOTDA.000002", wantMsg: "Internal server error.", wantReqID: "r-500", wantRetry: true,
			wantPhrases: []string{"platform error", "retryable", "HTTP 500"},
		},
		{
			name: "503 non-JSON body", status: 503,
			body:      "<html>Service Unavailable</html>",
			wantMsg:   "<html>Service Unavailable</html>",
			wantRetry: true, wantPhrases: []string{"platform error", "Service Unavailable"},
		},
		{
			name: "502 long body truncated", status: 502, body: longHTML,
			wantMsg: longHTML[:512] + "...", wantRetry: true,
		},
		{
			name: "409 unexpected", status: 409, body: `{"error_code":"IOTDA.999","error_msg":"conflict"}`,
			wantCode: "IOTDA.999", wantMsg: "conflict", wantPhrases: []string{"unexpected response", "HTTP 409"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeIoTDA(t, func(w http.ResponseWriter, _ *http.Request) {
				if tc.requestID != "" {
					w.Header().Set("X-Request-Id", tc.requestID)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			c := newAKSKClient(t, f.srv.URL)

			resp, err := c.SendAsyncCommand(context.Background(), testDevice, validRequest())
			require.Nil(t, resp)
			var apiErr *iotdaapi.APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.status, apiErr.StatusCode)
			require.Equal(t, tc.wantCode, apiErr.ErrorCode)
			require.Equal(t, tc.wantMsg, apiErr.ErrorMsg)
			require.Equal(t, tc.wantReqID, apiErr.RequestID)
			require.Equal(t, tc.wantRetry, apiErr.Retryable())
			for _, p := range tc.wantPhrases {
				require.Contains(t, err.Error(), p)
			}
		})
	}
}

func TestSendAsyncCommand_Validation(t *testing.T) {
	t.Parallel()
	f := newFakeIoTDA(t, respondJSON(http.StatusOK, seedResponse))
	c := newAKSKClient(t, f.srv.URL)

	with := func(mut func(*iotdaapi.AsyncCommandRequest)) iotdaapi.AsyncCommandRequest {
		r := validRequest()
		mut(&r)
		return r
	}
	tests := []struct {
		name      string
		deviceID  string
		req       iotdaapi.AsyncCommandRequest
		wantField string
	}{
		{"empty device id", "", validRequest(), "device_id"},
		{"device id too long", strings.Repeat("d", 129), validRequest(), "device_id"},
		{"device id with slash", "dev/../x", validRequest(), "device_id"},
		{"device id with space", "dev 1", validRequest(), "device_id"},
		{"device id non-ascii", "gerät", validRequest(), "device_id"},
		{"service id too long", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.ServiceID = strings.Repeat("s", 65) }), "service_id"},
		{"command name too long", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.CommandName = strings.Repeat("c", 129) }), "command_name"},
		{"paras missing", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.Paras = nil }), "paras"},
		{"paras blank", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.Paras = json.RawMessage("  ") }), "paras"},
		{"paras invalid json", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.Paras = json.RawMessage(`{"a":`) }), "paras"},
		{"paras array", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.Paras = json.RawMessage(`["ON"]`) }), "paras"},
		{"paras string", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.Paras = json.RawMessage(`"ON"`) }), "paras"},
		{"paras null", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.Paras = json.RawMessage(`null`) }), "paras"},
		{"send strategy missing", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.SendStrategy = "" }), "send_strategy"},
		{"send strategy unknown", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.SendStrategy = "later" }), "send_strategy"},
		{"send strategy wrong case", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.SendStrategy = "DELAY" }), "send_strategy"},
		{"expire time negative", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) {
			r.SendStrategy, r.ExpireTime = iotdaapi.SendDelay, intPtr(-1)
		}), "expire_time"},
		{"expire time above 2 days", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) {
			r.SendStrategy, r.ExpireTime = iotdaapi.SendDelay, intPtr(172801)
		}), "expire_time"},
		{"expire time with immediately", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) { r.ExpireTime = intPtr(60) }), "expire_time"},
		{"request over 256 KB", testDevice, with(func(r *iotdaapi.AsyncCommandRequest) {
			r.Paras = json.RawMessage(`{"blob":"` + strings.Repeat("a", 256*1024) + `"}`)
		}), "request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := c.SendAsyncCommand(context.Background(), tc.deviceID, tc.req)
			require.Nil(t, resp)
			var vErr *iotdaapi.ValidationError
			require.ErrorAs(t, err, &vErr)
			require.Equal(t, tc.wantField, vErr.Field)
			require.NotEmpty(t, vErr.Reason)
			require.Contains(t, err.Error(), tc.wantField)
		})
	}
	t.Cleanup(func() { require.Zero(t, f.hits.Load(), "invalid requests must not reach the server") })
}

// Values exactly at the documented limits must be accepted.
func TestSendAsyncCommand_ValidationBoundaries(t *testing.T) {
	t.Parallel()
	maxDevice := strings.Repeat("a", 127) + "-"
	f := newFakeIoTDA(t, respondJSON(http.StatusOK, seedResponse))
	c := newAKSKClient(t, f.srv.URL)

	tests := []struct {
		name     string
		deviceID string
		req      iotdaapi.AsyncCommandRequest
	}{
		{"expire 0 with immediately (API example)", testDevice, validRequest()},
		{"max expire with delay", testDevice, iotdaapi.AsyncCommandRequest{Paras: json.RawMessage(`{"v":1}`), SendStrategy: iotdaapi.SendDelay, ExpireTime: intPtr(172800)}},
		{"64-rune service id (multi-byte)", testDevice, iotdaapi.AsyncCommandRequest{ServiceID: strings.Repeat("é", 64), CommandName: strings.Repeat("c", 128), Paras: json.RawMessage(`{}`), SendStrategy: iotdaapi.SendImmediately}},
		{"128-char device id", maxDevice, validRequest()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.SendAsyncCommand(context.Background(), tc.deviceID, tc.req)
			var apiErr *iotdaapi.APIError
			if tc.deviceID != testDevice {
				// The fake only knows testDevice: reaching it (404) proves
				// validation passed.
				require.ErrorAs(t, err, &apiErr)
				require.Equal(t, http.StatusNotFound, apiErr.StatusCode)
				return
			}
			require.NoError(t, err)
		})
	}
}

func TestNew_ConfigValidation(t *testing.T) {
	t.Parallel()
	base := iotdaapi.Config{Endpoint: "https://iotda.cn-north-4.myhuaweicloud.com", ProjectID: testProject, AccessKey: testAK, SecretKey: testSK}
	with := func(mut func(*iotdaapi.Config)) iotdaapi.Config {
		c := base
		mut(&c)
		return c
	}
	tests := []struct {
		name      string
		cfg       iotdaapi.Config
		wantField string // empty: must succeed
	}{
		{"valid AK/SK", base, ""},
		{"valid token", with(func(c *iotdaapi.Config) { c.AccessKey, c.SecretKey, c.Token = "", "", "tok" }), ""},
		{"valid instance endpoint with slash", with(func(c *iotdaapi.Config) {
			c.Endpoint, c.InstanceID = "https://abc123.st1.iotda-app.cn-north-4.myhuaweicloud.com/", testInstance
		}), ""},
		{"http localhost", with(func(c *iotdaapi.Config) { c.Endpoint = "http://localhost:8080" }), ""},
		{"http 127.0.0.2", with(func(c *iotdaapi.Config) { c.Endpoint = "http://127.0.0.2:1" }), ""},
		{"http ::1", with(func(c *iotdaapi.Config) { c.Endpoint = "http://[::1]:8080" }), ""},
		{"empty endpoint", with(func(c *iotdaapi.Config) { c.Endpoint = "" }), "Config.Endpoint"},
		{"http remote", with(func(c *iotdaapi.Config) { c.Endpoint = "http://iotda.cn-north-4.myhuaweicloud.com" }), "Config.Endpoint"},
		{"http loopback lookalike", with(func(c *iotdaapi.Config) { c.Endpoint = "http://127.0.0.1.nip.io" }), "Config.Endpoint"},
		{"ftp scheme", with(func(c *iotdaapi.Config) { c.Endpoint = "ftp://iotda.example.com" }), "Config.Endpoint"},
		{"no host", with(func(c *iotdaapi.Config) { c.Endpoint = "https://" }), "Config.Endpoint"},
		{"relative", with(func(c *iotdaapi.Config) { c.Endpoint = "iotda.cn-north-4.myhuaweicloud.com" }), "Config.Endpoint"},
		{"with path", with(func(c *iotdaapi.Config) { c.Endpoint = "https://iotda.example.com/v5" }), "Config.Endpoint"},
		{"with credentials", with(func(c *iotdaapi.Config) { c.Endpoint = "https://u:p@iotda.example.com" }), "Config.Endpoint"},
		{"empty project", with(func(c *iotdaapi.Config) { c.ProjectID = "" }), "Config.ProjectID"},
		{"project with slash", with(func(c *iotdaapi.Config) { c.ProjectID = "abc/def" }), "Config.ProjectID"},
		{"instance with space", with(func(c *iotdaapi.Config) { c.InstanceID = "bad id" }), "Config.InstanceID"},
		{"AK without SK", with(func(c *iotdaapi.Config) { c.SecretKey = "" }), "Config.AccessKey/SecretKey"},
		{"SK without AK", with(func(c *iotdaapi.Config) { c.AccessKey = "" }), "Config.AccessKey/SecretKey"},
		{"AK/SK and token", with(func(c *iotdaapi.Config) { c.Token = "tok" }), "Config.Token"},
		{"no credentials", with(func(c *iotdaapi.Config) { c.AccessKey, c.SecretKey = "", "" }), "Config.AccessKey/SecretKey"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := iotdaapi.New(tc.cfg)
			if tc.wantField == "" {
				require.NoError(t, err)
				require.NotNil(t, c)
				return
			}
			require.Nil(t, c)
			var vErr *iotdaapi.ValidationError
			require.ErrorAs(t, err, &vErr)
			require.Equal(t, tc.wantField, vErr.Field)
		})
	}
}

func TestSendAsyncCommand_ContextCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ctx     func(started <-chan struct{}) (context.Context, context.CancelFunc)
		wantErr error
	}{
		{
			name: "canceled while waiting for response",
			ctx: func(started <-chan struct{}) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				go func() { <-started; cancel() }()
				return ctx, cancel
			},
			wantErr: context.Canceled,
		},
		{
			name: "deadline exceeded",
			ctx: func(<-chan struct{}) (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			},
			wantErr: context.DeadlineExceeded,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			started := make(chan struct{})
			release := make(chan struct{})
			var once sync.Once
			f := newFakeIoTDA(t, func(w http.ResponseWriter, r *http.Request) {
				once.Do(func() { close(started) })
				select { // hang until the client gives up (or the test ends)
				case <-r.Context().Done():
				case <-release:
				}
			})
			t.Cleanup(func() { close(release) }) // runs before f.srv.Close
			c := newAKSKClient(t, f.srv.URL)

			ctx, cancel := tc.ctx(started)
			defer cancel()
			start := time.Now()
			_, err := c.SendAsyncCommand(ctx, testDevice, validRequest())
			require.ErrorIs(t, err, tc.wantErr)
			var apiErr *iotdaapi.APIError
			require.NotErrorAs(t, err, &apiErr)
			require.Less(t, time.Since(start), 5*time.Second)
		})
	}
}

func TestSendAsyncCommand_NetworkError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	endpoint := srv.URL
	srv.Close() // nothing listens any more: connection refused

	c := newAKSKClient(t, endpoint)
	_, err := c.SendAsyncCommand(context.Background(), testDevice, validRequest())
	require.Error(t, err)
	var urlErr *url.Error
	require.ErrorAs(t, err, &urlErr, "transport errors are wrapped with %%w")
	require.Contains(t, err.Error(), "send async command")
}

func TestSendAsyncCommand_MalformedSuccessBody(t *testing.T) {
	t.Parallel()
	f := newFakeIoTDA(t, respondJSON(http.StatusOK, `{"device_id":`))
	c := newAKSKClient(t, f.srv.URL)

	_, err := c.SendAsyncCommand(context.Background(), testDevice, validRequest())
	require.ErrorContains(t, err, "decode async command response")
	var apiErr *iotdaapi.APIError
	require.NotErrorAs(t, err, &apiErr)
}

func TestAsyncCommandResponse_Created(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "20151212T121212Z", want: time.Date(2015, 12, 12, 12, 12, 12, 0, time.UTC)},
		{in: "20241231T235959Z", want: time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC)},
		{in: "", wantErr: true},
		{in: "2015-12-12T12:12:12Z", wantErr: true},
		{in: "20151312T121212Z", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := (&iotdaapi.AsyncCommandResponse{CreatedTime: tc.in}).Created()
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.True(t, tc.want.Equal(got), "got %v", got)
		})
	}
}

// A redirect must not be followed: net/http would resend the request, with
// its X-Auth-Token (custom headers are copied on redirect), to wherever the
// Location points. The target must never see the request.
func TestRedirectRefused(t *testing.T) {
	t.Parallel()
	var stolen atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Auth-Token") != "" || r.Header.Get("Authorization") != "" {
			stolen.Add(1)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, seedResponse)
	}))
	t.Cleanup(elsewhere.Close)
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			f := newFakeIoTDA(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, elsewhere.URL+r.URL.Path, status)
			})
			c, err := iotdaapi.New(iotdaapi.Config{Endpoint: f.srv.URL, ProjectID: testProject, Token: "iam-token-value"})
			require.NoError(t, err)
			_, err = c.SendAsyncCommand(context.Background(), testDevice, validRequest())
			require.ErrorIs(t, err, iotdaapi.ErrRedirect)
			require.ErrorContains(t, err, "redirect")
		})
	}
	t.Cleanup(func() { require.Zero(t, stolen.Load(), "credentials were sent to the redirect target") })
}
