package kube

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Keys of the inventory ConfigMap.
const (
	invApp              = "app"
	invFence            = "fence"
	invRevision         = "revision"
	invJob              = "job"
	invTask             = "task"
	invObjects          = "objects"
	invManifests        = "manifests.gz"
	invLastGood         = "last-good.gz"
	invLastGoodRevision = "last-good-revision"
)

// maxInventoryRetries bounds the optimistic-concurrency retries of one
// inventory update; each retry means another writer updated it meanwhile.
const maxInventoryRetries = 10

// inventory is what the cluster records about an application: the fencing
// token of the newest deploy, what it applied, and the last manifests that
// became healthy. It lives in the ConfigMap gantry-app-<app> of the
// application's namespace, next to the objects it describes, so that it
// shares their fate and any agent reaching the cluster can read it.
type inventory struct {
	fence            uint64
	revision         string
	job, task        string
	objects          []objRef
	manifests        []byte // gzip of a JSON v1 List
	lastGood         []byte // same format
	lastGoodRevision string
}

func parseInventory(cm *corev1.ConfigMap) (*inventory, error) {
	inv := &inventory{
		revision:         cm.Data[invRevision],
		job:              cm.Data[invJob],
		task:             cm.Data[invTask],
		manifests:        cm.BinaryData[invManifests],
		lastGood:         cm.BinaryData[invLastGood],
		lastGoodRevision: cm.Data[invLastGoodRevision],
	}
	if f := cm.Data[invFence]; f != "" {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, content(fmt.Errorf("inventory %s/%s: fence %q: %w", cm.Namespace, cm.Name, f, err))
		}
		inv.fence = n
	}
	if s := cm.Data[invObjects]; s != "" {
		if err := json.Unmarshal([]byte(s), &inv.objects); err != nil {
			return nil, content(fmt.Errorf("inventory %s/%s: objects: %w", cm.Namespace, cm.Name, err))
		}
	}
	return inv, nil
}

func (inv *inventory) store(cm *corev1.ConfigMap, app string) error {
	objs, err := json.Marshal(inv.objects)
	if err != nil {
		return fmt.Errorf("encode inventory objects: %w", err)
	}
	if inv.objects == nil {
		objs = []byte("[]")
	}
	cm.Data = map[string]string{
		invApp:              app,
		invFence:            strconv.FormatUint(inv.fence, 10),
		invRevision:         inv.revision,
		invJob:              inv.job,
		invTask:             inv.task,
		invObjects:          string(objs),
		invLastGoodRevision: inv.lastGoodRevision,
	}
	cm.BinaryData = map[string][]byte{}
	if inv.manifests != nil {
		cm.BinaryData[invManifests] = inv.manifests
	}
	if inv.lastGood != nil {
		cm.BinaryData[invLastGood] = inv.lastGood
	}
	return nil
}

func staleError(app string, theirs, ours uint64) error {
	return fmt.Errorf("application %s is held by a newer deploy (fence %d > %d): %w", app, theirs, ours, ErrStaleFence)
}

// readInventory returns the application's inventory; an application never
// deployed has an empty one.
func (c *Cluster) readInventory(ctx context.Context, namespace, app string) (*inventory, error) {
	cm, err := c.core.CoreV1().ConfigMaps(namespace).Get(ctx, inventoryName(app), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &inventory{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory %s/%s: %w", namespace, inventoryName(app), err)
	}
	return parseInventory(cm)
}

// checkFence refuses when a deploy newer than fence holds the application.
// It is called right before every write to an object of the application;
// the write that follows is conditional on the object's resourceVersion
// read before this check (see deploy.apply), which closes the window
// between check and write for objects that exist.
func (c *Cluster) checkFence(ctx context.Context, namespace, app string, fence uint64) error {
	inv, err := c.readInventory(ctx, namespace, app)
	if err != nil {
		return err
	}
	if inv.fence > fence {
		return staleError(app, inv.fence, fence)
	}
	return nil
}

// updateInventory applies mutate to the inventory and records it with
// fence, conditionally on the resourceVersion read (optimistic
// concurrency): a concurrent writer makes it re-read and re-check the
// fence, so this write cannot overwrite a newer deploy's inventory.
func (c *Cluster) updateInventory(ctx context.Context, namespace, app string, fence uint64, mutate func(*inventory)) (*inventory, error) {
	cms := c.core.CoreV1().ConfigMaps(namespace)
	name := inventoryName(app)
	for range maxInventoryRetries {
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		exists := err == nil
		switch {
		case apierrors.IsNotFound(err):
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
		case err != nil:
			return nil, fmt.Errorf("read inventory %s/%s: %w", namespace, name, err)
		}
		inv, err := parseInventory(cm)
		if err != nil {
			return nil, err
		}
		if inv.fence > fence {
			return nil, staleError(app, inv.fence, fence)
		}
		mutate(inv)
		inv.fence = fence
		if err := inv.store(cm, app); err != nil {
			return nil, err
		}
		if cm.Labels == nil {
			cm.Labels = map[string]string{}
		}
		cm.Labels[LabelManagedBy] = managedByGantry
		cm.Labels[LabelApp] = labelSafe(app)
		if exists {
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager})
		} else {
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: FieldManager})
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			continue // someone else wrote it: re-read and re-check the fence
		}
		if err != nil {
			return nil, fmt.Errorf("write inventory %s/%s: %w", namespace, name, err)
		}
		return inv, nil
	}
	return nil, fmt.Errorf("write inventory %s/%s: still conflicting after %d attempts", namespace, name, maxInventoryRetries)
}

// gzipObjects compresses objs for the inventory, Secrets with their values
// hashed (redactSecrets): the inventory never holds a Secret's values.
func gzipObjects(objs []*unstructured.Unstructured) ([]byte, error) {
	data, err := encodeList(redactSecrets(objs))
	if err != nil {
		return nil, fmt.Errorf("encode manifests: %w", err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		return nil, fmt.Errorf("compress manifests: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress manifests: %w", err)
	}
	return b.Bytes(), nil
}

// gunzipObjects reads what gzipObjects wrote; nil data is no objects.
func gunzipObjects(data []byte) ([]*unstructured.Unstructured, error) {
	if len(data) == 0 {
		return nil, errors.New("no manifests recorded")
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decompress manifests: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("decompress manifests: %w", err)
	}
	objs, err := decodeList(raw)
	if err != nil {
		return nil, fmt.Errorf("decode manifests: %w", err)
	}
	return objs, nil
}
