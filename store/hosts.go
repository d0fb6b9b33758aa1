package store

import (
	"net"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// Hosts are the host:port pairs that a connection string lists, in the
// order they are tried, without credentials: what log lines about an outage
// name as tried. nil if the string does not parse (Open says why).
func Hosts(url string) []string {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil
	}
	var out []string
	add := func(host string, port uint16) {
		// sslmode=prefer tries each host twice, with TLS and without.
		if h := net.JoinHostPort(host, strconv.Itoa(int(port))); !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	add(cfg.Host, cfg.Port)
	for _, f := range cfg.Fallbacks {
		add(f.Host, f.Port)
	}
	return out
}
