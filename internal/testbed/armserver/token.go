package armserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
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

// openIDConfiguration answers GET /{tenant}/v2.0/.well-known/openid-configuration.
func (s *Server) openIDConfiguration(w http.ResponseWriter, r *http.Request, tenant string) {
	if tenant != s.ID.TenantID {
		oauthError(w, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf("Tenant '%s' not found. Use the tenant of this endpoint, %s.", tenant, s.ID.TenantID))
		return
	}
	base := s.ID.Endpoint() + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                s.ID.issuer(),
		"token_endpoint":                        base + "/oauth2/v2.0/token",
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

// token answers POST /{tenant}/oauth2/v2.0/token with the client-credentials
// grant: the client id and secret of the identity, for scope
// <audience>/.default.
func (s *Server) token(w http.ResponseWriter, r *http.Request, tenant string) {
	if tenant != s.ID.TenantID {
		oauthError(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check AZURE_TENANT_ID (meshaddon local arm-env).", tenant))
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must be application/x-www-form-urlencoded: "+err.Error())
		return
	}
	clientID, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		clientID, secret = u, p
	}
	switch grant := r.PostForm.Get("grant_type"); {
	case grant != "client_credentials":
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The grant type '%s' is not supported here: use client_credentials with the secret from meshaddon local arm-env.", grant))
		return
	case clientID != s.ID.ClientID:
		oauthError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, s.ID.TenantID))
		return
	case subtle.ConstantTimeCompare([]byte(secret), []byte(s.ID.ClientSecret)) != 1:
		oauthError(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Use the secret printed by meshaddon local up --arm (or meshaddon local arm-env).")
		return
	}
	scope := r.PostForm.Get("scope")
	if !s.validScope(scope) {
		oauthError(w, http.StatusBadRequest, "invalid_scope", 500011, fmt.Sprintf("The resource principal named %s was not found in the tenant. Ask for %s/.default.", strings.TrimSuffix(scope, "/.default"), s.ID.Audience()))
		return
	}
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"aud":   s.ID.Audience(),
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
		oauthError(w, http.StatusInternalServerError, "server_error", 0, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(tokenLifetime.Seconds()),
		"ext_expires_in": int(tokenLifetime.Seconds()),
		"access_token":   tok,
	})
}

// validScope accepts the audience's .default scope, with or without a
// trailing slash on the audience, as Entra ID does.
func (s *Server) validScope(scope string) bool {
	for _, sc := range strings.Fields(scope) {
		aud := strings.TrimSuffix(strings.TrimSuffix(sc, "/.default"), "/")
		if sc != aud && aud == s.ID.Audience() {
			return true
		}
	}
	return false
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
		jwt.WithAudience(s.ID.Audience()),
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
		return &Error{Status: http.StatusUnauthorized, Code: "InvalidAuthenticationTokenAudience", Message: fmt.Sprintf("The access token has been obtained for wrong audience or resource. It should exactly match %s.", s.ID.Audience())}
	}
	return &Error{Status: http.StatusUnauthorized, Code: "InvalidAuthenticationToken", Message: "The access token is invalid: " + err.Error()}
}

// oauthError writes an error in the identity platform's shape.
func oauthError(w http.ResponseWriter, status int, code string, aadsts int, description string) {
	body := map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s", aadsts, description),
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
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
