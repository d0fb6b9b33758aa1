package iotdaapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ValidationError reports a request or configuration value rejected locally,
// before anything is sent. Rejecting early gives a precise message instead of
// a generic IoTDA 400 and avoids spending a signed request on a known-bad call.
type ValidationError struct {
	// Field is the API field name (e.g. "device_id", "expire_time") or, for
	// configuration problems, "Config.<Field>".
	Field string
	// Reason says what is wrong with the value.
	Reason string
}

func (e *ValidationError) Error() string {
	return "iotdaapi: invalid " + e.Field + ": " + e.Reason
}

// APIError is returned for every non-2xx response from IoTDA or from the API
// gateway in front of it.
type APIError struct {
	// StatusCode is the HTTP status code.
	StatusCode int
	// ErrorCode is the platform error code, e.g. "IOTDA.014016" or
	// "APIGW.0301" (gateway signature failure). Empty if the body had none.
	ErrorCode string
	// ErrorMsg is the platform's message, or a prefix of the raw body when
	// the body was not the usual JSON error document.
	ErrorMsg string
	// RequestID is the X-Request-Id response header (or the body's
	// request_id when the header is missing); quote it to Huawei support.
	RequestID string
}

// Error gives an actionable summary per status class so that operators can
// tell a credential problem from a missing device without reading the docs.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("iotdaapi: ")
	switch {
	case e.StatusCode == http.StatusBadRequest:
		b.WriteString("bad request")
	case e.StatusCode == http.StatusUnauthorized:
		b.WriteString("authentication failed: check AK/SK or token (and the host clock, X-Sdk-Date must be within 15 minutes)")
	case e.StatusCode == http.StatusForbidden:
		b.WriteString("forbidden: check IAM permissions and the instance id")
	case e.StatusCode == http.StatusNotFound:
		b.WriteString("device or project not found")
	case e.StatusCode == http.StatusTooManyRequests:
		b.WriteString("rate limited; retryable")
	case e.StatusCode >= 500:
		b.WriteString("platform error; retryable")
	default:
		b.WriteString("unexpected response")
	}
	fmt.Fprintf(&b, " (HTTP %d", e.StatusCode)
	if e.ErrorCode != "" {
		b.WriteString(", " + e.ErrorCode)
	}
	if e.RequestID != "" {
		b.WriteString(", request id " + e.RequestID)
	}
	b.WriteString(")")
	if e.ErrorMsg != "" {
		b.WriteString(": " + e.ErrorMsg)
	}
	return b.String()
}

// Retryable reports whether the same request may succeed later: server-side
// failures (5xx) and throttling (429). Note that delivering a command is not
// idempotent; after a 5xx the command may or may not have been created, so
// callers that retry should tolerate a duplicate delivery.
func (e *APIError) Retryable() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests
}

// ErrRedirect is returned when the API answers with a redirect. The client
// never follows one: the request carries credentials (X-Auth-Token, or a
// signature over the original host) that must not reach another address.
var ErrRedirect = errors.New("iotdaapi: the API answered with a redirect, which is refused (check CMDTRACK_API_ENDPOINT: use the endpoint's final https address)")
