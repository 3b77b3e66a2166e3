// Package status is `meshaddon status`: the seed document's verification
// view (where is istio-proxy?) for every pod, with its mode and revision,
// or per workload with --workloads.
package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	"sigs.k8s.io/yaml"

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
	Output        string
	NoHeaders     bool
	Workloads     bool
	ChunkSize     int64

	namespace string
	mode      inventory.Mode
	kube      kubernetes.Interface
}

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
from. Pods are listed in pages and printed as they arrive.`,
		Example: `  meshaddon status -n sample
  meshaddon status -A --mode classic
  meshaddon status -A --workloads
  meshaddon status -A -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
	f.StringVarP(&o.Output, "output", "o", "", "Output format: wide, json or yaml")
	f.BoolVar(&o.NoHeaders, "no-headers", false, "Do not print the header line")
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
	o.namespace = c.Namespace
	if o.AllNamespaces {
		o.namespace = ""
	}
	return nil
}

// Validate checks the flags and that the namespace exists.
func (o *Options) Validate(ctx context.Context) error {
	if err := output.Validate(o.Output, "", "wide", "json", "yaml"); err != nil {
		return err
	}
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
	if (o.Output == "" || o.Output == "wide") && !o.NoHeaders {
		// The layout, revisions, tags and versions, and the placement
		// guard, on stderr: stdout stays the table kubectl's custom-columns
		// would print.
		printMesh(ctx, o.ErrOut, o.kube)
		guard = o.printGuard(ctx)
	}
	if o.Workloads {
		return o.runWorkloads(ctx, list, guard)
	}
	p := o.printer()
	err := o.eachPage(ctx, list, func(rows []inventory.Pod) error {
		guard.add(rows)
		if o.mode != "" {
			kept := rows[:0]
			for _, r := range rows {
				if r.Mode == o.mode {
					kept = append(kept, r)
				}
			}
			rows = kept
		}
		return p.page(rows)
	})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	if err := p.done(); err != nil {
		return err
	}
	guard.print(o.ErrOut)
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
	if err := o.eachPage(ctx, list, func(rows []inventory.Pod) error { sum.Add(rows); guard.add(rows); return nil }); err != nil {
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
	if ok, err := output.Structured(o.Out, o.Output, ws); ok {
		return err
	}
	t := &output.StreamTable{W: o.Out, NoHeaders: o.NoHeaders, Headers: []string{"NAMESPACE", "KIND", "NAME", "NATIVE", "CLASSIC", "NONE", "REVISIONS"}}
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
	guard.print(o.ErrOut)
	return nil
}

// podPrinter prints pages of pods in the chosen format as they arrive.
type podPrinter struct {
	page func([]inventory.Pod) error
	done func() error
}

func (o *Options) printer() podPrinter {
	switch o.Output {
	case "json":
		return jsonPrinter(o.Out)
	case "yaml":
		return podPrinter{
			page: func(rows []inventory.Pod) error {
				if len(rows) == 0 {
					return nil
				}
				data, err := yaml.Marshal(rows)
				if err != nil {
					return err
				}
				_, err = o.Out.Write(data)
				return err
			},
			done: func() error { return nil },
		}
	}
	headers := []string{"NAME", "INIT", "CONTAINERS", "MODE", "REVISION"}
	if o.Output == "wide" {
		headers = append(headers, "NODE", "OVERRIDE", "OWNER")
	}
	if o.namespace == "" {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	t := &output.StreamTable{W: o.Out, Headers: headers, NoHeaders: o.NoHeaders}
	printed := false
	return podPrinter{
		page: func(rows []inventory.Pod) error {
			cells := make([][]string, len(rows))
			for i, r := range rows {
				c := []string{r.Name, r.Init, r.Containers, string(r.Mode), orNone(r.Revision)}
				if o.Output == "wide" {
					c = append(c, orNone(r.Node), orNone(r.Override), r.Owner.String())
				}
				if o.namespace == "" {
					c = append([]string{r.Namespace}, c...)
				}
				cells[i] = c
			}
			printed = printed || len(rows) > 0
			if len(rows) == 0 {
				return nil
			}
			return t.Page(cells)
		},
		done: func() error {
			if !printed {
				where := "namespace " + o.namespace
				if o.namespace == "" {
					where = "any namespace"
				}
				fmt.Fprintf(o.ErrOut, "No resources found in %s.\n", where)
			}
			return nil
		},
	}
}

// jsonPrinter streams {"items": [...]} one page at a time.
func jsonPrinter(w io.Writer) podPrinter {
	first := true
	return podPrinter{
		page: func(rows []inventory.Pod) error {
			for _, r := range rows {
				data, err := json.Marshal(r)
				if err != nil {
					return err
				}
				sep := ",\n    "
				if first {
					sep = "{\n  \"items\": [\n    "
					first = false
				}
				if _, err := io.WriteString(w, sep+string(data)); err != nil {
					return err
				}
			}
			return nil
		},
		done: func() error {
			end := "\n  ]\n}\n"
			if first {
				end = "{\n  \"items\": []\n}\n"
			}
			_, err := io.WriteString(w, end)
			return err
		},
	}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
