// Package runner plays kubelet for istiod on the test bed: for every istiod
// Deployment it runs a local pilot-discovery process built from the pod
// template, and reports each process's health as the readiness of the pods
// of its template, so the Deployment is available only while istiod is.
// A template change rolls as a Deployment with surge does: the new process
// starts beside the old one (on other ports), the revision's webhooks are
// pointed at it once it is ready, and the old one stops only when its pods
// are gone, so injection never has a gap.
package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/kubectl/pkg/util/podutils"

	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
)

// handoverGrace is how long an old process keeps serving after the
// webhooks were pointed away from it, for the API server to see the change.
const handoverGrace = 2 * time.Second

// Runner supervises the pilot-discovery processes of istiod Deployments.
type Runner struct {
	Client kubernetes.Interface
	// Kubeconfig is the file istiod uses to reach the API server.
	Kubeconfig string
	// PilotDiscovery is the path of the pilot-discovery binary.
	PilotDiscovery string
	// WorkDir holds one working directory per process and one log per
	// Deployment.
	WorkDir string
	// Namespace holds the istiod Deployments (default aks-istio-system;
	// istio-system on the upstream layout).
	Namespace string

	mu   sync.Mutex
	deps map[string]*running // by Deployment name
	kick chan struct{}
}

// running is what runs for one Deployment.
type running struct {
	// procs are its processes, oldest first; during a roll the last one is
	// the current template's.
	procs []*process
	// webhookPort is the HTTPS port the revision's webhooks were last
	// pointed at, and pointedAt when.
	webhookPort int
	pointedAt   time.Time
}

type process struct {
	key     string // the pod template it runs (templateKey)
	cmd     *exec.Cmd
	exited  chan struct{}
	healthy bool
	// lastReady is when its readiness endpoint last answered OK.
	lastReady time.Time
	ports     mesh.Ports
	started   time.Time
	// restarts counts unexpected exits, for backoff.
	restarts int
}

// Run supervises until ctx ends, then stops every process it started.
func (r *Runner) Run(ctx context.Context) error {
	r.deps = map[string]*running{}
	r.kick = make(chan struct{}, 1)
	factory := informers.NewSharedInformerFactoryWithOptions(r.Client, 0,
		informers.WithNamespace(r.namespace()),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = istiod.Label }))
	deps := factory.Apps().V1().Deployments()
	pods := factory.Core().V1().Pods()
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.wake() },
		UpdateFunc: func(_, _ any) { r.wake() },
		DeleteFunc: func(any) { r.wake() },
	}
	if _, err := deps.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	if _, err := pods.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	defer r.stopAll()

	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		list, err := deps.Lister().Deployments(r.namespace()).List(labels.Everything())
		if err == nil {
			r.reconcile(ctx, list, pods.Lister().Pods(r.namespace()).List)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-tick.C:
		}
	}
}

// namespace is where the istiods run: Namespace, else the add-on's.
func (r *Runner) namespace() string {
	if r.Namespace != "" {
		return r.Namespace
	}
	return mesh.Namespace
}

func (r *Runner) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

type podLister func(labels.Selector) ([]*corev1.Pod, error)

func (r *Runner) reconcile(ctx context.Context, deps []*appsv1.Deployment, listPods podLister) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, d := range deps {
		seen[d.Name] = true
		if d.DeletionTimestamp != nil {
			continue
		}
		ports, err := mesh.ParsePorts(d.Annotations[mesh.PortsAnnotation])
		if err != nil {
			klog.ErrorS(err, "istiod deployment has no local ports; reinstall the revision with `meshaddon local up`", "deployment", d.Name)
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			continue
		}
		pods, err := listPods(sel)
		if err != nil {
			continue
		}
		st := r.deps[d.Name]
		if st == nil {
			st = &running{}
			r.deps[d.Name] = st
		}
		r.roll(ctx, d, st, ports, pods)
	}
	for name, st := range r.deps {
		if !seen[name] {
			klog.InfoS("istiod deployment deleted; stopping its processes", "deployment", name)
			for _, p := range st.procs {
				stop(p)
			}
			delete(r.deps, name)
		}
	}
}

// roll converges one Deployment's processes, as a kubelet and a rolling
// update with surge would: the current template's process runs (restarted
// with backoff when it exits); each pod is ready while the process of its
// own template is healthy; the revision's webhooks move to the current
// process once it is ready; and an older process stops only when none of
// its pods is left and the current one has taken over.
func (r *Runner) roll(ctx context.Context, d *appsv1.Deployment, st *running, annotated mesh.Ports, pods []*corev1.Pod) {
	want := r.templateKey(d, d.Spec.Template.Spec)
	cur := st.newest(want)
	if cur == nil || isClosed(cur.exited) {
		cur = r.startCurrent(d, st, want, cur, annotated)
	}
	for _, p := range st.procs {
		p.probe()
	}
	if cur.healthy && st.webhookPort != cur.ports.HTTPS {
		r.handOver(ctx, d, st, cur, annotated)
	}

	needed := map[string]bool{want: true}
	for _, pod := range pods {
		if pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
			continue
		}
		key := r.templateKey(d, pod.Spec)
		needed[key] = true
		p := st.newest(key)
		ready := p != nil && p.healthy
		if podutils.IsPodReady(pod) == ready && pod.Status.Phase == corev1.PodRunning {
			continue
		}
		if err := setPodStatus(ctx, r.Client, pod, ready); err != nil {
			klog.ErrorS(err, "update istiod pod status", "pod", pod.Name)
		}
	}

	if !cur.healthy || st.webhookPort != cur.ports.HTTPS || time.Since(st.pointedAt) < handoverGrace {
		return
	}
	kept := st.procs[:0]
	for _, p := range st.procs {
		if p != cur && !needed[p.key] {
			klog.InfoS("no pod of an older istiod template is left; stopping its process", "deployment", d.Name, "httpsPort", p.ports.HTTPS)
			stop(p)
			continue
		}
		kept = append(kept, p)
	}
	st.procs = kept
}

// newest is the newest process for the template key, or nil.
func (st *running) newest(key string) *process {
	for i := len(st.procs) - 1; i >= 0; i-- {
		if st.procs[i].key == key {
			return st.procs[i]
		}
	}
	return nil
}

// startCurrent starts the process of the Deployment's current template,
// replacing dead, its exited one (after a backoff), if any. It listens on
// the annotated ports unless an older process still holds them: then on
// free ones, and the webhooks follow it once it is ready.
func (r *Runner) startCurrent(d *appsv1.Deployment, st *running, key string, dead *process, annotated mesh.Ports) *process {
	restarts := 0
	if dead != nil {
		restarts = dead.restarts + 1
		backoff := time.Duration(min(restarts, 30)) * time.Second
		if time.Since(dead.started) < backoff {
			return dead // wait before restarting a crashing process
		}
		klog.InfoS("istiod exited; restarting", "deployment", d.Name, "restarts", restarts)
		st.procs = slices.DeleteFunc(st.procs, func(p *process) bool { return p == dead })
	} else if len(st.procs) > 0 {
		klog.InfoS("istiod pod template changed; starting the new istiod beside the old one", "deployment", d.Name)
	}
	ports := annotated
	if slices.ContainsFunc(st.procs, func(p *process) bool { return p.ports == annotated && !isClosed(p.exited) }) {
		free, err := mesh.FreePorts()
		if err != nil {
			klog.ErrorS(err, "find ports for the new istiod", "deployment", d.Name)
			return r.failed(st, key, restarts)
		}
		ports = free
	}
	p, err := r.start(d, ports)
	if err != nil {
		klog.ErrorS(err, "start istiod", "deployment", d.Name)
		return r.failed(st, key, restarts)
	}
	p.key, p.restarts = key, restarts
	st.procs = append(st.procs, p)
	return p
}

// failed records a process that could not start, so it is retried with
// backoff like one that exited.
func (r *Runner) failed(st *running, key string, restarts int) *process {
	p := &process{key: key, exited: closedChan(), started: time.Now(), restarts: restarts}
	st.procs = append(st.procs, p)
	return p
}

// handOver points the revision's webhooks at cur, a ready process, and
// records its ports on the Deployment (where `local status` and a
// restarted runner read them).
func (r *Runner) handOver(ctx context.Context, d *appsv1.Deployment, st *running, cur *process, annotated mesh.Ports) {
	rev := d.Labels[mesh.RevisionLabel]
	if err := mesh.PointWebhooks(ctx, r.Client, rev, cur.ports.HTTPS); err != nil {
		klog.ErrorS(err, "point the webhooks at the new istiod", "deployment", d.Name)
		return
	}
	if cur.ports != annotated {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{mesh.PortsAnnotation: cur.ports.String()}}})
		if _, err := r.Client.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			klog.ErrorS(err, "record the new istiod's ports", "deployment", d.Name)
		}
	}
	if st.webhookPort != 0 {
		klog.InfoS("the webhooks call the new istiod", "deployment", d.Name, "httpsPort", cur.ports.HTTPS)
	}
	st.webhookPort, st.pointedAt = cur.ports.HTTPS, time.Now()
}

// templateKey identifies what a pod template runs: the command line and
// environment built from it, before the ports and name of one process.
func (r *Runner) templateKey(d *appsv1.Deployment, spec corev1.PodSpec) string {
	args, env := r.command(d, spec, mesh.Ports{}, "")
	return hash(args, env)
}

// command is the pilot-discovery command line and environment for a pod
// of d with spec, the way a kubelet would build it, with the listen
// addresses moved to the process's loopback ports and podName as the pod's
// name (each process has its own, for leader election).
func (r *Runner) command(d *appsv1.Deployment, spec corev1.PodSpec, ports mesh.Ports, podName string) ([]string, []string) {
	var c corev1.Container
	for _, x := range spec.Containers {
		if x.Name == istiod.Container {
			c = x
		}
	}
	args := append([]string{}, c.Args...)
	if len(args) == 0 || args[0] != "discovery" {
		args = append([]string{"discovery"}, args...)
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	args = append(args,
		"--kubeconfig", r.Kubeconfig,
		"--httpsAddr", addr(ports.HTTPS),
		"--grpcAddr", addr(ports.GRPC),
		"--secureGRPCAddr", addr(ports.SecureGRPC),
		"--httpAddr", addr(ports.HTTP),
		"--monitoringAddr", addr(ports.Monitoring),
		"--ctrlz_address", "127.0.0.1",
		"--ctrlz_port", strconv.Itoa(ports.Ctrlz),
	)
	rev := d.Labels[mesh.RevisionLabel]
	sa := spec.ServiceAccountName
	env := []string{}
	for _, e := range c.Env {
		switch {
		case e.Name == "KUBECONFIG": // an in-pod path; the flag above replaces it
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env = append(env, e.Name+"="+podName)
			case "metadata.namespace":
				env = append(env, e.Name+"="+d.Namespace)
			case "spec.serviceAccountName":
				env = append(env, e.Name+"="+sa)
			}
		}
	}
	env = append(env,
		"POD_NAMESPACE="+d.Namespace,
		"POD_NAME="+podName,
		"SERVICE_ACCOUNT="+sa,
		"REVISION="+rev,
		"PILOT_CERT_PROVIDER=istiod",
		"CLUSTER_ID=Kubernetes",
		"PILOT_ENABLE_ANALYSIS=false",
		"ISTIOD_CUSTOM_HOST=127.0.0.1",
	)
	return args, env
}

func hash(args, env []string) string {
	sorted := append([]string{}, env...)
	sort.Strings(sorted)
	data, _ := json.Marshal([][]string{args, sorted})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// start runs pilot-discovery for d's current template on ports, in a
// working directory of its own (istiod writes its serving certificate
// there; two processes of a roll must not share it).
func (r *Runner) start(d *appsv1.Deployment, ports mesh.Ports) (*process, error) {
	podName := d.Name + "-local-" + strconv.Itoa(ports.HTTPS)
	args, env := r.command(d, d.Spec.Template.Spec, ports, podName)
	dir := filepath.Join(r.WorkDir, d.Name, strconv.Itoa(ports.HTTPS))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(r.WorkDir, d.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(r.PilotDiscovery, args...)
	cmd.Dir = dir
	// Only what the pod template says, plus PATH and HOME: no KUBECONFIG.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	cmd.Stdout, cmd.Stderr = log, log
	// Dies with the runner even if the runner is killed with SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("start pilot-discovery: %w", err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), started: time.Now(), ports: ports}
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(p.exited)
	}()
	klog.InfoS("started istiod", "deployment", d.Name, "pid", cmd.Process.Pid, "httpsPort", ports.HTTPS)
	return p, nil
}

func stop(p *process) {
	if p.cmd == nil || isClosed(p.exited) {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (r *Runner) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.deps {
		for _, p := range st.procs {
			stop(p)
		}
	}
}

// readinessTolerance is how long a running process may fail its readiness
// probe before its pods are not ready, as a pod's readinessProbe's
// failureThreshold (3) × periodSeconds (1): one slow answer on a busy
// machine does not take the revision's only istiod out of service.
const readinessTolerance = 3 * time.Second

// probe updates the process's health: a process that exited is not
// healthy at once; a running one is healthy once it answered ready, until
// it has failed to for readinessTolerance.
func (p *process) probe() {
	switch {
	case isClosed(p.exited):
		p.healthy = false
	case ready(p.ports.HTTP):
		p.healthy, p.lastReady = true, time.Now()
	case time.Since(p.lastReady) > readinessTolerance:
		p.healthy = false
	}
}

var probe = &http.Client{Timeout: time.Second}

// ready asks istiod's readiness endpoint, as the pod's readiness probe does.
func ready(port int) bool {
	resp, err := probe.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", port))
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func setPodStatus(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, ready bool) error {
	now := metav1.Now()
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	started := metav1.NewTime(pod.CreationTimestamp.Time)
	var containers []corev1.ContainerStatus
	for _, ct := range pod.Spec.Containers {
		containers = append(containers, corev1.ContainerStatus{
			Name: ct.Name, Image: ct.Image, Ready: ready, Started: &ready,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		})
	}
	patch := map[string]any{"status": map[string]any{
		"phase":  corev1.PodRunning,
		"hostIP": "127.0.0.1",
		"podIP":  "127.0.0.1",
		"conditions": []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: started},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: started},
			{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
		},
		"containerStatuses": containers,
		"startTime":         started,
	}}
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	_, err = c.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{}, "status")
	return err
}
