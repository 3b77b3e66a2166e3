// Package bench measures the test bed and the add-on manager: how long a
// cluster takes to come up and go down, how much memory the whole stack and
// the manager use, how much istiod's injection adds to a pod's creation, and
// how fast the manager reacts. It measures and reports; it asserts nothing
// about the numbers (a run only fails when it cannot measure).
//
// Every benchmark is skipped unless MESHADDON_BENCH=1 (`make bench` sets it),
// so `go test ./...` stays fast. Each measurement is printed as
//
//	RESULT name=value unit (target ...)
//
// and appended as a markdown row to bench/out/results.md.
//
// Knobs (environment variables):
//
//	MESHADDON_BENCH=1              run the benchmarks at all
//	MESHADDON_BENCH_REPEAT=N       repetitions of the repeated measurements (defaults: 3 or 5)
//	MESHADDON_BENCH_PODS=N         pods per namespace in the injection benchmark (default 200)
//	MESHADDON_BENCH_POOLS=N        node pools in the manager benchmark (default 20)
//	MESHADDON_BENCH_POOL_NODES=N   nodes per pool in the manager benchmark (default 250)
//	MESHADDON_BENCH_NODE_ADD=M     how the manager benchmark adds pools: auto (default), cli or direct
//	MESHADDON_BENCH_OLD_NODES=N    old nodes joining at once in the guard benchmark (default 250)
//	MESHADDON_BENCH_GUARD_RATE=N, _SECONDS=N  the guard benchmark's pod creations per second and for how long (200, 20)
//	MESHADDON_BENCH_GUARD_QUIET=1  pause kwok and the controller-manager while the guard benchmark creates pods
//	MESHADDON_BENCH_MESH_NAMESPACES=N, _DEPLOYMENTS=N, _REPLICAS=N  the precheck benchmark's size (1,000; 5 per namespace; 10)
//	MESHADDON_BENCH_PRECHECK_BEFORE=BIN, _PRECHECKPROF_BEFORE=BIN  also measure another build's precheck, interleaved
//	MESHADDON_BENCH_COLD=1         also run the cold build of the cache (~10+ minutes)
//	MESHADDON_BENCH_COLD_GOCACHE=keep  cold build with the Go build cache kept warm
package bench

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshaddon/meshaddon/internal/ship"
	"github.com/meshaddon/meshaddon/internal/testbed"
	"github.com/meshaddon/meshaddon/internal/testbed/proc"
)

// Versions and names shared by the benchmarks.
const (
	currentVersion = "v1.34.4"
	oldVersion     = "v1.28.9"
	istioNS        = "aks-istio-system"
	featureName    = "IstioNativeSidecarModePreview"
	resultsFile    = "out/results.md"
)

var (
	// meshaddonBin is the CLI under measurement, built once by TestMain.
	meshaddonBin string
	// stateDir keeps every cluster of this run (MESHADDON_STATE).
	stateDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if !enabled() {
		// Every benchmark skips itself; nothing to build.
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "meshaddon-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	meshaddonBin = filepath.Join(tmp, "meshaddon")
	build := exec.Command("go", "build", "-o", tmp+string(filepath.Separator), "../cmd/meshaddon")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: build meshaddon:", err)
		return 1
	}
	// The test bed runs the manager-only binary next to meshaddon: built as
	// the image's (static, stripped, -trimpath), since its memory is
	// measured: a development build's resident size is ~20 MiB more at
	// 5,000 nodes, all of it the binary's own mapped pages.
	if err := ship.Build(context.Background(), "..", "./cmd/meshaddon-manager", runtime.GOOS, runtime.GOARCH, "", filepath.Join(tmp, testbed.ManagerBinary)); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	stateDir = filepath.Join(tmp, "state")
	if keep := os.Getenv("MESHADDON_BENCH_KEEP"); keep != "" {
		// Clusters outlive the run in this directory, and a later run with
		// the same setting reuses them (the status benchmark's 50,000 pods
		// take half an hour to create).
		stateDir = keep
	}
	os.Setenv("MESHADDON_STATE", stateDir)
	return m.Run()
}

// keepClusters reports whether MESHADDON_BENCH_KEEP keeps clusters.
func keepClusters() bool { return os.Getenv("MESHADDON_BENCH_KEEP") != "" }

func enabled() bool { return os.Getenv("MESHADDON_BENCH") == "1" }

// requireBench skips the benchmark unless MESHADDON_BENCH=1.
func requireBench(t *testing.T) {
	t.Helper()
	if !enabled() {
		t.Skip("benchmark: set MESHADDON_BENCH=1 (or run `make bench`)")
	}
	logLoad(t)
}

// envInt reads a positive integer knob, or returns def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive whole number", name, s)
	}
	return n
}

// --- running the CLI ---

// result is one run of the CLI.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %s\nstdout:\n%s\nstderr:\n%s", r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// meshaddonEnv runs the CLI with extra environment variables and returns its
// output, exit code and wall-clock time.
func meshaddonEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshaddonBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run meshaddon %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustMeshaddon runs the CLI and fails the benchmark unless it exits 0.
func mustMeshaddon(t *testing.T, args ...string) result {
	t.Helper()
	return mustMeshaddonEnv(t, nil, args...)
}

func mustMeshaddonEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := meshaddonEnv(t, env, args...)
	if r.code != 0 {
		t.Fatalf("meshaddon %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// downAtCleanup makes sure the cluster is down when the benchmark ends, even
// when it fails half-way; `local down` of a cluster already down is a no-op.
func downAtCleanup(t *testing.T, name string, env ...string) {
	t.Helper()
	if keepClusters() {
		t.Logf("MESHADDON_BENCH_KEEP: cluster %s stays up in %s", name, stateDir)
		return
	}
	t.Cleanup(func() {
		if r := meshaddonEnv(t, env, "local", "down", "--name", name); r.code != 0 {
			t.Errorf("local down --name %s: %s", name, r)
		}
	})
}

// upCluster brings a named cluster up, registers its teardown, and returns
// how long `local up` took.
func upCluster(t *testing.T, name string, args ...string) time.Duration {
	t.Helper()
	downAtCleanup(t, name)
	r := mustMeshaddon(t, append([]string{"local", "up", "--name", name}, args...)...)
	return r.took
}

func clusterDir(name string) string { return filepath.Join(stateDir, "clusters", name) }

func kubeconfigOf(name string) string { return filepath.Join(clusterDir(name), "kubeconfig") }

// restConfig is the cluster's config with client-side throttling high
// enough not to show in any measurement.
func restConfig(t *testing.T, name string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigOf(name))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	return cfg
}

func kubeClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return kc
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

// --- memory of processes ---

// memory is a process's resident set, now and at its peak, in bytes.
type memory struct {
	RSS, HWM int64
}

// readMemory reads VmRSS and VmHWM from /proc/<pid>/status.
func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		fields := strings.Fields(val) // "123456 kB"
		if len(fields) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("/proc/%d/status %s: %w", pid, key, err)
		}
		if key == "VmRSS" {
			m.RSS = kb * 1024
		} else {
			m.HWM = kb * 1024
		}
	}
	return m, sc.Err()
}

// pidFile reads a daemon's pid file in the cluster's directory ("manager",
// "runner"); it returns 0 when there is none.
func pidFile(name, daemon string) int {
	data, err := os.ReadFile(filepath.Join(clusterDir(name), daemon+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// stackProcess is one process of a cluster with its memory.
type stackProcess struct {
	proc.Process
	Name string
	Mem  memory
}

// stackProcesses returns every process of the cluster: those proc.Find sees
// under its directory (control plane, kwok, each pilot-discovery, the
// manager), plus the daemons recorded in pid files (the istiod runner's
// command line does not name the directory).
func stackProcesses(t *testing.T, name string) []stackProcess {
	t.Helper()
	found := proc.Find(clusterDir(name))
	seen := map[int]bool{}
	for _, p := range found {
		seen[p.PID] = true
	}
	for _, d := range []string{"manager", "runner"} {
		if pid := pidFile(name, d); pid > 0 && !seen[pid] && proc.Alive(pid) {
			raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			found = append(found, proc.Process{PID: pid, Command: strings.TrimSpace(strings.ReplaceAll(string(raw), "\x00", " "))})
			seen[pid] = true
		}
	}
	var out []stackProcess
	for _, p := range found {
		m, err := readMemory(p.PID)
		if err != nil {
			continue // it exited meanwhile
		}
		out = append(out, stackProcess{Process: p, Name: processName(p.Command), Mem: m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Mem.HWM > out[j].Mem.HWM })
	return out
}

// processName is the executable's base name, with the subcommand for
// meshaddon itself ("meshaddon manager", "meshaddon local runner").
func processName(cmdline string) string {
	args := strings.Fields(cmdline)
	if len(args) == 0 {
		return "?"
	}
	name := filepath.Base(args[0])
	if name == "meshaddon" && len(args) > 1 {
		name += " " + args[1]
		if args[1] == "local" && len(args) > 2 {
			name += " " + args[2]
		}
	}
	return name
}

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }

// --- statistics ---

// percentile returns the p-th percentile (0..100) of sorted values, by the
// nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// median returns the median of the values (the mean of the middle two for
// an even count).
func median(values []time.Duration) time.Duration {
	if len(values) == 0 {
		return 0
	}
	s := sortedCopy(values)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func sortedCopy(values []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), values...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

// --- reporting ---

// target is what a measurement should stay under; a zero max means the
// measurement has no target (it is context for the others).
type target struct {
	max  float64
	text string
}

func under(max float64, text string) target { return target{max: max, text: text} }

var noTarget = target{text: "—"}

// report prints one measurement as `RESULT name=value unit` and appends it
// to bench/out/results.md.
func report(t *testing.T, name string, value float64, unit string, tgt target) {
	t.Helper()
	val := strconv.FormatFloat(value, 'f', decimals(unit), 64)
	line := fmt.Sprintf("RESULT %s=%s %s", name, val, unit)
	cell := tgt.text
	if tgt.max > 0 {
		verdict := "met"
		if value > tgt.max {
			verdict = "MISSED"
		}
		line += fmt.Sprintf("   (target %s: %s)", tgt.text, verdict)
		cell += " (" + verdict + ")"
	}
	t.Log(line)
	if err := appendRow(name, val+" "+unit, cell); err != nil {
		t.Errorf("write %s: %v", resultsFile, err)
	}
}

// logLoad logs the machine's load average: the measurements are only as
// quiet as the machine.
func logLoad(t *testing.T) {
	t.Helper()
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(data))
		if len(f) >= 3 {
			t.Logf("load average %s %s %s on %d CPUs", f[0], f[1], f[2], runtime.NumCPU())
		}
	}
}

// reportDuration reports a duration in seconds or milliseconds.
func reportDuration(t *testing.T, name string, d time.Duration, unit string, tgt target) {
	t.Helper()
	switch unit {
	case "ms":
		report(t, name, float64(d)/float64(time.Millisecond), unit, tgt)
	default:
		report(t, name, d.Seconds(), "s", tgt)
	}
}

func decimals(unit string) int {
	switch unit {
	case "s":
		return 3
	case "ms", "MiB":
		return 1
	default:
		return 0
	}
}

// appendRow adds a row to the results table, writing its header first when
// the file is new.
func appendRow(measurement, value, tgt string) error {
	if err := os.MkdirAll(filepath.Dir(resultsFile), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(resultsFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() == 0 {
		if _, err := fmt.Fprint(f, "| date | measurement | value | target |\n| --- | --- | --- | --- |\n"); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(f, "| %s | %s | %s | %s |\n", time.Now().Format("2006-01-02 15:04:05"), measurement, value, tgt)
	return err
}
