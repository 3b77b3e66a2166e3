// Package precheck runs every check of the seed document against a cluster
// and says, for each, ok, warn or fail with a hint: the `linkerd check` of
// native sidecar mode. A check is one small function in Checks; the rules
// themselves come from internal/meshversion, as the manager's do.
package precheck

import (
	"context"
	"fmt"
	"time"
)

// Status is a check's verdict.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
	// Skip: the check does not apply here; Message says why.
	Skip Status = "skip"
)

// Result is one line of the report.
type Result struct {
	Status  Status `json:"status"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	// Where a finding stands, for -o json and for migrate's refusals
	// (Report.Split): its namespaces (several when one admission probe
	// stood for them), its workload (Kind/name, in those namespaces), the
	// webhooks it names, the revision, and an object of another kind it
	// names (LimitRange/x, ResourceQuota/x, VerticalPodAutoscaler/x).
	Namespaces []string     `json:"namespaces,omitempty"`
	Workload   string       `json:"workload,omitempty"`
	Webhooks   []WebhookRef `json:"webhooks,omitempty"`
	Revision   string       `json:"revision,omitempty"`
	Object     string       `json:"object,omitempty"`
	Details    []string     `json:"details,omitempty"`
	// Pods are every pod a finding is about, for -o json only: the
	// message names a few, and there may be thousands.
	Pods []PodRef `json:"pods,omitempty"`
}

// PodRef is one pod a finding names: where it runs and how it is injected.
type PodRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Node      string `json:"node"`
	// Mode is how istio-proxy runs in it now: native, classic or none.
	Mode     string `json:"mode"`
	Revision string `json:"revision,omitempty"`
	// Owner is its workload, as Kind/name.
	Owner string `json:"owner,omitempty"`
}

// WebhookRef names one webhook of a configuration.
type WebhookRef struct {
	// Kind is MutatingWebhookConfiguration or ValidatingWebhookConfiguration.
	Kind          string `json:"kind"`
	Configuration string `json:"configuration"`
	Name          string `json:"name"`
}

// Check is one named check in a group. Run may return several results (one
// per pool, per revision); an error means the facts could not be read.
type Check struct {
	Group string
	Name  string
	Run   func(ctx context.Context, e *Env) ([]Result, error)
	// Transient, for a check whose failure can pass by itself (an istiod
	// starting, istiod writing its webhook's caBundle), names the facts it
	// reads again before each retry: it is retried until it passes or
	// Env.Wait runs out, then reported as it last failed. A check without
	// fails at once (an old node pool does not upgrade itself).
	Transient []string
}

// RetryInterval is how long a transient check waits between attempts.
var RetryInterval = time.Second

// Groups in the order they are printed.
var Groups = []string{"Feature", "Control plane", "Node pools", "Mesh", "Injection", "Admission", "Resources", "Lifecycle", "Workloads", "Permissions"}

// GroupReport is one group's results.
type GroupReport struct {
	Name   string        `json:"name"`
	Checks []CheckReport `json:"checks"`
}

// CheckReport is one check's results.
type CheckReport struct {
	Name    string   `json:"name"`
	Results []Result `json:"results"`
}

// Report is the whole run.
type Report struct {
	Groups  []GroupReport  `json:"groups"`
	Summary map[Status]int `json:"summary"`
	Success bool           `json:"success"`
}

// Run runs checks in group order. A check whose facts cannot be read fails
// with the reason instead of stopping the others; a transient one is
// retried until Env.Wait, counted from the start of the run, runs out.
func Run(ctx context.Context, e *Env, checks []Check) *Report {
	e.startWait()
	r := &Report{Summary: map[Status]int{OK: 0, Warn: 0, Fail: 0, Skip: 0}, Success: true}
	for _, g := range Groups {
		gr := GroupReport{Name: g}
		for _, c := range checks {
			if c.Group != g {
				continue
			}
			results := runCheck(ctx, e, c)
			for _, res := range results {
				r.Summary[res.Status]++
				if res.Status == Fail {
					r.Success = false
				}
			}
			if len(results) > 0 { // a check that does not apply here says nothing
				gr.Checks = append(gr.Checks, CheckReport{Name: c.Name, Results: results})
			}
		}
		if len(gr.Checks) > 0 {
			r.Groups = append(r.Groups, gr)
		}
	}
	return r
}

// runCheck runs one check, and again while it is transient, fails and the
// wait has time left; it reports the last attempt.
func runCheck(ctx context.Context, e *Env, c Check) []Result {
	for {
		results, err := c.Run(ctx, e)
		if err != nil {
			results = []Result{{Status: Fail, Message: fmt.Sprintf("%s: cannot tell: %v", c.Name, err), Hint: "check your access to the cluster and run precheck again"}}
		}
		failed := firstFailure(results)
		left := e.waitLeft()
		if failed == nil || len(c.Transient) == 0 || left <= 0 {
			return results
		}
		e.waiting(c.Name, failed.Message, left)
		select {
		case <-ctx.Done():
			return results
		case <-time.After(min(RetryInterval, left)):
		}
		e.forget(c.Transient...)
	}
}

func firstFailure(results []Result) *Result {
	for i := range results {
		if results[i].Status == Fail {
			return &results[i]
		}
	}
	return nil
}
