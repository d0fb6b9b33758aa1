package store

import (
	"context"
	"errors"
	"io"
	"net"
	"regexp"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrorClass names the kind of a database error, for metrics, logs and the
// decision to retry. Only DataError is permanent. Everything else is retried:
// applying a batch is idempotent, so retrying is safe even when a commit's
// fate is unknown, and a misconfigured schema or password is an operator's
// problem that must not turn good messages into dead letters.
type ErrorClass string

// The error classes.
const (
	// DataError: PostgreSQL rejects a value (SQLSTATE classes 22, 23, 54):
	// the message is at fault, and retrying the same write never succeeds.
	DataError          ErrorClass = "data"
	ConnectionError    ErrorClass = "connection"
	SerializationError ErrorClass = "serialization"
	DeadlockError      ErrorClass = "deadlock"
	ShutdownError      ErrorClass = "shutdown" // the server is shutting down (57)
	ResourcesError     ErrorClass = "resources"
	SchemaError        ErrorClass = "schema"    // a table, column or schema is missing or wrong
	PrivilegeError     ErrorClass = "privilege" // the role may not do this (42501)
	AuthError          ErrorClass = "auth"
	CanceledError      ErrorClass = "canceled" // the caller's deadline or cancellation
	OtherError         ErrorClass = "other"

	// PartitionError: a row was routed by a partition layout that changed
	// while the write ran (a partition attached meanwhile), or no partition
	// takes it: the schema's doing, never the message's; a retry routes it
	// afresh.
	PartitionError ErrorClass = "partition"

	// ReadOnlyError: the server refuses writes in this session (25006,
	// read_only_sql_transaction).
	ReadOnlyError ErrorClass = "read_only"
)

// ClassifyError says what kind of database error err is ("" for nil).
func ClassifyError(err error) ErrorClass {
	if err == nil {
		return ""
	}
	if e := (*Error)(nil); errors.As(err, &e) {
		return e.class
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return CanceledError
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case code == "40001":
			return SerializationError
		case code == "40P01":
			return DeadlockError
		case code == "25006":
			return ReadOnlyError
		case code == "23514" && pgErr.ConstraintName == "":
			// A CHECK constraint names itself; PostgreSQL's partition checks
			// ("violates partition constraint", "no partition of relation
			// ... found for row") name none.
			return PartitionError
		case len(code) < 2:
			return OtherError
		default:
			switch code[:2] {
			case "22", "23", "54": // data exception, integrity violation, program limit
				return DataError
			case "08":
				return ConnectionError
			case "57":
				return ShutdownError
			case "53":
				return ResourcesError
			case "42", "3D", "3F":
				if code == "42501" {
					return PrivilegeError
				}
				return SchemaError
			case "28":
				return AuthError
			}
		}
		return OtherError
	}
	var netErr net.Error
	if errors.As(err, &netErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return ConnectionError
	}
	// The connection ended where an answer was due, with no word from the
	// server: its backend or host died, or a failover took it. pgx says
	// io.ErrUnexpectedEOF (io.EOF where a message would have begun).
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return ConnectionError
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return ConnectionError
	}
	return OtherError
}

// lockNotAvailable reports whether err is PostgreSQL's lock_timeout (55P03,
// lock_not_available): the partition work (partitions.go) waits only
// briefly for its locks, and gives up to try again later. It is not a class
// of its own: such an error that leaves the store is counted as other.
func lockNotAvailable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// Error is a database error as it leaves the store: classified here, where
// the driver is known, so that callers decide on retrying without knowing
// pgx (river's interpretError does the same). It satisfies
// pipeline.WriteError.
type Error struct {
	class ErrorClass
	err   error
}

// interpretError translates err (nil stays nil) at the store's boundary.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	var done *Error
	if errors.As(err, &done) {
		return err
	}
	return &Error{class: ClassifyError(err), err: err}
}

// NewError is err as the store returns an error of class: for fakes of the
// store in other packages' tests, which then need no driver's error.
func NewError(class ErrorClass, err error) *Error { return &Error{class: class, err: err} }

func (e *Error) Error() string { return e.err.Error() }

func (e *Error) Unwrap() error { return e.err }

// Class names the kind of error: one of the ErrorClass values.
func (e *Error) Class() string { return string(e.class) }

// Retry reports whether the same write may succeed later: all but a data
// error may.
func (e *Error) Retry() bool { return e.class != DataError }

// RetrySoon reports whether the database was away (its connection refused
// or dropped, the server shutting down, or the session on a server that no
// longer takes writes: the old primary), as in a failover or a restart,
// which end by themselves at an instant nobody announces: the pipeline
// retries such writes often, to resume soon after. A database short of
// resources is not among them: more attempts would not help it.
func (e *Error) RetrySoon() bool {
	switch e.class {
	case ConnectionError, ShutdownError, ReadOnlyError:
		return true
	}
	return false
}

// IsDataError reports whether err says that a value in what was written is at
// fault, so that retrying the same write can never succeed.
func IsDataError(err error) bool { return ClassifyError(err) == DataError }

// Unavailable reports whether err says the database is away, shutting down,
// not taking writes or short of resources (as opposed to refusing the
// request): worth waiting for.
func Unavailable(err error) bool {
	switch ClassifyError(err) {
	case ConnectionError, ShutdownError, ReadOnlyError, ResourcesError:
		return true
	}
	return false
}

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
