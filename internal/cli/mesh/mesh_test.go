package mesh_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
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

// get-revisions' -o: json prints status.revisions as the array it is;
// jsonpath and custom-columns read it as kubectl's List.
func TestGetRevisionsOutput(t *testing.T) {
	ctx := context.Background()
	p := &v1alpha1.MeshProfile{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshProfileName}, Spec: v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-26", "asm-1-27"}}}
	if err := cl.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Delete(ctx, p) })
	p.Status.Revisions = []v1alpha1.RevisionStatus{
		{Name: "asm-1-26", Mode: "classic", Reason: "OldNodes", Message: "pool old"},
		{Name: "asm-1-27", Mode: "native", Reason: "Capable", Message: "every node"},
	}
	if err := cl.Status().Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	kcfg := filepath.Join(t.TempDir(), "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: restCfg.Host, CertificateAuthorityData: restCfg.CAData}
	kc.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: restCfg.CertData, ClientKeyData: restCfg.KeyData, Token: restCfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	kc.CurrentContext = "envtest"
	if err := clientcmd.WriteToFile(*kc, kcfg); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		flags := genericclioptions.NewConfigFlags(true)
		flags.KubeConfig = &kcfg
		streams, _, out, _ := genericiooptions.NewTestIOStreams()
		cmd := mesh.NewCommand(flags, streams)
		cmd.SetArgs(append([]string{"get-revisions"}, args...))
		cmd.SetContext(ctx)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("get-revisions %v: %v", args, err)
		}
		return out.String()
	}
	var revs []v1alpha1.RevisionStatus
	if err := json.Unmarshal([]byte(run("-o", "json")), &revs); err != nil || len(revs) != 2 || revs[1].Mode != "native" {
		t.Errorf("-o json: %v %+v", err, revs)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "jsonpath={.items[*].name}"}, "asm-1-26 asm-1-27"},
		{[]string{"-o", "custom-columns=NAME:.name,MODE:.mode"}, "NAME       MODE\nasm-1-26   classic\nasm-1-27   native\n"},
		{[]string{"-o", "custom-columns=NAME:.name", "--no-headers"}, "asm-1-26\nasm-1-27\n"},
		{nil, "REVISION   SIDECARS   REASON\nasm-1-26   classic    OldNodes\nasm-1-27   native     Capable\n"},
		{[]string{"-o", "table"}, "REVISION   SIDECARS   REASON\nasm-1-26   classic    OldNodes\nasm-1-27   native     Capable\n"},
	} {
		if got := run(c.args...); got != c.want {
			t.Errorf("%v:\ngot  %q\nwant %q", c.args, got, c.want)
		}
	}
}
