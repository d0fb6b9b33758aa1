// Command hooks is the benchmark's webhook receiver (issue 29): an
// application's endpoint on loopback that verifies every request with the
// Standard Webhooks library, as the README's receiver does, answers 204 and
// counts what it got, so that make bench can show what one endpoint costs
// and check that every outcome arrived once.
//
//	hooks -listen 127.0.0.1:PORT -secret whsec_...
//
// GET /stats answers one "key value" line per figure: requests, events
// (verified), bad (refused: signature, body), duplicates (a webhook-id seen
// before: at least once allows them, a clean run has none), ids (distinct
// webhook-ids), per type the distinct ids (ids.TYPE) and distinct subjects
// (subjects.TYPE: data.id), and cpu_seconds, the receiver's own CPU (the
// application's, not cmdtrack's: make bench counts it apart).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback: cmdtrack allows http there)")
	secret := flag.String("secret", os.Getenv("CMDTRACK_WEBHOOK_SECRET"), "the whsec_ secret cmdtrack signs with")
	flag.Parse()
	if err := run(*listen, *secret); err != nil {
		fmt.Fprintln(os.Stderr, "hooks:", err)
		os.Exit(1)
	}
}

func run(listen, secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("-secret: %w (give the whsec_ secret cmdtrack signs with)", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("-listen %s: %w", listen, err)
	}
	r := &receiver{wh: wh, seen: map[string]bool{}, ids: map[string]int{}, subjects: map[string]map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", r.receive)
	mux.HandleFunc("GET /stats", r.stats)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "hooks: listening on %s\n", ln.Addr())
	done := make(chan os.Signal, 1)
	signal.Notify(done, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-done
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type receiver struct {
	wh *standardwebhooks.Webhook

	mu                           sync.Mutex
	requests, events, bad, dupes int
	seen                         map[string]bool            // webhook-ids
	ids                          map[string]int             // distinct webhook-ids per type
	subjects                     map[string]map[string]bool // distinct data.id per type
}

func (r *receiver) receive(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	var event struct {
		Type string `json:"type"`
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err == nil {
		err = r.wh.Verify(body, req.Header)
	}
	if err == nil {
		err = json.Unmarshal(body, &event)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if err != nil {
		r.bad++
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.events++
	id := req.Header.Get("webhook-id")
	if r.seen[id] {
		r.dupes++
	} else {
		r.seen[id] = true
		r.ids[event.Type]++
		if r.subjects[event.Type] == nil {
			r.subjects[event.Type] = map[string]bool{}
		}
		r.subjects[event.Type][event.Data.ID] = true
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) stats(w http.ResponseWriter, _ *http.Request) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(w, "requests %d\nevents %d\nbad %d\nduplicates %d\nids %d\n", r.requests, r.events, r.bad, r.dupes, len(r.seen))
	types := make([]string, 0, len(r.ids))
	for t := range r.ids {
		types = append(types, t)
	}
	slices.Sort(types)
	for _, t := range types {
		fmt.Fprintf(w, "ids.%s %d\nsubjects.%s %d\n", t, r.ids[t], t, len(r.subjects[t]))
	}
	fmt.Fprintf(w, "cpu_seconds %.3f\n", cpu)
}
