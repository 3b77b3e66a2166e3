package precheck

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A transient check is retried, its facts read again each time, until it
// passes or the wait runs out; any other check is final at once.
func TestRunRetriesTransientChecks(t *testing.T) {
	defer func(d time.Duration) { RetryInterval = d }(RetryInterval)
	RetryInterval = 10 * time.Millisecond

	// flaky fails its first fails attempts; reads counts the reads of the
	// fact it depends on.
	flaky := func(fails int, reads *int) func(context.Context, *Env) ([]Result, error) {
		attempt := 0
		return func(_ context.Context, e *Env) ([]Result, error) {
			if _, err := load(e, "fact", func() (int, error) { *reads++; return *reads, nil }); err != nil {
				return nil, err
			}
			attempt++
			if attempt <= fails {
				return one(Fail, fmt.Sprintf("attempt %d failed", attempt), "wait"), nil
			}
			return one(OK, fmt.Sprintf("attempt %d passed", attempt), ""), nil
		}
	}
	run := func(t *testing.T, wait time.Duration, c Check) (Result, time.Duration, []string) {
		t.Helper()
		var waited []string
		e := &Env{Wait: wait, Waiting: func(check, failure string, _ time.Duration) { waited = append(waited, check+": "+failure) }}
		c.Group = "Mesh"
		start := time.Now()
		r := Run(context.Background(), e, []Check{c})
		took := time.Since(start)
		if len(r.Groups) != 1 || len(r.Groups[0].Checks) != 1 || len(r.Groups[0].Checks[0].Results) != 1 {
			t.Fatalf("report: %+v", r)
		}
		return r.Groups[0].Checks[0].Results[0], took, waited
	}

	t.Run("fails twice, then passes", func(t *testing.T) {
		reads := 0
		res, _, waited := run(t, time.Minute, Check{Name: "istiod available", Run: flaky(2, &reads), Transient: []string{"fact"}})
		if res.Status != OK || res.Message != "attempt 3 passed" {
			t.Errorf("result %+v, want attempt 3 passed", res)
		}
		if reads != 3 {
			t.Errorf("the fact was read %d times, want once per attempt (3)", reads)
		}
		if len(waited) != 2 || waited[0] != "istiod available: attempt 1 failed" {
			t.Errorf("waiting said %q", waited)
		}
	})

	t.Run("keeps failing: fails when the wait ends, with its last failure", func(t *testing.T) {
		reads := 0
		wait := 150 * time.Millisecond
		res, took, _ := run(t, wait, Check{Name: "injection webhooks", Run: flaky(1000, &reads), Transient: []string{"fact"}})
		if res.Status != Fail || res.Message != fmt.Sprintf("attempt %d failed", reads) || reads < 3 {
			t.Errorf("result %+v after %d attempts, want the last attempt's failure", res, reads)
		}
		if took < wait || took > wait+time.Second {
			t.Errorf("took %s, want the wait (%s)", took, wait)
		}
	})

	t.Run("a check that is not transient fails at once", func(t *testing.T) {
		reads := 0
		res, took, waited := run(t, time.Minute, Check{Name: "node versions", Run: flaky(1000, &reads)})
		if res.Status != Fail || reads != 1 || len(waited) != 0 || took > time.Second {
			t.Errorf("result %+v after %d attempts in %s (waited %q), want one attempt", res, reads, took, waited)
		}
	})

	t.Run("--wait 0 waits for nothing", func(t *testing.T) {
		reads := 0
		res, _, _ := run(t, 0, Check{Name: "istiod available", Run: flaky(1, &reads), Transient: []string{"fact"}})
		if res.Status != Fail || reads != 1 {
			t.Errorf("result %+v after %d attempts, want one failed attempt", res, reads)
		}
	})
}
