// Package runner plays kubelet for istiod on the test bed: for every istiod
// Deployment it runs a local pilot-discovery process built from the
// Deployment's pod template, restarts it whenever that template changes (as a
// rollout would), and reports the process's health as the readiness of the
// Deployment's pods, so the Deployment is available only while istiod is.
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
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
)

// ContainerName is the istiod container in the rendered Deployment.
const ContainerName = "discovery"

// Runner supervises one pilot-discovery process per istiod Deployment.
type Runner struct {
	Client kubernetes.Interface
	// Kubeconfig is the file istiod uses to reach the API server.
	Kubeconfig string
	// PilotDiscovery is the path of the pilot-discovery binary.
	PilotDiscovery string
	// WorkDir holds one empty working directory and log per revision.
	WorkDir string

	mu    sync.Mutex
	procs map[string]*process // by Deployment name
	kick  chan struct{}
}

type process struct {
	key     string
	cmd     *exec.Cmd
	exited  chan struct{}
	healthy bool
	ports   mesh.Ports
	started time.Time
	// restarts counts unexpected exits, for backoff.
	restarts int
}

// Run supervises until ctx ends, then stops every process it started.
func (r *Runner) Run(ctx context.Context) error {
	r.procs = map[string]*process{}
	r.kick = make(chan struct{}, 1)
	factory := informers.NewSharedInformerFactoryWithOptions(r.Client, 0,
		informers.WithNamespace(mesh.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "app=istiod" }))
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
		list, err := deps.Lister().Deployments(mesh.Namespace).List(labels.Everything())
		if err == nil {
			r.reconcile(ctx, list, pods.Lister().Pods(mesh.Namespace).List)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-tick.C:
		}
	}
}

func (r *Runner) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

type podLister func(labels.Selector) ([]*corev1.Pod, error)

func (r *Runner) reconcile(ctx context.Context, deps []*appsv1.Deployment, listPods podLister) {
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
		p := r.ensure(d, ports)
		r.updatePods(ctx, d, p, listPods)
	}
	r.mu.Lock()
	for name, p := range r.procs {
		if !seen[name] {
			klog.InfoS("istiod deployment deleted; stopping its process", "deployment", name)
			stop(p)
			delete(r.procs, name)
		}
	}
	r.mu.Unlock()
}

// ensure starts or restarts the process for d's current pod template and
// refreshes its health.
func (r *Runner) ensure(d *appsv1.Deployment, ports mesh.Ports) *process {
	args, env := r.command(d, ports)
	key := hash(args, env)
	r.mu.Lock()
	p := r.procs[d.Name]
	r.mu.Unlock()
	exited := p != nil && isClosed(p.exited)
	if p == nil || p.key != key || exited {
		restarts := 0
		if p != nil {
			if p.key == key && exited {
				restarts = p.restarts + 1
				backoff := time.Duration(min(restarts, 30)) * time.Second
				if time.Since(p.started) < backoff {
					return p // wait before restarting a crashing process
				}
				klog.InfoS("istiod exited; restarting", "deployment", d.Name, "restarts", restarts)
			} else {
				klog.InfoS("istiod pod template changed; restarting", "deployment", d.Name)
			}
			stop(p)
		}
		np, err := r.start(d.Name, args, env)
		if err != nil {
			klog.ErrorS(err, "start istiod", "deployment", d.Name)
			np = &process{key: key, exited: closedChan(), started: time.Now()}
		}
		np.key, np.ports, np.restarts = key, ports, restarts
		r.mu.Lock()
		r.procs[d.Name] = np
		r.mu.Unlock()
		p = np
	}
	p.healthy = !isClosed(p.exited) && ready(ports.HTTP)
	return p
}

// command is the pilot-discovery command line and environment for d, the
// way a kubelet would build it from the pod template, with the listen
// addresses moved to the revision's loopback ports.
func (r *Runner) command(d *appsv1.Deployment, ports mesh.Ports) ([]string, []string) {
	spec := d.Spec.Template.Spec
	var c corev1.Container
	for _, x := range spec.Containers {
		if x.Name == ContainerName {
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
				env = append(env, e.Name+"="+d.Name+"-local")
			case "metadata.namespace":
				env = append(env, e.Name+"="+d.Namespace)
			case "spec.serviceAccountName":
				env = append(env, e.Name+"="+sa)
			}
		}
	}
	env = append(env,
		"POD_NAMESPACE="+d.Namespace,
		"POD_NAME="+d.Name+"-local",
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

func (r *Runner) start(name string, args, env []string) (*process, error) {
	dir := filepath.Join(r.WorkDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(r.WorkDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
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
	p := &process{cmd: cmd, exited: make(chan struct{}), started: time.Now()}
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(p.exited)
	}()
	klog.InfoS("started istiod", "deployment", name, "pid", cmd.Process.Pid)
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
	for _, p := range r.procs {
		stop(p)
	}
}

var probe = &http.Client{Timeout: 500 * time.Millisecond}

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

// updatePods reports the process's health as the readiness of the
// Deployment's pods of the current template; pods of an older template are
// no longer served by any process and so are not ready.
func (r *Runner) updatePods(ctx context.Context, d *appsv1.Deployment, p *process, listPods podLister) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return
	}
	pods, err := listPods(sel)
	if err != nil {
		return
	}
	for _, pod := range pods {
		if pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
			continue
		}
		want := p.healthy && currentTemplate(d, pod)
		if podReady(pod) == want && pod.Status.Phase == corev1.PodRunning {
			continue
		}
		if err := setPodStatus(ctx, r.Client, pod, want); err != nil {
			klog.ErrorS(err, "update istiod pod status", "pod", pod.Name)
		}
	}
}

func currentTemplate(d *appsv1.Deployment, pod *corev1.Pod) bool {
	var want, got []corev1.EnvVar
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == ContainerName {
			want = c.Env
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == ContainerName {
			got = c.Env
		}
	}
	return apiequality.Semantic.DeepEqual(want, got)
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
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
