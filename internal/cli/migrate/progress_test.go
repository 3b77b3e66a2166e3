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
