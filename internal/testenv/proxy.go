package testenv

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Proxy is a loopback TCP proxy in front of a service, so that a test can
// take the service away from one worker (connections reset, new ones
// refused) without disturbing the tests running beside it.
type Proxy struct {
	target string

	mu    sync.Mutex
	ln    net.Listener
	addr  string
	conns map[net.Conn]struct{}
	down  bool
	// resumed is closed while traffic flows; a new, open channel while
	// paused.
	resumed chan struct{}
	wg      sync.WaitGroup
}

// NewProxy proxies to the host:port of serviceURL and returns the proxy
// and serviceURL rewritten to go through it.
func NewProxy(t testing.TB, serviceURL string) (*Proxy, string) {
	t.Helper()
	u, err := url.Parse(serviceURL)
	require.NoError(t, err)
	resumed := make(chan struct{})
	close(resumed)
	p := &Proxy{target: u.Host, conns: map[net.Conn]struct{}{}, resumed: resumed}
	require.NoError(t, p.listen("127.0.0.1:0"))
	t.Cleanup(p.close)
	u.Host = p.addr
	return p, u.String()
}

func (p *Proxy) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	p.ln, p.addr = ln, ln.Addr().String()
	p.wg.Add(1)
	go p.accept(ln)
	return nil
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	up, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = c.Close()
			_ = up.Close()
			p.mu.Lock()
			delete(p.conns, c)
			delete(p.conns, up)
			p.mu.Unlock()
		})
	}
	go func() { p.copy(up, c); closeBoth() }()
	p.copy(c, up)
	closeBoth()
}

// copy forwards src to dst, holding what it reads while the proxy is
// paused.
func (p *Proxy) copy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			resumed := p.resumed
			p.mu.Unlock()
			<-resumed
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Pause keeps connections open but delivers nothing in either direction
// until Resume: a peer that hangs without failing.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resumed:
		p.resumed = make(chan struct{})
	default:
	}
}

// Resume lets traffic flow again after Pause.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.resumed:
	default:
		close(p.resumed)
	}
}

// Cut resets every proxied connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.down = true
	ln := p.ln
	p.ln = nil
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, like a dead peer or a broker restart
		}
		_ = c.Close()
	}
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
}

// Restore accepts connections again, on the same address.
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.down {
		return
	}
	p.down = false
	require.NoError(t, p.listen(p.addr))
}

func (p *Proxy) close() {
	p.Resume()
	p.Cut()
	p.wg.Wait()
}
