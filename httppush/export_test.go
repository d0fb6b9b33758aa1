package httppush

import "crypto/sha256"

// TokenMatches is tokenMatches, for tests.
var TokenMatches = tokenMatches

// TokenDigest is what s compares presented tokens with.
func TokenDigest(s *Server) [sha256.Size]byte { return s.token }

// ConfiguredToken is the token s kept from its configuration.
func ConfiguredToken(s *Server) string { return s.cfg.Token }
