// Package platform is what the managed platform does when an operator asks:
// register or unregister a preview feature, refresh the resource provider's
// registration, force a reconcile of the mesh. Each is a change to the
// add-on manager's objects followed by a wait until the manager has acted.
// The CLI's cluster provider and the test bed's local ARM endpoint both use
// it, so the two paths cannot drift apart.
package platform

import "errors"

// TimeoutError is a wait for the add-on manager (or istiod) that ran out of
// time; the message says what was awaited and what to check.
type TimeoutError struct{ msg string }

func (e *TimeoutError) Error() string { return e.msg }

// IsTimeout reports whether err is, or wraps, a TimeoutError.
func IsTimeout(err error) bool {
	var t *TimeoutError
	return errors.As(err, &t)
}
