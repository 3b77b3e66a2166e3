package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/testbed/cache"
)

// TestUpstreamLayout: upstream Istio's layout on the test bed (istio-system,
// a default revision, a named revision 1-27-1, a tag prod, namespaces by
// istio-injection=enabled and by tag) with a manager in observe mode, all
// against the real istiod of the pinned Istio (issue 15).
func TestUpstreamLayout(t *testing.T) {
	const cluster = "up15"
	kc := upCluster(t, cluster, "--layout", "upstream", "--revision", "default", "--revision", "1-27-1",
		"--tag", "prod=1-27-1", "--pool", "system="+currentVersion+":2", "--native-sidecars", "unset", "--observe")
	kcfg := kubeconfigOf(t, cluster)
	ctx := context.Background()
	istiodVersions := func() string {
		list, err := kc.AppsV1().Deployments("istio-system").List(ctx, metav1.ListOptions{LabelSelector: "app=istiod"})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range list.Items {
			out = append(out, d.Name+"@"+d.ResourceVersion)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	before := istiodVersions()

	t.Run("discovery agrees with istioctl tag list", func(t *testing.T) {
		c, err := cache.New(io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		bins, err := c.Ensure(ctx, cache.Istio)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bins.Path("istioctl"), "tag", "list", "-o", "json", "--kubeconfig", kcfg).Output()
		if err != nil {
			t.Fatalf("istioctl tag list: %v", err)
		}
		var tags []struct{ Tag, Revision string }
		if err := json.Unmarshal(out, &tags); err != nil {
			t.Fatalf("istioctl tag list -o json: %v\n%s", err, out)
		}
		var theirs []string
		for _, tg := range tags {
			theirs = append(theirs, fmt.Sprintf("%s→%s", tg.Tag, tg.Revision))
		}
		sort.Strings(theirs)
		// Ours, from precheck's layout line: each revision with its tags.
		rep, _ := runPrecheck(t, cluster)
		var ours []string
		for _, line := range resultsOf(rep, "layout") {
			for _, part := range strings.Split(line, "revision ")[1:] {
				rev, rest, _ := strings.Cut(part, ":")
				ours = append(ours, "→"+rev) // istioctl lists each revision with an empty tag
				if _, tagList, ok := strings.Cut(rest, ", tags "); ok {
					for _, tg := range strings.Split(strings.TrimSpace(tagList), ", ") {
						ours = append(ours, tg+"→"+rev)
					}
				}
			}
		}
		sort.Strings(ours)
		// istioctl lists a revision without a tag only when no tag points at it.
		var want []string
		tagged := map[string]bool{}
		for _, s := range theirs {
			if tag, rev, _ := strings.Cut(s, "→"); tag != "" {
				tagged[rev] = true
			}
		}
		for _, s := range ours {
			if tag, rev, _ := strings.Cut(s, "→"); tag != "" || !tagged[rev] {
				want = append(want, s)
			}
		}
		if strings.Join(want, " ") != strings.Join(theirs, " ") || len(theirs) != 2 {
			t.Errorf("meshaddon finds %v, istioctl tag list %v", want, theirs)
		}
		layout := strings.Join(resultsOf(rep, "layout"), "\n")
		for _, w := range []string{"ok: layout upstream: 2 revision(s), 1 tag(s) in every namespace",
			"revision default: istio-system/istiod, Istio 1.31", "revision 1-27-1: istio-system/istiod-1-27-1, Istio 1.31", "tags prod"} {
			if !strings.Contains(layout, w) {
				t.Errorf("precheck's layout lacks %q:\n%s", w, layout)
			}
		}
	})

	// Pods in a namespace labelled istio-injection=enabled (the default
	// revision), one labelled with the tag prod (1-27-1), one with the
	// revision 1-27-1 itself, and an unlabelled one whose Deployment opts
	// in by its pod template's istio.io/rev=1-27-1.
	for ns, labels := range map[string]map[string]string{"legacy": {"istio-injection": "enabled"}, "shop": {"istio.io/rev": "prod"}, "direct": {"istio.io/rev": "1-27-1"}, "optin": nil} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if ns != "optin" {
			createDeployment(t, kc, ns, "web", 1, nil, nil)
		}
	}
	optIn := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "optin"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "istio.io/rev": "1-27-1"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
	if _, err := kc.AppsV1().Deployments("optin").Create(ctx, optIn, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPods := func(ns, wantInit string) {
		t.Helper()
		waitFor(t, 2*time.Minute, ns+" pods injected", func(ctx context.Context) (bool, string) {
			pods, err := podsOf(ctx, kc, ns, "web")
			if err != nil || len(pods) == 0 {
				return false, fmt.Sprint(err)
			}
			p := pods[0]
			return names(p.Spec.InitContainers) == wantInit, names(p.Spec.InitContainers) + " / " + names(p.Spec.Containers)
		})
	}

	t.Run("status classifies every pod with the revision it resolved to", func(t *testing.T) {
		// The real istiod leaves ENABLE_NATIVE_SIDECARS unset and every
		// kubelet is 1.34: Istio 1.27+ injects native by itself.
		for _, ns := range []string{"legacy", "shop", "direct", "optin"} {
			waitPods(ns, "istio-init,istio-proxy")
		}
		r := mustMeshaddon(t, "status", "-A", "-o", "json", "--kubeconfig", kcfg)
		var out struct {
			Items []struct{ Namespace, Name, Mode, Revision string }
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("status -o json: %v", err)
		}
		got := map[string]string{}
		for _, p := range out.Items {
			if p.Namespace == "legacy" || p.Namespace == "shop" || p.Namespace == "optin" {
				got[p.Namespace] = p.Mode + " " + p.Revision
			}
		}
		if got["legacy"] != "native default" || got["shop"] != "native 1-27-1" || got["optin"] != "native 1-27-1" {
			t.Errorf("status: %v, want legacy native by default, shop and optin native by 1-27-1", got)
		}
		r = mustMeshaddon(t, "status", "-n", "shop", "--kubeconfig", kcfg)
		if !strings.Contains(r.stderr, "mesh: layout upstream; revisions default (Istio 1.31), 1-27-1 (Istio 1.31; tags prod)") {
			t.Errorf("status names no mesh: %s", r)
		}
	})

	t.Run("precheck proves admission where Istio injects: by namespace label, tag, revision, and pod label", func(t *testing.T) {
		rep, _ := runPrecheck(t, cluster)
		var ok *precheckResult
		var all []string
		for _, g := range rep.Groups {
			for _, c := range g.Checks {
				if g.Name != "Admission" {
					continue
				}
				for i, r := range c.Results {
					all = append(all, r.String())
					if r.Status == "ok" {
						ok = &c.Results[i]
					}
				}
			}
		}
		if ok == nil {
			t.Fatalf("precheck's Admission group proves nothing:\n%s", strings.Join(all, "\n"))
		}
		proven := map[string]bool{}
		for _, ns := range ok.Namespaces {
			proven[ns] = true
		}
		// istio-injection=enabled, the tag prod, the revision 1-27-1; not the
		// unlabelled namespace (its probe would carry no injection label),
		// nor istiod's own.
		if !proven["legacy"] || !proven["shop"] || !proven["direct"] || proven["optin"] || proven["istio-system"] {
			t.Errorf("admission proven in %v, want legacy, shop and direct, not optin or istio-system:\n%s", ok.Namespaces, strings.Join(all, "\n"))
		}
		// The opted-in workload is dry-run as it is, through rev.object.
		if want := "admitted as it is: optin/Deployment/web (opted in by its pod labels: revision 1-27-1)"; !strings.Contains(strings.Join(ok.Details, "\n"), want) ||
			!strings.Contains(ok.Message, "1 of 1 kinds of workload opted in by their own pod labels") {
			t.Errorf("admission does not name the opted-in workload (%q):\n%s", want, strings.Join(all, "\n"))
		}
	})

	t.Run("an old node makes new pods classic: precheck and the observe manager name it", func(t *testing.T) {
		mustMeshaddon(t, "local", "nodepool", "add", "old", "--version", "v1.32.9", "--count", "1", "--name", cluster)
		rep, _ := runPrecheck(t, cluster)
		inj := strings.Join(resultsOf(rep, "ENABLE_NATIVE_SIDECARS"), "\n")
		for _, w := range []string{"istiod: ENABLE_NATIVE_SIDECARS is unset", "resolves to classic", "classic for every new pod: node", "(kubelet v1.32.9) older than 1.33", "(pool old): kubelet v1.32.9"} {
			if !strings.Contains(inj, w) {
				t.Errorf("precheck's injection lacks %q:\n%s", w, inj)
			}
		}
		waitFor(t, time.Minute, "the observe manager's verdict", func(ctx context.Context) (bool, string) {
			rep, _ := runPrecheck(t, cluster)
			v := strings.Join(resultsOf(rep, "manager's verdict (observe mode)"), "\n")
			return strings.Contains(v, "would set ENABLE_NATIVE_SIDECARS=false on istio-system/istiod (it has unset)") &&
				strings.Contains(v, "pool old has 1 node(s) on kubelet v1.32.9"), v
		})
		events := mustMeshaddon(t, "local", "kubectl", "--name", cluster, "--", "get", "events", "-n", "default", "-o", "custom-columns=REASON:.reason,MESSAGE:.message").stdout
		if !strings.Contains(events, "WouldSetNativeSidecars") || !strings.Contains(events, "OldKubeletNodes") {
			t.Errorf("events lack WouldSetNativeSidecars and OldKubeletNodes:\n%s", events)
		}
		// The real istiod agrees: a new pod is now injected classic.
		for _, ns := range []string{"shop", "optin"} {
			if err := kc.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=web"}); err != nil {
				t.Fatal(err)
			}
			waitPods(ns, "istio-init")
		}
	})

	t.Run("migrate restarts only classic workloads whose revision injects native", func(t *testing.T) {
		// With the old node, no revision injects native: nothing to restart,
		// though shop's pod is classic.
		r := mustMeshaddon(t, "migrate", "-A", "--dry-run", "--skip-precheck", "--kubeconfig", kcfg)
		if strings.Contains(r.stdout, "restart shop/") || strings.Contains(r.stdout, "restart legacy/") || strings.Contains(r.stdout, "restart optin/") {
			t.Errorf("migrate would restart while every revision is classic:\n%s", r)
		}
		// Its classic pods would come back classic: reported with why.
		if !strings.Contains(r.stdout, "report optin/Deployment/web (1 classic pods): not restarted: its pod template resolves to revision 1-27-1 (pod label istio.io/rev=1-27-1), which injects classic sidecars now") {
			t.Errorf("the plan does not say why optin's classic pod is not restarted:\n%s", r)
		}
		// The old pool gone, Istio injects native again by itself: shop's
		// classic pod and optin's (opted in by its own pod label) are
		// restarted, legacy's native one is not.
		mustMeshaddon(t, "local", "nodepool", "delete", "old", "--name", cluster)
		waitFor(t, time.Minute, "a plan restarting shop and optin only", func(ctx context.Context) (bool, string) {
			r := meshaddon(t, "migrate", "-A", "--dry-run", "--skip-precheck", "--kubeconfig", kcfg)
			return strings.Contains(r.stdout, "restart shop/") && strings.Contains(r.stdout, "restart optin/Deployment/web") && !strings.Contains(r.stdout, "legacy/"), r.String()
		})
		before := generations(t, kc, "optin")
		r = mustMeshaddon(t, "migrate", "-n", "optin", "--skip-precheck", "--kubeconfig", kcfg)
		checkRestartedOnce(t, before, generations(t, kc, "optin"))
		if m := podModes(t, kc, "optin"); m[inventory.Native] != 1 || m[inventory.Classic] != 0 {
			t.Errorf("optin after migrate: %v, want its one pod native\n%s", m, r)
		}
		if !strings.Contains(r.stdout, "migrated") {
			t.Errorf("migrate's table does not say optin/web migrated:\n%s", r)
		}
	})

	t.Run("observe mode wrote no istiod", func(t *testing.T) {
		if after := istiodVersions(); after != before {
			t.Errorf("istiod Deployments changed: %s, then %s", before, after)
		}
	})

	t.Run(`the real istiod reads "1" as false, as precheck says`, func(t *testing.T) {
		// Istio 1.27+ takes exactly true, false or auto (pilot/pkg/features
		// pilot.go); every kubelet is 1.34 again, yet "1" means classic.
		patch := `{"spec":{"template":{"spec":{"containers":[{"name":"discovery","env":[{"name":"ENABLE_NATIVE_SIDECARS","value":"1"}]}]}}}}`
		if _, err := kc.AppsV1().Deployments("istio-system").Patch(ctx, "istiod-1-27-1", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitRollout(t, kc, "istio-system", "istiod-1-27-1")
		if err := kc.CoreV1().Pods("shop").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=web"}); err != nil {
			t.Fatal(err)
		}
		waitPods("shop", "istio-init")
		rep, _ := runPrecheck(t, cluster)
		inj := strings.Join(resultsOf(rep, "ENABLE_NATIVE_SIDECARS"), "\n")
		if !strings.Contains(inj, `istiod-1-27-1: ENABLE_NATIVE_SIDECARS="1": "1" is not true, false or auto: istiod 1.27+ reads it as false`) ||
			!strings.Contains(inj, "fail: istiod-1-27-1: ENABLE_NATIVE_SIDECARS=1: istiod injects classic sidecars") {
			t.Errorf("precheck does not read \"1\" as the real istiod does:\n%s", inj)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"manager", "--layout", "istio", "--kubeconfig", kcfg}, `--layout: unknown layout "istio": want aks`},
			{[]string{"local", "up", "--name", "bad15", "--layout", "upstream", "--revision", "1-27-1", "--tag", "prod=1-28-0"}, `points at revision "1-28-0", which is not installed`},
			{[]string{"local", "up", "--name", "bad15", "--layout", "istio"}, `unknown layout "istio"`},
		} {
			r := meshaddon(t, c.args...)
			if r.code != 2 || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "goroutine") {
				t.Errorf("%v: want exit 2 with %q, got %s", c.args, c.want, r)
			}
		}
	})
}
