package armserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/containerservice/armcontainerservice/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armfeatures"
	"github.com/golang-jwt/jwt/v5"

	"github.com/meshaddon/meshaddon/internal/azure"
)

// These tests run the endpoint for real (TLS on 127.0.0.1, the identity's
// files) without a cluster behind it: every request here is answered, or
// refused, before the cluster would be read. The flows that read and change
// the cluster run end to end in test/e2e.

func startServer(t *testing.T) (*Server, *http.Client) {
	t.Helper()
	id, created, err := Ensure(t.TempDir(), "dev")
	if err != nil || !created {
		t.Fatalf("Ensure: created=%t err=%v", created, err)
	}
	again, created, err := Ensure(id.Dir, "dev")
	if err != nil || created || again.ClientSecret != id.ClientSecret {
		t.Fatalf("a second Ensure must load the same identity: created=%t err=%v", created, err)
	}
	s := New(id, nil, nil, nil, "aks-istio-system")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	hc, err := azure.HTTPClient(id.CAPath())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := hc.Get(id.Endpoint() + "/metadata/endpoints")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the endpoint does not answer over TLS with its CA: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s, hc
}

// call sends a request and decodes the JSON answer.
func call(t *testing.T, hc *http.Client, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %q", method, url, data)
	}
	return resp.StatusCode, out
}

func armCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func tokenFor(t *testing.T, s *Server, hc *http.Client) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {s.ID.ClientID}, "client_secret": {s.ID.ClientSecret}, "scope": {s.ID.Audience() + "/.default"}}
	resp, err := hc.PostForm(s.ID.Endpoint()+"/"+s.ID.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" || tok.ExpiresIn <= 0 {
		t.Fatalf("token: status %d, %+v, %v", resp.StatusCode, tok, err)
	}
	return tok.AccessToken
}

func TestTokenEndpoint(t *testing.T) {
	s, hc := startServer(t)
	tokenFor(t, s, hc)
	good := url.Values{"grant_type": {"client_credentials"}, "client_id": {s.ID.ClientID}, "client_secret": {s.ID.ClientSecret}, "scope": {s.ID.Audience() + "/.default"}}
	for _, tc := range []struct {
		name   string
		tenant string
		change func(v url.Values)
		status int
		code   string
	}{
		{"wrong secret", s.ID.TenantID, func(v url.Values) { v.Set("client_secret", "guess") }, http.StatusUnauthorized, "invalid_client"},
		{"unknown client", s.ID.TenantID, func(v url.Values) { v.Set("client_id", "someone") }, http.StatusBadRequest, "unauthorized_client"},
		{"password grant", s.ID.TenantID, func(v url.Values) { v.Set("grant_type", "password") }, http.StatusBadRequest, "unsupported_grant_type"},
		{"other tenant", "common", func(url.Values) {}, http.StatusBadRequest, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := url.Values{}
			for k, vs := range good {
				v[k] = vs
			}
			tc.change(v)
			resp, err := hc.PostForm(s.ID.Endpoint()+"/"+tc.tenant+"/oauth2/v2.0/token", v)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			if resp.StatusCode != tc.status || out.Error != tc.code || !strings.HasPrefix(out.Description, "AADSTS") {
				t.Errorf("got %d %q (%s), want %d %q", resp.StatusCode, out.Error, out.Description, tc.status, tc.code)
			}
		})
	}
	// MSAL validates that the issuer belongs to the authority's host.
	status, cfg := call(t, hc, http.MethodGet, s.ID.Endpoint()+"/"+s.ID.TenantID+"/v2.0/.well-known/openid-configuration", "", "")
	if status != http.StatusOK || cfg["issuer"] != s.ID.Endpoint()+"/"+s.ID.TenantID+"/v2.0" || cfg["token_endpoint"] != s.ID.Endpoint()+"/"+s.ID.TenantID+"/oauth2/v2.0/token" {
		t.Errorf("openid configuration: %d %v", status, cfg)
	}
	// The Azure CLI signs in at the ADFS-style authority its cloud's
	// metadata names (MSAL skips instance discovery for /adfs), asking
	// ARM's standard audience.
	status, meta := call(t, hc, http.MethodGet, s.ID.Endpoint()+"//metadata/endpoints?api-version=2015-01-01", "", "")
	auth, _ := meta["authentication"].(map[string]any)
	if audiences, _ := auth["audiences"].([]any); status != http.StatusOK || auth["loginEndpoint"] != s.ID.Endpoint()+"/adfs" || len(audiences) == 0 || audiences[0] != "https://management.core.windows.net/" || meta["graphEndpoint"] == nil {
		t.Errorf("metadata endpoints as az cloud register reads them: %d %v", status, meta)
	}
	status, cfg = call(t, hc, http.MethodGet, s.ID.Endpoint()+"/adfs/.well-known/openid-configuration", "", "")
	if status != http.StatusOK || cfg["token_endpoint"] != s.ID.Endpoint()+"/adfs/oauth2/token" || cfg["authorization_endpoint"] == nil {
		t.Fatalf("ADFS-style openid configuration: %d %v", status, cfg)
	}
	if _, err := tokenAt(hc, cfg["token_endpoint"].(string), s, "https://management.core.windows.net//.default"); err != nil {
		t.Errorf("token at the ADFS-style authority: %v", err)
	}
}

// tokenAt asks tokenURL for a client-credentials token for scope.
func tokenAt(hc *http.Client, tokenURL string, s *Server, scope string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {s.ID.ClientID}, "client_secret": {s.ID.ClientSecret}, "scope": {scope}}
	resp, err := hc.PostForm(tokenURL, form)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return "", fmt.Errorf("status %d, %v", resp.StatusCode, err)
	}
	return tok.AccessToken, nil
}

// TestAudiences: the authority issues tokens for ARM's standard audiences
// (as Entra ID does: with or without the trailing slash, as a .default
// scope or a v1 resource) and the endpoint's own URL, and the endpoint
// accepts each; any other resource is refused in Entra ID's error shape.
func TestAudiences(t *testing.T) {
	s, hc := startServer(t)
	tokenURL := s.ID.Endpoint() + "/" + s.ID.TenantID + "/oauth2/v2.0/token"
	feature := s.ID.Endpoint() + "/subscriptions/" + s.ID.SubscriptionID + "/providers/Microsoft.Features/providers/Microsoft.ContainerService/features/Nope?api-version=2021-07-01"
	for _, form := range []url.Values{
		{"scope": {"https://management.core.windows.net//.default"}},
		{"scope": {"https://management.core.windows.net/.default"}},
		{"scope": {"https://management.azure.com//.default"}},
		{"scope": {"https://management.azure.com/.default"}},
		{"scope": {s.ID.Endpoint() + "/.default"}},
		{"scope": {s.ID.Endpoint() + "//.default"}},
		{"resource": {"https://management.core.windows.net/"}},
		{"resource": {"https://management.azure.com"}},
	} {
		t.Run(form.Encode(), func(t *testing.T) {
			form.Set("grant_type", "client_credentials")
			form.Set("client_id", s.ID.ClientID)
			form.Set("client_secret", s.ID.ClientSecret)
			resp, err := hc.PostForm(tokenURL, form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var tok struct {
				AccessToken string `json:"access_token"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("token: %d %v", resp.StatusCode, err)
			}
			if status, out := call(t, hc, http.MethodGet, feature, tok.AccessToken, ""); status != http.StatusNotFound || armCode(out) != "FeatureNotFound" {
				t.Errorf("the endpoint refuses the token: %d %v", status, out)
			}
		})
	}
	for _, scope := range []string{"https://graph.microsoft.com/.default", "https://management.core.windows.net.evil/.default", "/.default"} {
		t.Run("unknown "+scope, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "client_id": {s.ID.ClientID}, "client_secret": {s.ID.ClientSecret}, "scope": {scope}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("client-request-id", "c0ffee00-0000-0000-0000-000000000001")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out struct {
				Error         string `json:"error"`
				Description   string `json:"error_description"`
				Codes         []int  `json:"error_codes"`
				Timestamp     string `json:"timestamp"`
				TraceID       string `json:"trace_id"`
				CorrelationID string `json:"correlation_id"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest || out.Error != "invalid_resource" || !strings.HasPrefix(out.Description, "AADSTS500011: The resource principal named "+strings.TrimSuffix(scope, "/.default")+" was not found") ||
				!slices.Equal(out.Codes, []int{500011}) || out.Timestamp == "" || out.TraceID == "" || out.CorrelationID != "c0ffee00-0000-0000-0000-000000000001" {
				t.Errorf("got %d %+v, want 400 invalid_resource AADSTS500011 in Entra ID's shape", resp.StatusCode, out)
			}
		})
	}
}

// TestSubscriptionsAndTenants: what every ARM client lists at sign-in.
func TestSubscriptionsAndTenants(t *testing.T) {
	s, hc := startServer(t)
	tok := tokenFor(t, s, hc)
	status, out := call(t, hc, http.MethodGet, s.ID.Endpoint()+"/subscriptions?api-version=2019-11-01", tok, "")
	subs, _ := out["value"].([]any)
	if status != http.StatusOK || len(subs) != 1 {
		t.Fatalf("GET /subscriptions: %d %v", status, out)
	}
	sub := subs[0].(map[string]any)
	if sub["subscriptionId"] != s.ID.SubscriptionID || sub["tenantId"] != s.ID.TenantID || sub["state"] != "Enabled" || sub["id"] != "/subscriptions/"+s.ID.SubscriptionID {
		t.Errorf("subscription: %v", sub)
	}
	if status, one := call(t, hc, http.MethodGet, s.ID.Endpoint()+"/subscriptions/"+s.ID.SubscriptionID+"?api-version=2022-12-01", tok, ""); status != http.StatusOK || one["subscriptionId"] != s.ID.SubscriptionID {
		t.Errorf("GET /subscriptions/{id}: %d %v", status, one)
	}
	status, out = call(t, hc, http.MethodGet, s.ID.Endpoint()+"/tenants?api-version=2022-12-01", tok, "")
	if tenants, _ := out["value"].([]any); status != http.StatusOK || len(tenants) != 1 || tenants[0].(map[string]any)["tenantId"] != s.ID.TenantID {
		t.Errorf("GET /tenants: %d %v", status, out)
	}
	for _, tc := range []struct {
		url    string
		status int
		code   string
	}{
		{"/subscriptions/00000000-0000-0000-0000-000000000000?api-version=2022-12-01", 404, "SubscriptionNotFound"},
		{"/subscriptions?api-version=2099-01-01", 400, "NoRegisteredProviderFound"},
		{"/subscriptions?api-version=2022-12-01-preview", 400, "NoRegisteredProviderFound"},
		{"/tenants", 400, "MissingApiVersionParameter"},
	} {
		if status, out := call(t, hc, http.MethodGet, s.ID.Endpoint()+tc.url, tok, ""); status != tc.status || armCode(out) != tc.code {
			t.Errorf("GET %s: %d %v, want %d %s", tc.url, status, out, tc.status, tc.code)
		}
	}
	if status, out := call(t, hc, http.MethodGet, s.ID.Endpoint()+"/subscriptions?api-version=2019-11-01", "", ""); status != http.StatusUnauthorized || armCode(out) != "AuthenticationFailed" {
		t.Errorf("GET /subscriptions without a token: %d %v", status, out)
	}
}

func TestBearerTokenChecks(t *testing.T) {
	s, hc := startServer(t)
	feature := s.ID.Endpoint() + "/subscriptions/" + s.ID.SubscriptionID + "/providers/Microsoft.Features/providers/Microsoft.ContainerService/features/Nope?api-version=2021-07-01"
	sign := func(key []byte, claims jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now()
	claims := func(aud string, exp time.Time) jwt.MapClaims {
		return jwt.MapClaims{"aud": aud, "iss": s.ID.issuer(), "exp": exp.Unix(), "iat": now.Unix()}
	}
	for _, tc := range []struct {
		name, token, code string
	}{
		{"no token", "", "AuthenticationFailed"},
		{"not a JWT", "abc", "InvalidAuthenticationToken"},
		{"other signing key", sign([]byte("another key, not the endpoint's"), claims(s.ID.Audience(), now.Add(time.Hour))), "InvalidAuthenticationToken"},
		{"expired", sign(s.ID.SigningKey, claims(s.ID.Audience(), now.Add(-time.Minute))), "ExpiredAuthenticationToken"},
		{"other audience", sign(s.ID.SigningKey, claims("https://graph.microsoft.com", now.Add(time.Hour))), "InvalidAuthenticationTokenAudience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := call(t, hc, http.MethodGet, feature, tc.token, "")
			if status != http.StatusUnauthorized || armCode(out) != tc.code {
				t.Errorf("got %d %v, want 401 %s", status, out, tc.code)
			}
		})
	}
	// A good token gets past the check to the feature lookup.
	status, out := call(t, hc, http.MethodGet, feature, tokenFor(t, s, hc), "")
	if status != http.StatusNotFound || armCode(out) != "FeatureNotFound" {
		t.Errorf("with a token: got %d %v, want 404 FeatureNotFound", status, out)
	}
}

func TestBadRequests(t *testing.T) {
	s, hc := startServer(t)
	tok := tokenFor(t, s, hc)
	base := s.ID.Endpoint() + "/subscriptions/" + s.ID.SubscriptionID
	cluster := base + "/resourceGroups/" + s.ID.ResourceGroup + "/providers/Microsoft.ContainerService/managedClusters/" + s.ID.Cluster
	for _, tc := range []struct {
		name, method, url, body string
		status                  int
		code                    string
	}{
		{"no api-version", "GET", cluster, "", 400, "MissingApiVersionParameter"},
		{"malformed api-version", "GET", cluster + "?api-version=latest", "", 400, "InvalidApiVersionParameter"},
		{"unknown api-version", "GET", cluster + "?api-version=2099-01-01", "", 400, "NoRegisteredProviderFound"},
		{"preview outside the known range", "GET", cluster + "?api-version=2016-01-01-preview", "", 400, "NoRegisteredProviderFound"},
		{"other subscription", "GET", s.ID.Endpoint() + "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/" + s.ID.ResourceGroup + "/providers/Microsoft.ContainerService/managedClusters/dev?api-version=2025-10-01", "", 404, "SubscriptionNotFound"},
		{"other resource group", "GET", base + "/resourceGroups/elsewhere/providers/Microsoft.ContainerService/managedClusters/dev?api-version=2025-10-01", "", 404, "ResourceGroupNotFound"},
		{"other cluster", "GET", base + "/resourceGroups/" + s.ID.ResourceGroup + "/providers/Microsoft.ContainerService/managedClusters/other?api-version=2025-10-01", "", 404, "ResourceNotFound"},
		{"create another cluster", "PUT", base + "/resourceGroups/" + s.ID.ResourceGroup + "/providers/Microsoft.ContainerService/managedClusters/other?api-version=2025-10-01", `{"location":"local"}`, 400, "OperationNotSupported"},
		{"malformed JSON", "PUT", cluster + "?api-version=2025-10-01", `{"properties": `, 400, "InvalidRequestContent"},
		{"wrong JSON type", "PUT", cluster + "?api-version=2025-10-01", `{"properties": {"agentPoolProfiles": "all"}}`, 400, "InvalidRequestContent"},
		{"empty PUT", "PUT", cluster + "?api-version=2025-10-01", ``, 400, "InvalidRequestContent"},
		{"unsupported method", "DELETE", cluster + "?api-version=2025-10-01", "", 405, "MethodNotAllowed"},
		{"unknown resource type", "GET", base + "/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01", "", 404, "InvalidResourceType"},
		{"other provider namespace", "POST", base + "/providers/Microsoft.Compute/register?api-version=2025-04-01", "", 404, "InvalidResourceNamespace"},
		{"unknown feature", "POST", base + "/providers/Microsoft.Features/providers/Microsoft.ContainerService/features/NoSuchFeature/register?api-version=2021-07-01", "", 404, "FeatureNotFound"},
		{"mesh profile of another location", "GET", base + "/providers/Microsoft.ContainerService/locations/westeurope/meshRevisionProfiles/istio?api-version=2025-10-01", "", 404, "NotFound"},
		{"unknown operation", "GET", base + "/providers/Microsoft.ContainerService/locations/local/operations/nope?api-version=2016-03-30", "", 404, "NotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := call(t, hc, tc.method, tc.url, tok, tc.body)
			e, _ := out["error"].(map[string]any)
			if status != tc.status || armCode(out) != tc.code || e["message"] == "" {
				t.Errorf("got %d %v, want %d %s with a message", status, out, tc.status, tc.code)
			}
		})
	}
}

// TestSDKClients signs in with azidentity and calls through the SDK's own
// clients against the endpoint, as --provider aks does.
func TestSDKClients(t *testing.T) {
	s, hc := startServer(t)
	client := azcore.ClientOptions{Cloud: azure.CustomCloud(s.ID.Endpoint(), ""), Transport: hc}
	cred, err := azidentity.NewClientSecretCredential(s.ID.TenantID, s.ID.ClientID, s.ID.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: client, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions(client)}
	features, err := armfeatures.NewClient(s.ID.SubscriptionID, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	var re *azcore.ResponseError
	_, err = features.Get(context.Background(), "Microsoft.ContainerService", "NoSuchFeature", nil)
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound || re.ErrorCode != "FeatureNotFound" {
		t.Errorf("unknown feature through the SDK: %v", err)
	}
	clusters, err := armcontainerservice.NewManagedClustersClient(s.ID.SubscriptionID, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = clusters.Get(context.Background(), s.ID.ResourceGroup, "other", nil)
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound || re.ErrorCode != "ResourceNotFound" {
		t.Errorf("another cluster through the SDK: %v", err)
	}
	profile, err := clusters.GetMeshRevisionProfile(context.Background(), "local", "istio", nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range profile.Properties.MeshRevisions {
		if *r.Revision == "asm-1-27" {
			found = true
			if got := *r.CompatibleWith[0].Versions[0]; got != "1.32" {
				t.Errorf("asm-1-27 supports from %s, want 1.32", got)
			}
		}
	}
	if !found {
		t.Errorf("asm-1-27 missing from the mesh revision profile")
	}
	// A bad secret is refused at sign-in, with the identity platform's code.
	bad, _ := azidentity.NewClientSecretCredential(s.ID.TenantID, s.ID.ClientID, "wrong",
		&azidentity.ClientSecretCredentialOptions{ClientOptions: client, DisableInstanceDiscovery: true})
	badFeatures, _ := armfeatures.NewClient(s.ID.SubscriptionID, bad, opts)
	if _, err := badFeatures.Get(context.Background(), "Microsoft.ContainerService", "IstioNativeSidecarModePreview", nil); err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("a wrong secret: %v", err)
	}
}

func TestVersionsAndRoutes(t *testing.T) {
	for _, tc := range []struct {
		requested, full string
		same            bool
	}{{"1.34.4", "1.34.4", true}, {"v1.34.4", "1.34.4", true}, {"1.34", "1.34.4", true}, {"1.3", "1.34.4", false}, {"1.33.1", "1.34.4", false}} {
		if got := sameVersion(tc.requested, tc.full); got != tc.same {
			t.Errorf("sameVersion(%q, %q) = %t", tc.requested, tc.full, got)
		}
	}
	if k, ok := compatibleKubernetes("asm-1-20"); !ok || strings.Join(k, ",") != "1.25,1.26,1.27,1.28,1.29" {
		t.Errorf("asm-1-20: %v %t", k, ok)
	}
	if _, ok := compatibleKubernetes("asm-1-19"); ok {
		t.Error("asm-1-19 is not in the profile")
	}
	rt := route{template: "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}"}
	rt.compile()
	p, ok := rt.match("/SUBSCRIPTIONS/s1/resourcegroups/my%20rg/providers/microsoft.containerservice/MANAGEDCLUSTERS/c1/")
	if !ok || p["rg"] != "my rg" || p["name"] != "c1" {
		t.Fatalf("case-insensitive match: %v %t", p, ok)
	}
	if got := rt.canonical(p); got != "/subscriptions/s1/resourceGroups/my%20rg/providers/Microsoft.ContainerService/managedClusters/c1" {
		t.Errorf("canonical path %s", got)
	}
	if _, ok := rt.match("/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1/agentPools"); ok {
		t.Error("a sub-resource must not match its parent's route")
	}
	for v, ok := range map[string]bool{"2025-10-01": true, "2019-02-01": true, "2024-06-02-preview": true, "2026-01-01": false, "2025-10-01-preview": true} {
		_, err := checkAPIVersion(url.Values{"api-version": {v}}, "managedClusters")
		if (err == nil) != ok {
			t.Errorf("api-version %s: %v", v, err)
		}
	}
}
