package ship

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// The alerts and the dashboard, relative to the module's root.
const (
	RulesFile     = "config/monitoring/prometheus-rule.yaml"
	DashboardFile = "config/monitoring/grafana-dashboard.json"
)

// ParseRules reads a PrometheusRule and parses its spec with Prometheus's
// own rule parser (rulefmt, as promtool check rules does): the groups, or
// every error found.
func ParseRules(data []byte) (*rulefmt.RuleGroups, error) {
	var pr struct {
		Kind string          `json:"kind"`
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &pr); err != nil {
		return nil, err
	}
	if pr.Kind != "PrometheusRule" || len(pr.Spec) == 0 {
		return nil, fmt.Errorf("not a PrometheusRule with a spec (kind %q)", pr.Kind)
	}
	spec, err := yaml.JSONToYAML(pr.Spec)
	if err != nil {
		return nil, err
	}
	groups, errs := rulefmt.Parse(spec)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return groups, nil
}

// DashboardExprs are the PromQL queries of a Grafana dashboard's panels.
func DashboardExprs(data []byte) ([]string, error) {
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			return nil, fmt.Errorf("panel %q has no query", p.Title)
		}
		for _, t := range p.Targets {
			out = append(out, t.Expr)
		}
	}
	return out, nil
}

// MetricNames are the metric names the queries read, sorted. Grafana's
// $__rate_interval and $__interval stand in for a duration.
func MetricNames(exprs []string) ([]string, error) {
	names := map[string]bool{}
	for _, e := range exprs {
		e = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m").Replace(e)
		expr, err := parser.ParseExpr(e)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", e, err)
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
				names[vs.Name] = true
			}
			return nil
		})
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// MonitoringMetrics are the metric names config/monitoring's alerts and
// dashboard read: a running manager must export every one (test/e2e).
func MonitoringMetrics(root string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(root, RulesFile))
	if err != nil {
		return nil, err
	}
	groups, err := ParseRules(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", RulesFile, err)
	}
	var exprs []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr.Value)
		}
	}
	data, err = os.ReadFile(filepath.Join(root, DashboardFile))
	if err != nil {
		return nil, err
	}
	d, err := DashboardExprs(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", DashboardFile, err)
	}
	return MetricNames(append(exprs, d...))
}
