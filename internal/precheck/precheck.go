// Package precheck runs every check of the seed document against a cluster
// and says, for each, ok, warn or fail with a hint: the `linkerd check` of
// native sidecar mode. A check is one small function in Checks; the rules
// themselves come from internal/meshversion, as the manager's do.
package precheck

import (
	"context"
	"fmt"
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
	Status  Status   `json:"status"`
	Message string   `json:"message"`
	Hint    string   `json:"hint,omitempty"`
	Details []string `json:"details,omitempty"`
}

// Check is one named check in a group. Run may return several results (one
// per pool, per revision); an error means the facts could not be read.
type Check struct {
	Group string
	Name  string
	Run   func(ctx context.Context, e *Env) ([]Result, error)
}

// Groups in the order they are printed.
var Groups = []string{"Feature", "Control plane", "Node pools", "Mesh", "Injection", "Admission", "Workloads", "Permissions"}

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
// with the reason instead of stopping the others.
func Run(ctx context.Context, e *Env, checks []Check) *Report {
	r := &Report{Summary: map[Status]int{OK: 0, Warn: 0, Fail: 0, Skip: 0}, Success: true}
	for _, g := range Groups {
		gr := GroupReport{Name: g}
		for _, c := range checks {
			if c.Group != g {
				continue
			}
			results, err := c.Run(ctx, e)
			if err != nil {
				results = []Result{{Status: Fail, Message: fmt.Sprintf("%s: cannot tell: %v", c.Name, err), Hint: "check your access to the cluster and run precheck again"}}
			}
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
