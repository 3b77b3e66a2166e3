package local

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/testbed"
)

func newDownCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop every process of the local cluster and remove its files",
		Long:  "Stop the istiod runner and istiod, the control plane, and any process left behind, then remove the cluster's files.",
		Example: `  meshaddon local down
  meshaddon local down --name second`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tb, err := testbed.Open(name, streams.ErrOut)
			if err != nil {
				return err
			}
			done, err := tb.Down(cmd.Context())
			for _, d := range done {
				fmt.Fprintf(streams.Out, "✓ %s\n", d)
			}
			if err != nil {
				return err
			}
			if len(done) == 0 {
				fmt.Fprintf(streams.Out, "cluster %q is not up; nothing to do\n", name)
				return nil
			}
			fmt.Fprintf(streams.Out, "cluster %q deleted\n", name)
			return nil
		},
	}
	addNameFlag(cmd, &name)
	return cmd
}
