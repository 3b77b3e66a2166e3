package ship

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMonitoringRules parses the alerts with Prometheus's rule parser and
// checks each alert the issue asks for is there with a summary; a broken
// rule is refused, so the parse is not a formality.
func TestMonitoringRules(t *testing.T) {
	root := moduleRoot(t)
	data, err := os.ReadFile(filepath.Join(root, RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	groups, err := ParseRules(data)
	if err != nil {
		t.Fatal(err)
	}
	alerts := map[string]string{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert.Value] = r.Expr.Value
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" || r.Labels["severity"] == "" {
				t.Errorf("alert %s lacks a summary, description or severity", r.Alert.Value)
			}
		}
	}
	for alert, metric := range map[string]string{
		"MeshaddonOldNodeSwitchedToClassic": "meshaddon_old_node_switches_total",
		"MeshaddonDriftRevertedOften":       `meshaddon_istiod_env_writes_total{cause="drift"}`,
		"MeshaddonClassicPodsAfterNative":   `meshaddon_pods{mode="classic"}`,
		"MeshaddonPodCensusStale":           "meshaddon_pods_census_timestamp_seconds",
	} {
		if !strings.Contains(alerts[alert], metric) {
			t.Errorf("alert %s: %q, want one on %s", alert, alerts[alert], metric)
		}
	}
	for _, bad := range []string{
		strings.Replace(string(data), "increase(meshaddon_old_node_switches_total[15m]) > 0", "increase(meshaddon_old_node_switches_total[15m] > 0", 1),
		strings.Replace(string(data), "for: 6h", "for: six hours", 1),
		strings.Replace(string(data), "{{ $labels.revision }} switched", "{{ $labels.revision switched", 1),
	} {
		if bad == string(data) {
			t.Fatal("the broken copy is the same as the file: update this test")
		}
		if _, err := ParseRules([]byte(bad)); err == nil {
			t.Error("a broken rule file parsed")
		}
	}
}

// TestMonitoringMetricNames: the dashboard's and rules' queries parse as
// PromQL and read only the manager's metrics (a running manager exports
// each: test/e2e's metrics step).
func TestMonitoringMetricNames(t *testing.T) {
	names, err := MonitoringMetrics(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"controller_runtime_reconcile_errors_total",
		"meshaddon_istiod_env_writes_total",
		"meshaddon_old_node_switches_total",
		"meshaddon_old_nodes",
		"meshaddon_pods",
		"meshaddon_pods_census_timestamp_seconds",
		"meshaddon_profile_reconciles_total",
		"meshaddon_revision_native_sidecars",
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("the queries read %v, want %v", names, want)
	}
	if _, err := MetricNames([]string{"sum(rate(x[5m])"}); err == nil {
		t.Error("a broken query parsed")
	}
}
