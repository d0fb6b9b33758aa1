package deploy_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The Grafana dashboard, against the metrics the code defines.

type metricDef struct {
	kind   string // Counter, CounterVec, Gauge, Histogram, ...
	labels []string
}

// metricSources are the files that define cmdtrack's metrics.
var metricSources = []string{"consumer/metrics.go", "pipeline/metrics.go", "reconcile/metrics.go", "upkeep/metrics.go",
	"outcome/outcome.go", "outcome/db.go", "webhook/metrics.go"}

// definedMetrics reads the metric definitions (kind and labels) from
// metricSources, and checks them against what the code registers
// (exportedMetrics): the names and labels must be the same.
func definedMetrics(t *testing.T) map[string]metricDef {
	t.Helper()
	var src string
	for _, f := range metricSources {
		src += string(readFile(t, f))
	}
	// The options may hold one level of braces: a bucket list written out
	// (webhook's Buckets: []float64{...}).
	re := regexp.MustCompile(`prometheus\.New(\w+)\(prometheus\.\w+Opts\{\s*Name:\s*"(cmdtrack_[a-z0-9_]+)"(?:[^{}]|\{[^{}]*\})*\}(?:,\s*\[\]string\{([^}]*)\})?`)
	// A collector's gauges, read at scrape time (outcome.DBCollector).
	descRe := regexp.MustCompile(`prometheus\.NewDesc\(\s*"(cmdtrack_[a-z0-9_]+)",\s*"[^"]*",\s*(?:\[\]string\{([^}]*)\}|nil)`)
	labelList := func(s string) []string {
		var lbls []string
		for _, l := range strings.Split(s, ",") {
			if l = strings.Trim(strings.TrimSpace(l), `"`); l != "" {
				lbls = append(lbls, l)
			}
		}
		return lbls
	}
	defs := map[string]metricDef{}
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		defs[m[2]] = metricDef{kind: m[1], labels: labelList(m[3])}
	}
	for _, m := range descRe.FindAllStringSubmatch(src, -1) {
		defs[m[1]] = metricDef{kind: "Gauge", labels: labelList(m[2])}
	}
	exported := exportedMetrics(t)
	for name, labels := range exported {
		if !strings.HasPrefix(name, "cmdtrack_") {
			continue
		}
		def, ok := defs[name]
		require.Truef(t, ok, "%s is registered but not found in %v", name, metricSources)
		require.ElementsMatchf(t, labels, def.labels, "%s: labels", name)
	}
	for name := range defs {
		require.Containsf(t, exported, name, "%s is in %v but not registered by the code", name, metricSources)
	}
	require.GreaterOrEqual(t, len(defs), 10)
	return defs
}

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	defs := definedMetrics(t)
	require.Contains(t, defs, "cmdtrack_apply_duration_seconds")
	require.Equal(t, "Histogram", defs["cmdtrack_apply_duration_seconds"].kind)
	require.Equal(t, []string{"class"}, defs["cmdtrack_database_errors_total"].labels)

	type target struct {
		Expr       string            `json:"expr"`
		RefID      string            `json:"refId"`
		Datasource map[string]string `json:"datasource"`
	}
	type panel struct {
		ID         int               `json:"id"`
		Type       string            `json:"type"`
		Title      string            `json:"title"`
		Datasource map[string]string `json:"datasource"`
		GridPos    struct{ H, W, X, Y int }
		Targets    []target `json:"targets"`
		Panels     []panel  `json:"panels"`
	}
	var dash struct {
		Inputs []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			PluginID string `json:"pluginId"`
		} `json:"__inputs"`
		SchemaVersion int     `json:"schemaVersion"`
		Title         string  `json:"title"`
		UID           string  `json:"uid"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	raw := readFile(t, "deploy/grafana/cmdtrack.json")
	require.True(t, json.Valid(raw))
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.GreaterOrEqual(t, dash.SchemaVersion, 36)
	require.NotEmpty(t, dash.Title)
	require.NotEmpty(t, dash.UID)
	require.Len(t, dash.Inputs, 1)
	require.Equal(t, "DS_PROMETHEUS", dash.Inputs[0].Name)
	require.Equal(t, "prometheus", dash.Inputs[0].PluginID)
	templVars := map[string]bool{}
	for _, v := range dash.Templating.List {
		templVars[v.Name] = true
	}

	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	ids := map[int]bool{}
	used := map[string]bool{}
	metricRe := regexp.MustCompile(`\bcmdtrack_[a-z0-9_]+`)
	byRe := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	varRe := regexp.MustCompile(`\$(?:\{)?([A-Za-z_]+)`)
	builtinVars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, p := range all {
		require.Falsef(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		require.LessOrEqualf(t, p.GridPos.X+p.GridPos.W, 24, "panel %q is wider than the grid", p.Title)
		if p.Type == "row" {
			continue
		}
		require.NotEmptyf(t, p.Targets, "panel %q has no queries", p.Title)
		require.Equalf(t, "${DS_PROMETHEUS}", p.Datasource["uid"], "panel %q datasource", p.Title)
		for _, tg := range p.Targets {
			where := fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)
			require.NotEmptyf(t, tg.Expr, where)
			if tg.Datasource != nil {
				require.Equalf(t, "${DS_PROMETHEUS}", tg.Datasource["uid"], where)
			}
			require.Equalf(t, strings.Count(tg.Expr, "("), strings.Count(tg.Expr, ")"), "%s: unbalanced parentheses", where)
			require.Equalf(t, strings.Count(tg.Expr, "{"), strings.Count(tg.Expr, "}"), "%s: unbalanced braces", where)
			for _, v := range varRe.FindAllStringSubmatch(tg.Expr, -1) {
				require.Truef(t, builtinVars[v[1]] || templVars[v[1]], "%s uses undefined variable $%s", where, v[1])
			}
			allowed := map[string]bool{"job": true, "instance": true}
			for _, name := range metricRe.FindAllString(tg.Expr, -1) {
				base := name
				suffix := ""
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, s); ok {
						if _, defined := defs[b]; defined {
							base, suffix = b, s
						}
					}
				}
				def, ok := defs[base]
				require.Truef(t, ok, "%s uses %s, which %v do not define", where, name, metricSources)
				histogram := strings.HasPrefix(def.kind, "Histogram")
				require.Equalf(t, histogram, suffix != "", "%s: %s (a %s) must be used with _bucket/_sum/_count exactly when it is a histogram", where, name, def.kind)
				if strings.HasPrefix(def.kind, "Counter") {
					require.Regexpf(t, `(rate|increase)\(`+name+`\b`, tg.Expr, "%s: counter %s must be used through rate() or increase()", where, name)
				}
				if suffix == "_bucket" {
					allowed["le"] = true
					require.Containsf(t, tg.Expr, "histogram_quantile(", where)
				}
				for _, l := range def.labels {
					allowed[l] = true
				}
				used[base] = true
			}
			for _, m := range byRe.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					l = strings.TrimSpace(l)
					require.Truef(t, allowed[l], "%s groups by %q, which its metrics do not have", where, l)
				}
			}
			if strings.Contains(tg.Expr, "histogram_quantile(") {
				require.Regexpf(t, `histogram_quantile\(0?\.\d+,\s*sum by \([^)]*\ble\b[^)]*\) \(rate\(cmdtrack_[a-z_]+_bucket\{`, tg.Expr, where)
			}
		}
	}
	for name := range defs {
		require.Truef(t, used[name], "no panel shows %s", name)
	}
}
