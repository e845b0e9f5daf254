// Package kube runs the deploy tasks of a Gantry agent on a Kubernetes
// cluster and watches the live objects of the applications deployed there.
//
// A deploy loads manifests (Git, a directory or inline YAML; kustomize when
// the directory holds a kustomization), substitutes images, applies the
// objects with server-side apply, prunes what the application no longer
// declares, waits for the workloads to become healthy and rolls back to the
// last healthy manifests when they do not. Every write is fenced: an
// inventory ConfigMap per application records the fencing token of the
// newest deploy, and an attempt holding an older token writes nothing.
package kube

import (
	"errors"
	"fmt"

	"go.uber.org/zap"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	gv1 "github.com/gantryci/gantry/proto/gantry/v1"
)

// FieldManager is the server-side apply field manager of Gantry's writes.
const FieldManager = "gantry"

// Outputs a deploy records.
const (
	OutputRevision     = "revision"
	OutputImages       = "images"
	OutputObjects      = "objects"
	OutputPruned       = "pruned"
	OutputResult       = "result"
	OutputRolledBackTo = "rolled_back_to"
)

// Values of OutputResult.
const (
	ResultSucceeded  = "succeeded"
	ResultRolledBack = "rolled_back"
)

// Sink receives output as it is produced. Write may be called from several
// goroutines; the sink must not keep p. (Same shape as buildkit.Sink.)
type Sink interface {
	Write(stream gv1.LogStream, p []byte)
}

// Cluster is one Kubernetes cluster reached through a kubeconfig. It is safe
// for concurrent use: deploys and watches of several applications share it.
type Cluster struct {
	name   string
	log    *zap.Logger
	dyn    dynamic.Interface
	core   kubernetes.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	// shared holds the informers of the drift watches (watch.go).
	shared *sharedCache
	// beforeWrite, set by tests, runs between the fence check and the
	// conditional write of an object: where a newer deploy can slip in.
	beforeWrite func(objRef)
}

// Open returns the cluster reached through the kubeconfig file at path
// kubeconfig ("" means the in-cluster service account). It does not contact
// the API server: a cluster that is down fails the deploys that need it, as
// infrastructure failures, and is reported by Watch.
func Open(name, kubeconfig string, log *zap.Logger) (*Cluster, error) {
	if name == "" {
		return nil, errors.New("cluster name is required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	// A deploy reads the inventory before every write; client-go's default
	// client-side limit (5 requests/s) would dominate its duration.
	cfg.QPS, cfg.Burst = 100, 200
	cfg.UserAgent = "gantry-agent"
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: dynamic client: %w", name, err)
	}
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: client: %w", name, err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: discovery client: %w", name, err)
	}
	log = log.Named("kube").With(zap.String("cluster", name))
	return &Cluster{
		name:   name,
		log:    log,
		dyn:    dyn,
		core:   core,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc)),
		shared: newSharedCache(dyn, log.Named("watch")),
	}, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// Name is the cluster's name, as agents advertise it.
func (c *Cluster) Name() string { return c.name }
