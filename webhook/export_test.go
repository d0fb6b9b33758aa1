package webhook

// RetryDelay is retryDelay, for the tests of its bounds.
var RetryDelay = retryDelay
