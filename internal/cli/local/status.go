package local

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/testbed"
)

func newStatusCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var name, output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the local cluster's processes, node pools and mesh revisions",
		Long:  "Show the local cluster's components with their PIDs, its node pools, its mesh revisions with their istiod ports, and the kubeconfig path.",
		Example: `  meshaddon local status
  meshaddon local status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return exitcode.Wrap(exitcode.Usage, fmt.Errorf("unknown output format %q: want json, or nothing for a table", output))
			}
			tb, err := testbed.Open(name, streams.ErrOut)
			if err != nil {
				return err
			}
			st, err := tb.Status(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				data, err := json.MarshalIndent(st, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(streams.Out, string(data))
				return nil
			}
			printStatus(streams, st)
			return nil
		},
	}
	addNameFlag(cmd, &name)
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json")
	return cmd
}

func printStatus(streams genericiooptions.IOStreams, st *testbed.Status) {
	health := "not responding"
	if st.Healthy {
		health = "healthy"
	}
	fmt.Fprintf(streams.Out, "Cluster:    %s (%s)\nKubeconfig: %s\n", st.Name, health, st.Kubeconfig)
	if st.ARMEndpoint != "" {
		fmt.Fprintf(streams.Out, "ARM:        %s (eval \"$(meshaddon local arm-env --name %s)\")\n", st.ARMEndpoint, st.Name)
	}
	fmt.Fprintln(streams.Out)
	w := printers.GetNewTabWriter(streams.Out)
	fmt.Fprintln(w, "COMPONENT\tPID\tSTATE")
	for _, c := range st.Components {
		state := "stopped"
		if c.Running {
			state = "running"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\n", c.Name, c.PID, state)
	}
	_ = w.Flush()
	fmt.Fprintln(streams.Out)
	w = printers.GetNewTabWriter(streams.Out)
	fmt.Fprintln(w, "POOL\tVERSIONS\tNODES\tREADY\tPOWER")
	for _, p := range st.Pools {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", p.Name, strings.Join(p.Versions, ","), p.Nodes, p.Ready, p.PowerState())
	}
	_ = w.Flush()
	fmt.Fprintln(streams.Out)
	w = printers.GetNewTabWriter(streams.Out)
	fmt.Fprintln(w, "REVISION\tAVAILABLE\tENABLE_NATIVE_SIDECARS\tPORTS")
	for _, r := range st.Revisions {
		fmt.Fprintf(w, "%s\t%t\t%s\t%s\n", r.Revision, r.Available, r.NativeSidecars, r.Ports)
	}
	_ = w.Flush()
}
