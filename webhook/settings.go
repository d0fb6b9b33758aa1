package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/cmdtrack/cmdtrack/store"
)

// The settings' names, as the errors give them.
const (
	EnvURL    = "CMDTRACK_WEBHOOK_URL"
	EnvSecret = "CMDTRACK_WEBHOOK_SECRET"
	EnvFile   = "CMDTRACK_WEBHOOKS_FILE"
)

// DefaultName names the endpoint CMDTRACK_WEBHOOK_URL gives.
const DefaultName = "default"

// MaxNameLength bounds an endpoint's name, which labels metrics and is
// stored with every delivery.
const MaxNameLength = 64

// minSecretBytes is the shortest key accepted: the Standard Webhooks
// specification asks for 24 to 64 random bytes; below 16, a key could be
// guessed.
const minSecretBytes = 16

// secretPrefix starts every secret (Standard Webhooks).
const secretPrefix = "whsec_"

// secretHint says how to make a secret, ending the errors about one.
const secretHint = "make one with: echo whsec_$(openssl rand -base64 32)"

// Types are the event types an endpoint may take: outcome_events' kinds.
var Types = []string{
	store.KindFinished, store.KindFinalChanged,
	store.KindMessageFinished, store.KindMessageFinalChanged,
	store.KindCallFinished,
}

// Endpoint is one receiver of webhooks.
type Endpoint struct {
	// Name identifies the endpoint in the outbox, the metrics and the
	// console: letters, digits, '.', '_' and '-', at most 64 bytes.
	Name string `json:"name"`
	// URL is where events are POSTed: https, or http on loopback.
	URL string `json:"url"`
	// Secrets sign every request, each "whsec_" and a base64 key; more than
	// one while a secret is rotated (each gives its own signature).
	Secrets []string `json:"secrets"`
	// Types are the event types it takes (see Types); empty: all.
	Types []string `json:"types,omitempty"`
	// Products are the product ids it takes; empty: all.
	Products []string `json:"products,omitempty"`

	// fromFile says the endpoint came from CMDTRACK_WEBHOOKS_FILE, for the
	// errors to name.
	fromFile bool
}

// Load reads the endpoints the settings give: url and secret (the values
// of CMDTRACK_WEBHOOK_URL and CMDTRACK_WEBHOOK_SECRET: one endpoint named
// "default"; secret holds one or more secrets, space-separated), and file
// (CMDTRACK_WEBHOOKS_FILE: a JSON list of endpoints). None set: no
// endpoint, and no error. The error is one line naming each setting to fix;
// it never repeats a secret.
func Load(rawURL, secret, file string) ([]Endpoint, error) {
	var eps []Endpoint
	var problems []string
	switch {
	case rawURL != "":
		eps = append(eps, Endpoint{Name: DefaultName, URL: rawURL, Secrets: strings.Fields(secret)})
	case strings.TrimSpace(secret) != "":
		problems = append(problems, EnvSecret+" is set without "+EnvURL+": set the URL too, or unset the secret")
	}
	if file != "" {
		fromFile, err := ParseEndpoints(file)
		if err != nil {
			problems = append(problems, err.Error())
		}
		eps = append(eps, fromFile...)
	}
	if err := Validate(eps); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return eps, nil
}

// ParseEndpoints reads the JSON list of endpoints in file
// (CMDTRACK_WEBHOOKS_FILE), without validating them (see Validate).
func ParseEndpoints(file string) ([]Endpoint, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvFile, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	// A misspelt key ("product") would otherwise widen the endpoint to
	// everything.
	dec.DisallowUnknownFields()
	var eps []Endpoint
	if err := dec.Decode(&eps); err != nil {
		return nil, fmt.Errorf("%s (%s) is not a JSON list of {\"name\", \"url\", \"secrets\", \"types\", \"products\"}: %w", EnvFile, file, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s (%s) has more than one JSON value: give one list", EnvFile, file)
	}
	for i := range eps {
		eps[i].fromFile = true
	}
	return eps, nil
}

// Validate checks endpoints: names unique, URLs https (or http on
// loopback), secrets that decode, known types. The error is one line, each
// problem naming its setting and the fix.
func Validate(eps []Endpoint) error {
	var problems []string
	names := map[string]bool{}
	for i := range eps {
		ep := &eps[i]
		where := EnvURL
		if ep.fromFile {
			where = fmt.Sprintf("%s: endpoint %q", EnvFile, ep.Name)
		}
		add := func(format string, args ...any) {
			problems = append(problems, where+": "+fmt.Sprintf(format, args...))
		}
		if err := validName(ep.Name); err != nil {
			add("%v", err)
		} else if names[ep.Name] {
			add("the name is used twice: give each endpoint its own")
		}
		names[ep.Name] = true
		if err := validURL(ep.URL); err != nil {
			add("%v", err)
		}
		if len(ep.Secrets) == 0 {
			if ep.fromFile {
				add("no secret: give \"secrets\" at least one (%s)", secretHint)
			} else {
				problems = append(problems, fmt.Sprintf("%s is required with %s (%s)", EnvSecret, EnvURL, secretHint))
			}
		}
		for j, s := range ep.Secrets {
			if _, err := decodeSecret(s); err != nil {
				if ep.fromFile {
					add("secret %d: %v", j+1, err)
				} else {
					problems = append(problems, fmt.Sprintf("%s: secret %d: %v", EnvSecret, j+1, err))
				}
			}
		}
		for _, t := range ep.Types {
			if !slices.Contains(Types, t) {
				add("unknown type %q: use %s (or none for all)", t, strings.Join(Types, ", "))
			}
		}
		for _, p := range ep.Products {
			if strings.TrimSpace(p) == "" {
				add("an empty product id: list product ids, or none for all")
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func validName(name string) error {
	if name == "" {
		return errors.New("no name: give \"name\"")
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("the name is %d bytes: make it at most %d", len(name), MaxNameLength)
	}
	for _, r := range name {
		if !nameRune(r) {
			return errors.New("the name may hold only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}

// nameRune says whether r may be in a name: one that goes into URLs and
// command lines as it is.
func nameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// validURL accepts https, and http to a loopback host: a secret's
// signature proves who sent an event, but only TLS keeps it private.
func validURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return errors.New("the URL is not an absolute http(s) URL: give https://host/path")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return fmt.Errorf("%s uses http to a host that is not loopback: use https (http is for 127.0.0.1, ::1 and localhost only)", safeURL(u))
		}
	default:
		return fmt.Errorf("the URL's scheme is %q: use https", u.Scheme)
	}
	return nil
}

// safeURL is u as logs and errors show it: scheme://host/path. A
// receiver's URL often carries its token in the query (or in the
// userinfo), which url.URL.Redacted would print but for a password.
func safeURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// decodeSecret is the key of a "whsec_" secret.
func decodeSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, fmt.Errorf("does not start with %q (%s)", secretPrefix, secretHint)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("is not %q and standard base64 (%s)", secretPrefix, secretHint)
	}
	if len(key) < minSecretBytes {
		return nil, fmt.Errorf("is %d bytes: use at least %d random bytes (%s)", len(key), minSecretBytes, secretHint)
	}
	return key, nil
}

// Routes are what the fold needs to know of the endpoints (the argument of
// store.FoldOutcomes).
func Routes(eps []Endpoint) []store.WebhookRoute {
	routes := make([]store.WebhookRoute, 0, len(eps))
	for _, ep := range eps {
		routes = append(routes, store.WebhookRoute{
			Endpoint: ep.Name,
			Types:    slices.Clone(ep.Types),
			Products: slices.Clone(ep.Products),
		})
	}
	return routes
}
