package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/iotdaapi"
	"github.com/cmdtrack/cmdtrack/notification"
	"github.com/cmdtrack/cmdtrack/store"
)

// sendFlags are `cmdtrack send`'s arguments.
type sendFlags struct {
	device, paras, service, command, strategy string
	expire                                    int
	timeout                                   time.Duration

	// A device message (-message) instead of an asynchronous command.
	message, messageID, name, topic string
	ttl                             int
	// A synchronous command (-sync) or a property set (-properties).
	sync       bool
	properties string
	product    string
}

// parseSendFlags reads send's arguments; -h prints their usage on stdout
// and returns flag.ErrHelp.
func parseSendFlags(args []string, stdout, stderr io.Writer) (action, error) {
	var f sendFlags
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.device, "device", "", "device id (required)")
	fs.StringVar(&f.paras, "paras", "", `command parameters, a JSON object (required), e.g. '{"value":"ON"}'`)
	fs.StringVar(&f.service, "service", "", "service id from the product model")
	fs.StringVar(&f.command, "command", "", "command name from the product model")
	fs.StringVar(&f.strategy, "strategy", iotdaapi.SendImmediately, "immediately or delay")
	fs.IntVar(&f.expire, "expire", -1, "seconds the platform caches the command (delay only)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "limit for the API call (a synchronous call waits up to about 20 s for the device)")
	fs.StringVar(&f.message, "message", "", `send a device message (CreateMessage) with this payload: JSON, or else text sent as a JSON string`)
	fs.StringVar(&f.messageID, "message-id", "", "the message's id (default: a new UUID); unique per device")
	fs.StringVar(&f.name, "name", "", "the message's name")
	fs.StringVar(&f.topic, "topic", "", "the message's topic (the suffix under the platform's prefix)")
	fs.IntVar(&f.ttl, "ttl", -1, "minutes the platform keeps the message for an offline device (default: the platform's, a day)")
	fs.BoolVar(&f.sync, "sync", false, "send a synchronous command (CreateCommand) with -paras, and record its answer")
	fs.StringVar(&f.properties, "properties", "", `set properties (UpdateProperties), e.g. '[{"service_id":"Meter","properties":{"interval":60}}]', and record the answer`)
	fs.StringVar(&f.product, "product", "", "the device's product id, recorded with a message or call (default: as the device's notifications say)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: cmdtrack send -device ID -paras JSON [flags]\n"+
			"       cmdtrack send -device ID -message PAYLOAD [-message-id ID] [-name N] [-topic T] [-ttl MINUTES]\n"+
			"       cmdtrack send -device ID -sync -paras JSON [-service S] [-command NAME]\n"+
			"       cmdtrack send -device ID -properties JSON\n\n"+
			"Delivers an asynchronous command, a device message, a synchronous command or a property\n"+
			"set through IoTDA's API and records it; configuration (CMDTRACK_DATABASE_URL,\n"+
			"CMDTRACK_API_*) comes from the environment, see cmdtrack -h.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if helpAsked(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return nil, flag.ErrHelp
	}
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("send: unexpected argument %q", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	modes := 0
	for _, m := range []string{"message", "sync", "properties"} {
		if set[m] {
			modes++
		}
	}
	switch {
	case modes > 1:
		return nil, usageError{errors.New("send: choose one of -message, -sync and -properties")}
	case f.device == "":
		return nil, usageError{errors.New("send: -device is required")}
	case set["message"] && (set["paras"] || set["service"] || set["command"] || set["strategy"] || set["expire"]):
		return nil, usageError{errors.New("send: -message sends a device message; -paras, -service, -command, -strategy and -expire are for commands")}
	case set["properties"] && (set["paras"] || set["service"] || set["command"]):
		return nil, usageError{errors.New("send: -properties names its services itself; -paras, -service and -command are for commands")}
	case (set["sync"] || set["properties"]) && (set["strategy"] || set["expire"]):
		return nil, usageError{errors.New("send: -strategy and -expire are for asynchronous commands")}
	case modes == 0 && set["product"]:
		return nil, usageError{errors.New("send: -product is for -message, -sync and -properties (an asynchronous command's product comes with its notifications)")}
	case !set["message"] && (set["message-id"] || set["name"] || set["topic"] || set["ttl"]):
		return nil, usageError{errors.New("send: -message-id, -name, -topic and -ttl are for -message")}
	case !set["message"] && !set["properties"] && f.paras == "":
		return nil, usageError{errors.New("send: -device and -paras are required")}
	case f.timeout <= 0:
		return nil, usageError{errors.New("send: -timeout must be positive")}
	}
	switch {
	case set["message"]:
		return func(ctx context.Context, e *env) error { return sendMessage(ctx, e.cfg, e.st, &f, e.stdout) }, nil
	case set["sync"], set["properties"]:
		return func(ctx context.Context, e *env) error { return sendCall(ctx, e.cfg, e.st, &f, e.stdout) }, nil
	}
	return func(ctx context.Context, e *env) error { return send(ctx, e.cfg, e.st, &f, e.stdout) }, nil
}

// apiVars names the variable behind each iotdaapi.Config field, so that a
// refused setting is reported by the name the operator sets.
var apiVars = map[string]string{
	"Config.Endpoint":            "CMDTRACK_API_ENDPOINT",
	"Config.ProjectID":           "CMDTRACK_API_PROJECT_ID",
	"Config.InstanceID":          "CMDTRACK_API_INSTANCE_ID",
	"Config.AccessKey/SecretKey": "CMDTRACK_API_ACCESS_KEY/CMDTRACK_API_SECRET_KEY",
	"Config.Token":               "CMDTRACK_API_TOKEN",
	"Config.CAFile":              "CMDTRACK_API_CA_FILE",
}

// newAPIClient is the IoTDA API client the configuration describes.
func newAPIClient(cfg *Config) (*iotdaapi.Client, error) {
	c, err := iotdaapi.New(iotdaapi.Config{
		Endpoint: cfg.APIEndpoint, ProjectID: cfg.APIProjectID, InstanceID: cfg.APIInstanceID,
		AccessKey: cfg.APIAccessKey, SecretKey: cfg.APISecretKey, Token: cfg.APIToken, CAFile: cfg.APICAFile,
	})
	var verr *iotdaapi.ValidationError
	if errors.As(err, &verr) {
		if name, ok := apiVars[verr.Field]; ok {
			return nil, fmt.Errorf("%s: %s", name, verr.Reason)
		}
	}
	return c, err
}

// send delivers an asynchronous command through IoTDA's API and records it
// in device_commands through the merge rule, with what only creation knows,
// so that status notifications complete the same row in any order.
func send(ctx context.Context, cfg *Config, st *store.Store, f *sendFlags, stdout io.Writer) error {
	client, err := sendClient(ctx, cfg, st)
	if err != nil {
		return err
	}
	req := iotdaapi.AsyncCommandRequest{
		ServiceID: f.service, CommandName: f.command, Paras: json.RawMessage(f.paras), SendStrategy: f.strategy,
	}
	if f.expire >= 0 {
		req.ExpireTime = &f.expire
	}
	callCtx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := client.SendAsyncCommand(callCtx, f.device, req)
	var verr *iotdaapi.ValidationError
	if errors.As(err, &verr) {
		return usageError{fmt.Errorf("send: %w", err)}
	}
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}

	item, err := ingest.FromAPI(resp, time.Now(), cfg.limits())
	if err != nil {
		return fmt.Errorf("send: command %s was created, but: %w", resp.CommandID, err)
	}
	applyCtx, cancelApply := context.WithTimeout(ctx, 30*time.Second)
	res, err := st.Apply(applyCtx, []ingest.Item{item})
	cancelApply()
	if err != nil {
		return fmt.Errorf("send: command %s was created, but recording it failed (its notifications will still create the row): %w", resp.CommandID, err)
	}
	if res[0].Outcome == ingest.DeadLettered {
		return fmt.Errorf("send: command %s was created, but cmdtrack refused to record it (kept as a dead letter): %s", resp.CommandID, res[0].DeadLetter.Reason)
	}
	fmt.Fprintf(stdout, "command %s %s on device %s\n", resp.CommandID, resp.Status, resp.DeviceID)
	return nil
}

// sendClient checks the database, and returns the API client: whatever is
// sent but not recorded is worth avoiding.
func sendClient(ctx context.Context, cfg *Config, st *store.Store) (*iotdaapi.Client, error) {
	pingCtx, cancelPing := context.WithTimeout(ctx, 5*time.Second)
	err := st.Ping(pingCtx)
	cancelPing()
	if err != nil {
		return nil, fmt.Errorf("send: the database is not reachable, nothing was sent: %w", err)
	}
	client, err := newAPIClient(cfg)
	if err != nil {
		return nil, usageError{fmt.Errorf("send: %w", err)}
	}
	return client, nil
}

// record applies one record cmdtrack makes itself. Its context outlives
// ctx: an interrupted send still records what it knows.
func record(ctx context.Context, st *store.Store, it ingest.Item) error {
	applyCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	res, err := st.Apply(applyCtx, []ingest.Item{it})
	switch {
	case err != nil:
		return err
	case res[0].Outcome == ingest.DeadLettered:
		return fmt.Errorf("cmdtrack refused to record it (kept as a dead letter): %s", res[0].DeadLetter.Reason)
	}
	return nil
}

// messagePayload is -message as CreateMessage's message: JSON as written,
// anything else as a JSON string.
func messagePayload(v string) json.RawMessage {
	if json.Valid([]byte(v)) {
		return json.RawMessage(v)
	}
	b, _ := json.Marshal(v) // a string always marshals
	return b
}

// sendMessage sends a device message through CreateMessage with an id
// cmdtrack chooses, and records it in device_messages through the merge
// rule: PENDING before the call, so that a crash between the call and its
// answer leaves a row (which the platform's notifications, or reconcile,
// complete), then what the answer says. The record before the call is timed
// at the start of its second, less a microsecond: the platform's own
// notifications, timed to the second at or after it, win over it.
func sendMessage(ctx context.Context, cfg *Config, st *store.Store, f *sendFlags, stdout io.Writer) error {
	client, err := sendClient(ctx, cfg, st)
	if err != nil {
		return err
	}
	req := iotdaapi.MessageRequest{MessageID: cmp.Or(f.messageID, newUUID()), Name: f.name,
		Message: messagePayload(f.message), Topic: f.topic}
	if f.ttl >= 0 {
		req.TTL = &f.ttl
	}
	if err := iotdaapi.ValidateMessage(f.device, req); err != nil {
		return usageError{fmt.Errorf("send: %w", err)}
	}
	body, _ := json.Marshal(req) // validated: it marshals
	id := req.MessageID
	sent := time.Now()
	pending := &notification.Message{DeviceID: f.device, MessageID: id, Status: notification.MessagePending,
		EventTime: sent.Truncate(time.Second).Add(-time.Microsecond), At: sent, Name: f.name, Topic: f.topic,
		ProductID: f.product, Payload: body}
	if err := record(ctx, st, ingest.Accept(pending, ingest.SourceSend, sent, cfg.limits())); err != nil {
		return fmt.Errorf("send: message %s was not sent, since recording it first failed: %w", id, err)
	}

	callCtx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := client.CreateMessage(callCtx, f.device, req)
	var apiErr *iotdaapi.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.StatusCode < 500:
		// Refused: the platform did not create the message, and will say
		// nothing more about it.
		now := time.Now()
		refused := &notification.Message{DeviceID: f.device, MessageID: id, Status: notification.MessageFailed,
			EventTime: now, At: now, ErrorCode: cmp.Or(apiErr.ErrorCode, fmt.Sprintf("HTTP %d", apiErr.StatusCode)),
			ErrorMsg: apiErr.ErrorMsg, Payload: errorPayload(apiErr)}
		if rerr := record(ctx, st, ingest.Accept(refused, ingest.SourceSend, now, cfg.limits())); rerr != nil {
			return fmt.Errorf("send: message %s was refused (%w), and recording that failed, so its row says PENDING: %w", id, err, rerr)
		}
		return fmt.Errorf("send: message %s was refused, and is recorded FAILED: %w", id, err)
	case err != nil:
		return fmt.Errorf("send: message %s may or may not have been created: its row stays PENDING until the platform's "+
			"notifications or cmdtrack reconcile say more: %w", id, err)
	}
	item, err := ingest.FromAPIMessage(resp, time.Now(), cfg.limits())
	if err == nil {
		err = record(ctx, st, item)
	}
	if err != nil {
		return fmt.Errorf("send: message %s was created, but recording the answer failed (its row says PENDING until its notifications arrive): %w", id, err)
	}
	fmt.Fprintf(stdout, "message %s %s on device %s\n", id, resp.Status, f.device)
	return nil
}

// errorPayload is an API error as JSON, a record's payload.
func errorPayload(e *iotdaapi.APIError) []byte {
	b, _ := json.Marshal(map[string]any{"http_status": e.StatusCode, "error_code": e.ErrorCode,
		"error_msg": e.ErrorMsg, "request_id": e.RequestID})
	return b
}

// sendCall makes a synchronous command (-sync) or a property set
// (-properties) and records the call in device_calls: PENDING before the
// call, so that a crash between the call and its answer leaves a row, then
// its outcome, whatever it is. The platform forwards nothing about these
// calls: this record is all there will be.
func sendCall(ctx context.Context, cfg *Config, st *store.Store, f *sendFlags, stdout io.Writer) error {
	client, err := sendClient(ctx, cfg, st)
	if err != nil {
		return err
	}
	base := notification.Call{CallID: newUUID(), DeviceID: f.device, ProductID: f.product}
	var call func(context.Context) (*iotdaapi.SyncResponse, error)
	var body []byte
	if f.sync {
		req := iotdaapi.CommandRequest{ServiceID: f.service, CommandName: f.command, Paras: json.RawMessage(f.paras)}
		err = iotdaapi.ValidateCommand(f.device, req)
		base.CallKind, base.ServiceID, base.CommandName, base.Request = notification.CallCommand, f.service, f.command, req.Paras
		call = func(ctx context.Context) (*iotdaapi.SyncResponse, error) {
			return client.CreateCommand(ctx, f.device, req)
		}
		body, _ = json.Marshal(req)
	} else {
		req := iotdaapi.PropertiesRequest{Services: json.RawMessage(f.properties)}
		err = iotdaapi.ValidateProperties(f.device, req)
		base.CallKind, base.Request = notification.CallProperties, req.Services
		call = func(ctx context.Context) (*iotdaapi.SyncResponse, error) {
			return client.UpdateProperties(ctx, f.device, req)
		}
		body, _ = json.Marshal(req)
	}
	if err != nil {
		return usageError{fmt.Errorf("send: %w", err)}
	}
	sent := time.Now()
	pending := base
	pending.Status, pending.EventTime, pending.SentTime, pending.Payload = notification.CallPending, sent, sent, body
	if err := record(ctx, st, ingest.Accept(&pending, ingest.SourceSend, sent, cfg.limits())); err != nil {
		return fmt.Errorf("send: %s call %s was not made, since recording it first failed: %w", base.CallKind, base.CallID, err)
	}

	callCtx, cancel := context.WithTimeout(ctx, f.timeout)
	resp, callErr := call(callCtx)
	timedOut := errors.Is(callCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	cancel()
	done := time.Now()
	if !done.After(sent) {
		done = sent.Add(time.Microsecond)
	}
	final := callOutcome(base, resp, callErr, timedOut, f.timeout)
	final.EventTime, final.SentTime, final.FinishedTime = done, sent, done
	if err := record(ctx, st, ingest.Accept(&final, ingest.SourceSend, done, cfg.limits())); err != nil {
		return fmt.Errorf("send: %s call %s ended %s, but recording that failed, so its row says PENDING: %w",
			base.CallKind, base.CallID, final.Status, err)
	}
	if final.Status == notification.CallSuccessful {
		fmt.Fprintf(stdout, "%s call %s %s on device %s: %s\n", base.CallKind, base.CallID, final.Status, f.device, final.Response)
		return nil
	}
	return fmt.Errorf("send: %s call %s on device %s recorded %s: %w", base.CallKind, base.CallID, f.device, final.Status, callErr)
}

// callOutcome is the record of a call's outcome: the device's response, the
// platform's error (a timeout if it says so with 408 or 504), no answer
// within the time limit, or none at all.
func callOutcome(c notification.Call, resp *iotdaapi.SyncResponse, err error, timedOut bool, limit time.Duration) notification.Call {
	var apiErr *iotdaapi.APIError
	var decErr *iotdaapi.DecodeError
	switch {
	case err == nil:
		c.Status, c.CommandID, c.Response, c.Payload = notification.CallSuccessful, resp.CommandID, nullToNil(resp.Response), resp.Raw
		return c
	case errors.As(err, &apiErr):
		c.Status = notification.CallFailed
		if apiErr.StatusCode == http.StatusRequestTimeout || apiErr.StatusCode == http.StatusGatewayTimeout {
			c.Status = notification.CallTimeout
		}
		c.HTTPStatus, c.ErrorCode, c.ErrorMsg = apiErr.StatusCode, apiErr.ErrorCode, apiErr.ErrorMsg
		c.Payload = errorPayload(apiErr)
		return c
	case errors.As(err, &decErr):
		c.Status, c.HTTPStatus, c.ErrorCode, c.ErrorMsg = notification.CallError, decErr.StatusCode, "bad_response", err.Error()
	case timedOut:
		c.Status, c.ErrorCode, c.ErrorMsg = notification.CallTimeout, "timeout", fmt.Sprintf("no answer within %s (-timeout): %v", limit, err)
	case errors.Is(err, context.Canceled):
		c.Status, c.ErrorCode, c.ErrorMsg = notification.CallError, "canceled", "cmdtrack was interrupted before the answer: "+err.Error()
	default:
		c.Status, c.ErrorCode, c.ErrorMsg = notification.CallError, "transport", err.Error()
	}
	c.Payload, _ = json.Marshal(map[string]any{"error_code": c.ErrorCode, "error_msg": c.ErrorMsg})
	return c
}

// nullToNil is a JSON value, nil when absent or null.
func nullToNil(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// newUUID is a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
