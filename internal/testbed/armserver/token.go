package armserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// tokenLifetime is how long an issued access token is valid, as Entra ID's
// default of about an hour.
const tokenLifetime = time.Hour

// The sign-in side: a Microsoft identity platform (v2.0) authority with the
// client-credentials grant, enough for MSAL and so azidentity's
// EnvironmentCredential / ClientSecretCredential. Errors use the OAuth
// shape ({"error","error_description","error_codes"}) that MSAL parses.

// issuer is the tokens' issuer and the OpenID configuration's.
func (id *Identity) issuer() string { return id.Endpoint() + "/" + id.TenantID + "/v2.0" }

// adfsTenant is the authority path of the ADFS-style sign-in (Azure Stack
// Hub's): the Azure CLI's identity library (MSAL) looks up every other
// authority on the public cloud before signing in (instance discovery),
// which cannot work offline, but trusts an authority whose path is /adfs.
// It is one tenant, the endpoint's own.
const adfsTenant = "adfs"

// ADFSAuthority is the authority the Azure CLI signs in at: its cloud's
// active directory endpoint.
func (id *Identity) ADFSAuthority() string { return id.Endpoint() + "/" + adfsTenant }

// ARMAudiences are the resources the authority issues tokens for and the
// endpoint accepts: Azure Resource Manager's two standard audiences, as
// Entra ID issues and ARM accepts them, and the endpoint's own URL.
func (id *Identity) ARMAudiences() []string {
	return []string{"https://management.core.windows.net/", "https://management.azure.com/", id.Audience() + "/"}
}

// knownAudience reports whether resource is one of ARMAudiences, with or
// without its trailing slash.
func (id *Identity) knownAudience(resource string) bool {
	want := strings.TrimSuffix(resource, "/")
	for _, a := range id.ARMAudiences() {
		if want != "" && strings.EqualFold(strings.TrimSuffix(a, "/"), want) {
			return true
		}
	}
	return false
}

// validAudiences are the token audiences the endpoint accepts, spelled
// with and without the trailing slash.
func (id *Identity) validAudiences() []string {
	var out []string
	for _, a := range id.ARMAudiences() {
		out = append(out, a, strings.TrimSuffix(a, "/"))
	}
	return out
}

// openIDConfiguration answers GET /{tenant}/v2.0/.well-known/openid-configuration
// and, for the ADFS-style authority, GET /adfs/.well-known/openid-configuration.
func (s *Server) openIDConfiguration(w http.ResponseWriter, r *http.Request, tenant string) {
	base, token, issuer := s.ID.Endpoint()+"/"+tenant, "/oauth2/v2.0/token", s.ID.issuer()
	switch {
	case strings.EqualFold(tenant, adfsTenant):
		base, token, issuer = s.ID.ADFSAuthority(), "/oauth2/token", s.ID.ADFSAuthority()
	case tenant != s.ID.TenantID:
		oauthError(w, r, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found. Use the tenant of this endpoint, %s.", tenant, s.ID.TenantID))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                issuer,
		"token_endpoint":                        base + token,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"token"},
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		"tenant_region_scope":                   "local",
		"cloud_instance_name":                   "local",
	})
}

// instanceDiscovery answers GET /common/discovery/instance for clients that
// validate an authority against the host itself.
func (s *Server) instanceDiscovery(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": s.ID.Endpoint() + "/" + s.ID.TenantID + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []map[string]any{{
			"preferred_network": host,
			"preferred_cache":   host,
			"aliases":           []string{host},
		}},
	})
}

// token answers POST /{tenant}/oauth2/v2.0/token (and the ADFS-style
// /adfs/oauth2/token) with the client-credentials grant: the client id and
// secret of the identity, for scope <audience>/.default (or a v1 client's
// resource=<audience>).
func (s *Server) token(w http.ResponseWriter, r *http.Request, tenant string) {
	if tenant != s.ID.TenantID && !strings.EqualFold(tenant, adfsTenant) {
		oauthError(w, r, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check AZURE_TENANT_ID (meshaddon local arm-env).", tenant))
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must be application/x-www-form-urlencoded: "+err.Error())
		return
	}
	clientID, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		clientID, secret = u, p
	}
	switch grant := r.PostForm.Get("grant_type"); {
	case grant != "client_credentials":
		oauthError(w, r, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The grant type '%s' is not supported here: use client_credentials with the secret from meshaddon local arm-env.", grant))
		return
	case clientID != s.ID.ClientID:
		oauthError(w, r, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, s.ID.TenantID))
		return
	case subtle.ConstantTimeCompare([]byte(secret), []byte(s.ID.ClientSecret)) != 1:
		oauthError(w, r, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Use the secret printed by meshaddon local up --arm (or meshaddon local arm-env).")
		return
	}
	resource, ok := s.resource(r.PostForm)
	if !ok {
		oauthError(w, r, http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant. You might have sent your authentication request to the wrong tenant. The local authority issues tokens for %s (scope <resource>/.default).",
			resource, s.ID.TenantID, strings.Join(s.ID.ARMAudiences(), ", ")))
		return
	}
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"aud":   resource,
		"iss":   s.ID.issuer(),
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(tokenLifetime).Unix(),
		"appid": clientID,
		"oid":   clientID,
		"sub":   clientID,
		"tid":   s.ID.TenantID,
	}).SignedString(s.ID.SigningKey)
	if err != nil {
		oauthError(w, r, http.StatusInternalServerError, "server_error", 0, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(tokenLifetime.Seconds()),
		"ext_expires_in": int(tokenLifetime.Seconds()),
		"access_token":   tok,
	})
}

// resource is the audience a token request asks for: the resource of its
// first <resource>/.default scope (a resource ending in a slash is asked as
// "https://management.core.windows.net//.default"), or a v1 client's
// resource. It reports whether the authority issues tokens for it.
func (s *Server) resource(form url.Values) (string, bool) {
	asked := form.Get("resource")
	for _, sc := range strings.Fields(form.Get("scope")) {
		if res, ok := strings.CutSuffix(sc, "/.default"); ok {
			asked = res
			break
		}
		if asked == "" {
			asked = sc
		}
	}
	return asked, s.ID.knownAudience(asked)
}

// authenticate checks the request's bearer token and returns an ARM error
// (401 with a WWW-Authenticate challenge) when it is missing or invalid.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *Error {
	challenge := fmt.Sprintf(`Bearer authorization_uri="%s/%s", error="invalid_token"`, s.ID.Endpoint(), s.ID.TenantID)
	h := r.Header.Get("Authorization")
	if h == "" {
		w.Header().Set("WWW-Authenticate", challenge+`, error_description="The authentication failed because of missing 'Authorization' header."`)
		return &Error{Status: http.StatusUnauthorized, Code: "AuthenticationFailed", Message: "Authentication failed. The 'Authorization' header is missing."}
	}
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		w.Header().Set("WWW-Authenticate", challenge)
		return &Error{Status: http.StatusUnauthorized, Code: "AuthenticationFailedInvalidHeader", Message: "Authentication failed. The 'Authorization' header is provided in an invalid format."}
	}
	_, err := jwt.Parse(strings.TrimSpace(raw), func(*jwt.Token) (any, error) { return s.ID.SigningKey, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithAudience(s.ID.validAudiences()...),
		jwt.WithIssuer(s.ID.issuer()),
		jwt.WithExpirationRequired())
	if err == nil {
		return nil
	}
	w.Header().Set("WWW-Authenticate", challenge)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return &Error{Status: http.StatusUnauthorized, Code: "ExpiredAuthenticationToken", Message: "The access token expiry UTC time is earlier than current UTC time."}
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return &Error{Status: http.StatusUnauthorized, Code: "InvalidAuthenticationTokenAudience", Message: fmt.Sprintf("The access token has been obtained for wrong audience or resource. It should exactly match one of %s.", strings.Join(s.ID.ARMAudiences(), ", "))}
	}
	return &Error{Status: http.StatusUnauthorized, Code: "InvalidAuthenticationToken", Message: "The access token is invalid: " + err.Error()}
}

// oauthError writes an error in the identity platform's shape: the OAuth
// error and its AADSTS description, codes, time and trace and correlation
// ids (the client's client-request-id when it sent one).
func oauthError(w http.ResponseWriter, r *http.Request, status int, code string, aadsts int, description string) {
	now := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	trace, correlation := uuid.NewString(), r.Header.Get("client-request-id")
	if correlation == "" {
		correlation = uuid.NewString()
	}
	body := map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s", aadsts, description, trace, correlation, now),
		"timestamp":         now,
		"trace_id":          trace,
		"correlation_id":    correlation,
	}
	if aadsts != 0 {
		body["error_codes"] = []int{aadsts}
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
