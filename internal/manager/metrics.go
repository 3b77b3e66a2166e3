package manager

import (
	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics beyond controller-runtime's own (controller_runtime_reconcile_total,
// controller_runtime_reconcile_errors_total, workqueue depth and latency).
var (
	reconcilesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshaddon_profile_reconciles_total",
		Help: "MeshProfile reconciles, by result (success, error).",
	}, []string{"result"})
	revisionNative = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "meshaddon_revision_native_sidecars",
		Help: "1 when the revision injects native sidecars, 0 when classic.",
	}, []string{"revision"})
	envWritesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshaddon_istiod_env_writes_total",
		Help: "Writes of ENABLE_NATIVE_SIDECARS to istiod Deployments, by cause (decision, drift).",
	}, []string{"cause"})
	envWouldWrite = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "meshaddon_istiod_env_would_write",
		Help: "Observe mode: 1 when the revision's istiod differs from the decision (the manager would write it), 0 when it matches.",
	}, []string{"revision"})
	podsByMode = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "meshaddon_pods",
		Help: "Pods by injecting revision and mode (native, classic; none with revision \"\"), from the census.",
	}, []string{"revision", "mode"})
	guardPodsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshaddon_guard_pods_total",
		Help: "Pods the placement guard saw, by result (affinity, classic, unchanged, not-native, unmergeable).",
	}, []string{"result"})
	guardHealthy = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "meshaddon_guard_healthy",
		Help: "1 when the placement guard's webhook serves as its configuration expects, 0 when not (old nodes then turn the mesh classic).",
	})
	// For config/monitoring's alerts and dashboard (issue 17).
	oldNodes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "meshaddon_old_nodes",
		Help: "Nodes whose kubelet the policy does not allow native sidecars on (or whose version cannot be read), by pool.",
	}, []string{"pool"})
	oldNodeSwitches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshaddon_old_node_switches_total",
		Help: "Times a native revision switched to classic because old nodes joined (the OldKubeletNodes event), by revision.",
	}, []string{"revision"})
	censusTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "meshaddon_pods_census_timestamp_seconds",
		Help: "Unix time of the pod census in the profile's status (status.pods.observedTime); precheck distrusts one older than 2 minutes.",
	})
)

func init() {
	metrics.Registry.MustRegister(reconcilesTotal, revisionNative, envWritesTotal, envWouldWrite, podsByMode, guardPodsTotal, oldNodes, oldNodeSwitches, censusTime, guardHealthy)
	// Every label value at 0 from the start: a series that appears only at
	// its first increment makes rate() and increase() miss that increment,
	// and a dashboard or alert cannot tell "none yet" from "not exported".
	for _, r := range []string{"success", "error"} {
		reconcilesTotal.WithLabelValues(r)
	}
	for _, c := range []string{"decision", "drift"} {
		envWritesTotal.WithLabelValues(c)
	}
}

// setOldNodes mirrors the policy's old nodes in oldNodes, for every pool
// (0 when none is old).
func setOldNodes(p meshversion.Policy, nodes []meshversion.Node) {
	oldNodes.Reset()
	for _, pool := range meshversion.SummarizePools(nodes) {
		oldNodes.WithLabelValues(pool.Name).Set(0)
	}
	for pool, old := range p.OldNodes(nodes) {
		oldNodes.WithLabelValues(pool).Set(float64(len(old)))
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// setPodGauges mirrors a census in podsByMode.
func setPodGauges(c *v1alpha1.PodCensus) {
	podsByMode.Reset()
	podsByMode.WithLabelValues("", "none").Set(float64(c.NotInjected))
	for _, r := range c.Revisions {
		podsByMode.WithLabelValues(r.Name, "native").Set(float64(r.Native))
		podsByMode.WithLabelValues(r.Name, "classic").Set(float64(r.Classic))
	}
}
