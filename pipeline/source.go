package pipeline

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/cmdtrack/cmdtrack/ingest"
)

// Delivery is one message in hand: what it means, and how to answer its
// sender. The pipeline calls exactly one of Settle and Abandon, once.
type Delivery interface {
	// Item is what the message means for the store (see ingest.Classify).
	Item() ingest.Item
	// Settle tells the sender that the item's effect is committed; res says
	// what became of it. An error means the sender did not hear: it will
	// deliver the message again, and applying it again changes nothing.
	// ctx bounds the wait for the answer to leave.
	Settle(ctx context.Context, res ingest.Result) error
	// Abandon gives the message back unstored: its sender keeps it and
	// delivers it again (or is told to retry).
	Abandon()
}

// Receiver hands out the deliveries of one stream (an AMQP link, the HTTP
// inbox). It is used by one goroutine.
type Receiver interface {
	// Next returns the next delivery, waiting as long as ctx allows. An
	// error other than ctx's means the stream is broken: deliveries not yet
	// settled will be redelivered.
	Next(ctx context.Context) (Delivery, error)
	// Prefetched returns a delivery that has already arrived, or nil at
	// once, so that a batch fills without waiting for what is in hand.
	Prefetched() Delivery
}

// Source opens receivers: an AMQP broker connection with a link per queue,
// or the HTTP inbox. The worker asks every source the same questions for
// its readiness and liveness, and closes each the same way, so that a new
// kind of input is a new Source, not an edit of the worker.
type Source interface {
	// Run calls consume for every receiver it opens, each in its own
	// goroutine, for as long as that receiver lives, re-opening them as it
	// sees fit. It returns nil once ctx ends and every consume has returned,
	// or an error if the source fails for good.
	Run(ctx context.Context, consume func(context.Context, Receiver) error) error
	// Ready reports why the source cannot take deliveries now, in words
	// for /readyz (not connected, a queue not attached), or nil. It is
	// asked at any time, from any goroutine, before, during and after Run.
	Ready() error
	// Connected reports whether the senders are there to hear settles.
	// While one source is not, what the pipeline holds of it waits for its
	// return, and a pipeline that makes no progress is waiting, not
	// wedged: liveness does not fail for it. Asked as Ready is.
	Connected() bool
	// Close releases what Run left open so that the drain could settle
	// (the broker connection). It is called once the pipeline's Run has
	// returned, and again harmlessly; ctx bounds the wait.
	Close(ctx context.Context) error
}

// ErrStopping is returned by Inbox.Submit once intake has ended.
var ErrStopping = errors.New("cmdtrack is stopping")

// ErrNotStored is returned by Inbox.Submit when the item's batch was given
// up unstored (the database is away, or the shutdown grace ran out).
var ErrNotStored = errors.New("not stored; retry later")

// Inbox is a Source fed one item at a time by Submit: the HTTP push
// receiver, whose requests each wait for their own outcome. Its items join
// the same batches, under the same rules, as the broker's messages.
type Inbox struct {
	in       chan *submission
	stopping chan struct{}
	// held is the bytes of the bodies the pipeline holds: of submissions
	// handed to it and not yet settled, given back or dropped.
	held atomic.Int64
}

// NewInbox returns an inbox; it takes items once its Run has begun.
func NewInbox() *Inbox {
	return &Inbox{in: make(chan *submission), stopping: make(chan struct{})}
}

// Submit hands it to the pipeline and waits until its batch is committed,
// returning what became of it, or given up (ErrNotStored). ctx bounds the
// wait: once it ends, the item is dropped unless its write has begun (a
// write that began may still commit; either way the caller was not told it
// was stored).
//
// release, unless nil, is called once the pipeline holds the item no
// longer: settled, given back or dropped. That may be after Submit returns
// (an item whose caller gave up waits in its batch until it is dropped), so
// a caller that bounds what it has in flight counts the item until then.
func (in *Inbox) Submit(ctx context.Context, it ingest.Item, release func()) (ingest.Result, error) {
	s := &submission{item: it, reply: make(chan ingest.Result, 1), held: &in.held, size: bodyBytes(it), release: release}
	// Counted before the hand-over, so that the count never runs behind
	// what the pipeline holds.
	in.held.Add(s.size)
	select {
	case in.in <- s:
	case <-in.stopping:
		s.letGo()
		return ingest.Result{}, ErrStopping
	case <-ctx.Done():
		s.letGo()
		return ingest.Result{}, ctx.Err()
	}
	select {
	case r := <-s.reply:
		if r.Outcome == 0 {
			return r, ErrNotStored
		}
		return r, nil
	case <-ctx.Done():
		s.forsaken.Store(true)
		return ingest.Result{}, ctx.Err()
	}
}

// HeldBytes is the bytes of the submitted bodies the pipeline holds.
func (in *Inbox) HeldBytes() int64 { return in.held.Load() }

// bodyBytes is what an item holds of its message's body.
func bodyBytes(it ingest.Item) int64 {
	switch {
	case it.Record != nil:
		return int64(len(it.Payload()))
	case it.DeadLetter != nil:
		return int64(len(it.DeadLetter.Body))
	}
	return 0
}

// Run serves one receiver over the submissions until ctx ends; submissions
// after that get ErrStopping.
func (in *Inbox) Run(ctx context.Context, consume func(context.Context, Receiver) error) error {
	defer close(in.stopping)
	return consume(ctx, inboxReceiver{in.in})
}

// Ready is nil: the inbox takes what its handlers submit for as long as
// the pipeline runs, and the worker says "stopping" after that.
func (in *Inbox) Ready() error { return nil }

// Connected is true: the senders are the handlers in this process, which
// always hear their answer.
func (in *Inbox) Connected() bool { return true }

// Close has nothing to release.
func (in *Inbox) Close(context.Context) error { return nil }

type inboxReceiver struct{ in <-chan *submission }

func (r inboxReceiver) Next(ctx context.Context) (Delivery, error) {
	select {
	case s := <-r.in:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r inboxReceiver) Prefetched() Delivery {
	select {
	case s := <-r.in:
		return s
	default:
		return nil
	}
}

// submission is one Submit call in the pipeline; reply has room for its one
// answer, so the pipeline never waits on a caller that gave up.
type submission struct {
	item  ingest.Item
	reply chan ingest.Result
	// forsaken is set when the caller stops waiting.
	forsaken atomic.Bool
	held     *atomic.Int64
	size     int64
	release  func()
}

func (s *submission) Item() ingest.Item { return s.item }

func (s *submission) Settle(_ context.Context, res ingest.Result) error {
	s.reply <- res
	s.letGo()
	return nil
}

func (s *submission) Abandon() {
	s.reply <- ingest.Result{}
	s.letGo()
}

func (s *submission) Forsaken() bool { return s.forsaken.Load() }

// letGo is called once the pipeline holds the submission no longer.
func (s *submission) letGo() {
	s.held.Add(-s.size)
	if s.release != nil {
		s.release()
	}
}

// forsakable is a Delivery whose sender may stop waiting for its outcome: an
// HTTP push whose caller timed out (and was answered 503) or hung up. The
// pipeline drops such a delivery, unwritten, before each attempt to write
// it: nobody was told it was stored, so its sender sends it again, and
// while the database is away its body is not held for nobody.
type forsakable interface {
	Forsaken() bool
}

// dropForsaken removes from b, and gives back, the deliveries whose senders
// stopped waiting.
func (p *Pipeline) dropForsaken(b *batch) {
	kept := 0
	for i, d := range b.deliveries {
		if f, ok := d.(forsakable); ok && f.Forsaken() {
			// Counted before it is given back: its sender may look.
			p.m.dropped.Inc()
			p.inHand.Add(-1)
			d.Abandon()
			continue
		}
		b.deliveries[kept], b.items[kept] = d, b.items[i]
		kept++
	}
	// Cleared, so that the dropped bodies are not kept alive by the batch.
	clear(b.deliveries[kept:])
	clear(b.items[kept:])
	b.deliveries, b.items = b.deliveries[:kept], b.items[:kept]
}
