package notification

import (
	"encoding/json"
	"strings"
	"time"
)

// Legacy formats (the platform's v1/OceanConnect editions), pushed by HTTP:
//
//   - command status callbacks, v1 and NB-IoT (handleNBCommandStateChanged):
//     {"deviceId": "...", "commandId": "...", "result": {"resultCode": "SENT", "resultDetail": {...}}}
//   - the device acknowledgment: {"notifyType": "messageConfirm", "header":
//     {"requestId", "from": "/devices/{id}[/services/{sid}]", "to", "status", "timestamp"}, "body": {...}}
//
// Their codes map onto the v5 statuses (README, "Legacy callbacks").
var legacyCodes = map[string]Status{
	"PENDING":    Pending,
	"SENT":       Sent,
	"DELIVERED":  Delivered,
	"SUCCESS":    Successful,
	"SUCCESSFUL": Successful,
	"FAIL":       Failed,
	"FAILED":     Failed,
	"TIMEOUT":    Timeout,
	"EXPIRED":    Expired,
	"CANCELED":   Canceled,
	"CANCELLED":  Canceled,
	"EXECUTED":   Successful, // messageConfirm's word for done
}

type legacyBody struct {
	NotifyType string `json:"notifyType"`
	DeviceID   string `json:"deviceId"`
	CommandID  string `json:"commandId"`
	Result     *struct {
		ResultCode   string          `json:"resultCode"`
		ResultDetail json.RawMessage `json:"resultDetail"`
	} `json:"result"`
	Header *struct {
		RequestID string `json:"requestId"`
		From      string `json:"from"`
		Status    string `json:"status"`
		Timestamp string `json:"timestamp"`
	} `json:"header"`
	Body json.RawMessage `json:"body"`
}

func decodeLegacy(body []byte, receivedAt time.Time) (Notification, error) {
	var n Notification
	var lb legacyBody
	if err := json.Unmarshal(body, &lb); err != nil {
		return n, jsonError(err)
	}
	switch {
	case lb.NotifyType == "messageConfirm":
		return decodeConfirm(body, &lb)
	case lb.NotifyType != "":
		return n, &SkipError{Resource: lb.NotifyType}
	case lb.CommandID == "" && lb.Result == nil:
		return n, errorf(ClassNotNotify, "no \"resource\", \"notifyType\" or \"commandId\": not an IoTDA notification")
	case lb.CommandID == "":
		return n, errorf(ClassMissingField, "commandId is missing")
	case lb.Result == nil || lb.Result.ResultCode == "":
		return n, errorf(ClassMissingField, "result.resultCode is missing")
	}
	st, ok := legacyCodes[asciiUpper(lb.Result.ResultCode)]
	if !ok {
		return n, errorf(ClassUnknownStatus, "unknown legacy result code %q", lb.Result.ResultCode)
	}
	n.CommandID, n.DeviceID, n.Status = lb.CommandID, lb.DeviceID, st
	// No event time in these callbacks: the receive time stands in.
	n.EventTime, n.TimeFromReceipt = receivedAt.UTC().Truncate(time.Microsecond), true
	n.Result = nullToNil(lb.Result.ResultDetail)
	n.Payload = body
	return n, storable(body)
}

// decodeConfirm maps a messageConfirm acknowledgment. It carries no command
// id; the platform identifies the command by the request id it was sent
// with, so header.requestId is used as the command id.
func decodeConfirm(body []byte, lb *legacyBody) (Notification, error) {
	var n Notification
	h := lb.Header
	switch {
	case h == nil:
		return n, errorf(ClassMissingField, "messageConfirm: header is missing")
	case h.RequestID == "":
		return n, errorf(ClassMissingField, "messageConfirm: header.requestId is missing")
	case h.Status == "":
		return n, errorf(ClassMissingField, "messageConfirm: header.status is missing")
	case h.Timestamp == "":
		return n, errorf(ClassMissingField, "messageConfirm: header.timestamp is missing")
	}
	st, ok := legacyCodes[asciiUpper(h.Status)]
	if !ok {
		return n, errorf(ClassUnknownStatus, "unknown messageConfirm status %q", h.Status)
	}
	t, err := parseTime("header.timestamp", h.Timestamp)
	if err != nil {
		return n, err
	}
	n.CommandID, n.Status, n.EventTime, n.RequestID = h.RequestID, st, t, h.RequestID
	// from is /devices/{deviceId} or /devices/{deviceId}/services/{serviceId}.
	if rest, ok := strings.CutPrefix(h.From, "/devices/"); ok {
		n.DeviceID, _, _ = strings.Cut(rest, "/")
	}
	if r := nullToNil(lb.Body); r != nil && string(r) != "{}" {
		n.Result = r
	}
	n.Payload = body
	return n, storable(body)
}
