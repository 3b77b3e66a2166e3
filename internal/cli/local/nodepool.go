package local

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/cli/output"
	"github.com/meshaddon/meshaddon/internal/testbed"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
)

func newNodepoolCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "nodepool",
		Short: "Add, upgrade, stop, start, delete and list the local cluster's node pools",
		Long:  "Manage the local cluster's node pools the way a managed cluster does: upgrades replace nodes one by one, a stopped pool has no Ready nodes.",
		Args:  cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&name, "name", "meshaddon", "Name of the local cluster")

	pools := func(cmd *cobra.Command) (*nodepool.Manager, error) {
		tb, err := testbed.Open(name, streams.ErrOut)
		if err != nil {
			return nil, err
		}
		if !tb.Cluster.Exists() {
			return nil, fmt.Errorf("cluster %q does not exist; create it with `meshaddon local up --name %s`", name, name)
		}
		m, err := tb.Pools()
		if err != nil {
			return nil, err
		}
		m.Out = streams.Out
		return m, nil
	}
	poolArg := func(args []string) error {
		if len(args) != 1 {
			return exitcode.Wrap(exitcode.Usage, fmt.Errorf("want exactly one node pool name, got %d", len(args)))
		}
		return exitcode.Wrap(exitcode.Usage, nodepool.ValidateName(args[0]))
	}

	var version string
	var count int
	add := &cobra.Command{
		Use:     "add NAME --version V --count N",
		Short:   "Add a node pool",
		Long:    "Add a node pool of N Ready nodes whose kubelet reports version V.",
		Example: "  meshaddon local nodepool add old --version v1.28.9 --count 2",
		Args:    func(_ *cobra.Command, args []string) error { return poolArg(args) },
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := nodepool.ParseSpec(fmt.Sprintf("%s=%s:%d", args[0], version, count))
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			m, err := pools(cmd)
			if err != nil {
				return err
			}
			return m.Add(cmd.Context(), spec)
		},
	}
	add.Flags().StringVar(&version, "version", "", "Kubelet version of the pool's nodes, e.g. v1.34.4")
	add.Flags().IntVar(&count, "count", 3, "Number of nodes")
	_ = add.MarkFlagRequired("version")

	upgrade := &cobra.Command{
		Use:     "upgrade NAME --version V",
		Short:   "Upgrade a node pool, node by node",
		Long:    "Upgrade a node pool the way a managed upgrade does: for each node, add a surge node at the new version, wait until it is Ready, drain the old node and delete it.",
		Example: "  meshaddon local nodepool upgrade old --version v1.34.4",
		Args:    func(_ *cobra.Command, args []string) error { return poolArg(args) },
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := nodepool.NormalizeVersion(version); err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			m, err := pools(cmd)
			if err != nil {
				return err
			}
			return m.Upgrade(cmd.Context(), args[0], version)
		},
	}
	upgrade.Flags().StringVar(&version, "version", "", "Target kubelet version, e.g. v1.34.4")
	_ = upgrade.MarkFlagRequired("version")

	simple := func(use, short string, f func(m *nodepool.Manager, cmd *cobra.Command, pool string) error) *cobra.Command {
		return &cobra.Command{
			Use:     use + " NAME",
			Short:   short,
			Long:    short + ".",
			Example: fmt.Sprintf("  meshaddon local nodepool %s old", use),
			Args:    func(_ *cobra.Command, args []string) error { return poolArg(args) },
			RunE: func(cmd *cobra.Command, args []string) error {
				m, err := pools(cmd)
				if err != nil {
					return err
				}
				return f(m, cmd, args[0])
			},
		}
	}
	stop := simple("stop", "Stop a node pool: its nodes are cordoned and NotReady", func(m *nodepool.Manager, cmd *cobra.Command, p string) error { return m.Stop(cmd.Context(), p) })
	start := simple("start", "Start a stopped node pool", func(m *nodepool.Manager, cmd *cobra.Command, p string) error { return m.Start(cmd.Context(), p) })
	del := simple("delete", "Delete a node pool and its nodes", func(m *nodepool.Manager, cmd *cobra.Command, p string) error { return m.Delete(cmd.Context(), p) })

	var out *output.Flags
	list := &cobra.Command{
		Use:     "list",
		Short:   "List the node pools",
		Long:    "List the node pools with their kubelet versions, node and Ready counts, and power state.",
		Example: "  meshaddon local nodepool list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.Validate(); err != nil {
				return err
			}
			m, err := pools(cmd)
			if err != nil {
				return err
			}
			ps, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			if !out.Human() {
				return out.Print(streams.Out, ps)
			}
			rows := make([][]string, len(ps))
			for i, p := range ps {
				rows[i] = []string{p.Name, strings.Join(p.Versions, ","), strconv.Itoa(p.Nodes), strconv.Itoa(p.Ready), p.PowerState()}
			}
			return out.Table(streams.Out, output.Column{Name: "NAME"}, output.Column{Name: "VERSIONS"}, output.Column{Name: "NODES"},
				output.Column{Name: "READY"}, output.Column{Name: "POWER"}).Page(rows)
		},
	}
	out = output.Add(list, output.Options{NoHeaders: true})
	cmd.AddCommand(add, upgrade, stop, start, del, list)
	return cmd
}
