package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/kelseyhightower/envconfig"

	"github.com/cmdtrack/cmdtrack/console"
	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/httppush"
	"github.com/cmdtrack/cmdtrack/store"
	"github.com/cmdtrack/cmdtrack/webhook"
)

// Config is everything cmdtrack reads from the environment, each field as
// CMDTRACK_ followed by its envconfig tag. `cmdtrack -h` prints them all
// with their defaults.
type Config struct {
	DatabaseURL      string `envconfig:"DATABASE_URL" required:"true" desc:"PostgreSQL URL (postgres://user:pass@host:5432/db)"`
	DatabaseMaxConns int32  `envconfig:"DATABASE_MAX_CONNS" default:"4" desc:"connections in the pool"`
	MigrateOnStart   bool   `envconfig:"MIGRATE_ON_START" default:"true" desc:"apply migrations when the worker starts"`

	AMQPURL        string   `envconfig:"AMQP_URL" desc:"(required by run) amqps://HOST:5671 for IoTDA, amqp://user:pass@host:5672 for a local broker"`
	AMQPQueue      []string `envconfig:"AMQP_QUEUE" default:"DefaultQueue" desc:"queue(s) to consume, comma-separated (RabbitMQ: /queue/NAME)"`
	AMQPAccessKey  string   `envconfig:"AMQP_ACCESS_KEY" desc:"IoTDA access key; set it to use IoTDA authentication"`
	AMQPAccessCode string   `envconfig:"AMQP_ACCESS_CODE" desc:"IoTDA access code (the SASL password)"`
	AMQPInstanceID string   `envconfig:"AMQP_INSTANCE_ID" desc:"IoTDA instance id"`
	AMQPCAFile     string   `envconfig:"AMQP_CA_FILE" desc:"extra CA certificates (PEM) to trust for amqps"`
	AMQPCredit     int      `envconfig:"AMQP_CREDIT" default:"1024" desc:"most unsettled messages per queue (issued a quarter at a time)"`
	AMQPMaxBytes   int64    `envconfig:"AMQP_MAX_BYTES" default:"33554432" desc:"most message bytes held or asked for, shared equally by the queues (bounds memory; credit counts at CMDTRACK_MAX_BODY_BYTES until a message arrives)"`

	AMQPIdleTimeout      time.Duration `envconfig:"AMQP_IDLE_TIMEOUT" default:"8s" desc:"heartbeat: drop a connection silent this long"`
	AMQPDialTimeout      time.Duration `envconfig:"AMQP_DIAL_TIMEOUT" default:"10s" desc:"limit for connecting and authenticating"`
	AMQPReconnectMin     time.Duration `envconfig:"AMQP_RECONNECT_MIN" default:"500ms" desc:"first reconnect delay (doubles, with jitter)"`
	AMQPReconnectMax     time.Duration `envconfig:"AMQP_RECONNECT_MAX" default:"30s" desc:"longest reconnect delay"`
	AMQPBacklogRetention time.Duration `envconfig:"AMQP_BACKLOG_RETENTION" default:"24h" desc:"how long the platform keeps a queue's backlog; a longer gap is reported as possible loss"`

	BatchSize     int           `envconfig:"BATCH_SIZE" default:"256" desc:"most messages written in one transaction"`
	Writers       int           `envconfig:"WRITERS" default:"2" desc:"batches written at once, each on its own connection"`
	BatchWait     time.Duration `envconfig:"BATCH_WAIT" default:"10ms" desc:"longest a message waits for its batch to fill"`
	MaxBodyBytes  int           `envconfig:"MAX_BODY_BYTES" default:"1048576" desc:"larger messages are dead-lettered (their first 64 KiB kept)"`
	MaxFutureSkew time.Duration `envconfig:"MAX_FUTURE_SKEW" default:"1h" desc:"a notification dated further ahead of its receipt is dead-lettered (future_event_time)"`
	DBRetryMin    time.Duration `envconfig:"DB_RETRY_MIN" default:"200ms" desc:"first delay before retrying a failed write"`
	DBRetryMax    time.Duration `envconfig:"DB_RETRY_MAX" default:"10s" desc:"longest delay between write retries"`

	RetentionHistory     Age           `envconfig:"RETENTION_HISTORY" default:"0" desc:"drop history partitions wholly older than this, by event time (e.g. 90d; 0 keeps all)"`
	RetentionDeadLetters Age           `envconfig:"RETENTION_DEAD_LETTERS" default:"0" desc:"delete dead letters older than this (0 keeps all)"`
	RetentionCommands    Age           `envconfig:"RETENTION_COMMANDS" default:"0" desc:"delete commands created and last moved before this (0 keeps all)"`
	RetentionInterval    time.Duration `envconfig:"RETENTION_INTERVAL" default:"1h" desc:"how often history partitions are made and dropped and retention runs"`
	Upkeep               bool          `envconfig:"UPKEEP" default:"true" desc:"the worker keeps partitions, retention and the rollup (false: cmdtrack upkeep does, run as the schema's owner)"`
	HistoryPartition     string        `envconfig:"HISTORY_PARTITION" default:"day" desc:"time one history partition covers: day, week or month"`
	HistoryAhead         int           `envconfig:"HISTORY_PARTITIONS_AHEAD" default:"3" desc:"history partitions made ahead of the current one"`
	RollupInterval       time.Duration `envconfig:"ROLLUP_INTERVAL" default:"1m" desc:"how often product_daily_outcomes' rollup is refreshed"`
	RollupDays           int           `envconfig:"ROLLUP_DAYS" default:"3" desc:"days (today included) the rollup refresh recomputes: those whose commands can still change"`

	HTTPAddr                 string        `envconfig:"HTTP_ADDR" desc:"address for the HTTP(S) push receiver (empty: off)"`
	HTTPTLSCert              string        `envconfig:"HTTP_TLS_CERT" desc:"certificate (PEM) to serve the push receiver over HTTPS"`
	HTTPTLSKey               string        `envconfig:"HTTP_TLS_KEY" desc:"private key (PEM) for CMDTRACK_HTTP_TLS_CERT"`
	HTTPClientCA             string        `envconfig:"HTTP_CLIENT_CA" desc:"require client certificates signed by this CA (PEM)"`
	HTTPToken                string        `envconfig:"HTTP_TOKEN" desc:"require \"Authorization: Bearer <token>\" on pushes (at least 16 characters)"`
	HTTPWait                 time.Duration `envconfig:"HTTP_WAIT" default:"10s" desc:"longest a push waits for its commit before 503 (under the platform's 15 s timeout)"`
	HTTPMaxInFlight          int           `envconfig:"HTTP_MAX_IN_FLIGHT" default:"256" desc:"most pushes handled at once; more are answered 503"`
	HTTPMaxBytesInFlight     int64         `envconfig:"HTTP_MAX_BYTES_IN_FLIGHT" default:"33554432" desc:"most body bytes of pushes handled at once; more are answered 503"`
	HTTPMaxConns             int           `envconfig:"HTTP_MAX_CONNS" default:"512" desc:"most connections open to the push receiver at once, counted before authentication (at least CMDTRACK_HTTP_MAX_IN_FLIGHT); at the cap, a new one takes the place of a refused, idle or half-open one"`
	HTTPHeaderTimeout        time.Duration `envconfig:"HTTP_HEADER_TIMEOUT" default:"5s" desc:"longest a push connection may take over its TLS handshake and request headers"`
	HTTPAllowUnauthenticated bool          `envconfig:"HTTP_ALLOW_UNAUTHENTICATED" default:"false" desc:"serve pushes without a token or client certificates (anyone could forge notifications)"`

	ConsoleAddr                 string `envconfig:"CONSOLE_ADDR" default:"127.0.0.1:9465" desc:"(console) address of the read-only web console"`
	ConsoleUser                 string `envconfig:"CONSOLE_USER" desc:"(console) basic authentication user, with CMDTRACK_CONSOLE_PASSWORD"`
	ConsolePassword             string `envconfig:"CONSOLE_PASSWORD" desc:"(console) basic authentication password"`
	ConsoleToken                string `envconfig:"CONSOLE_TOKEN" desc:"(console) accept \"Authorization: Bearer <token>\" (at least 16 characters)"`
	ConsoleTLSCert              string `envconfig:"CONSOLE_TLS_CERT" desc:"(console) certificate (PEM) to serve the console over HTTPS"`
	ConsoleTLSKey               string `envconfig:"CONSOLE_TLS_KEY" desc:"(console) private key (PEM) for CMDTRACK_CONSOLE_TLS_CERT"`
	ConsoleClientCA             string `envconfig:"CONSOLE_CLIENT_CA" desc:"(console) require client certificates signed by this CA (PEM)"`
	ConsoleAllowUnauthenticated bool   `envconfig:"CONSOLE_ALLOW_UNAUTHENTICATED" default:"false" desc:"(console) serve a non-loopback address without authentication (behind an authenticating proxy)"`

	APIEndpoint   string `envconfig:"API_ENDPOINT" desc:"(send, reconcile) IoTDA API endpoint, https://..."`
	APIProjectID  string `envconfig:"API_PROJECT_ID" desc:"(send, reconcile) project id"`
	APIInstanceID string `envconfig:"API_INSTANCE_ID" desc:"(send, reconcile) instance id, sent as Instance-Id"`
	APIAccessKey  string `envconfig:"API_ACCESS_KEY" desc:"(send, reconcile) access key for request signing"`
	APISecretKey  string `envconfig:"API_SECRET_KEY" desc:"(send, reconcile) secret key for request signing"`
	APIToken      string `envconfig:"API_TOKEN" desc:"(send, reconcile) IAM token, instead of AK/SK"`
	APICAFile     string `envconfig:"API_CA_FILE" desc:"(send, reconcile) extra CA certificates (PEM) to trust for the API endpoint"`

	ReconcileInterval  time.Duration `envconfig:"RECONCILE_INTERVAL" default:"0" desc:"how often the worker reconciles open commands with the API (0: never; see cmdtrack reconcile)"`
	ReconcileThreshold time.Duration `envconfig:"RECONCILE_THRESHOLD" default:"1h" desc:"reconcile commands not final that have not moved for this long (within cmdtrack_settings.stuck_horizon)"`
	ReconcileRate      float64       `envconfig:"RECONCILE_RATE" default:"5" desc:"most API calls per second while reconciling"`

	WebhookURL        string        `envconfig:"WEBHOOK_URL" desc:"POST outcome events (Standard Webhooks) here: https, or http on loopback (endpoint \"default\")"`
	WebhookSecret     string        `envconfig:"WEBHOOK_SECRET" desc:"whsec_ secret(s) signing CMDTRACK_WEBHOOK_URL's events; several, space-separated, while rotating"`
	WebhooksFile      string        `envconfig:"WEBHOOKS_FILE" desc:"JSON list of endpoints [{\"name\",\"url\",\"secrets\",\"types\",\"products\"}]"`
	WebhookTimeout    time.Duration `envconfig:"WEBHOOK_TIMEOUT" default:"10s" desc:"limit for one webhook request, connecting to the answer's end"`
	WebhookRetryFor   time.Duration `envconfig:"WEBHOOK_RETRY_FOR" default:"24h" desc:"retry an event this long after its outcome, then fail it for good (replayable)"`
	WebhookBackoffMin time.Duration `envconfig:"WEBHOOK_BACKOFF_MIN" default:"5s" desc:"first retry delay (doubles, full jitter)"`
	WebhookBackoffMax time.Duration `envconfig:"WEBHOOK_BACKOFF_MAX" default:"1h" desc:"longest retry delay"`
	WebhookWorkers    int           `envconfig:"WEBHOOK_WORKERS" default:"4" desc:"webhook requests in flight at once per endpoint"`
	WebhookDBConns    int32         `envconfig:"WEBHOOK_DB_CONNS" default:"2" desc:"connections in the webhook deliverer's own pool (opened only with endpoints)"`
	WebhookBacklogLag time.Duration `envconfig:"WEBHOOK_BACKLOG_LAG" default:"1m" desc:"while the worker drains a backlog (full batches), webhook claims take only events due for at least this long (0: never wait; at most 5m)"`

	ShutdownGrace       time.Duration `envconfig:"SHUTDOWN_GRACE" default:"20s" desc:"how long SIGTERM may take to store and settle messages in hand"`
	StallTimeout        time.Duration `envconfig:"STALL_TIMEOUT" default:"5m" desc:"messages in hand with nothing stored or settled this long fail /healthz and the systemd watchdog"`
	OpsAddr             string        `envconfig:"OPS_ADDR" default:"127.0.0.1:9464" desc:"address for /metrics, /healthz, /readyz (empty: off)"`
	MetricsProductLabel bool          `envconfig:"METRICS_PRODUCT_LABEL" default:"true" desc:"label the outcome metrics with product_id (false: one series for all products)"`
	LogFormat           string        `envconfig:"LOG_FORMAT" default:"json" desc:"json or text"`
	LogLevel            string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
}

const envPrefix = "CMDTRACK"

// platformPushTimeout is how long IoTDA's push client waits for an answer.
const platformPushTimeout = 15 * time.Second

// loadConfig reads and checks the environment for cmd. Its errors are one
// line.
func loadConfig(cmd string) (*Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return nil, configError(err)
	}
	// "q1, q2" is what people write: the space is not part of the name.
	for i, q := range c.AMQPQueue {
		c.AMQPQueue[i] = strings.TrimSpace(q)
	}
	return &c, c.validate(cmd)
}

// configError rewords envconfig's errors into one line that names the
// variable, and never repeats the value (it may be a secret).
func configError(err error) error {
	var perr *envconfig.ParseError
	if errors.As(err, &perr) {
		// Only non-string settings fail to parse, and no secret is one.
		return fmt.Errorf("%s: %w", perr.KeyName, perr.Err)
	}
	return errors.New(strings.Replace(err.Error(), "required key ", "", 1))
}

func (c *Config) validate(cmd string) error {
	var problems []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	// envconfig accepts a required variable that is set but empty.
	check(c.DatabaseURL != "", "CMDTRACK_DATABASE_URL is empty")
	if cmd == "run" {
		check(c.AMQPURL != "", "CMDTRACK_AMQP_URL is required")
		check((c.HTTPTLSCert == "") == (c.HTTPTLSKey == ""), "CMDTRACK_HTTP_TLS_CERT and CMDTRACK_HTTP_TLS_KEY go together")
		check(c.HTTPClientCA == "" || c.HTTPTLSCert != "", "CMDTRACK_HTTP_CLIENT_CA needs CMDTRACK_HTTP_TLS_CERT")
		check(c.HTTPWait > 0, "CMDTRACK_HTTP_WAIT must be positive")
		// Past it, the platform sees a timeout instead of the 503, and in
		// time stops pushing.
		check(c.HTTPWait < platformPushTimeout,
			"CMDTRACK_HTTP_WAIT (%v) is not under IoTDA's 15 s push timeout: the platform would give up before the answer; set it to 10s (the default) or less",
			c.HTTPWait)
		check(c.HTTPMaxInFlight >= 1, "CMDTRACK_HTTP_MAX_IN_FLIGHT must be at least 1")
		check(c.HTTPMaxConns >= 1, "CMDTRACK_HTTP_MAX_CONNS must be at least 1")
		// Each push in flight holds a connection: fewer connections than
		// that leaves the in-flight bound unreachable, and connections at
		// the cap all busy, none to give way to a new one.
		check(c.HTTPMaxConns >= c.HTTPMaxInFlight,
			"CMDTRACK_HTTP_MAX_CONNS (%d) is below CMDTRACK_HTTP_MAX_IN_FLIGHT (%d): set CMDTRACK_HTTP_MAX_CONNS to at least that, or lower CMDTRACK_HTTP_MAX_IN_FLIGHT",
			c.HTTPMaxConns, c.HTTPMaxInFlight)
		check(c.HTTPToken == "" || utf8.RuneCountInString(c.HTTPToken) >= httppush.MinTokenLength, "%v", httppush.ErrShortToken)
		check(c.HTTPHeaderTimeout > 0, "CMDTRACK_HTTP_HEADER_TIMEOUT must be positive")
		check(c.HTTPAddr == "" || c.HTTPToken != "" || c.HTTPClientCA != "" || c.HTTPAllowUnauthenticated,
			"%v", httppush.ErrUnauthenticated)
		check(c.HTTPMaxBytesInFlight >= int64(c.MaxBodyBytes), "CMDTRACK_HTTP_MAX_BYTES_IN_FLIGHT must be at least CMDTRACK_MAX_BODY_BYTES")
		check(c.AMQPMaxBytes >= int64(c.MaxBodyBytes)*int64(max(1, len(c.AMQPQueue))),
			"CMDTRACK_AMQP_MAX_BYTES must be at least CMDTRACK_MAX_BODY_BYTES times the number of queues (each queue has an equal share)")
		check(c.StallTimeout > 0, "CMDTRACK_STALL_TIMEOUT must be positive")
		check(c.AMQPBacklogRetention > 0, "CMDTRACK_AMQP_BACKLOG_RETENTION must be positive")
		if eps, err := c.webhookEndpoints(); err != nil {
			check(false, "%v", err)
		} else if len(eps) > 0 {
			hooks := c.webhooks(eps)
			if err := hooks.Check(); err != nil {
				check(false, "%v", err)
			}
			// The deliverer stops with intake, beside the pipeline's drain:
			// past the grace, systemd or Kubernetes kills the process
			// mid-settle.
			stop := hooks.StopBound()
			check(c.WebhookTimeout <= 0 || stop <= c.ShutdownGrace,
				"CMDTRACK_WEBHOOK_TIMEOUT (%v) lets a stop take up to %v (the requests in flight, then settling them), past CMDTRACK_SHUTDOWN_GRACE (%v): lower the timeout, or raise the grace to at least %v",
				c.WebhookTimeout, stop, c.ShutdownGrace, stop)
			check(c.WebhookDBConns >= 1 && c.WebhookDBConns <= 64, "CMDTRACK_WEBHOOK_DB_CONNS must be between 1 and 64")
		}
	}
	if cmd == "console" {
		check(c.ConsoleToken == "" || utf8.RuneCountInString(c.ConsoleToken) >= httppush.MinTokenLength,
			"CMDTRACK_CONSOLE_TOKEN is shorter than %d characters: it could be guessed; set a random one, e.g. from openssl rand -hex 32",
			httppush.MinTokenLength)
		if err := c.console().Check(); err != nil {
			check(false, "%v", err)
		}
	}
	if user := c.apiUser(cmd); user != "" {
		check(c.APIEndpoint != "", "CMDTRACK_API_ENDPOINT is required by %s", user)
		check(c.APIProjectID != "", "CMDTRACK_API_PROJECT_ID is required by %s", user)
		check((c.APIAccessKey != "" && c.APISecretKey != "") != (c.APIToken != ""),
			"%s needs CMDTRACK_API_ACCESS_KEY with CMDTRACK_API_SECRET_KEY, or CMDTRACK_API_TOKEN", user)
	}
	if c.APICAFile != "" {
		_, err := os.Stat(c.APICAFile)
		check(err == nil, "CMDTRACK_API_CA_FILE: %v", err)
	}
	check(c.ReconcileInterval == 0 || c.ReconcileInterval >= time.Second, "CMDTRACK_RECONCILE_INTERVAL must be 0 (off) or at least 1s")
	check(c.ReconcileThreshold > 0, "CMDTRACK_RECONCILE_THRESHOLD must be positive")
	check(c.ReconcileRate > 0 && c.ReconcileRate <= 1000, "CMDTRACK_RECONCILE_RATE must be above 0 and at most 1000 calls per second")
	check(c.DatabaseMaxConns >= 1, "CMDTRACK_DATABASE_MAX_CONNS must be at least 1")
	check(c.AMQPCredit >= 2 && c.AMQPCredit <= 100000, "CMDTRACK_AMQP_CREDIT must be between 2 and 100000")
	check(len(c.AMQPQueue) >= 1 && len(c.AMQPQueue) <= 10, "CMDTRACK_AMQP_QUEUE must name 1 to 10 queues")
	seen := map[string]bool{}
	for _, q := range c.AMQPQueue {
		if err := consumer.ValidQueueName(q); err != nil {
			check(false, "%v", err)
		}
		check(!seen[q], "CMDTRACK_AMQP_QUEUE names %q twice", q)
		seen[q] = true
	}
	check(c.MaxFutureSkew > 0, "CMDTRACK_MAX_FUTURE_SKEW must be positive")
	check(c.Writers >= 1 && c.Writers <= 16, "CMDTRACK_WRITERS must be between 1 and 16")
	check(int(c.DatabaseMaxConns) > c.Writers, "CMDTRACK_DATABASE_MAX_CONNS must exceed CMDTRACK_WRITERS (readiness and retention need a connection too)")
	check(c.BatchSize >= 1 && c.BatchSize <= 10000, "CMDTRACK_BATCH_SIZE must be between 1 and 10000")
	check(c.BatchWait > 0, "CMDTRACK_BATCH_WAIT must be positive")
	check(c.MaxBodyBytes >= 1024, "CMDTRACK_MAX_BODY_BYTES must be at least 1024")
	check(c.AMQPReconnectMin > 0 && c.AMQPReconnectMax >= c.AMQPReconnectMin, "CMDTRACK_AMQP_RECONNECT_MIN must be positive and at most CMDTRACK_AMQP_RECONNECT_MAX")
	check(c.DBRetryMin > 0 && c.DBRetryMax >= c.DBRetryMin, "CMDTRACK_DB_RETRY_MIN must be positive and at most CMDTRACK_DB_RETRY_MAX")
	check(c.AMQPDialTimeout > 0, "CMDTRACK_AMQP_DIAL_TIMEOUT must be positive")
	check(c.RetentionInterval > 0, "CMDTRACK_RETENTION_INTERVAL must be positive")
	_, err := store.ParsePartitionSize(c.HistoryPartition)
	check(err == nil, "CMDTRACK_HISTORY_PARTITION must be day, week or month")
	check(c.HistoryAhead >= 1 && c.HistoryAhead <= 100, "CMDTRACK_HISTORY_PARTITIONS_AHEAD must be between 1 and 100")
	check(c.RollupInterval > 0, "CMDTRACK_ROLLUP_INTERVAL must be positive")
	check(c.RollupDays >= 1 && c.RollupDays <= 366, "CMDTRACK_ROLLUP_DAYS must be between 1 and 366")
	// The rollup recomputes its days from device_commands: a command that
	// retention deleted first would be missing from its day's count.
	check(c.RetentionCommands == 0 || time.Duration(c.RetentionCommands) >= time.Duration(c.RollupDays)*24*time.Hour,
		"CMDTRACK_RETENTION_COMMANDS (%v) is shorter than CMDTRACK_ROLLUP_DAYS (%d days): the rollup would undercount the commands retention deleted; keep commands at least that long or recompute fewer days",
		time.Duration(c.RetentionCommands), c.RollupDays)
	check(c.ShutdownGrace > 0, "CMDTRACK_SHUTDOWN_GRACE must be positive")
	check(c.LogFormat == "json" || c.LogFormat == "text", "CMDTRACK_LOG_FORMAT must be json or text")
	var lvl slog.Level
	check(lvl.UnmarshalText([]byte(c.LogLevel)) == nil, "CMDTRACK_LOG_LEVEL must be debug, info, warn or error")
	if c.AMQPAccessKey != "" {
		check(c.AMQPAccessCode != "", "CMDTRACK_AMQP_ACCESS_CODE is required with CMDTRACK_AMQP_ACCESS_KEY")
		check(c.AMQPInstanceID != "", "CMDTRACK_AMQP_INSTANCE_ID is required with CMDTRACK_AMQP_ACCESS_KEY")
	}
	if c.AMQPCAFile != "" {
		_, err := os.Stat(c.AMQPCAFile)
		check(err == nil, "CMDTRACK_AMQP_CA_FILE: %v", err)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// apiUser names what needs IoTDA's API for cmd, or "" if nothing does.
func (c *Config) apiUser(cmd string) string {
	switch {
	case cmd == "send", cmd == "reconcile":
		return cmd
	case cmd == "run" && c.ReconcileInterval > 0:
		return "CMDTRACK_RECONCILE_INTERVAL"
	}
	return ""
}

// Age is a duration that also accepts whole days ("90d"), as retention
// periods are usually spoken of.
type Age time.Duration

// Decode implements envconfig.Decoder.
func (a *Age) Decode(v string) error {
	if d, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return fmt.Errorf("invalid number of days %q", v)
		}
		*a = Age(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 0 {
		return fmt.Errorf("invalid age %q", v)
	}
	*a = Age(dur)
	return nil
}

// printConfigUsage lists every variable with its default, and the exit
// statuses: the end of `cmdtrack -h`.
func printConfigUsage(w io.Writer) {
	fmt.Fprint(w, `
Configuration (environment):
`)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tDESCRIPTION")
	_ = envconfig.Usagef(envPrefix, &Config{}, tw,
		`{{range .}}  {{usage_key .}}{{if usage_required .}} (required){{end}}`+"\t"+`{{usage_default .}}`+"\t"+`{{usage_description .}}
{{end}}`)
	_ = tw.Flush()
	fmt.Fprint(w, `
Exit status: 0 on success (including a clean shutdown), 1 on a runtime
failure, 2 on a usage or configuration error.
`)
}

// logAttrs lists the settings worth logging at startup; secrets never are.
func (c *Config) logAttrs() []any {
	return []any{
		"queues", c.AMQPQueue, "credit", c.AMQPCredit, "batch_size", c.BatchSize,
		"batch_wait", c.BatchWait, "iotda_auth", c.AMQPAccessKey != "", "ops_addr", c.OpsAddr,
		"http_addr", c.HTTPAddr, "http_tls", c.HTTPTLSCert != "", "reconcile_interval", c.ReconcileInterval,
		"webhooks", c.WebhookURL != "" || c.WebhooksFile != "",
	}
}

// webhookEndpoints are the webhook endpoints the settings give (none: no
// webhooks).
func (c *Config) webhookEndpoints() ([]webhook.Endpoint, error) {
	return webhook.Load(c.WebhookURL, c.WebhookSecret, c.WebhooksFile)
}

// webhooks is the webhook deliverer's configuration for endpoints eps.
func (c *Config) webhooks(eps []webhook.Endpoint) webhook.Config {
	return webhook.Config{Endpoints: eps, Timeout: c.WebhookTimeout, RetryFor: c.WebhookRetryFor,
		BackoffMin: c.WebhookBackoffMin, BackoffMax: c.WebhookBackoffMax, Workers: c.WebhookWorkers,
		BacklogLag: c.WebhookBacklogLag, UserAgent: "cmdtrack/" + Version}
}

// console is the console's listener configuration.
func (c *Config) console() console.Config {
	return console.Config{Addr: c.ConsoleAddr, User: c.ConsoleUser, Password: c.ConsolePassword, Token: c.ConsoleToken,
		CertFile: c.ConsoleTLSCert, KeyFile: c.ConsoleTLSKey, ClientCAFile: c.ConsoleClientCA,
		AllowUnauthenticated: c.ConsoleAllowUnauthenticated, StuckQuiet: c.ReconcileThreshold}
}

// partitioning is how the history is partitioned and kept.
func (c *Config) partitioning() store.Partitioning {
	size, _ := store.ParsePartitionSize(c.HistoryPartition) // validated
	return store.Partitioning{Size: size, Ahead: c.HistoryAhead, Retention: time.Duration(c.RetentionHistory), Back: 7 * 24 * time.Hour}
}
