package webhook_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/webhook"
)

// While a secret is rotated, requests carry a signature per secret: a
// receiver that knows either one verifies them, one that knows neither
// does not.
func TestSignRotation(t *testing.T) {
	oldSecret, newSecret1, other := newSecret(t), newSecret(t), newSecret(t)
	signer, err := webhook.NewSigner([]string{oldSecret, newSecret1})
	require.NoError(t, err)
	body := []byte(`{"type":"command.finished","timestamp":"2026-03-01T12:00:00Z","data":{"id":"c1"}}`)
	now := time.Now()
	sig := signer.Sign("evt_7_1", now, body)
	require.Len(t, strings.Split(sig, " "), 2)
	h := http.Header{}
	h.Set(webhook.HeaderID, "evt_7_1")
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(webhook.HeaderSignature, sig)
	for _, s := range []string{oldSecret, newSecret1} {
		wh, err := standardwebhooks.NewWebhook(s)
		require.NoError(t, err)
		require.NoError(t, wh.Verify(body, h))
		require.Error(t, wh.Verify(append(body, ' '), h), "a changed body does not verify")
	}
	wh, err := standardwebhooks.NewWebhook(other)
	require.NoError(t, err)
	require.ErrorIs(t, wh.Verify(body, h), standardwebhooks.ErrNoMatchingSignature)
}

// The signatures are the library's own, byte for byte.
func TestSignMatchesLibrary(t *testing.T) {
	secret := newSecret(t)
	signer, err := webhook.NewSigner([]string{secret})
	require.NoError(t, err)
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	ts := time.Unix(1767225600, 0)
	want, err := wh.Sign("evt_1_2", ts, []byte("{}"))
	require.NoError(t, err)
	require.Equal(t, want, signer.Sign("evt_1_2", ts, []byte("{}")))
}
