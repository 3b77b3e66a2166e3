// Package reconcile is `meshaddon reconcile`: force the add-on manager to
// reconcile now, as the platform's update does, and wait for istiod.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/cli/aks"
	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/manager"
	"github.com/meshaddon/meshaddon/internal/rollout"
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
			if onAKS, err := o.AKS.AKS(); err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			} else if onAKS {
				return o.RunAKS(cmd.Context())
			}
			c, err := kube.NewClients(flags)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			return o.Run(cmd.Context(), c.Client)
		},
	}
	o.AKS.Add(cmd)
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "How long to wait for the manager and istiod")
	cmd.Flags().StringVar(&o.MeshNamespace, "mesh-namespace", "aks-istio-system", "Namespace of the istiod Deployments")
	return cmd
}

// Run requests the reconcile, waits, and prints what changed.
func (o *Options) Run(ctx context.Context, cl client.Client) error {
	var profile v1alpha1.MeshProfile
	if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &profile); err != nil {
		if apierrors.IsNotFound(err) {
			return errors.New("no MeshProfile named default: the mesh add-on is not set up on this cluster (on the test bed: meshaddon local up)")
		}
		return fmt.Errorf("read the MeshProfile: %w", err)
	}
	before, err := o.envs(ctx, cl)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	patch := client.MergeFrom(profile.DeepCopy())
	if profile.Annotations == nil {
		profile.Annotations = map[string]string{}
	}
	profile.Annotations[v1alpha1.ReconcileRequestAnnotation] = now.Format(time.RFC3339Nano)
	if err := cl.Patch(ctx, &profile, patch); err != nil {
		return fmt.Errorf("request a reconcile: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	waiting := "the add-on manager to handle the request (is it running?)"
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &profile); err != nil {
			return false, nil
		}
		handled, err := time.Parse(time.RFC3339Nano, profile.Status.LastHandledReconcileAt)
		if err != nil || handled.Before(now) || profile.Status.ObservedGeneration < profile.Generation {
			return false, nil
		}
		for _, rs := range profile.Status.Revisions {
			if rs.Deployment == "" {
				continue
			}
			var dep appsv1.Deployment
			if err := cl.Get(ctx, client.ObjectKey{Namespace: o.MeshNamespace, Name: rs.Deployment}, &dep); err != nil {
				waiting = fmt.Sprintf("%s: %v", rs.Deployment, err)
				return false, nil
			}
			if v := envOf(&dep); v != rs.EnableNativeSidecars {
				waiting = fmt.Sprintf("%s to have %s=%s (it has %s)", rs.Deployment, manager.NativeSidecarsEnv, rs.EnableNativeSidecars, v)
				return false, nil
			}
			msg, done, err := rollout.Status(&dep)
			if err != nil {
				return false, err
			}
			if !done {
				waiting = msg
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return exitcode.Wrap(exitcode.Timeout, fmt.Errorf("timed out after %s waiting for %s", o.Timeout, waiting))
		}
		return err
	}
	Report(o.Out, before, &profile)
	return nil
}

// RunAKS is the platform's forced reconcile, `az aks update`: a PUT of the
// managed cluster as it is, waited on as a long-running operation.
func (o *Options) RunAKS(ctx context.Context) error {
	p, err := o.AKS.New()
	if err != nil {
		return exitcode.Wrap(exitcode.Usage, err)
	}
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

// envs maps each istiod Deployment to its ENABLE_NATIVE_SIDECARS value.
func (o *Options) envs(ctx context.Context, cl client.Client) (map[string]string, error) {
	var list appsv1.DeploymentList
	sel, err := metav1.ParseToLabelSelector(manager.IstiodLabel)
	if err != nil {
		return nil, err
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, err
	}
	if err := cl.List(ctx, &list, client.InNamespace(o.MeshNamespace), client.MatchingLabelsSelector{Selector: s}); err != nil {
		return nil, fmt.Errorf("list istiod Deployments in %s: %w", o.MeshNamespace, err)
	}
	out := map[string]string{}
	for i := range list.Items {
		out[list.Items[i].Name] = envOf(&list.Items[i])
	}
	return out, nil
}

func envOf(dep *appsv1.Deployment) string {
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name != manager.IstiodContainer {
			continue
		}
		for _, e := range c.Env {
			if e.Name == manager.NativeSidecarsEnv {
				return e.Value
			}
		}
	}
	return "unset"
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
			fmt.Fprintf(w, "%s: %s sidecars, unchanged (%s=%s): %s\n", rs.Name, rs.Mode, manager.NativeSidecarsEnv, rs.EnableNativeSidecars, rs.Message)
		} else {
			fmt.Fprintf(w, "%s: now %s sidecars (%s %s → %s, istiod restarted): %s\n", rs.Name, rs.Mode, manager.NativeSidecarsEnv, was, rs.EnableNativeSidecars, rs.Message)
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
