package testcluster

import (
	"sync"

	"github.com/gantryci/gantry/coordinator"
	"github.com/gantryci/gantry/coordinator/api"
)

// AdminToken is the admin token of every cluster this process starts: each
// coordinator is given it as its bootstrap token, and every client of the
// cluster presents it. One token for all clusters keeps a snapshot of one
// cluster restored into another usable.
func AdminToken() string { return adminToken() }

var adminToken = sync.OnceValue(func() string {
	_, bearer, _ := api.NewToken()
	return bearer
})

// knowsToken reports whether node n has applied the admin token.
func knowsToken(n *coordinator.Server) bool {
	id, _, err := api.ParseToken(AdminToken())
	if err != nil {
		return false
	}
	_, ok := n.FSM().Token(id)
	return ok
}
