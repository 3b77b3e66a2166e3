package mesh_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/cli/mesh"
	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// A real kube-apiserver and etcd (envtest, from the test bed's cache).
var (
	restCfg *rest.Config
	cl      client.Client
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
	cfg, stopEnv, err := testenv.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopEnv()
	restCfg = cfg
	clients, err := kube.ForConfig(restCfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cl = clients.Client
	return m.Run()
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// mesh enable while the manager writes the profile's status (the census
// does, up to once a second): a status write lands between the command's
// read and its write, twice, and the command must still succeed.
func TestEditRetriesWhenStatusChanges(t *testing.T) {
	ctx := context.Background()
	p := &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}, Spec: v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}}}
	if err := cl.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Delete(ctx, p) })

	// census writes status.pods through another client, as the manager does.
	census := func(n int32) error {
		var cur v1alpha1.MeshProfile
		if err := cl.Get(ctx, client.ObjectKeyFromObject(p), &cur); err != nil {
			return err
		}
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Status.Pods = &v1alpha1.PodCensus{ObservedTime: metav1.Now(), Total: n}
		return cl.Status().Patch(ctx, &cur, patch)
	}
	var mu sync.Mutex
	patches, interleaved := 0, 0
	cfg := rest.CopyConfig(restCfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/meshprofiles/"+v1alpha1.MeshProfileName) {
				mu.Lock()
				patches++
				if interleaved < 2 {
					interleaved++
					if err := census(int32(interleaved)); err != nil {
						mu.Unlock()
						return nil, err
					}
				}
				mu.Unlock()
			}
			return rt.RoundTrip(r)
		})
	})
	c, err := kube.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	msg, err := mesh.Edit(ctx, c.Client, func(p *v1alpha1.MeshProfile) (string, error) {
		p.Spec.Revisions = append(p.Spec.Revisions, "asm-1-28")
		return "enabled asm-1-28", nil
	}, true)
	if err != nil {
		t.Fatalf("mesh enable while the status changes: %v", err)
	}
	if msg != "enabled asm-1-28" {
		t.Errorf("message %q", msg)
	}
	var got v1alpha1.MeshProfile
	if err := cl.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Spec.Revisions, []string{"asm-1-27", "asm-1-28"}) {
		t.Errorf("revisions %v, want [asm-1-27 asm-1-28]: the edit must apply once, to a fresh read", got.Spec.Revisions)
	}
	if got.Status.Pods == nil || got.Status.Pods.Total != 2 {
		t.Errorf("the census's status write was lost: %+v", got.Status.Pods)
	}
	if patches != 3 {
		t.Errorf("%d patches, want 3 (two conflicts, then the write)", patches)
	}
}
