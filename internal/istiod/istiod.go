// Package istiod reads and writes what an istiod Deployment runs with: the
// one place that knows which container is istiod's and how its
// ENABLE_NATIVE_SIDECARS is read. The manager, reconcile, precheck, migrate
// and the test bed all go through it, so they cannot disagree.
package istiod

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshaddon/meshaddon/internal/meshversion"
)

const (
	// Label selects istiod Deployments.
	Label = "app=istiod"
	// Container is istiod's container in its pod template (pilot-discovery).
	Container = "discovery"
	// NativeSidecarsEnv is istiod's switch for native sidecar injection.
	NativeSidecarsEnv = "ENABLE_NATIVE_SIDECARS"
	// Unset is how a missing ENABLE_NATIVE_SIDECARS is shown.
	Unset = "unset"
)

// Setting is ENABLE_NATIVE_SIDECARS as an istiod Deployment declares it.
//
// The rule: only the Container container counts (istiod reads its own
// environment); when the variable is listed more than once the last entry
// wins, as the kubelet builds the environment in order; a value taken from a
// ConfigMap or Secret (valueFrom) is not known from the Deployment, and is
// reported as such, never guessed.
type Setting struct {
	// Present is false when the variable is absent.
	Present bool
	// Value is the literal value (empty for valueFrom).
	Value string
	// From names the source of a valueFrom, e.g. "ConfigMap istio/flags key native".
	From string
	// NoContainer is true when the Deployment has no Container container.
	NoContainer bool
}

// NativeSidecars reads dep's setting.
func NativeSidecars(dep *appsv1.Deployment) Setting {
	c := container(dep)
	if c == nil {
		return Setting{NoContainer: true}
	}
	var s Setting
	for _, e := range c.Env {
		if e.Name != NativeSidecarsEnv {
			continue
		}
		s = Setting{Present: true, Value: e.Value, From: valueFrom(e.ValueFrom)}
		if s.From != "" {
			s.Value = ""
		}
	}
	return s
}

// Known is false when the value cannot be read from the Deployment alone.
func (s Setting) Known() bool { return !s.NoContainer && s.From == "" }

// String is the value as people and status read it: the literal value,
// "unset", or where it comes from.
func (s Setting) String() string {
	switch {
	case s.NoContainer:
		return fmt.Sprintf("unknown (no %q container)", Container)
	case s.From != "":
		return "from " + s.From
	case !s.Present:
		return Unset
	}
	return s.Value
}

// Injection is how istiod injects by this setting: set reports whether it is
// set at all (unset and empty let Istio decide, see meshversion.ResolveUnsetFor).
// A value that cannot be known is an error saying why and what to do.
func (s Setting) Injection() (inj meshversion.Injection, set bool, err error) {
	switch {
	case s.NoContainer:
		return "", false, fmt.Errorf("it has no %q container, so meshaddon cannot tell how it injects", Container)
	case s.From != "":
		return "", false, fmt.Errorf("%s comes from %s, which meshaddon does not read: set it as a value (meshaddon reconcile does)", NativeSidecarsEnv, s.From)
	}
	return meshversion.ParseEnv(s.Value, s.Present)
}

// SetNativeSidecars makes value the one ENABLE_NATIVE_SIDECARS of dep's istiod
// container: the first entry takes the value (dropping any valueFrom) and
// later duplicates, which would override it, are removed. It reports false
// when there is no such container.
func SetNativeSidecars(dep *appsv1.Deployment, value string) bool {
	c := container(dep)
	if c == nil {
		return false
	}
	env := c.Env[:0:0]
	done := false
	for _, e := range c.Env {
		if e.Name == NativeSidecarsEnv {
			if done {
				continue
			}
			e.Value, e.ValueFrom, done = value, nil, true
		}
		env = append(env, e)
	}
	if !done {
		env = append(env, corev1.EnvVar{Name: NativeSidecarsEnv, Value: value})
	}
	c.Env = env
	return true
}

func container(dep *appsv1.Deployment) *corev1.Container {
	cs := dep.Spec.Template.Spec.Containers
	for i := range cs {
		if cs[i].Name == Container {
			return &cs[i]
		}
	}
	return nil
}

func valueFrom(src *corev1.EnvVarSource) string {
	switch {
	case src == nil:
		return ""
	case src.ConfigMapKeyRef != nil:
		return fmt.Sprintf("ConfigMap %s key %s", src.ConfigMapKeyRef.Name, src.ConfigMapKeyRef.Key)
	case src.SecretKeyRef != nil:
		return fmt.Sprintf("Secret %s key %s", src.SecretKeyRef.Name, src.SecretKeyRef.Key)
	case src.FieldRef != nil:
		return "field " + src.FieldRef.FieldPath
	case src.ResourceFieldRef != nil:
		return "resource " + src.ResourceFieldRef.Resource
	}
	return "a valueFrom source"
}
