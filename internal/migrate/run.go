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
}

// Event reports progress: a workload started or finished.
type Event struct {
	Started bool
	Result  Result
}

// Runner restarts a plan's workloads.
type Runner struct {
	Kube kubernetes.Interface
	// Concurrency is how many workloads restart at once.
	Concurrency int
	// Timeout ends a workload whose rollout makes no progress for this long.
	Timeout time.Duration
	// OnEvent, if set, is called from the workers as workloads start and end.
	OnEvent func(Event)
}

// Run restarts every restart item, Concurrency at a time, and returns one
// result per plan item in plan order. After a failure it starts nothing new
// and lets the running restarts finish.
func (r *Runner) Run(ctx context.Context, p *Plan) []Result {
	results := make([]Result, len(p.Items))
	var failed atomic.Bool
	sem := make(chan struct{}, max(1, r.Concurrency))
	var wg sync.WaitGroup
	var mu sync.Mutex
	emit := func(e Event) {
		if r.OnEvent != nil {
			mu.Lock()
			r.OnEvent(e)
			mu.Unlock()
		}
	}
	for i, it := range p.Items {
		switch it.Action {
		case ActionRefuse:
			results[i] = Result{Workload: it.Workload, Outcome: Refused, Message: it.Advice}
			continue
		case ActionReport:
			results[i] = Result{Workload: it.Workload, Outcome: Reported, Message: it.Advice}
			continue
		}
		sem <- struct{}{}
		if failed.Load() || ctx.Err() != nil {
			<-sem
			results[i] = Result{Workload: it.Workload, Outcome: NotStarted}
			continue
		}
		wg.Add(1)
		go func(i int, w inventory.Workload) {
			defer wg.Done()
			defer func() { <-sem }()
			emit(Event{Started: true, Result: Result{Workload: w}})
			start := time.Now()
			res := r.migrate(ctx, w)
			res.Duration = time.Since(start).Round(10 * time.Millisecond)
			if res.Outcome == Failed {
				failed.Store(true)
			}
			results[i] = res
			emit(Event{Result: res})
		}(i, it.Workload)
	}
	wg.Wait()
	return results
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
	} else if generation, err = r.restart(ctx, w); err != nil {
		return fail("restart %s: %v", w, err)
	}
	if msg, err := r.waitRollout(ctx, wl, generation); err != nil {
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
func (r *Runner) waitRollout(ctx context.Context, wl *workload, generation int64) (string, error) {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	denied := func(err error) {
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			cancel(err)
		}
	}
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := wl.lw.ListWithContext(ctx, o)
			denied(err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := wl.lw.WatchWithContext(ctx, o)
			denied(err)
			return w, err
		},
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
	switch cause := context.Cause(wctx); {
	case err == nil:
		return "", nil
	case cause != nil && cause != context.Canceled && ctx.Err() == nil:
		return "", fmt.Errorf("watch its rollout: %w", cause)
	case stalled.Load():
		return "", fmt.Errorf("no progress for %s: %s", r.Timeout, strings.TrimSpace(last))
	}
	return "", err
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
