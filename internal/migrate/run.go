package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"
	deploymentutil "k8s.io/kubectl/pkg/util/deployment"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/rollout"
)

// Annotations of a restart. RestartedAtAnnotation is kubectl rollout
// restart's; RestartAnnotation, on the workload itself, records that this
// restart was migrate's, so a rerun can resume instead of restarting twice
// (see resumes).
const (
	RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"
	RestartAnnotation     = "meshaddon.dev/native-restart"
)

// Outcomes of one workload.
const (
	Migrated   = "migrated"    // restarted and its new pods are native
	Resumed    = "resumed"     // an earlier run restarted it; this one saw it through
	Failed     = "failed"      // see Message
	Skipped    = "skipped"     // nothing to wait on (OnDelete, zero replicas): see Message
	Reported   = "reported"    // not restartable by migrate: see the plan's advice
	Refused    = "refused"     // precheck failed for it: see Message
	NotStarted = "not started" // an earlier failure stopped the run
)

// Result is one workload's outcome.
type Result struct {
	inventory.Workload
	Outcome  string        `json:"outcome"`
	Message  string        `json:"message,omitempty"`
	Duration time.Duration `json:"duration"`
	// alone: a failure of this workload alone (its quota, its admission,
	// its PDB), after which the others go on.
	alone bool
}

// Event reports progress: a workload started, ended, or waits (Waiting
// says why: a Wait constant and what it waits on).
type Event struct {
	Started bool
	Waiting string
	Reason  string
	Result  Result
}

// Runner restarts a plan's workloads.
type Runner struct {
	Kube kubernetes.Interface
	// Concurrency is how many workloads restart at once.
	Concurrency int
	// Timeout ends a workload whose rollout makes no progress for this
	// long, or that waited this long for its PDB.
	Timeout time.Duration
	// OnEvent, if set, is called from the workers as workloads start and end.
	OnEvent func(Event)

	events *failedCreates
}

// FailedAlone tells a failure of that workload alone (its quota, an
// admission webhook, its PDB), after which the run went on, from one that
// stopped it.
func FailedAlone(r Result) bool { return r.Outcome == Failed && r.alone }

// Paused is the message of the restarts --pause-after-canary left.
const Paused = "after the canary (--pause-after-canary): run again without it to continue"

// Run restarts every restart item, the canary first, as the gates allow
// (see schedule.go), and returns one result per plan item in plan order.
// After a failure of the run's own (no progress, pods still classic) it
// starts nothing new and lets the running restarts finish; a workload that
// fails alone (its quota, an admission webhook, its PDB) does not stop the
// others. A failed canary stops the run.
func (r *Runner) Run(ctx context.Context, p *Plan) []Result {
	results := make([]Result, len(p.Items))
	var canary, rest []int
	for i, it := range p.Items {
		switch it.Action {
		case ActionRefuse:
			results[i] = Result{Workload: it.Workload, Outcome: Refused, Message: it.Advice}
		case ActionReport:
			results[i] = Result{Workload: it.Workload, Outcome: Reported, Message: it.Advice}
		default:
			if it.Canary {
				canary = append(canary, i)
			} else {
				rest = append(rest, i)
			}
		}
	}
	var mu sync.Mutex
	emit := func(e Event) {
		if r.OnEvent != nil {
			mu.Lock()
			r.OnEvent(e)
			mu.Unlock()
		}
	}
	g := newGates(r.Concurrency, p.SurgeBudget, p.IgnorePDB)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	r.events = newFailedCreates(runCtx, r.Kube)
	ok := r.schedule(ctx, p, canary, g, results, emit)
	if ok && len(canary) > 0 {
		ok = r.soak(ctx, p, canary, results, p.CanarySoak)
	}
	switch {
	case !ok:
		for _, i := range rest {
			results[i] = Result{Workload: p.Items[i].Workload, Outcome: NotStarted, Message: "the canary failed"}
		}
	case len(canary) > 0 && p.PauseAfterCanary:
		for _, i := range rest {
			results[i] = Result{Workload: p.Items[i].Workload, Outcome: NotStarted, Message: Paused}
		}
	default:
		r.schedule(ctx, p, rest, g, results, emit)
	}
	return results
}

// schedule runs the restarts idx as the gates allow and tells whether all
// succeeded. It reads the PDBs and quotas of a waiting restart's namespace
// again at most once a second.
func (r *Runner) schedule(ctx context.Context, p *Plan, idx []int, g *gates, results []Result, emit func(Event)) bool {
	type ended struct {
		i   int
		res Result
	}
	done := make(chan ended)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	pending := idx
	waiting := map[int]string{}
	since, reason := map[int]time.Time{}, map[int]string{}
	ctxDone := ctx.Done()
	stop, allOK := false, true
	read := map[string]time.Time{}
	for len(pending) > 0 || g.running > 0 {
		if stop || ctx.Err() != nil {
			for _, i := range pending {
				results[i] = Result{Workload: p.Items[i].Workload, Outcome: NotStarted}
			}
			pending = nil
		}
		now := time.Now()
		var later []int
		for _, i := range pending {
			it := &p.Items[i]
			if g.running >= g.concurrency {
				later = append(later, i)
				continue
			}
			if err := r.refresh(ctx, it, g, read, now); err != nil {
				results[i] = Result{Workload: it.Workload, Outcome: Failed, Message: err.Error(), alone: true}
				allOK = false
				emit(Event{Result: results[i]})
				continue
			}
			v := g.admit(it, now)
			if v.OK {
				delete(waiting, i)
				g.start(it)
				emit(Event{Started: true, Result: Result{Workload: it.Workload}})
				go func(i int, w inventory.Workload) {
					start := time.Now()
					res := r.migrate(ctx, w)
					res.Duration = time.Since(start).Round(10 * time.Millisecond)
					done <- ended{i, res}
				}(i, it.Workload)
				continue
			}
			if reason[i] != v.Reason {
				reason[i], since[i] = v.Reason, now
			}
			fail := ""
			switch {
			case v.Never:
				fail = v.Detail + ": make room in the quota (or raise it), then run meshaddon migrate again"
			case v.Reason == WaitPDB && now.Sub(since[i]) > r.Timeout:
				fail = fmt.Sprintf("waited %s for %s: make its pods Ready, or pass --ignore-pdb", r.Timeout, v.Detail)
			}
			if fail != "" {
				results[i] = Result{Workload: it.Workload, Outcome: Failed, Message: fail, alone: true}
				allOK = false
				emit(Event{Result: results[i]})
				continue
			}
			if waiting[i] != v.Detail {
				waiting[i] = v.Detail
				emit(Event{Waiting: v.Detail, Reason: v.Reason, Result: Result{Workload: it.Workload}})
			}
			later = append(later, i)
		}
		pending = later
		if len(pending) == 0 && g.running == 0 {
			break
		}
		select {
		case e := <-done:
			g.end(&p.Items[e.i], time.Now())
			// Its PDBs and quota changed: read them again for the next.
			delete(read, p.Items[e.i].Namespace)
			results[e.i] = e.res
			if e.res.Outcome == Failed {
				allOK = false
				stop = stop || !e.res.alone
			}
			emit(Event{Result: e.res})
		case <-tick.C:
		case <-ctxDone:
			ctxDone = nil // the top of the loop starts nothing more
		}
	}
	return allOK && ctx.Err() == nil
}

// soak checks the canary's pods every second for d: each must stay
// native and Ready, and none may restart a container, be replaced or go
// away. A canary that does not fails, and the run stops.
func (r *Runner) soak(ctx context.Context, p *Plan, canary []int, results []Result, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	type state struct {
		wl   *workload
		pods map[string]int32 // pod name → container restarts
	}
	states := map[int]*state{}
	check := func(i int) string {
		it := &p.Items[i]
		st := states[i]
		if st == nil {
			wl, err := r.get(ctx, it.Workload)
			if err != nil {
				return fmt.Sprintf("read %s: %v", it.Workload, err)
			}
			st = &state{wl: wl}
			states[i] = st
		}
		pods, err := r.podsOf(ctx, it.Workload, st.wl)
		if err != nil {
			return fmt.Sprintf("read its pods: %v", err)
		}
		now := map[string]int32{}
		for k := range pods {
			pod := &pods[k]
			var restarts int32
			for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
				restarts += cs.RestartCount
			}
			now[pod.Name] = restarts
			before, known := st.pods[pod.Name]
			switch {
			case classic(pod):
				return fmt.Sprintf("pod %s is classic", pod.Name)
			case !podReady(pod):
				return fmt.Sprintf("pod %s is not Ready", pod.Name)
			case st.pods != nil && !known:
				return fmt.Sprintf("pod %s is new: one of its pods was replaced", pod.Name)
			case restarts > before:
				return fmt.Sprintf("pod %s restarted a container", pod.Name)
			}
		}
		for name := range st.pods {
			if _, ok := now[name]; !ok {
				return fmt.Sprintf("pod %s went away", name)
			}
		}
		if st.pods == nil {
			st.pods = now
		}
		return ""
	}
	deadline := time.Now().Add(d)
	for {
		for _, i := range canary {
			if o := results[i].Outcome; o != Migrated && o != Resumed {
				continue
			}
			if msg := check(i); msg != "" {
				results[i].Outcome, results[i].Message = Failed, fmt.Sprintf("canary soak (--canary-soak %s): %s", d, msg)
				return false
			}
		}
		if time.Now().After(deadline) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// refresh reads the PDBs and quotas of it's namespace if a gate needs them
// and they were read more than a second ago.
func (r *Runner) refresh(ctx context.Context, it *Item, g *gates, read map[string]time.Time, now time.Time) error {
	needPDB := len(it.PDBs) > 0 && !g.ignorePDB
	if !needPDB && len(it.Quotas) == 0 {
		return nil
	}
	if now.Sub(read[it.Namespace]) < time.Second {
		return nil
	}
	read[it.Namespace] = now
	pdbs, err := listPDBs(ctx, r.Kube, it.Namespace)
	if err != nil {
		return err
	}
	byName := map[string]*policyv1.PodDisruptionBudget{}
	for i := range pdbs[it.Namespace] {
		byName[pdbs[it.Namespace][i].Name] = &pdbs[it.Namespace][i]
	}
	g.pdbs[it.Namespace] = byName
	quotas, err := listQuotas(ctx, r.Kube, it.Namespace)
	if err != nil {
		return err
	}
	g.quotas[it.Namespace] = quotas[it.Namespace]
	return nil
}

// workload is the restartable object behind a Workload.
type workload struct {
	obj      client.Object
	template *corev1.PodTemplateSpec
	selector *metav1.LabelSelector
	replicas *int32
	onDelete bool
	lw       *toolscache.ListWatch
}

func (r *Runner) get(ctx context.Context, w inventory.Workload) (*workload, error) {
	one := fields.OneTermEqualSelector("metadata.name", w.Name)
	apps := r.Kube.AppsV1()
	var out workload
	var err error
	switch w.Kind {
	case "Deployment":
		var d *appsv1.Deployment
		d, err = apps.Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err == nil {
			out = workload{obj: d, template: &d.Spec.Template, selector: d.Spec.Selector, replicas: d.Spec.Replicas,
				lw: toolscache.NewListWatchFromClient(apps.RESTClient(), "deployments", w.Namespace, one)}
		}
	case "StatefulSet":
		var s *appsv1.StatefulSet
		s, err = apps.StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err == nil {
			out = workload{obj: s, template: &s.Spec.Template, selector: s.Spec.Selector, replicas: s.Spec.Replicas,
				onDelete: s.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType,
				lw:       toolscache.NewListWatchFromClient(apps.RESTClient(), "statefulsets", w.Namespace, one)}
		}
	case "DaemonSet":
		var d *appsv1.DaemonSet
		d, err = apps.DaemonSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err == nil {
			out = workload{obj: d, template: &d.Spec.Template, selector: d.Spec.Selector,
				onDelete: d.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType,
				lw:       toolscache.NewListWatchFromClient(apps.RESTClient(), "daemonsets", w.Namespace, one)}
		}
	default:
		return nil, fmt.Errorf("migrate does not restart a %s", w.Kind)
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// transient errors are retried: the API server may be restarting.
func transient(err error) bool {
	return !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) && !errors.Is(err, context.Canceled)
}

var backoff = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 9, Cap: 10 * time.Second}

func (r *Runner) migrate(ctx context.Context, w inventory.Workload) Result {
	res := Result{Workload: w}
	fail := func(format string, args ...any) Result {
		res.Outcome, res.Message = Failed, fmt.Sprintf(format, args...)
		return res
	}
	var wl *workload
	err := retry.OnError(backoff, transient, func() (err error) { wl, err = r.get(ctx, w); return err })
	if err != nil {
		return fail("read %s: %v", w, err)
	}
	if wl.replicas != nil && *wl.replicas == 0 {
		res.Outcome, res.Message = Skipped, "0 replicas: nothing to restart (it gets native sidecars when scaled up)"
		return res
	}
	if wl.onDelete {
		res.Outcome, res.Message = Skipped, fmt.Sprintf("update strategy OnDelete: delete its pods yourself to re-inject them (kubectl -n %s delete pod -l %s)", w.Namespace, metav1.FormatLabelSelector(wl.selector))
		return res
	}
	res.Outcome = Migrated
	generation := wl.obj.GetGeneration()
	since := time.Now()
	resume := false
	if stamp := wl.obj.GetAnnotations()[RestartAnnotation]; stamp != "" && stamp == wl.template.Annotations[RestartedAtAnnotation] {
		pods, err := r.podsOf(ctx, w, wl)
		if err != nil {
			return fail("read the pods of %s: %v", w, err)
		}
		resume = resumes(stamp, pods)
	}
	if resume {
		res.Outcome = Resumed // an earlier run's restart is under way: see it through
		if t, err := time.Parse(time.RFC3339, wl.obj.GetAnnotations()[RestartAnnotation]); err == nil {
			since = t
		}
	} else if generation, err = r.restart(ctx, w); err != nil {
		return fail("restart %s: %v", w, err)
	}
	if msg, err := r.waitRollout(ctx, w, wl, generation, since); err != nil {
		var stall *stallError
		if errors.As(err, &stall) {
			res.alone = true
			return fail("%v", err)
		}
		return fail("%v%s", err, r.diagnose(ctx, w, wl))
	} else if msg != "" {
		res.Message = msg
	}
	classic, err := r.classicPods(ctx, w, wl)
	if err != nil {
		return fail("verify the new pods: %v", err)
	}
	if len(classic) > 0 {
		return fail("rolled out, but new pods are still classic (%s): is its revision's istiod injecting native? run meshaddon precheck", strings.Join(classic, ", "))
	}
	return res
}

// resumes tells whether the restart that migrate marked on a workload (the
// template's restartedAt equal to stamp) is still what there is to do, so
// this run waits for it instead of restarting again. A pod carries the
// annotations of the template it was made from, so the pods tell one
// restart from the next:
//   - every classic pod has another restartedAt: it predates the marked
//     restart, whose rollout has yet to replace it (a run killed
//     mid-rollout). Resume: a new restart would be a second one.
//   - a classic pod has restartedAt equal to stamp: it was made from the
//     restarted template and is classic anyway, so that restart is over and
//     did not leave the workload native (istiod injected classic meanwhile:
//     an old node joined, and a scale-up, a drain or a deleted pod brought
//     classic pods back). Restart again: this is another run's work.
//
// No clock is compared: only the annotation the API server copied.
func resumes(stamp string, pods []corev1.Pod) bool {
	for i := range pods {
		if classic(&pods[i]) && pods[i].Annotations[RestartedAtAnnotation] == stamp {
			return false
		}
	}
	return true
}

// restart patches both annotations at once, as `kubectl rollout restart`
// does for the template, and returns the workload's new generation.
func (r *Runner) restart(ctx context.Context, w inventory.Workload) (int64, error) {
	now := time.Now().UTC().Format(time.RFC3339)
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{RestartAnnotation: now}},
		"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
			"annotations": map[string]string{RestartedAtAnnotation: now}}}},
	})
	if err != nil {
		return 0, err
	}
	apps := r.Kube.AppsV1()
	opts := metav1.PatchOptions{FieldManager: "meshaddon-migrate"}
	var generation int64
	err = retry.OnError(backoff, transient, func() error {
		var obj metav1.Object
		var err error
		switch w.Kind {
		case "Deployment":
			obj, err = apps.Deployments(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, opts)
		case "StatefulSet":
			obj, err = apps.StatefulSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, opts)
		case "DaemonSet":
			obj, err = apps.DaemonSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, patch, opts)
		}
		if err == nil {
			generation = obj.GetGeneration()
		}
		return err
	})
	return generation, err
}

// waitRollout watches the workload until kubectl would call its rollout of
// generation (or a later one) done. It gives up when the rollout makes no
// progress for r.Timeout. The informer behind it relists and rewatches if
// the connection drops; its first list may come from the API server's
// cache, older than the restart, hence the generation. The informer retries
// every error, so a list or watch the user may not make ends the wait at
// once, as Forbidden, instead of as "no progress" at the timeout.
func (r *Runner) waitRollout(ctx context.Context, w inventory.Workload, wl *workload, generation int64, since time.Time) (string, error) {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	denied := func(err error) {
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			cancel(err)
		}
	}
	lw := guarded(wl.lw, denied)
	if r.events != nil {
		defer r.events.subscribe(w, since, func(reason string) { cancel(&stallError{reason}) }, denied)()
	}
	var stalled atomic.Bool
	timer := time.AfterFunc(r.Timeout, func() { stalled.Store(true); cancel(nil) })
	defer timer.Stop()
	last := ""
	_, err := watchtools.UntilWithSync(wctx, lw, wl.obj.DeepCopyObject().(runtime.Object), nil, func(ev watch.Event) (bool, error) {
		if ev.Type == watch.Deleted {
			return false, errors.New("it was deleted during the restart")
		}
		obj, ok := ev.Object.(client.Object)
		if !ok || obj.GetGeneration() < generation {
			return false, nil
		}
		if d, ok := obj.(*appsv1.Deployment); ok && d.Status.ObservedGeneration >= generation {
			// The deployment controller copies its ReplicaSets'
			// ReplicaFailure here: the new pods cannot be created.
			if c := deploymentutil.GetDeploymentCondition(d.Status, appsv1.DeploymentReplicaFailure); c != nil && c.Status == corev1.ConditionTrue {
				return false, &stallError{c.Message}
			}
		}
		msg, done, err := rollout.Status(obj)
		if err != nil {
			return false, err
		}
		if msg != last {
			last = msg
			timer.Reset(r.Timeout)
		}
		return done, nil
	})
	var stall *stallError
	switch cause := context.Cause(wctx); {
	case err == nil:
		return "", nil
	case errors.As(err, &stall):
		return "", err
	case errors.As(cause, &stall) && ctx.Err() == nil:
		return "", cause
	case cause != nil && cause != context.Canceled && ctx.Err() == nil:
		return "", fmt.Errorf("watch its rollout: %w", cause)
	case stalled.Load():
		return "", fmt.Errorf("no progress for %s: %s", r.Timeout, strings.TrimSpace(last))
	}
	return "", err
}

// stallError is a rollout that cannot create its pods: a quota or an
// admission webhook refuses them. It fails the workload at once, alone.
type stallError struct{ reason string }

func (e *stallError) Error() string {
	return "its new pods cannot be created: " + e.reason
}

// guarded is lw that reports each error of its list and watch to denied
// (an informer retries every error, Forbidden too).
func guarded(lw *toolscache.ListWatch, denied func(error)) *toolscache.ListWatch {
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := lw.ListWithContext(ctx, o)
			denied(err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := lw.WatchWithContext(ctx, o)
			denied(err)
			return w, err
		},
	}
}

// podsOf lists the workload's pods that are not being deleted.
func (r *Runner) podsOf(ctx context.Context, w inventory.Workload, wl *workload) ([]corev1.Pod, error) {
	var list *corev1.PodList
	err := retry.OnError(backoff, transient, func() (err error) {
		list, err = r.Kube.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(wl.selector)})
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

func (r *Runner) classicPods(ctx context.Context, w inventory.Workload, wl *workload) ([]string, error) {
	pods, err := r.podsOf(ctx, w, wl)
	if err != nil {
		return nil, err
	}
	var names []string
	for i := range pods {
		if classic(&pods[i]) {
			names = append(names, pods[i].Name)
		}
	}
	return names, nil
}

// classic: a pod with a classic sidecar that migrate is to make native (not
// one pinned classic by the per-pod override).
func classic(p *corev1.Pod) bool {
	return inventory.ModeOf(&p.Spec) == inventory.Classic && p.Annotations[inventory.NativeSidecarOverride] != "false"
}

// diagnose says why pods do not become ready: crash loops, or hanging in
// Init (a native sidecar on a kubelet older than 1.29).
func (r *Runner) diagnose(ctx context.Context, w inventory.Workload, wl *workload) string {
	pods, err := r.podsOf(ctx, w, wl)
	if err != nil {
		return ""
	}
	var notes []string
	for _, p := range pods {
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			if cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" {
				notes = append(notes, fmt.Sprintf("pod %s: container %s is crash-looping", p.Name, cs.Name))
			}
		}
		if p.Status.Phase == corev1.PodPending && p.Spec.NodeName != "" && inventory.ModeOf(&p.Spec) == inventory.Native {
			notes = append(notes, fmt.Sprintf("pod %s is stuck in Init on node %s (a native sidecar on a kubelet older than 1.29 never starts: kubectl get node %s)", p.Name, p.Spec.NodeName, p.Spec.NodeName))
		}
		if len(notes) >= 3 {
			break
		}
	}
	if len(notes) == 0 {
		return ""
	}
	return "; " + strings.Join(notes, "; ")
}
