package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestNamesPath(t *testing.T) {
	const dir = "/state/clusters/t"
	for arg, want := range map[string]bool{
		"/state/clusters/t":                          true,
		"/state/clusters/t/kubeconfig":               true,
		"--kubeconfig=/state/clusters/t/kubeconfig":  true,
		"--etcd-cafile,/state/clusters/t/pki/ca.crt": true,
		"/a:/state/clusters/t/bin":                   true,
		"/state/clusters/t2":                         false,
		"/state/clusters/t2/kubeconfig":              false,
		"--kubeconfig=/state/clusters/t2/kubeconfig": false,
		"/state/clusters/tt/kubeconfig":              false,
		"/x/state/clusters/t/kubeconfig":             false,
		"/state/clusters/t-2/kwok":                   false,
		// A later occurrence still counts when the first is another path.
		"/state/clusters/t2,/state/clusters/t/ca.crt": true,
		"":       false,
		"sleep":  false,
		"/state": false,
	} {
		if got := namesPath(arg, dir); got != want {
			t.Errorf("namesPath(%q, %q) = %t, want %t", arg, dir, got, want)
		}
	}
}

// Find sees the processes of cluster t, by argument or working directory,
// and none of cluster t2's, whose directory starts with the same characters.
func TestFindKeepsToItsDirectory(t *testing.T) {
	root := t.TempDir()
	t1, t2 := filepath.Join(root, "clusters", "t"), filepath.Join(root, "clusters", "t2")
	for _, d := range []string{t1, t2} {
		if err := os.MkdirAll(filepath.Join(d, "work"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	start := func(cwd string, args ...string) int {
		t.Helper()
		// sh keeps its own arguments on its command line while it waits.
		cmd := exec.Command("sh", append([]string{"-c", "sleep 60; :"}, args...)...)
		cmd.Dir = cwd
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		})
		return cmd.Process.Pid
	}
	byArg := start(root, "sh", "--kubeconfig="+filepath.Join(t1, "kubeconfig"))
	byCwd := start(filepath.Join(t1, "work"), "sh")
	otherByArg := start(root, "sh", "--kubeconfig="+filepath.Join(t2, "kubeconfig"))
	otherByCwd := start(filepath.Join(t2, "work"), "sh")

	var pids []int
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids = pids[:0]
		for _, p := range Find(t1) {
			pids = append(pids, p.PID)
		}
		if slices.Contains(pids, byArg) && slices.Contains(pids, byCwd) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !slices.Contains(pids, byArg) || !slices.Contains(pids, byCwd) {
		t.Errorf("Find(%s) = %v, want %d (argument) and %d (working directory)", t1, pids, byArg, byCwd)
	}
	for _, other := range []int{otherByArg, otherByCwd} {
		if slices.Contains(pids, other) {
			t.Errorf("Find(%s) returned %d, a process of %s", t1, other, t2)
		}
	}
}
