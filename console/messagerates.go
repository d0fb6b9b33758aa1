package console

// MessageCount is a number of messages in one status.
type MessageCount struct {
	Status   string `json:"status"`
	Messages int64  `json:"messages"`
}

// MessageRates are a set of messages' outcome counts and rates (0 to 1, of
// all the messages counted, final or not).
type MessageRates struct {
	Messages     int64   `json:"messages"`
	Delivered    int64   `json:"delivered"`
	Failed       int64   `json:"failed"`
	TimedOut     int64   `json:"timed_out"`
	Pending      int64   `json:"pending"`
	DeliveryRate float64 `json:"delivery_rate"`
	FailureRate  float64 `json:"failure_rate"`
	TimeoutRate  float64 `json:"timeout_rate"`
}

func (r *MessageRates) add(status string, n int64) {
	r.Messages += n
	switch status {
	case "DELIVERED":
		r.Delivered += n
	case "FAILED":
		r.Failed += n
	case "TIMEOUT":
		r.TimedOut += n
	case "PENDING":
		r.Pending += n
	}
	r.DeliveryRate, r.FailureRate, r.TimeoutRate = ratio(r.Delivered, r.Messages), ratio(r.Failed, r.Messages), ratio(r.TimedOut, r.Messages)
}

// rates are the same shares as a command's, for the bar: delivered is a
// message's success.
func (r MessageRates) rates() Rates {
	return Rates{Commands: r.Messages, Successful: r.Delivered, Failed: r.Failed, TimedOut: r.TimedOut,
		SuccessRate: r.DeliveryRate, FailureRate: r.FailureRate, TimeoutRate: r.TimeoutRate}
}

// ProductMessageRates are one product's message rates.
type ProductMessageRates struct {
	ProductID string `json:"product_id"`
	MessageRates
}

// MessageWindow is the overview of the messages of a window (by their
// day, to the hour).
type MessageWindow struct {
	Statuses []MessageCount        `json:"statuses"`
	Total    MessageRates          `json:"total"`
	Products []ProductMessageRates `json:"products"`
}
