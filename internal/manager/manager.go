// Package manager is the add-on manager: controllers that register preview
// features and decide, per mesh revision, whether istiod injects native or
// classic sidecars, keeping ENABLE_NATIVE_SIDECARS on every istiod so; and
// one that keeps the MeshProfile's census of pods by injection mode.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// Options configure the manager.
type Options struct {
	Policy meshversion.Policy
	// MeshNamespace holds the istiod Deployments (aks-istio-system); empty
	// watches them in every namespace (the upstream layout's default).
	MeshNamespace string
	// Layout is aks (the add-on's revisions) or upstream (every istiod found).
	Layout meshdiscovery.Layout
	// Observe decides and reports but never writes an istiod.
	Observe bool
	// FeatureDelay is how long a feature takes to register or unregister.
	FeatureDelay time.Duration
	// MetricsAddr and ProbeAddr are listen addresses; "0" turns one off.
	MetricsAddr string
	ProbeAddr   string
	// MetricsSecure serves metrics over HTTPS to clients whose bearer token
	// the API server authenticates and allows GET /metrics; else plain HTTP
	// to anyone who can connect.
	MetricsSecure bool
	// MetricsCertDir holds the metrics server's tls.crt and tls.key; without
	// them it uses a self-signed certificate.
	MetricsCertDir string
	// PprofAddr serves Go's profiles; "" or "0" turns them off.
	PprofAddr string
	// LeaderElection makes one of several instances the only writer.
	LeaderElection          bool
	LeaderElectionNamespace string
	LeaseDuration           time.Duration
	// GuardWebhookAddr is where the placement guard's webhook server
	// listens (host:port); "" or "0" serves none.
	GuardWebhookAddr string
	// GuardWebhookCertDir holds that server's tls.crt and tls.key.
	GuardWebhookCertDir string
	// GuardConfiguration names the guard's MutatingWebhookConfiguration.
	GuardConfiguration string
	// GuardService, <name>.<namespace>, is the Service in front of the
	// webhook in a cluster: without GuardWebhookCertDir the manager then
	// issues and rotates the serving certificate itself (GuardCertIssuer).
	GuardService string
}

// The metrics server asks the API server who a scraper is and whether it
// may read /metrics (the meshaddon-metrics-reader ClusterRole grants that).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// LeaderElectionID names the lease all instances compete for.
const LeaderElectionID = "meshaddon-manager.meshaddon.dev"

// New builds a manager with its controllers, health checks and metrics.
func New(cfg *rest.Config, o Options) (ctrl.Manager, error) {
	if cfg.QPS == 0 {
		// client-go's default (5 requests/s, bursts of 10) held the node
		// labeller to 5 patches a second: 250 old nodes joining took 50 s
		// to label. As controller-runtime's GetConfig does, leave the rate
		// to the API server's priority and fairness.
		cfg = rest.CopyConfig(cfg)
		cfg.QPS = -1
	}
	istiodSelector, err := labels.Parse(istiod.Label)
	if err != nil {
		return nil, err
	}
	renew := o.LeaseDuration * 2 / 3
	retry := o.LeaseDuration / 5
	metrics := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.MetricsSecure {
		metrics.SecureServing = true
		metrics.CertDir = o.MetricsCertDir
		// TokenReview and SubjectAccessReview with the API server, cached.
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
		// HTTP/1.1 only, as controller-runtime's scaffold does: HTTP/2's
		// stream cancellation and rapid reset attacks need no credentials.
		metrics.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	}
	mopts := ctrl.Options{
		Scheme:                  kube.Scheme,
		Metrics:                 metrics,
		HealthProbeBindAddress:  o.ProbeAddr,
		PprofBindAddress:        o.PprofAddr,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// A new leader takes over as soon as the old one stops cleanly.
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Node{}:       {Transform: slimNode},
				&appsv1.Deployment{}: istiodCache(o.MeshNamespace, istiodSelector),
			},
		},
	}
	guarding := o.GuardWebhookAddr != "" && o.GuardWebhookAddr != "0"
	if o.GuardConfiguration == "" {
		o.GuardConfiguration = GuardConfiguration
	}
	var issuer *GuardCertIssuer
	if guarding && o.GuardService != "" && o.GuardWebhookCertDir == "" {
		if issuer, err = newGuardCertIssuer(cfg, o); err != nil {
			return nil, err
		}
		o.GuardWebhookCertDir = issuer.CertDir
	}
	if guarding {
		host, port, err := net.SplitHostPort(o.GuardWebhookAddr)
		if err != nil {
			return nil, fmt.Errorf("--guard-webhook-bind-address %q: %w", o.GuardWebhookAddr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("--guard-webhook-bind-address %q: bad port", o.GuardWebhookAddr)
		}
		mopts.WebhookServer = webhook.NewServer(webhook.Options{Host: host, Port: p, CertDir: o.GuardWebhookCertDir,
			TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}})
	}
	if o.LeaseDuration > 0 {
		mopts.LeaseDuration, mopts.RenewDeadline, mopts.RetryPeriod = &o.LeaseDuration, &renew, &retry
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("create the manager: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	var health *GuardHealth
	changed := make(chan event.GenericEvent, 1)
	if guarding {
		if issuer != nil {
			if err := mgr.Add(issuer); err != nil {
				return nil, err
			}
		}
		health = &GuardHealth{Reader: mgr.GetAPIReader(), Configuration: o.GuardConfiguration, Serving: o.GuardWebhookAddr, Interval: 500 * time.Millisecond, Changed: changed}
		if err := mgr.Add(health); err != nil {
			return nil, err
		}
		mgr.GetWebhookServer().Register(GuardPath, &webhook.Admission{
			Handler: NewPlacementWebhook(mgr.GetClient(), o.Policy, o.MeshNamespace, admission.NewDecoder(mgr.GetScheme())),
		})
	}
	if err := (&ProfileReconciler{
		Guard:         health,
		GuardChanged:  changed,
		Client:        mgr.GetClient(),
		Versions:      dc,
		Recorder:      mgr.GetEventRecorderFor("meshaddon-manager"),
		Policy:        o.Policy,
		MeshNamespace: o.MeshNamespace,
		Layout:        o.Layout,
		Observe:       o.Observe,
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := (&NodeLabeler{Client: mgr.GetClient(), Policy: o.Policy}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := (&FeatureReconciler{Client: mgr.GetClient(), Delay: o.FeatureDelay, Clock: clock.RealClock{}}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := (&CensusReconciler{
		Client: mgr.GetClient(),
		Clock:  clock.RealClock{},
		Pods:   NewCensusInformer(md, corev1.SchemeGroupVersion.WithResource("pods"), inventory.SlimPodMetadata),
		Jobs:   NewCensusInformer(md, batchv1.SchemeGroupVersion.WithResource("jobs"), inventory.SlimJobMetadata),
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	// Ready once the caches hold every node and istiod Deployment.
	if err := mgr.AddReadyzCheck("caches", func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informer caches are not synced yet")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return mgr, nil
}

// istiodCache caches istiod Deployments in namespace, or in every namespace
// when it is empty.
func istiodCache(namespace string, selector labels.Selector) cache.ByObject {
	c := cache.ByObject{Label: selector}
	if namespace != "" {
		c.Namespaces = map[string]cache.Config{namespace: {}}
	}
	return c
}
