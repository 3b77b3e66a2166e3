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
	Output         *output.Flags
	MeshNamespace  string

	// Issue 14: PDBs, the surge budget, the canary.
	IgnorePDB        bool
	MaxSurgePods     int
	Canary           int
	CanarySelector   string
	CanarySoak       time.Duration
	PauseAfterCanary bool
	// set tells which flags were given.
	set func(name string) bool
}

// NewCommand returns `meshaddon migrate`.
func NewCommand(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams, set: func(string) bool { return false }}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Restart every workload with classic sidecars so it is re-injected native, in safe waves",
		Long: `Restart, as "kubectl rollout restart" does, every Deployment, StatefulSet and DaemonSet
whose pods carry classic sidecars while their pod template, resolved now as Istio's
webhooks do (namespace labels, revision tags, pod labels), goes to a revision that
injects native: the revision that injected the running pods does not count, so a tag
moved to a native revision restarts its workloads. Workloads whose new pods would be
classic again (or get no sidecar) are reported with why, never restarted. A few at a time. Each is done when its rollout completes and its new pods are verified
native. Jobs, CronJobs and bare pods are reported with what to do, never restarted;
kube-system, the mesh's namespace and namespaces not in the mesh are never touched.

On a failure (no progress within --timeout, new pods still classic) it starts nothing
new, lets running restarts finish, says what failed, and exits 1. Progress is kept on
the workloads themselves: run it again after any interruption and it continues,
restarting nothing twice. Pods that came back classic after a migration (the mesh went
classic and back) are restarted again by the next one.

On a busy cluster: a workload that PodDisruptionBudgets select starts only when no
other restart under the same PDB runs and the PDB allows a disruption with all its
pods Ready (--ignore-pdb overrides); the extra pods that rolling restarts create at
once never exceed --max-surge-pods (by default what the Ready nodes' free allocatable
holds, printed in the plan); a restart waits for room in its namespace's
ResourceQuota and fails, naming the quota, if there can be none; a rollout whose new
pods cannot be created (a quota, an admission webhook) fails within seconds with the
reason, and the others go on. --canary N restarts the N smallest workloads first (or
those --canary-selector names) and keeps them native and Ready for --canary-soak
before the rest; --pause-after-canary stops there and prints the command that
continues.`,
		Example: `  meshaddon migrate --dry-run -A
  meshaddon migrate -A --concurrency 20
  meshaddon migrate -n shop -l tier=web --timeout 10m
  meshaddon migrate -A --max-surge-pods 20 --canary 3 --canary-soak 2m --pause-after-canary`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.set = func(name string) bool { return cmd.Flags().Changed(name) }
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
	// -o prints the plan (--dry-run) or the results; -o name the workloads.
	o.Output = output.Add(cmd, output.Options{Names: true, NoHeaders: true})
	f.StringVar(&o.MeshNamespace, "mesh-namespace", "", "Namespace of the istiod Deployments; empty discovers them (app=istiod) in every namespace, the managed add-on's and upstream Istio's layouts alike")
	f.BoolVar(&o.IgnorePDB, "ignore-pdb", false, "Do not wait for PodDisruptionBudgets (not recommended: restarts may take a service below its budget)")
	f.IntVar(&o.MaxSurgePods, "max-surge-pods", 0, "At most this many extra pods at once across all restarts (default: what the Ready nodes' free allocatable holds)")
	f.IntVar(&o.Canary, "canary", 0, "Restart this many workloads first, the smallest (replicas × pod request), and soak them before the rest")
	f.StringVar(&o.CanarySelector, "canary-selector", "", "Label selector on the workloads that make the canary (with --canary N: the N smallest of them)")
	f.DurationVar(&o.CanarySoak, "canary-soak", 30*time.Second, "How long the canary must stay native and Ready, with no pod restarted, before the rest starts")
	f.BoolVar(&o.PauseAfterCanary, "pause-after-canary", false, "Stop after the canary and print the command that continues")
	// A flag that does not parse (--canary-soak soon) is a usage error.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitcode.Wrap(exitcode.Usage, err) })
	return cmd
}

// Validate checks the flags.
func (o *Options) Validate() error {
	if err := o.Output.Validate(); err != nil {
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
	if o.set("max-surge-pods") && o.MaxSurgePods < 1 {
		return fmt.Errorf("--max-surge-pods must be at least 1, got %d (leave it out to size it from the nodes' free allocatable)", o.MaxSurgePods)
	}
	if o.Canary < 0 {
		return fmt.Errorf("--canary must be at least 1, got %d", o.Canary)
	}
	if _, err := labels.Parse(o.CanarySelector); err != nil {
		return fmt.Errorf("invalid --canary-selector %q: %v", o.CanarySelector, err)
	}
	if o.CanarySoak < 0 {
		return fmt.Errorf("--canary-soak must not be negative, got %s", o.CanarySoak)
	}
	if !o.canary() && (o.PauseAfterCanary || o.set("canary-soak")) {
		return fmt.Errorf("--pause-after-canary and --canary-soak need a canary: pass --canary N or --canary-selector")
	}
	return nil
}

func (o *Options) canary() bool { return o.Canary > 0 || o.CanarySelector != "" }

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
	plan, err := migrate.BuildPlan(ctx, kc, migrate.Scope{Namespace: namespace, Selector: o.Selector, MeshNamespace: o.MeshNamespace, NamespaceOrder: o.NamespaceOrder, MaxSurgePods: int32(o.MaxSurgePods)})
	if err != nil {
		return err
	}
	plan.IgnorePDB = o.IgnorePDB
	if o.IgnorePDB {
		fmt.Fprintln(o.ErrOut, "warning: --ignore-pdb: restarts do not wait for PodDisruptionBudgets, so two under one budget may run at once and take its service below it")
	}
	if o.canary() {
		var sel labels.Selector
		if o.CanarySelector != "" {
			sel, _ = labels.Parse(o.CanarySelector) // validated
		}
		n := plan.PickCanary(o.Canary, sel)
		switch {
		case o.Canary > plan.Restarts():
			return exitcode.Wrap(exitcode.Usage, fmt.Errorf("--canary %d is more than the %d workload(s) the plan restarts (meshaddon migrate --dry-run lists them)", o.Canary, plan.Restarts()))
		case n == 0:
			return exitcode.Wrap(exitcode.Usage, fmt.Errorf("--canary-selector %q selects none of the %d workload(s) the plan restarts", o.CanarySelector, plan.Restarts()))
		}
		plan.CanarySoak, plan.PauseAfterCanary = o.CanarySoak, o.PauseAfterCanary
	}
	plan.Schedule(o.Concurrency)
	nRefused := plan.Refuse(refused.Why)
	refusedErr := func() error {
		if nRefused == 0 {
			return nil
		}
		return exitcode.Wrap(exitcode.Failure, fmt.Errorf("precheck refused %d workload(s) (listed as refused, with why): fix what precheck names (meshaddon precheck), then run meshaddon migrate again to restart them", nRefused))
	}
	if o.DryRun {
		if !o.Output.Human() {
			refs := make([]output.ObjectRef, len(plan.Items))
			for i, it := range plan.Items {
				refs[i] = output.Workload(it.Kind, it.Namespace, it.Name)
			}
			if err := o.Output.Print(o.Out, plan, refs...); err != nil {
				return err
			}
			return refusedErr()
		}
		fmt.Fprint(o.Out, plan.String())
		fmt.Fprintf(o.Out, "dry run: %d workload(s) would be restarted, %d refused, %d reported\n", plan.Restarts(), nRefused, len(plan.Items)-plan.Restarts()-nRefused)
		return refusedErr()
	}
	if plan.Restarts() == 0 && nRefused == 0 {
		fmt.Fprintln(o.ErrOut, "Nothing to restart: no Deployment, StatefulSet or DaemonSet in scope has classic sidecars and a pod template that a native revision injects now.")
	}
	fmt.Fprintf(o.ErrOut, "surge budget: %d extra pod(s) at once (%s)\n", plan.SurgeBudget, plan.SurgeBudgetFrom)
	progress := newProgress(o.ErrOut, plan.Restarts())
	runner := &migrate.Runner{Kube: kc, Concurrency: o.Concurrency, Timeout: o.Timeout, OnEvent: progress.event}
	results := runner.Run(ctx, plan)
	progress.finish()
	paused := false
	for _, r := range results {
		paused = paused || r.Message == migrate.Paused
	}
	if !o.Output.Human() {
		if results == nil {
			results = []migrate.Result{} // an empty list, not null
		}
		refs := make([]output.ObjectRef, len(results))
		for i, r := range results {
			refs[i] = output.Workload(r.Kind, r.Namespace, r.Name)
		}
		if err := o.Output.Print(o.Out, results, refs...); err != nil {
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
		t := o.Output.Table(o.Out, output.Column{Name: "NAMESPACE"}, output.Column{Name: "KIND"}, output.Column{Name: "NAME"},
			output.Column{Name: "RESULT"}, output.Column{Name: "DURATION"}, output.Column{Name: "MESSAGE"})
		if err := t.Page(rows); err != nil {
			return err
		}
	}
	var alone []string
	for _, r := range results {
		if r.Outcome == migrate.Failed && !migrate.FailedAlone(r) {
			return exitcode.Wrap(exitcode.Failure, fmt.Errorf("%s/%s/%s failed: %s\nNothing new was started after it. Fix it (kubectl -n %s describe %s %s), then run meshaddon migrate again: it continues where it stopped and restarts nothing twice",
				r.Namespace, r.Kind, r.Name, r.Message, r.Namespace, strings.ToLower(r.Kind), r.Name))
		}
	}
	for _, r := range results {
		if r.Outcome == migrate.Failed {
			alone = append(alone, fmt.Sprintf("%s/%s/%s: %s", r.Namespace, r.Kind, r.Name, r.Message))
		}
	}
	if len(alone) > 0 {
		return exitcode.Wrap(exitcode.Failure, fmt.Errorf("%d workload(s) failed, the others went on:\n  %s\nFix what each names, then run meshaddon migrate again: it continues where it stopped and restarts nothing twice", len(alone), strings.Join(alone, "\n  ")))
	}
	if ctx.Err() != nil {
		return exitcode.Wrap(exitcode.Failure, fmt.Errorf("interrupted: run meshaddon migrate again to continue"))
	}
	if paused {
		fmt.Fprintf(o.ErrOut, "The canary is migrated and stayed native and Ready for %s. To migrate the rest, run:\n  %s\n", o.CanarySoak, continueCommand(os.Args))
	}
	return refusedErr()
}

// continueCommand is args without the canary's flags: the command that
// migrates the rest after --pause-after-canary.
func continueCommand(args []string) string {
	valued := map[string]bool{"--canary": true, "--canary-selector": true, "--canary-soak": true}
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(a, "=")
		switch {
		case name == "--pause-after-canary":
			continue
		case valued[name]:
			if !hasValue {
				i++ // its value is the next argument
			}
			continue
		}
		out = append(out, shellQuote(a))
	}
	return strings.Join(out, " ")
}

// shellQuote quotes an argument for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./:,@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// progress shows a bar on a terminal, plain lines otherwise.
type progress struct {
	w                            io.Writer
	tty                          bool
	total, done, running, failed int
	start                        time.Time
	// waiting is why each waiting workload waits (a migrate.Wait reason);
	// started are those running.
	waiting, started map[string]string
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
	key := r.Namespace + "/" + r.Kind + "/" + r.Name
	if e.Waiting != "" {
		if p.waiting == nil {
			p.waiting = map[string]string{}
		}
		p.waiting[key] = e.Reason
		if !p.tty {
			fmt.Fprintf(p.w, "waiting %s: %s\n", key, e.Waiting)
		} else {
			p.bar()
		}
		return
	}
	delete(p.waiting, key)
	if e.Started {
		if p.started == nil {
			p.started = map[string]string{}
		}
		p.started[key] = ""
		p.running++
		if !p.tty {
			fmt.Fprintf(p.w, "restarting %s/%s/%s\n", r.Namespace, r.Kind, r.Name)
		}
	} else {
		if _, ok := p.started[key]; ok {
			delete(p.started, key)
			p.running-- // a workload that failed waiting never ran
		}
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
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d done · %d running · %d failed · %d remaining%s · %s elapsed · ETA %s \x1b[K",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.done, p.total, p.running, p.failed, p.total-p.done-p.running, p.whyWaiting(), elapsed, eta)
}

// whyWaiting is " (3 waiting: PDB 2, budget 1)", or "" when none waits.
func (p *progress) whyWaiting() string {
	if len(p.waiting) == 0 {
		return ""
	}
	count := map[string]int{}
	for _, why := range p.waiting {
		count[why]++
	}
	var parts []string
	for _, why := range []string{migrate.WaitPDB, migrate.WaitBudget, migrate.WaitQuota, migrate.WaitConcurrency} {
		if count[why] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", why, count[why]))
		}
	}
	return fmt.Sprintf(" (%d waiting: %s)", len(p.waiting), strings.Join(parts, ", "))
}

func (p *progress) finish() {
	if p.tty && p.total > 0 {
		fmt.Fprintln(p.w)
	}
}
