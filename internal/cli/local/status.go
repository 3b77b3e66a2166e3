package local

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/output"
	"github.com/meshaddon/meshaddon/internal/testbed"
)

func newStatusCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	var out *output.Flags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the local cluster's processes, node pools and mesh revisions",
		Long:  "Show the local cluster's components with their PIDs, its node pools, its mesh revisions with their istiod ports, and the kubeconfig path.",
		Example: `  meshaddon local status
  meshaddon local status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.Validate(); err != nil {
				return err
			}
			tb, err := testbed.Open(name, streams.ErrOut)
			if err != nil {
				return err
			}
			st, err := tb.Status(cmd.Context())
			if err != nil {
				return err
			}
			if !out.Human() {
				return out.Print(streams.Out, st)
			}
			return printStatus(streams, st)
		},
	}
	addNameFlag(cmd, &name)
	out = output.Add(cmd, output.Options{})
	return cmd
}

func printStatus(streams genericiooptions.IOStreams, st *testbed.Status) error {
	health := "not responding"
	if st.Healthy {
		health = "healthy"
	}
	fmt.Fprintf(streams.Out, "Cluster:    %s (%s)\nKubeconfig: %s\n", st.Name, health, st.Kubeconfig)
	if st.ARMEndpoint != "" {
		fmt.Fprintf(streams.Out, "ARM:        %s (eval \"$(meshaddon local arm-env --name %s)\")\n", st.ARMEndpoint, st.Name)
	}
	fmt.Fprintln(streams.Out)
	var rows [][]string
	for _, c := range st.Components {
		state := "stopped"
		if c.Running {
			state = "running"
		}
		rows = append(rows, []string{c.Name, strconv.Itoa(c.PID), state})
	}
	if err := output.PrintTable(streams.Out, []string{"COMPONENT", "PID", "STATE"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(streams.Out)
	rows = nil
	for _, p := range st.Pools {
		rows = append(rows, []string{p.Name, strings.Join(p.Versions, ","), strconv.Itoa(p.Nodes), strconv.Itoa(p.Ready), p.PowerState()})
	}
	if err := output.PrintTable(streams.Out, []string{"POOL", "VERSIONS", "NODES", "READY", "POWER"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(streams.Out)
	rows = nil
	for _, r := range st.Revisions {
		rows = append(rows, []string{r.Revision, strconv.FormatBool(r.Available), r.NativeSidecars, r.Ports})
	}
	return output.PrintTable(streams.Out, []string{"REVISION", "AVAILABLE", "ENABLE_NATIVE_SIDECARS", "PORTS"}, rows)
}
