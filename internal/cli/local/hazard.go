package local

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/testbed"
	"github.com/meshaddon/meshaddon/internal/testbed/hazard"
)

// newHazardCommand is `meshaddon local hazard`: what real clusters hold
// that breaks native sidecars, put into one namespace of the test bed.
func newHazardCommand(streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hazard",
		Short: "Add, remove and list hazards to native sidecars (hostile webhooks, LimitRange, quota, VPA) in a namespace",
		Long: `Put into one namespace of the test bed what real clusters hold that breaks native
sidecars, for meshaddon precheck to find:

  strip-restart-policy   a mutating webhook that drops restartPolicy from init containers
                         (reinvocationPolicy IfNeeded: it runs again after Istio's injector)
  refuse-restart-policy  a validating webhook that refuses init containers with restartPolicy
  side-effects           a mutating webhook with sideEffects: Some (written to etcd: the v1
                         API refuses it), which the API server will not call on a dry run
  down                   a validating webhook whose server does not listen
  slow                   a validating webhook that answers after its timeoutSeconds (2)
  limitrange             a LimitRange capping containers' CPU limit at 1 (istio-proxy's is 2)
  quota                  a ResourceQuota with room for one more pod, not a surge of two
  vpa                    the VerticalPodAutoscaler CRD and a VPA of --target

Webhooks select the namespace by kubernetes.io/metadata.name and are served on 127.0.0.1
by a daemon of the test bed (stopped by local down); down and slow take --failure-policy.`,
		Args: cobra.NoArgs,
	}
	var name, namespace, failurePolicy, target, podSelector string
	bed := func(cmd *cobra.Command) (*hazard.Bed, error) {
		tb, err := testbed.Open(name, streams.ErrOut)
		if err != nil {
			return nil, exitcode.Wrap(exitcode.Usage, err)
		}
		if !tb.Cluster.Exists() {
			return nil, exitcode.Wrap(exitcode.Usage, fmt.Errorf("cluster %q does not exist; create it with `meshaddon local up --name %s`", name, name))
		}
		cfg, err := tb.Cluster.RESTConfig()
		if err != nil {
			return nil, exitcode.Wrap(exitcode.Usage, err)
		}
		b := &hazard.Bed{Cluster: tb.Cluster, Self: tb.Self}
		if b.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, err
		}
		if b.Ext, err = apiextensionsclient.NewForConfig(cfg); err != nil {
			return nil, err
		}
		if b.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
			return nil, err
		}
		return b, nil
	}
	kindArg := func(args []string) (hazard.Kind, error) {
		k, err := hazard.ParseKind(args[0])
		if err != nil {
			return "", exitcode.Wrap(exitcode.Usage, err)
		}
		if namespace == "" {
			return "", exitcode.Wrap(exitcode.Usage, fmt.Errorf("--namespace is required: the namespace the hazard acts in"))
		}
		return k, nil
	}
	add := &cobra.Command{
		Use:     "add KIND --namespace NS",
		Short:   "Put a hazard into a namespace",
		Example: "  meshaddon local hazard add strip-restart-policy --namespace shop\n  meshaddon local hazard add slow --namespace shop --failure-policy Ignore\n  meshaddon local hazard add vpa --namespace shop --target web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := kindArg(args)
			if err != nil {
				return err
			}
			podLabels, err := labels.ConvertSelectorToLabelsMap(podSelector)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, fmt.Errorf("--pod-selector: %w", err))
			}
			b, err := bed(cmd)
			if err != nil {
				return err
			}
			what, err := b.Add(cmd.Context(), k, hazard.Options{Namespace: namespace, FailurePolicy: admissionregv1.FailurePolicyType(failurePolicy), Target: target, PodLabels: podLabels})
			if err != nil {
				return fmt.Errorf("add hazard %s in %s: %w", k, namespace, err)
			}
			fmt.Fprintf(streams.Out, "✓ added %s\n", what)
			return nil
		},
	}
	add.Flags().StringVar(&failurePolicy, "failure-policy", "Fail", "failurePolicy of the down and slow webhooks: Fail or Ignore")
	add.Flags().StringVar(&target, "target", "", "The Deployment the vpa hazard sizes")
	add.Flags().StringVar(&podSelector, "pod-selector", "", "A webhook hazard acts only on pods with these labels (k=v,...: its objectSelector)")
	remove := &cobra.Command{
		Use:   "remove KIND --namespace NS",
		Short: "Take a hazard out of a namespace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := kindArg(args)
			if err != nil {
				return err
			}
			b, err := bed(cmd)
			if err != nil {
				return err
			}
			removed, err := b.Remove(cmd.Context(), k, namespace)
			if err != nil {
				return fmt.Errorf("remove hazard %s from %s: %w", k, namespace, err)
			}
			if !removed {
				fmt.Fprintf(streams.Out, "no hazard %s in %s\n", k, namespace)
				return nil
			}
			fmt.Fprintf(streams.Out, "✓ removed %s from %s\n", k, namespace)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the hazards in the cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := bed(cmd)
			if err != nil {
				return err
			}
			es, err := b.List(cmd.Context())
			if err != nil {
				return err
			}
			if len(es) == 0 {
				fmt.Fprintln(streams.Out, "no hazard")
				return nil
			}
			fmt.Fprintf(streams.Out, "%-16s %-22s %s\n", "NAMESPACE", "KIND", "OBJECT")
			for _, e := range es {
				fmt.Fprintf(streams.Out, "%-16s %-22s %s\n", e.Namespace, e.Kind, e.Object)
			}
			return nil
		},
	}
	serve := newDaemonCommand(streams, "serve", "Serve the hazard webhooks (started by local hazard add)",
		func(ctx context.Context, tb *testbed.Testbed) error {
			return hazard.ServerFor(tb.Cluster).Serve(ctx)
		})
	for _, c := range []*cobra.Command{add, remove} {
		c.Flags().StringVarP(&namespace, "namespace", "n", "", "Namespace the hazard acts in")
	}
	for _, c := range []*cobra.Command{add, remove, list} {
		addNameFlag(c, &name)
	}
	cmd.AddCommand(add, remove, list, serve)
	return cmd
}
