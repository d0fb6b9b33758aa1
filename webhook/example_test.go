package webhook_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/cmdtrack/cmdtrack/webhook"
)

// exampleSecret is CMDTRACK_WEBHOOK_SECRET in the example.
const exampleSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// handler is the README's receiver: it verifies each request with the
// Standard Webhooks library and deduplicates on webhook-id (delivery is at
// least once).
func handler(secret string) (http.Handler, error) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	seen := map[string]bool{} // in earnest: a unique key in your database, set with the work
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		// Checks the signature (any of cmdtrack's, while a secret is
		// rotated) and that webhook-timestamp is within 5 minutes.
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		id := r.Header.Get("webhook-id")
		mu.Lock()
		defer mu.Unlock()
		if seen[id] {
			w.WriteHeader(http.StatusNoContent) // a redelivery: already done
			return
		}
		var event struct {
			Type      string    `json:"type"`
			Timestamp time.Time `json:"timestamp"`
			Data      struct {
				ID      string `json:"id"`
				Outcome struct {
					Status     string `json:"status"`
					FromStatus string `json:"from_status"`
				} `json:"outcome"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &event); err != nil {
			http.Error(w, "bad JSON", http.StatusBadRequest)
			return
		}
		fmt.Println(event.Type, event.Data.ID, event.Data.Outcome.Status)
		seen[id] = true
		w.WriteHeader(http.StatusNoContent) // any 2xx: delivered
	}), nil
}

// A receiver verifies what cmdtrack sends with the Standard Webhooks
// library.
func Example_receiver() {
	h, err := handler(exampleSecret)
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	// What cmdtrack sends for one event, twice (at least once).
	body := `{"type":"command.finished","timestamp":"2026-03-01T12:00:00Z","data":{"id":"c1","outcome":{"status":"SUCCESSFUL"}}}`
	signer, err := webhook.NewSigner([]string{exampleSecret})
	if err != nil {
		panic(err)
	}
	for range 2 {
		now := time.Now()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
		req.Header.Set("webhook-id", "evt_1_1")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", signer.Sign("evt_1_1", now, []byte(body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	// Output:
	// command.finished c1 SUCCESSFUL
	// 204
	// 204
}
