// Package iotdaapi is a small client for Huawei Cloud IoT Device Access
// (IoTDA) application-side APIs. It covers "Deliver an Asynchronous Command"
// (POST /v5/iot/{project_id}/devices/{device_id}/async-commands) and "Query a
// Command with a Specific ID", ShowAsyncDeviceCommand (GET
// /v5/iot/{project_id}/devices/{device_id}/async-commands/{command_id}), and
// the downlinks of MQTT devices (downlinks.go): CreateMessage,
// ShowDeviceMessage, CreateCommand and UpdateProperties,
// authenticated with API Gateway AK/SK signing or with an IAM token, over TLS
// that is always verified.
//
// It uses only the standard library so that cmdtrack does not pull in the
// full huaweicloud-sdk-go-v3 for a single call.
package iotdaapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

const (
	// maxResponseSize bounds how much of a response body is read. A success
	// echoes paras (at most 256 KB), so 1 MiB is ample and protects against a
	// misbehaving proxy streaming an unbounded body.
	maxResponseSize = 1 << 20
	// maxErrorMsg bounds how much of a non-JSON error body ends up in
	// APIError.ErrorMsg (HTML error pages from proxies can be large).
	maxErrorMsg = 512
	// maxRetryAfterSeconds caps what a Retry-After header can ask for, so
	// that a garbled value cannot park a caller for days.
	maxRetryAfterSeconds = 3600
	// defaultTimeout is a safety net for callers that pass a context without
	// a deadline; normally ctx bounds the call.
	defaultTimeout = 30 * time.Second
)

// Config configures a Client.
type Config struct {
	// Endpoint is the IoTDA application-side endpoint, e.g.
	// https://iotda.cn-north-4.myhuaweicloud.com or an instance endpoint
	// such as https://<id>.st1.iotda-app.cn-north-4.myhuaweicloud.com.
	// It must be https; http is accepted only for loopback hosts (tests).
	Endpoint string
	// ProjectID is the IAM project id of the region (required).
	ProjectID string
	// InstanceID is sent as the Instance-Id header when set. Mandatory for
	// the professional editions, recommended otherwise.
	InstanceID string
	// AccessKey and SecretKey enable AK/SK signing (preferred: credentials
	// never travel on the wire and signatures expire after 15 minutes).
	AccessKey, SecretKey string
	// Token is an IAM user token sent as X-Auth-Token, as an alternative to
	// AK/SK. Exactly one of AK/SK or Token must be set.
	Token string
	// CAFile names extra CA certificates (PEM) to trust besides the
	// system's, for an endpoint behind a private CA. Certificates are always
	// verified.
	CAFile string
	// HTTPClient is used for requests; nil means a client with a 30s timeout
	// and TLS 1.2 or later. Redirects are never followed, whatever the
	// client says. It may not be combined with CAFile, and may not skip
	// certificate verification.
	HTTPClient *http.Client
	// Now returns the current time for X-Sdk-Date; nil means time.Now. Tests
	// set it to get deterministic signatures.
	Now func() time.Time
}

// Client calls IoTDA. It is safe for concurrent use.
type Client struct {
	base       *url.URL
	projectID  string
	instanceID string
	signer     *signer // nil in token mode
	token      string
	httpClient *http.Client
	now        func() time.Time
}

// New validates cfg and returns a Client. Configuration problems are reported
// as *ValidationError with Field "Config.<name>".
func New(cfg Config) (*Client, error) {
	base, err := validateConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:       base,
		projectID:  cfg.ProjectID,
		instanceID: cfg.InstanceID,
		token:      cfg.Token,
		httpClient: cfg.HTTPClient,
		now:        cfg.Now,
	}
	if cfg.AccessKey != "" {
		c.signer = &signer{accessKey: cfg.AccessKey, secretKey: cfg.SecretKey}
	}
	if c.httpClient == nil {
		tr, err := transport(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		c.httpClient = &http.Client{Timeout: defaultTimeout, Transport: tr}
	} else {
		hc := *c.httpClient // the caller's client stays as it was
		c.httpClient = &hc
	}
	// A redirect would carry the credentials to another address: net/http
	// copies custom headers such as X-Auth-Token when it follows one.
	c.httpClient.CheckRedirect = refuseRedirect
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// transport is the default transport with TLS 1.2 or later, trusting the
// system's roots plus those in caFile, if set.
func transport(caFile string) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tr, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, &ValidationError{Field: "Config.CAFile", Reason: err.Error()}
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &ValidationError{Field: "Config.CAFile", Reason: caFile + " holds no PEM certificate"}
	}
	tr.TLSClientConfig.RootCAs = pool
	return tr, nil
}

// AsyncCommandRequest is the body of "Deliver an Asynchronous Command".
type AsyncCommandRequest struct {
	// ServiceID is the product-model service the command belongs to
	// (at most 64 characters). Required by devices that use codecs.
	ServiceID string `json:"service_id,omitempty"`
	// CommandName is the product-model command name (at most 128
	// characters). Required by devices that use codecs.
	CommandName string `json:"command_name,omitempty"`
	// Paras is the command payload; it must be a JSON object.
	Paras json.RawMessage `json:"paras"`
	// ExpireTime is how long, in seconds (0..172800), a delayed command is
	// cached; nil or 0 means the platform default of 24 hours. Only valid
	// with SendStrategy "delay".
	ExpireTime *int `json:"expire_time,omitempty"`
	// SendStrategy is SendImmediately or SendDelay (required).
	SendStrategy string `json:"send_strategy"`
}

// Command is an asynchronous command as the API describes it: the answer of
// "Deliver an Asynchronous Command" (what creation knows) and of
// ShowAsyncDeviceCommand (the whole lifecycle so far). Times are UTC strings
// as yyyyMMdd'T'HHmmss'Z'; empty means not reported.
type Command struct {
	DeviceID    string          `json:"device_id"`
	CommandID   string          `json:"command_id"`
	ServiceID   string          `json:"service_id"`
	CommandName string          `json:"command_name"`
	Paras       json.RawMessage `json:"paras"`
	// ExpireTime is how long, in seconds, the platform caches the command;
	// nil when the answer does not say.
	ExpireTime *int `json:"expire_time"`
	// Status is PENDING, SENT, DELIVERED, SUCCESSFUL, FAILED, TIMEOUT or
	// EXPIRED. Creation answers PENDING (cached) or SENT.
	Status string `json:"status"`
	// Result is the device's detailed answer (any JSON), once it responded.
	Result        json.RawMessage `json:"result"`
	CreatedTime   string          `json:"created_time"`
	SentTime      string          `json:"sent_time"`
	DeliveredTime string          `json:"delivered_time"`
	ResponseTime  string          `json:"response_time"`
	SendStrategy  string          `json:"send_strategy"`

	// Raw is the answer's body as received, kept as its history payload.
	Raw json.RawMessage `json:"-"`
}

// AsyncCommandResponse is the 200 response of "Deliver an Asynchronous Command".
type AsyncCommandResponse = Command

// Created parses CreatedTime (yyyyMMdd'T'HHmmss'Z') as a UTC time.
func (r *Command) Created() (time.Time, error) {
	t, err := time.Parse(sdkDateLayout, r.CreatedTime)
	if err != nil {
		return time.Time{}, fmt.Errorf("iotdaapi: parse created_time %q: %w", r.CreatedTime, err)
	}
	return t, nil
}

// SendAsyncCommand delivers a command to deviceID asynchronously. The request
// is validated locally first (*ValidationError); non-2xx responses become
// *APIError; a 2xx body that does not parse, *DecodeError; transport
// failures, including ctx cancellation, are wrapped so
// errors.Is(err, context.Canceled) and similar work. ctx bounds the whole
// HTTP exchange, including reading the response body.
func (c *Client) SendAsyncCommand(ctx context.Context, deviceID string, req AsyncCommandRequest) (*AsyncCommandResponse, error) {
	if err := validateRequest(deviceID, req); err != nil {
		return nil, err
	}
	body, err := encodeRequest(req, "paras")
	if err != nil {
		return nil, err
	}
	// Both ids are restricted to [A-Za-z0-9_-], so no escaping is needed and
	// the path sent equals the path signed.
	path := "/v5/iot/" + c.projectID + "/devices/" + deviceID + "/async-commands"
	respBody, status, err := c.do(ctx, http.MethodPost, path, body, "send async command to device "+deviceID)
	if err != nil {
		return nil, err
	}
	var out Command
	if err := json.Unmarshal(respBody, &out); err != nil {
		return nil, newDecodeError("async command response", status, respBody, err)
	}
	out.Raw = respBody
	return &out, nil
}

// ShowAsyncDeviceCommand asks for one command of deviceID by its id
// ("Query a Command with a Specific ID"). Errors are as for
// SendAsyncCommand; in addition an answer about another command or another
// device (whose device_id the merge would otherwise write into the row), or
// without a status, is a *DecodeError. A command the platform does not know
// is an *APIError with Class ClassNotFound. ctx bounds the whole exchange.
func (c *Client) ShowAsyncDeviceCommand(ctx context.Context, deviceID, commandID string) (*Command, error) {
	if err := checkID("device_id", deviceID, maxDeviceIDLen); err != nil {
		return nil, err
	}
	if err := checkID("command_id", commandID, maxCommandIDLen); err != nil {
		return nil, err
	}
	path := "/v5/iot/" + c.projectID + "/devices/" + deviceID + "/async-commands/" + commandID
	respBody, status, err := c.do(ctx, http.MethodGet, path, nil, "show command "+commandID+" of device "+deviceID)
	if err != nil {
		return nil, err
	}
	var out Command
	if err := json.Unmarshal(respBody, &out); err != nil {
		return nil, newDecodeError("show command response", status, respBody, err)
	}
	switch {
	case out.CommandID != commandID:
		return nil, newDecodeError("show command response", status, respBody,
			fmt.Errorf("the answer is about command %q, not %q", out.CommandID, commandID))
	case out.DeviceID != "" && out.DeviceID != deviceID:
		return nil, newDecodeError("show command response", status, respBody,
			fmt.Errorf("the answer is about device %q, not %q", out.DeviceID, deviceID))
	case out.Status == "":
		return nil, newDecodeError("show command response", status, respBody, errNoStatus)
	}
	out.Raw = respBody
	return &out, nil
}

// do sends one request and returns the body of a 2xx answer. what names the
// call in transport errors.
func (c *Client) do(ctx context.Context, method, path string, body []byte, what string) ([]byte, int, error) {
	u := *c.base
	u.Path = path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	httpReq, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, 0, fmt.Errorf("iotdaapi: build request: %w", err)
	}
	if body != nil {
		httpReq.Header.Set("Content-Type", "application/json")
	}
	httpReq.Header.Set("Accept", "application/json")
	if c.instanceID != "" {
		httpReq.Header.Set("Instance-Id", c.instanceID)
	}
	c.authenticate(httpReq, body)

	resp, err := c.httpClient.Do(httpReq)
	if err != nil {
		return nil, 0, fmt.Errorf("iotdaapi: %s: %w", what, err)
	}
	defer resp.Body.Close()

	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("iotdaapi: %s: read response (HTTP %d): %w", what, resp.StatusCode, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, resp.StatusCode, newAPIError(resp, respBody, c.now())
	}
	return respBody, resp.StatusCode, nil
}

// refuseRedirect is http.Client.CheckRedirect: never follow a redirect.
func refuseRedirect(*http.Request, []*http.Request) error { return ErrRedirect }

// authenticate adds either the AK/SK signature or the IAM token.
func (c *Client) authenticate(r *http.Request, body []byte) {
	if c.signer == nil {
		r.Header.Set("X-Auth-Token", c.token)
		return
	}
	// The Huawei SDK sends X-Project-Id with AK/SK so the gateway can scope
	// the credential to the project; we do the same and sign it.
	r.Header.Set("X-Project-Id", c.projectID)
	signed := []string{"host", "x-project-id", "x-sdk-date"}
	if r.Header.Get("Content-Type") != "" {
		signed = append(signed, "content-type")
	}
	if c.instanceID != "" {
		signed = append(signed, "instance-id")
	}
	c.signer.sign(r, body, c.now(), signed)
}

// encodeRequest serializes req without HTML escaping, so that "<", ">" and
// "&" in string values reach the device exactly as written, and enforces the
// documented 256 KB limit on the result. field names the payload a failure
// blames.
func encodeRequest(req any, field string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(req); err != nil {
		return nil, &ValidationError{Field: field, Reason: err.Error()}
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(body) > MaxRequestSize {
		return nil, &ValidationError{Field: "request", Reason: fmt.Sprintf("serialized body is %d bytes, limit is %d (256 KB)", len(body), MaxRequestSize)}
	}
	return body, nil
}

// errorBody is the IoTDA / API Gateway error document.
type errorBody struct {
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
	RequestID string `json:"request_id"`
}

func newAPIError(resp *http.Response, body []byte, now time.Time) *APIError {
	e := &APIError{
		StatusCode: resp.StatusCode,
		RequestID:  resp.Header.Get("X-Request-Id"),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now),
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err == nil && (eb.ErrorCode != "" || eb.ErrorMsg != "") {
		e.ErrorCode, e.ErrorMsg = eb.ErrorCode, eb.ErrorMsg
		if e.RequestID == "" {
			e.RequestID = eb.RequestID
		}
		return e
	}
	msg := bytes.TrimSpace(body)
	if len(msg) > maxErrorMsg {
		msg = append(msg[:maxErrorMsg:maxErrorMsg], "..."...)
	}
	e.ErrorMsg = string(msg)
	return e
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110). Anything else, or a time already past, is zero.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, maxRetryAfterSeconds)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfterSeconds*time.Second)
	}
	return 0
}

// Compile-time check that the error types satisfy error.
var (
	_ error = (*APIError)(nil)
	_ error = (*ValidationError)(nil)
	_ error = (*DecodeError)(nil)
)
