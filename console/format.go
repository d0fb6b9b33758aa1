package console

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// setBody fills the body fields: text where it is UTF-8, a hex dump where
// it is not. A preview (the first bytes) may end inside a character, which
// does not make it binary.
func (d *DeadLetter) setBody(body []byte, preview bool) {
	text := body
	if preview && len(body) == previewBytes {
		for i := 0; i < utf8.UTFMax && len(text) > 0 && !utf8.Valid(text); i++ {
			text = text[:len(text)-1]
		}
	}
	if utf8.Valid(text) {
		d.BodyUTF8, d.BodyText = true, string(text)
		return
	}
	d.BodyHex = hex.Dump(body)
}

// pretty indents JSON for reading; anything else is returned as it is.
func pretty(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

// fmtTime shows a time in UTC to the millisecond, as IoTDA's event_time_ms.
func fmtTime(t any) string {
	switch v := t.(type) {
	case time.Time:
		return v.UTC().Format("2006-01-02 15:04:05.000")
	case *time.Time:
		if v == nil {
			return ""
		}
		return v.UTC().Format("2006-01-02 15:04:05.000")
	}
	return ""
}

// fmtMS shows a duration in milliseconds as people say it: 850 ms, 3.2 s,
// 4 min 10 s, 2 h 5 min, 3 d 4 h.
// fmtInputDur writes seconds as a form field's value: a duration that the
// handler's time.ParseDuration reads back (fmtMS's "10 min 0 s" is for people,
// and a form submitted unchanged must not be refused).
func fmtInputDur(seconds float64) string {
	s := time.Duration(seconds * float64(time.Second)).Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func fmtMS(ms any) string {
	var v int64
	switch x := ms.(type) {
	case int64:
		v = x
	case *int64:
		if x == nil {
			return ""
		}
		v = *x
	case float64:
		v = int64(x * 1000) // seconds
	case *float64:
		if x == nil {
			return ""
		}
		v = int64(*x * 1000)
	default:
		return ""
	}
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	d := time.Duration(v) * time.Millisecond
	switch {
	case d < time.Second:
		return fmt.Sprintf("%s%d ms", sign, v)
	case d < time.Minute:
		return fmt.Sprintf("%s%.1f s", sign, d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%s%d min %d s", sign, int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%s%d h %d min", sign, int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%s%d d %d h", sign, int(d.Hours())/24, int(d.Hours())%24)
}

func pct(r float64) string {
	if r == 0 {
		return "0%"
	}
	if r < 0.001 {
		return "<0.1%"
	}
	return strconv.FormatFloat(math.Round(r*1000)/10, 'f', -1, 64) + "%"
}

// query is the filter as /commands' query string.
func (f CommandFilter) query() string {
	v := list{f.Device, f.Product, f.Status, f.Since, f.Until, f.Before}.values()
	if f.Before != nil {
		v.Set("before_id", f.BeforeID)
	}
	return v.Encode()
}

// values is the list as a query string, but its cursor's ids.
func (l list) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"device": l.device, "product": l.product, "status": l.status} {
		if s != "" {
			v.Set(k, s)
		}
	}
	for k, t := range map[string]*time.Time{"since": l.since, "until": l.until, "before": l.before} {
		if t != nil {
			v.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	return v
}

func deadLetterQuery(class string, before *time.Time, beforeID int64) string {
	v := url.Values{}
	if class != "" {
		v.Set("class", class)
	}
	if before != nil {
		v.Set("before", before.UTC().Format(time.RFC3339Nano))
		v.Set("before_id", strconv.FormatInt(beforeID, 10))
	}
	return v.Encode()
}

// parseTime reads a filter time: RFC 3339, or a UTC date or date and time
// as people type them.
func parseTime(s string) (*time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return &t, nil
		}
	}
	return nil, fmt.Errorf("%q is not a time: write 2026-11-30, 2026-11-30 10:02 (UTC) or RFC 3339", s)
}

// Chart is a product's failure and timeout rates per day, drawn as SVG on
// the server (no script runs in the page).
type Chart struct {
	Width, Height      int
	Left, Right, Top   float64
	Bottom             float64
	Failure, Timeout   string // polyline points
	FailDots, TimeDots []Dot
	YTicks             []Tick
	XTicks             []Tick
	Label              string
}

// SVG draws the chart. It is built here rather than by html/template, which
// costs a reflective call per attribute (20 products of 30 days made the
// page CPU-bound); the only text from the data, the product id in Label and
// the dots' titles, is escaped with html.EscapeString, which is safe in
// element text and in quoted attributes, and the numbers are Go's.
func (c *Chart) SVG() template.HTML {
	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s"><title>%s</title>`,
		c.Width, c.Height, esc(c.Label), esc(c.Label))
	for _, t := range c.YTicks {
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/><text class="axis" x="%.1f" y="%.1f" dx="-4" dy="3" text-anchor="end">%s</text>`,
			c.Left, c.Right, t.At, t.At, c.Left, t.At, esc(t.Label))
	}
	for _, t := range c.XTicks {
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%.1f" dy="16" text-anchor="middle">%s</text>`, t.At, c.Bottom, esc(t.Label))
	}
	fmt.Fprintf(&b, `<polyline class="line bad" points="%s"/><polyline class="line warn" points="%s"/>`, esc(c.Failure), esc(c.Timeout))
	for _, set := range []struct {
		class string
		dots  []Dot
	}{{"bad", c.FailDots}, {"warn", c.TimeDots}} {
		for _, d := range set.dots {
			fmt.Fprintf(&b, `<circle class="dot %s" cx="%.1f" cy="%.1f" r="3"><title>%s</title></circle>`, set.class, d.X, d.Y, esc(d.Title))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every value from the data is escaped above
}

// Dot is a point with its tooltip.
type Dot struct {
	X, Y  float64
	Title string
}

// Tick is an axis label at a position.
type Tick struct {
	At    float64
	Label string
}

func outcomeChart(p ProductOutcomes, from time.Time, days int) *Chart {
	c := &Chart{Width: 640, Height: 200, Left: 44, Right: 612, Top: 12, Bottom: 176}
	c.Label = "failure and timeout rates per day of product " + p.ProductID
	top := 0.05
	for _, d := range p.Days {
		top = max(top, d.FailureRate, d.TimeoutRate)
	}
	// A round top: 5%, 10%, 20%, 50%, 100%.
	for _, s := range []float64{0.05, 0.1, 0.2, 0.5, 1} {
		if top <= s {
			top = s
			break
		}
	}
	x := func(day string) float64 {
		t, _ := time.Parse(time.DateOnly, day)
		i := t.Sub(from).Hours() / 24
		if days <= 1 {
			return (c.Left + c.Right) / 2
		}
		return c.Left + (c.Right-c.Left)*i/float64(days-1)
	}
	y := func(r float64) float64 { return c.Bottom - (c.Bottom-c.Top)*r/top }
	var fail, tout []string
	for _, d := range p.Days {
		xf := x(d.Day)
		fail = append(fail, fmt.Sprintf("%.1f,%.1f", xf, y(d.FailureRate)))
		tout = append(tout, fmt.Sprintf("%.1f,%.1f", xf, y(d.TimeoutRate)))
		c.FailDots = append(c.FailDots, Dot{xf, y(d.FailureRate), fmt.Sprintf("%s: %s failed (%d of %d)", d.Day, pct(d.FailureRate), d.Failed, d.Commands)})
		c.TimeDots = append(c.TimeDots, Dot{xf, y(d.TimeoutRate), fmt.Sprintf("%s: %s timed out (%d of %d)", d.Day, pct(d.TimeoutRate), d.TimedOut, d.Commands)})
	}
	c.Failure, c.Timeout = strings.Join(fail, " "), strings.Join(tout, " ")
	for i := 0; i <= 5; i++ {
		r := top * float64(i) / 5
		c.YTicks = append(c.YTicks, Tick{y(r), pct(r)})
	}
	step := max(1, days/6)
	for i := 0; i < days; i += step {
		d := from.AddDate(0, 0, i).Format(time.DateOnly)
		c.XTicks = append(c.XTicks, Tick{x(d), d[5:]})
	}
	return c
}
