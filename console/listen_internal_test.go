package console

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
)

// boundElsewhere is a listener that reports a bound address beyond
// loopback, as "localhost" would give where it resolves to another address.
type boundElsewhere struct{ net.Listener }

func (boundElsewhere) Addr() net.Addr { return &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 9465} }

// "localhost" is not trusted by its name: bound to anything but loopback,
// an unauthenticated console does not start.
func TestListenRefusesLocalhostBoundBeyondLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	listen := func(string, string) (net.Listener, error) { return boundElsewhere{ln}, nil }
	_, err = listenWith(Config{Addr: "localhost:9465"}, http.NotFoundHandler(), slog.New(slog.DiscardHandler), listen)
	if !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("localhost bound to 192.0.2.10 without authentication: got %v, want ErrUnauthenticated", err)
	}
	_, err = listenWith(Config{Addr: "localhost:9465", Token: "a-long-enough-token"}, http.NotFoundHandler(), slog.New(slog.DiscardHandler), listen)
	if err != nil {
		t.Fatalf("with a token: %v", err)
	}

	for _, c := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 9, 9, 9)}, true},
		{&net.TCPAddr{IP: net.IPv6loopback}, true},
		{&net.TCPAddr{IP: net.IPv4zero}, false},
		{&net.TCPAddr{IP: net.IPv6unspecified}, false},
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.1")}, false},
		{&net.UnixAddr{Name: "/tmp/x"}, false},
	} {
		if got := boundLoopback(c.addr); got != c.want {
			t.Errorf("boundLoopback(%v) = %v, want %v", c.addr, got, c.want)
		}
	}
}
