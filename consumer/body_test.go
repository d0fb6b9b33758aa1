package consumer

import (
	"testing"

	"github.com/Azure/go-amqp"
	"github.com/stretchr/testify/require"

	"github.com/cmdtrack/cmdtrack/notification"
)

func TestMessageBody(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		msg   *amqp.Message
		want  string
		class notification.Class
	}{
		{"one data section", &amqp.Message{Data: [][]byte{[]byte(`{"a":1}`)}}, `{"a":1}`, ""},
		{"several data sections", &amqp.Message{Data: [][]byte{[]byte(`{"a"`), []byte(`:1}`)}}, `{"a":1}`, ""},
		{"amqp-value string", &amqp.Message{Value: `{"a":1}`}, `{"a":1}`, ""},
		{"amqp-value binary", &amqp.Message{Value: []byte(`{"a":1}`)}, `{"a":1}`, ""},
		{"amqp-value number", &amqp.Message{Value: int64(7)}, `7`, notification.ClassInvalidJSON},
		{"nothing", &amqp.Message{}, ``, notification.ClassEmpty},
		{"null data section", &amqp.Message{Data: [][]byte{nil}}, ``, ""},
		{"empty data sections", &amqp.Message{Data: [][]byte{{}, {}}}, ``, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			body, err := messageBody(c.msg)
			require.Equal(t, c.want, string(body))
			if c.class == "" {
				require.NoError(t, err)
				return
			}
			var nerr *notification.Error
			require.ErrorAs(t, err, &nerr)
			require.Equal(t, c.class, nerr.Class)
		})
	}
}

// An empty body must become a storable dead letter (its body column is NOT
// NULL), or it would crash-loop the worker.
func TestEmptyBodyIsStorable(t *testing.T) {
	t.Parallel()
	for _, body := range [][]byte{nil, {}} {
		it := DecodeItem(body, "test", 1024)
		require.NotNil(t, it.DeadLetter)
		require.NotNil(t, it.DeadLetter.Body)
		require.Equal(t, notification.ClassEmpty, it.DeadLetter.Class)
	}
}
