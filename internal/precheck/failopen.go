package precheck

// A webhook with failurePolicy Ignore that cannot be called (its server is
// down, or slower than its timeoutSeconds) is skipped by the API server:
// the dry run then answers as if the webhook had allowed the pod and left
// it alone, which is no proof of what it will do to a native sidecar once
// it answers. So an apparent pass counts only when every such webhook
// acting on the pod was not seen to fail open. It was, when:
//   - the API server's own count of it failing open
//     (apiserver_admission_webhook_fail_open_count{name}, on /metrics) rose
//     across the dry run (others' requests failing open at the same time
//     can only make this say unproven, never pass);
//   - the dry run took at least its timeoutSeconds (it timed out);
//   - it is called through a Service without a ready endpoint.
// When /metrics cannot be read, a webhook that refused the connection at
// once leaves no other trace: precheck cannot tell and says so (unproven),
// rather than pass.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// failOpenMetric is kube-apiserver's count of webhook calls that failed
// open, by webhook name.
const failOpenMetric = "apiserver_admission_webhook_fail_open_count"

// failOpenWatch is what is known, before a dry run, of the webhooks that
// may fail open on it.
type failOpenWatch struct {
	e       *Env
	ignored []PodWebhook
	before  map[string]float64
	err     error // reading /metrics
}

func (e *Env) watchFailOpen(ctx context.Context, webhooks []PodWebhook) *failOpenWatch {
	w := &failOpenWatch{e: e, ignored: mayFailOpen(webhooks)}
	if len(w.ignored) > 0 {
		w.before, w.err = e.failOpenCounts(ctx)
	}
	return w
}

// mayFailOpen are the webhooks the API server goes on without, other than
// the mesh's own: those are judged elsewhere (an injector that did not
// answer leaves the probe without istio-proxy; the placement guard's health
// is its own check), and timing alone cannot tell them from the webhook
// that made a dry run slow.
func mayFailOpen(webhooks []PodWebhook) []PodWebhook {
	var out []PodWebhook
	for _, wh := range webhooks {
		if wh.Ignored() && !wh.Mesh {
			out = append(out, wh)
		}
	}
	return out
}

// silent are the ignored webhooks seen not to answer a dry run that took
// took, and how that was seen.
func (w *failOpenWatch) silent(ctx context.Context, took time.Duration) ([]PodWebhook, string) {
	if len(w.ignored) == 0 {
		return nil, ""
	}
	var after map[string]float64
	err := w.err
	if err == nil {
		after, err = w.e.failOpenCounts(ctx)
	}
	var out []PodWebhook
	var why []string
	for _, wh := range w.ignored {
		switch {
		case err == nil && after[wh.Name] > w.before[wh.Name]:
			out = append(out, wh)
			why = append(why, fmt.Sprintf("webhook %s failed open (the API server's %s rose)", wh, failOpenMetric))
		case took >= wh.Timeout():
			out = append(out, wh)
			why = append(why, fmt.Sprintf("webhook %s timed out (the dry run took %s, its timeoutSeconds is %s)", wh, took.Round(100*time.Millisecond), wh.Timeout()))
		case wh.Service != nil && !w.e.serviceReady(ctx, wh.Service.Namespace, wh.Service.Name):
			out = append(out, wh)
			why = append(why, fmt.Sprintf("webhook %s cannot answer (Service %s/%s has no ready endpoint)", wh, wh.Service.Namespace, wh.Service.Name))
		case err != nil:
			out = append(out, wh)
			why = append(why, fmt.Sprintf("webhook %s may not have answered: the API server's %s is not readable (%v) and nothing else tells", wh, failOpenMetric, err))
		}
	}
	return out, strings.Join(why, "; ")
}

// failOpenCounts reads the API server's fail-open count of each webhook.
func (e *Env) failOpenCounts(ctx context.Context) (map[string]float64, error) {
	raw, err := e.Kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	return parseFailOpen(raw), nil
}

// parseFailOpen sums failOpenMetric by its name label in Prometheus text.
func parseFailOpen(raw []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, failOpenMetric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(labels, ",") {
			if n, ok := strings.CutPrefix(l, `name="`); ok {
				out[strings.TrimSuffix(n, `"`)] += v
			}
		}
	}
	return out
}

// serviceReady is false when no EndpointSlice of the Service has a ready
// endpoint; true when it has one or cannot be read (no evidence).
func (e *Env) serviceReady(ctx context.Context, ns, name string) bool {
	list, err := e.Kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return true
	}
	for _, s := range list.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				return true
			}
		}
	}
	return false
}
