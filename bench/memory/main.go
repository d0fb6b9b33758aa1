// Command memory measures what the worker holds, in bytes and in resident
// memory, while a backlog of large messages waits and the database is away:
// it publishes -messages bodies of -size bytes (device.message reports,
// which share queues with command status notifications), starts cmdtrack
// against a database that refuses connections, and samples the worker's
// cmdtrack_messages_held_bytes, its unsettled count and its peak RSS
// (VmHWM) until they stop growing. `make bench/memory` runs it.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/go-amqp"

	"github.com/cmdtrack/cmdtrack/consumer"
)

func main() {
	bin := flag.String("cmdtrack", "", "the cmdtrack binary (required)")
	url := flag.String("amqp", "amqp://guest:guest@127.0.0.1:5672/", "broker URL")
	n := flag.Int("messages", 1000, "messages in the backlog")
	size := flag.Int("size", 256<<10, "bytes per message")
	settle := flag.Duration("settle", 5*time.Second, "how long the figures must stay still to count as settled")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "memory: -cmdtrack is required")
		os.Exit(2)
	}
	if err := run(*bin, *url, *n, *size, *settle, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
		os.Exit(1)
	}
}

func run(bin, url string, n, size int, settle time.Duration, env []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	name := fmt.Sprintf("bench-memory-%d", time.Now().UnixNano())
	queue := "/queue/" + name
	// The backlog is large: delete it afterwards (RabbitMQ's AMQP 1.0 has no
	// way to, its CLI has).
	defer func() { _ = exec.Command("rabbitmqctl", "-q", "delete_queue", name).Run() }()
	if err := publish(ctx, url, queue, n, size); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ops := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(),
		"CMDTRACK_DATABASE_URL=postgres://cmdtrack@127.0.0.1:1/cmdtrack?connect_timeout=1", // refuses connections
		"CMDTRACK_MIGRATE_ON_START=false",
		"CMDTRACK_AMQP_URL="+url, "CMDTRACK_AMQP_QUEUE="+queue, "CMDTRACK_OPS_ADDR="+ops, "CMDTRACK_LOG_LEVEL=error")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	var held, unsettled, peakHeld, peakRSS float64
	still := time.Now()
	for time.Since(still) < settle {
		if ctx.Err() != nil {
			return fmt.Errorf("figures did not settle: held %.0f bytes, %v unsettled", held, unsettled)
		}
		time.Sleep(100 * time.Millisecond)
		h, u, err := scrape(ops)
		if err != nil {
			continue
		}
		rss, err := vmHWM(cmd.Process.Pid)
		if err != nil {
			return err
		}
		if h != held || u != unsettled || rss > peakRSS {
			still = time.Now()
		}
		held, unsettled = h, u
		peakHeld, peakRSS = max(peakHeld, h), max(peakRSS, rss)
	}
	fmt.Printf("backlog %d x %d KiB, database down: %0.f messages held, %.1f MiB of bodies (peak %.1f MiB), peak RSS %.1f MiB\n",
		n, size>>10, unsettled, held/(1<<20), peakHeld/(1<<20), peakRSS/(1<<20))
	return nil
}

func publish(ctx context.Context, url, queue string, n, size int) error {
	conn, err := amqp.Dial(ctx, url, nil)
	if err != nil {
		return err
	}
	defer consumer.CloseConn(conn, 5*time.Second)
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		return err
	}
	snd, err := sess.NewSender(ctx, queue, consumer.SenderOptions(queue))
	if err != nil {
		return err
	}
	pad := strings.Repeat("x", max(0, size-100))
	for i := range n {
		body := fmt.Sprintf(`{"resource":"device.message","event":"report","n":%d,"pad":"%s"}`, i, pad)
		msg := amqp.NewMessage([]byte(body))
		msg.Header = &amqp.MessageHeader{Durable: true}
		if err := snd.Send(ctx, msg, nil); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	return nil
}

var sample = regexp.MustCompile(`(?m)^(cmdtrack_messages_held_bytes|cmdtrack_messages_unsettled) (\S+)$`)

func scrape(addr string) (held, unsettled float64, err error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := sample.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "cmdtrack_messages_held_bytes" {
			held = v
		} else {
			unsettled = v
		}
	}
	return held, unsettled, sc.Err()
}

// vmHWM is the process's peak resident set, in bytes.
func vmHWM(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
