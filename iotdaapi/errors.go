package iotdaapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
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
	// RetryAfter is what the Retry-After header asked for (zero when absent
	// or unreadable), at most an hour.
	RetryAfter time.Duration
}

// Error gives an actionable summary per status class so that operators can
// tell a credential problem from a missing device without reading the docs.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("iotdaapi: ")
	switch {
	case e.Class() == ClassRateLimited:
		b.WriteString("rate limited; retryable")
	case e.StatusCode == http.StatusBadRequest:
		b.WriteString("bad request")
	case e.StatusCode == http.StatusUnauthorized:
		b.WriteString("authentication failed: check AK/SK or token (and the host clock, X-Sdk-Date must be within 15 minutes)")
	case e.StatusCode == http.StatusForbidden:
		b.WriteString("forbidden: check IAM permissions and the instance id")
	case e.Class() == ClassEndpoint:
		b.WriteString("the endpoint does not serve this API: check the endpoint")
	case e.StatusCode == http.StatusNotFound:
		b.WriteString("not found (device, command or project)")
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
// failures (5xx) and throttling. Note that delivering a command is not
// idempotent; after a 5xx the command may or may not have been created, so
// callers that retry should tolerate a duplicate delivery.
func (e *APIError) Retryable() bool {
	c := e.Class()
	return c == ClassUnavailable || c == ClassRateLimited
}

// throttleCodes are error codes that mean "too many requests" whatever the
// HTTP status they come with: the API gateway's flow control (APIG.0308,
// documented with HTTP 429) and IoTDA's own rate limits (IOTDA.021101 and
// IOTDA.021102, documented with HTTP 403 on the device-side API), so that a
// throttled caller backs off instead of taking it for a credential problem.
var throttleCodes = map[string]bool{"APIG.0308": true, "IOTDA.021101": true, "IOTDA.021102": true}

// Class says what kind of refusal e is, for retry decisions and metrics.
func (e *APIError) Class() ErrorClass {
	switch {
	case e.StatusCode == http.StatusTooManyRequests || throttleCodes[e.ErrorCode]:
		return ClassRateLimited
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden:
		return ClassAuth
	// The gateway's own 404 (APIG.0101, APIGW.0101) means the API is not
	// published at this address: every call would fail the same way.
	case e.StatusCode == http.StatusNotFound && (strings.HasPrefix(e.ErrorCode, "APIG.") || strings.HasPrefix(e.ErrorCode, "APIGW.")):
		return ClassEndpoint
	case e.StatusCode == http.StatusNotFound:
		return ClassNotFound
	case e.StatusCode >= 500:
		return ClassUnavailable
	}
	return ClassRejected
}

// DecodeError is a successful (2xx) answer whose body cannot be used: not
// the JSON document the API reference describes, or not about what was asked.
type DecodeError struct {
	// What names the answer ("show command response").
	What       string
	StatusCode int
	// Body is the start of the body. It is not part of the message, which
	// ends up in logs: an answer can carry a command's parameters.
	Body string
	Err  error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("iotdaapi: decode %s (HTTP %d): %v", e.What, e.StatusCode, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

var errNoStatus = errors.New("the answer has no status")

func newDecodeError(what string, status int, body []byte, err error) *DecodeError {
	if len(body) > maxErrorMsg {
		body = append(body[:maxErrorMsg:maxErrorMsg], "..."...)
	}
	return &DecodeError{What: what, StatusCode: status, Body: string(body), Err: err}
}

// ErrorClass names the kind of a failed call, as metrics label it.
type ErrorClass string

// The error classes.
const (
	// ClassNotFound: the platform does not know the device or the command.
	ClassNotFound ErrorClass = "not_found"
	// ClassAuth: 401 or 403; the credentials, permissions, instance id or
	// host clock need fixing. Retrying does not help.
	ClassAuth ErrorClass = "auth"
	// ClassRateLimited: throttled (429, or a throttling error code); retry
	// after RetryAfter, or with backoff.
	ClassRateLimited ErrorClass = "rate_limited"
	// ClassUnavailable: 5xx, a timeout or a transport failure; retry with
	// backoff.
	ClassUnavailable ErrorClass = "unavailable"
	// ClassBadResponse: a 2xx answer that cannot be used (*DecodeError).
	ClassBadResponse ErrorClass = "bad_response"
	// ClassEndpoint: the endpoint does not serve the API (the gateway's 404),
	// answered with a redirect, or presented a certificate that does not
	// verify; every call would fail the same way.
	ClassEndpoint ErrorClass = "endpoint"
	// ClassRejected: any other refusal: a 4xx, or a request that failed
	// local validation.
	ClassRejected ErrorClass = "rejected"
	// ClassCanceled: the caller's context ended.
	ClassCanceled ErrorClass = "canceled"
)

// Classify says what kind of failure err, returned by a Client, is ("" for
// nil). A deadline of the caller's context counts as ClassUnavailable (a
// timeout): callers that want to tell their own shutdown apart check their
// context first.
func Classify(err error) ErrorClass {
	var apiErr *APIError
	var decErr *DecodeError
	var valErr *ValidationError
	var netErr net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &apiErr):
		return apiErr.Class()
	case errors.As(err, &decErr):
		return ClassBadResponse
	case errors.As(err, &valErr):
		return ClassRejected
	case errors.Is(err, ErrRedirect), errors.As(err, new(*tls.CertificateVerificationError)):
		return ClassEndpoint
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr):
		return ClassUnavailable
	}
	// Other transport failures (a connection reset mid-body, a TLS alert)
	// are the network's, not the request's.
	return ClassUnavailable
}

// ErrRedirect is returned when the API answers with a redirect. The client
// never follows one: the request carries credentials (X-Auth-Token, or a
// signature over the original host) that must not reach another address.
var ErrRedirect = errors.New("iotdaapi: the API answered with a redirect, which is refused (check CMDTRACK_API_ENDPOINT: use the endpoint's final https address)")
