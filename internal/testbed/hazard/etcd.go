package hazard

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// storeSideEffectsSome rewrites the stored MutatingWebhookConfiguration
// name in etcd with sideEffects: Some, a value admissionregistration/v1
// no longer accepts but the API server still reads and acts on (it refuses
// a dry run that would call such a webhook). The object is written as
// JSON, which the API server's storage decodes as well as protobuf; etcd is
// reached through its JSON gateway (/v3/kv), at the address kube-apiserver
// was started with.
func (b *Bed) storeSideEffectsSome(ctx context.Context, name string) error {
	etcd, err := b.etcdURL()
	if err != nil {
		return err
	}
	c, err := b.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	key := "/registry/mutatingwebhookconfigurations/" + name
	var rng struct{ Count string }
	if err := etcdCall(ctx, etcd+"/v3/kv/range", map[string]any{"key": b64(key), "keys_only": true}, &rng); err != nil {
		return err
	}
	if rng.Count != "1" {
		return fmt.Errorf("the MutatingWebhookConfiguration %s is not at %s in etcd", name, key)
	}
	obj := map[string]any{}
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return err
	}
	obj["apiVersion"], obj["kind"] = "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"
	md := obj["metadata"].(map[string]any)
	delete(md, "resourceVersion") // the API server sets it from etcd's revision
	for _, w := range obj["webhooks"].([]any) {
		w.(map[string]any)["sideEffects"] = "Some"
	}
	value, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	if err := etcdCall(ctx, etcd+"/v3/kv/put", map[string]any{"key": b64(key), "value": base64.StdEncoding.EncodeToString(value)}, nil); err != nil {
		return err
	}
	// The API server sees the change through its watch of etcd.
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := b.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return got.Webhooks[0].SideEffects != nil && string(*got.Webhooks[0].SideEffects) == "Some", nil
	})
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// etcdURL is the first --etcd-servers of the cluster's kube-apiserver.
func (b *Bed) etcdURL() (string, error) {
	pid, ok := b.Cluster.Components()["kube-apiserver"]
	if !ok {
		return "", fmt.Errorf("kube-apiserver of cluster %s is not running", b.Cluster.Name)
	}
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return "", fmt.Errorf("read kube-apiserver's command line: %w", err)
	}
	for _, a := range strings.Split(string(raw), "\x00") {
		if v, ok := strings.CutPrefix(a, "--etcd-servers="); ok {
			u, _, _ := strings.Cut(v, ",")
			return u, nil
		}
	}
	return "", fmt.Errorf("kube-apiserver (pid %d) has no --etcd-servers", pid)
}

func etcdCall(ctx context.Context, url string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s", url, resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
