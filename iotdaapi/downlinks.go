package iotdaapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// The downlinks of MQTT devices: device messages (CreateMessage, and
// ShowDeviceMessage to ask about one), synchronous commands (CreateCommand)
// and property sets (UpdateProperties). They are signed, sent and refused
// as the asynchronous command API is: the same *ValidationError, *APIError,
// *DecodeError and transport errors, classified by Classify.

// Limits of the downlink APIs' references.
const (
	// maxMessageIDLen bounds a message id: it is part of ShowDeviceMessage's
	// path, so it keeps to the ids' characters, which need no escaping.
	maxMessageIDLen  = 128
	maxMessageName   = 128
	maxTopicLen      = 128
	maxPropertiesLen = 64 // services in one UpdateProperties call
)

// MessageRequest is the body of CreateMessage ("Deliver a Message to a
// Device").
type MessageRequest struct {
	// MessageID is chosen by the caller (a UUID is recommended); it is
	// unique per device only. cmdtrack always sets it, so that the message
	// is recorded under its id before the call.
	MessageID string `json:"message_id,omitempty"`
	Name      string `json:"name,omitempty"`
	// Message is the payload: a JSON object, or a JSON string.
	Message json.RawMessage `json:"message"`
	// Topic is the topic's suffix under the platform's own prefix;
	// TopicFullName a whole topic of the device's choosing. At most one.
	Topic         string `json:"topic,omitempty"`
	TopicFullName string `json:"topic_full_name,omitempty"`
	// PayloadFormat is "standard" (default) or "raw".
	PayloadFormat string `json:"payload_format,omitempty"`
	// TTL is how long, in minutes, the platform keeps the message for an
	// offline device; nil means its default (a day).
	TTL *int `json:"ttl,omitempty"`
}

// DeviceMessage is a device message as the API describes it: the answer of
// ShowDeviceMessage, or of CreateMessage (whose result is folded in). Times
// are UTC strings as yyyyMMdd'T'HHmmss'Z'; empty means not reported.
type DeviceMessage struct {
	// DeviceID is the device asked about (the answers do not repeat it).
	DeviceID  string          `json:"-"`
	MessageID string          `json:"message_id"`
	Name      string          `json:"name"`
	Message   json.RawMessage `json:"message"`
	Topic     string          `json:"topic"`
	// Status is PENDING, DELIVERED, FAILED or TIMEOUT.
	Status       string     `json:"status"`
	CreatedTime  string     `json:"created_time"`
	FinishedTime string     `json:"finished_time"`
	ErrorInfo    *ErrorInfo `json:"error_info"`

	// Raw is the answer's body as received, kept as its history payload.
	Raw json.RawMessage `json:"-"`
}

// ErrorInfo is why a message failed, as the platform says it.
type ErrorInfo struct {
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
}

// createMessageResponse is CreateMessage's 200 answer.
type createMessageResponse struct {
	MessageID string `json:"message_id"`
	Result    struct {
		Status       string `json:"status"`
		CreatedTime  string `json:"created_time"`
		FinishedTime string `json:"finished_time"`
	} `json:"result"`
}

// ValidateMessage checks everything about a CreateMessage call that can be
// checked without the platform, as CreateMessage does before sending. A
// caller that records the message before the call uses it so as not to
// record one that will never be sent.
func ValidateMessage(deviceID string, req MessageRequest) error {
	if err := checkID("device_id", deviceID, maxDeviceIDLen); err != nil {
		return err
	}
	if req.MessageID != "" {
		if err := checkID("message_id", req.MessageID, maxMessageIDLen); err != nil {
			return err
		}
	}
	if n := utf8.RuneCountInString(req.Name); n > maxMessageName {
		return &ValidationError{Field: "name", Reason: "must be at most " + strconv.Itoa(maxMessageName) + " characters, got " + strconv.Itoa(n)}
	}
	switch {
	case req.Topic != "" && req.TopicFullName != "":
		return &ValidationError{Field: "topic", Reason: "set topic or topic_full_name, not both"}
	case utf8.RuneCountInString(req.Topic) > maxTopicLen, utf8.RuneCountInString(req.TopicFullName) > maxTopicLen:
		return &ValidationError{Field: "topic", Reason: "must be at most " + strconv.Itoa(maxTopicLen) + " characters"}
	}
	switch req.PayloadFormat {
	case "", "standard", "raw":
	default:
		return &ValidationError{Field: "payload_format", Reason: `must be "standard" or "raw", got ` + strconv.Quote(req.PayloadFormat)}
	}
	if req.TTL != nil && *req.TTL < 0 {
		return &ValidationError{Field: "ttl", Reason: "must not be negative, got " + strconv.Itoa(*req.TTL)}
	}
	if !json.Valid(req.Message) {
		return &ValidationError{Field: "message", Reason: "is required: a JSON object, or a JSON string"}
	}
	_, err := encodeRequest(req, "message")
	return err
}

// CreateMessage delivers a message to deviceID (POST
// /v5/iot/{project_id}/devices/{device_id}/messages) and returns what the
// platform answered about it. Errors are as for SendAsyncCommand; an answer
// without a message id or about another message is a *DecodeError. ctx
// bounds the whole exchange.
func (c *Client) CreateMessage(ctx context.Context, deviceID string, req MessageRequest) (*DeviceMessage, error) {
	if err := ValidateMessage(deviceID, req); err != nil {
		return nil, err
	}
	body, err := encodeRequest(req, "message")
	if err != nil {
		return nil, err
	}
	path := "/v5/iot/" + c.projectID + "/devices/" + deviceID + "/messages"
	respBody, status, err := c.do(ctx, http.MethodPost, path, body, "send message to device "+deviceID)
	if err != nil {
		return nil, err
	}
	var r createMessageResponse
	if err := json.Unmarshal(respBody, &r); err != nil {
		return nil, newDecodeError("create message response", status, respBody, err)
	}
	switch {
	case r.MessageID == "":
		return nil, newDecodeError("create message response", status, respBody, fmt.Errorf("the answer has no message_id"))
	case req.MessageID != "" && r.MessageID != req.MessageID:
		return nil, newDecodeError("create message response", status, respBody,
			fmt.Errorf("the answer is about message %q, not %q", r.MessageID, req.MessageID))
	}
	return &DeviceMessage{
		DeviceID: deviceID, MessageID: r.MessageID, Name: req.Name, Topic: req.Topic,
		Status: r.Result.Status, CreatedTime: r.Result.CreatedTime, FinishedTime: r.Result.FinishedTime, Raw: respBody,
	}, nil
}

// ShowDeviceMessage asks for one message of deviceID by its id (GET
// /v5/iot/{project_id}/devices/{device_id}/messages/{message_id}). Errors
// are as for ShowAsyncDeviceCommand: a message the platform does not know is
// an *APIError of ClassNotFound; an answer about another message, or
// without a status, a *DecodeError.
func (c *Client) ShowDeviceMessage(ctx context.Context, deviceID, messageID string) (*DeviceMessage, error) {
	if err := checkID("device_id", deviceID, maxDeviceIDLen); err != nil {
		return nil, err
	}
	if err := checkID("message_id", messageID, maxMessageIDLen); err != nil {
		return nil, err
	}
	path := "/v5/iot/" + c.projectID + "/devices/" + deviceID + "/messages/" + messageID
	respBody, status, err := c.do(ctx, http.MethodGet, path, nil, "show message "+messageID+" of device "+deviceID)
	if err != nil {
		return nil, err
	}
	var out DeviceMessage
	if err := json.Unmarshal(respBody, &out); err != nil {
		return nil, newDecodeError("show message response", status, respBody, err)
	}
	switch {
	case out.MessageID != messageID:
		return nil, newDecodeError("show message response", status, respBody,
			fmt.Errorf("the answer is about message %q, not %q", out.MessageID, messageID))
	case out.Status == "":
		return nil, newDecodeError("show message response", status, respBody, errNoStatus)
	}
	out.DeviceID, out.Raw = deviceID, respBody
	return &out, nil
}

// CommandRequest is the body of CreateCommand ("Deliver a Synchronous
// Command").
type CommandRequest struct {
	ServiceID   string          `json:"service_id,omitempty"`
	CommandName string          `json:"command_name,omitempty"`
	Paras       json.RawMessage `json:"paras"`
}

// PropertiesRequest is the body of UpdateProperties ("Set Device
// Properties"): services is a JSON array of {service_id, properties}.
type PropertiesRequest struct {
	Services json.RawMessage `json:"services"`
}

// SyncResponse is what CreateCommand and UpdateProperties answer once the
// device has answered: the platform's command id (CreateCommand only) and
// the device's response, as the device wrote it.
type SyncResponse struct {
	CommandID string          `json:"command_id"`
	Response  json.RawMessage `json:"response"`
	// Raw is the answer's body as received.
	Raw json.RawMessage `json:"-"`
}

// ValidateCommand checks a CreateCommand call as CreateCommand does.
func ValidateCommand(deviceID string, req CommandRequest) error {
	if err := checkID("device_id", deviceID, maxDeviceIDLen); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(req.ServiceID); n > maxServiceIDLen {
		return &ValidationError{Field: "service_id", Reason: "must be at most " + strconv.Itoa(maxServiceIDLen) + " characters, got " + strconv.Itoa(n)}
	}
	if n := utf8.RuneCountInString(req.CommandName); n > maxCommandNameLen {
		return &ValidationError{Field: "command_name", Reason: "must be at most " + strconv.Itoa(maxCommandNameLen) + " characters, got " + strconv.Itoa(n)}
	}
	if err := validateParas(req.Paras); err != nil {
		return err
	}
	_, err := encodeRequest(req, "paras")
	return err
}

// ValidateProperties checks an UpdateProperties call as UpdateProperties
// does: services is a non-empty array of objects, each naming its service.
func ValidateProperties(deviceID string, req PropertiesRequest) error {
	if err := checkID("device_id", deviceID, maxDeviceIDLen); err != nil {
		return err
	}
	var services []struct {
		ServiceID  string          `json:"service_id"`
		Properties json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(req.Services, &services); err != nil {
		return &ValidationError{Field: "services", Reason: `must be a JSON array such as [{"service_id":"Meter","properties":{"interval":60}}]: ` + err.Error()}
	}
	if len(services) == 0 || len(services) > maxPropertiesLen {
		return &ValidationError{Field: "services", Reason: "must hold 1 to " + strconv.Itoa(maxPropertiesLen) + " services, got " + strconv.Itoa(len(services))}
	}
	for i, s := range services {
		if s.ServiceID == "" {
			return &ValidationError{Field: "services", Reason: fmt.Sprintf("service %d has no service_id", i)}
		}
		if err := validateParas(s.Properties); err != nil {
			return &ValidationError{Field: "services", Reason: fmt.Sprintf("service %d (%s): properties must be a JSON object", i, s.ServiceID)}
		}
	}
	_, err := encodeRequest(req, "services")
	return err
}

// CreateCommand delivers a synchronous command to deviceID (POST
// /v5/iot/{project_id}/devices/{device_id}/commands) and waits for the
// device's answer, which the platform returns (or an error, after about
// 20 s). The platform forwards nothing else about it: what this returns is
// all there is. Errors are as for SendAsyncCommand.
func (c *Client) CreateCommand(ctx context.Context, deviceID string, req CommandRequest) (*SyncResponse, error) {
	if err := ValidateCommand(deviceID, req); err != nil {
		return nil, err
	}
	body, err := encodeRequest(req, "paras")
	if err != nil {
		return nil, err
	}
	path := "/v5/iot/" + c.projectID + "/devices/" + deviceID + "/commands"
	return c.sync(ctx, http.MethodPost, path, body, "send command to device "+deviceID, "command response")
}

// UpdateProperties sets properties of deviceID (PUT
// /v5/iot/{project_id}/devices/{device_id}/properties; MQTT devices only)
// and waits for the device's answer, as CreateCommand does.
func (c *Client) UpdateProperties(ctx context.Context, deviceID string, req PropertiesRequest) (*SyncResponse, error) {
	if err := ValidateProperties(deviceID, req); err != nil {
		return nil, err
	}
	body, err := encodeRequest(req, "services")
	if err != nil {
		return nil, err
	}
	path := "/v5/iot/" + c.projectID + "/devices/" + deviceID + "/properties"
	return c.sync(ctx, http.MethodPut, path, body, "set properties of device "+deviceID, "properties response")
}

// sync makes a synchronous call and reads its answer.
func (c *Client) sync(ctx context.Context, method, path string, body []byte, what, answer string) (*SyncResponse, error) {
	respBody, status, err := c.do(ctx, method, path, body, what)
	if err != nil {
		return nil, err
	}
	var out SyncResponse
	if err := json.Unmarshal(respBody, &out); err != nil {
		return nil, newDecodeError(answer, status, respBody, err)
	}
	out.Raw = respBody
	return &out, nil
}
