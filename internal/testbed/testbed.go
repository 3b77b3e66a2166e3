package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	kwokv1alpha1 "sigs.k8s.io/kwok/pkg/apis/v1alpha1"

	"github.com/meshaddon/meshaddon/internal/istiod"
	kubeclients "github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testbed/cache"
	"github.com/meshaddon/meshaddon/internal/testbed/cluster"
	"github.com/meshaddon/meshaddon/internal/testbed/hazard"
	"github.com/meshaddon/meshaddon/internal/testbed/mesh"
	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
	"github.com/meshaddon/meshaddon/internal/testbed/proc"
	"github.com/meshaddon/meshaddon/internal/testbed/stage"
)

// RunnerDaemon is the name of the istiod runner's pid and log files.
const RunnerDaemon = "runner"

// Testbed is one local cluster with its binaries.
type Testbed struct {
	Cluster *cluster.Cluster
	Cache   *cache.Cache
	// Out receives progress lines meant for the user.
	Out io.Writer
	// Self is the meshaddon executable, started again as the runner daemon.
	Self string
}

// Open returns the test bed called name.
func Open(name string, out io.Writer) (*Testbed, error) {
	c, err := cluster.Open(name)
	if err != nil {
		return nil, err
	}
	ch, err := cache.New(out)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the meshaddon executable: %w", err)
	}
	return &Testbed{Cluster: c, Cache: ch, Out: out, Self: self}, nil
}

func (t *Testbed) printf(format string, args ...any) {
	if t.Out != nil {
		fmt.Fprintf(t.Out, format+"\n", args...)
	}
}

// Binaries builds (once) and returns the test bed's binaries.
func (t *Testbed) Binaries(ctx context.Context) (cache.Binaries, error) {
	return t.Cache.Ensure(ctx)
}

// Up creates the cluster or converges a running one to spec, and returns
// what it changed. A running cluster created with other settings is an
// error: nothing is changed.
func (t *Testbed) Up(ctx context.Context, spec Spec) ([]string, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	// Every file written from here on, by kwokctl, the control plane, the
	// daemons and the istiods they start (all inherit the mask), is its
	// owner's only: among them are the cluster's CA and admin keys and
	// istiod's serving key.
	syscall.Umask(0o077)
	if t.Cluster.Exists() {
		var old Spec
		if err := t.Cluster.LoadSpec(&old); err != nil {
			return nil, err
		}
		spec.ARM = spec.ARM || old.ARM
		if diff := old.Diff(spec); len(diff) > 0 {
			return nil, fmt.Errorf("cluster %q is already up with other settings (%s); change it with `meshaddon local nodepool …`, or run `meshaddon local down --name %s` first",
				t.Cluster.Name, strings.Join(diff, "; "), t.Cluster.Name)
		}
	}
	bins, err := t.Binaries(ctx)
	if err != nil {
		return nil, err
	}
	var changes []string
	start := time.Now()
	t.Cluster.Audit = spec.Audit
	started, err := t.Cluster.Start(ctx, bins, spec.APIServerPort)
	if err != nil {
		return nil, fmt.Errorf("start the control plane: %w (logs: %s)", err, t.Cluster.LogDir())
	}
	if started {
		changes = append(changes, fmt.Sprintf("started the control plane in %s", time.Since(start).Round(100*time.Millisecond)))
	}
	if err := t.Cluster.SaveSpec(spec); err != nil {
		return changes, err
	}
	clients, err := t.clients()
	if err != nil {
		return changes, err
	}
	if err := t.ApplyStages(ctx); err != nil {
		return changes, err
	}
	pools := t.pools(clients.kube)
	for _, p := range spec.Pools {
		created, err := pools.Ensure(ctx, p)
		if err != nil {
			return changes, err
		}
		if len(created) > 0 {
			changes = append(changes, fmt.Sprintf("created %d nodes in pool %s (%s)", len(created), p.Name, p.Version))
		}
	}
	installed, err := t.InstallRevisions(ctx, bins, spec.Revisions, spec.NativeSidecars)
	changes = append(changes, installed...)
	if err != nil {
		return changes, err
	}
	ranRunner, err := t.runner().Start()
	if err != nil {
		return changes, err
	}
	if ranRunner {
		changes = append(changes, "started the istiod runner")
	}
	addon, err := t.startAddon(ctx, clients.ctrl, spec)
	changes = append(changes, addon...)
	if err != nil {
		return changes, fmt.Errorf("%w (manager log: %s)", err, t.manager().LogFile)
	}
	for _, rev := range spec.Revisions {
		if err := WaitInjection(ctx, clients.kube, rev, 2*time.Minute); err != nil {
			return changes, fmt.Errorf("%w (istiod log: %s)", err, filepath.Join(t.Cluster.Dir, "istiod"))
		}
		if err := waitAvailable(ctx, clients.kube, spec.MeshNamespace(), mesh.IstiodName(rev), time.Minute); err != nil {
			return changes, err
		}
	}
	if spec.ARM {
		arm, err := t.startARM(ctx)
		changes = append(changes, arm...)
		if err != nil {
			return changes, err
		}
	}
	return changes, nil
}

// waitAvailable waits until the Deployment has an available replica.
func waitAvailable(ctx context.Context, kube kubernetes.Interface, namespace, name string, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		d, err := kube.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas > 0, nil
	})
	if err != nil {
		return fmt.Errorf("deployment %s/%s is not available after %s", namespace, name, timeout)
	}
	return nil
}

type clients struct {
	kube kubernetes.Interface
	ctrl client.Client
	dyn  dynamic.Interface
}

func (t *Testbed) clients() (*clients, error) {
	cfg, err := t.Cluster.RESTConfig()
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctrl, err := client.New(cfg, client.Options{Scheme: kubeclients.Scheme})
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &clients{kube: kube, ctrl: ctrl, dyn: dyn}, nil
}

// Pools returns the node pool manager of the cluster; its changes keep the
// kwok Stages in step with the nodes' versions.
func (t *Testbed) Pools() (*nodepool.Manager, error) {
	cl, err := t.clients()
	if err != nil {
		return nil, err
	}
	return t.pools(cl.kube), nil
}

func (t *Testbed) pools(kube kubernetes.Interface) *nodepool.Manager {
	return &nodepool.Manager{Client: kube, Out: t.Out, AfterChange: t.ApplyStages}
}

var stageGVR = kwokv1alpha1.GroupVersion.WithResource("stages")

// ApplyStages writes the kwok Stages for the cluster's spec and its nodes'
// current kubelet versions.
func (t *Testbed) ApplyStages(ctx context.Context) error {
	var spec Spec
	if err := t.Cluster.LoadSpec(&spec); err != nil {
		return err
	}
	cl, err := t.clients()
	if err != nil {
		return err
	}
	nodes, err := t.pools(cl.kube).Nodes(ctx, "")
	if err != nil {
		return err
	}
	stages, err := stage.Build(stage.Options{
		PodStartDelay: spec.PodStartDelay.Duration,
		OldNodes:      nodepool.OldNodes(nodes),
		RunnerPods:    []string{spec.MeshNamespace() + "/istiod"},
	})
	if err != nil {
		return err
	}
	for _, s := range stages {
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{Object: obj}
		_, err = cl.dyn.Resource(stageGVR).Apply(ctx, s.Name, u, metav1.ApplyOptions{FieldManager: "meshaddon-testbed", Force: true})
		if err != nil {
			return fmt.Errorf("apply kwok stage %s: %w", s.Name, err)
		}
	}
	return nil
}

// InstallRevisions installs each revision that is not installed yet.
func (t *Testbed) InstallRevisions(ctx context.Context, bins cache.Binaries, revisions []string, nativeSidecars string) ([]string, error) {
	cl, err := t.clients()
	if err != nil {
		return nil, err
	}
	var spec Spec
	if err := t.Cluster.LoadSpec(&spec); err != nil {
		return nil, err
	}
	namespace := spec.MeshNamespace()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := cl.ctrl.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	var changes []string
	for _, rev := range revisions {
		ports, err := t.revisionPorts(ctx, cl.kube, namespace, rev)
		if err != nil {
			return changes, err
		}
		objs, err := mesh.Render(ctx, bins.Path("istioctl"), rev, mesh.Layout{Upstream: spec.Upstream(), Namespace: namespace, Tags: spec.TagsOf(rev)})
		if err != nil {
			return changes, err
		}
		if err := mesh.Adjust(objs, ports, nativeSidecars); err != nil {
			return changes, err
		}
		created, err := mesh.Install(ctx, cl.ctrl, objs, namespace)
		if err != nil {
			return changes, fmt.Errorf("install %s: %w", rev, err)
		}
		if len(created) > 0 {
			changes = append(changes, fmt.Sprintf("installed mesh revision %s (%d objects)", rev, len(created)))
		}
	}
	return changes, nil
}

// revisionPorts keeps an installed revision's ports, or picks free ones.
func (t *Testbed) revisionPorts(ctx context.Context, kube kubernetes.Interface, namespace, rev string) (mesh.Ports, error) {
	d, err := kube.AppsV1().Deployments(namespace).Get(ctx, mesh.IstiodName(rev), metav1.GetOptions{})
	if err == nil {
		return mesh.ParsePorts(d.Annotations[mesh.PortsAnnotation])
	}
	if !apierrors.IsNotFound(err) {
		return mesh.Ports{}, err
	}
	return mesh.FreePorts()
}

func (t *Testbed) runner() proc.Daemon {
	return proc.Daemon{
		PIDFile: t.Cluster.PIDFile(RunnerDaemon),
		LogFile: filepath.Join(t.Cluster.LogDir(), RunnerDaemon+".log"),
		Args:    []string{t.Self, "local", "runner", "--name", t.Cluster.Name},
	}
}

// WaitInjection waits until revision's injector mutates a pod: a server-side
// dry run of a pod labelled for the revision comes back with a sidecar.
func WaitInjection(ctx context.Context, kube kubernetes.Interface, revision string, timeout time.Duration) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "meshaddon-probe-", Namespace: "default", Labels: map[string]string{mesh.RevisionLabel: revision}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		got, err := kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			last = err
			return false, nil
		}
		if _, ok := got.Annotations["sidecar.istio.io/status"]; ok {
			return true, nil
		}
		last = errors.New("the pod came back without a sidecar")
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("istiod %s did not inject within %s: %v", revision, timeout, last)
	}
	return nil
}

// Down stops every process of the cluster and removes its files; it returns
// what it stopped.
func (t *Testbed) Down(ctx context.Context) ([]string, error) {
	var done []string
	if _, err := os.Stat(t.Cluster.Dir); err != nil {
		return nil, nil
	}
	for _, d := range []struct {
		name   string
		daemon proc.Daemon
	}{{"the local ARM endpoint", t.armDaemon()}, {"the add-on manager", t.manager()}, {"the istiod runner", t.runner()}, {"the hazard webhooks", hazard.ServerDaemon(t.Cluster, t.Self)}} {
		_, running := d.daemon.PID()
		if err := d.daemon.Stop(10 * time.Second); err != nil {
			return done, err
		}
		if running {
			done = append(done, "stopped "+d.name)
		}
	}
	bins, err := t.Cache.Ensure(ctx, cache.Kwok)
	if err != nil {
		return done, err
	}
	// The control plane's pids, read before kwokctl removes its pid files:
	// a process that is still exiting has an empty command line, so only
	// its pid tells that it is not gone yet.
	components := t.Cluster.Components()
	if err := t.Cluster.Delete(ctx, bins); err != nil {
		t.printf("warning: kwokctl delete failed, stopping its processes directly: %v", err)
	} else {
		done = append(done, "stopped the control plane")
	}
	// Whatever is left (a crash, a killed runner's children) still names the
	// cluster's directory on its command line: give it a moment to exit on
	// its own, then end it.
	var left []proc.Process
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		left = proc.Find(t.Cluster.Dir)
		for name, pid := range components {
			if proc.Alive(pid) {
				left = append(left, proc.Process{PID: pid, Command: name})
			}
		}
		return len(left) == 0, nil
	})
	if len(left) > 0 {
		if err := proc.KillAll(left); err != nil {
			return done, err
		}
		done = append(done, fmt.Sprintf("killed %d leftover processes", len(left)))
	}
	if err := os.RemoveAll(t.Cluster.Dir); err != nil {
		return done, fmt.Errorf("remove %s: %w", t.Cluster.Dir, err)
	}
	return done, nil
}

// Status is what `local status` shows.
type Status struct {
	Name       string            `json:"name"`
	Kubeconfig string            `json:"kubeconfig"`
	Healthy    bool              `json:"healthy"`
	Components []ComponentStatus `json:"components"`
	Pools      []nodepool.Pool   `json:"pools"`
	Revisions  []RevisionStatus  `json:"revisions"`
	Spec       *Spec             `json:"spec,omitempty"`
	// ARMEndpoint is the local ARM endpoint's URL, when it runs.
	ARMEndpoint string `json:"armEndpoint,omitempty"`
}

// ComponentStatus is one process of the test bed.
type ComponentStatus struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Running bool   `json:"running"`
}

// RevisionStatus is one installed mesh revision.
type RevisionStatus struct {
	Revision       string `json:"revision"`
	Ports          string `json:"ports"`
	Available      bool   `json:"available"`
	NativeSidecars string `json:"nativeSidecars"`
}

// Status reads the cluster's state; a stopped cluster is not an error.
func (t *Testbed) Status(ctx context.Context) (*Status, error) {
	var spec Spec
	if err := t.Cluster.LoadSpec(&spec); err != nil {
		return nil, err
	}
	st := &Status{Name: t.Cluster.Name, Kubeconfig: t.Cluster.KubeconfigPath(), Spec: &spec}
	comps := t.Cluster.Components()
	names := make([]string, 0, len(comps))
	for n := range comps {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		st.Components = append(st.Components, ComponentStatus{Name: n, PID: comps[n], Running: proc.Alive(comps[n])})
	}
	pid, ok := t.runner().PID()
	st.Components = append(st.Components, ComponentStatus{Name: "istiod-runner", PID: pid, Running: ok})
	if spec.Manager {
		pid, ok = t.manager().PID()
		st.Components = append(st.Components, ComponentStatus{Name: "addon-manager", PID: pid, Running: ok})
	}
	if spec.ARM {
		pid, ok = t.armDaemon().PID()
		st.Components = append(st.Components, ComponentStatus{Name: "arm-endpoint", PID: pid, Running: ok})
		if id, err := t.ARMIdentity(); err == nil {
			st.ARMEndpoint = id.Endpoint()
		}
	}
	st.Healthy = t.Cluster.Healthy(ctx)
	if !st.Healthy {
		return st, nil
	}
	cl, err := t.clients()
	if err != nil {
		return st, err
	}
	if st.Pools, err = t.pools(cl.kube).List(ctx); err != nil {
		return st, err
	}
	deps, err := cl.kube.AppsV1().Deployments(spec.MeshNamespace()).List(ctx, metav1.ListOptions{LabelSelector: istiod.Label})
	if err != nil {
		return st, err
	}
	for _, d := range deps.Items {
		st.Revisions = append(st.Revisions, RevisionStatus{
			Revision:       d.Labels[mesh.RevisionLabel],
			Ports:          d.Annotations[mesh.PortsAnnotation],
			Available:      d.Status.AvailableReplicas > 0,
			NativeSidecars: istiod.NativeSidecars(&d).String(),
		})
	}
	return st, nil
}
