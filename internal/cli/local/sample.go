package local

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/testbed"
	"github.com/meshaddon/meshaddon/internal/testbed/sample"
)

func newSampleCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var name, namespace, revision string
	cmd := &cobra.Command{
		Use:   "sample",
		Short: "Deploy the sample workload (sleep and httpbin) into a mesh namespace",
		Long:  "Deploy a sleep client and an httpbin server into a namespace labelled istio.io/rev=<revision>, so istiod injects them.",
		Example: `  meshaddon local sample
  meshaddon local sample --namespace demo --revision asm-1-26`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tb, err := testbed.Open(name, streams.ErrOut)
			if err != nil {
				return err
			}
			var spec testbed.Spec
			if err := tb.Cluster.LoadSpec(&spec); err != nil {
				return err
			}
			if revision == "" {
				if revision, err = spec.NewestRevision(); err != nil {
					return fmt.Errorf("cluster %q: %w", name, err)
				}
			}
			if _, err := meshversion.ParseRevision(revision); err != nil {
				return err
			}
			kube, err := tb.Cluster.Clientset()
			if err != nil {
				return err
			}
			created, err := sample.Deploy(cmd.Context(), kube, namespace, revision)
			for _, c := range created {
				fmt.Fprintf(streams.Out, "✓ created %s\n", c)
			}
			if err == nil && len(created) == 0 {
				fmt.Fprintf(streams.Out, "the sample is already in namespace %s\n", namespace)
			}
			return err
		},
	}
	addNameFlag(cmd, &name)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", sample.DefaultNamespace, "Namespace for the sample")
	cmd.Flags().StringVar(&revision, "revision", "", "Mesh revision the namespace opts into (default: the cluster's newest)")
	return cmd
}
