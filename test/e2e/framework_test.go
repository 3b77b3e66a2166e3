// Package e2e runs meshaddon end to end on the local test bed: real
// kube-apiserver, etcd, controller-manager and scheduler, kwok nodes and real
// istiod. The binaries are built once into the cache (MESHADDON_CACHE).
package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	// meshaddonBin is the CLI under test, built once by TestMain.
	meshaddonBin string
	// stateDir keeps every cluster of this run, removed at the end.
	stateDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		return 0
	}
	tmp, err := os.MkdirTemp("", "meshaddon-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	meshaddonBin = filepath.Join(tmp, "meshaddon")
	// Both binaries, as make build: the test bed runs the manager-only one.
	build := exec.Command("go", "build", "-o", tmp+string(filepath.Separator), "../../cmd/meshaddon", "../../cmd/meshaddon-manager")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build meshaddon:", err)
		return 1
	}
	stateDir = filepath.Join(tmp, "state")
	os.Setenv("MESHADDON_STATE", stateDir)
	return m.Run()
}

// result is one run of the CLI.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// meshaddon runs the CLI and returns its output and exit code.
func meshaddon(t *testing.T, args ...string) result {
	t.Helper()
	return meshaddonEnv(t, nil, args...)
}

// meshaddonEnv runs the CLI with env (NAME=VALUE) added to the test's.
func meshaddonEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshaddonBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run meshaddon %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustMeshaddon runs the CLI and fails the test unless it exits 0.
func mustMeshaddon(t *testing.T, args ...string) result {
	t.Helper()
	r := meshaddon(t, args...)
	if r.code != 0 {
		t.Fatalf("meshaddon %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// upCluster brings a named cluster up and registers its teardown first,
// so that a cluster that fails halfway up leaves no process behind.
func upCluster(t *testing.T, name string, args ...string) kubernetes.Interface {
	t.Helper()
	t.Cleanup(func() {
		if r := meshaddon(t, "local", "down", "--name", name); r.code != 0 {
			t.Errorf("local down: %s", r)
		}
	})
	mustMeshaddon(t, append([]string{"local", "up", "--name", name}, args...)...)
	return clientFor(t, name)
}

func clientFor(t *testing.T, name string) kubernetes.Interface {
	t.Helper()
	path := strings.TrimSpace(mustMeshaddon(t, "local", "kubeconfig", "--name", name).stdout)
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return kube
}

// waitFor polls cond until it holds or the timeout ends, then fails with the
// last message cond returned.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, msg := cond(ctx)
		last = msg
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s: %s", what, timeout, last)
	}
}

func names(cs []corev1.Container) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return strings.Join(out, ",")
}

// podsOf lists the pods with the label app=<app> in namespace.
func podsOf(ctx context.Context, kube kubernetes.Interface, namespace, app string) ([]corev1.Pod, error) {
	list, err := kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}
