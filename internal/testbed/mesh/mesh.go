// Package mesh installs mesh revisions on the test bed from the manifests
// istioctl renders, adjusted only where a cluster without kube-proxy needs
// it: the webhooks call the local istiod by URL.
package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"strconv"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/internal/istiod"
	"github.com/meshaddon/meshaddon/internal/testbed/proc"
)

// Namespace is where the add-on's control plane lives.
const Namespace = "aks-istio-system"

// UpstreamNamespace is where upstream Istio's control plane lives.
const UpstreamNamespace = "istio-system"

// UpstreamImageTag is the pilot image tag the upstream layout renders: the
// Istio minor of the pinned istio.io/istio source (its VERSION file), which
// is what the test bed's istiod runs, so discovery reads its version right.
const UpstreamImageTag = "1.31-dev"

// DefaultRevision is upstream Istio's revision of an install without one.
const DefaultRevision = "default"

// IstiodName is the istiod Deployment of revision: "istiod" for the
// default revision, as Istio's chart names it, else istiod-<revision>.
func IstiodName(revision string) string {
	if revision == DefaultRevision {
		return "istiod"
	}
	return "istiod-" + revision
}

// Layout is how a revision is rendered: the add-on's (Upstream false) or
// upstream Istio's, in Namespace with Tags pointing at it.
type Layout struct {
	Upstream  bool
	Namespace string
	Tags      []string
}

// RevisionLabel names an object's mesh revision.
const RevisionLabel = "istio.io/rev"

// PortsAnnotation on an istiod Deployment holds the local ports its process
// listens on, so the runner and the webhooks agree without other state.
const PortsAnnotation = "testbed.meshaddon.dev/ports"

// Ports are the local listen ports of one revision's istiod.
type Ports struct {
	HTTPS, GRPC, SecureGRPC, HTTP, Monitoring, Ctrlz int
}

// String is the PortsAnnotation form: https=1,grpc=2,...
func (p Ports) String() string {
	return fmt.Sprintf("https=%d,grpc=%d,securegrpc=%d,http=%d,monitoring=%d,ctrlz=%d",
		p.HTTPS, p.GRPC, p.SecureGRPC, p.HTTP, p.Monitoring, p.Ctrlz)
}

// ParsePorts reads the PortsAnnotation form.
func ParsePorts(s string) (Ports, error) {
	var p Ports
	fields := map[string]*int{"https": &p.HTTPS, "grpc": &p.GRPC, "securegrpc": &p.SecureGRPC, "http": &p.HTTP, "monitoring": &p.Monitoring, "ctrlz": &p.Ctrlz}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		dst, ok := fields[k]
		if !ok || err != nil || n <= 0 || n > 65535 {
			return Ports{}, fmt.Errorf("invalid ports annotation %q", s)
		}
		*dst = n
	}
	if p.HTTPS == 0 || p.GRPC == 0 || p.SecureGRPC == 0 || p.HTTP == 0 || p.Monitoring == 0 || p.Ctrlz == 0 {
		return Ports{}, fmt.Errorf("invalid ports annotation %q: every port must be set", s)
	}
	return p, nil
}

// FreePorts picks unused loopback ports.
func FreePorts() (Ports, error) {
	p, err := proc.FreePorts(6)
	if err != nil {
		return Ports{}, err
	}
	return Ports{p[0], p[1], p[2], p[3], p[4], p[5]}, nil
}

// Render runs istioctl to produce the control-plane manifests of revision.
// Upstream, the default revision is rendered without one (as `istioctl
// install` without --revision), tags through the chart's revisionTags, and
// the image carries UpstreamImageTag.
func Render(ctx context.Context, istioctl, revision string, l Layout) ([]*unstructured.Unstructured, error) {
	ns := Namespace
	args := []string{"manifest", "generate", "--set", "profile=minimal"}
	if !l.Upstream || revision != DefaultRevision {
		args = append(args, "--set", "revision="+revision)
	}
	if l.Upstream {
		ns = l.Namespace
		args = append(args, "--set", "values.global.tag="+UpstreamImageTag)
		for i, t := range l.Tags {
			args = append(args, "--set", fmt.Sprintf("values.revisionTags[%d]=%s", i, t))
		}
	}
	args = append(args,
		"--set", "values.global.istioNamespace="+ns,
		"--set", "values.pilot.autoscaleEnabled=false",
		"--set", "values.pilot.replicaCount=1",
	)
	cmd := exec.CommandContext(ctx, istioctl, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Dir = "/"
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("istioctl manifest generate for %s: %w: %s", revision, err, strings.TrimSpace(stderr.String()))
	}
	return decode(out)
}

func decode(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode istioctl output: %w", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		objs = append(objs, u)
	}
}

// Adjust prepares rendered objects for the test bed: webhooks call istiod at
// its loopback URL (there is no kube-proxy), their caBundle is left to istiod,
// and the Deployment records its ports and the initial native sidecar setting
// ("true", "false" or "unset").
func Adjust(objs []*unstructured.Unstructured, ports Ports, nativeSidecars string) error {
	for _, u := range objs {
		switch u.GetKind() {
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			if err := pointWebhooksAt(u, ports.HTTPS); err != nil {
				return err
			}
		case "Deployment":
			if u.GetLabels()["app"] != "istiod" {
				continue
			}
			ann := u.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[PortsAnnotation] = ports.String()
			u.SetAnnotations(ann)
			if err := setEnv(u, nativeSidecars); err != nil {
				return err
			}
		}
	}
	return nil
}

func pointWebhooksAt(u *unstructured.Unstructured, port int) error {
	hooks, _, err := unstructured.NestedSlice(u.Object, "webhooks")
	if err != nil {
		return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
	}
	for i, h := range hooks {
		hook, ok := h.(map[string]any)
		if !ok {
			continue
		}
		path, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "path")
		if path == "" {
			path, _, _ = unstructured.NestedString(hook, "clientConfig", "path")
		}
		hook["clientConfig"] = map[string]any{"url": WebhookURL(port, path)}
		hooks[i] = hook
	}
	return unstructured.SetNestedSlice(u.Object, hooks, "webhooks")
}

// WebhookURL is where the API server calls istiod's webhook at path: the
// HTTPS port of the istiod process serving the revision, on loopback.
func WebhookURL(port int, path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", port, path)
}

// PointWebhooks points every webhook of revision's webhook configurations
// that calls a loopback istiod (all of them, as Adjust installs them) at
// port, keeping each path. The runner calls it when another istiod process
// takes over the revision.
func PointWebhooks(ctx context.Context, kube kubernetes.Interface, revision string, port int) error {
	opts := metav1.ListOptions{LabelSelector: RevisionLabel + "=" + revision}
	api := kube.AdmissionregistrationV1()
	mutating, err := api.MutatingWebhookConfigurations().List(ctx, opts)
	if err != nil {
		return fmt.Errorf("list the webhooks of %s: %w", revision, err)
	}
	for _, c := range mutating.Items {
		err := repoint(ctx, api.MutatingWebhookConfigurations(), c.Name, port, func(c *admissionv1.MutatingWebhookConfiguration) []*admissionv1.WebhookClientConfig {
			var out []*admissionv1.WebhookClientConfig
			for i := range c.Webhooks {
				out = append(out, &c.Webhooks[i].ClientConfig)
			}
			return out
		})
		if err != nil {
			return err
		}
	}
	validating, err := api.ValidatingWebhookConfigurations().List(ctx, opts)
	if err != nil {
		return fmt.Errorf("list the webhooks of %s: %w", revision, err)
	}
	for _, c := range validating.Items {
		err := repoint(ctx, api.ValidatingWebhookConfigurations(), c.Name, port, func(c *admissionv1.ValidatingWebhookConfiguration) []*admissionv1.WebhookClientConfig {
			var out []*admissionv1.WebhookClientConfig
			for i := range c.Webhooks {
				out = append(out, &c.Webhooks[i].ClientConfig)
			}
			return out
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// webhookConfigs is the client of one kind of webhook configuration.
type webhookConfigs[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// repoint moves the loopback URLs of one webhook configuration to port,
// retrying on conflict: istiod writes the caBundle of the same objects.
func repoint[T any](ctx context.Context, c webhookConfigs[T], name string, port int, clientConfigs func(T) []*admissionv1.WebhookClientConfig) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := c.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed := false
		for _, cc := range clientConfigs(obj) {
			if cc.URL == nil {
				continue
			}
			u, err := url.Parse(*cc.URL)
			if err != nil || u.Hostname() != "127.0.0.1" || u.Port() == strconv.Itoa(port) {
				continue
			}
			cc.URL = ptr.To(WebhookURL(port, u.RequestURI()))
			changed = true
		}
		if !changed {
			return nil
		}
		_, err = c.Update(ctx, obj, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("point webhook %s at port %d: %w", name, port, err)
	}
	return nil
}

func setEnv(u *unstructured.Unstructured, value string) error {
	containers, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if err != nil {
		return err
	}
	for i, c := range containers {
		cm, ok := c.(map[string]any)
		if !ok || cm["name"] != istiod.Container {
			continue
		}
		env, _ := cm["env"].([]any)
		var kept []any
		for _, e := range env {
			if em, ok := e.(map[string]any); ok && em["name"] == istiod.NativeSidecarsEnv {
				continue
			}
			kept = append(kept, e)
		}
		if value == "true" || value == "false" {
			kept = append(kept, map[string]any{"name": istiod.NativeSidecarsEnv, "value": value})
		}
		cm["env"] = kept
		containers[i] = cm
	}
	return unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers")
}

// Install creates the objects that do not exist yet, CRDs first, and returns
// the ones it created as "Kind/name". Objects that exist are left alone: the
// add-on manager owns parts of them (istiod's env) and istiod owns others
// (webhook caBundles), so re-running converges without undoing their work.
func Install(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, namespace string) ([]string, error) {
	var created []string
	ordered := append(filterKind(objs, "CustomResourceDefinition", true), filterKind(objs, "CustomResourceDefinition", false)...)
	for _, u := range ordered {
		if u.GetNamespace() == "" && namespaced(u.GetKind()) {
			u.SetNamespace(namespace)
		}
		err := c.Create(ctx, u.DeepCopy())
		switch {
		case err == nil:
			created = append(created, u.GetKind()+"/"+u.GetName())
		case apierrors.IsAlreadyExists(err):
		default:
			return created, fmt.Errorf("create %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return created, nil
}

func filterKind(objs []*unstructured.Unstructured, kind string, want bool) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if (u.GetKind() == kind) == want {
			out = append(out, u)
		}
	}
	return out
}

func namespaced(kind string) bool {
	switch kind {
	case "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
		"ValidatingWebhookConfiguration", "Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
		return false
	}
	return true
}
