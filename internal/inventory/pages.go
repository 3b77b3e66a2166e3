package inventory

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxExpiredContinues bounds how often one listing goes on past an
// expired continue token before it gives up with the error.
const maxExpiredContinues = 5

// EachListPage reads a listing page by page and calls fn with each, in the
// server's order. A continue token expires (410 Gone) when the snapshot a
// long listing started from is compacted away, as happens on big
// clusters; the API server's error then carries a token that goes on after
// the last item returned, at the newest state, and the listing goes on
// with it: every object comes exactly once (one changed meanwhile in its
// newer state), and pages already handed to fn — printed, counted — stay
// valid. (client-go's tools/pager falls back instead to one unpaginated
// list of everything, held in memory at once, and only in List, not in
// EachListItem.)
func EachListPage[L metav1.ListInterface](ctx context.Context, opts metav1.ListOptions, list func(context.Context, metav1.ListOptions) (L, error), fn func(L) error) error {
	expired := 0
	for {
		page, err := list(ctx, opts)
		if err != nil {
			next := resumeToken(err, opts.Continue)
			if next == "" || expired == maxExpiredContinues {
				return err
			}
			expired++
			opts.Continue = next
			continue
		}
		if err := fn(page); err != nil {
			return err
		}
		if page.GetContinue() == "" {
			return nil
		}
		// The token carries the first page's resourceVersion; the API
		// server refuses a continue that names one too.
		opts.Continue, opts.ResourceVersion, opts.ResourceVersionMatch = page.GetContinue(), "", ""
	}
}

// resumeToken is the token to go on with after err, when err is an
// expired continue token's 410 that carries one; else "".
func resumeToken(err error, continued string) string {
	var status apierrors.APIStatus
	if continued == "" || !apierrors.IsResourceExpired(err) || !errors.As(err, &status) {
		return ""
	}
	return status.Status().ListMeta.Continue
}
