// Package reconcile is `meshaddon reconcile`: force the add-on manager to
// reconcile now, as the platform's update does, and wait for istiod.
package reconcile

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/azure"
	"github.com/meshaddon/meshaddon/internal/cli/aks"
	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/platform"
)

// Options are the flags of `meshaddon reconcile`.
type Options struct {
	genericiooptions.IOStreams
	Timeout       time.Duration
	MeshNamespace string
	AKS           aks.Flags
}

// NewCommand returns `meshaddon reconcile`.
func NewCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Force the add-on manager to reconcile now, and wait until istiod reflects it",
		Long: `Ask the add-on manager to reconcile the MeshProfile now, as the platform's update does
instead of waiting for it, then wait until the profile's status has caught up and every
istiod Deployment runs with the decided ENABLE_NATIVE_SIDECARS. Prints what changed.`,
		Example: "  meshaddon reconcile --timeout 2m",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := o.AKS.Open()
			if err != nil {
				return err
			}
			if p != nil {
				return o.RunAKS(cmd.Context(), p)
			}
			c, err := kube.NewClients(flags)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			if o.MeshNamespace == "" {
				if o.MeshNamespace, err = MeshNamespace(cmd.Context(), c.Kube); err != nil {
					return err
				}
			}
			return o.Run(cmd.Context(), c.Client)
		},
	}
	o.AKS.Add(cmd)
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "How long to wait for the manager and istiod")
	cmd.Flags().StringVar(&o.MeshNamespace, "mesh-namespace", "", "Namespace of the istiod Deployments; empty discovers it (app=istiod in every namespace), the managed add-on's and upstream Istio's layouts alike")
	return cmd
}

// MeshNamespace is where istiod runs, as discovery finds it: the one
// namespace holding istiod Deployments; the add-on's (aks-istio-system)
// when there is none yet, since the platform installs a revision there
// after `mesh enable`; a usage error naming them when there are several,
// since the wait reads one namespace.
func MeshNamespace(ctx context.Context, kc kubernetes.Interface) (string, error) {
	m, err := meshdiscovery.Discover(ctx, kc, "")
	if err != nil {
		return "", fmt.Errorf("find istiod (or pass --mesh-namespace): %w", err)
	}
	switch nss := m.Namespaces(); len(nss) {
	case 0:
		return meshdiscovery.AKSNamespace, nil
	case 1:
		return nss[0], nil
	default:
		return "", exitcode.Wrap(exitcode.Usage, fmt.Errorf("istiod Deployments (%s) run in %d namespaces, %s: pass --mesh-namespace to say which one the add-on manager reconciles", istiod.Label, len(nss), strings.Join(nss, ", ")))
	}
}

// Run requests the reconcile, waits, and prints what changed.
func (o *Options) Run(ctx context.Context, cl client.Client) error {
	r, err := platform.Reconcile(ctx, cl, o.MeshNamespace, o.Timeout)
	if platform.IsTimeout(err) {
		return exitcode.Wrap(exitcode.Timeout, err)
	}
	if err != nil {
		return err
	}
	Report(o.Out, r.Before, r.Profile)
	return nil
}

// RunAKS is the platform's forced reconcile, `az aks update`: a PUT of the
// managed cluster as it is, waited on as a long-running operation.
func (o *Options) RunAKS(ctx context.Context, p *azure.Provider) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	c, err := p.GetCluster(ctx)
	if err != nil {
		return err
	}
	if err := p.Update(ctx, c); err != nil {
		if ctx.Err() != nil {
			return exitcode.Wrap(exitcode.Timeout, fmt.Errorf("the update of %s did not finish within %s: %v", p.Cluster, o.Timeout, err))
		}
		return err
	}
	fmt.Fprintf(o.Out, "updated managed cluster %s: the platform reconciled the mesh (revisions %s); check istiod with meshaddon precheck\n", p.Cluster, strings.Join(c.Revisions, ", "))
	return nil
}

// Report prints, per revision, what changed and why, then any condition
// that needs the operator's attention.
func Report(w io.Writer, before map[string]string, p *v1alpha1.MeshProfile) {
	for _, rs := range p.Status.Revisions {
		if rs.Deployment == "" {
			fmt.Fprintf(w, "%s: %s, but its istiod is missing\n", rs.Name, rs.Mode)
			continue
		}
		was := before[rs.Deployment]
		if was == "" {
			was = "unset"
		}
		if was == rs.EnableNativeSidecars {
			fmt.Fprintf(w, "%s: %s sidecars, unchanged (%s=%s): %s\n", rs.Name, rs.Mode, istiod.NativeSidecarsEnv, rs.EnableNativeSidecars, rs.Message)
		} else {
			fmt.Fprintf(w, "%s: now %s sidecars (%s %s → %s, istiod restarted): %s\n", rs.Name, rs.Mode, istiod.NativeSidecarsEnv, was, rs.EnableNativeSidecars, rs.Message)
		}
	}
	for _, c := range p.Status.Conditions {
		bad := c.Status != metav1.ConditionTrue
		if c.Type == v1alpha1.ConditionDegraded {
			bad = c.Status == metav1.ConditionTrue
		}
		if bad {
			fmt.Fprintf(w, "%s=%s (%s): %s\n", c.Type, c.Status, c.Reason, c.Message)
		}
	}
}
