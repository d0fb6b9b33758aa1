// Package lifecycle starts a process's components in order and stops them
// phase by phase, in the spirit of oklog's run.Group: each component is one
// entry that says how it starts, how it runs and when it is told to stop,
// so that the start and stop order of a process can be read from one list
// rather than inferred from which context each goroutine was given.
package lifecycle

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
)

// Phase orders the stop. When the stop begins, the components of the
// lowest phase are told to stop (their Run's context ends); once every one
// of them has returned, those of the next phase are; and so on. Components
// of a later phase therefore outlive everything that stops before them:
// an ops server stops after the drain whose progress it shows.
type Phase int

// Component is one part of a running process.
type Component struct {
	// Name identifies the component in the group's log.
	Name string
	// Start, when set, runs before any later component of the group
	// starts, and before this one's Run: applying migrations, say, before
	// the components that need the schema. Its context ends when the stop
	// begins; once the stop has begun, no later component starts. An error
	// stops the group and is what Run returns.
	Start func(ctx context.Context) error
	// Run, when set, does the component's work in a goroutine of its own
	// until its context ends (at its Stop phase), and returns nil for a
	// clean stop. An error stops the group. Returning nil before the stop
	// means the component had nothing (more) to do; the others go on.
	Run func(ctx context.Context) error
	// Stop is the phase in which Run's context ends.
	Stop Phase
}

// Group runs components. Its zero value is not usable; see New.
type Group struct {
	components []Component
	log        *slog.Logger
	stopping   atomic.Bool
}

// New returns a group of components, started in the order given. log
// (nil: nowhere) hears, at debug level, each component starting and
// returning.
func New(log *slog.Logger, components ...Component) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Group{components: components, log: log}
}

// Stopping reports whether the stop has begun. It turns true before any
// component is told to stop, so that readiness can say "stopping" before
// the first component ends.
func (g *Group) Stopping() bool { return g.stopping.Load() }

// Run starts the components in order and returns once the stop has ended:
// it begins when ctx ends or when a component fails, and ends when every
// component that started has returned, phase by phase. Run returns the
// first error of a component (nil if none failed).
func (g *Group) Run(ctx context.Context) error {
	// Every phase has its own context; none derives from ctx, which only
	// begins the stop.
	var phases []Phase
	for _, c := range g.components {
		if !slices.Contains(phases, c.Stop) {
			phases = append(phases, c.Stop)
		}
	}
	slices.SortFunc(phases, cmp.Compare)
	type phaseRun struct {
		ctx     context.Context
		cancel  context.CancelFunc
		running sync.WaitGroup
	}
	runs := make(map[Phase]*phaseRun, len(phases))
	for _, p := range phases {
		r := &phaseRun{}
		r.ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
		defer r.cancel()
		runs[p] = r
	}

	startCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	var (
		mu    sync.Mutex
		first error
	)
	begin := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
		// Readiness hears of the stop before anything stops.
		g.stopping.Store(true)
		stop()
	}
	defer context.AfterFunc(ctx, func() { begin(nil) })()

	for _, c := range g.components {
		if startCtx.Err() != nil {
			break
		}
		if c.Start != nil {
			if err := c.Start(startCtx); err != nil {
				g.log.Debug("component failed to start", "component", c.Name, "err", err)
				begin(err)
				break
			}
			if startCtx.Err() != nil {
				break
			}
		}
		if c.Run == nil {
			continue
		}
		r := runs[c.Stop]
		r.running.Add(1)
		g.log.Debug("component started", "component", c.Name)
		go func() {
			defer r.running.Done()
			err := c.Run(r.ctx)
			g.log.Debug("component returned", "component", c.Name, "err", err)
			if err != nil {
				begin(err)
			}
		}()
	}

	<-startCtx.Done()
	for _, p := range phases {
		runs[p].cancel()
		runs[p].running.Wait()
	}
	mu.Lock()
	defer mu.Unlock()
	return first
}
