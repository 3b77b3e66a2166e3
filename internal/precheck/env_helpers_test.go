package precheck

import "testing"

// mustOK fails t when a call's error is not nil: must(client.Create(...)).
func mustOK(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
