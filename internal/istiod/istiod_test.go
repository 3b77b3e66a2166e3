package istiod

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshaddon/meshaddon/internal/meshversion"
)

func deployment(containers ...corev1.Container) *appsv1.Deployment {
	d := &appsv1.Deployment{}
	d.Spec.Template.Spec.Containers = containers
	return d
}

func env(name, value string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: value} }

func TestNativeSidecars(t *testing.T) {
	fromConfigMap := corev1.EnvVar{Name: NativeSidecarsEnv, ValueFrom: &corev1.EnvVarSource{
		ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "flags"}, Key: "native"}}}
	cases := []struct {
		name      string
		dep       *appsv1.Deployment
		shown     string
		inj       meshversion.Injection
		set, fail bool
	}{
		{"absent", deployment(corev1.Container{Name: Container, Env: []corev1.EnvVar{env("PILOT_X", "1")}}), Unset, "", false, false},
		{"true", deployment(corev1.Container{Name: Container, Env: []corev1.EnvVar{env(NativeSidecarsEnv, "true")}}), "true", meshversion.Native, true, false},
		{"empty counts as unset", deployment(corev1.Container{Name: Container, Env: []corev1.EnvVar{env(NativeSidecarsEnv, "")}}), "", "", false, false},
		{"the last duplicate wins, as in the kubelet", deployment(corev1.Container{Name: Container, Env: []corev1.EnvVar{env(NativeSidecarsEnv, "true"), env(NativeSidecarsEnv, "false")}}), "false", meshversion.Classic, true, false},
		{"only istiod's container counts", deployment(
			corev1.Container{Name: "sidecar", Env: []corev1.EnvVar{env(NativeSidecarsEnv, "true")}},
			corev1.Container{Name: Container}), Unset, "", false, false},
		{"valueFrom is never read as a value", deployment(corev1.Container{Name: Container, Env: []corev1.EnvVar{fromConfigMap}}), "from ConfigMap flags key native", "", false, true},
		{"a later literal replaces a valueFrom", deployment(corev1.Container{Name: Container, Env: []corev1.EnvVar{fromConfigMap, env(NativeSidecarsEnv, "1")}}), "1", meshversion.Native, true, false},
		{"no istiod container", deployment(corev1.Container{Name: "other", Env: []corev1.EnvVar{env(NativeSidecarsEnv, "true")}}), `unknown (no "discovery" container)`, "", false, true},
		{"not a boolean", deployment(corev1.Container{Name: Container, Env: []corev1.EnvVar{env(NativeSidecarsEnv, "yes")}}), "yes", "", true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NativeSidecars(c.dep)
			if got := s.String(); got != c.shown {
				t.Errorf("String() = %q, want %q", got, c.shown)
			}
			inj, set, err := s.Injection()
			if (err != nil) != c.fail {
				t.Fatalf("Injection() error = %v, want error %v", err, c.fail)
			}
			if err == nil && (inj != c.inj || set != c.set) {
				t.Errorf("Injection() = %q, %v; want %q, %v", inj, set, c.inj, c.set)
			}
		})
	}
}

func TestSetNativeSidecarsLeavesOneEntryAndKeepsTheRest(t *testing.T) {
	fromSecret := corev1.EnvVar{Name: NativeSidecarsEnv, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}}
	orig := []corev1.EnvVar{env("A", "1"), fromSecret, env("B", "2"), env(NativeSidecarsEnv, "false")}
	d := deployment(corev1.Container{Name: "other"}, corev1.Container{Name: Container, Env: orig})
	if !SetNativeSidecars(d, "true") {
		t.Fatal("SetNativeSidecars found no container")
	}
	got := d.Spec.Template.Spec.Containers[1].Env
	want := []corev1.EnvVar{env("A", "1"), env(NativeSidecarsEnv, "true"), env("B", "2")}
	if len(got) != len(want) {
		t.Fatalf("env = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Value != want[i].Value || got[i].ValueFrom != nil {
			t.Fatalf("env = %v, want %v", got, want)
		}
	}
	if s := NativeSidecars(d); s.String() != "true" {
		t.Errorf("read back %q", s)
	}

	empty := deployment(corev1.Container{Name: Container})
	SetNativeSidecars(empty, "false")
	if s := NativeSidecars(empty); s.String() != "false" {
		t.Errorf("added value read back %q", s)
	}
	if SetNativeSidecars(deployment(corev1.Container{Name: "x"}), "true") {
		t.Error("SetNativeSidecars without an istiod container reported success")
	}
}
