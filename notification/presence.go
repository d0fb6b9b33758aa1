package notification

import (
	"crypto/sha256"
	"encoding/json"
	"time"
)

// ResourceDeviceStatus is the resource of a device status change ("Push a
// Device Status Change Notification", API reference iot_06_v5_01201).
// DecodeAt skips it, as it skips every resource that is not a command
// status; DecodePresence reads it.
const ResourceDeviceStatus = "device.status"

// PresenceStatus is a device's status as IoTDA reports it.
type PresenceStatus string

// The device statuses IoTDA documents.
const (
	Online   PresenceStatus = "ONLINE"
	Offline  PresenceStatus = "OFFLINE"
	Abnormal PresenceStatus = "ABNORMAL"
	Inactive PresenceStatus = "INACTIVE"
	Frozen   PresenceStatus = "FROZEN"
	// Freezed is how some pages of the platform's documentation spell
	// FROZEN; it is kept as sent.
	Freezed PresenceStatus = "FREEZED"
)

var presenceStatuses = map[PresenceStatus]struct{}{
	Online: {}, Offline: {}, Abnormal: {}, Inactive: {}, Frozen: {}, Freezed: {},
}

// Presence is one device status change.
// Empty strings and zero times mean "not reported" and are stored as NULL.
type Presence struct {
	DeviceID string
	Status   PresenceStatus
	// Since is when the status changed: the body's status_update_time, or
	// the notification's event time when it carries none. The latest change
	// wins the merge.
	Since time.Time
	// EventTime is when the platform generated the notification.
	EventTime      time.Time
	LastOnlineTime time.Time
	RequestID      string

	ProductID string
	AppID     string
	GatewayID string
	NodeID    string
	Tags      json.RawMessage // a JSON array, or nil

	// Payload is the notification as received (UTF-8 JSON).
	Payload []byte
}

// Key identifies the change's content, as Notification.Key does a command
// notification's: the merge's last tie-break, the same for every delivery
// of one notification.
func (p *Presence) Key() []byte {
	var stack [512]byte
	b := append(stack[:0], "presence/1"...)
	b = appendString(b, p.DeviceID)
	b = appendString(b, string(p.Status))
	b = appendTime(b, p.Since)
	b = appendTime(b, p.EventTime)
	b = appendTime(b, p.LastOnlineTime)
	b = appendString(b, p.RequestID)
	b = appendString(b, p.ProductID)
	b = appendString(b, p.AppID)
	b = appendString(b, p.GatewayID)
	b = appendString(b, p.NodeID)
	b = appendJSON(b, p.Tags)
	sum := sha256.Sum256(b)
	return sum[:]
}

type presenceBody struct {
	Status           string `json:"status"`
	LastOnlineTime   string `json:"last_online_time"`
	StatusUpdateTime string `json:"status_update_time"`
}

// presenceEnvelope is a device.status push. The reference table puts body
// in notify_data, beside header; the platform's own sample puts it beside
// notify_data, at the top level. Both are read.
type presenceEnvelope = pushBeside[presenceData, presenceBody]

// presenceData names an unnamed struct, as header does, to keep the reasons
// that name its type.
type presenceData = struct {
	Header header        `json:"header"`
	Body   *presenceBody `json:"body"`
}

// DecodePresence parses a device.status / update notification, for which
// DecodeAt returns a *SkipError with Resource ResourceDeviceStatus. It
// returns an *Error, as DecodeAt does, for anything that cannot be stored
// as it is. The returned Presence's Payload aliases body, and so may its
// Tags.
//
// The body is notify_data.body, or, where notify_data has none, the
// top-level body (the sample's shape); a notification with both is read
// from notify_data.body.
func DecodePresence(body []byte) (Presence, error) {
	var p Presence
	var env presenceEnvelope
	if err := env.read(body, ResourceDeviceStatus); err != nil {
		return p, err
	}
	h := &env.NotifyData.Header
	b, where, err := env.bodyOf(env.NotifyData.Body, h)
	if err != nil {
		return p, err
	}
	if b.Status == "" {
		return p, errorf(ClassMissingField, "%s.status is missing", where)
	}
	p.Status = PresenceStatus(asciiUpper(b.Status))
	if _, ok := presenceStatuses[p.Status]; !ok {
		return p, errorf(ClassUnknownStatus, "unknown device status %q", b.Status)
	}
	if p.EventTime, err = env.eventTime(); err != nil {
		return p, err
	}
	p.Since = p.EventTime
	if b.StatusUpdateTime != "" {
		if p.Since, err = parseTime(where+".status_update_time", b.StatusUpdateTime); err != nil {
			return p, err
		}
	}
	if b.LastOnlineTime != "" {
		if p.LastOnlineTime, err = parseTime(where+".last_online_time", b.LastOnlineTime); err != nil {
			return p, err
		}
	}
	p.DeviceID, p.ProductID, p.AppID, p.GatewayID, p.NodeID = h.DeviceID, h.ProductID, h.AppID, h.GatewayID, h.NodeID
	if p.Tags, err = headerTags(h); err != nil {
		return p, err
	}
	p.RequestID = env.RequestID
	p.Payload = body
	return p, storable(body)
}

// Kind names the device status change's kind.
func (p *Presence) Kind() string { return KindPresence }

// Time is when the platform generated the change's notification.
func (p *Presence) Time() time.Time { return p.EventTime }

// Body is the notification as received.
func (p *Presence) Body() []byte { return p.Payload }

// Ahead names the first time the change claims that is after limit: the
// latest change wins the merge.
func (p *Presence) Ahead(limit time.Time) (field string, at time.Time, ok bool) {
	return firstAfter(limit, named{"event time", p.EventTime}, named{"status_update_time", p.Since},
		named{"last_online_time", p.LastOnlineTime})
}
