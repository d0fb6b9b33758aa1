//go:build race

package testenv

// raceEnabled builds the worker binary with the race detector when the tests
// themselves run with it, so `make test` race-checks the real process too.
const raceEnabled = true
