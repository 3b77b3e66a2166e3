package migrate

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/migrate"
)

func TestProgressLinesAndBar(t *testing.T) {
	w := inventory.Workload{Kind: "Deployment", Namespace: "shop", Name: "web"}
	var plain bytes.Buffer
	p := newProgress(&plain, 2) // a buffer is not a terminal: plain lines
	p.event(migrate.Event{Started: true, Result: migrate.Result{Workload: w}})
	p.event(migrate.Event{Result: migrate.Result{Workload: w, Outcome: migrate.Migrated, Duration: 1500 * time.Millisecond}})
	if got := plain.String(); got != "restarting shop/Deployment/web\nmigrated shop/Deployment/web in 1.5s \n" {
		t.Errorf("plain lines: %q", got)
	}

	var term bytes.Buffer
	bar := &progress{w: &term, tty: true, total: 4, start: time.Now()}
	bar.event(migrate.Event{Started: true, Result: migrate.Result{Workload: w}})
	bar.event(migrate.Event{Result: migrate.Result{Workload: w, Outcome: migrate.Failed}})
	last := term.String()[strings.LastIndex(term.String(), "\r")+1:]
	for _, want := range []string{"[#######.......................]", "1/4 done", "0 running", "1 failed", "3 remaining", "elapsed", "ETA"} {
		if !strings.Contains(last, want) {
			t.Errorf("bar %q lacks %q", last, want)
		}
	}
}

func TestContinueCommand(t *testing.T) {
	got := continueCommand([]string{"meshaddon", "migrate", "-A", "--canary", "3", "--canary-soak=1m", "--pause-after-canary", "--canary-selector", "tier in (web)", "-l", "a=b c", "--max-surge-pods", "4"})
	if want := "meshaddon migrate -A -l 'a=b c' --max-surge-pods 4"; got != want {
		t.Errorf("continueCommand = %q, want %q", got, want)
	}
}

func TestProgressShowsWaiting(t *testing.T) {
	var term bytes.Buffer
	bar := &progress{w: &term, tty: true, total: 3, start: time.Now()}
	for _, name := range []string{"a", "b"} {
		bar.event(migrate.Event{Waiting: "PodDisruptionBudget web: another restart under it is running", Reason: migrate.WaitPDB,
			Result: migrate.Result{Workload: inventory.Workload{Kind: "Deployment", Namespace: "shop", Name: name}}})
	}
	bar.event(migrate.Event{Waiting: "budget", Reason: migrate.WaitBudget, Result: migrate.Result{Workload: inventory.Workload{Kind: "Deployment", Namespace: "shop", Name: "c"}}})
	bar.event(migrate.Event{Started: true, Result: migrate.Result{Workload: inventory.Workload{Kind: "Deployment", Namespace: "shop", Name: "a"}}})
	last := term.String()[strings.LastIndex(term.String(), "\r")+1:]
	if !strings.Contains(last, "(2 waiting: PDB 1, budget 1)") {
		t.Errorf("bar %q does not say who waits and why", last)
	}
	var plain bytes.Buffer
	p := newProgress(&plain, 1)
	p.event(migrate.Event{Waiting: "ResourceQuota q has no room", Reason: migrate.WaitQuota, Result: migrate.Result{Workload: inventory.Workload{Kind: "Deployment", Namespace: "shop", Name: "a"}}})
	if got := plain.String(); got != "waiting shop/Deployment/a: ResourceQuota q has no room\n" {
		t.Errorf("plain: %q", got)
	}
}
