package local

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/testbed"
	"github.com/meshaddon/meshaddon/internal/testbed/runner"
)

// newRunnerCommand is the istiod runner daemon that `local up` starts.
func newRunnerCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return newDaemonCommand(streams, "runner", "Run istiod for every istiod Deployment and install enabled revisions (started by `local up`)",
		func(ctx context.Context, tb *testbed.Testbed) error {
			bins, err := tb.Binaries(ctx)
			if err != nil {
				return err
			}
			kube, err := tb.Cluster.Clientset()
			if err != nil {
				return err
			}
			var spec testbed.Spec
			if err := tb.Cluster.LoadSpec(&spec); err != nil {
				return err
			}
			r := &runner.Runner{
				Namespace:      spec.MeshNamespace(),
				Client:         kube,
				Kubeconfig:     tb.Cluster.KubeconfigPath(),
				PilotDiscovery: bins.Path("pilot-discovery"),
				WorkDir:        filepath.Join(tb.Cluster.Dir, "istiod"),
			}
			fmt.Fprintf(streams.ErrOut, "istiod runner for cluster %q\n", tb.Cluster.Name)
			// The runner also plays the platform installing istiod for a
			// revision enabled in the MeshProfile (meshaddon mesh enable).
			go tb.InstallEnabledRevisions(ctx, bins)
			return r.Run(ctx)
		})
}
