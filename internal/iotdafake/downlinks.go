package iotdafake

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The downlinks of MQTT devices. Their calls are counted, and answered, by
// key: the message id for ShowDeviceMessage (MessageKey), the device for the
// calls that create something (CreateMessageKey, CommandKey,
// PropertiesKey). A create call without answers set succeeds as the
// platform documents it; one for a message never set is a 404.

// MessageKey is the key of ShowDeviceMessage's calls about a message.
func MessageKey(deviceID, messageID string) string { return "message:" + deviceID + "/" + messageID }

// CreateMessageKey is the key of CreateMessage's calls for a device.
func CreateMessageKey(deviceID string) string { return "create-message:" + deviceID }

// CommandKey is the key of CreateCommand's calls for a device.
func CommandKey(deviceID string) string { return "command:" + deviceID }

// PropertiesKey is the key of UpdateProperties' calls for a device.
func PropertiesKey(deviceID string) string { return "properties:" + deviceID }

// Message is a device message as ShowDeviceMessage returns it.
type Message struct {
	MessageID    string          `json:"message_id"`
	Name         string          `json:"name,omitempty"`
	Message      json.RawMessage `json:"message,omitempty"`
	Topic        string          `json:"topic,omitempty"`
	Status       string          `json:"status"`
	CreatedTime  string          `json:"created_time,omitempty"`
	FinishedTime string          `json:"finished_time,omitempty"`
	ErrorInfo    *ErrorInfo      `json:"error_info,omitempty"`
}

// ErrorInfo is why a message failed.
type ErrorInfo struct {
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
}

// SetMessage makes the server answer m when asked about it on deviceID.
func (s *Server) SetMessage(deviceID string, m Message) {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // a Message always marshals
	}
	s.SetAnswers(MessageKey(deviceID, m.MessageID), Answer{Body: string(b)})
}

// Bodies are the request bodies of the calls of key, in order.
func (s *Server) Bodies(key string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies[key]...)
}

// The ways a synchronous call or a message fails, as tests play them. The
// platform's error codes for an offline device and a device that did not
// answer in time are not confirmed (../shared/notes/iotda-downlinks.md), so
// these bodies carry codes of the fake's own: what a caller may rely on is
// the HTTP status and that the body is the platform's error document.
var (
	// Offline: the device is not connected.
	Offline = Answer{Status: http.StatusBadRequest, Body: `{"error_code":"FAKE.OFFLINE","error_msg":"The device is offline."}`}
	// DeviceTimeout: the device did not answer within the platform's 20 s.
	DeviceTimeout = Answer{Status: http.StatusGatewayTimeout, Body: `{"error_code":"FAKE.TIMEOUT","error_msg":"The device did not respond in time."}`}
	// Unavailable: the platform failed.
	Unavailable = Answer{Status: http.StatusServiceUnavailable, Body: `{"error_code":"IOTDA.000001","error_msg":"Internal error."}`}
	// Hangup: the connection closes with no answer at all.
	Hangup = Answer{Hangup: true}
)

// routed is how the server answers one path: the key its calls count
// under, and, for calls that create something, the default answer.
type routed struct {
	key    string
	answer func(body []byte) Answer
}

var syncCommands atomic.Int64

// route reads /v5/iot/{project}/devices/{device}/...; parts are the path's
// segments.
func route(method string, parts []string) (routed, bool) {
	if len(parts) < 6 || parts[0] != "v5" || parts[1] != "iot" || parts[3] != "devices" {
		return routed{}, false
	}
	device := parts[4]
	switch {
	case method == http.MethodGet && len(parts) == 7 && parts[5] == "async-commands":
		return routed{key: parts[6]}, true
	case method == http.MethodGet && len(parts) == 7 && parts[5] == "messages":
		return routed{key: MessageKey(device, parts[6]),
			answer: func([]byte) Answer {
				return Answer{Status: http.StatusNotFound, Body: `{"error_code":"IOTDA.014016","error_msg":"The message does not exist."}`}
			}}, true
	case method == http.MethodPost && len(parts) == 6 && parts[5] == "messages":
		return routed{key: CreateMessageKey(device), answer: createdMessage}, true
	case method == http.MethodPost && len(parts) == 6 && parts[5] == "commands":
		return routed{key: CommandKey(device), answer: func([]byte) Answer {
			return Answer{Body: `{"command_id":"sync-` + strconv.FormatInt(syncCommands.Add(1), 10) +
				`","response":{"result_code":0,"response_name":"COMMAND_RESPONSE","paras":{"result":"ok"}}}`}
		}}, true
	case method == http.MethodPut && len(parts) == 6 && parts[5] == "properties":
		return routed{key: PropertiesKey(device), answer: func([]byte) Answer {
			return Answer{Body: `{"response":{"result_code":0,"result_desc":"success"}}`}
		}}, true
	}
	return routed{}, false
}

// createdMessage is CreateMessage's answer: the message, held PENDING for
// an offline device until it connects.
func createdMessage(body []byte) Answer {
	var req struct {
		MessageID string `json:"message_id"`
	}
	if json.Unmarshal(body, &req) != nil {
		return Answer{Status: http.StatusBadRequest, Body: `{"error_code":"IOTDA.000006","error_msg":"Invalid request body."}`}
	}
	if req.MessageID == "" {
		req.MessageID = "platform-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	}
	out, _ := json.Marshal(map[string]any{"message_id": req.MessageID,
		"result": map[string]string{"status": "PENDING", "created_time": time.Now().UTC().Format("20060102T150405Z")}})
	return Answer{Body: string(out)}
}
