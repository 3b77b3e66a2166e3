// Package migrate is `meshaddon migrate`: the document's last step, "do a
// rolling restart of workloads", done safely in waves and resumable.
package migrate

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/cli/output"
	precheckcli "github.com/meshaddon/meshaddon/internal/cli/precheck"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/migrate"
	"github.com/meshaddon/meshaddon/internal/precheck"
)

// Options are the flags of `meshaddon migrate`.
type Options struct {
	genericiooptions.IOStreams
	AllNamespaces  bool
	Selector       string
	Concurrency    int
	Timeout        time.Duration
	NamespaceOrder []string
	DryRun         bool
	SkipPrecheck   bool
	Output         string
	MeshNamespace  string
}

// NewCommand returns `meshaddon migrate`.
func NewCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Restart every workload with classic sidecars so it is re-injected native, in safe waves",
		Long: `Restart, as "kubectl rollout restart" does, every Deployment, StatefulSet and DaemonSet
whose pods carry classic sidecars while their revision's istiod now injects native ones,
a few at a time. Each is done when its rollout completes and its new pods are verified
native. Jobs, CronJobs and bare pods are reported with what to do, never restarted;
kube-system, the mesh's namespace and namespaces not in the mesh are never touched.

On a failure (no progress within --timeout, new pods still classic) it starts nothing
new, lets running restarts finish, says what failed, and exits 1. Progress is kept on
the workloads themselves: run it again after any interruption and it continues,
restarting nothing twice. Pods that came back classic after a migration (the mesh went
classic and back) are restarted again by the next one.`,
		Example: `  meshaddon migrate --dry-run -A
  meshaddon migrate -A --concurrency 20
  meshaddon migrate -n shop -l tier=web --timeout 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			c, err := kube.NewClients(flags)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			cfg := *c.Config
			cfg.ContentType = runtime.ContentTypeProtobuf
			cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
			cfg.QPS, cfg.Burst = 100, 200
			kc, err := kubernetes.NewForConfig(&cfg)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			ns := c.Namespace
			if o.AllNamespaces {
				ns = ""
			}
			if _, err := kc.Discovery().ServerVersion(); err != nil {
				return exitcode.Wrap(exitcode.Usage, fmt.Errorf("cannot reach the cluster at %s: %v", c.Config.Host, err))
			}
			refused, err := o.precheck(cmd.Context(), &precheck.Env{Kube: kc, Client: c.Client, MeshNamespace: o.MeshNamespace, Policy: meshversion.DefaultPolicy})
			if err != nil {
				return err
			}
			return o.Run(cmd.Context(), kc, ns, refused)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "Migrate workloads in every namespace of the mesh")
	f.StringVarP(&o.Selector, "selector", "l", "", "Only pods matching this label selector")
	f.IntVar(&o.Concurrency, "concurrency", 10, "Workloads restarting at once")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "Fail a workload whose rollout makes no progress for this long")
	f.StringSliceVar(&o.NamespaceOrder, "namespace-order", nil, "Namespaces to migrate first, in this order (comma-separated)")
	f.BoolVar(&o.DryRun, "dry-run", false, "Print the plan and change nothing")
	f.BoolVar(&o.SkipPrecheck, "skip-precheck", false, "Start even when precheck fails (not recommended)")
	f.StringVarP(&o.Output, "output", "o", "", "Output format of the plan (--dry-run) or final table: json")
	f.StringVar(&o.MeshNamespace, "mesh-namespace", "", "Namespace of the istiod Deployments; empty discovers them (app=istiod) in every namespace, the managed add-on's and upstream Istio's layouts alike")
	return cmd
}

// Validate checks the flags.
func (o *Options) Validate() error {
	if err := output.Validate(o.Output, "", "json"); err != nil {
		return err
	}
	if o.Concurrency < 1 {
		return fmt.Errorf("--concurrency must be at least 1, got %d", o.Concurrency)
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	if _, err := labels.Parse(o.Selector); err != nil {
		return fmt.Errorf("invalid selector %q: %v", o.Selector, err)
	}
	return nil
}

// precheck refuses to start when a check fails for the whole cluster,
// unless told to skip. Failures of the admission proof and the resource
// check stand for the namespaces and workloads they name: those are
// returned, printed, and refused; the rest goes on.
func (o *Options) precheck(ctx context.Context, env *precheck.Env) (precheck.Refusals, error) {
	if o.SkipPrecheck {
		fmt.Fprintln(o.ErrOut, "warning: --skip-precheck: migrating without checking that the cluster is ready; pods restarted now may come back classic or hang in Init")
		return precheck.Refusals{}, nil
	}
	r := precheck.Run(ctx, env, precheck.Checks)
	refused, global := r.Split()
	if global != nil {
		precheckcli.PrintText(o.ErrOut, global)
		return refused, exitcode.Wrap(exitcode.Failure, fmt.Errorf("precheck failed, so nothing was restarted: fix the checks above (meshaddon precheck), or pass --skip-precheck"))
	}
	if !refused.Empty() {
		fmt.Fprintln(o.ErrOut, "precheck failed for some namespaces or workloads: migrate does not restart those (each is listed with why) and goes on with the rest; run meshaddon precheck for the details")
	}
	return refused, nil
}

// Run builds the plan and carries it out, but for the restarts precheck
// refused: those are reported with why, and the run exits 1.
func (o *Options) Run(ctx context.Context, kc kubernetes.Interface, namespace string, refused precheck.Refusals) error {
	plan, err := migrate.BuildPlan(ctx, kc, migrate.Scope{Namespace: namespace, Selector: o.Selector, MeshNamespace: o.MeshNamespace, NamespaceOrder: o.NamespaceOrder})
	if err != nil {
		return err
	}
	nRefused := plan.Refuse(refused.Why)
	refusedErr := func() error {
		if nRefused == 0 {
			return nil
		}
		return exitcode.Wrap(exitcode.Failure, fmt.Errorf("precheck refused %d workload(s) (listed as refused, with why): fix what precheck names (meshaddon precheck), then run meshaddon migrate again to restart them", nRefused))
	}
	if o.DryRun {
		if ok, err := output.Structured(o.Out, o.Output, plan); ok {
			if err != nil {
				return err
			}
			return refusedErr()
		}
		fmt.Fprint(o.Out, plan.String())
		fmt.Fprintf(o.Out, "dry run: %d workload(s) would be restarted, %d refused, %d reported\n", plan.Restarts(), nRefused, len(plan.Items)-plan.Restarts()-nRefused)
		return refusedErr()
	}
	if plan.Restarts() == 0 && nRefused == 0 {
		fmt.Fprintln(o.ErrOut, "Nothing to restart: no Deployment, StatefulSet or DaemonSet in scope has classic sidecars from a revision that injects native now.")
	}
	progress := newProgress(o.ErrOut, plan.Restarts())
	runner := &migrate.Runner{Kube: kc, Concurrency: o.Concurrency, Timeout: o.Timeout, OnEvent: progress.event}
	results := runner.Run(ctx, plan)
	progress.finish()
	if ok, err := output.Structured(o.Out, o.Output, results); ok {
		if err != nil {
			return err
		}
	} else if len(results) > 0 {
		rows := make([][]string, len(results))
		for i, r := range results {
			msg := r.Message
			if msg == "" {
				msg = "-"
			}
			rows[i] = []string{r.Namespace, r.Kind, r.Name, r.Outcome, r.Duration.String(), msg}
		}
		if err := output.Table(o.Out, []string{"NAMESPACE", "KIND", "NAME", "RESULT", "DURATION", "MESSAGE"}, rows); err != nil {
			return err
		}
	}
	for _, r := range results {
		if r.Outcome == migrate.Failed {
			return exitcode.Wrap(exitcode.Failure, fmt.Errorf("%s/%s/%s failed: %s\nNothing new was started after it. Fix it (kubectl -n %s describe %s %s), then run meshaddon migrate again: it continues where it stopped and restarts nothing twice",
				r.Namespace, r.Kind, r.Name, r.Message, r.Namespace, strings.ToLower(r.Kind), r.Name))
		}
	}
	if ctx.Err() != nil {
		return exitcode.Wrap(exitcode.Failure, fmt.Errorf("interrupted: run meshaddon migrate again to continue"))
	}
	return refusedErr()
}

// progress shows a bar on a terminal, plain lines otherwise.
type progress struct {
	w                            io.Writer
	tty                          bool
	total, done, running, failed int
	start                        time.Time
}

func newProgress(w io.Writer, total int) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progress{w: w, tty: tty, total: total, start: time.Now()}
}

func (p *progress) event(e migrate.Event) {
	r := e.Result
	if e.Started {
		p.running++
		if !p.tty {
			fmt.Fprintf(p.w, "restarting %s/%s/%s\n", r.Namespace, r.Kind, r.Name)
		}
	} else {
		p.running--
		p.done++
		if r.Outcome == migrate.Failed {
			p.failed++
		}
		if !p.tty {
			fmt.Fprintf(p.w, "%s %s/%s/%s in %s %s\n", r.Outcome, r.Namespace, r.Kind, r.Name, r.Duration, r.Message)
		}
	}
	if p.tty {
		p.bar()
	}
}

func (p *progress) bar() {
	const width = 30
	filled := 0
	if p.total > 0 {
		filled = width * p.done / p.total
	}
	elapsed := time.Since(p.start).Round(time.Second)
	eta := "?"
	if p.done > 0 {
		eta = (time.Duration(float64(time.Since(p.start)) / float64(p.done) * float64(p.total-p.done))).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d done · %d running · %d failed · %d remaining · %s elapsed · ETA %s ",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.done, p.total, p.running, p.failed, p.total-p.done-p.running, elapsed, eta)
}

func (p *progress) finish() {
	if p.tty && p.total > 0 {
		fmt.Fprintln(p.w)
	}
}
