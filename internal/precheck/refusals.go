package precheck

// scopedGroups are the groups whose failures stand for the namespaces and
// workloads they name: migrate refuses those and goes on with the rest.
var scopedGroups = map[string]bool{"Admission": true, "Resources": true, "Lifecycle": true}

// Refusals are what failing scoped checks refuse, each with why.
type Refusals struct {
	// Namespaces: every restart there is refused.
	Namespaces map[string]string
	// Workloads by "namespace/Kind/name": that restart is refused.
	Workloads map[string]string
}

// Empty is true when nothing is refused.
func (r Refusals) Empty() bool { return len(r.Namespaces) == 0 && len(r.Workloads) == 0 }

// Why says why migrate must not restart the workload Kind/name in ns, or
// "" when it may.
func (r Refusals) Why(ns, workload string) string {
	if why := r.Workloads[ns+"/"+workload]; why != "" {
		return why
	}
	return r.Namespaces[ns]
}

// Split sorts the report's failures: those of the Admission, Resources and
// Lifecycle checks that name where they stand (Namespaces, Workload)
// become Refusals; every other failure stands for the whole cluster and is
// returned as a report of the failing results alone (nil when none).
func (r *Report) Split() (Refusals, *Report) {
	ref := Refusals{Namespaces: map[string]string{}, Workloads: map[string]string{}}
	var global *Report
	for _, g := range r.Groups {
		var gr *GroupReport
		for _, c := range g.Checks {
			var bad []Result
			for _, res := range c.Results {
				if res.Status != Fail {
					continue
				}
				if scopedGroups[g.Name] && ref.add(res) {
					continue
				}
				bad = append(bad, res)
			}
			if len(bad) == 0 {
				continue
			}
			if global == nil {
				global = &Report{Summary: r.Summary}
			}
			if gr == nil {
				global.Groups = append(global.Groups, GroupReport{Name: g.Name})
				gr = &global.Groups[len(global.Groups)-1]
			}
			gr.Checks = append(gr.Checks, CheckReport{Name: c.Name, Results: bad})
		}
	}
	return ref, global
}

// add records a scoped failure; false when it names no namespace.
func (r Refusals) add(res Result) bool {
	if len(res.Namespaces) == 0 {
		return false
	}
	for _, ns := range res.Namespaces {
		if res.Workload != "" {
			r.Workloads[ns+"/"+res.Workload] = join(r.Workloads[ns+"/"+res.Workload], res.Message)
		} else {
			r.Namespaces[ns] = join(r.Namespaces[ns], res.Message)
		}
	}
	return true
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
