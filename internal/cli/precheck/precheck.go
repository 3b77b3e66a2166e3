// Package precheck is `meshaddon precheck`: every check of the seed document
// in one command, printed as `linkerd check` does.
package precheck

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
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

// UserAgent is what precheck's dry runs and reads are sent as.
const UserAgent = "meshaddon-precheck"

// Options are the flags of `meshaddon precheck`.
type Options struct {
	genericiooptions.IOStreams
	Output        *output.Flags
	Policy        string
	MeshNamespace string
	ListPods      bool
	Wait          time.Duration
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
means on each istiod, the workloads' sidecars, and your access for migrate. It also
proves with server-side dry runs (nothing is stored) that a pod with a native sidecar
is admitted in each mesh namespace, measures what native pods need against LimitRanges,
quotas and nodes, and names what workloads lose of the classic proxy (VPA sizing,
holdApplicationUntilProxyStarts, shutdown ordering). -o json gives each finding's
namespaces, workload, webhooks and object as fields: under groups and checks, and
again as items, one per finding with its group and check (name), for jsonpath and
custom-columns as on kubectl: -o jsonpath='{.items[?(@.status=="fail")].message}'.

Pods are counted from the add-on manager's census (MeshProfile status.pods), which
the manager keeps from a watch of pod metadata: one read however big the cluster.
When no manager keeps a current one (one that has counted every pod created or deleted
so far), or with --list-pods, precheck lists the pods and says why.

What can pass by itself is waited on for up to --wait, saying what it waits for: an
istiod becoming available, istiod writing its webhook's caBundle (both retried every
second, then reported as they last failed), and a census that has not counted the
latest pod changes yet (waited on for a few seconds, then precheck lists the pods).
Everything else fails at once. --wait 0 waits for nothing.

Exit status: 0 when nothing failed, 1 when a check failed, 2 for bad flags or a
cluster that cannot be reached.`,
		Example: `  meshaddon precheck
  meshaddon precheck -o json
  meshaddon precheck -o custom-columns=CHECK:.name,STATUS:.status,MESSAGE:.message
  meshaddon precheck --list-pods   # count pods by listing them, not from the manager's census
  meshaddon precheck --wait 0      # fail at once, as the cluster is now`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Output.Validate(); err != nil {
				return err
			}
			if o.Wait < 0 {
				return exitcode.Wrap(exitcode.Usage, fmt.Errorf("--wait must not be negative, got %s", o.Wait))
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
			// Its requests are told apart in the API server's audit log:
			// the only writes must be dry runs and access reviews.
			cfg.UserAgent = UserAgent
			kc, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			md, err := metadata.NewForConfig(cfg)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			w := newWaitPrinter(o.ErrOut)
			defer w.done()
			env := &precheck.Env{Kube: kc, Metadata: md, Client: c.Client, MeshNamespace: o.MeshNamespace, Policy: pol, ListPods: o.ListPods,
				Wait: o.Wait, Waiting: w.waiting}
			if env.ARM, err = o.AKS.Open(); err != nil {
				return err
			}
			if _, err := env.ServerVersion(cmd.Context()); err != nil {
				return exitcode.Wrap(exitcode.Usage, fmt.Errorf("cannot reach the cluster at %s: %s", c.Config.Host, oneLine(err)))
			}
			env.Prefetch(cmd.Context())
			report := precheck.Run(cmd.Context(), env, precheck.Checks)
			w.done()
			return o.print(cmd.Context(), report)
		},
	}
	o.Output = output.Add(cmd, output.Options{Human: []string{"table"}, NoHeaders: true})
	cmd.Flags().StringVar(&o.Policy, "policy", meshversion.DefaultPolicy.Name, "Version policy when the cluster's MeshProfile does not name one: "+strings.Join(meshversion.PolicyNames(), " or "))
	cmd.Flags().StringVar(&o.MeshNamespace, "mesh-namespace", "", "Namespace of the istiod Deployments; empty discovers them (app=istiod) in every namespace, the managed add-on's and upstream Istio's layouts alike")
	cmd.Flags().BoolVar(&o.ListPods, "list-pods", false, "Count pods by listing them instead of reading the add-on manager's census")
	cmd.Flags().DurationVar(&o.Wait, "wait", time.Minute, "How long to wait on checks that can pass by themselves (istiod available, webhook caBundle, a current census); 0 waits for nothing")
	o.AKS.Add(cmd)
	return cmd
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// report is what -o prints: the report as it is, and its findings again
// as items, so that jsonpath and custom-columns read them as a list.
type report struct {
	*precheck.Report
	Items []finding `json:"items"`
}

// finding is one result with the group and check (its name) it is of.
type finding struct {
	Group string `json:"group"`
	Name  string `json:"name"`
	precheck.Result
}

func newReport(r *precheck.Report) report {
	out := report{Report: r, Items: []finding{}}
	for _, g := range r.Groups {
		for _, c := range g.Checks {
			for _, res := range c.Results {
				out.Items = append(out.Items, finding{Group: g.Name, Name: c.Name, Result: res})
			}
		}
	}
	return out
}

func (o *Options) print(_ context.Context, r *precheck.Report) error {
	if o.Output.Human() {
		PrintText(o.Out, r)
	} else if err := o.Output.Print(o.Out, newReport(r)); err != nil {
		return err
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
				// A finding's message names a few of its namespaces; what
				// passed names them in -o json only (there may be thousands).
				if len(res.Namespaces) > 1 && res.Status != precheck.OK {
					fmt.Fprintf(w, "    namespaces: %s\n", strings.Join(res.Namespaces, ", "))
				}
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

// waitPrinter says on stderr what precheck waits for: one line rewritten in
// place on a terminal, a line per check otherwise.
type waitPrinter struct {
	mu     sync.Mutex // checks and the pod count wait at the same time
	w      io.Writer
	tty    bool
	said   map[string]bool
	active bool
}

func newWaitPrinter(w io.Writer) *waitPrinter {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &waitPrinter{w: w, tty: tty, said: map[string]bool{}}
}

func (p *waitPrinter) waiting(check, failure string, left time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[Kwaiting for %s (%s left): %s", check, left, failure)
		p.active = true
		return
	}
	if !p.said[check] {
		p.said[check] = true
		fmt.Fprintf(p.w, "waiting up to %s for %s: %s\n", left, check, failure)
	}
}

// done clears the terminal's waiting line.
func (p *waitPrinter) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active {
		fmt.Fprint(p.w, "\r\033[K")
		p.active = false
	}
}
