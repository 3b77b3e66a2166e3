package manager

import (
	"github.com/meshaddon/meshaddon/api/v1alpha1"
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
)

func init() {
	metrics.Registry.MustRegister(reconcilesTotal, revisionNative, envWritesTotal, podsByMode, guardPodsTotal, guardHealthy)
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
