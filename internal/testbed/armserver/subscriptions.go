package armserver

import (
	"fmt"
	"net/http"
)

// What every ARM client reads when it signs in: the subscriptions and
// tenants the identity can see (`az login` lists them), in
// Microsoft.Resources' shapes. The endpoint has one of each.

// subscription is the subscription as GET /subscriptions/{id} returns it.
func (s *Server) subscription() map[string]any {
	return map[string]any{
		"id":                  "/subscriptions/" + s.ID.SubscriptionID,
		"subscriptionId":      s.ID.SubscriptionID,
		"tenantId":            s.ID.TenantID,
		"displayName":         fmt.Sprintf("meshaddon local (%s)", s.ID.Cluster),
		"state":               "Enabled",
		"authorizationSource": "RoleBased",
		"managedByTenants":    []any{},
		"subscriptionPolicies": map[string]any{
			"locationPlacementId": "Public_2014-09-01",
			"quotaId":             "Internal_2014-09-01",
			"spendingLimit":       "Off",
		},
	}
}

func (s *Server) tenant() map[string]any {
	domain := s.ID.Cluster + ".meshaddon.local"
	return map[string]any{
		"id":             "/tenants/" + s.ID.TenantID,
		"tenantId":       s.ID.TenantID,
		"tenantCategory": "Home",
		"displayName":    fmt.Sprintf("meshaddon local (%s)", s.ID.Cluster),
		"defaultDomain":  domain,
		"domains":        []string{domain},
		"tenantType":     "AAD",
	}
}

// list is ARM's list shape with its total count.
func list(items ...map[string]any) map[string]any {
	return map[string]any{"value": items, "count": map[string]any{"type": "Total", "value": len(items)}}
}

func (s *Server) listSubscriptions(w http.ResponseWriter, _ *http.Request, _ params) {
	writeJSON(w, http.StatusOK, list(s.subscription()))
}

// getSubscription answers for the endpoint's subscription; the route's
// scope check has refused any other.
func (s *Server) getSubscription(w http.ResponseWriter, _ *http.Request, _ params) {
	writeJSON(w, http.StatusOK, s.subscription())
}

func (s *Server) listTenants(w http.ResponseWriter, _ *http.Request, _ params) {
	writeJSON(w, http.StatusOK, list(s.tenant()))
}
