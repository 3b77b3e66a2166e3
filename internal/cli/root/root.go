// Package root wires every meshaddon command together.
package root

import (
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/feature"
	"github.com/meshaddon/meshaddon/internal/cli/local"
	"github.com/meshaddon/meshaddon/internal/cli/manager"
	"github.com/meshaddon/meshaddon/internal/cli/mesh"
	"github.com/meshaddon/meshaddon/internal/cli/migrate"
	"github.com/meshaddon/meshaddon/internal/cli/precheck"
	"github.com/meshaddon/meshaddon/internal/cli/provider"
	"github.com/meshaddon/meshaddon/internal/cli/reconcile"
	"github.com/meshaddon/meshaddon/internal/cli/status"
	"github.com/meshaddon/meshaddon/internal/cli/version"
)

// NewCommand returns the root command. binary is the name meshaddon was run
// as: as kubectl-meshaddon it presents itself as `kubectl meshaddon`.
func NewCommand(binary string, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "meshaddon",
		Short: "Turn on Istio native sidecar mode across a cluster safely, and keep it right",
		Long: `meshaddon turns on Istio native sidecar mode for a managed mesh add-on, step by step:
register the preview feature, check every version, make every istiod inject native
sidecars, restart workloads in safe waves, and verify istio-proxy is an init container.

"meshaddon local" runs a real local test bed (kube-apiserver, etcd, kwok nodes and real
istiod) so every step can be tried on this machine.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	if strings.HasPrefix(binary, "kubectl-") {
		cmd.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl meshaddon"}
	}
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	// kubectl's connection flags (--kubeconfig, --context, -n, ...) for
	// every command that talks to a cluster.
	flags := genericclioptions.NewConfigFlags(true)
	flags.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(
		version.NewCommand(streams),
		feature.NewCommand(flags, streams),
		provider.NewCommand(flags, streams),
		mesh.NewCommand(flags, streams),
		reconcile.NewCommand(flags, streams),
		precheck.NewCommand(flags, streams),
		migrate.NewCommand(flags, streams),
		status.NewCommand(flags, streams),
		manager.NewCommand(flags, streams),
		local.NewCommand(streams),
	)
	return cmd
}
