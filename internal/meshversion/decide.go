package meshversion

import (
	"fmt"
	"strconv"
	"strings"
)

// Mode is what the operator asked for (MeshProfile spec.nativeSidecarMode).
type Mode string

const (
	ModeAuto     Mode = "Auto"
	ModeEnabled  Mode = "Enabled"
	ModeDisabled Mode = "Disabled"
)

// ParseMode accepts the three modes, case-insensitively; empty means Auto.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{ModeAuto, ModeEnabled, ModeDisabled} {
		if strings.EqualFold(s, string(m)) {
			return m, nil
		}
	}
	if s == "" {
		return ModeAuto, nil
	}
	return "", fmt.Errorf("unknown native sidecar mode %q: want Auto, Enabled or Disabled", s)
}

// Injection is how a revision injects istio-proxy.
type Injection string

const (
	Native  Injection = "native"
	Classic Injection = "classic"
)

// EnvValue is the ENABLE_NATIVE_SIDECARS value that makes istiod inject so.
func (i Injection) EnvValue() string {
	if i == Native {
		return "true"
	}
	return "false"
}

// Node is what the rules need to know about one node.
type Node struct {
	Name           string
	Pool           string
	KubeletVersion string
	Ready          bool
}

// Facts are the cluster facts a decision is made from.
type Facts struct {
	Mode Mode
	// FeatureRegistered: the policy's feature flag is Registered as of the
	// last provider refresh.
	FeatureRegistered bool
	// CreatedQualifying: the mesh was set up on a cluster that already
	// qualified (a "new cluster" in the seed document's words).
	CreatedQualifying bool
	APIServerVersion  string
	Nodes             []Node
	// Guard is the placement guard, for old nodes (guard.go).
	Guard Guard
}

// Condition names the MeshProfile condition a gate reports under.
const (
	ConditionFeatureRegistered     = "FeatureRegistered"
	ConditionVersionsCompatible    = "VersionsCompatible"
	ConditionNativeSidecarsEnabled = "NativeSidecarsEnabled"
)

// Gate is one rule a revision must pass to inject native sidecars.
type Gate struct {
	Name      string
	Condition string
	// Modes the gate applies in.
	Modes []Mode
	// EnabledOverrides: in Enabled mode a failure does not stop native
	// injection but degrades the mesh (the operator insisted).
	EnabledOverrides bool
	Check            func(p Policy, f Facts, r Revision) (ok bool, reason, message string)
}

// Gates is the decision table, evaluated in order for every revision.
var Gates = []Gate{
	{
		Name: "mode", Condition: ConditionNativeSidecarsEnabled,
		Modes: []Mode{ModeDisabled},
		Check: func(Policy, Facts, Revision) (bool, string, string) {
			return false, "ModeDisabled", "spec.nativeSidecarMode is Disabled: classic sidecars whatever the versions"
		},
	},
	{
		Name: "revision", Condition: ConditionVersionsCompatible,
		Modes: []Mode{ModeAuto, ModeEnabled},
		Check: func(p Policy, _ Facts, r Revision) (bool, string, string) {
			if r.AtLeast(p.MinRevision) {
				return true, "RevisionSupported", fmt.Sprintf("%s is %s or newer", r, p.MinRevision)
			}
			return false, "RevisionTooOld", fmt.Sprintf("%s is older than %s: upgrade the mesh to %s or newer", r, p.MinRevision, p.MinRevision)
		},
	},
	{
		Name: "api-server", Condition: ConditionVersionsCompatible,
		Modes: []Mode{ModeAuto, ModeEnabled},
		Check: func(p Policy, f Facts, _ Revision) (bool, string, string) {
			v, err := ParseKube(f.APIServerVersion)
			if err != nil {
				return false, "APIServerVersionUnknown", fmt.Sprintf("cannot read the API server version: %v", err)
			}
			if !v.AtLeast(p.MinKubernetes) {
				return false, "APIServerTooOld", fmt.Sprintf("the API server runs %s, older than %s: upgrade the control plane to %s or newer",
					f.APIServerVersion, MinorString(p.MinKubernetes), MinorString(p.MinKubernetes))
			}
			return true, "APIServerSupported", fmt.Sprintf("the API server runs %s", f.APIServerVersion)
		},
	},
	{
		Name: "nodes", Condition: ConditionVersionsCompatible,
		Modes: []Mode{ModeAuto, ModeEnabled}, EnabledOverrides: true,
		Check: func(p Policy, f Facts, _ Revision) (bool, string, string) {
			old := p.OldNodes(f.Nodes)
			if len(old) == 0 {
				return true, "NodesSupported", fmt.Sprintf("all %d node(s) run kubelet %s or newer", len(f.Nodes), MinorString(p.MinKubernetes))
			}
			// spec.oldNodes: Guard keeps native pods off old nodes instead.
			return guardOldNodes(p, f, old)
		},
	},
	{
		Name: "opt-in", Condition: ConditionFeatureRegistered,
		Modes: []Mode{ModeAuto},
		Check: func(p Policy, f Facts, r Revision) (bool, string, string) {
			if f.CreatedQualifying && r.AtLeast(p.AutoNewClusterFrom) {
				return true, "NewCluster", fmt.Sprintf("the mesh was set up on a cluster that qualified: native by default from %s", p.AutoNewClusterFrom)
			}
			if p.AutoExistingClusterFrom != nil && r.AtLeast(*p.AutoExistingClusterFrom) {
				return true, "DefaultOn", fmt.Sprintf("native by default from %s", *p.AutoExistingClusterFrom)
			}
			if p.FeatureFlag != "" && f.FeatureRegistered {
				return true, "FeatureRegistered", fmt.Sprintf("feature %s is registered and the provider refreshed", p.FeatureFlag)
			}
			if p.FeatureFlag != "" {
				return false, "FeatureNotRegistered", fmt.Sprintf("feature %s is not registered (or the provider not refreshed since): run meshaddon feature register --name %s, wait for Registered, then meshaddon provider register",
					p.FeatureFlag, p.FeatureFlag)
			}
			return false, "NotDefaultOn", fmt.Sprintf("%s is not on by default: on by default from %s on clusters created qualifying, otherwise from %s; or set spec.nativeSidecarMode to Enabled",
				r, p.AutoNewClusterFrom, p.AutoExistingClusterFrom)
		},
	},
}

// GateResult is one gate's verdict for one revision.
type GateResult struct {
	Gate      string
	Condition string
	OK        bool
	// Overridden: failed, but Enabled mode injects native anyway.
	Overridden bool
	Reason     string
	Message    string
}

// Decision is how one revision should inject, and why.
type Decision struct {
	Revision  string
	Injection Injection
	// Reason and Message explain the decision in one line: the first gate
	// that failed, or why native is on.
	Reason  string
	Message string
	// Degraded, when set, says why native injection is unsafe somewhere.
	Degraded string
	Gates    []GateResult
}

// Decide evaluates the gates for one revision. A revision that is not
// asm-1-NN is classic, with the reason.
func Decide(p Policy, f Facts, revision string) Decision {
	r, err := ParseRevision(revision)
	if err != nil {
		return Decision{Revision: revision, Injection: Classic, Reason: "InvalidRevision", Message: err.Error()}
	}
	return decide(p, f, revision, r)
}

// decide evaluates the gates for the revision named revision, at version r.
func decide(p Policy, f Facts, revision string, r Revision) Decision {
	d := Decision{Revision: revision, Injection: Classic}
	mode := f.Mode
	if mode == "" {
		mode = ModeAuto
	}
	native := true
	var why []string
	for _, g := range Gates {
		if !appliesIn(g, mode) {
			continue
		}
		ok, reason, msg := g.Check(p, f, r)
		res := GateResult{Gate: g.Name, Condition: g.Condition, OK: ok, Reason: reason, Message: msg}
		switch {
		case ok:
			why = append(why, msg)
		case mode == ModeEnabled && g.EnabledOverrides:
			res.Overridden = true
			d.Degraded = "spec.nativeSidecarMode is Enabled but " + msg + "; until then pods scheduled there hang in Init"
		case native:
			native = false
			d.Reason, d.Message = reason, msg
		}
		d.Gates = append(d.Gates, res)
	}
	if native {
		d.Injection = Native
		d.Reason = "Native"
		if mode == ModeEnabled {
			d.Reason = "ModeEnabled"
			why = append([]string{"spec.nativeSidecarMode is Enabled"}, why...)
		}
		d.Message = strings.Join(why, "; ")
	}
	return d
}

func appliesIn(g Gate, m Mode) bool {
	for _, gm := range g.Modes {
		if gm == m {
			return true
		}
	}
	return false
}

// ParseEnv reads an ENABLE_NATIVE_SIDECARS value as Istio does
// (strconv.ParseBool; an empty value counts as unset). set reports whether it
// is set at all; an unparseable value is an error.
func ParseEnv(value string, present bool) (inj Injection, set bool, err error) {
	if !present || value == "" {
		return "", false, nil
	}
	b, err := strconv.ParseBool(value)
	if err != nil {
		return "", true, fmt.Errorf("ENABLE_NATIVE_SIDECARS=%q is not a boolean", value)
	}
	if b {
		return Native, true, nil
	}
	return Classic, true, nil
}

// CheckGate runs the gate called name alone (as precheck does, one gate per
// line); ok is false and reason "UnknownGate" for a name not in Gates.
func CheckGate(name string, p Policy, f Facts, r Revision) (ok bool, reason, message string) {
	for _, g := range Gates {
		if g.Name == name {
			return g.Check(p, f, r)
		}
	}
	return false, "UnknownGate", "no gate named " + name
}
