package inventory

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/testenv"
)

// startAPIServer runs a real kube-apiserver and etcd (envtest, from the
// test bed's cache) for one test.
func startAPIServer(t *testing.T) *rest.Config {
	t.Helper()
	return testenv.Start(t)
}

// expiringProxy stands between the readers and a real API server, on
// 127.0.0.1, and answers the first page request of each listing that
// carries a continue token with the API server's 410 for an expired one.
// With resume set, the 410 carries a token to go on with, as the API
// server's does (here the client's own, which the real server still
// takes); without, none.
type expiringProxy struct {
	resume  bool
	mu      sync.Mutex
	expired map[string]bool // listings (paths) already answered 410
}

func (p *expiringProxy) start(t *testing.T, cfg *rest.Config) *rest.Config {
	t.Helper()
	target, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = transport
	p.expired = map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.URL.Query().Get("continue")
		p.mu.Lock()
		expire := token != "" && !p.expired[r.URL.Path]
		p.expired[r.URL.Path] = p.expired[r.URL.Path] || expire
		p.mu.Unlock()
		if !expire {
			rp.ServeHTTP(w, r)
			return
		}
		status := apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result.").ErrStatus
		status.Kind, status.APIVersion = "Status", "v1"
		if p.resume {
			status.ListMeta.Continue = token
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusGone)
		_ = json.NewEncoder(w).Encode(status)
	}))
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL}
}

func (p *expiringProxy) expiredAny() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.expired) > 0
}

// Every paged reader goes on past an expired continue token and returns
// every object exactly once; without a token to go on with, it fails
// rather than return part of the list.
func TestReadersSurviveAnExpiredContinueToken(t *testing.T) {
	cfg := startAPIServer(t)
	ctx := context.Background()
	kc := kubernetes.NewForConfigOrDie(cfg)
	var pods, nodes, jobs []string
	for _, ns := range []string{"a", "b"} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for i := range 7 {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i)},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "pause"}}}}
			if _, err := kc.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			pods = append(pods, ns+"/"+pod.Name)
		}
	}
	// Nodes and JobOwners read 1000 and 500 a page.
	for i := range 1001 {
		nodes = append(nodes, fmt.Sprintf("n%04d", i))
	}
	for i := range 501 {
		jobs = append(jobs, fmt.Sprintf("a/Job/j%04d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(nodes); i += 4 {
				n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodes[i]}}
				if _, err := kc.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
			for i := w; i < len(jobs); i += 4 {
				j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: strings.TrimPrefix(jobs[i], "a/Job/"),
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: "cron", UID: "u", Controller: ptr.To(true)}}},
					Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
						Containers: []corev1.Container{{Name: "app", Image: "pause"}}}}}}
				if _, err := kc.BatchV1().Jobs("a").Create(ctx, j, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sort.Strings(pods)

	// Each reader's names, in the order read.
	readers := map[string]func(*rest.Config) ([]string, error){
		"EachPage (status)": func(c *rest.Config) ([]string, error) {
			var got []string
			err := EachPage(ctx, kubernetes.NewForConfigOrDie(c), ListOptions{PageSize: 3}, func(rows []Pod) error {
				for _, r := range rows {
					got = append(got, r.Namespace+"/"+r.Name)
				}
				return nil
			})
			return got, err
		},
		"EachMetadataPage (precheck)": func(c *rest.Config) ([]string, error) {
			var got []string
			err := EachMetadataPage(ctx, metadata.NewForConfigOrDie(c), []string{"a", "b"}, 3, 2, func(rows []Pod) error {
				for _, r := range rows {
					got = append(got, r.Namespace+"/"+r.Name)
				}
				return nil
			})
			sort.Strings(got) // namespaces are read at the same time
			return got, err
		},
		"Nodes": func(c *rest.Config) ([]string, error) {
			ns, err := Nodes(ctx, kubernetes.NewForConfigOrDie(c))
			var got []string
			for _, n := range ns {
				got = append(got, n.Name)
			}
			return got, err
		},
		"JobOwners": func(c *rest.Config) ([]string, error) {
			owners, err := JobOwners(ctx, kubernetes.NewForConfigOrDie(c), "")
			var got []string
			for j := range owners {
				got = append(got, j.Namespace+"/"+j.String())
			}
			sort.Strings(got)
			return got, err
		},
	}
	want := map[string][]string{"EachPage (status)": pods, "EachMetadataPage (precheck)": pods, "Nodes": nodes, "JobOwners": jobs}
	for name, read := range readers {
		t.Run(name, func(t *testing.T) {
			p := &expiringProxy{resume: true}
			got, err := read(p.start(t, cfg))
			if err != nil {
				t.Fatalf("past an expired continue token: %v", err)
			}
			if !p.expiredAny() {
				t.Fatal("the listing was not paged: no continue token expired")
			}
			if strings.Join(got, " ") != strings.Join(want[name], " ") {
				t.Errorf("read %d objects, want each of %d once:\ngot  %v\nwant %v", len(got), len(want[name]), got, want[name])
			}

			p = &expiringProxy{resume: false}
			if _, err := read(p.start(t, cfg)); !apierrors.IsResourceExpired(err) {
				t.Errorf("with no token to go on with: err %v, want the 410", err)
			}
		})
	}
}

// A listing that starts from a resourceVersion (not older than it) goes
// on page after page: the API server refuses a continue token sent with a
// resourceVersion, which the token carries already.
func TestEachListPageFromAResourceVersion(t *testing.T) {
	kc := kubernetes.NewForConfigOrDie(startAPIServer(t))
	ctx := context.Background()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: fmt.Sprintf("p%d", i)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "pause"}}}}
		if _, err := kc.CoreV1().Pods("a").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	now, err := kc.CoreV1().Pods("a").List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	opts := metav1.ListOptions{Limit: 3, ResourceVersion: now.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}
	var names []string
	pages := 0
	err = EachListPage(ctx, opts, kc.CoreV1().Pods("a").List, func(l *corev1.PodList) error {
		pages++
		for _, p := range l.Items {
			names = append(names, p.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 7 || pages != 3 {
		t.Errorf("read %d pods in %d pages (%v), want 7 in 3", len(names), pages, names)
	}
}
