package migrate

import (
	"context"
	"sort"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// On upstream Istio's layout migrate restarts only the classic workloads
// whose revision injects native now, by each revision's Istio version, in
// the namespaces Istio's webhooks select (issue 15): the default revision
// on Istio 1.26 leaving ENABLE_NATIVE_SIDECARS unset injects classic, 1-27-1
// on 1.27 with every kubelet 1.33+ injects native.
func TestPlanUpstreamLayout(t *testing.T) {
	istiod := func(name, rev, image string) *appsv1.Deployment {
		l := map[string]string{"app": "istiod"}
		if rev != "" {
			l["istio.io/rev"] = rev
		}
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: name, Labels: l},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: image}}}}}}
	}
	ns := func(name string, labels ...string) *corev1.Namespace {
		l := map[string]string{}
		for i := 0; i+1 < len(labels); i += 2 {
			l[labels[i]] = labels[i+1]
		}
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	}
	// A classic pod of a Deployment whose object is not there: its own
	// labels stand for its template.
	classic := func(namespace, deploy, revision string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: deploy + "-abc-x", Labels: map[string]string{"app": deploy, "pod-template-hash": "abc"},
				Annotations:     map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"],"revision":"` + revision + `"}`},
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: deploy + "-abc", Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}},
		}
	}
	objs := []runtime.Object{
		istiod("istiod", "", "docker.io/istio/pilot:1.26.3"),
		istiod("istiod-1-27-1", "1-27-1", "docker.io/istio/pilot:1.27.1-distroless"),
		&admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-revision-tag-prod", Labels: map[string]string{"istio.io/tag": "prod", "istio.io/rev": "1-27-1"}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.34.4"}}},
		ns("istio-system"),
		ns("legacy", "istio-injection", "enabled"), classic("legacy", "web", "default"),
		ns("shop", "istio.io/rev", "prod"), classic("shop", "cart", "1-27-1"),
		ns("pinned", "istio.io/rev", "1-27-1"), classic("pinned", "api", "1-27-1"),
		// istio-injection=disabled beats istio.io/rev: not in the mesh.
		ns("off", "istio-injection", "disabled", "istio.io/rev", "1-27-1"), classic("off", "batch", "1-27-1"),
		ns("plain"), classic("plain", "other", "1-27-1"),
	}
	p, err := BuildPlan(context.Background(), fake.NewClientset(objs...), Scope{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	why := map[string]string{}
	for _, it := range p.Items {
		if it.Action == ActionRestart {
			got = append(got, it.Namespace+"/"+it.Name)
		} else {
			why[it.Namespace] = it.Advice
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != "pinned/api shop/cart" {
		t.Errorf("plan restarts %v, want the classic workloads of 1-27-1 in shop (tag prod) and pinned only", got)
	}
	// The other classic workloads are reported with why.
	for ns, want := range map[string]string{
		"legacy": "resolves to revision default (namespace label istio-injection=enabled), which injects classic sidecars now",
		"off":    "not injected now (namespace label istio-injection=disabled)",
		"plain":  "not injected now (no injection label)",
	} {
		if !strings.Contains(why[ns], want) {
			t.Errorf("%s: reported as %q, want it to say %q", ns, why[ns], want)
		}
	}
	if strings.Join(p.NativeRevisions, ",") != "1-27-1" {
		t.Errorf("native revisions %v, want 1-27-1 only (Istio 1.26 reads unset as false)", p.NativeRevisions)
	}

	// The default revision upgraded to 1.27: its pods (status revision
	// "default") are restarted too.
	objs[0] = istiod("istiod", "", "docker.io/istio/pilot:1.27.2")
	p, err = BuildPlan(context.Background(), fake.NewClientset(objs...), Scope{})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, it := range p.Items {
		if it.Action == ActionRestart {
			got = append(got, it.Namespace)
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != "legacy pinned shop" || strings.Join(p.NativeRevisions, ",") != "1-27-1,default" {
		t.Errorf("default revision on 1.27: plan restarts in %v, native revisions %v; want legacy, pinned and shop, 1-27-1 and default", got, p.NativeRevisions)
	}
}

// Pods opted in by their own labels (istio.io/rev naming a revision or a
// tag, sidecar.istio.io/inject=true) in a namespace without injection labels
// are restarted when that revision injects native (issue 15); a workload
// whose template no longer resolves to a native revision is reported, not
// restarted; sidecar.istio.io/inject=false is never injected.
func TestPlanPodOptedIn(t *testing.T) {
	istiod := func(name, rev, image string) *appsv1.Deployment {
		l := map[string]string{"app": "istiod"}
		if rev != "" {
			l["istio.io/rev"] = rev
		}
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: name, Labels: l},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: image}}}}}}
	}
	// A Deployment whose template has tmplLabels, and a classic pod of it
	// created when the template had podLabels, injected by revision.
	workload := func(ns, name, revision string, tmplLabels, podLabels map[string]string) []runtime.Object {
		tl := map[string]string{"app": name}
		for k, v := range tmplLabels {
			tl[k] = v
		}
		pl := map[string]string{"app": name, "pod-template-hash": "abc"}
		for k, v := range podLabels {
			pl[k] = v
		}
		return []runtime.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: tl}}}},
			&corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-abc-x", Labels: pl,
					Annotations:     map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"],"revision":"` + revision + `"}`},
					OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: name + "-abc", Controller: ptr.To(true)}}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}},
			},
		}
	}
	rev := map[string]string{"istio.io/rev": "1-27-1"}
	objs := []runtime.Object{
		istiod("istiod", "", "docker.io/istio/pilot:1.27.1"),
		istiod("istiod-1-26", "1-26", "docker.io/istio/pilot:1.26.3"),
		istiod("istiod-1-27-1", "1-27-1", "docker.io/istio/pilot:1.27.1"),
		&admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-revision-tag-prod", Labels: map[string]string{"istio.io/tag": "prod", "istio.io/rev": "1-27-1"}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.34.4"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "off", Labels: map[string]string{"istio-injection": "disabled"}}},
	}
	for _, w := range [][]runtime.Object{
		workload("plain", "byrev", "1-27-1", rev, rev),
		workload("plain", "bytag", "1-27-1", map[string]string{"istio.io/rev": "prod"}, map[string]string{"istio.io/rev": "prod"}),
		workload("plain", "byinject", "default", map[string]string{"sidecar.istio.io/inject": "true"}, map[string]string{"sidecar.istio.io/inject": "true"}),
		// Its namespace's istio-injection=disabled beats its own label.
		workload("off", "shut", "1-27-1", rev, rev),
		// Injected before its label was removed: nothing injects it now,
		// reported.
		workload("plain", "dropped", "1-27-1", nil, rev),
		// Moved to a classic revision in its template since: reported.
		workload("plain", "moved", "1-27-1", map[string]string{"istio.io/rev": "1-26"}, rev),
		// No injection label: a leftover of an old injection.
		workload("plain", "bare", "1-27-1", nil, nil),
	} {
		objs = append(objs, w...)
	}
	p, err := BuildPlan(context.Background(), fake.NewClientset(objs...), Scope{MaxSurgePods: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range p.Items {
		got = append(got, it.Action+" "+it.Namespace+"/"+it.Name)
		if it.Name == "moved" && !strings.Contains(it.Advice, "resolves to revision 1-26 (pod label istio.io/rev=1-26), which injects classic") {
			t.Errorf("moved: advice %q does not name the classic revision its template resolves to", it.Advice)
		}
		if it.Name == "dropped" && !strings.Contains(it.Advice, "not injected now (no injection label)") {
			t.Errorf("dropped: advice %q does not say its template is not injected", it.Advice)
		}
	}
	sort.Strings(got)
	// shut (istio-injection=disabled beats its label) and bare (no label)
	// would come back without a sidecar: reported.
	want := "report off/shut,report plain/bare,report plain/dropped,report plain/moved,restart plain/byinject,restart plain/byrev,restart plain/bytag"
	if strings.Join(got, ",") != want {
		t.Errorf("plan: %v\nwant %s", got, want)
	}
}

// What a restart injects is decided by the template resolved now, not by
// the revision that injected the running pods (issue 15): the pods of a
// namespace whose tag moved from a classic revision to a native one are
// restarted, as are pods of a revision since removed; a classic pod whose
// template resolves to a classic revision is reported (a restart brings it
// back classic), and so is one pinned classic by its template.
func TestPlanRevisionNow(t *testing.T) {
	istiod := func(name, rev, image string) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: name, Labels: map[string]string{"app": "istiod", "istio.io/rev": rev}},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: image}}}}}}
	}
	tag := func(name, rev string) *admissionv1.MutatingWebhookConfiguration {
		return &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-revision-tag-" + name, Labels: map[string]string{"istio.io/tag": name, "istio.io/rev": rev}}}
	}
	// A namespace labelled istio.io/rev=nsRev with a Deployment whose
	// template has annotations, and a classic pod of it injected by
	// revision.
	workload := func(ns, nsRev, name, revision string, annotations map[string]string) []runtime.Object {
		return []runtime.Object{
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"istio.io/rev": nsRev}}},
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}, Annotations: annotations}}}},
			&corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-abc-x", Labels: map[string]string{"app": name, "pod-template-hash": "abc"},
					Annotations:     map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"],"revision":"` + revision + `"}`},
					OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: name + "-abc", Controller: ptr.To(true)}}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}},
			},
		}
	}
	objs := []runtime.Object{
		istiod("istiod-1-26", "1-26", "docker.io/istio/pilot:1.26.3"),
		istiod("istiod-1-27-1", "1-27-1", "docker.io/istio/pilot:1.27.1"),
		// prod was on 1-26 when shop's pods were injected, now on 1-27-1;
		// stable stays on 1-26.
		tag("prod", "1-27-1"), tag("stable", "1-26"),
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.34.4"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}},
	}
	for _, w := range [][]runtime.Object{
		workload("shop", "prod", "cart", "1-26", nil),
		// Injected by 1-25, removed since: its tag injects native now.
		workload("gone", "prod", "api", "1-25", nil),
		// Classic by a classic revision, directly and through a tag.
		workload("old", "1-26", "web", "1-26", nil),
		workload("steady", "stable", "db", "1-26", nil),
		// Injected classic by 1-27-1 (before it went native) and since moved
		// to the tag on 1-26: new pods would be classic again.
		workload("back", "stable", "queue", "1-27-1", nil),
		// Its template pins classic sidecars.
		workload("pin", "prod", "legacy", "1-27-1", map[string]string{"sidecar.istio.io/nativeSidecar": "false"}),
		// Its template opts out of injection by annotation.
		workload("optout", "prod", "batch", "1-27-1", map[string]string{"sidecar.istio.io/inject": "false"}),
	} {
		objs = append(objs, w...)
	}
	p, err := BuildPlan(context.Background(), fake.NewClientset(objs...), Scope{MaxSurgePods: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range p.Items {
		got[it.Namespace] = it.Action + ": " + it.Advice
	}
	for ns, want := range map[string]string{
		"shop":   "restart: ",
		"gone":   "restart: ",
		"old":    "report: not restarted: its pod template resolves to revision 1-26 (namespace label istio.io/rev=1-26), which injects classic sidecars now, so new pods would be classic again",
		"steady": "report: not restarted: its pod template resolves to revision 1-26 (tag stable, namespace label istio.io/rev=stable), which injects classic sidecars now",
		"back":   "report: not restarted: its pod template resolves to revision 1-26 (tag stable,",
		"pin":    "report: not restarted: its pod template pins classic sidecars (annotation sidecar.istio.io/nativeSidecar=false)",
		"optout": "report: not restarted: its pod template has the annotation sidecar.istio.io/inject=false, so new pods get no sidecar at all",
	} {
		if !strings.HasPrefix(got[ns], want) {
			t.Errorf("%s: %q\nwant %q", ns, got[ns], want)
		}
	}
	if len(got) != 7 {
		t.Errorf("plan: %v, want an item for each of the 7 classic workloads", got)
	}
	// A reported workload's restart facts are not gathered.
	for _, it := range p.Items {
		if it.Action == ActionReport && len(it.Notes) > 0 {
			t.Errorf("%s/%s reported, with restart notes %v", it.Namespace, it.Name, it.Notes)
		}
	}
}

// With Istio's enableNamespacesByDefault (the "auto." webhook) a classic
// workload in a namespace without injection labels is in the mesh: it is
// restarted when the default revision injects native (issue 15).
func TestPlanEnableNamespacesByDefault(t *testing.T) {
	ns := func(name string, labels ...string) *corev1.Namespace {
		l := map[string]string{"kubernetes.io/metadata.name": name}
		for i := 0; i+1 < len(labels); i += 2 {
			l[labels[i]] = labels[i+1]
		}
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	}
	classic := func(namespace string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "web-abc-x", Labels: map[string]string{"app": "web", "pod-template-hash": "abc"},
				Annotations:     map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"],"revision":"default"}`},
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-abc", Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}},
		}
	}
	none := metav1.LabelSelectorOpDoesNotExist
	auto := &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Labels: map[string]string{"istio.io/rev": "default"}},
		Webhooks: []admissionv1.MutatingWebhook{{Name: "auto.sidecar-injector.istio.io",
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "istio-injection", Operator: none}, {Key: "istio.io/rev", Operator: none},
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}}}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "sidecar.istio.io/inject", Operator: none}, {Key: "istio.io/rev", Operator: none}}}}},
	}
	objs := []runtime.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istiod", Labels: map[string]string{"app": "istiod"}},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: "docker.io/istio/pilot:1.27.1"}}}}}},
		auto,
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.34.4"}}},
		ns("istio-system"), ns("shop"), classic("shop"), ns("off", "istio-injection", "disabled"), classic("off"),
	}
	p, err := BuildPlan(context.Background(), fake.NewClientset(objs...), Scope{MaxSurgePods: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range p.Items {
		got[it.Namespace] = it.Action + ": " + it.Advice
	}
	if got["shop"] != "restart: " || !strings.HasPrefix(got["off"], "report: not restarted: its pod template is not injected now (namespace label istio-injection=disabled)") {
		t.Errorf("plan: %v; want shop restarted (enableNamespacesByDefault), off reported", got)
	}
	// Without the auto webhook, shop is outside the mesh.
	p, err = BuildPlan(context.Background(), fake.NewClientset(append(objs[:1:1], objs[2:]...)...), Scope{MaxSurgePods: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range p.Items {
		if it.Action == ActionRestart {
			t.Errorf("without enableNamespacesByDefault: restarts %s/%s", it.Namespace, it.Name)
		}
	}
}
