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
			body, err := MessageBody(c.msg)
			require.Equal(t, c.want, string(body))
			if c.class == "" {
				require.Nil(t, err)
				return
			}
			require.NotNil(t, err)
			require.Equal(t, c.class, err.Class)
		})
	}
}
