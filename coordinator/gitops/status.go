package gitops

import (
	"fmt"

	"github.com/gantryci/gantry/coordinator/fsm"
	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// Summary describes an application's state for the API.
func (c *Controller) Summary(a fsm.AppView) *gv1.AppSummary {
	s := &gv1.AppSummary{
		Spec:             a.Spec,
		DeployedRevision: a.DeployedRevision,
		LatestRevision:   a.Latest,
		PinnedRevision:   a.Pinned,
		LastDeploy:       a.Last,
	}
	d := c.Drift(a.Spec.GetName())
	if d != nil {
		s.Health = d.GetHealth()
	}
	target := a.Pinned
	if target == "" {
		target = a.Latest
	}
	switch {
	case d != nil && d.GetError() != "":
		s.Sync = gv1.SyncStatus_SYNC_STATUS_UNSPECIFIED
		s.Reason = "watch: " + d.GetError()
	case d != nil && d.GetSync() == gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC:
		s.Sync = gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
		s.Reason = fmt.Sprintf("%d live field(s) differ from Git", len(d.GetItems()))
	case a.Spec.GetRepo() != "" && target != "" && target != s.DeployedRevision:
		s.Sync = gv1.SyncStatus_SYNC_STATUS_OUT_OF_SYNC
		s.Reason = fmt.Sprintf("Git is at %s, deployed %s", short(target), orNone(short(s.DeployedRevision)))
	case d != nil:
		s.Sync = d.GetSync()
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}
