package manager_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/manager"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/platform"
	"github.com/meshaddon/meshaddon/internal/testbed/proc"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// These tests run the manager against a real kube-apiserver and etcd
// (envtest, with the test bed's cached binaries): no nodes run anything, so
// Node objects are just the facts the manager reads.

const meshNS = "aks-istio-system"

var (
	// restCfg reaches the envtest API server.
	restCfg *rest.Config
	cl      client.Client
	kcs     kubernetes.Interface
	stop    context.CancelFunc
	// The guard's webhook server: address, certificate directory, and the
	// caBundle trusting its certificate.
	guardAddr, guardCertDir string
	guardCABundle           []byte
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("skipping envtest tests in -short mode")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithCancel(context.Background())
	stop = cancel
	cfg, stopEnv, err := testenv.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopEnv()
	restCfg = cfg
	clients, err := kube.ForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cl, kcs = clients.Client, clients.Kube
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: meshNS}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The placement guard's webhook server, on loopback as on the test bed;
	// its configuration is created by the guard's tests only.
	guardCertDir, err = os.MkdirTemp("", "meshaddon-guard-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(guardCertDir)
	if guardCABundle, err = manager.WriteLoopbackGuardCert(guardCertDir, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	guardAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	mgr, err := manager.New(cfg, manager.Options{
		Policy:              meshversion.DefaultPolicy,
		MeshNamespace:       meshNS,
		FeatureDelay:        time.Second,
		MetricsAddr:         "0",
		ProbeAddr:           "0",
		GuardWebhookAddr:    guardAddr,
		GuardWebhookCertDir: guardCertDir,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	<-done
	return code
}

// The tests share one API server, so each builds the world it needs and
// tears it down; they do not run in parallel.

func addNode(t *testing.T, name, pool, kubelet string, ready bool) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{meshversion.PoolLabel: pool}}}
	if err := cl.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Delete(context.Background(), n) })
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	setNodeStatus(t, name, func(n *corev1.Node) {
		n.Status.NodeInfo.KubeletVersion = kubelet
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: metav1.Now()}}
	})
}

// setNodeStatus edits a node's status, retrying when the manager's node
// labeler wrote the node in between.
func setNodeStatus(t *testing.T, name string, edit func(*corev1.Node)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var n corev1.Node
		if err := cl.Get(context.Background(), client.ObjectKey{Name: name}, &n); err != nil {
			return err
		}
		edit(&n)
		return cl.Status().Update(context.Background(), &n)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// otherIstiodEnv is istiod's env besides ENABLE_NATIVE_SIDECARS, which the
// manager must leave as it is.
var otherIstiodEnv = []corev1.EnvVar{{Name: "PILOT_TRACE_SAMPLING", Value: "1"}, {Name: "PILOT_ENABLE_STATUS", Value: "true"}}

func addIstiod(t *testing.T, rev, env string) {
	t.Helper()
	labels := map[string]string{"app": "istiod", "istio.io/rev": rev}
	c := corev1.Container{Name: "discovery", Image: "pilot", Env: slices.Clone(otherIstiodEnv)}
	if env != "unset" {
		c.Env = slices.Insert(c.Env, 1, corev1.EnvVar{Name: istiod.NativeSidecarsEnv, Value: env})
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: manager.IstiodDeployment(rev), Namespace: meshNS, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}},
		},
	}
	if err := cl.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Delete(context.Background(), d) })
}

func addProfile(t *testing.T, spec v1alpha1.MeshProfileSpec) {
	t.Helper()
	p := &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}, Spec: spec}
	if err := cl.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = cl.Delete(ctx, p)
		_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			return apierrors.IsNotFound(cl.Get(ctx, client.ObjectKeyFromObject(p), p)), nil
		})
		_ = kcs.CoreV1().Events("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	})
}

func patchProfile(t *testing.T, edit func(*v1alpha1.MeshProfile)) {
	t.Helper()
	var p v1alpha1.MeshProfile
	if err := cl.Get(context.Background(), client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(p.DeepCopy())
	edit(&p)
	if err := cl.Patch(context.Background(), &p, patch); err != nil {
		t.Fatal(err)
	}
}

func istiodEnv(t *testing.T, rev string) string {
	t.Helper()
	var d appsv1.Deployment
	if err := cl.Get(context.Background(), client.ObjectKey{Namespace: meshNS, Name: manager.IstiodDeployment(rev)}, &d); err != nil {
		t.Fatal(err)
	}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == istiod.NativeSidecarsEnv {
			return e.Value
		}
	}
	return "unset"
}

// eventually polls cond until it holds or within passes.
// metricValue reads a metric of the manager's registry (controller-runtime's),
// 0 when no series has those labels.
func metricValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, within, true, func(context.Context) (bool, error) {
		ok, got := cond()
		last = got
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s; last seen: %s", what, within, last)
	}
}

func waitEnv(t *testing.T, rev, want string, within time.Duration) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("istiod-%s %s=%s", rev, istiod.NativeSidecarsEnv, want), func() (bool, string) {
		got := istiodEnv(t, rev)
		return got == want, got
	})
}

func profile(t *testing.T) *v1alpha1.MeshProfile {
	t.Helper()
	var p v1alpha1.MeshProfile
	if err := cl.Get(context.Background(), client.ObjectKey{Name: v1alpha1.MeshProfileName}, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func waitCondition(t *testing.T, typ string, status metav1.ConditionStatus, msgHas string) *metav1.Condition {
	t.Helper()
	var found *metav1.Condition
	eventually(t, 5*time.Second, fmt.Sprintf("condition %s=%s mentioning %q", typ, status, msgHas), func() (bool, string) {
		found = meta.FindStatusCondition(profile(t).Status.Conditions, typ)
		if found == nil {
			return false, "absent"
		}
		return found.Status == status && strings.Contains(found.Message, msgHas), fmt.Sprintf("%s %s: %s", found.Status, found.Reason, found.Message)
	})
	return found
}

func waitEvent(t *testing.T, reason, msgHas string) {
	t.Helper()
	eventually(t, 5*time.Second, fmt.Sprintf("event %s mentioning %q", reason, msgHas), func() (bool, string) {
		evs, err := kcs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Reason == reason && strings.Contains(e.Message, msgHas) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, strings.Join(seen, " | ")
	})
}

func register(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	fr := &v1alpha1.FeatureRegistration{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.FeatureObjectName(meshversion.FeatureNativeSidecarPreview)}}
	if err := cl.Create(ctx, fr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Delete(context.Background(), fr) })
	eventually(t, 5*time.Second, "feature Registered", func() (bool, string) {
		_ = cl.Get(ctx, client.ObjectKeyFromObject(fr), fr)
		return fr.Status.State == v1alpha1.StateRegistered, fr.Status.State
	})
}

func refresh(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	fr := &v1alpha1.FeatureRegistration{}
	if err := cl.Get(ctx, client.ObjectKey{Name: v1alpha1.FeatureObjectName(meshversion.FeatureNativeSidecarPreview)}, fr); err != nil {
		t.Fatal(err)
	}
	token := time.Now().UTC().Format(time.RFC3339Nano)
	patch := client.MergeFrom(fr.DeepCopy())
	fr.Annotations = map[string]string{v1alpha1.RefreshRequestAnnotation: token}
	if err := cl.Patch(ctx, fr, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "refresh handled", func() (bool, string) {
		_ = cl.Get(ctx, client.ObjectKeyFromObject(fr), fr)
		return fr.Status.LastHandledRefreshAt == token, fr.Status.LastHandledRefreshAt
	})
}

func TestFeatureRegistrationLifecycle(t *testing.T) {
	ctx := context.Background()
	fr := &v1alpha1.FeatureRegistration{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.FeatureObjectName(meshversion.FeatureNativeSidecarPreview)}}
	created := time.Now()
	if err := cl.Create(ctx, fr); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Delete(ctx, fr) }()
	get := func() *v1alpha1.FeatureRegistration {
		_ = cl.Get(ctx, client.ObjectKeyFromObject(fr), fr)
		return fr
	}
	eventually(t, 2*time.Second, "Registering", func() (bool, string) { return get().Status.State == v1alpha1.StateRegistering, fr.Status.State })
	eventually(t, 5*time.Second, "Registered", func() (bool, string) { return get().Status.State == v1alpha1.StateRegistered, fr.Status.State })
	if took := time.Since(created); took < time.Second {
		t.Errorf("registered after %s, before the configured delay of 1s", took)
	}
	if fr.Status.AppliedState != "" {
		t.Errorf("applied state %q before any provider refresh", fr.Status.AppliedState)
	}
	refresh(t)
	if get().Status.AppliedState != v1alpha1.StateRegistered || fr.Status.RefreshTime == nil {
		t.Fatalf("after refresh: %+v", fr.Status)
	}
	patch := client.MergeFrom(fr.DeepCopy())
	fr.Spec.DesiredState = v1alpha1.StateNotRegistered
	if err := cl.Patch(ctx, fr, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "Unregistering", func() (bool, string) { return get().Status.State == v1alpha1.StateUnregistering, fr.Status.State })
	eventually(t, 5*time.Second, "NotRegistered", func() (bool, string) { return get().Status.State == v1alpha1.StateNotRegistered, fr.Status.State })
	if fr.Status.AppliedState != v1alpha1.StateRegistered {
		t.Errorf("applied state changed without a refresh: %q", fr.Status.AppliedState)
	}
}

// An existing cluster: classic until the feature is registered and the
// provider refreshed; then native, and an old node turns it back.
func TestExistingClusterFollowsFeatureAndNodes(t *testing.T) {
	addNode(t, "aks-system-vmss000000", "system", "v1.34.4", true)
	addNode(t, "aks-system-vmss000001", "system", "v1.34.4", true)
	addIstiod(t, "asm-1-27", "unset")
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}})

	waitEnv(t, "asm-1-27", "false", 5*time.Second)
	waitCondition(t, v1alpha1.ConditionFeatureRegistered, metav1.ConditionFalse, "meshaddon feature register")
	if p := profile(t); p.Status.CreatedQualifying == nil || *p.Status.CreatedQualifying {
		t.Errorf("createdQualifying = %v on an existing cluster", p.Status.CreatedQualifying)
	}

	register(t)
	// Registered but not refreshed: still classic.
	time.Sleep(300 * time.Millisecond)
	if got := istiodEnv(t, "asm-1-27"); got != "false" {
		t.Fatalf("istiod went %s before the provider refresh", got)
	}
	refresh(t)
	waitEnv(t, "asm-1-27", "true", 5*time.Second)
	waitCondition(t, v1alpha1.ConditionNativeSidecarsEnabled, metav1.ConditionTrue, "asm-1-27")
	waitEvent(t, "NativeSidecarsEnabled", "istiod-asm-1-27")
	// The untouched env of istiod is kept, in its order, beside the value
	// the manager added.
	var d appsv1.Deployment
	if err := cl.Get(context.Background(), client.ObjectKey{Namespace: meshNS, Name: "istiod-asm-1-27"}, &d); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(otherIstiodEnv), corev1.EnvVar{Name: istiod.NativeSidecarsEnv, Value: "true"})
	if got := d.Spec.Template.Spec.Containers[0].Env; !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("istiod's env after the manager's writes: %+v, want %+v", got, want)
	}

	// An old node joins: back to classic quickly, with a warning naming it.
	joined := time.Now()
	addNode(t, "aks-old-vmss000000", "old", "v1.28.9", true)
	waitEnv(t, "asm-1-27", "false", 2*time.Second)
	t.Logf("old node joined → istiod env flipped in %s", time.Since(joined).Round(time.Millisecond))
	waitEvent(t, "OldKubeletNodes", "aks-old-vmss000000")
	// config/monitoring's alert and dashboard count the switch and the node.
	if n := metricValue(t, "meshaddon_old_node_switches_total", map[string]string{"revision": "asm-1-27"}); n < 1 {
		t.Errorf("meshaddon_old_node_switches_total{revision=asm-1-27} = %v after the switch", n)
	}
	eventually(t, 5*time.Second, "meshaddon_old_nodes counts the old pool's node", func() (bool, string) {
		n := metricValue(t, "meshaddon_old_nodes", map[string]string{"pool": "old"})
		return n == 1, fmt.Sprintf("meshaddon_old_nodes{pool=old} = %v", n)
	})
	// The node is created before its status (as a kubelet registers), so
	// wait for the message that has its version.
	c := waitCondition(t, v1alpha1.ConditionVersionsCompatible, metav1.ConditionFalse, "pool old has 1 node(s) on kubelet v1.28.9")
	if !strings.Contains(c.Message, "aks-old-vmss000000") {
		t.Errorf("VersionsCompatible does not name the node and version: %s", c.Message)
	}
	p := profile(t)
	var old *v1alpha1.NodePoolStatus
	for i := range p.Status.NodePools {
		if p.Status.NodePools[i].Name == "old" {
			old = &p.Status.NodePools[i]
		}
	}
	if old == nil || old.Nodes != 1 || old.Ready != 1 || old.PowerState != "Running" || old.KubeletVersions[0] != "v1.28.9" {
		t.Errorf("pool status: %+v", p.Status.NodePools)
	}
}

// Enabled keeps native with an old node, but says it is degraded.
func TestEnabledWithOldNodeIsDegraded(t *testing.T) {
	addNode(t, "aks-system-vmss000000", "system", "v1.34.4", true)
	addNode(t, "aks-old-vmss000000", "old", "v1.28.9", true)
	addIstiod(t, "asm-1-27", "false")
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}, NativeSidecarMode: "Enabled"})
	waitEnv(t, "asm-1-27", "true", 5*time.Second)
	waitCondition(t, v1alpha1.ConditionDegraded, metav1.ConditionTrue, "hang in Init")
	waitEvent(t, "NativeSidecarsOnOldNodes", "aks-old-vmss000000")

	// Disabled: classic whatever the versions.
	patchProfile(t, func(p *v1alpha1.MeshProfile) { p.Spec.NativeSidecarMode = "Disabled" })
	waitEnv(t, "asm-1-27", "false", 5*time.Second)
	waitCondition(t, v1alpha1.ConditionDegraded, metav1.ConditionFalse, "")
	waitCondition(t, v1alpha1.ConditionNativeSidecarsEnabled, metav1.ConditionFalse, "Disabled")
}

// A new cluster that qualifies gets native sidecars with no feature flag;
// the manager puts a hand-edited value back.
func TestNewClusterWithOldRevisionDoesNotQualify(t *testing.T) {
	addNode(t, "aks-system-vmss000000", "system", "v1.34.4", true)
	addIstiod(t, "asm-1-26", "false")
	addIstiod(t, "asm-1-19", "false")
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-26", "asm-1-19"}, Origin: v1alpha1.OriginNewCluster})
	// asm-1-19 is too old, so the cluster did not qualify when created.
	eventually(t, 5*time.Second, "createdQualifying decided", func() (bool, string) {
		p := profile(t)
		return p.Status.CreatedQualifying != nil, fmt.Sprint(p.Status.CreatedQualifying)
	})
	if p := profile(t); *p.Status.CreatedQualifying {
		t.Fatal("createdQualifying with asm-1-19")
	}
	waitCondition(t, v1alpha1.ConditionNativeSidecarsEnabled, metav1.ConditionFalse, "asm-1-19 is older than asm-1-20")
	if got := istiodEnv(t, "asm-1-26"); got != "false" {
		t.Errorf("asm-1-26 on a cluster that did not qualify: %s", got)
	}
}

func TestNewClusterQualifiesAndDriftIsReverted(t *testing.T) {
	addNode(t, "aks-system-vmss000000", "system", "v1.34.4", true)
	addIstiod(t, "asm-1-26", "false")
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-26"}, Origin: v1alpha1.OriginNewCluster})
	waitEnv(t, "asm-1-26", "true", 5*time.Second)
	eventually(t, 5*time.Second, "createdQualifying", func() (bool, string) {
		p := profile(t)
		return ptr.Deref(p.Status.CreatedQualifying, false), fmt.Sprint(p.Status.CreatedQualifying)
	})
	waitCondition(t, v1alpha1.ConditionFeatureRegistered, metav1.ConditionTrue, "no feature flag needed")

	var d appsv1.Deployment
	ctx := context.Background()
	if err := cl.Get(ctx, client.ObjectKey{Namespace: meshNS, Name: "istiod-asm-1-26"}, &d); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: istiod.NativeSidecarsEnv, Value: "false"}}
	if err := cl.Patch(ctx, &d, patch); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	waitEnv(t, "asm-1-26", "true", 2*time.Second)
	t.Logf("hand edit reverted in %s", time.Since(edited).Round(time.Millisecond))
	waitEvent(t, "DriftReverted", "was changed to false outside the add-on")
}

// When the API server refuses the manager's write, status keeps the
// decision apart from what istiod has, says why Reconciled is False, a
// forced reconcile fails naming it, and the manager retries on its own.
func TestRefusedWriteIsNotReconciled(t *testing.T) {
	const frozen = "istiod is frozen for maintenance"
	addNode(t, "aks-system-vmss000000", "system", "v1.34.4", true)
	addIstiod(t, "asm-1-27", "false")
	unfreeze := testenv.FreezeIstiod(t, cl, meshNS, frozen)
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}, NativeSidecarMode: "Enabled"})

	c := waitCondition(t, v1alpha1.ConditionReconciled, metav1.ConditionFalse, frozen)
	if !strings.Contains(c.Message, "istiod-asm-1-27") || !strings.Contains(c.Message, istiod.NativeSidecarsEnv+"=true") {
		t.Errorf("Reconciled does not name the Deployment and the value: %s", c.Message)
	}
	rs := profile(t).Status.Revisions
	if len(rs) != 1 || rs[0].Mode != "native" || rs[0].EnableNativeSidecars != "true" || rs[0].IstiodEnableNativeSidecars != "false" {
		t.Errorf("revision status: %+v, want native decided (true) apart from istiod's false", rs)
	}
	if got := istiodEnv(t, "asm-1-27"); got != "false" {
		t.Fatalf("istiod has %s through the policy", got)
	}
	_, err := platform.Reconcile(context.Background(), cl, meshNS, 10*time.Second)
	var nr *platform.NotReconciledError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), frozen) || !strings.Contains(err.Error(), "istiod-asm-1-27") {
		t.Errorf("forced reconcile with the write refused: %v, want a NotReconciledError naming istiod and the refusal", err)
	}

	// Once the API server accepts the write, the manager's retry makes it.
	unfreeze()
	waitEnv(t, "asm-1-27", "true", 30*time.Second)
	waitCondition(t, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "")
	rs = profile(t).Status.Revisions
	if len(rs) != 1 || rs[0].EnableNativeSidecars != "true" || rs[0].IstiodEnableNativeSidecars != "true" {
		t.Errorf("revision status after the write: %+v", rs)
	}
}

func TestMissingIstiodIsReported(t *testing.T) {
	addNode(t, "aks-system-vmss000000", "system", "v1.34.4", true)
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-25"}})
	waitCondition(t, v1alpha1.ConditionReconciled, metav1.ConditionFalse, "istiod-asm-1-25 not found")
	// A forced reconcile never reports success without the revision's istiod.
	_, err := platform.Reconcile(context.Background(), cl, meshNS, 2*time.Second)
	if !platform.IsTimeout(err) || !strings.Contains(err.Error(), "revision asm-1-25") {
		t.Errorf("forced reconcile without istiod: %v, want a timeout naming revision asm-1-25", err)
	}
}

// Bad input is rejected by the API server, never reaches the manager.
func TestValidationRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	for name, obj := range map[string]client.Object{
		"unknown mode":         &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: v1alpha1.MeshProfileSpec{NativeSidecarMode: "On"}},
		"unknown oldNodes":     &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: v1alpha1.MeshProfileSpec{OldNodes: "Exclude"}},
		"bad revision":         &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: v1alpha1.MeshProfileSpec{Revisions: []string{"istio-1-27"}}},
		"second profile":       &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: "other"}},
		"unknown feature name": &v1alpha1.FeatureRegistration{ObjectMeta: metav1.ObjectMeta{Name: "istioambientpreview"}},
		"unknown feature state": &v1alpha1.FeatureRegistration{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.FeatureObjectName(meshversion.FeatureNativeSidecarPreview)},
			Spec: v1alpha1.FeatureRegistrationSpec{DesiredState: "Maybe"}},
	} {
		err := cl.Create(ctx, obj)
		if err == nil {
			_ = cl.Delete(ctx, obj)
			t.Errorf("%s: accepted", name)
			continue
		}
		if !apierrors.IsInvalid(err) {
			t.Errorf("%s: want an Invalid error, got %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	// origin is fixed once set.
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}})
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var p v1alpha1.MeshProfile
		if err := cl.Get(ctx, client.ObjectKey{Name: "default"}, &p); err != nil {
			return err
		}
		p.Spec.Origin = v1alpha1.OriginNewCluster
		return cl.Update(ctx, &p)
	})
	if err == nil || !strings.Contains(err.Error(), "origin is fixed") {
		t.Errorf("changing origin: %v", err)
	}
}

// censusPod creates a pod whose metadata says how it was injected: status
// is the injector's sidecar.istio.io/status annotation ("" = not injected).
func censusPod(t *testing.T, ns, name, status, override string, owner *metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	if status != "" {
		p.Annotations[inventory.StatusAnnotation] = status
	}
	if override != "" {
		p.Annotations[inventory.NativeSidecarOverride] = override
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	if err := cl.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func censusOf(t *testing.T) *v1alpha1.PodCensus {
	t.Helper()
	return profile(t).Status.Pods
}

func TestCensusCountsPodsByModeAndRevision(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "census"}}
	if err := cl.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kcs.CoreV1().Pods("census").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
		_ = cl.Delete(ctx, ns)
	})
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}, NativeSidecarMode: "Auto"})

	// What istiod writes (volumes cut short): classic puts istio-proxy
	// among the containers, native among the init containers.
	classic := `{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["workload-socket","istio-envoy"],"imagePullSecrets":null,"revision":"asm-1-27"}`
	native := `{"initContainers":["istio-proxy"],"containers":null,"volumes":["workload-socket","istio-envoy"],"imagePullSecrets":null,"revision":"asm-1-27"}`
	older := `{"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"asm-1-26"}`

	cron := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "census"},
		Spec: batchv1.CronJobSpec{Schedule: "0 0 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}}}},
	}
	if err := cl.Create(ctx, cron); err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly-29000000", Namespace: "census", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "batch/v1", Kind: "CronJob", Name: cron.Name, UID: cron.UID, Controller: ptr.To(true)}}},
		Spec: cron.Spec.JobTemplate.Spec,
	}
	if err := cl.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cl.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground))
		_ = cl.Delete(ctx, cron)
	})
	jobRef := &metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: ptr.To(true)}

	censusPod(t, "census", "classic-1", classic, "", nil)
	censusPod(t, "census", "classic-2", classic, "", nil)
	censusPod(t, "census", "native-1", native, "", nil)
	censusPod(t, "census", "pinned", classic, "false", nil)
	censusPod(t, "census", "old-rev", older, "", nil)
	censusPod(t, "census", "plain", "", "", nil)
	censusPod(t, "census", "job-pod", classic, "", jobRef)

	want := v1alpha1.PodCensus{
		Total: 7, NotInjected: 1,
		Revisions:     []v1alpha1.RevisionPods{{Name: "asm-1-26", Classic: 1}, {Name: "asm-1-27", Native: 1, Classic: 4}},
		Overrides:     []string{"census/pinned=false"},
		OverrideCount: 1,
		// The Job's pods count under the CronJob that made the Job.
		ClassicJobs:     []string{"census/CronJob/nightly"},
		ClassicJobCount: 1,
	}
	counted := func() (bool, string) {
		c := censusOf(t)
		if c == nil {
			return false, "no census"
		}
		got := *c
		got.ObservedTime, got.PodsResourceVersion = metav1.Time{}, ""
		return equality.Semantic.DeepEqual(got, want), fmt.Sprintf("%+v", got)
	}
	eventually(t, 10*time.Second, "the census counts every pod", counted)
	if age := time.Since(censusOf(t).ObservedTime.Time); age > v1alpha1.CensusHeartbeat {
		t.Errorf("census observed %s ago, want within the heartbeat", age)
	}
	// config/monitoring's census-stale alert reads the census's time.
	eventually(t, 5*time.Second, "the census time metric follows the status", func() (bool, string) {
		got, want := metricValue(t, "meshaddon_pods_census_timestamp_seconds", nil), float64(censusOf(t).ObservedTime.Unix())
		return got == want, fmt.Sprintf("meshaddon_pods_census_timestamp_seconds %v, status %v", got, want)
	})

	// A deleted pod leaves the count within the batching delay.
	if err := kcs.CoreV1().Pods("census").Delete(ctx, "classic-2", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	want.Total, want.Revisions[1].Classic = 6, 3
	eventually(t, 10*time.Second, "the census drops the deleted pod", counted)
}

// The census informer's first list must come in pages: an informer's usual
// resourceVersion=0 list is answered whole from the watch cache, every pod
// with its managedFields at once (952 MiB in the manager at 50,000 pods).
func TestCensusInformerListsInSlimPages(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "paged"}}
	if err := cl.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kcs.CoreV1().Pods("paged").DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
		_ = cl.Delete(context.Background(), ns)
	})
	const pods = 1200 // more than two pages of the reflector's 500
	for i := range pods {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%04d", i), Namespace: "paged", Labels: map[string]string{"app": "x"},
				Annotations: map[string]string{inventory.StatusAnnotation: `{"initContainers":["istio-proxy"],"containers":null,"revision":"asm-1-27"}`}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		if err := cl.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var lists []string
	cfg := rest.CopyConfig(restCfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Query().Get("watch") == "" {
				mu.Lock()
				lists = append(lists, r.URL.RawQuery)
				mu.Unlock()
			}
			return rt.RoundTrip(r)
		})
	})
	inf := manager.NewCensusInformer(metadata.NewForConfigOrDie(cfg), corev1.SchemeGroupVersion.WithResource("pods"), inventory.SlimPodMetadata)
	go inf.RunWithContext(ctx)
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("the census informer did not sync")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lists) < 3 {
		t.Fatalf("the first list took %d request(s), want pages: %v", len(lists), lists)
	}
	if q := lists[0]; strings.Contains(q, "resourceVersion=0") || !strings.Contains(q, "limit=500") {
		t.Errorf("first list request %q: want a consistent, limited read", q)
	}
	n := 0
	for _, o := range inf.GetStore().List() {
		m := o.(*metav1.PartialObjectMetadata)
		if m.Namespace != "paged" {
			continue
		}
		n++
		if len(m.ManagedFields) > 0 || m.Labels["app"] != "" || inventory.ClassifyMetadata(m).Mode != inventory.Native {
			t.Fatalf("cached pod is not slim or lost its mode: %+v", m.ObjectMeta)
		}
	}
	if n != pods {
		t.Errorf("the informer holds %d of the %d pods", n, pods)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
