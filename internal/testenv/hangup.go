package testenv

// Hangup closes every proxied connection in order (a FIN, no reset), as a
// server process that dies mid-query leaves its client: the client reads
// the end of the stream where it waits for an answer, which pgx reports as
// io.ErrUnexpectedEOF. New connections are still accepted.
func (p *Proxy) Hangup() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}
