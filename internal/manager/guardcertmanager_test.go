package manager_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certutil "k8s.io/client-go/util/cert"
	keyutil "k8s.io/client-go/util/keyutil"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/manager"
)

// TestGuardThirdPartyCertificate is the chart's guard.certManager: the
// manager started with --guard-webhook-cert-dir and no
// --guard-webhook-service (as TestMain starts it) serves a certificate
// cert-manager wrote into a Secret volume, and cainjector writes the
// configuration's caBundle. The guard is healthy through the Service; the
// manager writes neither the caBundle nor a Secret; a renewed certificate
// is served without a restart; a CA rotation that reaches the caBundle
// before the volume turns the mesh classic until the files follow.
func TestGuardThirdPartyCertificate(t *testing.T) {
	ctx := context.Background()
	const dnsName = "meshaddon-guard.meshaddon-system.svc"
	t.Cleanup(func() {
		// Back to the plain loopback files the other tests expect.
		entries, _ := os.ReadDir(guardCertDir)
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(guardCertDir, e.Name()))
		}
		var err error
		if guardCABundle, err = manager.WriteLoopbackGuardCert(guardCertDir, 0); err != nil {
			t.Error(err)
		}
	})

	// cert-manager's bootstrap: a CA, and a serving certificate it signs,
	// in the Secret volume the chart mounts (tls.crt, tls.key, ca.crt).
	ca1 := newTestCA(t, "meshaddon-guard-ca")
	leaf1 := ca1.issue(t, dnsName)
	kubeletWrite(t, guardCertDir, leaf1.files(ca1))

	// The configuration as Helm renders it, then cainjector's caBundle.
	cfg := manager.GuardWebhookConfiguration(manager.GuardConfiguration, meshNS, admissionregistrationv1.WebhookClientConfig{
		Service: &admissionregistrationv1.ServiceReference{Namespace: "meshaddon-system", Name: "meshaddon-guard", Path: ptr.To(manager.GuardPath)},
	})
	cfg.Annotations = map[string]string{"cert-manager.io/inject-ca-from": "meshaddon-system/meshaddon-guard"}
	// There is no Service behind it here: select no namespace, so the API
	// server never calls it; the manager checks its own server.
	cfg.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"guard-cert-manager-test": "never"}}
	if err := cl.Create(ctx, cfg, client.FieldOwner("helm")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteGuardConfig(t) })
	inject := func(ca *testCA) {
		t.Helper()
		var c admissionregistrationv1.MutatingWebhookConfiguration
		if err := cl.Get(ctx, client.ObjectKey{Name: manager.GuardConfiguration}, &c); err != nil {
			t.Fatal(err)
		}
		before := c.DeepCopy()
		c.Webhooks[0].ClientConfig.CABundle = ca.pem
		if err := cl.Patch(ctx, &c, client.MergeFrom(before), client.FieldOwner("cainjector")); err != nil {
			t.Fatal(err)
		}
	}
	inject(ca1)

	addNode(t, "cm-new-0", "new", "v1.34.4", true)
	addNode(t, "cm-old-0", "old", "v1.28.9", true)
	addIstiod(t, "asm-1-27", "unset")
	addProfile(t, v1alpha1.MeshProfileSpec{Revisions: []string{"asm-1-27"}, OldNodes: v1alpha1.OldNodesGuard})
	register(t)
	refresh(t)
	waitRevision(t, "asm-1-27", "native", "native, guarded: 1 node(s) excluded (cm-old-0)", 5*time.Second)

	// The manager wrote neither the caBundle nor a certificate Secret.
	var c admissionregistrationv1.MutatingWebhookConfiguration
	if err := cl.Get(ctx, client.ObjectKey{Name: manager.GuardConfiguration}, &c); err != nil {
		t.Fatal(err)
	}
	for _, mf := range c.ManagedFields {
		if mf.Manager != "helm" && mf.Manager != "cainjector" {
			t.Errorf("%s wrote the configuration (%s): with --guard-webhook-cert-dir the caBundle is cert-manager's", mf.Manager, mf.Operation)
		}
	}
	var secrets corev1.SecretList
	if err := cl.List(ctx, &secrets); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if s.Name == manager.GuardCertSecret {
			t.Errorf("the manager issued Secret %s/%s though the certificate is cert-manager's", s.Namespace, s.Name)
		}
	}

	// cert-manager renews the certificate (a new key, the same CA): the
	// server serves it without a restart and the guard stays healthy.
	leaf2 := ca1.issue(t, dnsName)
	renewed := time.Now()
	kubeletWrite(t, guardCertDir, leaf2.files(ca1))
	waitServed(t, leaf2, 15*time.Second)
	t.Logf("renewed certificate served after %s", time.Since(renewed).Round(time.Millisecond))
	if r := revisionStatus(t, "asm-1-27"); r.Mode != "native" {
		t.Errorf("the mesh left native across a renewal: %s %s", r.Mode, r.Message)
	}

	// The CA rotates: cainjector writes the new CA before the kubelet
	// updates the volume. The server's certificate is then not trusted: the
	// guard is unhealthy and the mesh classic, until the files follow.
	ca2 := newTestCA(t, "meshaddon-guard-ca")
	leaf3 := ca2.issue(t, dnsName)
	inject(ca2)
	waitRevision(t, "asm-1-27", "classic", "does not answer as", 2*time.Second)
	kubeletWrite(t, guardCertDir, leaf3.files(ca2))
	waitServed(t, leaf3, 15*time.Second)
	waitRevision(t, "asm-1-27", "native", "native, guarded", 2*time.Second)
}

// testCA is a CA as cert-manager's CA Issuer keeps it.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: name}, key)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}
}

type testLeaf struct {
	cert *x509.Certificate
	crt  []byte
	key  []byte
}

// issue signs a serving certificate for dnsName, as cert-manager's
// Certificate asks.
func (ca *testCA) issue(t *testing.T, dnsName string) testLeaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName, dnsName + ".cluster.local"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return testLeaf{cert: cert, crt: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: keyPEM}
}

// files are the keys of the Secret cert-manager writes.
func (l testLeaf) files(ca *testCA) map[string][]byte {
	return map[string][]byte{"tls.crt": l.crt, "tls.key": l.key, "ca.crt": ca.pem}
}

// kubeletWrite updates dir as the kubelet updates a Secret volume (its
// AtomicWriter): the files go into a new hidden directory, the ..data
// symlink is renamed onto it at once, the old directory is removed, and the
// names the pod reads are symlinks through ..data.
func kubeletWrite(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	ts, err := os.MkdirTemp(dir, "..ts-")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(ts, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "..data")
	old, _ := os.Readlink(data)
	if err := os.Symlink(filepath.Base(ts), data+"_tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(data+"_tmp", data); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join("..data", name) {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link+"_tmp"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(link+"_tmp", link); err != nil {
			t.Fatal(err)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitServed waits until the guard's webhook server presents leaf.
func waitServed(t *testing.T, leaf testLeaf, within time.Duration) {
	t.Helper()
	eventually(t, within, "the webhook server serving the new certificate", func() (bool, string) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: &tls.Config{
			// Only which certificate is served matters here; the guard's
			// health check verifies it.
			InsecureSkipVerify: true, //nolint:gosec
			ServerName:         leaf.cert.DNSNames[0],
		}}
		conn, err := d.DialContext(context.Background(), "tcp", guardAddr)
		if err != nil {
			return false, err.Error()
		}
		defer conn.Close()
		served := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
		return served.SerialNumber.Cmp(leaf.cert.SerialNumber) == 0, "serial " + served.SerialNumber.String()
	})
}
