package armserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armfeatures"
	featuresfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armfeatures/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3"
	resfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3/fake"

	"github.com/meshaddon/meshaddon/api/v1alpha1"
	"github.com/meshaddon/meshaddon/internal/platform"
)

// providerNamespace is the only resource provider the endpoint serves.
const providerNamespace = "Microsoft.ContainerService"

// refreshTimeout bounds how long a provider registration waits for the
// manager; after it the answer is Registering, as ARM's often is.
const refreshTimeout = 30 * time.Second

// Features map onto the FeatureRegistration objects: a register sets the
// desired state and the manager moves the state, as the platform does.
func (s *Server) featureServer() *featuresfake.Server {
	return &featuresfake.Server{
		Get: func(ctx context.Context, ns, name string, _ *armfeatures.ClientGetOptions) (resp azfake.Responder[armfeatures.ClientGetResponse], errResp azfake.ErrorResponder) {
			f, err := s.feature(ctx, ns, name, "")
			if err != nil {
				errResp.SetError(err)
				return
			}
			resp.SetResponse(http.StatusOK, armfeatures.ClientGetResponse{FeatureResult: f}, nil)
			return
		},
		Register: func(ctx context.Context, ns, name string, _ *armfeatures.ClientRegisterOptions) (resp azfake.Responder[armfeatures.ClientRegisterResponse], errResp azfake.ErrorResponder) {
			f, err := s.feature(ctx, ns, name, v1alpha1.StateRegistered)
			if err != nil {
				errResp.SetError(err)
				return
			}
			resp.SetResponse(http.StatusOK, armfeatures.ClientRegisterResponse{FeatureResult: f}, nil)
			return
		},
		Unregister: func(ctx context.Context, ns, name string, _ *armfeatures.ClientUnregisterOptions) (resp azfake.Responder[armfeatures.ClientUnregisterResponse], errResp azfake.ErrorResponder) {
			f, err := s.feature(ctx, ns, name, v1alpha1.StateNotRegistered)
			if err != nil {
				errResp.SetError(err)
				return
			}
			resp.SetResponse(http.StatusOK, armfeatures.ClientUnregisterResponse{FeatureResult: f}, nil)
			return
		},
		NewListPager: func(ns string, _ *armfeatures.ClientListOptions) (resp azfake.PagerResponder[armfeatures.ClientListResponse]) {
			list, err := s.features(context.Background(), ns)
			if err != nil {
				resp.AddError(err)
				return
			}
			resp.AddPage(http.StatusOK, armfeatures.ClientListResponse{FeatureOperationsListResult: armfeatures.FeatureOperationsListResult{Value: list}}, nil)
			return
		},
		NewListAllPager: func(_ *armfeatures.ClientListAllOptions) (resp azfake.PagerResponder[armfeatures.ClientListAllResponse]) {
			list, err := s.features(context.Background(), "")
			if err != nil {
				resp.AddError(err)
				return
			}
			resp.AddPage(http.StatusOK, armfeatures.ClientListAllResponse{FeatureOperationsListResult: armfeatures.FeatureOperationsListResult{Value: list}}, nil)
			return
		},
	}
}

// feature reads feature name of ns, after setting its desired state when
// desired is not empty.
func (s *Server) feature(ctx context.Context, ns, name, desired string) (armfeatures.FeatureResult, error) {
	canonical := v1alpha1.FeatureName(name)
	if !strings.EqualFold(ns, providerNamespace) || !slices.Contains(v1alpha1.KnownFeatures, canonical) {
		return armfeatures.FeatureResult{}, &Error{Status: http.StatusNotFound, Code: "FeatureNotFound",
			Message: fmt.Sprintf("The feature '%s' could not be found in namespace '%s'. Known features: %s/%s.", name, ns, providerNamespace, strings.Join(v1alpha1.KnownFeatures, ", "))}
	}
	var fr *v1alpha1.FeatureRegistration
	var err error
	if desired != "" {
		fr, err = platform.SetFeature(ctx, s.Client, canonical, desired)
	} else {
		fr, err = platform.GetFeature(ctx, s.Client, canonical)
	}
	if err != nil {
		return armfeatures.FeatureResult{}, internalError(err)
	}
	return s.featureResult(canonical, fr), nil
}

// features lists the known features of ns (all of them for "").
func (s *Server) features(ctx context.Context, ns string) ([]*armfeatures.FeatureResult, error) {
	if ns != "" && !strings.EqualFold(ns, providerNamespace) {
		return nil, nil
	}
	known, err := platform.ListFeatures(ctx, s.Client)
	if err != nil {
		return nil, internalError(err)
	}
	var out []*armfeatures.FeatureResult
	for _, name := range v1alpha1.KnownFeatures {
		f := s.featureResult(name, known[name])
		out = append(out, &f)
	}
	return out, nil
}

func (s *Server) featureResult(name string, fr *v1alpha1.FeatureRegistration) armfeatures.FeatureResult {
	return armfeatures.FeatureResult{
		ID:         to.Ptr(fmt.Sprintf("/subscriptions/%s/providers/Microsoft.Features/providers/%s/features/%s", s.ID.SubscriptionID, providerNamespace, name)),
		Name:       to.Ptr(providerNamespace + "/" + name),
		Type:       to.Ptr("Microsoft.Features/providers/features"),
		Properties: &armfeatures.FeatureProperties{State: to.Ptr(platform.FeatureState(fr))},
	}
}

// The provider's registration: a register asks the manager to apply every
// feature's state (the refresh the document asks for) and waits for it.
func (s *Server) providersServer() *resfake.ProvidersServer {
	return &resfake.ProvidersServer{
		Register: func(ctx context.Context, ns string, _ *armresources.ProvidersClientRegisterOptions) (resp azfake.Responder[armresources.ProvidersClientRegisterResponse], errResp azfake.ErrorResponder) {
			if err := checkNamespace(ns); err != nil {
				errResp.SetError(err)
				return
			}
			state := "Registered"
			if _, err := platform.RefreshProvider(ctx, s.Client, refreshTimeout); platform.IsTimeout(err) {
				state = "Registering"
			} else if err != nil {
				errResp.SetError(internalError(err))
				return
			}
			resp.SetResponse(http.StatusOK, armresources.ProvidersClientRegisterResponse{Provider: s.provider(state)}, nil)
			return
		},
		Get: func(_ context.Context, ns string, _ *armresources.ProvidersClientGetOptions) (resp azfake.Responder[armresources.ProvidersClientGetResponse], errResp azfake.ErrorResponder) {
			if err := checkNamespace(ns); err != nil {
				errResp.SetError(err)
				return
			}
			resp.SetResponse(http.StatusOK, armresources.ProvidersClientGetResponse{Provider: s.provider("Registered")}, nil)
			return
		},
	}
}

func checkNamespace(ns string) error {
	if strings.EqualFold(ns, providerNamespace) {
		return nil
	}
	return &Error{Status: http.StatusNotFound, Code: "InvalidResourceNamespace",
		Message: fmt.Sprintf("The resource namespace '%s' is invalid: the local ARM endpoint serves %s only.", ns, providerNamespace)}
}

func (s *Server) provider(state string) armresources.Provider {
	rt := func(name string, versions []string) *armresources.ProviderResourceType {
		return &armresources.ProviderResourceType{ResourceType: to.Ptr(name), Locations: []*string{to.Ptr(s.ID.Location)}, APIVersions: to.SliceOfPtrs(versions...)}
	}
	return armresources.Provider{
		ID:                 to.Ptr(fmt.Sprintf("/subscriptions/%s/providers/%s", s.ID.SubscriptionID, providerNamespace)),
		Namespace:          to.Ptr(providerNamespace),
		RegistrationState:  to.Ptr(state),
		RegistrationPolicy: to.Ptr("RegistrationRequired"),
		ResourceTypes: []*armresources.ProviderResourceType{
			rt("managedClusters", apiVersions["managedClusters"]),
			rt("managedClusters/agentPools", apiVersions["agentPools"]),
			rt("locations/meshRevisionProfiles", apiVersions["meshRevisionProfiles"]),
			rt("locations/operations", apiVersions["operations"]),
		},
	}
}

// internalError is a failure of the local cluster behind the endpoint.
func internalError(err error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "InternalServerError", Message: "the local cluster behind the endpoint failed: " + err.Error()}
}
