package coordinator

import (
	"context"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gantryci/gantry/coordinator/api"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// bootstrapACL runs on the leader: a cluster without tokens gets the
// configured bootstrap token as its first admin token. Every coordinator
// may be given the same one; the first leader commits it, later leaders
// find tokens and do nothing.
func (s *Server) bootstrapACL(ctx context.Context) {
	if s.cfg.BootstrapToken == "" {
		return
	}
	id, sum, err := api.ParseToken(s.cfg.BootstrapToken)
	if err != nil {
		return // Validate refused it already
	}
	wait := 100 * time.Millisecond
	for s.fsm.TokenCount() == 0 {
		err := s.api.Bootstrap(ctx, &gv1.Token{Id: id, Name: "bootstrap", Role: gv1.Role_ROLE_ADMIN, SecretSha256: sum, CreatedBy: "bootstrap"})
		if err == nil || status.Code(err) == codes.FailedPrecondition {
			if err == nil {
				s.log.Info("ACL bootstrapped with the configured token", zap.String("token", id))
			}
			return
		}
		s.log.Warn("bootstrap ACL", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
			wait = min(2*wait, 2*time.Second)
		}
	}
}
