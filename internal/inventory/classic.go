package inventory

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// ClassicPod is the classic form of a native pod: istio-proxy a regular
// container again, last, and istio-init the last init container, as Istio's
// injector orders a classic pod (reorderPod in pkg/kube/inject/webhook.go;
// native, istio-init and the proxy come first, so the pod's own init
// containers run beside the proxy). A pod without a native istio-proxy
// comes back as it is.
func ClassicPod(native *corev1.Pod) *corev1.Pod {
	p := native.DeepCopy()
	at := slices.IndexFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == ProxyContainer })
	if at < 0 {
		return p
	}
	proxy := p.Spec.InitContainers[at]
	proxy.RestartPolicy = nil
	p.Spec.InitContainers = slices.Delete(p.Spec.InitContainers, at, at+1)
	p.Spec.Containers = append(p.Spec.Containers, proxy)
	if i := slices.IndexFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == istioInitContainer }); i >= 0 {
		c := p.Spec.InitContainers[i]
		p.Spec.InitContainers = append(slices.Delete(p.Spec.InitContainers, i, i+1), c)
	}
	return p
}

const istioInitContainer = "istio-init"

// GuardWebhook is the name of meshaddon's placement guard webhook (issue
// 16): part of the mesh's own machinery, like Istio's injector.
const GuardWebhook = "pods.guard.meshaddon.dev"

// InjectsNative reports whether the injector gives a pod with these labels
// and annotations a native istio-proxy: not when it opts out of injection,
// as its sidecar.istio.io/nativeSidecar override says, else as its
// revision (the istio.io/rev label) injects now — native tells, per
// revision. With no revision named, it counts as native when any revision
// is, the side that never hangs. The placement guard asks it of a pod at
// admission, precheck of the pod a restart would make.
func InjectsNative(labels, annotations map[string]string, native map[string]bool) bool {
	if annotations["sidecar.istio.io/inject"] == "false" || labels["sidecar.istio.io/inject"] == "false" {
		return false
	}
	switch annotations[NativeSidecarOverride] {
	case "true":
		return true
	case "false":
		return false
	}
	if rev := labels[RevisionLabel]; rev != "" {
		return native[rev]
	}
	for _, n := range native {
		if n {
			return true
		}
	}
	return false
}
