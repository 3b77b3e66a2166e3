package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

func pod(name string, init, containers []corev1.Container, annotations, labels map[string]string, owner *metav1.OwnerReference) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: annotations, Labels: labels},
		Spec:       corev1.PodSpec{InitContainers: init, Containers: containers},
	}
	if owner != nil {
		owner.Controller = ptr.To(true)
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return p
}

var (
	app        = corev1.Container{Name: "app"}
	istioInit  = corev1.Container{Name: "istio-init"}
	proxy      = corev1.Container{Name: "istio-proxy"}
	nativeProx = corev1.Container{Name: "istio-proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}
	status     = map[string]string{StatusAnnotation: `{"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"asm-1-27"}`}
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		pod                        *corev1.Pod
		mode                       Mode
		init, containers, revision string
		owner                      string
	}{
		{pod("native", []corev1.Container{istioInit, nativeProx}, []corev1.Container{app}, status, nil, nil), Native, "istio-init,istio-proxy", "app", "asm-1-27", "Pod/native"},
		{pod("classic", []corev1.Container{istioInit}, []corev1.Container{app, proxy}, status, nil,
			&metav1.OwnerReference{Kind: "ReplicaSet", Name: "web-7d9f8c6b5"}), Classic, "istio-init", "app,istio-proxy", "asm-1-27", "ReplicaSet/web-7d9f8c6b5"},
		{pod("web-7d9f8c6b5-abcde", nil, []corev1.Container{app, proxy}, nil, map[string]string{"pod-template-hash": "7d9f8c6b5", RevisionLabel: "asm-1-26"},
			&metav1.OwnerReference{Kind: "ReplicaSet", Name: "web-7d9f8c6b5"}), Classic, "<none>", "app,istio-proxy", "asm-1-26", "Deployment/web"},
		// An init container named istio-proxy without restartPolicy Always
		// is not a sidecar: it would block the pod.
		{pod("blocking", []corev1.Container{proxy}, []corev1.Container{app}, nil, nil, &metav1.OwnerReference{Kind: "Job", Name: "report-29000000"}), None, "istio-proxy", "app", "", "Job/report-29000000"},
		{pod("plain", nil, []corev1.Container{app}, nil, map[string]string{RevisionLabel: "asm-1-27"}, &metav1.OwnerReference{Kind: "StatefulSet", Name: "db"}), None, "<none>", "app", "", "StatefulSet/db"},
	} {
		got := Classify(tc.pod)
		if got.Mode != tc.mode || got.Init != tc.init || got.Containers != tc.containers || got.Revision != tc.revision || got.Owner.String() != tc.owner {
			t.Errorf("%s: got mode %s init %q containers %q revision %q owner %s", tc.pod.Name, got.Mode, got.Init, got.Containers, got.Revision, got.Owner)
		}
	}
}

func TestSummarizerFoldsJobsIntoCronJobs(t *testing.T) {
	s := NewSummarizer()
	job := Workload{Kind: "Job", Namespace: "shop", Name: "report-29000000"}
	web := Workload{Kind: "Deployment", Namespace: "shop", Name: "web"}
	s.Add([]Pod{
		{Owner: web, Mode: Classic, Revision: "asm-1-27"},
		{Owner: web, Mode: Native, Revision: "asm-1-27"},
		{Owner: job, Mode: Classic, Revision: "asm-1-26"},
	})
	s.Add([]Pod{{Owner: job, Mode: None}})
	got := s.Workloads(map[Workload]Workload{job: {Kind: "CronJob", Namespace: "shop", Name: "report"}})
	want := "[{CronJob/report 0 1 1 [asm-1-26]} {Deployment/web 1 1 0 [asm-1-27]}]"
	if s := fmt.Sprint(summaries(got)); s != want {
		t.Errorf("got %s\nwant %s", s, want)
	}
}

type short struct {
	W                     string
	Native, Classic, None int
	Revs                  []string
}

func summaries(ws []WorkloadSummary) []short {
	out := make([]short, len(ws))
	for i, w := range ws {
		out[i] = short{w.String(), w.Native, w.Classic, w.None, w.Revisions}
	}
	return out
}

func TestParseMode(t *testing.T) {
	if _, err := ParseMode("half"); err == nil {
		t.Error("ParseMode(half) accepted")
	}
	if m, err := ParseMode("classic"); err != nil || m != Classic {
		t.Errorf("ParseMode(classic) = %v %v", m, err)
	}
}

func TestModeOfStatus(t *testing.T) {
	for annotation, want := range map[string]Mode{
		// As istiod writes it for a native and a classic injection.
		`{"initContainers":["istio-init","istio-proxy"],"containers":null,"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"asm-1-27"}`: Native,
		`{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"asm-1-27"}`:    Classic,
		``:                None,
		`not json`:        None,
		`{"revision":""}`: None,
	} {
		if got := ModeOfStatus(annotation); got != want {
			t.Errorf("ModeOfStatus(%q) = %s, want %s", annotation, got, want)
		}
	}
}

func TestEachPageInOrder(t *testing.T) {
	var objs []runtime.Object
	for _, ns := range []string{"c", "a", "b"} {
		for i := range 3 {
			objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i)}})
		}
	}
	kube := fake.NewClientset(objs...)
	var got []string
	err := EachPageInOrder(context.Background(), kube, []string{"a", "b", "c"}, ListOptions{PageSize: 2}, 3, func(rows []Pod) error {
		for _, r := range rows {
			got = append(got, r.Namespace+"/"+r.Name)
		}
		return nil
	})
	want := "a/p0 a/p1 a/p2 b/p0 b/p1 b/p2 c/p0 c/p1 c/p2"
	if err != nil || strings.Join(got, " ") != want {
		t.Fatalf("got %v, %v; want %s", got, err, want)
	}
	// A failing namespace stops the listing with its error.
	kube.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "b" {
			return true, nil, errors.New("b is broken")
		}
		return false, nil, nil
	})
	got = nil
	err = EachPageInOrder(context.Background(), kube, []string{"a", "b", "c"}, ListOptions{}, 2, func(rows []Pod) error {
		for _, r := range rows {
			got = append(got, r.Namespace)
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "b is broken") || slices.Contains(got, "c") {
		t.Fatalf("got %v, %v; want a's pods, then b's error", got, err)
	}
}
