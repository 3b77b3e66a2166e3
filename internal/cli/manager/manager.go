// Package manager is `meshaddon manager`: the add-on manager process, run in
// the cluster as a Deployment (config/) or by `meshaddon local up`.
package manager

import (
	goflag "flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientfeatures "k8s.io/client-go/features"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/manager"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// Options are the flags of `meshaddon manager`.
type Options struct {
	Policy string
	Layout string
	manager.Options
	zap zap.Options
}

// NewCommand returns `meshaddon manager`.
func NewCommand(flags *genericclioptions.ConfigFlags, _ genericiooptions.IOStreams) *cobra.Command {
	o := &Options{zap: zap.Options{Development: false}}
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the add-on manager: decide native or classic sidecars per revision and keep istiod so",
		Long: `Run the add-on manager. It watches the MeshProfile, feature registrations, every node
(kubelet version, readiness) and the istiod Deployments, decides for each mesh revision
whether istiod injects native or classic sidecars, writes ENABLE_NATIVE_SIDECARS on the
istiod Deployment accordingly (putting it back if someone edits it), and reports why in
the MeshProfile's status and events. It also keeps the MeshProfile's pod census
(status.pods: every pod by revision and mode, from a watch of pod metadata), which
precheck reads instead of listing the pods.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			layout, err := meshdiscovery.ParseLayout(o.Layout)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, fmt.Errorf("--layout: %w", err))
			}
			o.Options.Layout = layout
			p, err := meshversion.LookupPolicy(o.Policy)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			if layout == meshdiscovery.LayoutUpstream && !cmd.Flags().Changed("policy") {
				// Upstream Istio has no platform feature flag: its own rules.
				p = meshversion.UpstreamPolicy
			}
			o.Options.Policy = p
			if !cmd.Flags().Changed("mesh-namespace") && layout == meshdiscovery.LayoutAKS {
				o.MeshNamespace = meshdiscovery.AKSNamespace
			}
			// The node cache keeps slim nodes, but every list and watch event
			// decodes a full Node first: collect that garbage sooner so the
			// manager stays small at thousands of nodes (GOGC overrides).
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(50)
			}
			streamInitialLists()
			ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
			cfg, err := flags.ToRESTConfig()
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, fmt.Errorf("load kubeconfig: %w", err))
			}
			mgr, err := manager.New(cfg, o.Options)
			if err != nil {
				return err
			}
			ctrl.Log.WithName("setup").Info("starting the add-on manager", "policy", p.Name, "layout", layout, "observe", o.Observe, "meshNamespace", o.MeshNamespace, "leaderElection", o.LeaderElection)
			return mgr.Start(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Policy, "policy", meshversion.DefaultPolicy.Name, "Version policy: "+strings.Join(meshversion.PolicyNames(), " or ")+" (preview: the seed document's 1.29+ with the feature flag; ga: the later 1.33+ rules)")
	f.StringVar(&o.Layout, "layout", string(meshdiscovery.LayoutAKS), "aks: the managed add-on's asm-1-NN revisions of the MeshProfile, in aks-istio-system; upstream: every istiod found (istioctl or Helm installs), each decided by its Istio version")
	f.BoolVar(&o.Observe, "observe", false, "Decide and report (status, events, metrics, census) but never write an istiod: for istiods that Helm or a GitOps controller owns")
	f.StringVar(&o.MeshNamespace, "mesh-namespace", "", "Namespace of the istiod Deployments (default: aks-istio-system with --layout aks, every namespace with --layout upstream)")
	f.DurationVar(&o.FeatureDelay, "feature-registration-delay", 5*time.Second, "How long a feature takes to register or unregister (a real platform takes minutes)")
	f.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8443", `Prometheus metrics address ("0" turns it off)`)
	f.BoolVar(&o.MetricsSecure, "metrics-secure", true, "Serve metrics over HTTPS only to clients whose token may get /metrics (bind them to the meshaddon-metrics-reader ClusterRole); false serves plain HTTP to anyone")
	f.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", "Directory of the metrics server's tls.crt and tls.key (default: a self-signed certificate)")
	f.StringVar(&o.GuardWebhookAddr, "guard-webhook-bind-address", "0", `Address (host:port) of the placement guard's webhook server, for MeshProfile spec.oldNodes: Guard ("0" serves none)`)
	f.StringVar(&o.GuardWebhookCertDir, "guard-webhook-cert-dir", "", "Directory of the guard webhook server's tls.crt and tls.key, e.g. cert-manager's Secret mounted (reloaded when they change); the manager then neither issues a certificate nor writes the caBundle, whoever gives the certificate does")
	f.StringVar(&o.GuardService, "guard-webhook-service", "", "In a cluster, the Service in front of the guard's webhook, <name>.<namespace>: without --guard-webhook-cert-dir the manager issues and rotates its certificate (Secret "+manager.GuardCertSecret+" in that namespace) and writes the caBundle")
	f.StringVar(&o.GuardConfiguration, "guard-webhook-configuration", manager.GuardConfiguration, "Name of the guard's MutatingWebhookConfiguration, whose health the manager checks")
	f.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz")
	f.StringVar(&o.PprofAddr, "pprof-bind-address", "0", `Address of Go's /debug/pprof ("0" turns it off)`)
	f.BoolVar(&o.LeaderElection, "leader-elect", true, "Elect a leader so that only one instance writes")
	f.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", envOr("POD_NAMESPACE", "meshaddon-system"), "Namespace of the leader election lease")
	f.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", 15*time.Second, "How long a lost leader keeps the lease before another instance takes over")
	gofs := goflag.NewFlagSet("zap", goflag.ContinueOnError)
	o.zap.BindFlags(gofs)
	f.AddGoFlagSet(gofs)
	return cmd
}

// streamInitialLists makes every informer fill its cache from a watch that
// streams the objects one by one (watch-list, KEP-3157) instead of one LIST
// decoded whole: at 5,000 nodes the manager's own (anonymous) memory peaked
// at 81-85 MiB at start with the LIST and at 36-42 MiB streaming
// (bench/RESULTS.md). client-go
// leaves it off by default (beta); an explicit KUBE_FEATURE_WatchListClient
// still decides, and an API server that cannot stream gets the LIST (the
// reflector falls back).
func streamInitialLists() {
	if _, set := os.LookupEnv("KUBE_FEATURE_" + string(clientfeatures.WatchListClient)); set {
		return
	}
	clientfeatures.ReplaceFeatureGates(watchListOn{clientfeatures.FeatureGates()})
}

type watchListOn struct{ clientfeatures.Gates }

func (g watchListOn) Enabled(f clientfeatures.Feature) bool {
	return f == clientfeatures.WatchListClient || g.Gates.Enabled(f)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
