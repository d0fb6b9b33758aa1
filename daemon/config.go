package daemon

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

	"github.com/kelseyhightower/envconfig"
)

// Config is everything cmdtrack reads from the environment, each field as
// CMDTRACK_<split_words>. `cmdtrack -h` prints them all with defaults.
type Config struct {
	DatabaseURL      string `split_words:"true" required:"true" desc:"PostgreSQL URL (postgres://user:pass@host:5432/db)"`
	DatabaseMaxConns int32  `split_words:"true" default:"4" desc:"connections in the pool"`
	MigrateOnStart   bool   `split_words:"true" default:"true" desc:"apply migrations when the worker starts"`

	AmqpURL        string   `split_words:"true" desc:"(required by run) amqps://HOST:5671 for IoTDA, amqp://user:pass@host:5672 for a local broker"`
	AmqpQueue      []string `split_words:"true" default:"DefaultQueue" desc:"queue(s) to consume, comma-separated (RabbitMQ: /queue/NAME)"`
	AmqpAccessKey  string   `split_words:"true" desc:"IoTDA access key; set it to use IoTDA authentication"`
	AmqpAccessCode string   `split_words:"true" desc:"IoTDA access code (the SASL password)"`
	AmqpInstanceID string   `split_words:"true" desc:"IoTDA instance id"`
	AmqpCAFile     string   `split_words:"true" desc:"extra CA certificates (PEM) to trust for amqps"`
	AmqpCredit     int      `split_words:"true" default:"1024" desc:"most unsettled messages per queue (bounds memory; issued a quarter at a time)"`

	AmqpIdleTimeout  time.Duration `split_words:"true" default:"8s" desc:"heartbeat: drop a connection silent this long"`
	AmqpDialTimeout  time.Duration `split_words:"true" default:"10s" desc:"limit for connecting and authenticating"`
	AmqpReconnectMin time.Duration `split_words:"true" default:"500ms" desc:"first reconnect delay (doubles, with jitter)"`
	AmqpReconnectMax time.Duration `split_words:"true" default:"30s" desc:"longest reconnect delay"`

	BatchSize    int           `split_words:"true" default:"256" desc:"most messages written in one transaction"`
	Writers      int           `default:"2" desc:"batches written at once, each on its own connection"`
	BatchWait    time.Duration `split_words:"true" default:"10ms" desc:"longest a message waits for its batch to fill"`
	MaxBodyBytes int           `split_words:"true" default:"1048576" desc:"larger messages are dead-lettered"`
	DBRetryMin   time.Duration `split_words:"true" default:"200ms" desc:"first delay before retrying a failed write"`
	DBRetryMax   time.Duration `split_words:"true" default:"10s" desc:"longest delay between write retries"`

	RetentionHistory     Age           `split_words:"true" default:"0" desc:"delete history rows older than this (e.g. 90d; 0 keeps all)"`
	RetentionDeadLetters Age           `split_words:"true" default:"0" desc:"delete dead letters older than this (0 keeps all)"`
	RetentionCommands    Age           `split_words:"true" default:"0" desc:"delete commands whose last event is older than this (0 keeps all)"`
	RetentionInterval    time.Duration `split_words:"true" default:"1h" desc:"how often retention runs"`

	HttpAddr        string        `split_words:"true" desc:"address for the HTTP(S) push receiver (empty: off)"`
	HttpTLSCert     string        `split_words:"true" desc:"certificate (PEM) to serve the push receiver over HTTPS"`
	HttpTLSKey      string        `split_words:"true" desc:"private key (PEM) for CMDTRACK_HTTP_TLS_CERT"`
	HttpClientCA    string        `split_words:"true" desc:"require client certificates signed by this CA (PEM)"`
	HttpToken       string        `split_words:"true" desc:"require \"Authorization: Bearer <token>\" on pushes"`
	HttpWait        time.Duration `split_words:"true" default:"30s" desc:"longest a push waits for its commit before 503"`
	HttpMaxInFlight int           `split_words:"true" default:"256" desc:"most pushes handled at once; more are answered 503"`

	ApiEndpoint   string `split_words:"true" desc:"(cmdtrack send) IoTDA API endpoint, https://..."`
	ApiProjectID  string `split_words:"true" desc:"(cmdtrack send) project id"`
	ApiInstanceID string `split_words:"true" desc:"(cmdtrack send) instance id, sent as Instance-Id"`
	ApiAccessKey  string `split_words:"true" desc:"(cmdtrack send) access key for request signing"`
	ApiSecretKey  string `split_words:"true" desc:"(cmdtrack send) secret key for request signing"`
	ApiToken      string `split_words:"true" desc:"(cmdtrack send) IAM token, instead of AK/SK"`

	ShutdownGrace time.Duration `split_words:"true" default:"20s" desc:"how long SIGTERM may take to store and settle messages in hand"`
	OpsAddr       string        `split_words:"true" default:"127.0.0.1:9464" desc:"address for /metrics, /healthz, /readyz (empty: off)"`
	LogFormat     string        `split_words:"true" default:"json" desc:"json or text"`
	LogLevel      string        `split_words:"true" default:"info" desc:"debug, info, warn or error"`
}

const envPrefix = "CMDTRACK"

// loadConfig reads and checks the environment for cmd. Its errors are one
// line.
func loadConfig(cmd string) (*Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return nil, configError(err)
	}
	return &c, c.validate(cmd)
}

// configError rewords envconfig's errors into one line that names the
// variable, and never repeats the value (it may be a secret).
func configError(err error) error {
	var perr *envconfig.ParseError
	if errors.As(err, &perr) {
		// Only non-string settings fail to parse, and no secret is one.
		return fmt.Errorf("%s: %v", perr.KeyName, perr.Err)
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
		check(c.AmqpURL != "", "CMDTRACK_AMQP_URL is required")
		check((c.HttpTLSCert == "") == (c.HttpTLSKey == ""), "CMDTRACK_HTTP_TLS_CERT and CMDTRACK_HTTP_TLS_KEY go together")
		check(c.HttpClientCA == "" || c.HttpTLSCert != "", "CMDTRACK_HTTP_CLIENT_CA needs CMDTRACK_HTTP_TLS_CERT")
		check(c.HttpWait > 0, "CMDTRACK_HTTP_WAIT must be positive")
		check(c.HttpMaxInFlight >= 1, "CMDTRACK_HTTP_MAX_IN_FLIGHT must be at least 1")
	}
	if cmd == "send" {
		check(c.ApiEndpoint != "", "CMDTRACK_API_ENDPOINT is required by send")
		check(c.ApiProjectID != "", "CMDTRACK_API_PROJECT_ID is required by send")
		check((c.ApiAccessKey != "" && c.ApiSecretKey != "") != (c.ApiToken != ""),
			"send needs CMDTRACK_API_ACCESS_KEY with CMDTRACK_API_SECRET_KEY, or CMDTRACK_API_TOKEN")
	}
	check(c.DatabaseMaxConns >= 1, "CMDTRACK_DATABASE_MAX_CONNS must be at least 1")
	check(c.AmqpCredit >= 2 && c.AmqpCredit <= 100000, "CMDTRACK_AMQP_CREDIT must be between 2 and 100000")
	check(len(c.AmqpQueue) >= 1 && len(c.AmqpQueue) <= 10, "CMDTRACK_AMQP_QUEUE must name 1 to 10 queues")
	for _, q := range c.AmqpQueue {
		check(strings.TrimSpace(q) != "", "CMDTRACK_AMQP_QUEUE has an empty queue name")
	}
	check(c.Writers >= 1 && c.Writers <= 16, "CMDTRACK_WRITERS must be between 1 and 16")
	check(int(c.DatabaseMaxConns) > c.Writers, "CMDTRACK_DATABASE_MAX_CONNS must exceed CMDTRACK_WRITERS (readiness and retention need a connection too)")
	check(c.BatchSize >= 1 && c.BatchSize <= 10000, "CMDTRACK_BATCH_SIZE must be between 1 and 10000")
	check(c.BatchWait > 0, "CMDTRACK_BATCH_WAIT must be positive")
	check(c.MaxBodyBytes >= 1024, "CMDTRACK_MAX_BODY_BYTES must be at least 1024")
	check(c.AmqpReconnectMin > 0 && c.AmqpReconnectMax >= c.AmqpReconnectMin, "CMDTRACK_AMQP_RECONNECT_MIN must be positive and at most CMDTRACK_AMQP_RECONNECT_MAX")
	check(c.DBRetryMin > 0 && c.DBRetryMax >= c.DBRetryMin, "CMDTRACK_DB_RETRY_MIN must be positive and at most CMDTRACK_DB_RETRY_MAX")
	check(c.AmqpDialTimeout > 0, "CMDTRACK_AMQP_DIAL_TIMEOUT must be positive")
	check(c.RetentionInterval > 0, "CMDTRACK_RETENTION_INTERVAL must be positive")
	check(c.ShutdownGrace > 0, "CMDTRACK_SHUTDOWN_GRACE must be positive")
	check(c.LogFormat == "json" || c.LogFormat == "text", "CMDTRACK_LOG_FORMAT must be json or text")
	var lvl slog.Level
	check(lvl.UnmarshalText([]byte(c.LogLevel)) == nil, "CMDTRACK_LOG_LEVEL must be debug, info, warn or error")
	if c.AmqpAccessKey != "" {
		check(c.AmqpAccessCode != "", "CMDTRACK_AMQP_ACCESS_CODE is required with CMDTRACK_AMQP_ACCESS_KEY")
		check(c.AmqpInstanceID != "", "CMDTRACK_AMQP_INSTANCE_ID is required with CMDTRACK_AMQP_ACCESS_KEY")
	}
	if c.AmqpCAFile != "" {
		_, err := os.Stat(c.AmqpCAFile)
		check(err == nil, "CMDTRACK_AMQP_CA_FILE: %v", err)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
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

// printUsage lists every variable with its default, as `cmdtrack -h` shows.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `cmdtrack keeps IoTDA device command lifecycles in PostgreSQL.

Usage:
  cmdtrack [run]     consume the AMQP queue(s) until SIGTERM or SIGINT
  cmdtrack migrate   apply database migrations and exit
  cmdtrack replay    re-decode dead letters; apply and remove those that now succeed
  cmdtrack send -device ID -paras JSON [-service S] [-command NAME] [-strategy immediately|delay] [-expire SECONDS]
                     deliver an asynchronous command through the IoTDA API and record it
  cmdtrack version   print version and build information

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

// logValue lists the settings worth logging at startup; secrets never are.
func (c *Config) logAttrs() []any {
	return []any{
		"queues", c.AmqpQueue, "credit", c.AmqpCredit, "batch_size", c.BatchSize,
		"batch_wait", c.BatchWait, "iotda_auth", c.AmqpAccessKey != "", "ops_addr", c.OpsAddr,
		"http_addr", c.HttpAddr, "http_tls", c.HttpTLSCert != "",
	}
}
