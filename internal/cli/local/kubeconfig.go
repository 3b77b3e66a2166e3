package local

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/testbed/cluster"
)

func newKubeconfigCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "kubeconfig",
		Short:   "Print the path of the local cluster's kubeconfig file",
		Long:    "Print the path of the local cluster's kubeconfig file and nothing else.",
		Example: `  export KUBECONFIG=$(meshaddon local kubeconfig)`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cluster.Open(name)
			if err != nil {
				return err
			}
			if !c.Exists() {
				return fmt.Errorf("cluster %q does not exist; create it with `meshaddon local up --name %s`", name, name)
			}
			fmt.Fprintln(streams.Out, c.KubeconfigPath())
			return nil
		},
	}
	addNameFlag(cmd, &name)
	return cmd
}
