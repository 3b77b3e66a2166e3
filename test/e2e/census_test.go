package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// precheckCountsEqualStatus runs precheck right after a change that status
// already sees (a migrate): its pod counts must equal those status -A
// shows, whether it read them from the manager's census or listed the pods
// because the census was behind. Status is read before and after; if the
// pods moved in between, it tries again.
func precheckCountsEqualStatus(t *testing.T, kcfg string) {
	t.Helper()
	for range 5 {
		before := statusCounts(t, kcfg)
		got, source := precheckCounts(t, kcfg)
		if after := statusCounts(t, kcfg); after != before {
			continue // the pods were still changing
		}
		if got != before {
			t.Errorf("precheck's pod counts (%s):\n%s\nstatus -A:\n%s", source, got, before)
			return
		}
		t.Logf("precheck's pod counts (%s) equal status's", source)
		return
	}
	t.Fatal("the pods kept changing between two status -A")
}

// statusCounts counts status -A's pods as precheck's "pods by mode" lines.
func statusCounts(t *testing.T, kcfg string) string {
	t.Helper()
	r := mustMeshaddon(t, "status", "-A", "-o", "json", "--kubeconfig", kcfg)
	var out struct {
		Items []struct{ Mode, Revision string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("status -A -o json: %v\n%s", err, r)
	}
	none := 0
	revs := map[string][2]int{}
	for _, p := range out.Items {
		if p.Mode == "none" {
			none++
			continue
		}
		rev := p.Revision
		if rev == "" {
			rev = "unknown"
		}
		c := revs[rev]
		if p.Mode == "native" {
			c[0]++
		} else {
			c[1]++
		}
		revs[rev] = c
	}
	lines := []string{fmt.Sprintf("%d pod(s), %d injected, %d not injected", len(out.Items), len(out.Items)-none, none)}
	names := make([]string, 0, len(revs))
	for rev := range revs {
		names = append(names, rev)
	}
	sort.Strings(names)
	for _, rev := range names {
		lines = append(lines, fmt.Sprintf("%s: %d native, %d classic", rev, revs[rev][0], revs[rev][1]))
	}
	return strings.Join(lines, "\n")
}

// precheckCounts is precheck's "pods by mode" lines, without where the
// counts come from, and that.
func precheckCounts(t *testing.T, kcfg string) (counts, source string) {
	t.Helper()
	r := meshaddon(t, "precheck", "-o", "json", "--kubeconfig", kcfg)
	var rep precheckReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("precheck -o json: %v\n%s", err, r)
	}
	var lines []string
	for _, g := range rep.Groups {
		for _, c := range g.Checks {
			if c.Name != "pods by mode" {
				continue
			}
			for _, res := range c.Results {
				lines = append(lines, res.Message)
			}
		}
	}
	if len(lines) == 0 {
		t.Fatalf("precheck has no pods by mode:\n%s", r)
	}
	lines[0], source, _ = strings.Cut(lines[0], " (")
	return strings.Join(lines, "\n"), strings.TrimSuffix(source, ")")
}
