package mesh

import (
	"strings"
	"testing"

	"github.com/meshaddon/meshaddon/internal/istiod"
)

func TestPortsRoundTrip(t *testing.T) {
	p, err := FreePorts()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePorts(p.String())
	if err != nil || got != p {
		t.Errorf("ParsePorts(%q) = %+v, %v", p.String(), got, err)
	}
	seen := map[int]bool{}
	for _, n := range []int{p.HTTPS, p.GRPC, p.SecureGRPC, p.HTTP, p.Monitoring, p.Ctrlz} {
		if seen[n] {
			t.Errorf("port %d picked twice: %+v", n, p)
		}
		seen[n] = true
	}
	for _, bad := range []string{"", "https=1", "https=x,grpc=2,securegrpc=3,http=4,monitoring=5,ctrlz=6", "https=1,grpc=2,securegrpc=3,http=4,monitoring=5,ctrlz=70000", "nosuch=1"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q) accepted", bad)
		}
	}
}

const rendered = `
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: istio-sidecar-injector-asm-1-27-aks-istio-system
  labels: {istio.io/rev: asm-1-27}
webhooks:
- name: rev.namespace.sidecar-injector.istio.io
  clientConfig:
    service: {name: istiod-asm-1-27, namespace: aks-istio-system, path: /inject/cluster/Kubernetes/net/}
    caBundle: ""
- name: rev.object.sidecar-injector.istio.io
  clientConfig:
    service: {name: istiod-asm-1-27, namespace: aks-istio-system, path: /inject/cluster/Kubernetes/net/}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istiod-asm-1-27
  labels: {app: istiod, istio.io/rev: asm-1-27}
spec:
  template:
    spec:
      containers:
      - name: discovery
        env:
        - {name: PILOT_TRACE_SAMPLING, value: "1"}
        - {name: ENABLE_NATIVE_SIDECARS, value: "true"}
`

func TestAdjust(t *testing.T) {
	for _, setting := range []string{"true", "false", "unset"} {
		objs, err := decode([]byte(rendered))
		if err != nil {
			t.Fatal(err)
		}
		ports := Ports{HTTPS: 1001, GRPC: 1002, SecureGRPC: 1003, HTTP: 1004, Monitoring: 1005, Ctrlz: 1006}
		if err := Adjust(objs, ports, setting); err != nil {
			t.Fatal(err)
		}
		hooks := objs[0].Object["webhooks"].([]any)
		for _, h := range hooks {
			cc := h.(map[string]any)["clientConfig"].(map[string]any)
			if cc["url"] != "https://127.0.0.1:1001/inject/cluster/Kubernetes/net/" || cc["service"] != nil || cc["caBundle"] != nil {
				t.Errorf("webhook clientConfig %v, want only the loopback URL (istiod sets the caBundle)", cc)
			}
		}
		d := objs[1]
		if d.GetAnnotations()[PortsAnnotation] != ports.String() {
			t.Errorf("ports annotation %q", d.GetAnnotations()[PortsAnnotation])
		}
		c := d.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		var values []string
		for _, e := range c["env"].([]any) {
			em := e.(map[string]any)
			if em["name"] == istiod.NativeSidecarsEnv {
				values = append(values, em["value"].(string))
			}
		}
		want := setting
		if setting == "unset" {
			want = ""
		}
		if strings.Join(values, ",") != want {
			t.Errorf("setting %s: ENABLE_NATIVE_SIDECARS values %v", setting, values)
		}
	}
}
