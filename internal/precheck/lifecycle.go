package precheck

// The autoscaler and lifecycle checks (issue 13 item 3): what a workload
// that migrate restarts relies on of the classic proxy and loses, or gets
// otherwise, once istio-proxy is a native sidecar. They read the same
// workload templates as the resource check (Env.meshWorkloads), the
// revision's mesh config and injector values, and VerticalPodAutoscalers
// when the API server serves them; never pods.
//
// What native mode does instead is Istio's own injection template
// (manifests/charts/istio-control/istio-discovery/files/injection-template.yaml)
// and pilot-agent (pkg/envoy/agent.go):
//   - holdApplicationUntilProxyStarts only adds the postStart
//     `pilot-agent wait` hook to a classic proxy; native, the hook is not
//     injected (istio/istio#59690) and Kubernetes itself starts the app
//     containers once the sidecar's startupProbe (/healthz/ready) has
//     passed, which the injector adds while global.proxy.startupProbe is
//     enabled (the default).
//   - native, istio-proxy gets a preStop hook (`pilot-agent request POST
//     drain`): it starts draining as soon as the pod starts terminating,
//     beside the app's own preStop hooks, and gets SIGTERM only after every
//     app container has exited, when it exits at once ("already drained").
//     terminationDrainDuration and EXIT_ON_ZERO_ACTIVE_CONNECTIONS, which
//     act on SIGTERM, no longer keep it up; and requests the app makes
//     while the proxy drains may be answered `connection: close`
//     (istio/istio#51855).

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshaddon/meshaddon/internal/inventory"
	"github.com/meshaddon/meshaddon/internal/meshdiscovery"
	"github.com/meshaddon/meshaddon/internal/migrate"
)

// ProxyConfigAnnotation is the pod annotation that overrides the mesh
// config's defaultConfig for one pod.
const ProxyConfigAnnotation = "proxy.istio.io/config"

// exitOnZero is the proxyMetadata setting that keeps pilot-agent up on
// SIGTERM until no connection is left.
const exitOnZero = "EXIT_ON_ZERO_ACTIVE_CONNECTIONS"

// ProxyConfig is the part of Istio's ProxyConfig these checks read.
type ProxyConfig struct {
	HoldApplicationUntilProxyStarts *bool             `json:"holdApplicationUntilProxyStarts,omitempty"`
	TerminationDrainDuration        string            `json:"terminationDrainDuration,omitempty"`
	ProxyMetadata                   map[string]string `json:"proxyMetadata,omitempty"`
}

// over is c with what o sets on top, as the injector merges a pod's
// proxy.istio.io/config over the mesh's defaultConfig.
func (c ProxyConfig) over(o ProxyConfig) ProxyConfig {
	out := c
	if o.HoldApplicationUntilProxyStarts != nil {
		out.HoldApplicationUntilProxyStarts = o.HoldApplicationUntilProxyStarts
	}
	if o.TerminationDrainDuration != "" {
		out.TerminationDrainDuration = o.TerminationDrainDuration
	}
	if len(o.ProxyMetadata) > 0 {
		out.ProxyMetadata = map[string]string{}
		for k, v := range c.ProxyMetadata {
			out.ProxyMetadata[k] = v
		}
		for k, v := range o.ProxyMetadata {
			out.ProxyMetadata[k] = v
		}
	}
	return out
}

// ParseProxyConfig reads a proxy.istio.io/config annotation (YAML or JSON).
func ParseProxyConfig(s string) (ProxyConfig, error) {
	var c ProxyConfig
	if err := yaml.Unmarshal([]byte(s), &c); err != nil {
		return c, fmt.Errorf("%s is not a ProxyConfig: %w", ProxyConfigAnnotation, err)
	}
	return c, nil
}

// RevisionConfig is what a revision's istiod injects by default: its mesh
// config's defaultConfig (ConfigMap istio-<rev>, key mesh) and its
// injector values (ConfigMap istio-sidecar-injector-<rev>, key values).
type RevisionConfig struct {
	Default ProxyConfig
	// Hold is global.proxy.holdApplicationUntilProxyStarts.
	Hold bool
	// StartupProbe is global.proxy.startupProbe.enabled (true unless the
	// values say otherwise).
	StartupProbe bool
	// NamespacesByDefault is sidecarInjectorWebhook.enableNamespacesByDefault:
	// what the revision was installed with (the webhook it renders is what
	// the API server applies, see meshdiscovery.AutoWebhook).
	NamespacesByDefault bool
}

// ParseRevisionConfig reads the two ConfigMaps' data (either may be empty).
func ParseRevisionConfig(mesh, values string) (RevisionConfig, error) {
	rc := RevisionConfig{StartupProbe: true}
	var m struct {
		DefaultConfig ProxyConfig `json:"defaultConfig"`
	}
	if err := yaml.Unmarshal([]byte(mesh), &m); err != nil {
		return rc, fmt.Errorf("mesh config: %w", err)
	}
	rc.Default = m.DefaultConfig
	var v struct {
		Global struct {
			Proxy struct {
				HoldApplicationUntilProxyStarts bool `json:"holdApplicationUntilProxyStarts"`
				StartupProbe                    struct {
					Enabled *bool `json:"enabled"`
				} `json:"startupProbe"`
			} `json:"proxy"`
		} `json:"global"`
		SidecarInjectorWebhook struct {
			EnableNamespacesByDefault bool `json:"enableNamespacesByDefault"`
		} `json:"sidecarInjectorWebhook"`
	}
	if values != "" {
		if err := json.Unmarshal([]byte(values), &v); err != nil {
			return rc, fmt.Errorf("injector values: %w", err)
		}
	}
	rc.Hold = v.Global.Proxy.HoldApplicationUntilProxyStarts
	rc.NamespacesByDefault = v.SidecarInjectorWebhook.EnableNamespacesByDefault
	if en := v.Global.Proxy.StartupProbe.Enabled; en != nil {
		rc.StartupProbe = *en
	}
	return rc, nil
}

// RevisionConfigs reads each revision's mesh config and injector values
// from the mesh namespace; a revision without them has Istio's defaults.
func (e *Env) RevisionConfigs(ctx context.Context) (map[string]RevisionConfig, error) {
	return load(e, "revisionconfigs", func() (map[string]RevisionConfig, error) {
		revs, err := e.Revisions(ctx)
		if err != nil {
			return nil, err
		}
		found, err := e.Mesh(ctx)
		if err != nil {
			return nil, err
		}
		out := map[string]RevisionConfig{}
		for _, rev := range revs {
			// The revision's ConfigMaps live beside its istiod, wherever
			// discovery found it (MeshNamespace may be empty: every one).
			ns := e.MeshNamespace
			if r, ok := found.Revision(rev); ok {
				ns = r.Namespace
			}
			if ns == "" { // no istiod found for it: Istio's defaults
				rc, _ := ParseRevisionConfig("", "")
				out[rev] = rc
				continue
			}
			// Upstream's default revision has unsuffixed ConfigMaps.
			suffix := "-" + rev
			if rev == meshdiscovery.DefaultRevision {
				suffix = ""
			}
			data := func(name, key string) (string, error) {
				cm, err := e.Kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					return "", nil
				}
				if err != nil {
					return "", fmt.Errorf("read ConfigMap %s/%s: %w", ns, name, err)
				}
				return cm.Data[key], nil
			}
			mesh, err := data("istio"+suffix, "mesh")
			if err != nil {
				return nil, err
			}
			values, err := data("istio-sidecar-injector"+suffix, "values")
			if err != nil {
				return nil, err
			}
			rc, err := ParseRevisionConfig(mesh, values)
			if err != nil {
				return nil, fmt.Errorf("revision %s: %w", rev, err)
			}
			out[rev] = rc
		}
		return out, nil
	})
}

// meshWorkloads are the templates of the workloads migrate would restart,
// each with the revision that injects it (meshScope: by its namespace's
// labels, or by its own pod labels in a namespace outside the mesh), read
// once for the resource and lifecycle checks. injected counts the
// namespaces and workloads the mesh reaches, before the filter on what
// migrate touches and on what a restart would make native.
type meshWorkloads struct {
	injected  int
	templates []template
}

func (e *Env) meshWorkloads(ctx context.Context) (*meshWorkloads, error) {
	return load(e, "meshworkloads", func() (*meshWorkloads, error) {
		scope, err := e.meshScope(ctx)
		if err != nil {
			return nil, err
		}
		mw := &meshWorkloads{}
		// The mesh's own namespaces, as migrate leaves them (wherever
		// discovery found istiod, or --mesh-namespace).
		own := map[string]bool{}
		for _, ns := range scope.mesh.Namespaces() {
			own[ns] = true
		}
		for ns := range scope.nsLabels {
			if _, ok := scope.namespaceRevision(ns); ok {
				mw.injected++
			}
		}
		all, err := e.Workloads(ctx)
		if err != nil {
			return nil, err
		}
		for _, t := range all {
			rev, ok := scope.revision(t.namespace, t.tmpl.Labels)
			if !ok {
				continue
			}
			if _, inMesh := scope.namespaceRevision(t.namespace); !inMesh {
				mw.injected++ // opted in by its own pod labels
			}
			if migrate.Untouched(t.namespace, e.MeshNamespace) || own[t.namespace] || !restartsNative(t) {
				continue
			}
			t.revision = rev
			mw.templates = append(mw.templates, t)
		}
		return mw, nil
	})
}

// workloadsOrSkip is meshWorkloads for a check: a skip result when there
// is nothing to judge, a warning when reading it is forbidden.
func workloadsOrSkip(ctx context.Context, e *Env) (*meshWorkloads, []Result, error) {
	mw, err := e.meshWorkloads(ctx)
	if apierrors.IsForbidden(err) {
		return nil, one(Warn, "unchecked: "+err.Error(), "run precheck as someone who may list Deployments, StatefulSets and DaemonSets cluster-wide"), nil
	}
	if err != nil {
		return nil, nil, err
	}
	if mw.injected == 0 {
		return nil, one(Skip, noMeshNamespace, ""), nil
	}
	if len(mw.templates) == 0 {
		return nil, one(Skip, "no Deployment, StatefulSet or DaemonSet in a mesh namespace", ""), nil
	}
	return mw, nil, nil
}

// VPA is the part of a VerticalPodAutoscaler the check reads.
type VPA struct {
	Namespace, Name string
	// Target is Kind/name of spec.targetRef.
	Target     string
	UpdateMode string
	// ProxyPolicy: a resourcePolicy.containerPolicies entry names
	// istio-proxy.
	ProxyPolicy bool
}

// vpaGroup is the VerticalPodAutoscaler API's group.
const vpaGroup = "autoscaling.k8s.io"

// VPAs lists the VerticalPodAutoscalers; served is false when the API
// server does not serve them (no CRD).
func (e *Env) VPAs(ctx context.Context) (vpas []VPA, served bool, err error) {
	version := ""
	for _, v := range []string{"v1", "v1beta2"} {
		rl, err := e.Kube.Discovery().ServerResourcesForGroupVersion(vpaGroup + "/" + v)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("discover %s/%s: %w", vpaGroup, v, err)
		}
		for _, r := range rl.APIResources {
			if r.Name == "verticalpodautoscalers" {
				version = v
			}
		}
		if version != "" {
			break
		}
	}
	if version == "" {
		return nil, false, nil
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: vpaGroup, Version: version, Kind: "VerticalPodAutoscalerList"})
	cont := ""
	for {
		if err := e.Client.List(ctx, list, client.Limit(500), client.Continue(cont)); err != nil {
			return nil, true, fmt.Errorf("list VerticalPodAutoscalers: %w", err)
		}
		for _, u := range list.Items {
			v := VPA{Namespace: u.GetNamespace(), Name: u.GetName()}
			kind, _, _ := unstructured.NestedString(u.Object, "spec", "targetRef", "kind")
			name, _, _ := unstructured.NestedString(u.Object, "spec", "targetRef", "name")
			v.Target = kind + "/" + name
			v.UpdateMode, _, _ = unstructured.NestedString(u.Object, "spec", "updatePolicy", "updateMode")
			if v.UpdateMode == "" {
				v.UpdateMode = "Auto" // the VPA API's default
			}
			pols, _, _ := unstructured.NestedSlice(u.Object, "spec", "resourcePolicy", "containerPolicies")
			for _, p := range pols {
				if m, ok := p.(map[string]any); ok && m["containerName"] == inventory.ProxyContainer {
					v.ProxyPolicy = true
				}
			}
			vpas = append(vpas, v)
		}
		if cont = list.GetContinue(); cont == "" {
			return vpas, true, nil
		}
	}
}

func checkVPAs(ctx context.Context, e *Env) ([]Result, error) {
	if e.Client == nil {
		return nil, nil
	}
	vpas, served, err := e.VPAs(ctx)
	if apierrors.IsForbidden(err) {
		return one(Warn, "unchecked: "+err.Error(), "run precheck as someone who may list verticalpodautoscalers.autoscaling.k8s.io cluster-wide"), nil
	}
	if err != nil {
		return nil, err
	}
	if !served {
		return one(OK, "the API server serves no VerticalPodAutoscaler (no autoscaling.k8s.io CRD): nothing sizes the proxy but its template", ""), nil
	}
	mw, res, err := workloadsOrSkip(ctx, e)
	if mw == nil {
		return res, err
	}
	return JudgeVPAs(vpas, mw.templates), nil
}

// JudgeVPAs warns for each VPA whose target migrate would restart.
func JudgeVPAs(vpas []VPA, tmpls []template) []Result {
	restarts := map[string]bool{}
	for _, t := range tmpls {
		restarts[t.namespace+"/"+t.name] = true
	}
	var out []Result
	for _, v := range vpas {
		if !restarts[v.Namespace+"/"+v.Target] {
			continue
		}
		also := ""
		if v.ProxyPolicy {
			also = "; its containerPolicies entry for istio-proxy stops applying"
		}
		out = append(out, Result{Status: Warn,
			Message: fmt.Sprintf("%s/%s: VerticalPodAutoscaler %s (updateMode %s) sizes it, but VPA recommends and sets resources for regular containers only: once istio-proxy is a native sidecar (an init container) its requests stay what the injector gives (kubernetes/autoscaler#6691, #7229)%s",
				v.Namespace, v.Target, v.Name, v.UpdateMode, also),
			Hint:       "size the proxy on the pod template (sidecar.istio.io/proxyCPU, proxyMemory, proxyCPULimit, proxyMemoryLimit annotations), or run a VPA release that sizes init containers",
			Namespaces: []string{v.Namespace}, Workload: v.Target, Object: "VerticalPodAutoscaler/" + v.Name})
	}
	if len(out) == 0 {
		return one(OK, fmt.Sprintf("%d VerticalPodAutoscaler(s), none targets a workload migrate restarts", len(vpas)), "")
	}
	return out
}

// judgeTemplates runs judge over the templates migrate would restart and
// their revisions' mesh configs: the shape of the lifecycle checks.
func judgeTemplates(judge func([]template, map[string]RevisionConfig) []Result) func(context.Context, *Env) ([]Result, error) {
	return func(ctx context.Context, e *Env) ([]Result, error) {
		mw, res, err := workloadsOrSkip(ctx, e)
		if mw == nil {
			return res, err
		}
		rcs, err := e.RevisionConfigs(ctx)
		if err != nil {
			return nil, err
		}
		return judge(mw.templates, rcs), nil
	}
}

var checkHoldApplication = judgeTemplates(JudgeHold)

// effective is the ProxyConfig a template's pods get from revision rc,
// and the annotation's parse error.
func effective(t template, rc RevisionConfig) (ProxyConfig, error) {
	s, ok := t.tmpl.Annotations[ProxyConfigAnnotation]
	if !ok {
		return rc.Default, nil
	}
	pc, err := ParseProxyConfig(s)
	return rc.Default.over(pc), err
}

// badAnnotation is the finding for a proxy.istio.io/config that does not
// parse: the injector refuses such a pod.
func badAnnotation(t template, err error) Result {
	return Result{Status: Fail, Message: fmt.Sprintf("%s/%s: %v", t.namespace, t.name, err),
		Hint:       "fix the annotation on the pod template: the injector refuses a pod whose ProxyConfig it cannot read",
		Namespaces: []string{t.namespace}, Workload: t.name}
}

// JudgeHold notes the workloads whose pods hold the app until the proxy
// starts, and what native mode does instead; without the native startup
// probe the app would no longer wait, which is a warning.
func JudgeHold(tmpls []template, rcs map[string]RevisionConfig) []Result {
	var out []Result
	meshWide := map[string]int{} // revision → workloads holding by its default
	for _, t := range tmpls {
		rev := t.revision
		rc := rcs[rev]
		pc, err := effective(t, rc)
		if err != nil {
			out = append(out, badAnnotation(t, err))
			continue
		}
		_, annotated := t.tmpl.Annotations[ProxyConfigAnnotation]
		var own ProxyConfig
		if annotated {
			own, _ = ParseProxyConfig(t.tmpl.Annotations[ProxyConfigAnnotation])
		}
		hold := rc.Hold
		if pc.HoldApplicationUntilProxyStarts != nil {
			hold = hold || *pc.HoldApplicationUntilProxyStarts
		}
		if !hold {
			continue
		}
		if own.HoldApplicationUntilProxyStarts == nil || !*own.HoldApplicationUntilProxyStarts {
			meshWide[rev]++ // held by the revision's values or mesh config
			continue
		}
		out = append(out, holdResult(fmt.Sprintf("%s/%s sets holdApplicationUntilProxyStarts in %s", t.namespace, t.name, ProxyConfigAnnotation), rc,
			Result{Namespaces: []string{t.namespace}, Workload: t.name}))
	}
	revs := make([]string, 0, len(meshWide))
	for r := range meshWide {
		revs = append(revs, r)
	}
	sort.Strings(revs)
	for _, rev := range revs {
		out = append(out, holdResult(fmt.Sprintf("revision %s holds the app until the proxy starts for %d workload(s) (holdApplicationUntilProxyStarts in its mesh config or injector values)", rev, meshWide[rev]), rcs[rev],
			Result{Revision: rev}))
	}
	if len(out) == 0 {
		return one(OK, "no workload relies on holdApplicationUntilProxyStarts", "")
	}
	return out
}

// holdResult is the finding for what, standing where where says.
func holdResult(what string, rc RevisionConfig, where Result) Result {
	r := where
	if !rc.StartupProbe {
		r.Status = Warn
		r.Message = what + ": native, the injector drops its postStart `pilot-agent wait` hook (istio/istio#59690) and the revision's injector values turn the proxy's startupProbe off, so the app containers start as soon as istio-proxy has started, before it is ready"
		r.Hint = "enable global.proxy.startupProbe on the revision, so Kubernetes starts the app only once the native istio-proxy is ready"
		return r
	}
	r.Status = OK
	r.Message = what + ": native, the injector drops its postStart `pilot-agent wait` hook (istio/istio#59690); Kubernetes itself starts the app containers once istio-proxy's startupProbe passes, so the app still waits for the proxy"
	return r
}

var checkShutdown = judgeTemplates(JudgeShutdown)

// shutdownSettings names what of pc acts on the proxy's SIGTERM.
func shutdownSettings(pc ProxyConfig) []string {
	var out []string
	if pc.TerminationDrainDuration != "" {
		out = append(out, "terminationDrainDuration "+pc.TerminationDrainDuration)
	}
	if strings.EqualFold(pc.ProxyMetadata[exitOnZero], "true") {
		out = append(out, exitOnZero+"=true")
	}
	return out
}

// JudgeShutdown warns for workloads whose shutdown leans on the classic
// proxy's: preStop hooks of app containers, and terminationDrainDuration or
// EXIT_ON_ZERO_ACTIVE_CONNECTIONS in their ProxyConfig (per workload when
// its annotation sets them, once per revision when its mesh config does).
func JudgeShutdown(tmpls []template, rcs map[string]RevisionConfig) []Result {
	var out []Result
	meshWide := map[string]int{}
	for _, t := range tmpls {
		where := Result{Namespaces: []string{t.namespace}, Workload: t.name}
		var hooks []string
		for _, c := range t.tmpl.Spec.Containers {
			if c.Name != inventory.ProxyContainer && c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
				hooks = append(hooks, c.Name)
			}
		}
		if len(hooks) > 0 {
			out = append(out, Result{Status: Warn,
				Message: fmt.Sprintf("%s/%s: preStop hook on %s: native, istio-proxy starts draining when the pod starts terminating, beside the hook, and stops only after every app container has exited: requests the hook makes through the proxy may be answered `connection: close` (istio/istio#51855), and a sleep that kept the app behind the classic proxy's shutdown only adds to it",
					t.namespace, t.name, strings.Join(hooks, ", ")),
				Hint:       "make the preStop hook's outbound calls tolerate a closed connection (retry on a new one), and drop sleeps that waited for the classic proxy, before migrate restarts it",
				Namespaces: where.Namespaces, Workload: where.Workload})
		}
		rc := rcs[t.revision]
		pc, err := effective(t, rc)
		if err != nil {
			out = append(out, badAnnotation(t, err))
			continue
		}
		own := ProxyConfig{}
		if s, ok := t.tmpl.Annotations[ProxyConfigAnnotation]; ok {
			own, _ = ParseProxyConfig(s)
		}
		if set := shutdownSettings(own); len(set) > 0 {
			out = append(out, shutdownResult(fmt.Sprintf("%s/%s sets %s in %s", t.namespace, t.name, strings.Join(shutdownSettings(pc), " and "), ProxyConfigAnnotation), where))
		} else if len(shutdownSettings(pc)) > 0 {
			meshWide[t.revision]++
		}
	}
	revs := make([]string, 0, len(meshWide))
	for r := range meshWide {
		revs = append(revs, r)
	}
	sort.Strings(revs)
	for _, rev := range revs {
		out = append(out, shutdownResult(fmt.Sprintf("revision %s's mesh config sets %s for %d workload(s)", rev, strings.Join(shutdownSettings(rcs[rev].Default), " and "), meshWide[rev]),
			Result{Revision: rev}))
	}
	if len(out) == 0 {
		return one(OK, "no workload's shutdown depends on the proxy (no preStop hook, terminationDrainDuration or "+exitOnZero+")", "")
	}
	return out
}

// shutdownResult is the finding for what, standing where where says.
func shutdownResult(what string, where Result) Result {
	r := where
	r.Status = Warn
	r.Message = what + ": native, istio-proxy drains from the start of the pod's termination (its own preStop hook) and exits at once on SIGTERM, which comes only after the app containers have exited: these settings, which act on SIGTERM, no longer keep it up (istio/istio#51855)"
	r.Hint = "let the pod's terminationGracePeriodSeconds and the app's own shutdown govern draining; remove the settings once every pod is native"
	return r
}
