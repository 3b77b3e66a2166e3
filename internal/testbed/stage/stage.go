// Package stage writes the kwok Stages that give the test bed's fake nodes and
// pods a realistic lifecycle: a pod start delay, stopped node pools, istiod
// pods left to the runner, and the hang of a native-sidecar pod on a node
// whose kubelet predates sidecar containers (< 1.29).
//
// The Stages start from kwok's own defaults (the "fast" pod and node stages
// shipped in the kwok module) and add selector keys, so kwok's templates stay
// the source of truth for what a Ready pod or node looks like.
package stage

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodelease "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	kwokv1alpha1 "sigs.k8s.io/kwok/pkg/apis/v1alpha1"
	"sigs.k8s.io/yaml"
)

// PowerStateLabel marks every node of a stopped pool (value "Stopped").
const PowerStateLabel = "meshaddon.dev/power-state"

// PowerStopped is the PowerStateLabel value of a stopped pool's nodes.
const PowerStopped = "Stopped"

// ManagedByLabel marks the Stages this package writes.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// ManagedBy is the ManagedByLabel value.
const ManagedBy = "meshaddon-testbed"

// Options shape the Stages.
type Options struct {
	// PodStartDelay is how long after binding a pod becomes Ready (default 0).
	PodStartDelay time.Duration
	// OldNodes are nodes whose kubelet is older than 1.29: a pod with a native
	// sidecar bound to one stays in Init.
	OldNodes []string
	// RunnerPods is "namespace/app" of the pods whose status the istiod runner
	// owns (kwok must not mark them Ready).
	RunnerPods []string
}

// hangsKey is a jq expression over a pod: "true" when it has a native sidecar
// (an init container with restartPolicy Always) and is bound to an old node.
func hangsKey(oldNodes []string) string {
	names, _ := json.Marshal(sortedCopy(oldNodes))
	return fmt.Sprintf(`(.spec.nodeName // "") as $n | ([.spec.initContainers[]? | select(.restartPolicy == "Always")] | length > 0) and (%s | any(.[]; . == $n))`, names)
}

// runnerKey names a pod as "namespace/app".
const runnerKey = `(.metadata.namespace // "") + "/" + (.metadata.labels.app // "")`

func sortedCopy(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// Build returns every Stage the test bed needs, in a stable order.
func Build(o Options) ([]*kwokv1alpha1.Stage, error) {
	var stages []*kwokv1alpha1.Stage

	// Nodes: kwok's initialize and lease heartbeat, except for stopped pools,
	// whose nodes are held NotReady by a stage of our own.
	init, err := parse(nodefast.DefaultNodeInit)
	if err != nil {
		return nil, err
	}
	notStopped := kwokv1alpha1.MatchExpression{Key: labelKey(PowerStateLabel), Operator: kwokv1alpha1.SelectorOpDoesNotExist}
	addExpr(init, notStopped)
	beat, err := parse(nodelease.DefaultNodeHeartbeatWithLease)
	if err != nil {
		return nil, err
	}
	addExpr(beat, notStopped)
	stages = append(stages, init, beat, nodeStopped())

	// Pods: kwok's fast ready stage, delayed, not for the runner's pods, and
	// not for native-sidecar pods on old nodes (those get the hang stage).
	ready, err := parse(podfast.DefaultPodReady)
	if err != nil {
		return nil, err
	}
	hangs := hangsKey(o.OldNodes)
	runner := sortedCopy(o.RunnerPods)
	if len(runner) > 0 {
		addExpr(ready, kwokv1alpha1.MatchExpression{Key: runnerKey, Operator: kwokv1alpha1.SelectorOpNotIn, Values: runner})
	}
	addExpr(ready, kwokv1alpha1.MatchExpression{Key: hangs, Operator: kwokv1alpha1.SelectorOpIn, Values: []string{"false"}})
	if o.PodStartDelay > 0 {
		ms := o.PodStartDelay.Milliseconds()
		ready.Spec.Delay = &kwokv1alpha1.StageDelay{DurationMilliseconds: &ms}
	}
	stages = append(stages, ready, podHangs(hangs))

	for _, y := range []string{podfast.DefaultPodComplete, podfast.DefaultPodDelete} {
		s, err := parse(y)
		if err != nil {
			return nil, err
		}
		stages = append(stages, s)
	}
	for _, s := range stages {
		s.APIVersion = kwokv1alpha1.GroupVersion.String()
		s.Kind = kwokv1alpha1.StageKind
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[ManagedByLabel] = ManagedBy
	}
	return stages, nil
}

func parse(y string) (*kwokv1alpha1.Stage, error) {
	s := &kwokv1alpha1.Stage{}
	if err := yaml.UnmarshalStrict([]byte(y), s); err != nil {
		return nil, fmt.Errorf("parse kwok's default stage: %w", err)
	}
	return s, nil
}

func addExpr(s *kwokv1alpha1.Stage, r kwokv1alpha1.MatchExpression) {
	if s.Spec.Selector == nil {
		s.Spec.Selector = &kwokv1alpha1.StageSelector{}
	}
	s.Spec.Selector.MatchExpressions = append(s.Spec.Selector.MatchExpressions, r)
}

func labelKey(label string) string {
	return fmt.Sprintf(`.metadata.labels.[%q]`, label)
}

// nodeStopped holds a stopped pool's nodes NotReady, as a deallocated VM
// scale set leaves them.
func nodeStopped() *kwokv1alpha1.Stage {
	s := &kwokv1alpha1.Stage{
		Spec: kwokv1alpha1.StageSpec{
			ResourceRef: kwokv1alpha1.StageResourceRef{APIGroup: "v1", Kind: "Node"},
			Selector: &kwokv1alpha1.StageSelector{MatchExpressions: []kwokv1alpha1.MatchExpression{
				{Key: labelKey(PowerStateLabel), Operator: kwokv1alpha1.SelectorOpIn, Values: []string{PowerStopped}},
				{Key: `.status.conditions.[] | select( .type == "Ready" ) | .reason`, Operator: kwokv1alpha1.SelectorOpNotIn, Values: []string{"NodePoolStopped"}},
			}},
			Next: kwokv1alpha1.StageNext{StatusTemplate: strings.TrimSpace(`
{{ $now := Now }}
conditions:
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: "the node pool is stopped"
  reason: NodePoolStopped
  status: "False"
  type: Ready
`)},
		},
	}
	s.Name = nodeStoppedName
	return s
}

// podHangs is what a kubelet without sidecar-container support does with a
// native sidecar: it runs the init containers in order and waits forever for
// the restartPolicy-Always one to complete, so the pod shows Init:N/M.
func podHangs(hangs string) *kwokv1alpha1.Stage {
	s := &kwokv1alpha1.Stage{
		Spec: kwokv1alpha1.StageSpec{
			ResourceRef: kwokv1alpha1.StageResourceRef{APIGroup: "v1", Kind: "Pod"},
			Selector: &kwokv1alpha1.StageSelector{MatchExpressions: []kwokv1alpha1.MatchExpression{
				{Key: ".metadata.deletionTimestamp", Operator: kwokv1alpha1.SelectorOpDoesNotExist},
				{Key: ".status.podIP", Operator: kwokv1alpha1.SelectorOpDoesNotExist},
				{Key: hangs, Operator: kwokv1alpha1.SelectorOpIn, Values: []string{"true"}},
			}},
			Next: kwokv1alpha1.StageNext{StatusTemplate: strings.TrimSpace(`
{{ $now := Now }}
{{ $blocked := false }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotInitialized
  message: "containers with incomplete status: native sidecar waits on a kubelet older than 1.29"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: ContainersReady
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  restartCount: 0
  {{ if $blocked }}
  ready: false
  state:
    waiting:
      reason: PodInitializing
  {{ else if eq .restartPolicy "Always" }}
  {{ $blocked = true }}
  ready: false
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
  {{ else }}
  ready: true
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
  {{ end }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  state:
    waiting:
      reason: PodInitializing
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Pending
startTime: {{ $now | Quote }}
`)},
		},
	}
	s.Name = podHangsName
	return s
}

const (
	nodeStoppedName = "meshaddon-node-stopped"
	podHangsName    = "meshaddon-pod-native-sidecar-old-kubelet"
)
