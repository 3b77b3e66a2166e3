package local

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/testbed"
)

// newKubectlCommand runs the cached kubectl against the local cluster, so a
// machine without kubectl can still follow the document's kubectl steps.
func newKubectlCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "kubectl [--name N] -- ARGS...",
		Short: "Run the test bed's kubectl against the local cluster",
		Long:  "Run the kubectl the test bed built (same version as the API server) with KUBECONFIG pointing at the local cluster.",
		Example: `  meshaddon local kubectl -- get pods -A
  meshaddon local kubectl --name second -- get nodes`,
		RunE: func(cmd *cobra.Command, args []string) error {
			tb, err := testbed.Open(name, streams.ErrOut)
			if err != nil {
				return err
			}
			if !tb.Cluster.Exists() {
				return fmt.Errorf("cluster %q does not exist; create it with `meshaddon local up --name %s`", name, name)
			}
			bins, err := tb.Binaries(cmd.Context())
			if err != nil {
				return err
			}
			k := exec.CommandContext(cmd.Context(), bins.Path("kubectl"), args...)
			k.Env = append(os.Environ(), "KUBECONFIG="+tb.Cluster.KubeconfigPath())
			k.Stdin, k.Stdout, k.Stderr = streams.In, streams.Out, streams.ErrOut
			if err := k.Run(); err != nil {
				if ee, ok := err.(*exec.ExitError); ok {
					return exitcode.Wrap(ee.ExitCode(), fmt.Errorf("kubectl exited with %d", ee.ExitCode()))
				}
				return err
			}
			return nil
		},
	}
	addNameFlag(cmd, &name)
	return cmd
}
