package manager

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/meshversion"
)

// GuardPath is where the manager's webhook server serves the placement guard.
const GuardPath = "/guard-pods"

// GuardConfiguration is the default name of the guard's
// MutatingWebhookConfiguration.
const GuardConfiguration = "meshaddon-placement-guard"

// PlacementWebhook is the placement guard (issue 16; istio/istio#48794):
// it keeps pods that will get a native istio-proxy off nodes whose kubelet
// cannot run sidecar containers (see Place). It never refuses a pod.
type PlacementWebhook struct {
	// Client reads the profile and nodes from the manager's cache.
	Client        client.Reader
	Policy        meshversion.Policy
	MeshNamespace string
	decoder       admission.Decoder
}

// NewPlacementWebhook returns the guard's admission webhook.
func NewPlacementWebhook(c client.Reader, p meshversion.Policy, meshNamespace string, d admission.Decoder) *PlacementWebhook {
	return &PlacementWebhook{Client: c, Policy: p, MeshNamespace: meshNamespace, decoder: d}
}

// Handle places one pod being created.
func (w *PlacementWebhook) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Kind.Kind != "Pod" || req.Operation != "CREATE" || req.SubResource != "" {
		return admission.Allowed("not a pod creation")
	}
	// The configuration's namespaceSelector leaves these out too; a
	// configuration edited by hand must not make the guard touch them.
	if req.Namespace == "kube-system" || req.Namespace == w.MeshNamespace {
		return admission.Allowed("not a mesh namespace")
	}
	var profile v1alpha1.MeshProfile
	if err := w.Client.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshProfileName}, &profile); err != nil {
		return admission.Allowed("no MeshProfile")
	}
	if profile.Spec.OldNodes != v1alpha1.OldNodesGuard {
		return admission.Allowed("spec.oldNodes is not Guard")
	}
	pod := &corev1.Pod{}
	if err := w.decoder.Decode(req, pod); err != nil {
		return w.unchanged(ctx, req, fmt.Errorf("cannot decode the pod: %w", err))
	}
	native := map[string]bool{}
	for _, r := range profile.Status.Revisions {
		native[r.Name] = r.Mode == string(meshversion.Native)
	}
	if !WillBeNative(pod, native) {
		guardPodsTotal.WithLabelValues("not-native").Inc()
		return admission.Allowed("not injected native")
	}
	result, err := Place(pod, func(name string) bool { return w.capable(ctx, name) })
	if err != nil {
		return w.unchanged(ctx, req, err)
	}
	guardPodsTotal.WithLabelValues(result).Inc()
	if result == PlacedUnchanged {
		return admission.Allowed("already placed")
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return w.unchanged(ctx, req, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw)
}

// unchanged admits a pod the guard cannot place, and reports it: in the
// manager's log, the meshaddon_guard_pods_total{result="unmergeable"}
// metric, and a warning to whoever created the pod.
func (w *PlacementWebhook) unchanged(ctx context.Context, req admission.Request, err error) admission.Response {
	guardPodsTotal.WithLabelValues("unmergeable").Inc()
	log.FromContext(ctx).Info("placement guard: pod admitted unchanged", "namespace", req.Namespace, "name", req.Name, "generateName", podGenerateName(req), "error", err.Error())
	r := admission.Allowed("unchanged")
	r.Warnings = []string{"meshaddon placement guard: pod admitted without its node placement (it may land on a node that cannot run native sidecars): " + err.Error()}
	return r
}

func podGenerateName(req admission.Request) string {
	var m struct {
		Metadata struct {
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(req.Object.Raw, &m)
	return m.Metadata.GenerateName
}

// capable reports whether a node runs sidecar containers: its label when
// the manager has written it, else the rule behind it; an unknown node
// cannot.
func (w *PlacementWebhook) capable(ctx context.Context, name string) bool {
	var n corev1.Node
	if err := w.Client.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
		return false
	}
	if v, ok := n.Labels[meshversion.SidecarContainersLabel]; ok {
		return v == "true"
	}
	return w.Policy.SidecarCapable(meshversion.NodeOf(&n))
}

// The guard's health includes its configuration: read that one object.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,resourceNames=meshaddon-placement-guard,verbs=get

// GuardHealth watches that the placement guard can work: its configuration
// exists, calls GuardPath, and points at this manager's webhook server, which
// answers TLS with a certificate the configuration's caBundle trusts and
// that has not expired. It checks every Interval and, when the verdict
// changes, sends on Changed so the profile is decided again at once.
type GuardHealth struct {
	// Reader reads the configuration from the API server, uncached.
	Reader client.Reader
	// Configuration names the MutatingWebhookConfiguration.
	Configuration string
	// Serving is the webhook server's address (host:port); empty when the
	// manager serves no webhook.
	Serving  string
	Interval time.Duration
	Changed  chan event.GenericEvent

	mu      sync.Mutex
	checked bool
	problem string
}

// Health returns whether the guard is healthy and, if not, why.
func (h *GuardHealth) Health() (bool, string) {
	if h == nil {
		return false, "the manager serves no placement webhook (start it with --guard-webhook-bind-address)"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.checked {
		return false, "the placement webhook has not been checked yet"
	}
	return h.problem == "", h.problem
}

// Start checks until ctx ends (a manager Runnable on every replica).
func (h *GuardHealth) Start(ctx context.Context) error {
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	for {
		problem, err := h.check(ctx)
		if err != nil {
			// The API server did not answer in time: keep the last verdict
			// rather than flip the mesh on a slow read.
			log.FromContext(ctx).Info("placement guard health: cannot read the configuration", "error", err.Error())
			problem = h.lastProblem()
		}
		h.mu.Lock()
		changed := !h.checked || problem != h.problem
		h.checked, h.problem = true, problem
		h.mu.Unlock()
		guardHealthy.Set(boolGauge(problem == ""))
		if changed {
			log.FromContext(ctx).Info("placement guard health", "healthy", problem == "", "problem", problem)
			select {
			case h.Changed <- event.GenericEvent{Object: &v1alpha1.MeshProfile{}}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// NeedLeaderElection: every replica serves the webhook and knows its health.
func (h *GuardHealth) NeedLeaderElection() bool { return false }

func (h *GuardHealth) lastProblem() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.checked {
		return "the placement webhook has not been checked yet"
	}
	return h.problem
}

// Check returns "" when the guard is healthy, else what is wrong and what
// to do.
func (h *GuardHealth) Check(ctx context.Context) string {
	problem, err := h.check(ctx)
	if err != nil {
		return fmt.Sprintf("cannot read MutatingWebhookConfiguration %s: %v", h.Configuration, err)
	}
	return problem
}

// check is Check, with a failure to read the configuration (other than its
// absence) apart, as an error.
func (h *GuardHealth) check(ctx context.Context) (string, error) {
	if h.Serving == "" {
		return "the manager serves no placement webhook (start it with --guard-webhook-bind-address)", nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := h.Reader.Get(ctx, client.ObjectKey{Name: h.Configuration}, &cfg); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("MutatingWebhookConfiguration %s not found: reinstall the add-on's configuration", h.Configuration), nil
		}
		return "", err
	}
	return h.checkServer(ctx, &cfg), nil
}

// checkServer checks that the configuration calls this manager's server and
// that the server answers as the configuration's caBundle expects.
func (h *GuardHealth) checkServer(ctx context.Context, cfg *admissionregistrationv1.MutatingWebhookConfiguration) string {
	var hook *admissionregistrationv1.MutatingWebhook
	var target *url.URL
	for i := range cfg.Webhooks {
		cc := cfg.Webhooks[i].ClientConfig
		switch {
		case cc.URL != nil:
			if u, err := url.Parse(*cc.URL); err == nil && u.Path == GuardPath {
				hook, target = &cfg.Webhooks[i], u
			}
		case cc.Service != nil && cc.Service.Path != nil && *cc.Service.Path == GuardPath:
			hook = &cfg.Webhooks[i]
			target = &url.URL{Host: cc.Service.Name + "." + cc.Service.Namespace + ".svc"}
		}
	}
	if hook == nil {
		return fmt.Sprintf("MutatingWebhookConfiguration %s has no webhook calling %s", h.Configuration, GuardPath)
	}
	roots := x509.NewCertPool()
	if len(hook.ClientConfig.CABundle) == 0 || !roots.AppendCertsFromPEM(hook.ClientConfig.CABundle) {
		return fmt.Sprintf("webhook %s of %s has no usable caBundle", hook.Name, h.Configuration)
	}
	addr := h.Serving
	if hook.ClientConfig.URL != nil {
		// The API server calls this URL: it must be this manager's server.
		if !sameAddr(target.Host, h.Serving) {
			return fmt.Sprintf("webhook %s calls %s, not this manager's webhook server %s", hook.Name, *hook.ClientConfig.URL, h.Serving)
		}
		addr = target.Host
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: &tls.Config{RootCAs: roots, ServerName: target.Hostname(), MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Sprintf("the placement webhook at %s does not answer as %s's caBundle expects: %v", addr, h.Configuration, err)
	}
	defer conn.Close()
	// A TLS answer is not yet a webhook: ask it.
	tr := &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+GuardPath, http.NoBody)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Sprintf("the placement webhook at %s does not answer: %v", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("the placement webhook at %s answers %s", addr, resp.Status)
	}
	return ""
}

func sameAddr(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	return ah == bh || bh == "" || bh == "0.0.0.0" || bh == "::"
}

// guardStatus is status.guard: nil unless spec.oldNodes is Guard.
func (r *ProfileReconciler) guardStatus(f meshversion.Facts) *v1alpha1.GuardStatus {
	if !f.Guard.On {
		return nil
	}
	st := &v1alpha1.GuardStatus{Healthy: f.Guard.Healthy, Message: f.Guard.Problem}
	excluded := meshversion.GuardedNodeNames(r.Policy.OldNodes(f.Nodes))
	st.ExcludedNodes = int32(len(excluded))
	if len(excluded) > v1alpha1.CensusListMax {
		excluded = excluded[:v1alpha1.CensusListMax]
	}
	st.Excluded = excluded
	for _, n := range f.Nodes {
		if n.Ready && r.Policy.SidecarCapable(n) {
			st.CapableNodes++
		}
	}
	if st.Healthy {
		st.Message = fmt.Sprintf("guarding: %d node(s) excluded from native pods, %d Ready node(s) take them", st.ExcludedNodes, st.CapableNodes)
	}
	return st
}
