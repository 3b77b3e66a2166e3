package status_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/meshaddon/meshaddon/internal/cli/exitcode"
	"github.com/meshaddon/meshaddon/internal/cli/status"
	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/testenv"
)

// status's -o against a real API server (envtest), compared with what
// kubectl itself prints for the same pods.
func TestOutputFormatsAsKubectl(t *testing.T) {
	ctx := context.Background()
	env := testenv.Environment(t)
	kcfg := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcfg, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	kc := kubernetes.NewForConfigOrDie(env.Config)
	sidecar := corev1.Container{Name: "istio-proxy", Image: "proxy"}
	always := corev1.ContainerRestartPolicyAlways
	native := sidecar
	native.RestartPolicy = &always
	annotated := map[string]string{inventory.StatusAnnotation: `{"containers":["istio-proxy"],"revision":"asm-1-27"}`}
	for _, p := range []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart", Annotations: annotated},
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{native}, Containers: []corev1.Container{{Name: "app", Image: "app"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: annotated},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}, sidecar}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "plain"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "tools", Name: "debug"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sh", Image: "sh"}}}},
	} {
		if _, err := kc.CoreV1().Namespaces().Get(ctx, p.Namespace, metav1.GetOptions{}); err != nil {
			if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := kc.CoreV1().Pods(p.Namespace).Create(ctx, &p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	run := func(args ...string) (string, error) {
		t.Helper()
		flags := genericclioptions.NewConfigFlags(true)
		flags.KubeConfig = &kcfg
		streams, _, out, _ := genericiooptions.NewTestIOStreams()
		cmd := status.NewCommand(flags, streams)
		// -n as the root command's flag would set it.
		for i, a := range args {
			if a == "-n" {
				flags.Namespace = &args[i+1]
				args = append(args[:i:i], args[i+2:]...)
				break
			}
		}
		cmd.SetArgs(args)
		cmd.SetContext(ctx)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.Execute()
		return out.String(), err
	}
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(env.BinaryAssetsDirectory, "kubectl"), append(args, "--kubeconfig", kcfg)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("status %v: %v", args, err)
		}
		return out
	}

	// Our rows name the pod .name where kubectl's pods have .metadata.name;
	// otherwise both print the same, pages or not.
	for _, chunk := range []string{"500", "1"} {
		for _, c := range []struct{ ours, kubectls []string }{
			{[]string{"-n", "shop", "-o", "jsonpath={.items[*].name}"}, []string{"get", "pods", "-n", "shop", "-o", "jsonpath={.items[*].metadata.name}"}},
			{[]string{"-A", "-o", "jsonpath={range .items[*]}{.namespace}/{.name}{\"\\n\"}{end}"}, []string{"get", "pods", "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}"}},
			{[]string{"-n", "shop", "-o", "custom-columns=NAME:.name"}, []string{"get", "pods", "-n", "shop", "-o", "custom-columns=NAME:.metadata.name"}},
			{[]string{"-A", "-o", "custom-columns=NAMESPACE:.namespace,NAME:.name,CONTAINERS:.containers", "--no-headers"},
				[]string{"get", "pods", "-A", "-o", "custom-columns=NAMESPACE:.metadata.namespace,NAME:.metadata.name,CONTAINERS:.spec.containers[*].name", "--no-headers"}},
			{[]string{"-A", "-o", "name"}, []string{"get", "pods", "-A", "-o", "name"}},
			{[]string{"-n", "shop", "-o", "go-template={{range .items}}{{.name}} {{end}}"}, []string{"get", "pods", "-n", "shop", "-o", "go-template={{range .items}}{{.metadata.name}} {{end}}"}},
		} {
			ours := mustRun(append(c.ours, "--chunk-size", chunk)...)
			theirs := kubectl(c.kubectls...)
			if (chunk == "1" || c.ours[0] == "-A") && strings.Contains(strings.Join(c.ours, " "), "custom-columns") {
				// Several pages (-A lists each namespace by itself):
				// columns widen as pages arrive, as kubectl get --watch
				// prints. Compare the cells.
				ours, theirs = strings.Join(strings.Fields(ours), " "), strings.Join(strings.Fields(theirs), " ")
			}
			if ours != theirs {
				t.Errorf("--chunk-size %s status %v:\n%s\nkubectl %v:\n%s", chunk, c.ours, ours, c.kubectls, theirs)
			}
		}
	}

	// -o json is kubectl's List of our rows, page by page or not.
	var list struct {
		APIVersion, Kind string
		Items            []struct{ Namespace, Name, Mode, Revision string }
	}
	one := mustRun("-A", "-o", "json", "--chunk-size", "1")
	if err := json.Unmarshal([]byte(one), &list); err != nil {
		t.Fatal(err)
	}
	if list.APIVersion != "v1" || list.Kind != "List" || len(list.Items) != 4 {
		t.Errorf("status -A -o json: %s", one)
	}
	if all := mustRun("-A", "-o", "json"); all != one {
		t.Errorf("-o json differs by page size:\n%s\n%s", all, one)
	}
	modes := mustRun("-n", "shop", "-o", `jsonpath={range .items[*]}{.name}={.mode}{"\n"}{end}`)
	if modes != "cart=native\nweb=classic\nplain=none\n" && modes != "cart=native\nplain=none\nweb=classic\n" {
		t.Errorf("modes: %q", modes)
	}

	// --workloads: json stays an array; the other formats read it as a List.
	wl := mustRun("-n", "shop", "--workloads", "-o", "json")
	var ws []struct{ Kind, Name string }
	if err := json.Unmarshal([]byte(wl), &ws); err != nil || len(ws) != 3 {
		t.Errorf("--workloads -o json is an array of 3: %v\n%s", err, wl)
	}
	if got := mustRun("-n", "shop", "--workloads", "-o", "jsonpath={.items[*].name}"); len(strings.Fields(got)) != 3 {
		t.Errorf("--workloads jsonpath: %q", got)
	}
	if got := mustRun("-n", "shop", "--workloads", "--mode", "classic", "-o", "name"); got != "pod/web\n" {
		t.Errorf("--workloads -o name: %q", got)
	}
	// The table and wide, as before.
	if got := mustRun("-n", "shop", "--mode", "native"); !strings.HasPrefix(got, "NAME   INIT          CONTAINERS   MODE     REVISION\ncart   istio-proxy   app          native   asm-1-27\n") {
		t.Errorf("table:\n%s", got)
	}
	if got := mustRun("-n", "shop", "--mode", "native", "-o", "wide"); !strings.Contains(got, "OWNER") || !strings.Contains(got, "Pod/cart") {
		t.Errorf("wide:\n%s", got)
	}

	// An unknown format is kubectl's usage error.
	_, err := run("-o", "xml")
	var ec *exitcode.Error
	if !errors.As(err, &ec) || ec.Code != exitcode.Usage || !strings.Contains(err.Error(), `unable to match a printer suitable for the output format "xml", allowed formats are: custom-columns,`) {
		t.Errorf("-o xml: %v", err)
	}
}
