package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DeadLetter is a row of dead_letters. Its body is shown as text where it is
// UTF-8 and as hex where it is not.
type DeadLetter struct {
	ID          int64           `json:"id"`
	ReceivedAt  time.Time       `json:"received_at"`
	Source      string          `json:"source"`
	ReasonClass string          `json:"reason_class"`
	Reason      string          `json:"reason"`
	BodyLength  int64           `json:"body_length"`
	BodyStored  int64           `json:"body_stored"`
	BodySHA256  string          `json:"body_sha256,omitempty"`
	Properties  json.RawMessage `json:"properties,omitempty"`
	ReplayCount int32           `json:"replay_count"`
	LastReplay  *time.Time      `json:"last_replay_at,omitempty"`
	// BodyText is the body when it is UTF-8 (on the list page, its first
	// 160 bytes); BodyHex, a hex dump, when it is not.
	BodyUTF8 bool   `json:"body_utf8"`
	BodyText string `json:"body_text,omitempty"`
	BodyHex  string `json:"body_hex,omitempty"`
}

// DeadLettersPage is /dead-letters.
type DeadLettersPage struct {
	Class       string       `json:"class,omitempty"`
	Classes     []ClassCount `json:"classes"`
	DeadLetters []DeadLetter `json:"dead_letters"`
	Next        string       `json:"next"`
}

// ClassCount is the dead letters of one reason class.
type ClassCount struct {
	Class  string    `json:"class"`
	Count  int64     `json:"count"`
	Newest time.Time `json:"newest"`
}

const previewBytes = 160

// deadLettersQuery is the statement of one page of /dead-letters, newest
// first. A class has its index in that order (migration 012), the only plan
// without a sort as commandsQuery's are; without one, the index by when
// they came, with an incremental sort of the ties.
func deadLettersQuery(class string, before *time.Time, beforeID int64) listStatement {
	var where []string
	var args params
	arg := args.add
	order := "received_at DESC, id DESC"
	if class != "" {
		where = append(where, "reason_class = ANY("+arg([]string{class})+"::text[])")
		order = "reason_class DESC, " + order
	}
	if before != nil {
		b := arg(*before)
		where = append(where, "received_at <= "+b, "(received_at, id) < ("+b+", "+arg(beforeID)+")")
	}
	q := `SELECT id, received_at, source, reason_class, reason, coalesce(body_length, length(body)), length(body),
		substring(body FROM 1 FOR ` + strconv.Itoa(previewBytes) + `), replay_count FROM dead_letters`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return listStatement{sql: q + " ORDER BY " + order + " LIMIT " + strconv.Itoa(pageSize+1), args: args, inOrder: class != ""}
}

func listDeadLetters(ctx context.Context, db *pgxpool.Pool, class string, before *time.Time, beforeID int64) (*DeadLettersPage, error) {
	p := &DeadLettersPage{Class: class}
	var err error
	p.DeadLetters, err = queryList(ctx, db, deadLettersQuery(class, before, beforeID), func(rows pgx.Rows) ([]DeadLetter, error) {
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
			var d DeadLetter
			var body []byte
			err := r.Scan(&d.ID, &d.ReceivedAt, &d.Source, &d.ReasonClass, &d.Reason, &d.BodyLength, &d.BodyStored, &body, &d.ReplayCount)
			d.setBody(body, true)
			return d, err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	var last *DeadLetter
	if p.DeadLetters, last = cutPage(p.DeadLetters, pageSize); last != nil {
		p.Next = deadLetterQuery(class, &last.ReceivedAt, last.ID)
	}
	if p.Classes, err = countClasses(ctx, db, "now() - interval '7 days'"); err != nil {
		return nil, err
	}
	return p, nil
}

// countClasses counts the dead letters received since a time by class,
// most first; since is SQL: the overview's clock ($1) or the database's.
func countClasses(ctx context.Context, db *pgxpool.Pool, since string, args ...any) ([]ClassCount, error) {
	rows, err := db.Query(ctx, `SELECT reason_class, count(*), max(received_at) FROM dead_letters
		WHERE received_at > `+since+` GROUP BY 1 ORDER BY 2 DESC, 1`, args...)
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	classes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ClassCount, error) {
		var c ClassCount
		return c, r.Scan(&c.Class, &c.Count, &c.Newest)
	})
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	return classes, nil
}

var deadLettersPage = endpoint[*DeadLettersPage]{template: "deadletters", title: "Dead letters", nav: "dead-letters",
	load: func(ctx context.Context, db *pgxpool.Pool, r *http.Request, _ time.Time) (*DeadLettersPage, error) {
		q := r.URL.Query()
		before, err := parseTime(q.Get("before"))
		var beforeID int64
		if err == nil && before != nil {
			beforeID, err = strconv.ParseInt(q.Get("before_id"), 10, 64)
		}
		if err != nil {
			return nil, badRequest("before and before_id are the cursor of the next page: follow the Next link")
		}
		return listDeadLetters(ctx, db, strings.TrimSpace(q.Get("class")), before, beforeID)
	}}
