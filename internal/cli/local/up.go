package local

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/testbed"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

// UpOptions are the flags of `local up`.
type UpOptions struct {
	genericiooptions.IOStreams
	Name           string
	ConfigFile     string
	Pools          []string
	Revisions      []string
	NativeSidecars string
	PodStartDelay  time.Duration
	APIServerPort  int
	Audit          bool
	Manager        bool
	NewCluster     bool
	Policy         string
	ARM            bool
	Layout         string
	Tags           []string
	Observe        bool

	spec testbed.Spec
}

func newUpCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &UpOptions{IOStreams: streams}
	def := testbed.DefaultSpec()
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create the local cluster, or converge a running one",
		Long: `Create a local cluster with node pools and the mesh installed, and wait until istiod
injects sidecars. Running it again on a running cluster converges it (recreates missing
nodes, restarts a stopped istiod runner) and reports what it changed. Nothing is written
to ~/.kube/config: use the kubeconfig file it prints.`,
		Example: `  # One pool of three 1.34 nodes, revision asm-1-27, classic sidecars
  meshaddon local up

  # An existing cluster with an old pool and two revisions
  meshaddon local up --pool system=v1.34.4:3 --pool old=v1.28.9:2 --revision asm-1-26 --revision asm-1-27

  # Rollouts that take time, as on a real cluster
  meshaddon local up --pod-start-delay 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(cmd); err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			if err := o.Validate(); err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			return o.Run(cmd)
		},
	}
	addNameFlag(cmd, &o.Name)
	cmd.Flags().StringVar(&o.ConfigFile, "config", "", "YAML file with the same settings as the flags (name, pools, revisions, nativeSidecars, podStartDelay, manager, newCluster, policy); flags given too win")
	cmd.Flags().StringArrayVar(&o.Pools, "pool", nil, fmt.Sprintf("Node pool NAME=VERSION:COUNT, repeatable (default %s)", def.Pools[0]))
	cmd.Flags().StringArrayVar(&o.Revisions, "revision", nil, fmt.Sprintf("Mesh revision asm-1-NN to install, repeatable (default %s)", testbed.DefaultRevision))
	cmd.Flags().StringVar(&o.NativeSidecars, "native-sidecars", def.NativeSidecars, "Initial ENABLE_NATIVE_SIDECARS of every istiod: true, false or unset")
	cmd.Flags().IntVar(&o.APIServerPort, "apiserver-port", 0, "kube-apiserver port on 127.0.0.1 (default: a free port)")
	cmd.Flags().DurationVar(&o.PodStartDelay, "pod-start-delay", 0, "How long after binding a pod becomes Ready")
	cmd.Flags().BoolVar(&o.Manager, "manager", def.Manager, "Run the add-on manager; --manager=false leaves istiod as --native-sidecars set it")
	cmd.Flags().BoolVar(&o.NewCluster, "new-cluster", false, "Set the mesh up as a new cluster's: native sidecars from the start when the versions qualify")
	cmd.Flags().BoolVar(&o.Audit, "audit", false, "Keep the API server's audit log of every write in the cluster's directory (only when the cluster is created)")
	cmd.Flags().BoolVar(&o.ARM, "arm", false, "Also serve a local Azure Resource Manager endpoint backed by the cluster, for --provider aks (see meshaddon local arm-env)")
	cmd.Flags().StringVar(&o.Layout, "layout", "aks", "aks: asm-1-NN revisions in aks-istio-system, as the managed add-on; upstream: upstream Istio in istio-system (--revision default and free-form names, --tag)")
	cmd.Flags().StringArrayVar(&o.Tags, "tag", nil, "Upstream revision tag TAG=REVISION, repeatable (e.g. prod=1-27-1)")
	cmd.Flags().BoolVar(&o.Observe, "observe", false, "Run the manager with --observe: it decides and reports but never writes istiod")
	cmd.Flags().StringVar(&o.Policy, "policy", def.Policy, "The manager's version policy: "+strings.Join(meshversion.PolicyNames(), " or "))
	return cmd
}

// Complete builds the spec from the config file and the flags.
func (o *UpOptions) Complete(cmd *cobra.Command) error {
	o.spec = testbed.DefaultSpec()
	if o.ConfigFile != "" {
		s, err := testbed.LoadSpecFile(o.ConfigFile)
		if err != nil {
			return err
		}
		o.spec = s
	}
	f := cmd.Flags()
	if f.Changed("name") || o.ConfigFile == "" {
		o.spec.Name = o.Name
	}
	if len(o.Pools) > 0 {
		o.spec.Pools = nil
		for _, p := range o.Pools {
			spec, err := nodepool.ParseSpec(p)
			if err != nil {
				return err
			}
			o.spec.Pools = append(o.spec.Pools, spec)
		}
	}
	if len(o.Revisions) > 0 {
		o.spec.Revisions = o.Revisions
	}
	if f.Changed("native-sidecars") {
		o.spec.NativeSidecars = o.NativeSidecars
	}
	if f.Changed("apiserver-port") {
		o.spec.APIServerPort = o.APIServerPort
	}
	if f.Changed("manager") {
		o.spec.Manager = o.Manager
	}
	if f.Changed("new-cluster") {
		o.spec.NewCluster = o.NewCluster
	}
	if f.Changed("policy") {
		o.spec.Policy = o.Policy
	}
	if f.Changed("audit") {
		o.spec.Audit = o.Audit
	}
	if f.Changed("layout") {
		o.spec.Layout = o.Layout
	}
	if f.Changed("tag") {
		o.spec.Tags = o.Tags
	}
	if f.Changed("observe") {
		o.spec.Observe = o.Observe
	}
	if f.Changed("arm") {
		o.spec.ARM = o.ARM
	}
	if f.Changed("pod-start-delay") {
		o.spec.PodStartDelay = metav1.Duration{Duration: o.PodStartDelay}
	}
	return nil
}

// Validate checks the spec.
func (o *UpOptions) Validate() error { return o.spec.Validate() }

// Run brings the cluster up.
func (o *UpOptions) Run(cmd *cobra.Command) error {
	tb, err := testbed.Open(o.spec.Name, o.ErrOut)
	if err != nil {
		return err
	}
	start := time.Now()
	changes, err := tb.Up(cmd.Context(), o.spec)
	for _, c := range changes {
		fmt.Fprintf(o.Out, "✓ %s\n", c)
	}
	if err != nil {
		return err
	}
	if len(changes) == 0 {
		fmt.Fprintf(o.Out, "cluster %q is up to date; nothing changed\n", o.spec.Name)
	}
	fmt.Fprintf(o.Out, "cluster %q ready in %s\n\n", o.spec.Name, time.Since(start).Round(100*time.Millisecond))
	fmt.Fprintf(o.Out, "Use it with kubectl:\n  export KUBECONFIG=%s\n  kubectl get nodes\n", tb.Cluster.KubeconfigPath())
	if id, err := tb.ARMIdentity(); err == nil && o.spec.ARM {
		// The client secret is printed only by arm-env, where it is asked for.
		fmt.Fprintf(o.Out, "\nLocal ARM endpoint: %s (CA %s)\n  subscription %s, resource group %s, managed cluster %s\n  client %s (its secret: meshaddon local arm-env --name %s)\nUse it with --provider aks:\n  eval \"$(meshaddon local arm-env --name %s)\"\n  meshaddon feature show --provider aks\nor with the Azure CLI (once: az cloud register, az cloud set, az login):\n  eval \"$(meshaddon local arm-env --az --name %s)\"\n  az aks show --resource-group $RESOURCE_GROUP --name $CLUSTER\n",
			id.Endpoint(), id.CAPath(), id.SubscriptionID, id.ResourceGroup, id.Cluster, id.ClientID, o.spec.Name, o.spec.Name, o.spec.Name)
	}
	return nil
}
