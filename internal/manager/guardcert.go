package manager

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshaddon/meshaddon/internal/kube"
)

// GuardCertSecret is the default name of the Secret holding the guard's
// serving certificate in a cluster.
const GuardCertSecret = "meshaddon-guard-cert"

// caBundleKey holds the CAs the configuration trusts: the current one and,
// after a rotation, the previous one, so replicas still serving the old
// certificate stay trusted until they load the new one.
const caBundleKey = "ca.crt"

// GuardCertIssuer issues the guard's serving certificate in a cluster (the
// webhook behind a Service): it keeps it in a Secret every replica shares
// (the first to create it wins; an update with a stale resourceVersion
// loses), rotates it after two thirds of its life, writes it where the
// webhook server reloads it, and writes the CAs into the configuration's
// caBundle.
type GuardCertIssuer struct {
	// Client reads and writes without a cache.
	Client        client.Client
	Secret        types.NamespacedName
	DNSName       string // <service>.<namespace>.svc
	Configuration string
	CertDir       string
	Validity      time.Duration
	Interval      time.Duration
	// Clock tells the time for rotation (nil: the real one).
	Clock clock.PassiveClock
}

// The guard's serving certificate, issued by the manager and shared by its
// replicas, in its own namespace; and the caBundle of its one configuration.
// +kubebuilder:rbac:groups="",namespace=meshaddon-system,resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",namespace=meshaddon-system,resources=secrets,resourceNames=meshaddon-guard-cert,verbs=get;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,resourceNames=meshaddon-placement-guard,verbs=patch

// Start re-checks every Interval until ctx ends, on every replica.
func (g *GuardCertIssuer) Start(ctx context.Context) error {
	t := time.NewTicker(g.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := g.Ensure(ctx); err != nil {
			log.FromContext(ctx).Error(err, "placement guard certificate")
		}
	}
}

// NeedLeaderElection: every replica serves and needs the files.
func (g *GuardCertIssuer) NeedLeaderElection() bool { return false }

// Ensure makes the Secret hold a certificate that is not due for rotation,
// this replica serve it, and the configuration trust it.
func (g *GuardCertIssuer) Ensure(ctx context.Context) error {
	var s corev1.Secret
	for attempt := 0; ; attempt++ {
		err := g.Client.Get(ctx, g.Secret, &s)
		switch {
		case apierrors.IsNotFound(err):
			s = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: g.Secret.Name, Namespace: g.Secret.Namespace}, Type: corev1.SecretTypeTLS}
			if err = g.issue(&s); err == nil {
				err = g.Client.Create(ctx, &s)
			}
		case err == nil && g.due(&s):
			if err = g.issue(&s); err == nil {
				err = g.Client.Update(ctx, &s)
			}
		}
		if err == nil {
			break
		}
		// Another replica created or rotated it first: use theirs.
		if attempt < 3 && (apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err)) {
			continue
		}
		return fmt.Errorf("secret %s: %w", g.Secret, err)
	}
	if err := g.writeFiles(&s); err != nil {
		return err
	}
	return g.trust(ctx, s.Data[caBundleKey])
}

// issue puts a new certificate (with its own new CA) in s, keeping the
// previous CA in the bundle.
func (g *GuardCertIssuer) issue(s *corev1.Secret) error {
	crt, key, err := certutil.GenerateSelfSignedCertKeyWithOptions(certutil.SelfSignedCertKeyOptions{
		Host: g.DNSName, AlternateDNS: []string{g.DNSName, g.DNSName + ".cluster.local"}, MaxAge: g.Validity,
	})
	if err != nil {
		return err
	}
	bundle := append([]byte(nil), crt...)
	if prev := s.Data[corev1.TLSCertKey]; len(prev) > 0 {
		bundle = append(bundle, prev...)
	}
	s.Data = map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key, caBundleKey: bundle}
	return nil
}

// due reports whether the Secret's certificate is missing, unreadable or
// past two thirds of its life.
func (g *GuardCertIssuer) due(s *corev1.Secret) bool {
	block, _ := pem.Decode(s.Data[corev1.TLSCertKey])
	if block == nil || len(s.Data[corev1.TLSPrivateKeyKey]) == 0 || len(s.Data[caBundleKey]) == 0 {
		return true
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return true
	}
	now := time.Now
	if g.Clock != nil {
		now = g.Clock.Now
	}
	life := c.NotAfter.Sub(c.NotBefore)
	return now().After(c.NotBefore.Add(life * 2 / 3))
}

func (g *GuardCertIssuer) writeFiles(s *corev1.Secret) error {
	if err := os.MkdirAll(g.CertDir, 0o700); err != nil {
		return err
	}
	crtPath, keyPath := filepath.Join(g.CertDir, corev1.TLSCertKey), filepath.Join(g.CertDir, corev1.TLSPrivateKeyKey)
	if have, err := os.ReadFile(crtPath); err == nil && bytes.Equal(have, s.Data[corev1.TLSCertKey]) {
		return nil
	}
	// Key first: the server reloads on the certificate's change.
	if err := os.WriteFile(keyPath, s.Data[corev1.TLSPrivateKeyKey], 0o600); err != nil {
		return err
	}
	return os.WriteFile(crtPath, s.Data[corev1.TLSCertKey], 0o600)
}

// trust writes bundle into the caBundle of the configuration's guard
// webhooks. A missing configuration is left to the health check to report.
func (g *GuardCertIssuer) trust(ctx context.Context, bundle []byte) error {
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := g.Client.Get(ctx, client.ObjectKey{Name: g.Configuration}, &cfg); err != nil {
		return client.IgnoreNotFound(err)
	}
	before := cfg.DeepCopy()
	changed := false
	for i := range cfg.Webhooks {
		cc := &cfg.Webhooks[i].ClientConfig
		if cc.Service != nil && cc.Service.Path != nil && *cc.Service.Path == GuardPath && !bytes.Equal(cc.CABundle, bundle) {
			cc.CABundle, changed = bundle, true
		}
	}
	if !changed {
		return nil
	}
	err := g.Client.Patch(ctx, &cfg, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsConflict(err) {
		return errors.New("the configuration changed meanwhile; retried at the next check")
	}
	return err
}

// newGuardCertIssuer issues (or loads) the certificate before the webhook
// server starts, which needs its files.
func newGuardCertIssuer(cfg *rest.Config, o Options) (*GuardCertIssuer, error) {
	name, ns, ok := strings.Cut(o.GuardService, ".")
	if !ok || name == "" || ns == "" || strings.Contains(ns, ".") {
		return nil, fmt.Errorf("--guard-webhook-service %q: want <name>.<namespace>", o.GuardService)
	}
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme})
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "meshaddon-guard-")
	if err != nil {
		return nil, err
	}
	g := &GuardCertIssuer{
		Client: c, Secret: types.NamespacedName{Namespace: ns, Name: GuardCertSecret}, DNSName: name + "." + ns + ".svc",
		Configuration: o.GuardConfiguration, CertDir: dir, Validity: 90 * 24 * time.Hour, Interval: time.Minute,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("the placement guard's serving certificate: %w", err)
	}
	return g, nil
}
