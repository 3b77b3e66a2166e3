// Package status is `meshaddon status`: the seed document's verification
// view (where is istio-proxy?) for every pod, with its mode and revision,
// or per workload with --workloads.
package status

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/cli/output"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/kube"
)

// Options are the flags of `meshaddon status`.
type Options struct {
	genericiooptions.IOStreams
	AllNamespaces bool
	Selector      string
	Mode          string
	Output        *output.Flags
	Workloads     bool
	ChunkSize     int64

	namespace string
	mode      inventory.Mode
	kube      kubernetes.Interface
	// client reads the MeshProfile (the placement guard's lines).
	client client.Client
}

// outputOptions are status's -o: its own table and wide, and kind/name
// for -o name (the rows are pods or workloads).
var outputOptions = output.Options{Human: []string{"wide"}, Names: true, NoHeaders: true}

// NewCommand returns `meshaddon status`.
func NewCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show where istio-proxy is in every pod: native, classic or not injected",
		Long: `Show every pod's init containers and containers, as the document's kubectl custom-columns
command does, with how istio-proxy was injected (MODE: native, classic or none) and by which
revision. --workloads shows one row per owning workload (Deployment, StatefulSet, DaemonSet,
Job, CronJob or bare pod) with its pods counted by mode: the list "meshaddon migrate" works
from. Pods are listed in pages and printed as they arrive.

-o takes kubectl's formats. -o json and yaml print the pods as kubectl's List (with
--workloads, an array of workloads); jsonpath, go-template and custom-columns read the
same fields, the workloads as a List: -o jsonpath='{.items[*].name}'. -o name prints
pod/NAME, or the workloads' kind/NAME. The table, json, yaml, name and custom-columns
print page by page; jsonpath and go-template hold every row until the last page.`,
		Example: `  meshaddon status -n sample
  meshaddon status -A --mode classic
  meshaddon status -A --workloads
  meshaddon status -A -o json
  meshaddon status -A --mode classic -o custom-columns=NAMESPACE:.namespace,NAME:.name,OWNER:.owner.name`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Output.Validate(); err != nil {
				return err
			}
			if err := o.Complete(flags); err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			if err := o.Validate(cmd.Context()); err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "List pods in every namespace")
	f.StringVarP(&o.Selector, "selector", "l", "", "Label selector, as kubectl's -l")
	f.StringVar(&o.Mode, "mode", "", "Only pods injected so: native, classic or none")
	o.Output = output.Add(cmd, outputOptions)
	f.BoolVar(&o.Workloads, "workloads", false, "One row per owning workload with its pods counted by mode")
	f.Int64Var(&o.ChunkSize, "chunk-size", 500, "Pods per LIST call")
	return cmd
}

// Complete builds the clients; pods are read as protobuf.
func (o *Options) Complete(flags *genericclioptions.ConfigFlags) error {
	c, err := kube.NewClients(flags)
	if err != nil {
		return err
	}
	if o.kube, err = kubernetes.NewForConfig(kube.Protobuf(c.Config)); err != nil {
		return err
	}
	o.client = c.Client
	o.namespace = c.Namespace
	if o.AllNamespaces {
		o.namespace = ""
	}
	return nil
}

// Validate checks the flags and that the namespace exists.
func (o *Options) Validate(ctx context.Context) error {
	if o.Mode != "" {
		m, err := inventory.ParseMode(o.Mode)
		if err != nil {
			return err
		}
		o.mode = m
	}
	if _, err := labels.Parse(o.Selector); err != nil {
		return fmt.Errorf("invalid selector %q: %v", o.Selector, err)
	}
	if o.ChunkSize <= 0 {
		return fmt.Errorf("--chunk-size must be positive, got %d", o.ChunkSize)
	}
	if o.namespace != "" {
		if _, err := o.kube.CoreV1().Namespaces().Get(ctx, o.namespace, metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("namespace %q does not exist", o.namespace)
			}
			if !apierrors.IsForbidden(err) {
				return fmt.Errorf("cannot reach the cluster: %w", err)
			}
		}
	}
	return nil
}

// Run lists and prints.
func (o *Options) Run(ctx context.Context) error {
	list := inventory.ListOptions{Namespace: o.namespace, Selector: o.Selector, PageSize: o.ChunkSize}
	var guard *guardView
	if o.Output.Human() && !o.Output.NoHeaders {
		// The layout, revisions, tags and versions, and the placement
		// guard, on stderr: stdout stays the table kubectl's custom-columns
		// would print.
		printMesh(ctx, o.ErrOut, o.kube)
		guard = o.printGuard(ctx)
	}
	if o.Workloads {
		return o.runWorkloads(ctx, list, guard)
	}
	l := output.NewList(o.Output, o.Out, o.podSpec())
	err := o.eachPage(ctx, list, func(rows []inventory.Pod) error {
		if o.mode != "" {
			kept := rows[:0]
			for _, r := range rows {
				if r.Mode == o.mode {
					kept = append(kept, r)
				}
			}
			rows = kept
		}
		return l.Page(rows)
	})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	printed, err := l.Done()
	if err != nil {
		return err
	}
	if !printed {
		// As kubectl get says when it printed nothing.
		where := "namespace " + o.namespace
		if o.namespace == "" {
			where = "any namespace"
		}
		fmt.Fprintf(o.ErrOut, "No resources found in %s.\n", where)
	}
	guard.print(ctx, o.ErrOut)
	return nil
}

// listers is how many namespaces -A lists at once: the API server answers
// one LIST with about one core, so a few at once keep it busy while this
// side decodes and prints.
const listers = 3

// eachPage lists the pods in pages: for -A namespace by namespace, a few
// at once, printed in the order one all-namespaces LIST would give; when
// namespaces cannot be listed, with that one LIST.
func (o *Options) eachPage(ctx context.Context, list inventory.ListOptions, fn func([]inventory.Pod) error) error {
	if list.Namespace == "" {
		nss, err := o.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err == nil {
			names := make([]string, len(nss.Items))
			for i := range nss.Items {
				names[i] = nss.Items[i].Name
			}
			sort.Strings(names)
			return inventory.EachPageInOrder(ctx, o.kube, names, list, listers, fn)
		}
	}
	return inventory.EachPage(ctx, o.kube, list, fn)
}

func (o *Options) runWorkloads(ctx context.Context, list inventory.ListOptions, guard *guardView) error {
	sum := inventory.NewSummarizer()
	if err := o.eachPage(ctx, list, func(rows []inventory.Pod) error { sum.Add(rows); return nil }); err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	jobs, err := inventory.JobOwners(ctx, o.kube, list.Namespace)
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	ws := sum.Workloads(jobs)
	if o.mode != "" {
		kept := ws[:0]
		for _, w := range ws {
			if (o.mode == inventory.Native && w.Native > 0) || (o.mode == inventory.Classic && w.Classic > 0) || (o.mode == inventory.None && w.None > 0) {
				kept = append(kept, w)
			}
		}
		ws = kept
	}
	if !o.Output.Human() {
		if ws == nil {
			ws = []inventory.WorkloadSummary{} // an empty array, not null
		}
		refs := make([]output.ObjectRef, len(ws))
		for i, w := range ws {
			refs[i] = output.Workload(w.Kind, w.Namespace, w.Name)
		}
		return o.Output.Print(o.Out, ws, refs...)
	}
	if len(ws) == 0 {
		fmt.Fprintln(o.ErrOut, "No resources found.")
		return nil
	}
	t := o.Output.Table(o.Out, output.Column{Name: "NAMESPACE"}, output.Column{Name: "KIND"}, output.Column{Name: "NAME"},
		output.Column{Name: "NATIVE"}, output.Column{Name: "CLASSIC"}, output.Column{Name: "NONE"}, output.Column{Name: "REVISIONS"})
	rows := make([][]string, len(ws))
	for i, w := range ws {
		revs := strings.Join(w.Revisions, ",")
		if revs == "" {
			revs = "<none>"
		}
		rows[i] = []string{w.Namespace, w.Kind, w.Name, strconv.Itoa(w.Native), strconv.Itoa(w.Classic), strconv.Itoa(w.None), revs}
	}
	if err := t.Page(rows); err != nil {
		return err
	}
	guard.print(ctx, o.ErrOut)
	return nil
}

// podSpec is the pods' table (NAMESPACE with -A; NODE, OVERRIDE and
// OWNER with -o wide) and their names for -o name.
func (o *Options) podSpec() output.ListSpec[inventory.Pod] {
	cols := []output.Column{{Name: "NAME"}, {Name: "INIT"}, {Name: "CONTAINERS"}, {Name: "MODE"}, {Name: "REVISION"},
		{Name: "NODE", Wide: true}, {Name: "OVERRIDE", Wide: true}, {Name: "OWNER", Wide: true}}
	all := o.namespace == ""
	if all {
		cols = append([]output.Column{{Name: "NAMESPACE"}}, cols...)
	}
	return output.ListSpec[inventory.Pod]{
		Columns: cols,
		Row: func(r inventory.Pod) []string {
			c := []string{r.Name, r.Init, r.Containers, string(r.Mode), orNone(r.Revision), orNone(r.Node), orNone(r.Override), r.Owner.String()}
			if all {
				c = append([]string{r.Namespace}, c...)
			}
			return c
		},
		Object: func(r inventory.Pod) output.ObjectRef {
			return output.ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: r.Namespace, Name: r.Name}
		},
	}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
