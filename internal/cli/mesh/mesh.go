// Package mesh is `meshaddon mesh`: the mesh revisions of the MeshProfile.
package mesh

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/cli/output"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// NewCommand returns `meshaddon mesh`.
func NewCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mesh",
		Short: "Enable or disable mesh revisions and show them",
		Args:  cobra.NoArgs,
	}
	var revision string
	enable := &cobra.Command{
		Use:     "enable",
		Short:   "Add a mesh revision to the MeshProfile (the platform installs its istiod)",
		Example: `  meshaddon mesh enable --revision asm-1-27`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := meshversion.ParseRevision(revision); err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			return change(cmd.Context(), flags, streams, func(p *v1alpha1.MeshProfile) (string, error) {
				if slices.Contains(p.Spec.Revisions, revision) {
					return fmt.Sprintf("revision %s is already enabled", revision), nil
				}
				p.Spec.Revisions = append(p.Spec.Revisions, revision)
				return fmt.Sprintf("enabled revision %s; label namespaces istio.io/rev=%s to inject with it", revision, revision), nil
			}, true)
		},
	}
	enable.Flags().StringVar(&revision, "revision", "", "Mesh revision, asm-1-NN")
	_ = enable.MarkFlagRequired("revision")

	var disableRevision string
	disable := &cobra.Command{
		Use:   "disable",
		Short: "Remove one mesh revision from the MeshProfile, or all of them",
		Example: `  # Remove the old revision after a canary upgrade
  meshaddon mesh disable --revision asm-1-26

  # Remove every revision
  meshaddon mesh disable`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if disableRevision != "" {
				if _, err := meshversion.ParseRevision(disableRevision); err != nil {
					return exitcode.Wrap(exitcode.Usage, err)
				}
			}
			return change(cmd.Context(), flags, streams, func(p *v1alpha1.MeshProfile) (string, error) {
				if disableRevision == "" {
					p.Spec.Revisions = nil
					return "disabled every mesh revision", nil
				}
				i := slices.Index(p.Spec.Revisions, disableRevision)
				if i < 0 {
					return "", fmt.Errorf("revision %s is not enabled (enabled: %v)", disableRevision, p.Spec.Revisions)
				}
				p.Spec.Revisions = slices.Delete(p.Spec.Revisions, i, i+1)
				return "disabled revision " + disableRevision, nil
			}, false)
		},
	}
	disable.Flags().StringVar(&disableRevision, "revision", "", "The revision to remove (default: all)")

	var out *output.Flags
	get := &cobra.Command{
		Use:   "get-revisions",
		Short: "Show the enabled revisions and how each injects",
		Long: `Show the enabled revisions and how each injects. -o json and yaml print the MeshProfile's
status.revisions; jsonpath, go-template and custom-columns read them as kubectl's List:
-o jsonpath='{.items[*].name}'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.Validate(); err != nil {
				return err
			}
			c, err := kube.NewClients(flags)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			p, err := getProfile(cmd.Context(), c.Client)
			if err != nil {
				return err
			}
			if !out.Human() {
				return out.Print(streams.Out, p.Status.Revisions)
			}
			rows := [][]string{}
			for _, rev := range p.Spec.Revisions {
				mode, reason := "<pending>", ""
				for _, rs := range p.Status.Revisions {
					if rs.Name == rev {
						mode, reason = rs.Mode, rs.Reason
					}
				}
				rows = append(rows, []string{rev, mode, reason})
			}
			return out.Table(streams.Out, output.Column{Name: "REVISION"}, output.Column{Name: "SIDECARS"}, output.Column{Name: "REASON"}).Page(rows)
		},
	}
	out = output.Add(get, output.Options{Human: []string{"table"}, NoHeaders: true})
	cmd.AddCommand(enable, disable, get)
	return cmd
}

var errNoProfile = errors.New("no MeshProfile named default: the mesh add-on is not set up on this cluster")

func getProfile(ctx context.Context, cl client.Client) (*v1alpha1.MeshProfile, error) {
	var p v1alpha1.MeshProfile
	if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, errNoProfile
		}
		return nil, fmt.Errorf("read the MeshProfile: %w", err)
	}
	return &p, nil
}

// change edits spec.revisions with optimistic locking; enabling on a cluster
// without a profile creates it, as enabling the add-on does.
func change(ctx context.Context, flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, edit func(*v1alpha1.MeshProfile) (string, error), create bool) error {
	c, err := kube.NewClients(flags)
	if err != nil {
		return exitcode.Wrap(exitcode.Usage, err)
	}
	msg, err := Edit(ctx, c.Client, edit, create)
	if err != nil {
		return err
	}
	fmt.Fprintln(streams.Out, msg)
	return nil
}

// Edit reads the MeshProfile, applies edit and writes it back, again from
// a fresh read when the write conflicts: the manager writes the profile's
// status all the time (the census, up to once a second), and each write
// changes the resourceVersion the optimistic lock holds. With create, a
// missing profile is created.
func Edit(ctx context.Context, cl client.Client, edit func(*v1alpha1.MeshProfile) (string, error), create bool) (string, error) {
	var msg string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := getProfile(ctx, cl)
		if errors.Is(err, errNoProfile) && create {
			p = &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}}
			if msg, err = edit(p); err != nil {
				return err
			}
			if err := cl.Create(ctx, p); err != nil {
				return fmt.Errorf("create the MeshProfile: %w", err)
			}
			return nil
		}
		if err != nil {
			return err
		}
		patch := client.MergeFromWithOptions(p.DeepCopy(), client.MergeFromWithOptimisticLock{})
		if msg, err = edit(p); err != nil {
			return err
		}
		if err := cl.Patch(ctx, p, patch); err != nil {
			return fmt.Errorf("update the MeshProfile: %w", err)
		}
		return nil
	})
	return msg, err
}
