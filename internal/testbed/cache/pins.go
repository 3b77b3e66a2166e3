package cache

// The versions of everything the test bed builds. This is the one place they
// are pinned: change a version here and the cache builds it anew next time.
const (
	// KubernetesVersion is the release of k8s.io/kubernetes whose control plane
	// and kubectl the test bed runs.
	KubernetesVersion = "v1.34.4"
	// EtcdVersion is the release of go.etcd.io/etcd/server/v3.
	EtcdVersion = "v3.6.16"
	// KwokVersion is the release of sigs.k8s.io/kwok (kwok and kwokctl).
	KwokVersion = "v0.7.0"
	// IstioVersion is the istio.io/istio pseudo-version (the module proxy
	// serves no tagged releases of it) for pilot-discovery and istioctl.
	IstioVersion = "v0.0.0-20260827124520-eed52ebb66ad"
)

// Component names, used as cache keys and in progress messages.
const (
	Kubernetes = "kubernetes"
	Etcd       = "etcd"
	Kwok       = "kwok"
	Istio      = "istio"
)

// Components lists every component the test bed needs, in build order
// (slowest first so a cold build shows its longest wait up front).
var Components = []Component{
	{
		Name:    Kubernetes,
		Module:  "k8s.io/kubernetes",
		Version: KubernetesVersion,
		Packages: []string{
			"k8s.io/kubernetes/cmd/kube-apiserver",
			"k8s.io/kubernetes/cmd/kube-controller-manager",
			"k8s.io/kubernetes/cmd/kube-scheduler",
			"k8s.io/kubernetes/cmd/kubectl",
		},
		StampKubeVersion: true,
		// k8s.io/kubernetes points its staging modules at ./staging; outside
		// its repository they must be the matching v0.x releases.
		ReplaceStaging: true,
	},
	{
		Name:     Etcd,
		Module:   "go.etcd.io/etcd/server/v3",
		Version:  EtcdVersion,
		Packages: []string{"go.etcd.io/etcd/server/v3"},
		Binaries: []string{"etcd"},
	},
	{
		Name:     Kwok,
		Module:   "sigs.k8s.io/kwok",
		Version:  KwokVersion,
		Packages: []string{"sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"},
	},
	{
		Name:     Istio,
		Module:   "istio.io/istio",
		Version:  IstioVersion,
		Packages: []string{"istio.io/istio/pilot/cmd/pilot-discovery", "istio.io/istio/istioctl/cmd/istioctl"},
	},
}

// The versions of the release tools the tests of charts/, dist/ and
// config/monitoring run. They are built like the test bed's components but
// only when a test asks for them (Ensure(ctx, name)), never by `local up`.
const (
	// HelmVersion is helm.sh/helm/v3: v3.19 is the line built on k8s.io v0.34.
	HelmVersion = "v3.19.5"
	// KrewVersion is sigs.k8s.io/krew: its manifest validation is internal/,
	// so the test runs krew's own validate-krew-manifest and krew install.
	KrewVersion = "v0.4.3"
)

// Tool names, as Component names.
const (
	Helm = "helm"
	Krew = "krew"
)

// Tools are built on demand only.
var Tools = []Component{
	{
		Name:     Helm,
		Module:   "helm.sh/helm/v3",
		Version:  HelmVersion,
		Packages: []string{"helm.sh/helm/v3/cmd/helm"},
	},
	{
		Name:     Krew,
		Module:   "sigs.k8s.io/krew",
		Version:  KrewVersion,
		Packages: []string{"sigs.k8s.io/krew/cmd/krew", "sigs.k8s.io/krew/cmd/validate-krew-manifest"},
	},
}
