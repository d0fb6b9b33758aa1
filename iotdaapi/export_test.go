package iotdaapi

import (
	"net/http"
	"time"
)

// Test-only hooks so the external test package can check the signer against
// published vectors without widening the public API.

// SignForTest signs r exactly as the client does, over the given headers.
func SignForTest(r *http.Request, body []byte, ak, sk string, t time.Time, signedHeaders ...string) {
	signer{accessKey: ak, secretKey: sk}.sign(r, body, t, signedHeaders)
}

// CanonicalRequestForTest returns the canonical request the signer hashes.
func CanonicalRequestForTest(r *http.Request, body []byte, signedHeaders ...string) string {
	return canonicalRequest(r, normalizeHeaderNames(signedHeaders), hexSHA256(body))
}

// StringToSignForTest returns the string to sign for a canonical request.
func StringToSignForTest(canonical string, t time.Time) string {
	return stringToSign(canonical, t)
}
