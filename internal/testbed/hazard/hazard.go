package hazard

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshaddon/meshaddon/internal/testbed/cluster"
)

// Kind is one hazard.
type Kind string

const (
	// Strip is a mutating webhook that drops restartPolicy from init
	// containers, with reinvocationPolicy IfNeeded so it runs again after
	// Istio's injector.
	Strip Kind = "strip-restart-policy"
	// Refuse is a validating webhook that refuses init containers with
	// restartPolicy.
	Refuse Kind = "refuse-restart-policy"
	// SideEffects is a mutating webhook with sideEffects: Some, which the
	// API server will not call on a dry run. admissionregistration/v1
	// refuses that value, so it is written to etcd directly, as a cluster
	// that stored it through v1beta1 before 1.22 still has it.
	SideEffects Kind = "side-effects"
	// Down is a validating webhook whose server does not listen.
	Down Kind = "down"
	// Slow is a validating webhook that answers after its timeoutSeconds.
	Slow Kind = "slow"
	// LimitRange caps a container's CPU limit at 1: the proxy's limit of 2
	// breaks it.
	LimitRange Kind = "limitrange"
	// Quota leaves room for one more pod: not for a rolling restart's
	// surge of two.
	Quota Kind = "quota"
	// VPA is the VerticalPodAutoscaler CRD and a VPA of a Deployment.
	VPA Kind = "vpa"
)

// Kinds is every hazard, in the order listed.
var Kinds = []Kind{Strip, Refuse, SideEffects, Down, Slow, LimitRange, Quota, VPA}

// ParseKind checks a kind's name.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return "", fmt.Errorf("unknown hazard %q: want one of %s", s, strings.Join(names, ", "))
}

// Webhook is true for the kinds that are webhook configurations.
func (k Kind) Webhook() bool {
	switch k {
	case Strip, Refuse, SideEffects, Down, Slow:
		return true
	}
	return false
}

// Labels on every hazard object, for List and Remove.
const (
	KindLabel      = "hazard.meshaddon.dev/kind"
	NamespaceLabel = "hazard.meshaddon.dev/namespace"
)

// Options are what a hazard is added with.
type Options struct {
	Namespace string
	// FailurePolicy of the down and slow webhooks (default Fail).
	FailurePolicy admissionregv1.FailurePolicyType
	// Target is the Deployment the VPA sizes.
	Target string
	// PodLabels, when set, narrow a webhook to pods so labelled (its
	// objectSelector).
	PodLabels map[string]string
}

// Bed adds hazards to one test bed cluster.
type Bed struct {
	Cluster *cluster.Cluster
	// Self is the meshaddon binary that runs the webhook server daemon.
	Self    string
	Kube    kubernetes.Interface
	Ext     apiextensionsclient.Interface
	Dynamic dynamic.Interface
}

// Name is the hazard's object name: its webhook configuration's (one per
// namespace) or its object's in the namespace.
func Name(k Kind, ns string) string {
	if k.Webhook() {
		return "hazard-" + string(k) + "-" + ns
	}
	return "hazard-" + string(k)
}

func labels(k Kind, ns string) map[string]string {
	return map[string]string{KindLabel: string(k), NamespaceLabel: ns}
}

// Add puts hazard k into opts.Namespace (which must exist) and says what
// it made.
func (b *Bed) Add(ctx context.Context, k Kind, opts Options) (string, error) {
	ns := opts.Namespace
	if _, err := b.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		return "", fmt.Errorf("namespace %s: %w", ns, err)
	}
	if opts.FailurePolicy == "" {
		opts.FailurePolicy = admissionregv1.Fail
	}
	if opts.FailurePolicy != admissionregv1.Fail && opts.FailurePolicy != admissionregv1.Ignore {
		return "", fmt.Errorf("failure policy %q: want Fail or Ignore", opts.FailurePolicy)
	}
	meta := metav1.ObjectMeta{Name: Name(k, ns), Labels: labels(k, ns)}
	switch k {
	case LimitRange:
		lr := &corev1.LimitRange{ObjectMeta: meta, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}}
		_, err := b.Kube.CoreV1().LimitRanges(ns).Create(ctx, lr, metav1.CreateOptions{})
		return fmt.Sprintf("LimitRange %s/%s: containers' CPU limit at most 1 (istio-proxy's is 2)", ns, meta.Name), err
	case Quota:
		return b.addQuota(ctx, meta, ns)
	case VPA:
		return b.addVPA(ctx, ns, opts.Target)
	}
	srv, err := ensureServer(ctx, b.Cluster, b.Self)
	if err != nil {
		return "", err
	}
	ca, err := srv.CABundle()
	if err != nil {
		return "", err
	}
	path := map[Kind]string{Strip: "/strip", Refuse: "/refuse", SideEffects: "/allow", Slow: "/slow"}[k]
	url, err := srv.URL(path)
	if err != nil {
		return "", err
	}
	if k == Down {
		url = "https://127.0.0.1:1/down" // nothing listens on port 1
	}
	cc := admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca}
	rules := []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create},
		Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}
	nsSel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{ns}}}}
	var objSel *metav1.LabelSelector
	if len(opts.PodLabels) > 0 {
		objSel = &metav1.LabelSelector{MatchLabels: opts.PodLabels}
	}
	name := string(k) + ".hazard.meshaddon.dev"
	var timeout int32 = 5
	if k == Slow || k == Down {
		timeout = slowTimeout
	}
	none := ptr.To(admissionregv1.SideEffectClassNone)
	switch k {
	case Strip, SideEffects:
		c := &admissionregv1.MutatingWebhookConfiguration{ObjectMeta: meta, Webhooks: []admissionregv1.MutatingWebhook{{
			Name: name, ClientConfig: cc, Rules: rules, NamespaceSelector: nsSel, ObjectSelector: objSel, SideEffects: none,
			FailurePolicy: ptr.To(admissionregv1.Fail), TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy: ptr.To(admissionregv1.IfNeededReinvocationPolicy)}}}
		if _, err := b.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, c, metav1.CreateOptions{}); err != nil {
			return "", err
		}
		if k == SideEffects {
			if err := b.storeSideEffectsSome(ctx, meta.Name); err != nil {
				return "", err
			}
			return fmt.Sprintf("MutatingWebhookConfiguration %s: sideEffects Some (written to etcd), for pods in %s", meta.Name, ns), nil
		}
		return fmt.Sprintf("MutatingWebhookConfiguration %s: drops restartPolicy from init containers (reinvocationPolicy IfNeeded), for pods in %s", meta.Name, ns), nil
	default:
		fp := admissionregv1.Fail
		if k == Down || k == Slow {
			fp = opts.FailurePolicy
		}
		c := &admissionregv1.ValidatingWebhookConfiguration{ObjectMeta: meta, Webhooks: []admissionregv1.ValidatingWebhook{{
			Name: name, ClientConfig: cc, Rules: rules, NamespaceSelector: nsSel, ObjectSelector: objSel, SideEffects: none,
			FailurePolicy: &fp, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"}}}}
		if _, err := b.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, c, metav1.CreateOptions{}); err != nil {
			return "", err
		}
		what := map[Kind]string{Refuse: "refuses init containers with restartPolicy",
			Down: "its server does not listen", Slow: fmt.Sprintf("answers after %s, past its timeoutSeconds %d", SlowDelay, timeout)}[k]
		return fmt.Sprintf("ValidatingWebhookConfiguration %s (failurePolicy %s): %s, for pods in %s", meta.Name, fp, what, ns), nil
	}
}

// addQuota leaves room for one more pod than the namespace has now.
func (b *Bed) addQuota(ctx context.Context, meta metav1.ObjectMeta, ns string) (string, error) {
	pods, err := b.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	n := int64(len(pods.Items) + 1)
	q := &corev1.ResourceQuota{ObjectMeta: meta, Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(n, resource.DecimalSI)}}}
	if _, err := b.Kube.CoreV1().ResourceQuotas(ns).Create(ctx, q, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	// Its usage, which the quota controller computes, is what precheck
	// reads: wait for it.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := b.Kube.CoreV1().ResourceQuotas(ns).Get(ctx, meta.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, ok := got.Status.Used[corev1.ResourcePods]
		return ok, nil
	})
	if err != nil {
		return "", fmt.Errorf("ResourceQuota %s/%s: the quota controller did not count its usage: %w", ns, meta.Name, err)
	}
	return fmt.Sprintf("ResourceQuota %s/%s: %d pods, room for one more", ns, meta.Name, n), nil
}

var vpaResource = schema.GroupVersionResource{Group: "autoscaling.k8s.io", Version: "v1", Resource: "verticalpodautoscalers"}

// addVPA serves the VPA CRD, once, and adds a VPA of Deployment target.
func (b *Bed) addVPA(ctx context.Context, ns, target string) (string, error) {
	if target == "" {
		return "", fmt.Errorf("the vpa hazard needs --target, the Deployment it sizes")
	}
	crd := VPACRD()
	if _, err := b.Ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := b.Ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				_, err := b.Kube.Discovery().ServerResourcesForGroupVersion(vpaResource.GroupVersion().String())
				return err == nil, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("the VerticalPodAutoscaler CRD is not served: %w", err)
	}
	v := VPAObject(ns, Name(VPA, ns), target)
	v.SetLabels(labels(VPA, ns))
	if _, err := b.Dynamic.Resource(vpaResource).Namespace(ns).Create(ctx, v, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	return fmt.Sprintf("VerticalPodAutoscaler %s/%s (updateMode Auto) of Deployment %s", ns, v.GetName(), target), nil
}

// Entry is one hazard in place.
type Entry struct {
	Kind      Kind
	Namespace string
	Object    string // Kind/name
}

// List finds every hazard in the cluster by its labels.
func (b *Bed) List(ctx context.Context) ([]Entry, error) {
	sel := metav1.ListOptions{LabelSelector: KindLabel}
	var out []Entry
	add := func(m metav1.Object, kind string) {
		l := m.GetLabels()
		out = append(out, Entry{Kind: Kind(l[KindLabel]), Namespace: l[NamespaceLabel], Object: kind + "/" + m.GetName()})
	}
	mut, err := b.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, sel)
	if err != nil {
		return nil, err
	}
	for i := range mut.Items {
		add(&mut.Items[i], "MutatingWebhookConfiguration")
	}
	val, err := b.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, sel)
	if err != nil {
		return nil, err
	}
	for i := range val.Items {
		add(&val.Items[i], "ValidatingWebhookConfiguration")
	}
	lrs, err := b.Kube.CoreV1().LimitRanges("").List(ctx, sel)
	if err != nil {
		return nil, err
	}
	for i := range lrs.Items {
		add(&lrs.Items[i], "LimitRange")
	}
	qs, err := b.Kube.CoreV1().ResourceQuotas("").List(ctx, sel)
	if err != nil {
		return nil, err
	}
	for i := range qs.Items {
		add(&qs.Items[i], "ResourceQuota")
	}
	vpas, err := b.Dynamic.Resource(vpaResource).List(ctx, sel)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if vpas != nil {
		for i := range vpas.Items {
			add(&vpas.Items[i], "VerticalPodAutoscaler")
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Kind < out[j].Kind
	})
	return out, nil
}

// Remove takes hazard k out of ns (the VPA CRD too once no VPA is left);
// false when it was not there.
func (b *Bed) Remove(ctx context.Context, k Kind, ns string) (bool, error) {
	name := Name(k, ns)
	var err error
	switch k {
	case Strip, SideEffects:
		err = b.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
	case Refuse, Down, Slow:
		err = b.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
	case LimitRange:
		err = b.Kube.CoreV1().LimitRanges(ns).Delete(ctx, name, metav1.DeleteOptions{})
	case Quota:
		err = b.Kube.CoreV1().ResourceQuotas(ns).Delete(ctx, name, metav1.DeleteOptions{})
	case VPA:
		err = b.Dynamic.Resource(vpaResource).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
		if err == nil {
			left, lerr := b.Dynamic.Resource(vpaResource).List(ctx, metav1.ListOptions{Limit: 1})
			if lerr == nil && len(left.Items) == 0 {
				err = b.Ext.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, VPACRD().Name, metav1.DeleteOptions{})
				if apierrors.IsNotFound(err) {
					err = nil
				}
			}
		}
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
