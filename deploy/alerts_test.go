package deploy_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/cmdtrack/cmdtrack/consumer"
	"github.com/cmdtrack/cmdtrack/outcome"
	"github.com/cmdtrack/cmdtrack/pipeline"
	"github.com/cmdtrack/cmdtrack/reconcile"
	"github.com/cmdtrack/cmdtrack/upkeep"
	"github.com/cmdtrack/cmdtrack/webhook"
)

// descRegisterer is a prometheus.Registerer that keeps what each collector
// describes.
type descRegisterer struct{ descs []*prometheus.Desc }

func (r *descRegisterer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		r.descs = append(r.descs, d)
	}
	return nil
}

func (r *descRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *descRegisterer) Unregister(prometheus.Collector) bool { return true }

// exportedMetrics are the series cmdtrack's worker registers (cmd/cmdtrack's
// runWorker: the Go and process collectors, then each component's metrics),
// by name, with their labels, as the real constructors describe them.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	reg := &descRegisterer{}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	consumer.NewMetrics(reg)
	pipeline.NewMetrics(reg)
	reconcile.NewMetrics(reg)
	upkeep.NewMetrics(reg)
	outcome.NewMetrics(reg)
	reg.MustRegister(outcome.NewDBCollector(nil, nil, time.Hour, true, nil))
	webhook.NewMetrics(reg)
	reg.MustRegister(webhook.NewBacklogCollector(nil, nil, nil, nil))

	nameRe := regexp.MustCompile(`fqName: "([^"]+)"`)
	labelsRe := regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	out := map[string][]string{}
	for _, d := range reg.descs {
		s := d.String()
		m := nameRe.FindStringSubmatch(s)
		require.NotNilf(t, m, "desc %s", s)
		var lbls []string
		if l := labelsRe.FindStringSubmatch(s); l != nil && l[1] != "" {
			lbls = strings.Split(l[1], ",")
		}
		out[m[1]] = lbls
	}
	require.Contains(t, out, "cmdtrack_commands_finished_total")
	require.Contains(t, out, "go_gc_gomemlimit_bytes")
	require.Contains(t, out, "process_resident_memory_bytes")
	require.Contains(t, out, "cmdtrack_webhook_outbox_oldest_seconds")
	return out
}

// selected is a metric a PromQL expression selects, with the labels its
// matchers and groupings name.
type selected struct {
	name   string
	labels []string
}

// grafanaVars are replaced by a value of their type before parsing: the
// range ones by a duration, the template variables only appear in strings.
var grafanaVars = regexp.MustCompile(`\$\{?__(?:rate_interval|interval|range)\}?`)

// parsePromQL parses expr with Prometheus' own parser and returns the
// metrics it selects, and the labels used on each.
func parsePromQL(t *testing.T, where, expr string) []selected {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.ReplaceAllString(expr, "5m"))
	require.NoErrorf(t, err, "%s: %s", where, expr)
	var out []selected
	var groupings [][]string
	parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
		switch n := n.(type) {
		case *parser.AggregateExpr:
			groupings = append(groupings, n.Grouping)
		case *parser.VectorSelector:
			s := selected{name: n.Name}
			for _, m := range n.LabelMatchers {
				if m.Name == "__name__" {
					continue
				}
				s.labels = append(s.labels, m.Name)
			}
			// The groupings of the aggregations around it.
			for _, p := range path {
				if a, ok := p.(*parser.AggregateExpr); ok && !a.Without {
					s.labels = append(s.labels, a.Grouping...)
				}
			}
			require.NotEmptyf(t, s.name, "%s: selects by a name pattern, which this check cannot follow: %s", where, expr)
			out = append(out, s)
		}
		return nil
	})
	require.NotEmptyf(t, out, "%s selects no metric: %s", where, expr)
	return out
}

// requireExported checks that every metric sel names is one the code
// exports (a histogram's through _bucket, _sum or _count), and that the
// labels used on it are its own, or the target's.
func requireExported(t *testing.T, where string, exported map[string][]string, sel []selected, extra ...string) {
	t.Helper()
	for _, s := range sel {
		name, lbls := s.name, []string(nil)
		if l, ok := exported[name]; ok {
			lbls = l
		} else {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok {
					if l, ok := exported[base]; ok {
						name, lbls = base, l
						if suffix == "_bucket" {
							lbls = append(append([]string(nil), l...), "le")
						}
					}
				}
			}
		}
		_, ok := exported[name]
		require.Truef(t, ok || slices.Contains(extra, name), "%s uses %s, which cmdtrack does not export", where, s.name)
		allowed := append([]string{"job", "instance"}, lbls...)
		for _, l := range s.labels {
			require.Truef(t, slices.Contains(allowed, l), "%s: %s has no label %q (it has %v)", where, s.name, l, lbls)
		}
	}
}

// Every query of the dashboard parses with Prometheus' own parser and names
// only metrics, and labels, that cmdtrack exports; the Commands row shows
// the commands' outcome metrics, the Messages and calls row the device
// messages' and synchronous calls', and the Webhooks row the deliveries'
// and the outboxes'.
func TestGrafanaQueriesParse(t *testing.T) {
	t.Parallel()
	exported := exportedMetrics(t)
	var dash struct {
		Panels []grafanaPanel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(readFile(t, "deploy/grafana/cmdtrack.json"), &dash))
	var rowTitles []string
	used := map[string]map[string]bool{}
	var walk func([]grafanaPanel, string)
	walk = func(ps []grafanaPanel, row string) {
		for _, p := range ps {
			if p.Type == "row" {
				rowTitles = append(rowTitles, p.Title)
				row = p.Title
				walk(p.Panels, row)
				continue
			}
			for _, tg := range p.Targets {
				where := fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)
				sel := parsePromQL(t, where, tg.Expr)
				requireExported(t, where, exported, sel)
				if used[row] == nil {
					used[row] = map[string]bool{}
				}
				for _, s := range sel {
					used[row][s.name] = true
				}
			}
		}
	}
	walk(dash.Panels, "")
	for row, names := range map[string][]string{
		"Commands": {
			"cmdtrack_commands_finished_total", "cmdtrack_commands_final_changed_total", "cmdtrack_command_stage_seconds_bucket",
			"cmdtrack_commands_stuck", "cmdtrack_messages_dead_lettered_total",
		},
		"Messages and calls": {
			"cmdtrack_messages_finished_total", "cmdtrack_messages_final_changed_total", "cmdtrack_messages_stuck",
			"cmdtrack_calls_finished_total",
		},
		"Webhooks": {
			"cmdtrack_webhook_deliveries_total", "cmdtrack_webhook_attempt_seconds_bucket", "cmdtrack_webhook_outbox_events",
			"cmdtrack_webhook_outbox_oldest_seconds",
		},
	} {
		require.Contains(t, rowTitles, row)
		for _, name := range names {
			require.Truef(t, used[row][name], "the %s row does not show %s", row, name)
		}
	}
}

type grafanaPanel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

// ruleGroups is a Prometheus rule file.
type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// The alerting rules name only metrics cmdtrack exports (or Prometheus'
// own up), each alert has a summary, a description, a severity and a
// runbook that is a section of the README, and the rule file's unit tests
// test every alert.
func TestAlertingRules(t *testing.T) {
	t.Parallel()
	var rules ruleGroups
	require.NoError(t, yaml.UnmarshalStrict(readFile(t, "deploy/prometheus/cmdtrack.rules.yml"), &rules))
	exported := exportedMetrics(t)
	anchors := readmeAnchors(t)
	tests := string(readFile(t, "deploy/prometheus/cmdtrack.rules.test.yml"))
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			require.NotEmpty(t, r.Alert, "only alerting rules")
			alerts = append(alerts, r.Alert)
			requireExported(t, where, exported, parsePromQL(t, where, r.Expr), "up")
			require.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], where)
			require.NotEmpty(t, r.Annotations["summary"], where)
			require.NotEmpty(t, r.Annotations["description"], where)
			anchor := strings.ToLower(r.Alert)
			require.Equal(t, "https://github.com/cmdtrack/cmdtrack/blob/main/README.md#"+anchor, r.Annotations["runbook_url"], where)
			require.Truef(t, anchors[anchor], "%s: the README has no section %q", where, r.Alert)
			require.Containsf(t, tests, "alertname: "+r.Alert+"\n", "%s has no unit test", where)
		}
	}
	require.Len(t, alerts, 15)
}

// readmeAnchors are the GitHub anchors of the README's headings.
func readmeAnchors(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	strip := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(string(readFile(t, "README.md")), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok && !strings.HasPrefix(line, "#!") {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			out[strings.ReplaceAll(strip.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return out
}

// The PrometheusRule component holds the same rules as the rule file.
func TestPrometheusRuleComponent(t *testing.T) {
	t.Parallel()
	const dir = "deploy/kubernetes/prometheusrule"
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	require.NoError(t, yaml.UnmarshalStrict(readFile(t, dir+"/kustomization.yaml"), &k))
	require.Equal(t, "kustomize.config.k8s.io/v1alpha1", k.APIVersion)
	require.Equal(t, "Component", k.Kind)
	require.Equal(t, []string{"prometheusrule.yaml"}, k.Resources)

	var pr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec any `json:"spec"`
	}
	require.NoError(t, yaml.UnmarshalStrict(readFile(t, dir+"/prometheusrule.yaml"), &pr))
	require.Equal(t, "monitoring.coreos.com/v1", pr.APIVersion)
	require.Equal(t, "PrometheusRule", pr.Kind)
	require.Equal(t, "cmdtrack", pr.Metadata.Name)
	require.Empty(t, pr.Metadata.Namespace, "the base sets no namespace")

	var file any
	require.NoError(t, yaml.Unmarshal(readFile(t, "deploy/prometheus/cmdtrack.rules.yml"), &file))
	require.Equal(t, file, pr.Spec,
		"%s/prometheusrule.yaml's spec must hold deploy/prometheus/cmdtrack.rules.yml's groups, unchanged", dir)
}
