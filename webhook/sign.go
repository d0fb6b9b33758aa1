package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Signer signs requests per the Standard Webhooks specification, with one
// or more secrets.
type Signer struct {
	keys [][]byte
}

// NewSigner returns a Signer for secrets ("whsec_" and base64 each).
func NewSigner(secrets []string) (*Signer, error) {
	s := &Signer{}
	for _, sec := range secrets {
		key, err := decodeSecret(sec)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, key)
	}
	return s, nil
}

// Sign is the webhook-signature header of body sent as id at ts:
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" for each secret,
// space-separated, so that a receiver that knows any one of them verifies
// the request while a secret is rotated.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	unix := strconv.FormatInt(ts.Unix(), 10)
	var b strings.Builder
	for i, key := range s.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		h := hmac.New(sha256.New, key)
		h.Write([]byte(id))
		h.Write([]byte{'.'})
		h.Write([]byte(unix))
		h.Write([]byte{'.'})
		h.Write(body)
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(h.Sum(nil)))
	}
	return b.String()
}
