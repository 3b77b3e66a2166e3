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
)

// operation is one long-running operation (a managed cluster update, an
// agent pool upgrade), polled by clients through its Azure-AsyncOperation
// URL. Operations live in the endpoint's memory.
type operation struct {
	ID     string
	Target string // the resource it changes, for "another operation is in progress"
	Kind   string // Updating, Upgrading, Creating, Stopping, Starting
	// Version is an agent pool upgrade's target, shown as orchestratorVersion.
	Version string
	Status  string // InProgress, Succeeded, Failed
	Start   time.Time
	End     time.Time
	Err     *Error
}

type operations struct {
	mu  sync.Mutex
	m   map[string]*operation
	ctx context.Context
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

// start runs fn in the background as a new operation on target; version
// is an upgrade's target.
func (o *operations) start(target, kind, version string, fn func(ctx context.Context) error) *operation {
	op := &operation{ID: uuid.NewString(), Target: target, Kind: kind, Version: version, Status: "InProgress", Start: time.Now().UTC()}
	o.mu.Lock()
	o.m[op.ID] = op
	ctx := o.ctx
	o.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	go func() {
		err := fn(ctx)
		o.mu.Lock()
		defer o.mu.Unlock()
		op.End = time.Now().UTC()
		if err == nil {
			op.Status = "Succeeded"
			return
		}
		op.Status = "Failed"
		var ae *Error
		if !errors.As(err, &ae) {
			ae = &Error{Code: kind + "Failed", Message: err.Error()}
		}
		op.Err = ae
	}()
	return op
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

// operationPath is op's resource id.
func (s *Server) operationPath(op *operation) string {
	return fmt.Sprintf("/subscriptions/%s/providers/Microsoft.ContainerService/locations/%s/operations/%s", s.ID.SubscriptionID, s.ID.Location, op.ID)
}

// asyncOperationURL is where a client polls op.
func (s *Server) asyncOperationURL(op *operation) string {
	return s.ID.Endpoint() + s.operationPath(op) + "?api-version=2016-03-30"
}

// operationStatus answers the Azure-AsyncOperation poll with ARM's
// operation status document.
func (s *Server) operationStatus(w http.ResponseWriter, _ *http.Request, p params) {
	op, ok := s.ops.get(p["operation"])
	if !ok || !strings.EqualFold(p["location"], s.ID.Location) {
		(&Error{Status: http.StatusNotFound, Code: "NotFound", Message: fmt.Sprintf("Operation '%s' was not found in location '%s' (operations are kept in the endpoint's memory until it restarts).", p["operation"], p["location"])}).write(w)
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
