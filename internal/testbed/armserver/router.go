package armserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/google/uuid"
)

// Error is an ARM error: an HTTP status and {"error":{"code","message"}}.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func (e *Error) write(w http.ResponseWriter) {
	w.Header().Set("x-ms-failure-cause", "gateway")
	writeJSON(w, e.Status, map[string]any{"error": map[string]string{"code": e.Code, "message": e.Message}})
}

// notFound is ARM's answer for a resource that does not exist.
func notFound(resourceType, name, group string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "ResourceNotFound",
		Message: fmt.Sprintf("The Resource '%s/%s' under resource group '%s' was not found.", resourceType, name, group)}
}

// route is one ARM operation: a path template, the api-versions of its
// resource type, and either the SDK fake server that serves it (with the
// SDK's API name per method) or a handler of its own.
type route struct {
	template string
	pattern  *regexp.Regexp
	kind     string // resource type, for api-versions
	apis     map[string]string
	fake     policy.Transporter
	handle   func(w http.ResponseWriter, r *http.Request, p params)
}

// params are a request's path parameters, by template name.
type params map[string]string

var placeholder = regexp.MustCompile(`\{(\w+)\}`)

// compile turns /a/{x}/b into a case-insensitive pattern: ARM paths are
// case-insensitive, the SDK's fake servers are not.
func (rt *route) compile() {
	var b strings.Builder
	b.WriteString(`(?i)^`)
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(rt.template, -1) {
		b.WriteString(regexp.QuoteMeta(rt.template[last:m[0]]))
		fmt.Fprintf(&b, `(?P<%s>[^/]+)`, rt.template[m[2]:m[3]])
		last = m[1]
	}
	b.WriteString(regexp.QuoteMeta(rt.template[last:]))
	b.WriteString(`/?$`)
	rt.pattern = regexp.MustCompile(b.String())
}

func (rt *route) match(path string) (params, bool) {
	m := rt.pattern.FindStringSubmatch(path)
	if m == nil {
		return nil, false
	}
	p := params{}
	for i, name := range rt.pattern.SubexpNames() {
		if name != "" {
			v, err := url.PathUnescape(m[i])
			if err != nil {
				v = m[i]
			}
			p[name] = v
		}
	}
	return p, true
}

// canonical is the path in the template's spelling, as the fakes expect.
func (rt *route) canonical(p params) string {
	return placeholder.ReplaceAllStringFunc(rt.template, func(s string) string {
		return url.PathEscape(p[s[1:len(s)-1]])
	})
}

// requestInfo travels in the context of a request served by a fake, so
// handlers can read the api-version and add response headers.
type requestInfo struct {
	apiVersion string
	header     http.Header
	status     int // overrides the fake's status when set (201 on create)
}

type requestInfoKey struct{}

func infoOf(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{header: http.Header{}}
}

// ServeHTTP routes a request: sign-in endpoints first, then ARM operations
// behind the bearer token, api-version and subscription checks.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	w = rec
	w.Header().Set("x-ms-request-id", uuid.NewString())
	w.Header().Set("x-ms-correlation-request-id", r.Header.Get("x-ms-correlation-request-id"))
	defer func() {
		if v := recover(); v != nil {
			(&Error{Status: http.StatusInternalServerError, Code: "InternalServerError", Message: fmt.Sprint(v)}).write(w)
		}
		s.logf("%s %s → %d in %s", r.Method, r.URL.RequestURI(), rec.status, time.Since(start).Round(time.Millisecond))
	}()
	if err := s.serve(w, r); err != nil {
		err.write(w)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) *Error {
	// ARM ignores repeated slashes, which clients send when a base URL
	// ending in a slash meets a path (az cloud register's metadata lookup).
	path := repeatedSlashes.ReplaceAllString(r.URL.Path, "/")
	if m := tokenPath.FindStringSubmatch(path); m != nil && r.Method == http.MethodPost {
		s.token(w, r, m[1])
		return nil
	}
	if m := openIDPath.FindStringSubmatch(path); m != nil && r.Method == http.MethodGet {
		s.openIDConfiguration(w, r, m[1])
		return nil
	}
	if strings.EqualFold(path, "/common/discovery/instance") && r.Method == http.MethodGet {
		s.instanceDiscovery(w, r)
		return nil
	}
	if strings.EqualFold(path, "/metadata/endpoints") && r.Method == http.MethodGet {
		s.metadataEndpoints(w)
		return nil
	}
	for i := range s.routes {
		rt := &s.routes[i]
		p, ok := rt.match(path)
		if !ok {
			continue
		}
		if err := s.authenticate(w, r); err != nil {
			return err
		}
		apiVersion, err := checkAPIVersion(r.URL.Query(), rt.kind)
		if err != nil {
			return err
		}
		if err := s.checkScope(p); err != nil {
			return err
		}
		if rt.handle != nil {
			if r.Method != http.MethodGet {
				return methodNotAllowed(r.Method)
			}
			rt.handle(w, r, p)
			return nil
		}
		api, ok := rt.apis[r.Method]
		if !ok {
			return methodNotAllowed(r.Method)
		}
		return s.dispatch(w, r, rt, p, api, apiVersion)
	}
	// Unknown paths are no reason to skip the token check.
	if err := s.authenticate(w, r); err != nil {
		return err
	}
	return &Error{Status: http.StatusNotFound, Code: "InvalidResourceType",
		Message: fmt.Sprintf("The local ARM endpoint does not serve %s %s: it serves Microsoft.Features features, the Microsoft.ContainerService provider, and the managed cluster %s with its agent pools.", r.Method, path, s.ID.Cluster)}
}

var (
	tokenPath       = regexp.MustCompile(`^/([^/]+)/oauth2/(?:v2\.0/)?token$`)
	openIDPath      = regexp.MustCompile(`^/([^/]+)(?:/v2\.0)?/\.well-known/openid-configuration$`)
	repeatedSlashes = regexp.MustCompile(`//+`)
)

func methodNotAllowed(method string) *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Code: "MethodNotAllowed", Message: fmt.Sprintf("The requested resource does not support http method '%s'.", method)}
}

// checkScope answers for a subscription, resource group or resource
// provider the endpoint does not have.
func (s *Server) checkScope(p params) *Error {
	if sub, ok := p["sub"]; ok && !strings.EqualFold(sub, s.ID.SubscriptionID) {
		return &Error{Status: http.StatusNotFound, Code: "SubscriptionNotFound", Message: fmt.Sprintf("The subscription '%s' could not be found.", sub)}
	}
	if rg, ok := p["rg"]; ok && !strings.EqualFold(rg, s.ID.ResourceGroup) {
		return &Error{Status: http.StatusNotFound, Code: "ResourceGroupNotFound", Message: fmt.Sprintf("Resource group '%s' could not be found.", rg)}
	}
	return nil
}

// dispatch serves the request through the SDK's fake server: it parses the
// request into the SDK's models, calls our handler, and writes the
// response in the SDK's own wire format.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, rt *route, p params, api, apiVersion string) *Error {
	if r.Body != nil && r.Method != http.MethodGet {
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			return &Error{Status: http.StatusBadRequest, Code: "InvalidRequestContent", Message: "The request content could not be read: " + err.Error()}
		}
		if len(bytes.TrimSpace(body)) == 0 {
			if r.Method == http.MethodPut || r.Method == http.MethodPatch {
				return &Error{Status: http.StatusBadRequest, Code: "InvalidRequestContent", Message: "The request content was invalid and could not be deserialized: the body is empty."}
			}
			body = nil
		} else if err := json.Unmarshal(body, new(map[string]any)); err != nil {
			return &Error{Status: http.StatusBadRequest, Code: "InvalidRequestContent", Message: "The request content was invalid and could not be deserialized: " + err.Error()}
		}
		// The fakes read a nil body as "no parameters"; an empty one fails.
		r.Body = nil
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
	}
	// Mutations run one at a time: the fakes keep a long-running
	// operation's responder by URL between the handler and the response.
	if r.Method != http.MethodGet {
		s.mutating.Lock()
		defer s.mutating.Unlock()
	}
	ri := &requestInfo{apiVersion: apiVersion, header: http.Header{}}
	ctx := context.WithValue(r.Context(), runtime.CtxAPINameKey{}, api)
	ctx = context.WithValue(ctx, requestInfoKey{}, ri)
	req := r.Clone(ctx)
	req.URL.Path, req.URL.RawPath = rt.canonical(p), ""
	resp, err := rt.fake.Do(req)
	if err != nil {
		return armError(err)
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		if strings.EqualFold(k, "Fake-Poller-Status") {
			continue
		}
		w.Header()[k] = vs
	}
	for k, vs := range ri.header {
		w.Header()[k] = vs
	}
	status := resp.StatusCode
	if ri.status != 0 {
		status = ri.status
	}
	w.WriteHeader(status)
	_, _ = io.Copy(w, resp.Body)
	return nil
}

// armError turns what a fake returned into ARM's error shape.
func armError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return &Error{Status: re.StatusCode, Code: re.ErrorCode, Message: re.ErrorCode}
	}
	if strings.Contains(err.Error(), "unmarshalling type") {
		return &Error{Status: http.StatusBadRequest, Code: "InvalidRequestContent", Message: "The request content was invalid and could not be deserialized: " + err.Error()}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "InternalServerError", Message: err.Error()}
}

// statusRecorder remembers the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// metadataEndpoints is ARM's cloud metadata, which `az cloud register
// --endpoint-resource-manager` reads to learn the authority and audience:
// the ADFS-style authority (as an Azure Stack Hub on ADFS answers) and
// ARM's standard audience first, which the Azure CLI asks tokens for.
func (s *Server) metadataEndpoints(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, map[string]any{
		"name":            "MeshaddonLocal",
		"resourceManager": s.ID.Endpoint() + "/",
		"graphEndpoint":   "https://graph.windows.net/",
		"authentication": map[string]any{
			"loginEndpoint":    s.ID.ADFSAuthority(),
			"audiences":        s.ID.ARMAudiences(),
			"tenant":           adfsTenant,
			"identityProvider": "ADFS",
		},
	})
}

// --- api-versions ---

// aksVersions are the stable api-versions of Microsoft.ContainerService
// managed clusters that clients send; the SDK modules here send the last.
var aksVersions = []string{
	"2017-08-31", "2018-03-31", "2019-02-01", "2019-04-01", "2019-06-01", "2019-08-01", "2019-10-01", "2019-11-01",
	"2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01", "2020-06-01", "2020-07-01", "2020-09-01", "2020-11-01", "2020-12-01",
	"2021-02-01", "2021-03-01", "2021-05-01", "2021-07-01", "2021-08-01", "2021-09-01", "2021-10-01",
	"2022-01-01", "2022-02-01", "2022-03-01", "2022-04-01", "2022-06-01", "2022-07-01", "2022-08-01", "2022-09-01", "2022-11-01",
	"2023-01-01", "2023-02-01", "2023-03-01", "2023-04-01", "2023-05-01", "2023-06-01", "2023-07-01", "2023-08-01", "2023-09-01", "2023-10-01", "2023-11-01",
	"2024-01-01", "2024-02-01", "2024-05-01", "2024-07-01", "2024-08-01", "2024-09-01", "2024-10-01",
	"2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01", "2025-07-01", "2025-08-01", "2025-09-01", "2025-10-01",
}

// meshProfileSince is the first stable api-version with serviceMeshProfile;
// older clients neither see nor send it.
const meshProfileSince = "2023-08-01"

// meshRevisionsSince is the first stable api-version of meshRevisionProfiles.
const meshRevisionsSince = "2024-01-01"

// apiVersions are the accepted api-versions per resource type.
var apiVersions = map[string][]string{
	"features": {"2014-08-01-preview", "2015-12-01", "2021-07-01"},
	"providers": {"2014-04-01", "2015-01-01", "2015-11-01", "2016-02-01", "2016-06-01", "2016-07-01", "2016-09-01", "2017-05-10",
		"2018-02-01", "2018-05-01", "2019-03-01", "2019-05-01", "2019-05-10", "2019-07-01", "2019-08-01", "2019-10-01",
		"2020-06-01", "2020-08-01", "2020-10-01", "2021-01-01", "2021-04-01", "2022-09-01", "2023-07-01",
		"2024-03-01", "2024-07-01", "2024-11-01", "2025-03-01", "2025-04-01"},
	"managedClusters":      aksVersions,
	"agentPools":           since(aksVersions, "2019-02-01"),
	"meshRevisionProfiles": since(aksVersions, meshRevisionsSince),
	"operations":           append([]string{"2016-03-30"}, aksVersions...),
	// Subscriptions and tenants, which every client lists at sign-in.
	"subscriptions": subscriptionVersions,
	"tenants":       subscriptionVersions,
}

// subscriptionVersions are the api-versions of Microsoft.Resources'
// subscriptions and tenants that clients send (az 2.45 sends 2019-11-01,
// the Go SDK's armsubscriptions 2022-12-01).
var subscriptionVersions = []string{"2014-04-01", "2015-01-01", "2016-06-01", "2018-06-01", "2019-06-01", "2019-11-01",
	"2020-01-01", "2021-01-01", "2022-01-01", "2022-09-01", "2022-12-01"}

// stableOnly are the resource types whose -preview api-versions are not
// accepted on the strength of their date.
var stableOnly = []string{"features", "providers", "subscriptions", "tenants"}

func since(versions []string, first string) []string {
	i := slices.Index(versions, first)
	return versions[i:]
}

var apiVersionPattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview)?$`)

// checkAPIVersion accepts the resource type's api-versions, and the
// -preview versions of the Microsoft.ContainerService types dated within
// them (the aks-preview CLI extension sends those); anything else gets
// ARM's error.
func checkAPIVersion(q url.Values, kind string) (string, *Error) {
	v := q.Get("api-version")
	supported := apiVersions[kind]
	switch {
	case v == "":
		return "", &Error{Status: http.StatusBadRequest, Code: "MissingApiVersionParameter", Message: "The api-version query parameter (?api-version=) is required for all requests."}
	case !apiVersionPattern.MatchString(v):
		return "", &Error{Status: http.StatusBadRequest, Code: "InvalidApiVersionParameter", Message: fmt.Sprintf("The api-version '%s' is invalid. The supported versions are '%s'.", v, strings.Join(supported, ","))}
	case slices.Contains(supported, v):
		return v, nil
	case strings.HasSuffix(v, "-preview") && !slices.Contains(stableOnly, kind) &&
		v[:10] >= supported[0] && v[:10] <= supported[len(supported)-1]:
		return v, nil
	}
	return "", &Error{Status: http.StatusBadRequest, Code: "NoRegisteredProviderFound",
		Message: fmt.Sprintf("No registered resource provider found for location 'local' and API version '%s' for type '%s'. The supported api-versions are '%s'.", v, kind, strings.Join(supported, ", "))}
}

// atLeast compares api-versions by their date.
func atLeast(apiVersion, first string) bool { return len(apiVersion) >= 10 && apiVersion[:10] >= first }
