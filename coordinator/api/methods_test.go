package api

import (
	"testing"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// TestEveryMethodHasARow fails when a method is added to the service
// without deciding, in the methods table, how it is served.
func TestEveryMethodHasARow(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range gv1.GantryService_ServiceDesc.Methods {
		seen[m.MethodName] = true
	}
	for _, m := range gv1.GantryService_ServiceDesc.Streams {
		seen[m.StreamName] = true
	}
	for name := range seen {
		if _, ok := methods[name]; !ok {
			t.Errorf("method %s has no row in methods", name)
		}
	}
	for name, w := range methods {
		if !seen[name] {
			t.Errorf("methods has a row for %s, which the service does not have", name)
		}
		if w.sealed && !w.leader {
			t.Errorf("%s: sealed but not leader-only", name)
		}
		if w.open == (w.role != gv1.Role_ROLE_UNSPECIFIED) {
			t.Errorf("%s: either open or a role, not both or neither", name)
		}
		if w.audit && w.read {
			t.Errorf("%s: a read is not audited", name)
		}
		if w.audit && !w.leader {
			// auditCall proposes on the node that served the call.
			t.Errorf("%s: audited but not leader-only", name)
		}
	}
	for _, m := range gv1.GantryService_ServiceDesc.Methods {
		if _, err := newResponse(servicePrefix + m.MethodName); err != nil {
			t.Errorf("%s: %v", m.MethodName, err)
		}
	}
}
