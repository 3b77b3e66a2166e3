package hazard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certutil "k8s.io/client-go/util/cert"

	"github.com/meshaddon/meshaddon/internal/testbed/cluster"
	"github.com/meshaddon/meshaddon/internal/testbed/proc"
)

// Daemon is the name of the hazard webhook server's pid and log files.
const Daemon = "hazard"

// SlowDelay is how long the slow webhook takes to answer: longer than the
// timeoutSeconds it is registered with, so the API server gives up first.
const SlowDelay = 15 * time.Second

// slowTimeout is the slow webhook's timeoutSeconds.
const slowTimeout = 2

// Server is the test bed's hostile webhooks, on 127.0.0.1 with TLS:
//   - /strip: drops restartPolicy from every init container, as webhooks
//     and operators built on a k8s.io/api older than 1.28 do when they
//     round-trip a pod (istio/istio#49221, #52245);
//   - /refuse: refuses a pod with an init container that sets
//     restartPolicy, as policy engines written before native sidecars do;
//   - /slow: answers (allowed) only after SlowDelay;
//   - /allow: allows everything (the webhook with side effects).
type Server struct {
	Dir string // cert.pem, key.pem, port
}

// ServerFor is the hazard server of cluster c.
func ServerFor(c *cluster.Cluster) Server { return Server{Dir: filepath.Join(c.Dir, "hazard")} }

func (s Server) certPath() string { return filepath.Join(s.Dir, "cert.pem") }
func (s Server) keyPath() string  { return filepath.Join(s.Dir, "key.pem") }
func (s Server) portPath() string { return filepath.Join(s.Dir, "port") }

// prepare writes the server's certificate and port once.
func (s Server) prepare() error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(s.certPath()); errors.Is(err, os.ErrNotExist) {
		cert, key, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
		if err != nil {
			return err
		}
		if err := os.WriteFile(s.keyPath(), key, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(s.certPath(), cert, 0o600); err != nil {
			return err
		}
	}
	if _, err := os.Stat(s.portPath()); errors.Is(err, os.ErrNotExist) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if err := os.WriteFile(s.portPath(), []byte(strconv.Itoa(port)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// URL is the server's address for path.
func (s Server) URL(path string) (string, error) {
	b, err := os.ReadFile(s.portPath())
	if err != nil {
		return "", err
	}
	return "https://127.0.0.1:" + strings.TrimSpace(string(b)) + path, nil
}

// CABundle is what the API server checks the server's certificate with.
func (s Server) CABundle() ([]byte, error) { return os.ReadFile(s.certPath()) }

// ServerDaemon is the server as a test bed daemon, `meshaddon local hazard
// serve`, which local down stops.
func ServerDaemon(c *cluster.Cluster, self string) proc.Daemon {
	return proc.Daemon{
		PIDFile: c.PIDFile(Daemon),
		LogFile: filepath.Join(c.LogDir(), Daemon+".log"),
		Args:    []string{self, "local", "hazard", "serve", "--name", c.Name},
		Dir:     ServerFor(c).Dir,
	}
}

// ensureServer starts the server daemon unless it runs, and waits until it
// answers over TLS.
func ensureServer(ctx context.Context, c *cluster.Cluster, self string) (Server, error) {
	s := ServerFor(c)
	if err := s.prepare(); err != nil {
		return s, err
	}
	if _, err := ServerDaemon(c, self).Start(); err != nil {
		return s, err
	}
	ca, err := s.CABundle()
	if err != nil {
		return s, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url, err := s.URL("/healthz")
	if err != nil {
		return s, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("the hazard webhook server did not answer at %s within 15s (log: %s): %v", url, ServerDaemon(c, self).LogFile, err)
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Serve runs the server until ctx ends.
func (s Server) Serve(ctx context.Context) error {
	if err := s.prepare(); err != nil {
		return err
	}
	b, err := os.ReadFile(s.portPath())
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/strip", review(strip))
	mux.HandleFunc("/refuse", review(refuse))
	mux.HandleFunc("/allow", review(func(*corev1.Pod, *admissionv1.AdmissionResponse) {}))
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select { // the API server gives up first; the answer is only late
		case <-time.After(SlowDelay):
		case <-r.Context().Done():
			return
		}
		review(func(*corev1.Pod, *admissionv1.AdmissionResponse) {})(w, r)
	})
	srv := &http.Server{Addr: "127.0.0.1:" + strings.TrimSpace(string(b)), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServeTLS(s.certPath(), s.keyPath()); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// review decodes an AdmissionReview of a pod, lets judge answer, and
// writes the review back.
func review(judge func(*corev1.Pod, *admissionv1.AdmissionResponse)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		var pod corev1.Pod
		if err := json.Unmarshal(rev.Request.Object.Raw, &pod); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp := &admissionv1.AdmissionResponse{UID: rev.Request.UID, Allowed: true}
		judge(&pod, resp)
		rev.Response, rev.Request = resp, nil
		_ = json.NewEncoder(w).Encode(rev)
	}
}

// strip removes restartPolicy from every init container.
func strip(pod *corev1.Pod, resp *admissionv1.AdmissionResponse) {
	var patch []map[string]string
	for i, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil {
			patch = append(patch, map[string]string{"op": "remove", "path": fmt.Sprintf("/spec/initContainers/%d/restartPolicy", i)})
		}
	}
	if len(patch) > 0 {
		resp.Patch, _ = json.Marshal(patch)
		pt := admissionv1.PatchTypeJSONPatch
		resp.PatchType = &pt
	}
}

// refuse denies a pod whose init containers set restartPolicy.
func refuse(pod *corev1.Pod, resp *admissionv1.AdmissionResponse) {
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil {
			resp.Allowed = false
			resp.Result = &metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
				Message: fmt.Sprintf("init container %s sets restartPolicy, which this policy does not allow", c.Name)}
			return
		}
	}
}
