// Package feature is `meshaddon feature`: register, show, unregister and
// list preview features, as `az feature` does for the platform.
package feature

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/azure"
	"github.com/meshaddon/meshaddon/internal/cli/aks"
	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/cli/output"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/platform"
)

// ProviderNamespace is the resource provider the features belong to.
const ProviderNamespace = "Microsoft.ContainerService"

// Feature is a feature as the platform's feature API shows it.
type Feature = azure.Feature

// FromRegistration shapes a FeatureRegistration like the platform's answer.
// A feature never asked for is NotRegistered.
func FromRegistration(name string, fr *v1alpha1.FeatureRegistration) Feature {
	f := Feature{
		ID:   fmt.Sprintf("/providers/Microsoft.Features/providers/%s/features/%s", ProviderNamespace, name),
		Name: ProviderNamespace + "/" + name,
		Type: "Microsoft.Features/providers/features",
	}
	f.Properties.State = platform.FeatureState(fr)
	return f
}

// NewCommand returns `meshaddon feature`.
func NewCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "feature",
		Short: "Register, show and unregister preview features (the document's \"before you begin\")",
		Long: `Preview features opt a cluster into behaviour that is not on by default. Native sidecar
mode needs ` + meshversion.FeatureNativeSidecarPreview + `: register it, wait until it shows
Registered (it takes a while), then refresh the provider registration with
"meshaddon provider register" so that it takes effect.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(
		newChangeCommand(flags, streams, "register", v1alpha1.StateRegistered),
		newChangeCommand(flags, streams, "unregister", v1alpha1.StateNotRegistered),
		newShowCommand(flags, streams),
		newListCommand(flags, streams),
	)
	return cmd
}

func addNameFlag(cmd *cobra.Command, name *string) {
	cmd.Flags().StringVar(name, "name", meshversion.FeatureNativeSidecarPreview, "Feature name")
	_ = cmd.RegisterFlagCompletionFunc("name", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return v1alpha1.KnownFeatures, cobra.ShellCompDirectiveNoFileComp
	})
}

// addOutputFlag is -o: json by default for one feature, as az feature show
// prints it; table as az's -o table.
func addOutputFlag(cmd *cobra.Command, def string) *output.Flags {
	return output.Add(cmd, output.Options{Default: def, Human: []string{"table"}, NoHeaders: true})
}

// canonicalName accepts a known feature in any case and returns its spelling.
func canonicalName(name string) (string, error) {
	canonical := v1alpha1.FeatureName(name)
	if !slices.Contains(v1alpha1.KnownFeatures, canonical) {
		return "", exitcode.Wrap(exitcode.Usage, fmt.Errorf("unknown feature %q: known features are %s", name, strings.Join(v1alpha1.KnownFeatures, ", ")))
	}
	return canonical, nil
}

func newChangeCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams, verb, desired string) *cobra.Command {
	var name string
	var format *output.Flags
	var az aks.Flags
	cmd := &cobra.Command{
		Use:     verb,
		Short:   strings.ToUpper(verb[:1]) + verb[1:] + " a preview feature",
		Example: fmt.Sprintf("  meshaddon feature %s --name %s", verb, meshversion.FeatureNativeSidecarPreview),
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := canonicalName(name)
			if err != nil {
				return err
			}
			if err := format.Validate(); err != nil {
				return err
			}
			p, err := az.Open()
			if err != nil {
				return err
			}
			if p != nil {
				change := p.RegisterFeature
				if desired == v1alpha1.StateNotRegistered {
					change = p.UnregisterFeature
				}
				f, err := change(cmd.Context(), name)
				if err != nil {
					return err
				}
				return printFeatures(streams, format, []Feature{f}, []*v1alpha1.FeatureRegistration{nil})
			}
			c, err := kube.NewClients(flags)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			fr, err := platform.SetFeature(cmd.Context(), c.Client, name, desired)
			if err != nil {
				return err
			}
			fmt.Fprintf(streams.ErrOut, "Once \"meshaddon feature show --name %s\" shows %s, run \"meshaddon provider register\" for the change to take effect.\n", name, desired)
			return printFeatures(streams, format, []Feature{FromRegistration(name, fr)}, []*v1alpha1.FeatureRegistration{fr})
		},
	}
	addNameFlag(cmd, &name)
	format = addOutputFlag(cmd, "json")
	az.Add(cmd)
	return cmd
}

func newShowCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	var format *output.Flags
	var waitFor bool
	var timeout time.Duration
	var az aks.Flags
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a feature's registration state",
		Long: `Show a feature's registration state. With --wait, show it once it is Registered, as the
document asks ("wait until the status shows Registered"); after --timeout it says how
long it waited and what to do.`,
		Example: `  meshaddon feature show --name IstioNativeSidecarModePreview
  meshaddon feature show --wait --timeout 15m -o table`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := canonicalName(name)
			if err != nil {
				return err
			}
			if err := format.Validate(); err != nil {
				return err
			}
			var get func(ctx context.Context) (Feature, *v1alpha1.FeatureRegistration, error)
			p, err := az.Open()
			if err != nil {
				return err
			}
			if p != nil {
				get = func(ctx context.Context) (Feature, *v1alpha1.FeatureRegistration, error) {
					f, err := p.GetFeature(ctx, name)
					return f, nil, err
				}
			} else {
				c, err := kube.NewClients(flags)
				if err != nil {
					return exitcode.Wrap(exitcode.Usage, err)
				}
				get = func(ctx context.Context) (Feature, *v1alpha1.FeatureRegistration, error) {
					fr, err := platform.GetFeature(ctx, c.Client, name)
					return FromRegistration(name, fr), fr, err
				}
			}
			if !waitFor {
				f, fr, err := get(cmd.Context())
				if err != nil {
					return err
				}
				return printFeatures(streams, format, []Feature{f}, []*v1alpha1.FeatureRegistration{fr})
			}
			var fr *v1alpha1.FeatureRegistration
			var getErr error
			f, err := azure.WaitFeature(cmd.Context(), name, func(ctx context.Context) (Feature, error) {
				var f Feature
				f, fr, getErr = get(ctx)
				return f, getErr
			}, time.Second, timeout)
			switch {
			case getErr != nil:
				return getErr
			case err != nil:
				return exitcode.Wrap(exitcode.Timeout, err)
			}
			return printFeatures(streams, format, []Feature{f}, []*v1alpha1.FeatureRegistration{fr})
		},
	}
	addNameFlag(cmd, &name)
	format = addOutputFlag(cmd, "json")
	cmd.Flags().BoolVar(&waitFor, "wait", false, "Wait until the feature is Registered")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "How long --wait waits")
	az.Add(cmd)
	return cmd
}

func newListCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	var format *output.Flags
	var az aks.Flags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every known feature and its state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := format.Validate(); err != nil {
				return err
			}
			p, err := az.Open()
			if err != nil {
				return err
			}
			if p != nil {
				features, err := p.ListFeatures(cmd.Context())
				if err != nil {
					return err
				}
				return printFeatureList(streams, format, features, make([]*v1alpha1.FeatureRegistration, len(features)))
			}
			c, err := kube.NewClients(flags)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			known, err := platform.ListFeatures(cmd.Context(), c.Client)
			if err != nil {
				return err
			}
			var features []Feature
			var regs []*v1alpha1.FeatureRegistration
			for _, name := range v1alpha1.KnownFeatures {
				features = append(features, FromRegistration(name, known[name]))
				regs = append(regs, known[name])
			}
			return printFeatureList(streams, format, features, regs)
		},
	}
	format = addOutputFlag(cmd, "")
	az.Add(cmd)
	return cmd
}

// printFeatures writes one feature as an object, as az feature show does.
func printFeatures(streams genericiooptions.IOStreams, format *output.Flags, features []Feature, regs []*v1alpha1.FeatureRegistration) error {
	if !format.Human() {
		return format.Print(streams.Out, features[0])
	}
	return featureTable(streams, format, features, regs)
}

// printFeatureList writes features as a list, as az feature list does.
func printFeatureList(streams genericiooptions.IOStreams, format *output.Flags, features []Feature, regs []*v1alpha1.FeatureRegistration) error {
	if features == nil {
		features = []Feature{}
	}
	if !format.Human() {
		return format.Print(streams.Out, features)
	}
	return featureTable(streams, format, features, regs)
}

func featureTable(streams genericiooptions.IOStreams, format *output.Flags, features []Feature, regs []*v1alpha1.FeatureRegistration) error {
	rows := make([][]string, len(features))
	for i, f := range features {
		applied, refreshed := "-", "never"
		if fr := regs[i]; fr != nil {
			if fr.Status.AppliedState != "" {
				applied = fr.Status.AppliedState
			}
			if fr.Status.RefreshTime != nil {
				refreshed = fr.Status.RefreshTime.UTC().Format(time.RFC3339)
			}
		}
		rows[i] = []string{f.Name, f.Properties.State, applied, refreshed}
	}
	return format.Table(streams.Out, output.Column{Name: "NAME"}, output.Column{Name: "STATE"}, output.Column{Name: "APPLIED"}, output.Column{Name: "REFRESHED"}).Page(rows)
}
