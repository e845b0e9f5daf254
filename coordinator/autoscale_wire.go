package coordinator

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantryci/gantry/coordinator/autoscale"
	"github.com/gantryci/gantry/coordinator/fleet"
	"github.com/gantryci/gantry/coordinator/fsm"
	"github.com/gantryci/gantry/coordinator/metrics"
)

// newScaler returns the agent pool autoscaler of cfg, nil when it is off.
// It does not contact the API server: a pass that cannot is logged.
func newScaler(cfg AutoscaleConfig, f *fsm.FSM, agents *fleet.View, m *metrics.Metrics, log *zap.Logger) (*autoscale.Controller, error) {
	if cfg.Kubeconfig == "" {
		return nil, nil
	}
	var (
		rc  *rest.Config
		ns  = cfg.Namespace
		err error
	)
	if cfg.Kubeconfig == "in-cluster" {
		if rc, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("--autoscale in-cluster: %w", err)
		}
		if ns == "" {
			ns = os.Getenv("POD_NAMESPACE")
		}
		if ns == "" {
			b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
			if err != nil {
				return nil, fmt.Errorf("--autoscale-namespace: not set, and no $POD_NAMESPACE or service account namespace: %w", err)
			}
			ns = strings.TrimSpace(string(b))
		}
	} else {
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: cfg.Kubeconfig}, &clientcmd.ConfigOverrides{})
		if rc, err = cc.ClientConfig(); err != nil {
			return nil, fmt.Errorf("--autoscale %s: %w", cfg.Kubeconfig, err)
		}
		if ns == "" {
			if ns, _, err = cc.Namespace(); err != nil {
				return nil, fmt.Errorf("--autoscale %s: namespace: %w", cfg.Kubeconfig, err)
			}
		}
	}
	rc.UserAgent = "gantry-coordinator"
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("--autoscale: client: %w", err)
	}
	return autoscale.New(autoscale.Config{
		Kube: kc, Namespace: ns, State: f, Fleet: agents, Log: log,
		Observe: func(pool string, demand, replicas int) {
			m.PoolDemand.WithLabelValues(pool).Set(float64(demand))
			m.PoolReplicas.WithLabelValues(pool).Set(float64(replicas))
		},
	}), nil
}

// autoscaleLead scales agent pools while this node leads.
func (s *Server) autoscaleLead(ctx context.Context) {
	if s.scaler == nil {
		return
	}
	s.scaler.Lead(ctx)
	s.metrics.PoolDemand.Reset()
	s.metrics.PoolReplicas.Reset()
}
