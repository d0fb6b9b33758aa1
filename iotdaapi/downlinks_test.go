package iotdaapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/internal/iotdafake"
	"github.com/cmdtrack/cmdtrack/iotdaapi"
)

// The downlink calls are signed as the asynchronous command is (the
// gateway's check, refVerify, accepts them), go to their documented method
// and path with their documented body, and read their documented answers.
func TestDownlinksSignedAndRead(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got *recorded
	var verr error
	answers := map[string]string{
		http.MethodPost + " messages": `{"message_id":"m-1","result":{"status":"PENDING","created_time":"20261201T100000Z"}}`,
		http.MethodGet + " messages/m-1": `{"message_id":"m-1","name":"cfg","topic":"t","status":"FAILED","created_time":"20261201T100000Z",` +
			`"finished_time":"20261201T100005Z","error_info":{"error_code":"IOTDA.014112","error_msg":"not subscribed"}}`,
		http.MethodPost + " commands":  `{"command_id":"sc-1","response":{"result_code":0,"paras":{"v":1}}}`,
		http.MethodPut + " properties": `{"response":{"result_code":0}}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, verr = &recorded{req: r.Clone(context.WithoutCancel(r.Context())), body: body}, refVerify(r, body, testAK, testSK)
		mu.Unlock()
		prefix := "/v5/iot/" + testProject + "/devices/" + testDevice + "/"
		a, ok := answers[r.Method+" "+r.URL.Path[min(len(prefix), len(r.URL.Path)):]]
		if !ok || len(r.URL.Path) < len(prefix) || r.URL.Path[:len(prefix)] != prefix {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error_code":"APIGW.0101","error_msg":"no such API"}`)
			return
		}
		_, _ = io.WriteString(w, a)
	}))
	t.Cleanup(srv.Close)
	c := newAKSKClient(t, srv.URL)
	ctx := context.Background()
	last := func(method, suffix, body string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		require.NoError(t, verr)
		require.Equal(t, method, got.req.Method)
		require.Equal(t, "/v5/iot/"+testProject+"/devices/"+testDevice+"/"+suffix, got.req.URL.Path)
		require.Regexp(t, `^SDK-HMAC-SHA256 Access=AKTESTEXAMPLE, SignedHeaders=`, got.req.Header.Get("Authorization"))
		if body == "" {
			require.Empty(t, got.body)
		} else {
			require.JSONEq(t, body, string(got.body))
		}
	}

	ttl := 60
	m, err := c.CreateMessage(ctx, testDevice, iotdaapi.MessageRequest{MessageID: "m-1", Name: "cfg",
		Message: json.RawMessage(`{"a":"<b>"}`), Topic: "t", TTL: &ttl})
	require.NoError(t, err)
	last(http.MethodPost, "messages", `{"message_id":"m-1","name":"cfg","message":{"a":"<b>"},"topic":"t","ttl":60}`)
	require.Equal(t, iotdaapi.DeviceMessage{DeviceID: testDevice, MessageID: "m-1", Name: "cfg", Topic: "t", Status: "PENDING",
		CreatedTime: "20261201T100000Z", Raw: m.Raw}, *m)

	m, err = c.ShowDeviceMessage(ctx, testDevice, "m-1")
	require.NoError(t, err)
	last(http.MethodGet, "messages/m-1", "")
	require.Equal(t, "FAILED", m.Status)
	require.Equal(t, testDevice, m.DeviceID)
	require.Equal(t, "20261201T100005Z", m.FinishedTime)
	require.Equal(t, &iotdaapi.ErrorInfo{ErrorCode: "IOTDA.014112", ErrorMsg: "not subscribed"}, m.ErrorInfo)

	r, err := c.CreateCommand(ctx, testDevice, iotdaapi.CommandRequest{ServiceID: "Switch", CommandName: "ON_OFF", Paras: json.RawMessage(`{"value":"ON"}`)})
	require.NoError(t, err)
	last(http.MethodPost, "commands", `{"service_id":"Switch","command_name":"ON_OFF","paras":{"value":"ON"}}`)
	require.Equal(t, "sc-1", r.CommandID)
	require.JSONEq(t, `{"result_code":0,"paras":{"v":1}}`, string(r.Response))

	services := `[{"service_id":"Meter","properties":{"interval":60}}]`
	r, err = c.UpdateProperties(ctx, testDevice, iotdaapi.PropertiesRequest{Services: json.RawMessage(services)})
	require.NoError(t, err)
	last(http.MethodPut, "properties", `{"services":`+services+`}`)
	require.JSONEq(t, `{"result_code":0}`, string(r.Response))
}

// Every way a downlink call fails is the error, and the class, the
// asynchronous command's failures are.
func TestDownlinkFailuresClassified(t *testing.T) {
	t.Parallel()
	api, c := showSetup(t)
	ctx := context.Background()
	calls := map[string]func() error{
		iotdafake.CreateMessageKey(testDevice): func() error {
			_, err := c.CreateMessage(ctx, testDevice, iotdaapi.MessageRequest{MessageID: "m-2", Message: json.RawMessage(`"hi"`)})
			return err
		},
		iotdafake.CommandKey(testDevice): func() error {
			_, err := c.CreateCommand(ctx, testDevice, iotdaapi.CommandRequest{Paras: json.RawMessage(`{}`)})
			return err
		},
		iotdafake.PropertiesKey(testDevice): func() error {
			_, err := c.UpdateProperties(ctx, testDevice, iotdaapi.PropertiesRequest{Services: json.RawMessage(`[{"service_id":"s","properties":{}}]`)})
			return err
		},
	}
	for key, call := range calls {
		for _, tc := range []struct {
			name   string
			answer iotdafake.Answer
			class  iotdaapi.ErrorClass
			status int // of the *APIError; 0: none
		}{
			{"offline", iotdafake.Offline, iotdaapi.ClassRejected, 400},
			{"device timeout", iotdafake.DeviceTimeout, iotdaapi.ClassUnavailable, 504},
			{"5xx", iotdafake.Unavailable, iotdaapi.ClassUnavailable, 503},
			{"transport", iotdafake.Hangup, iotdaapi.ClassUnavailable, 0},
			{"bad answer", iotdafake.Answer{Body: `not json`}, iotdaapi.ClassBadResponse, 0},
		} {
			api.SetAnswers(key, tc.answer)
			err := call()
			require.Error(t, err, "%s %s", key, tc.name)
			require.Equal(t, tc.class, iotdaapi.Classify(err), "%s %s: %v", key, tc.name, err)
			var apiErr *iotdaapi.APIError
			require.Equal(t, tc.status != 0, errors.As(err, &apiErr), "%s %s: %v", key, tc.name, err)
			if apiErr != nil {
				require.Equal(t, tc.status, apiErr.StatusCode)
				require.NotEmpty(t, apiErr.ErrorCode)
			}
		}
	}
}

func TestShowDeviceMessageAnswers(t *testing.T) {
	t.Parallel()
	api, c := showSetup(t)
	ctx := context.Background()
	_, err := c.ShowDeviceMessage(ctx, testDevice, "unknown")
	require.Equal(t, iotdaapi.ClassNotFound, iotdaapi.Classify(err), "%v", err)

	api.SetAnswers(iotdafake.MessageKey(testDevice, "m-3"), iotdafake.Answer{Body: `{"message_id":"m-4","status":"DELIVERED"}`})
	_, err = c.ShowDeviceMessage(ctx, testDevice, "m-3")
	require.ErrorContains(t, err, `the answer is about message "m-4", not "m-3"`)

	api.SetAnswers(iotdafake.MessageKey(testDevice, "m-3"), iotdafake.Answer{Body: `{"message_id":"m-3"}`})
	_, err = c.ShowDeviceMessage(ctx, testDevice, "m-3")
	require.Equal(t, iotdaapi.ClassBadResponse, iotdaapi.Classify(err))

	api.SetMessage(testDevice, iotdafake.Message{MessageID: "m-3", Status: "DELIVERED", FinishedTime: "20261201T100000Z"})
	m, err := c.ShowDeviceMessage(ctx, testDevice, "m-3")
	require.NoError(t, err)
	require.Equal(t, "DELIVERED", m.Status)
	require.Equal(t, 4, api.Calls(iotdafake.MessageKey(testDevice, "m-3"))+api.Calls(iotdafake.MessageKey(testDevice, "unknown")))
}

// What can be refused before the call is, with the field named.
func TestDownlinkValidation(t *testing.T) {
	t.Parallel()
	msg := func(mod func(*iotdaapi.MessageRequest)) error {
		r := iotdaapi.MessageRequest{MessageID: "m", Message: json.RawMessage(`{}`)}
		mod(&r)
		return iotdaapi.ValidateMessage(testDevice, r)
	}
	neg := -1
	for field, err := range map[string]error{
		"message":        msg(func(r *iotdaapi.MessageRequest) { r.Message = nil }),
		"message_id":     msg(func(r *iotdaapi.MessageRequest) { r.MessageID = "a/b" }),
		"topic":          msg(func(r *iotdaapi.MessageRequest) { r.Topic, r.TopicFullName = "a", "b" }),
		"ttl":            msg(func(r *iotdaapi.MessageRequest) { r.TTL = &neg }),
		"payload_format": msg(func(r *iotdaapi.MessageRequest) { r.PayloadFormat = "binary" }),
		"paras":          iotdaapi.ValidateCommand(testDevice, iotdaapi.CommandRequest{Paras: json.RawMessage(`[1]`)}),
		"services":       iotdaapi.ValidateProperties(testDevice, iotdaapi.PropertiesRequest{Services: json.RawMessage(`[{"properties":{}}]`)}),
		"device_id":      iotdaapi.ValidateProperties("bad id", iotdaapi.PropertiesRequest{Services: json.RawMessage(`[]`)}),
	} {
		var verr *iotdaapi.ValidationError
		require.ErrorAs(t, err, &verr, field)
		require.Equal(t, field, verr.Field)
	}
	require.NoError(t, msg(func(*iotdaapi.MessageRequest) {}))
	require.Error(t, iotdaapi.ValidateProperties(testDevice, iotdaapi.PropertiesRequest{Services: json.RawMessage(`[]`)}))
}
