// Command runner times one benchmark contender draining a backlog and
// reports messages per second, peak RSS and CPU seconds.
//
//	runner -name NAME -n N [-metrics URL] [-log FILE] [-out FILE] -- COMMAND [ARGS...]
//
// The clock starts when COMMAND is started. Without -metrics the contender
// is done when it exits (bench/drain and bench/naive exit after N messages),
// and peak RSS and CPU time come from its rusage. With -metrics (cmdtrack,
// which runs until told to stop) it is done once the sum of the settled
// message counters on its /metrics page (applied + skipped + dead-lettered)
// reaches N (polled every 250 ms, every 20 ms over the last 3%); peak RSS (VmHWM) and CPU time (utime +
// stime) are read from /proc at that moment, before SIGTERM stops it.
//
// It also reports the CPU seconds the broker (processes named beam.smp) and
// the database (processes named postgres, with their exited children) used
// over the same span: on a small machine the three share the cores, so
// CPU per message anywhere lowers the rate. These include whatever else the
// broker and database served meanwhile.
//
// With -until-sql (cmdtrack with a webhook endpoint, whose outcome events
// are delivered after the messages are settled) the contender keeps running
// once the backlog is drained, until QUERY (on CMDTRACK_DATABASE_URL, one
// connection opened before the clock starts, polled every 250 ms) returns
// true, so that its CPU, the broker's and the database's include that work;
// the rate is still the drain's.
//
// With -backends APP it also reports the CPU seconds of the database's
// backends whose application_name is APP (the contender's connections, as
// its database URL names them) when it is stopped: on a database others use
// meanwhile, the part of the database's CPU that is the contender's.
//
// It prints one tab-separated line, also appended to -out: name, messages,
// seconds, messages per second, peak RSS MiB, CPU seconds, broker CPU
// seconds, database CPU seconds, and with -until-sql or -backends the
// seconds from the drain's end until QUERY held (0 without it) and the
// contender's backends' CPU seconds (0 without -backends).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// settledCounters are cmdtrack's counters of settled messages.
var settledCounters = []string{
	"cmdtrack_messages_applied_total",
	"cmdtrack_messages_skipped_total",
	"cmdtrack_messages_dead_lettered_total",
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

func main() {
	name := flag.String("name", "", "contender name for the report (required)")
	n := flag.Int("n", 0, "messages in the backlog (required)")
	metrics := flag.String("metrics", "", "URL of the contender's Prometheus page; done when the settled counters reach -n")
	logFile := flag.String("log", "", "file for the contender's stdout and stderr (default: discard)")
	out := flag.String("out", "", "append the result line to this file")
	timeout := flag.Duration("timeout", 20*time.Minute, "give up after this long")
	untilSQL := flag.String("until-sql", "", "with -metrics: after the drain, keep the contender running until this query on CMDTRACK_DATABASE_URL returns true")
	untilTimeout := flag.Duration("until-timeout", 5*time.Minute, "fail if -until-sql does not hold this long after the drain")
	backends := flag.String("backends", "", "with -metrics: also report the CPU of the database backends with this application_name")
	flag.Parse()
	if *name == "" || *n < 1 || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "runner: -name, -n and a command are required")
		flag.Usage()
		os.Exit(2)
	}
	if (*untilSQL != "" || *backends != "") && *metrics == "" {
		fmt.Fprintln(os.Stderr, "runner: -until-sql and -backends need -metrics (a contender that runs until told to stop)")
		os.Exit(2)
	}
	var until *afterDrain
	if *untilSQL != "" || *backends != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cfg, err := pgx.ParseConfig(os.Getenv("CMDTRACK_DATABASE_URL"))
		var db *pgx.Conn
		if err == nil {
			cfg.RuntimeParams["application_name"] = "bench-runner" // not one of -backends
			db, err = pgx.ConnectConfig(ctx, cfg)
		}
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "runner: -until-sql: connecting to CMDTRACK_DATABASE_URL:", err)
			os.Exit(1)
		}
		until = &afterDrain{db: db, query: *untilSQL, timeout: *untilTimeout, backends: *backends}
	}
	res, err := run(*name, *n, *metrics, *logFile, *timeout, until, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "runner:", err)
		os.Exit(1)
	}
	line := fmt.Sprintf("%s\t%d\t%.2f\t%.0f\t%.1f\t%.2f\t%.2f\t%.2f", *name, *n, res.seconds, float64(*n)/res.seconds,
		res.rssMiB, res.cpu, res.brokerCPU, res.dbCPU)
	if until != nil {
		line += fmt.Sprintf("\t%.2f\t%.2f", res.settle, res.backendsCPU)
	}
	line += "\n"
	fmt.Print(line)
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = f.WriteString(line)
			err = errors.Join(err, f.Close())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "runner:", err)
			os.Exit(1)
		}
	}
}

type result struct {
	seconds, rssMiB, cpu float64
	brokerCPU, dbCPU     float64
	settle               float64 // -until-sql: seconds from the drain's end until its query held
	backendsCPU          float64 // -backends: CPU seconds of the contender's database backends
}

// afterDrain is -until-sql: what the contender still has to do once the backlog
// is drained.
type afterDrain struct {
	db       *pgx.Conn
	query    string // "": nothing to wait for
	timeout  time.Duration
	backends string // application_name of the contender's connections ("": none)
}

// backendsCPU sums utime + stime of the backends named u.backends.
func (u *afterDrain) backendsCPU(ctx context.Context) (float64, error) {
	if u.backends == "" {
		return 0, nil
	}
	rows, err := u.db.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", u.backends)
	if err != nil {
		return 0, fmt.Errorf("-backends: %w", err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return 0, fmt.Errorf("-backends: %w", err)
	}
	var sum float64
	for _, pid := range pids {
		if cpu, err := cpuSeconds(int(pid)); err == nil { // gone meanwhile: its CPU is lost
			sum += cpu
		}
	}
	return sum, nil
}

// wait polls the query until it returns true.
func (u *afterDrain) wait(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if u.query == "" {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	for {
		var ok bool
		if err := u.db.QueryRow(ctx, u.query).Scan(&ok); err != nil {
			if ctx.Err() != nil {
				return time.Since(start), fmt.Errorf("-until-sql did not hold within %s of the drain's end", u.timeout)
			}
			return time.Since(start), fmt.Errorf("-until-sql: %w", err)
		}
		if ok {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("-until-sql did not hold within %s of the drain's end", u.timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func run(name string, n int, metricsURL, logFile string, timeout time.Duration, until *afterDrain, argv []string) (res result, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.Command(argv[0], argv[1:]...)
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return res, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	broker0, db0 := serviceCPU()
	defer func() {
		broker1, db1 := serviceCPU()
		res.brokerCPU, res.dbCPU = broker1-broker0, db1-db0
	}()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	if metricsURL == "" {
		select {
		case err := <-exited:
			res.seconds = time.Since(start).Seconds()
			if err != nil {
				return res, fmt.Errorf("%s: %w (see %s)", name, err, logFile)
			}
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return res, fmt.Errorf("%s did not finish within %s: killed: %w", name, timeout, <-exited)
		}
		ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if !ok {
			return res, errors.New("no rusage")
		}
		res.rssMiB = float64(ru.Maxrss) / 1024 // KiB on Linux
		res.cpu = tv(ru.Utime) + tv(ru.Stime)
		return res, nil
	}

	client := &http.Client{Timeout: 2 * time.Second}
	// A scrape costs the worker CPU (its Go and process collectors), so it
	// is polled slowly until the end is near, then every 20 ms.
	interval := 250 * time.Millisecond
	for {
		select {
		case err := <-exited:
			return res, fmt.Errorf("%s exited before draining the backlog: %w (see %s)", name, err, logFile)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return res, fmt.Errorf("%s did not drain %d messages within %s: killed: %w", name, n, timeout, <-exited)
		case <-time.After(interval):
		}
		settled, err := scrape(ctx, client, metricsURL)
		if err != nil || settled < float64(n) {
			if err == nil && settled >= 0.97*float64(n) {
				interval = 20 * time.Millisecond
			}
			continue
		}
		res.seconds = time.Since(start).Seconds()
		if until != nil {
			d, err := until.wait(ctx)
			res.settle = d.Seconds()
			if err != nil {
				_ = cmd.Process.Kill()
				return res, fmt.Errorf("%s drained the backlog but %w (see %s); killed: %w", name, err, logFile, <-exited)
			}
			if res.backendsCPU, err = until.backendsCPU(ctx); err != nil {
				return res, err
			}
		}
		pid := cmd.Process.Pid
		if res.rssMiB, err = peakRSS(pid); err != nil {
			return res, err
		}
		if res.cpu, err = cpuSeconds(pid); err != nil {
			return res, err
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				return res, fmt.Errorf("%s did not stop cleanly: %w (see %s)", name, err, logFile)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			return res, fmt.Errorf("%s did not stop within 30s of SIGTERM: killed: %w", name, <-exited)
		}
		return res, nil
	}
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// scrape sums the settled message counters on a Prometheus text page.
func scrape(ctx context.Context, c *http.Client, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range settledCounters {
			if !strings.HasPrefix(line, name) {
				continue
			}
			rest := line[len(name):]
			if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
				sum += v
			}
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return sum, sc.Err()
}

// peakRSS reads VmHWM (the resident set's high-water mark) in MiB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kib, err := strconv.ParseFloat(f[1], 64)
			return kib / 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// cpuSeconds reads utime + stime from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are plain.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseFloat(f[11], 64) // field 14
	stime, err2 := strconv.ParseFloat(f[12], 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (utime + stime) / clockTicks, nil
}

// serviceCPU sums utime + stime + cutime + cstime of the broker's and the
// database's processes.
func serviceCPU() (broker, db float64) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		comm := s[open+1 : end]
		if comm != "beam.smp" && comm != "postgres" {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 15 {
			continue
		}
		var sum float64
		for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
			v, _ := strconv.ParseFloat(f[i], 64)
			sum += v
		}
		if comm == "beam.smp" {
			broker += sum / clockTicks
		} else {
			db += sum / clockTicks
		}
	}
	return broker, db
}
