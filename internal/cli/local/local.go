// Package local is the `meshaddon local` command group: the local test bed
// (a real control plane, kwok node pools and real istiod processes).
package local

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/testbed"
	"github.com/meshaddon/meshaddon/internal/testbed/cluster"
)

// NewCommand returns `meshaddon local` and its subcommands.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run a local test bed cluster with node pools and real istiod",
		Long: `Run a local test bed: a real kube-apiserver, controller-manager, scheduler and etcd
(started by kwokctl's binary runtime), fake nodes in named node pools whose kubelet
versions you choose, and real istiod processes doing sidecar injection. The binaries
are built once from the Go module proxy into $MESHADDON_CACHE (default ~/.cache/meshaddon).`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(
		newUpCommand(streams),
		newDownCommand(streams),
		newStatusCommand(streams),
		newKubeconfigCommand(streams),
		newNodepoolCommand(streams),
		newSampleCommand(streams),
		newKubectlCommand(streams),
		newRunnerCommand(streams),
		newARMServerCommand(streams),
		newARMEnvCommand(streams),
		newHazardCommand(streams),
	)
	return cmd
}

// addNameFlag adds --name, shared by every local command.
func addNameFlag(cmd *cobra.Command, name *string) {
	cmd.Flags().StringVar(name, "name", cluster.DefaultName, "Name of the local cluster")
}

// newDaemonCommand is a hidden command that `local` starts as a daemon of
// the cluster --name (the istiod runner, the ARM endpoint, the hazard
// webhooks): it opens the test bed and runs serve until SIGINT or SIGTERM,
// which `local down` sends.
func newDaemonCommand(streams genericiooptions.IOStreams, use, short string, serve func(context.Context, *testbed.Testbed) error) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:    use,
		Short:  short,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tb, err := testbed.Open(name, streams.ErrOut)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, tb)
		},
	}
	addNameFlag(cmd, &name)
	return cmd
}
