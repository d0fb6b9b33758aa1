package store

import (
	"context"
	"errors"
	"net"
	"regexp"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrorClass names the kind of a database error for metrics and logs:
// "data" (a value PostgreSQL rejects: the message is at fault), "connection",
// "serialization", "deadlock", "shutdown", "resources", "schema", "auth",
// "canceled" or "other".
//
// Only "data" is permanent. Everything else is retried: applying a batch is
// idempotent, so retrying is safe even when a commit's fate is unknown, and a
// misconfigured schema or password is an operator's problem that must not
// turn good messages into dead letters.
func ErrorClass(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "canceled"
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case code == "40001":
			return "serialization"
		case code == "40P01":
			return "deadlock"
		case len(code) < 2:
			return "other"
		default:
			switch code[:2] {
			case "22", "23", "54": // data exception, integrity violation, program limit
				return "data"
			case "08":
				return "connection"
			case "57":
				return "shutdown"
			case "53":
				return "resources"
			case "42", "3D", "3F":
				return "schema"
			case "28":
				return "auth"
			}
		}
		return "other"
	}
	var netErr net.Error
	if errors.As(err, &netErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return "connection"
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return "connection"
	}
	return "other"
}

// IsDataError reports whether err says that a value in what was written is at
// fault, so that retrying the same write can never succeed.
func IsDataError(err error) bool { return ErrorClass(err) == "data" }

// redactedError hides what looks like a password in a connection string that
// an error message repeats.
type redactedError struct{ err error }

var (
	urlPassword = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)
	kvPassword  = regexp.MustCompile(`(password=)\S+`)
)

func (e redactedError) Error() string {
	s := urlPassword.ReplaceAllString(e.err.Error(), "${1}xxxxx@")
	return kvPassword.ReplaceAllString(s, "${1}xxxxx")
}

func (e redactedError) Unwrap() error { return e.err }
