// Package provider is `meshaddon provider register`: refresh the resource
// provider's registration so that feature states take effect.
package provider

import (
	"fmt"
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
	"github.com/meshaddon/meshaddon/internal/platform"
)

// NewCommand returns `meshaddon provider`.
func NewCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "provider",
		Short: "Refresh the resource provider registration",
		Args:  cobra.NoArgs,
	}
	var timeout time.Duration
	var az aks.Flags
	register := &cobra.Command{
		Use:   "register",
		Short: "Refresh the registration so that feature states take effect",
		Long: `Refresh the resource provider's registration. The add-on manager acts on each feature's
state as of the last refresh: a feature that became Registered only takes effect after
this command (the document's step 3).`,
		Example: "  meshaddon provider register",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := az.Open()
			if err != nil {
				return err
			}
			if p != nil {
				state, err := p.RegisterProvider(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintf(streams.Out, "%s: %s\n", azure.ProviderNamespace, state)
				return nil
			}
			c, err := kube.NewClients(flags)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			list, err := platform.RefreshProvider(cmd.Context(), c.Client, timeout)
			if err != nil {
				if platform.IsTimeout(err) {
					return exitcode.Wrap(exitcode.Timeout, err)
				}
				return err
			}
			if len(list) == 0 {
				fmt.Fprintln(streams.Out, "Refreshed: no feature is registered, so nothing changes.")
				return nil
			}
			rows := make([][]string, len(list))
			for i, fr := range list {
				rows[i] = []string{v1alpha1.FeatureName(fr.Name), fr.Status.State, fr.Status.AppliedState}
			}
			return output.PrintTable(streams.Out, []string{"FEATURE", "STATE", "APPLIED"}, rows)
		},
	}
	register.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "How long to wait for the manager to apply the refresh")
	az.Add(register)
	cmd.AddCommand(register)
	return cmd
}
