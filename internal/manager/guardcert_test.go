package manager_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshaddon/meshaddon/internal/manager"
)

// TestGuardCertIssuer: in a cluster the manager issues the guard's serving
// certificate into a Secret its replicas share, writes it for its webhook
// server and the CA into the configuration's caBundle, and rotates it after
// two thirds of its life keeping the previous CA trusted.
func TestGuardCertIssuer(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "guard-cert"}}
	if err := cl.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cfg := manager.GuardWebhookConfiguration("guard-cert-test", meshNS, admissionregistrationv1.WebhookClientConfig{
		Service: &admissionregistrationv1.ServiceReference{Namespace: "guard-cert", Name: "meshaddon-guard", Path: ptr.To(manager.GuardPath)},
	})
	// Selects no namespace: this test only reads and writes it.
	cfg.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"guard-cert-test": "never"}}
	if err := cl.Create(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Delete(context.Background(), cfg) })

	now := clocktesting.NewFakePassiveClock(time.Now())
	issuer := func(validity time.Duration) *manager.GuardCertIssuer {
		return &manager.GuardCertIssuer{
			Client: cl, Secret: types.NamespacedName{Namespace: "guard-cert", Name: manager.GuardCertSecret},
			DNSName: "meshaddon-guard.guard-cert.svc", Configuration: "guard-cert-test", CertDir: t.TempDir(), Validity: validity, Clock: now,
		}
	}
	leaf := func(crt []byte) *x509.Certificate {
		block, _ := pem.Decode(crt)
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	check := func(g *manager.GuardCertIssuer) (crt, bundle []byte) {
		t.Helper()
		var s corev1.Secret
		if err := cl.Get(ctx, g.Secret, &s); err != nil {
			t.Fatal(err)
		}
		served, err := os.ReadFile(filepath.Join(g.CertDir, "tls.crt"))
		if err != nil || !bytes.Equal(served, s.Data["tls.crt"]) {
			t.Fatalf("the served certificate is not the Secret's (%v)", err)
		}
		var c admissionregistrationv1.MutatingWebhookConfiguration
		if err := cl.Get(ctx, client.ObjectKey{Name: "guard-cert-test"}, &c); err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(c.Webhooks[0].ClientConfig.CABundle) {
			t.Fatal("the configuration has no caBundle")
		}
		chain := x509.NewCertPool()
		chain.AppendCertsFromPEM(served)
		if _, err := leaf(served).Verify(x509.VerifyOptions{DNSName: g.DNSName, Roots: roots, Intermediates: chain, CurrentTime: now.Now()}); err != nil {
			t.Fatalf("the caBundle does not trust the served certificate for %s: %v", g.DNSName, err)
		}
		return served, c.Webhooks[0].ClientConfig.CABundle
	}

	// Two replicas: the first issues, the second serves the same.
	a, b := issuer(24*time.Hour), issuer(24*time.Hour)
	if err := a.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cl.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "guard-cert", Name: manager.GuardCertSecret}})
	})
	first, _ := check(a)
	if err := b.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if second, _ := check(b); !bytes.Equal(first, second) {
		t.Fatal("the second replica issued its own certificate")
	}

	// Rotation after two thirds of the life (the clock moved on).
	short := a
	before := first
	life := leaf(before).NotAfter.Sub(leaf(before).NotBefore)
	now.SetTime(leaf(before).NotBefore.Add(life*2/3 - time.Minute))
	if err := short.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := check(short); !bytes.Equal(before, again) {
		t.Fatal("rotated before two thirds of its life")
	}
	now.SetTime(leaf(before).NotBefore.Add(life*2/3 + time.Minute))
	if err := short.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	after, bundle := check(short)
	if bytes.Equal(before, after) {
		t.Fatal("not rotated after two thirds of its life")
	}
	if !bytes.Contains(bundle, before) {
		t.Error("the caBundle dropped the previous CA at rotation")
	}
}
