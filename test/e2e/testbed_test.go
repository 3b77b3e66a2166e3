package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/util/podutils"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/testbed/nodepool"
	"github.com/meshaddon/meshaddon/internal/testbed/proc"
)

const (
	istioNS        = "aks-istio-system"
	nativeAnnot    = "sidecar.istio.io/nativeSidecar"
	systemPool     = "system"
	oldPool        = "old"
	currentVersion = "v1.34.4"
	oldVersion     = "v1.28.9"
)

// TestTestbed runs the test bed's behaviour on one shared cluster, in order:
// later steps change the cluster (istiod settings, node pools).
func TestTestbed(t *testing.T) {
	kube := upCluster(t, "e2e",
		"--pool", systemPool+"="+currentVersion+":2",
		"--pool", oldPool+"="+oldVersion+":1",
		"--revision", "asm-1-26", "--revision", "asm-1-27",
		"--native-sidecars", "false",
		"--pod-start-delay", "2s",
		// These tests set istiod's env by hand; the manager would put it back.
		"--manager=false")
	ctx := context.Background()

	t.Run("node pools have the versions asked for", func(t *testing.T) {
		pools := listPools(t, "e2e")
		want := map[string]string{systemPool: currentVersion, oldPool: oldVersion}
		counts := map[string]int{systemPool: 2, oldPool: 1}
		for _, p := range pools {
			if len(p.Versions) != 1 || p.Versions[0] != want[p.Name] || p.Nodes != counts[p.Name] || p.Ready != p.Nodes {
				t.Errorf("pool %+v, want version %s, %d Ready nodes", p, want[p.Name], counts[p.Name])
			}
		}
		if len(pools) != 2 {
			t.Errorf("got %d pools, want 2: %+v", len(pools), pools)
		}
	})

	t.Run("up again with the same settings changes nothing", func(t *testing.T) {
		r := mustMeshaddon(t, "local", "up", "--name", "e2e",
			"--pool", systemPool+"="+currentVersion+":2", "--pool", oldPool+"="+oldVersion+":1",
			"--revision", "asm-1-26", "--revision", "asm-1-27", "--native-sidecars", "false", "--pod-start-delay", "2s", "--manager=false")
		if !strings.Contains(r.stdout, "nothing changed") {
			t.Errorf("second up reported changes:\n%s", r.stdout)
		}
	})

	t.Run("up again with other settings is refused", func(t *testing.T) {
		r := meshaddon(t, "local", "up", "--name", "e2e", "--pool", "system=v1.33.0:1")
		if r.code == 0 || !strings.Contains(r.stderr, "already up with other settings") {
			t.Fatalf("want a refusal, got %s", r)
		}
		if pools := listPools(t, "e2e"); len(pools) != 2 || pools[1].Nodes != 2 {
			t.Errorf("the refused up changed the pools: %+v", pools)
		}
	})

	t.Run("each revision injects its own namespaces", func(t *testing.T) {
		for _, rev := range []string{"asm-1-26", "asm-1-27"} {
			ns := "rev-" + rev
			createNamespace(t, kube, ns, rev)
			pod := dryRunPod(t, kube, ns, nil)
			proxy := container(pod.Spec.Containers, "istio-proxy")
			if proxy == nil {
				t.Fatalf("%s: no istio-proxy in containers %s", rev, names(pod.Spec.Containers))
			}
			// The injected proxy's config names the istiod it connects to.
			cfg, _ := json.Marshal(proxy.Env)
			if !strings.Contains(string(cfg), "istiod-"+rev+"."+istioNS) {
				t.Errorf("%s: the proxy talks to another istiod: %s", rev, cfg)
			}
		}
	})

	t.Run("classic, then native after ENABLE_NATIVE_SIDECARS=true and a rollout restart", func(t *testing.T) {
		ns := "web"
		createNamespace(t, kube, ns, "asm-1-27")
		createDeployment(t, kube, ns, "web", 2, map[string]string{nodepool.PoolLabel: systemPool}, nil)
		waitRollout(t, kube, ns, "web")
		for _, p := range runningPods(t, kube, ns, "web") {
			if got := names(p.Spec.InitContainers); got != "istio-init" {
				t.Errorf("classic pod %s: init %q, want istio-init", p.Name, got)
			}
			if got := names(p.Spec.Containers); got != "web,istio-proxy" {
				t.Errorf("classic pod %s: containers %q, want web,istio-proxy", p.Name, got)
			}
		}

		setIstiodEnv(t, kube, "istiod-asm-1-27", "true")
		// The runner restarts istiod with the new env; until then the old
		// process may still answer, so wait for native injection itself.
		waitFor(t, 2*time.Minute, "istiod asm-1-27 injects native", func(ctx context.Context) (bool, string) {
			pod, err := tryDryRunPod(ctx, kube, ns, nil)
			if err != nil {
				return false, err.Error()
			}
			return names(pod.Spec.InitContainers) == "istio-init,istio-proxy", "init " + names(pod.Spec.InitContainers)
		})
		waitDeploymentAvailable(t, kube, istioNS, "istiod-asm-1-27")

		restart(t, kube, ns, "web")
		waitRollout(t, kube, ns, "web")
		for _, p := range runningPods(t, kube, ns, "web") {
			if got := names(p.Spec.InitContainers); got != "istio-init,istio-proxy" {
				t.Errorf("native pod %s: init %q, want istio-init,istio-proxy", p.Name, got)
			}
			if got := names(p.Spec.Containers); got != "web" {
				t.Errorf("native pod %s: containers %q, want web", p.Name, got)
			}
			if c := container(p.Spec.InitContainers, "istio-proxy"); c == nil || c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Errorf("native pod %s: istio-proxy is not a restartPolicy Always init container", p.Name)
			}
		}
	})

	t.Run("the pod annotation overrides istiod both ways", func(t *testing.T) {
		// asm-1-27 now injects native: the annotation asks for classic.
		pod := dryRunPod(t, kube, "web", map[string]string{nativeAnnot: "false"})
		if container(pod.Spec.Containers, "istio-proxy") == nil {
			t.Errorf("nativeSidecar=false on a native istiod: containers %s", names(pod.Spec.Containers))
		}
		// asm-1-26 still injects classic: the annotation asks for native.
		pod = dryRunPod(t, kube, "rev-asm-1-26", map[string]string{nativeAnnot: "true"})
		if container(pod.Spec.InitContainers, "istio-proxy") == nil {
			t.Errorf("nativeSidecar=true on a classic istiod: init %s", names(pod.Spec.InitContainers))
		}
	})

	t.Run("a native sidecar hangs in Init on a 1.28 node and runs on a 1.34 node", func(t *testing.T) {
		old := poolNodes(t, kube, oldPool)[0]
		cur := poolNodes(t, kube, systemPool)[0]
		onOld := createPod(t, kube, "web", "hang-old", old, map[string]string{nativeAnnot: "true"})
		onNew := createPod(t, kube, "web", "run-new", cur, map[string]string{nativeAnnot: "true"})
		waitFor(t, time.Minute, "native pod on the 1.34 node Running and Ready", func(ctx context.Context) (bool, string) {
			p, err := kube.CoreV1().Pods("web").Get(ctx, onNew, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return p.Status.Phase == corev1.PodRunning && podReady(p), string(p.Status.Phase)
		})
		// Give the old node's pod the same time and more: it must still hang.
		time.Sleep(3 * time.Second)
		p, err := kube.CoreV1().Pods("web").Get(ctx, onOld, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase != corev1.PodPending || podReady(p) {
			t.Fatalf("native pod on %s: phase %s ready %t, want Pending and not ready", old, p.Status.Phase, podReady(p))
		}
		var proxyRunning bool
		for _, s := range p.Status.InitContainerStatuses {
			if s.Name == "istio-proxy" && s.State.Running != nil && !s.Ready {
				proxyRunning = true
			}
		}
		if !proxyRunning {
			t.Errorf("native pod on the old node: want istio-proxy running and never ready, got %+v", p.Status.InitContainerStatuses)
		}
	})

	t.Run("a pod is Ready about the start delay after binding", func(t *testing.T) {
		createNamespace(t, kube, "plain", "")
		start := time.Now()
		name := createPod(t, kube, "plain", "delayed", poolNodes(t, kube, systemPool)[0], nil)
		waitFor(t, time.Minute, "delayed pod Ready", func(ctx context.Context) (bool, string) {
			p, err := kube.CoreV1().Pods("plain").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return podReady(p), string(p.Status.Phase)
		})
		if took := time.Since(start); took < 1500*time.Millisecond || took > 8*time.Second {
			t.Errorf("pod became Ready after %s, want about 2s", took)
		}
	})

	t.Run("an upgrade replaces nodes one by one", func(t *testing.T) {
		mustMeshaddon(t, "local", "nodepool", "add", "up", "--name", "e2e", "--version", "v1.30.2", "--count", "2")
		before := poolNodes(t, kube, "up")
		w, err := kube.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{LabelSelector: nodepool.PoolLabel + "=up"})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		seen := map[string]bool{}
		for _, n := range before {
			seen[n] = true
		}
		maxNodes := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ev := range w.ResultChan() {
				n, ok := ev.Object.(*corev1.Node)
				if !ok {
					continue
				}
				if ev.Type == "DELETED" {
					delete(seen, n.Name)
				} else {
					seen[n.Name] = true
				}
				if len(seen) > maxNodes {
					maxNodes = len(seen)
				}
			}
		}()
		mustMeshaddon(t, "local", "nodepool", "upgrade", "up", "--name", "e2e", "--version", currentVersion)
		w.Stop()
		<-done
		after := poolNodes(t, kube, "up")
		if len(after) != 2 {
			t.Fatalf("after upgrade: %d nodes, want 2", len(after))
		}
		for _, n := range after {
			if contains(before, n) {
				t.Errorf("node %s was not replaced", n)
			}
		}
		if maxNodes != 3 {
			t.Errorf("the pool peaked at %d nodes; one surge node at a time means 3", maxNodes)
		}
		for _, p := range listPools(t, "e2e") {
			if p.Name == "up" && (len(p.Versions) != 1 || p.Versions[0] != currentVersion) {
				t.Errorf("pool up after upgrade: %+v", p)
			}
		}
	})

	t.Run("a stopped pool has no Ready nodes, and starts again", func(t *testing.T) {
		mustMeshaddon(t, "local", "nodepool", "stop", "up", "--name", "e2e")
		for _, p := range listPools(t, "e2e") {
			if p.Name == "up" && (p.Ready != 0 || !p.Stopped || p.Nodes != 2) {
				t.Errorf("stopped pool: %+v", p)
			}
		}
		mustMeshaddon(t, "local", "nodepool", "start", "up", "--name", "e2e")
		for _, p := range listPools(t, "e2e") {
			if p.Name == "up" && (p.Ready != 2 || p.Stopped) {
				t.Errorf("started pool: %+v", p)
			}
		}
		mustMeshaddon(t, "local", "nodepool", "delete", "up", "--name", "e2e")
	})

	t.Run("istiod's Deployment is available only while its process is healthy", func(t *testing.T) {
		pid := istiodPID(t, "e2e", "istiod-asm-1-26")
		w, err := kube.AppsV1().Deployments(istioNS).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=istiod-asm-1-26"})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var sawUnavailable bool
		timeout := time.After(time.Minute)
		for {
			select {
			case ev := <-w.ResultChan():
				d, ok := ev.Object.(*appsv1.Deployment)
				if !ok {
					continue
				}
				if d.Status.AvailableReplicas == 0 {
					sawUnavailable = true
				} else if sawUnavailable {
					if newPID := istiodPID(t, "e2e", "istiod-asm-1-26"); newPID == pid {
						t.Errorf("istiod pid %d unchanged after it was killed", pid)
					}
					return // unavailable while dead, available again once restarted
				}
			case <-timeout:
				t.Fatalf("after killing istiod: saw unavailable %t, never available again", sawUnavailable)
			}
		}
	})

	t.Run("up again restarts a killed runner and reports it", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(stateDir, "clusters", "e2e", "runner.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		r := mustMeshaddon(t, "local", "up", "--name", "e2e",
			"--pool", systemPool+"="+currentVersion+":2", "--pool", oldPool+"="+oldVersion+":1",
			"--revision", "asm-1-26", "--revision", "asm-1-27", "--native-sidecars", "false", "--pod-start-delay", "2s", "--manager=false")
		if !strings.Contains(r.stdout, "started the istiod runner") {
			t.Errorf("up did not report restarting the runner:\n%s", r.stdout)
		}
	})

	t.Run("status shows every component running", func(t *testing.T) {
		var st struct {
			Healthy    bool
			Components []struct {
				Name    string
				PID     int
				Running bool
			}
			Revisions []struct {
				Revision       string
				Available      bool
				NativeSidecars string
			}
		}
		r := mustMeshaddon(t, "local", "status", "--name", "e2e", "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, r.stdout)
		}
		if !st.Healthy || len(st.Components) < 6 {
			t.Errorf("status: %+v", st)
		}
		for _, c := range st.Components {
			if !c.Running || c.PID == 0 {
				t.Errorf("component %s not running", c.Name)
			}
		}
		want := map[string]string{"asm-1-26": "false", "asm-1-27": "true"}
		for _, rv := range st.Revisions {
			if !rv.Available || want[rv.Revision] != rv.NativeSidecars {
				t.Errorf("revision %+v, want available with ENABLE_NATIVE_SIDECARS=%s", rv, want[rv.Revision])
			}
		}
	})

	t.Run("istiod rolls with surge: every pod created across its restarts is admitted and injected", func(t *testing.T) {
		const ns, deployment = "roll", "istiod-asm-1-26"
		createNamespace(t, kube, ns, "asm-1-26")
		defer func() { _ = kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) }()
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		minReady := watchIstiodReadiness(t, watchCtx, kube, deployment)

		// Pods are created one after another, as a busy cluster would,
		// while istiod rolls to native and back to classic.
		stopCreating := make(chan struct{})
		stop := sync.OnceFunc(func() { close(stopCreating) })
		defer stop() // also when a wait below fails the test
		type created struct {
			name string
			err  error
		}
		results := make(chan created, 1000)
		go func() {
			defer close(results)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "roll-", Namespace: ns},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
			}
			for {
				select {
				case <-stopCreating:
					return
				case <-time.After(150 * time.Millisecond):
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				p, err := kube.CoreV1().Pods(ns).Create(cctx, pod, metav1.CreateOptions{})
				cancel()
				if err != nil {
					results <- created{err: err}
					continue
				}
				results <- created{name: p.Name}
			}
		}()
		time.Sleep(time.Second)
		for _, value := range []string{"true", "false"} {
			setIstiodEnv(t, kube, deployment, value)
			waitRollout(t, kube, istioNS, deployment)
			waitFor(t, 2*time.Minute, "the old istiod pod of "+deployment+" gone", func(ctx context.Context) (bool, string) {
				pods, err := kube.CoreV1().Pods(istioNS).List(ctx, metav1.ListOptions{LabelSelector: "app=istiod,istio.io/rev=asm-1-26"})
				if err != nil {
					return false, err.Error()
				}
				return len(pods.Items) == 1, fmt.Sprintf("%d istiod pods", len(pods.Items))
			})
			wantInit := map[string]string{"true": "istio-init,istio-proxy", "false": "istio-init"}[value]
			waitFor(t, time.Minute, "istiod asm-1-26 injects with ENABLE_NATIVE_SIDECARS="+value, func(ctx context.Context) (bool, string) {
				pod, err := tryDryRunPod(ctx, kube, ns, nil)
				if err != nil {
					return false, err.Error()
				}
				return names(pod.Spec.InitContainers) == wantInit, "init " + names(pod.Spec.InitContainers)
			})
			time.Sleep(time.Second)
		}
		stop()
		var made []string
		for r := range results {
			if r.err != nil {
				t.Errorf("a pod created while istiod rolled was refused: %v", r.err)
				continue
			}
			made = append(made, r.name)
		}
		stopWatch()
		if len(made) < 20 {
			t.Errorf("only %d pods were created across the rolls", len(made))
		}
		for _, name := range made {
			p, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Errorf("pod %s created while istiod rolled: %v", name, err)
				continue
			}
			if container(p.Spec.Containers, "istio-proxy") == nil && container(p.Spec.InitContainers, "istio-proxy") == nil {
				t.Errorf("pod %s created while istiod rolled has no istio-proxy: init %s, containers %s", name, names(p.Spec.InitContainers), names(p.Spec.Containers))
			}
		}
		// The webhooks call the istiod that serves now, on the ports its
		// Deployment records.
		d, err := kube.AppsV1().Deployments(istioNS).Get(ctx, deployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ports := d.Annotations["testbed.meshaddon.dev/ports"]
		https, _, _ := strings.Cut(strings.TrimPrefix(ports, "https="), ",")
		var urls []string
		mwcs, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range mwcs.Items {
			for _, h := range c.Webhooks {
				if strings.Contains(c.Name, "asm-1-26") && h.ClientConfig.URL != nil {
					urls = append(urls, *h.ClientConfig.URL)
				}
			}
		}
		vwcs, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range vwcs.Items {
			for _, h := range c.Webhooks {
				if strings.Contains(c.Name, "asm-1-26") && h.ClientConfig.URL != nil {
					urls = append(urls, *h.ClientConfig.URL)
				}
			}
		}
		if len(urls) < 2 {
			t.Errorf("found webhooks of asm-1-26 calling %v, want the injector's and the validator's", urls)
		}
		for _, u := range urls {
			if !strings.HasPrefix(u, "https://127.0.0.1:"+https+"/") {
				t.Errorf("webhook URL %s does not call the serving istiod (ports %s)", u, ports)
			}
		}
		if m := <-minReady; m.least < 1 {
			t.Errorf("%s had %d ready pods at some moment of its rolls, want at least 1 throughout:\n%s", deployment, m.least, strings.Join(m.events, "\n"))
		}
	})
}

// readiness is what watchIstiodReadiness saw.
type readiness struct {
	least  int      // the fewest ready pods at any moment
	events []string // each change, for the failure message
}

// watchIstiodReadiness follows the pods of an istiod Deployment until ctx
// ends, then sends the fewest ready (and not terminating) pods it saw.
func watchIstiodReadiness(t *testing.T, ctx context.Context, kube kubernetes.Interface, deployment string) <-chan readiness {
	t.Helper()
	rev := strings.TrimPrefix(deployment, "istiod-")
	opts := metav1.ListOptions{LabelSelector: "app=istiod,istio.io/rev=" + rev}
	list, err := kube.CoreV1().Pods(istioNS).List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	ready := map[string]bool{}
	count := func() int {
		n := 0
		for _, r := range ready {
			if r {
				n++
			}
		}
		return n
	}
	var seen readiness
	for i := range list.Items {
		p := &list.Items[i]
		ready[p.Name] = podReady(p) && p.DeletionTimestamp == nil
		seen.events = append(seen.events, fmt.Sprintf("%s ready %t terminating %t", p.Name, podReady(p), p.DeletionTimestamp != nil))
	}
	opts.ResourceVersion = list.ResourceVersion
	w, err := kube.CoreV1().Pods(istioNS).Watch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan readiness, 1)
	go func() {
		defer w.Stop()
		seen.least = count()
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if ev.Type == "DELETED" {
				delete(ready, p.Name)
			} else {
				ready[p.Name] = podReady(p) && p.DeletionTimestamp == nil
			}
			seen.least = min(seen.least, count())
			seen.events = append(seen.events, fmt.Sprintf("%s %s %s ready %t terminating %t: %d ready", time.Now().Format("15:04:05.000"), ev.Type, p.Name, podReady(p), p.DeletionTimestamp != nil, count()))
		}
		out <- seen
	}()
	return out
}

// istiodPID finds the pilot-discovery process that serves a Deployment:
// its working directory is istiod/<deployment>/<https port>, the port the
// Deployment records (during a roll the old process may still run beside).
func istiodPID(t *testing.T, cluster, deployment string) int {
	t.Helper()
	d, err := clientFor(t, cluster).AppsV1().Deployments(istioNS).Get(context.Background(), deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ports := d.Annotations["testbed.meshaddon.dev/ports"]
	https, _, _ := strings.Cut(strings.TrimPrefix(ports, "https="), ",")
	want := filepath.Join(stateDir, "clusters", cluster, "istiod", deployment, https)
	for _, p := range proc.Find(filepath.Join(stateDir, "clusters", cluster)) {
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p.PID))
		if strings.Contains(p.Command, "pilot-discovery") && cwd == want {
			return p.PID
		}
	}
	t.Fatalf("no istiod process for %s in %s (ports %s)", deployment, want, ports)
	return 0
}

func listPools(t *testing.T, cluster string) []nodepool.Pool {
	t.Helper()
	r := mustMeshaddon(t, "local", "nodepool", "list", "--name", cluster, "-o", "json")
	var pools []nodepool.Pool
	if err := json.Unmarshal([]byte(r.stdout), &pools); err != nil {
		t.Fatalf("nodepool list -o json: %v\n%s", err, r.stdout)
	}
	return pools
}

func poolNodes(t *testing.T, kube kubernetes.Interface, pool string) []string {
	t.Helper()
	list, err := kube.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: nodepool.PoolLabel + "=" + pool})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range list.Items {
		out = append(out, n.Name)
	}
	if len(out) == 0 {
		t.Fatalf("pool %s has no nodes", pool)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func createNamespace(t *testing.T, kube kubernetes.Interface, name, revision string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if revision != "" {
		ns.Labels = map[string]string{"istio.io/rev": revision}
	}
	if _, err := kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func createDeployment(t *testing.T, kube kubernetes.Interface, ns, name string, replicas int32, nodeSelector, annotations map[string]string) {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					NodeSelector: nodeSelector,
					Containers:   []corev1.Container{{Name: name, Image: "registry.k8s.io/pause:3.10"}},
				},
			},
		},
	}
	if _, err := kube.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createPod(t *testing.T, kube kubernetes.Interface, ns, name, node string, annotations map[string]string) string {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	if _, err := kube.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

func tryDryRunPod(ctx context.Context, kube kubernetes.Interface, ns string, annotations map[string]string) (*corev1.Pod, error) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: ns, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	return kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

func dryRunPod(t *testing.T, kube kubernetes.Interface, ns string, annotations map[string]string) *corev1.Pod {
	t.Helper()
	p, err := tryDryRunPod(context.Background(), kube, ns, annotations)
	if err != nil {
		t.Fatalf("dry-run pod in %s: %v", ns, err)
	}
	return p
}

func container(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// podReady is kubectl's own readiness test.
var podReady = podutils.IsPodReady

// setIstiodEnv sets ENABLE_NATIVE_SIDECARS on istiod's container, as a
// person or the add-on manager would.
func setIstiodEnv(t *testing.T, kube kubernetes.Interface, deployment, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"discovery","env":[{"name":"ENABLE_NATIVE_SIDECARS","value":%q}]}]}}}}`, value)
	if _, err := kube.AppsV1().Deployments(istioNS).Patch(context.Background(), deployment, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// restart does what `kubectl rollout restart` does.
func restart(t *testing.T, kube kubernetes.Interface, ns, name string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := kube.AppsV1().Deployments(ns).Patch(context.Background(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitRollout waits as `kubectl rollout status` does.
func waitRollout(t *testing.T, kube kubernetes.Interface, ns, name string) {
	t.Helper()
	waitFor(t, 2*time.Minute, "rollout of "+ns+"/"+name, func(ctx context.Context) (bool, string) {
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		want := *d.Spec.Replicas
		s := d.Status
		msg := fmt.Sprintf("generation %d observed %d updated %d ready %d available %d total %d", d.Generation, s.ObservedGeneration, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas, s.Replicas)
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want, msg
	})
}

func waitDeploymentAvailable(t *testing.T, kube kubernetes.Interface, ns, name string) {
	t.Helper()
	waitRollout(t, kube, ns, name)
}

// runningPods returns the Deployment's pods that are not being deleted.
func runningPods(t *testing.T, kube kubernetes.Interface, ns, app string) []corev1.Pod {
	t.Helper()
	var out []corev1.Pod
	waitFor(t, time.Minute, "old pods of "+app+" gone", func(ctx context.Context) (bool, string) {
		pods, err := podsOf(ctx, kube, ns, app)
		if err != nil {
			return false, err.Error()
		}
		out = out[:0]
		for _, p := range pods {
			if p.DeletionTimestamp != nil {
				return false, "pod " + p.Name + " still terminating"
			}
			if p.Status.Phase != corev1.PodRunning || !podReady(&p) {
				return false, "pod " + p.Name + " not Running and Ready"
			}
			out = append(out, p)
		}
		return len(out) > 0, fmt.Sprintf("%d pods", len(out))
	})
	return out
}
