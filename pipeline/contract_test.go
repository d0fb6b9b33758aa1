package pipeline_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/cmdtrack/cmdtrack/pipeline"
	"github.com/cmdtrack/cmdtrack/pipeline/pipelinetest"
)

// The HTTP receiver's inbox keeps the Source contract: every submission
// taken is answered once, and none waits on after the pipeline returns.
func TestInboxKeepsTheSourceContract(t *testing.T) {
	t.Parallel()
	pipelinetest.TestSource(t, func(*testing.T) pipelinetest.Harness {
		s := &inboxSender{in: pipeline.NewInbox()}
		return pipelinetest.Harness{Source: s.in, Sender: s}
	})
}

// inboxSender plays the HTTP handlers: one Submit per push.
type inboxSender struct {
	in                   *pipeline.Inbox
	settled, outstanding atomic.Int64
}

func (s *inboxSender) Send(n int) {
	for i := range n {
		s.outstanding.Add(1)
		go func() {
			// Released once the pipeline holds the item no longer.
			release := func() { s.outstanding.Add(-1) }
			if _, err := s.in.Submit(context.Background(), note(i), release); err == nil {
				s.settled.Add(1)
			}
		}()
	}
}

func (s *inboxSender) Settled() int     { return int(s.settled.Load()) }
func (s *inboxSender) Outstanding() int { return int(s.outstanding.Load()) }
