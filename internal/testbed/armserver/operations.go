package armserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// operation is one long-running operation (a managed cluster update, an
// agent pool upgrade), polled by clients through its Azure-AsyncOperation
// URL. It carries its work (Steps, Reconcile) so that an endpoint
// restarted while it runs can finish it.
type operation struct {
	ID     string `json:"id"`
	Target string `json:"target"` // the resource it changes, for "another operation is in progress"
	Kind   string `json:"kind"`   // Updating, Upgrading, Creating, Stopping, Starting
	// Version is an agent pool upgrade's target, shown as orchestratorVersion.
	Version string    `json:"version,omitempty"`
	Status  string    `json:"status"` // InProgress, Succeeded, Failed
	Start   time.Time `json:"startTime"`
	End     time.Time `json:"endTime,omitzero"`
	Err     *Error    `json:"error,omitempty"`
	// Steps are the agent pool changes, in order; Reconcile ends the
	// operation with the add-on's reconcile (a managed cluster update).
	Steps     []step `json:"steps,omitempty"`
	Reconcile bool   `json:"reconcile,omitempty"`
}

// Operations are kept in the cluster, one ConfigMap each in the
// endpoint's namespace, written when they start and when they end: a
// restarted endpoint answers the polls of those it ran and finishes those
// it was running (every step can run again: creating ensures the pool's
// nodes, upgrading skips upgraded nodes, stop and start set a state).
const (
	operationLabel = "meshaddon.dev/arm-operation"
	operationKey   = "operation.json"
	// operationRetention is how long a finished operation stays pollable.
	operationRetention = 24 * time.Hour
)

type operations struct {
	mu  sync.Mutex
	m   map[string]*operation
	ctx context.Context
	// kube and namespace keep the operations; without kube (no cluster
	// behind the endpoint) they live in memory only.
	kube      kubernetes.Interface
	namespace string
	// run does an operation's work; logf reports what clients cannot see.
	run  func(ctx context.Context, op *operation) error
	logf func(format string, args ...any)
}

// running returns the operation in progress on target (or any target
// under it), if one is.
func (o *operations) running(target string) *operation {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, op := range o.m {
		if op.Status == "InProgress" && (strings.EqualFold(op.Target, target) || strings.HasPrefix(strings.ToLower(op.Target), strings.ToLower(target)+"/")) {
			c := *op
			return &c
		}
	}
	return nil
}

// start records op as a new operation in progress and runs its work in
// the background.
func (o *operations) start(ctx context.Context, op *operation) (*operation, error) {
	op.ID, op.Status, op.Start = uuid.NewString(), "InProgress", time.Now().UTC()
	if err := o.save(ctx, op, true); err != nil {
		return nil, internalError(fmt.Errorf("record the operation: %w", err))
	}
	o.mu.Lock()
	o.m[op.ID] = op
	o.mu.Unlock()
	o.resume(op)
	c := *op
	return &c, nil
}

// resume runs op's work in the background and records how it ended.
func (o *operations) resume(op *operation) {
	ctx := o.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	go func() {
		err := o.run(ctx, op)
		if ctx.Err() != nil {
			return // the endpoint is stopping: the next one finishes op
		}
		o.mu.Lock()
		op.End = time.Now().UTC()
		op.Status = "Succeeded"
		if err != nil {
			op.Status = "Failed"
			var ae *Error
			if !errors.As(err, &ae) {
				ae = &Error{Code: op.Kind + "Failed", Message: err.Error()}
			}
			op.Err = ae
		}
		done := *op
		o.mu.Unlock()
		saveCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := o.save(saveCtx, &done, false); err != nil {
			o.logf("record the end of operation %s (%s): %v", done.ID, done.Status, err)
		}
	}()
}

func (o *operations) get(id string) (operation, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	op, ok := o.m[id]
	if !ok {
		return operation{}, false
	}
	return *op, true
}

func operationConfigMap(id string) string { return "arm-operation-" + id }

// save writes op to its ConfigMap, creating it when create is set.
func (o *operations) save(ctx context.Context, op *operation, create bool) error {
	if o.kube == nil {
		return nil
	}
	data, err := json.Marshal(op)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: operationConfigMap(op.ID), Namespace: o.namespace, Labels: map[string]string{operationLabel: "true"}},
		Data:       map[string]string{operationKey: string(data)},
	}
	cms := o.kube.CoreV1().ConfigMaps(o.namespace)
	if create {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	} else {
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	return err
}

// load reads the operations kept in the cluster, forgets those finished
// longer ago than operationRetention, and resumes those in progress.
func (o *operations) load(ctx context.Context) error {
	if o.kube == nil {
		return nil
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.namespace}}
	if _, err := o.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s for the endpoint's operations: %w", o.namespace, err)
	}
	cms := o.kube.CoreV1().ConfigMaps(o.namespace)
	list, err := cms.List(ctx, metav1.ListOptions{LabelSelector: operationLabel + "=true"})
	if err != nil {
		return fmt.Errorf("read the endpoint's operations: %w", err)
	}
	var resume []*operation
	o.mu.Lock()
	for _, cm := range list.Items {
		op := &operation{}
		if err := json.Unmarshal([]byte(cm.Data[operationKey]), op); err != nil || op.ID == "" {
			continue
		}
		if op.Status != "InProgress" && time.Since(op.End) > operationRetention {
			_ = cms.Delete(ctx, cm.Name, metav1.DeleteOptions{})
			continue
		}
		o.m[op.ID] = op
		if op.Status == "InProgress" {
			resume = append(resume, op)
		}
	}
	o.mu.Unlock()
	for _, op := range resume {
		o.resume(op)
	}
	return nil
}

// operationPath is op's resource id.
func (s *Server) operationPath(op *operation) string {
	return fmt.Sprintf("/subscriptions/%s/providers/Microsoft.ContainerService/locations/%s/operations/%s", s.ID.SubscriptionID, s.ID.Location, op.ID)
}

// asyncOperationURL is where a client polls op.
func (s *Server) asyncOperationURL(op *operation) string {
	return s.ID.Endpoint() + s.operationPath(op) + "?api-version=2016-03-30"
}

// pollInterval is the Retry-After of an operation in progress: clients
// without one poll ARM every 30 s (the Azure CLI) or 1 s.
const pollInterval = "1"

// pollHeaders tell a client where and how often to poll op.
func (s *Server) pollHeaders(h http.Header, op *operation) {
	h.Set("Azure-AsyncOperation", s.asyncOperationURL(op))
	h.Set("Retry-After", pollInterval)
}

// operationStatus answers the Azure-AsyncOperation poll with ARM's
// operation status document.
func (s *Server) operationStatus(w http.ResponseWriter, _ *http.Request, p params) {
	op, ok := s.ops.get(p["operation"])
	if !ok || !strings.EqualFold(p["location"], s.ID.Location) {
		(&Error{Status: http.StatusNotFound, Code: "NotFound", Message: fmt.Sprintf("Operation '%s' was not found in location '%s' (finished operations are kept for %s).", p["operation"], p["location"], operationRetention)}).write(w)
		return
	}
	body := map[string]any{
		"id":        s.operationPath(&op),
		"name":      op.ID,
		"status":    op.Status,
		"startTime": op.Start.Format(time.RFC3339Nano),
	}
	if !op.End.IsZero() {
		body["endTime"] = op.End.Format(time.RFC3339Nano)
		body["percentComplete"] = 100
	}
	if op.Err != nil {
		body["error"] = map[string]string{"code": op.Err.Code, "message": op.Err.Message}
	}
	if op.Status == "InProgress" {
		w.Header().Set("Retry-After", pollInterval)
	}
	writeJSON(w, http.StatusOK, body)
}

// tagStore keeps the resources' tags, which have no place in the cluster,
// in a file next to the identity.
type tagStore struct {
	mu   sync.Mutex
	path string
}

func (t *tagStore) get(resource string) map[string]*string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.load()[strings.ToLower(resource)]
}

func (t *tagStore) set(resource string, tags map[string]*string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	all := t.load()
	all[strings.ToLower(resource)] = tags
	data, err := json.Marshal(all)
	if err != nil {
		return err
	}
	return os.WriteFile(t.path, data, 0o600)
}

func (t *tagStore) load() map[string]map[string]*string {
	all := map[string]map[string]*string{}
	if data, err := os.ReadFile(t.path); err == nil {
		_ = json.Unmarshal(data, &all)
	}
	return all
}
