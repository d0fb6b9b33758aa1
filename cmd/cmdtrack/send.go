package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/cmdtrack/cmdtrack/ingest"
	"github.com/cmdtrack/cmdtrack/iotdaapi"
	"github.com/cmdtrack/cmdtrack/store"
)

// sendFlags are `cmdtrack send`'s arguments.
type sendFlags struct {
	device, paras, service, command, strategy string
	expire                                    int
	timeout                                   time.Duration
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
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "limit for the API call")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: cmdtrack send -device ID -paras JSON [flags]\n\n"+
			"Delivers an asynchronous command through IoTDA's API and records it; configuration\n"+
			"(CMDTRACK_DATABASE_URL, CMDTRACK_API_*) comes from the environment, see cmdtrack -h.\n\nFlags:\n")
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
	if f.device == "" || f.paras == "" {
		return nil, usageError{errors.New("send: -device and -paras are required")}
	}
	if f.timeout <= 0 {
		return nil, usageError{errors.New("send: -timeout must be positive")}
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
	var client *iotdaapi.Client
	// A command sent but not recorded is worth avoiding: check the database
	// first.
	pingCtx, cancelPing := context.WithTimeout(ctx, 5*time.Second)
	err := st.Ping(pingCtx)
	cancelPing()
	if err != nil {
		return fmt.Errorf("send: the database is not reachable, nothing was sent: %w", err)
	}
	client, err = newAPIClient(cfg)
	if err != nil {
		return usageError{fmt.Errorf("send: %w", err)}
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
