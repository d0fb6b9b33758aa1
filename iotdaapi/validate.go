package iotdaapi

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits from the "Deliver an Asynchronous Command" API reference.
const (
	maxDeviceIDLen    = 128
	maxCommandIDLen   = 100 // ShowAsyncDeviceCommand's command_id
	maxServiceIDLen   = 64
	maxCommandNameLen = 128
	// MaxRequestSize is the documented limit on the serialized request body.
	MaxRequestSize = 256 * 1024
	// MaxExpireTime is the longest a delayed command can be cached (2 days).
	MaxExpireTime = 172800
	// maxIDLen bounds project and instance ids; real ones are 32 hex digits
	// or a UUID, so this only stops obvious garbage.
	maxIDLen = 64
)

// Send strategies accepted by the API.
const (
	// SendImmediately delivers the command now; expire_time is ignored.
	SendImmediately = "immediately"
	// SendDelay caches the command until the device reports data or comes
	// online, for ExpireTime seconds (0 or unset means 24 hours).
	SendDelay = "delay"
)

// isIDChar reports whether c is allowed in a device id: letters, digits,
// underscore and hyphen. Restricting to this set also means ids never need
// URL escaping, so the path we send and the path we sign are identical.
func isIDChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-'
}

func checkID(field, v string, maxLen int) error {
	if v == "" {
		return &ValidationError{Field: field, Reason: "must not be empty"}
	}
	if len(v) > maxLen {
		return &ValidationError{Field: field, Reason: "must be at most " + strconv.Itoa(maxLen) + " characters, got " + strconv.Itoa(len(v))}
	}
	for i := 0; i < len(v); i++ {
		if !isIDChar(v[i]) {
			return &ValidationError{Field: field, Reason: "may contain only letters, digits, '_' and '-', found " + strconv.QuoteRune(rune(v[i]))}
		}
	}
	return nil
}

func validateConfig(cfg Config) (*url.URL, error) {
	u, err := validateEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if err := checkID("Config.ProjectID", cfg.ProjectID, maxIDLen); err != nil {
		return nil, err
	}
	if cfg.InstanceID != "" {
		if err := checkID("Config.InstanceID", cfg.InstanceID, maxIDLen); err != nil {
			return nil, err
		}
	}
	if hc := cfg.HTTPClient; hc != nil {
		if cfg.CAFile != "" {
			return nil, &ValidationError{Field: "Config.CAFile", Reason: "set either CAFile or HTTPClient, not both"}
		}
		if tr, ok := hc.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil && tr.TLSClientConfig.InsecureSkipVerify {
			return nil, &ValidationError{Field: "Config.HTTPClient", Reason: "certificate verification may not be skipped; trust a private CA with CAFile instead"}
		}
	}
	hasAK := cfg.AccessKey != "" || cfg.SecretKey != ""
	switch {
	case hasAK && (cfg.AccessKey == "" || cfg.SecretKey == ""):
		return nil, &ValidationError{Field: "Config.AccessKey/SecretKey", Reason: "both AccessKey and SecretKey are required for AK/SK signing"}
	case hasAK && cfg.Token != "":
		return nil, &ValidationError{Field: "Config.Token", Reason: "set either AccessKey/SecretKey or Token, not both"}
	case !hasAK && cfg.Token == "":
		return nil, &ValidationError{Field: "Config.AccessKey/SecretKey", Reason: "credentials required: set AccessKey and SecretKey (preferred) or Token"}
	}
	return u, nil
}

// validateEndpoint requires https so that tokens and signed requests never
// cross the network in clear text; plain http is allowed only for loopback
// hosts so tests can use httptest.Server.
func validateEndpoint(raw string) (*url.URL, error) {
	const field = "Config.Endpoint"
	if raw == "" {
		return nil, &ValidationError{Field: field, Reason: "must not be empty"}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &ValidationError{Field: field, Reason: err.Error()}
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, &ValidationError{Field: field, Reason: "must be an absolute URL such as https://iotda.cn-north-4.myhuaweicloud.com"}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, &ValidationError{Field: field, Reason: "must be scheme://host[:port] without path, query or credentials"}
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, &ValidationError{Field: field, Reason: "must use https (http is allowed only for loopback hosts)"}
		}
	default:
		return nil, &ValidationError{Field: field, Reason: "scheme must be https, got " + strconv.Quote(u.Scheme)}
	}
	u.Path = ""
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateRequest checks everything that can be checked without the platform.
func validateRequest(deviceID string, req AsyncCommandRequest) error {
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
	switch req.SendStrategy {
	case SendImmediately, SendDelay:
	case "":
		return &ValidationError{Field: "send_strategy", Reason: `is required: "immediately" or "delay"`}
	default:
		return &ValidationError{Field: "send_strategy", Reason: `must be "immediately" or "delay", got ` + strconv.Quote(req.SendStrategy)}
	}
	if req.ExpireTime != nil {
		et := *req.ExpireTime
		if et < 0 || et > MaxExpireTime {
			return &ValidationError{Field: "expire_time", Reason: "must be between 0 and " + strconv.Itoa(MaxExpireTime) + " seconds, got " + strconv.Itoa(et)}
		}
		// The platform silently ignores expire_time for immediate delivery;
		// a positive value there is almost certainly a caller mistake.
		if et > 0 && req.SendStrategy == SendImmediately {
			return &ValidationError{Field: "expire_time", Reason: `only applies to send_strategy "delay"; leave it unset or 0 for "immediately"`}
		}
	}
	return nil
}

func validateParas(p json.RawMessage) error {
	trimmed := bytes.TrimSpace(p)
	if len(trimmed) == 0 {
		return &ValidationError{Field: "paras", Reason: "is required (a JSON object such as {\"value\":\"ON\"})"}
	}
	if !json.Valid(trimmed) {
		return &ValidationError{Field: "paras", Reason: "is not valid JSON"}
	}
	if trimmed[0] != '{' {
		return &ValidationError{Field: "paras", Reason: "must be a JSON object"}
	}
	return nil
}
