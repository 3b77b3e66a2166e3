// Package precheck is `meshaddon precheck`: every check of the seed document
// in one command, printed as `linkerd check` does.
package precheck

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/meshaddon/meshaddon/internal/cli/aks"
	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/cli/output"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/precheck"
)

// Options are the flags of `meshaddon precheck`.
type Options struct {
	genericiooptions.IOStreams
	Output        string
	Policy        string
	MeshNamespace string
	ListPods      bool
	AKS           aks.Flags
}

// NewCommand returns `meshaddon precheck`.
func NewCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "precheck",
		Short: "Check everything native sidecar mode needs: feature, versions, mesh, injection, workloads, access",
		Long: `Check, in one go, everything the document asks for before and while turning on native
sidecar mode: the preview feature, the control plane's and every node pool's Kubernetes
version, the mesh revisions and their istiod and webhooks, what ENABLE_NATIVE_SIDECARS
means on each istiod, the workloads' sidecars, and your access for migrate.

Pods are counted from the add-on manager's census (MeshProfile status.pods), which
the manager keeps from a watch of pod metadata: one read however big the cluster.
When no manager keeps a current one, or with --list-pods, precheck lists the pods.

Exit status: 0 when nothing failed, 1 when a check failed, 2 for bad flags or a
cluster that cannot be reached.`,
		Example: `  meshaddon precheck
  meshaddon precheck -o json
  meshaddon precheck --list-pods   # count pods by listing them, not from the manager's census`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Validate(o.Output, "", "table", "json"); err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			pol, err := meshversion.LookupPolicy(o.Policy)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			c, err := kube.NewClients(flags)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			// Pods and nodes come as protobuf: much less to decode.
			cfg := kube.Protobuf(c.Config)
			kc, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			md, err := metadata.NewForConfig(cfg)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			env := &precheck.Env{Kube: kc, Metadata: md, Client: c.Client, MeshNamespace: o.MeshNamespace, Policy: pol, ListPods: o.ListPods}
			if env.ARM, err = o.AKS.Open(); err != nil {
				return err
			}
			if _, err := env.ServerVersion(cmd.Context()); err != nil {
				return exitcode.Wrap(exitcode.Usage, fmt.Errorf("cannot reach the cluster at %s: %s", c.Config.Host, oneLine(err)))
			}
			env.Prefetch(cmd.Context())
			report := precheck.Run(cmd.Context(), env, precheck.Checks)
			return o.print(cmd.Context(), report)
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "Output format: table (default) or json")
	cmd.Flags().StringVar(&o.Policy, "policy", meshversion.DefaultPolicy.Name, "Version policy when the cluster's MeshProfile does not name one: "+strings.Join(meshversion.PolicyNames(), " or "))
	cmd.Flags().StringVar(&o.MeshNamespace, "mesh-namespace", "aks-istio-system", "Namespace of the istiod Deployments")
	cmd.Flags().BoolVar(&o.ListPods, "list-pods", false, "Count pods by listing them instead of reading the add-on manager's census")
	o.AKS.Add(cmd)
	return cmd
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func (o *Options) print(_ context.Context, r *precheck.Report) error {
	if ok, err := output.Structured(o.Out, o.Output, r); ok {
		if err != nil {
			return err
		}
	} else {
		PrintText(o.Out, r)
	}
	if !r.Success {
		return exitcode.Wrap(exitcode.Failure, exitcode.ErrReported)
	}
	return nil
}

// Marks as `linkerd check` prints them.
var marks = map[precheck.Status]string{precheck.OK: "√", precheck.Warn: "‼", precheck.Fail: "×", precheck.Skip: "-"}

// PrintText writes the report: a heading per group, a line per result, a
// hint under every warning and failure, and a summary.
func PrintText(w io.Writer, r *precheck.Report) {
	for i, g := range r.Groups {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s\n%s\n", g.Name, strings.Repeat("-", len(g.Name)))
		for _, c := range g.Checks {
			for _, res := range c.Results {
				fmt.Fprintf(w, "%s %s\n", marks[res.Status], res.Message)
				for _, d := range res.Details {
					fmt.Fprintf(w, "    %s\n", d)
				}
				if res.Hint != "" && (res.Status == precheck.Warn || res.Status == precheck.Fail) {
					fmt.Fprintf(w, "    see: %s\n", res.Hint)
				}
			}
		}
	}
	verdict := marks[precheck.OK]
	if !r.Success {
		verdict = marks[precheck.Fail]
	}
	fmt.Fprintf(w, "\nStatus check results are %s (%d ok, %d warnings, %d failed, %d skipped)\n",
		verdict, r.Summary[precheck.OK], r.Summary[precheck.Warn], r.Summary[precheck.Fail], r.Summary[precheck.Skip])
}
