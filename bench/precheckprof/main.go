// Command precheckprof runs `meshaddon precheck`'s checks as the CLI does
// (the same clients, Prefetch, then precheck.Run) and says where the time
// goes, for bench/precheck_test.go:
//
//	precheckprof --kubeconfig FILE [--cpuprofile FILE]
//
// It prints each check's wall time, and every API request the checks made,
// by method and resource, with its client-side latency (a transport
// wrapper times each round trip): how many, their sum and p50/p99. With
// --cpuprofile it also writes a CPU profile of the run (go tool pprof).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/meshaddon/meshaddon/internal/kube"
	"github.com/meshaddon/meshaddon/internal/meshversion"
	"github.com/meshaddon/meshaddon/internal/precheck"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if err := run(*kubeconfig, *cpuprofile); err != nil {
		fmt.Fprintln(os.Stderr, "precheckprof:", err)
		os.Exit(2)
	}
}

func run(kubeconfig, cpuprofile string) error {
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &kubeconfig
	c, err := kube.NewClients(flags)
	if err != nil {
		return err
	}
	rec := &recorder{}
	// As the CLI: protobuf clients for the checks (these are timed).
	cfg := kube.Protobuf(c.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return rec.wrap(rt) })
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return err
	}
	env := &precheck.Env{Kube: kc, Metadata: md, Client: c.Client, MeshNamespace: "aks-istio-system",
		Policy: meshversion.DefaultPolicy, Wait: time.Minute}
	ctx := context.Background()
	if _, err := env.ServerVersion(ctx); err != nil {
		return err
	}
	env.Prefetch(ctx)
	var mu sync.Mutex
	took := map[string]time.Duration{}
	checks := slices.Clone(precheck.Checks)
	for i := range checks {
		c := &checks[i]
		run := c.Run
		c.Run = func(ctx context.Context, e *precheck.Env) ([]precheck.Result, error) {
			s := time.Now()
			defer func() { mu.Lock(); took[c.Group+" / "+c.Name] += time.Since(s); mu.Unlock() }()
			return run(ctx, e)
		}
	}
	runStart := time.Now()
	report := precheck.Run(ctx, env, checks)
	total := time.Since(start)
	fmt.Printf("whole run %s (checks %s after clients, server version and prefetch start); success %t, summary %v\n",
		total.Round(time.Millisecond), time.Since(runStart).Round(time.Millisecond), report.Success, report.Summary)
	fmt.Println("\nchecks, in the order they ran (each waits for the facts it reads):")
	for _, c := range checks {
		if d, ok := took[c.Group+" / "+c.Name]; ok {
			fmt.Printf("  %8s  %s / %s\n", d.Round(time.Millisecond), c.Group, c.Name)
		}
	}
	fmt.Println("\nAPI requests of the checks' clients (client-side round trips):")
	rec.print()
	return nil
}

// recorder times every round trip, by method, resource and dry run.
type recorder struct {
	mu   sync.Mutex
	reqs map[string][]time.Duration
}

type roundTripper struct {
	rec *recorder
	rt  http.RoundTripper
}

func (r *recorder) wrap(rt http.RoundTripper) http.RoundTripper { return &roundTripper{rec: r, rt: rt} }

func (t *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	s := time.Now()
	resp, err := t.rt.RoundTrip(req)
	d := time.Since(s)
	key := req.Method + " " + resourceOf(req.URL.Path)
	if req.URL.Query().Get("dryRun") != "" {
		key += " (dry run)"
	}
	if req.URL.Query().Get("watch") == "true" {
		key += " (watch: until the headers)"
	}
	t.rec.mu.Lock()
	if t.rec.reqs == nil {
		t.rec.reqs = map[string][]time.Duration{}
	}
	t.rec.reqs[key] = append(t.rec.reqs[key], d)
	t.rec.mu.Unlock()
	return resp, err
}

// resourceOf is the resource of an API path, with "namespaced" when it
// named a namespace: /api/v1/namespaces/x/pods → pods (namespaced).
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	ns := false
	var rest []string
	for i := 0; i < len(parts); i++ {
		if parts[i] == "namespaces" && i+2 < len(parts) {
			ns = true
			i++
			continue
		}
		rest = append(rest, parts[i])
	}
	// api/v1/pods, apis/apps/v1/deployments[/name]
	skip := 2
	if len(rest) > 0 && rest[0] == "apis" {
		skip = 3
	}
	if len(rest) <= skip {
		return path
	}
	res := rest[skip]
	if ns {
		res += " (namespaced)"
	}
	return res
}

func (r *recorder) print() {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.reqs))
	for k := range r.reqs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return sum(r.reqs[keys[i]]) > sum(r.reqs[keys[j]]) })
	for _, k := range keys {
		ds := slices.Clone(r.reqs[k])
		slices.Sort(ds)
		fmt.Printf("  %5d × %-55s sum %9s  p50 %8s  p99 %8s  max %8s\n", len(ds), k, sum(ds).Round(time.Millisecond),
			ds[len(ds)/2].Round(100*time.Microsecond), ds[(len(ds)*99+99)/100-1].Round(100*time.Microsecond), ds[len(ds)-1].Round(100*time.Microsecond))
	}
}

func sum(ds []time.Duration) time.Duration {
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s
}
