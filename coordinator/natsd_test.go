package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/gantryci/gantry/internal/limit"
	"github.com/gantryci/gantry/internal/subject"
)

func TestEmbeddedNATSBounds(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.NATS.Listen = "127.0.0.1:0"
	ns, err := startNATS(cfg, zap.NewNop(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if got := nc.MaxPayload(); got != limit.Message {
		t.Errorf("max payload %d, want limit.Message (%d)", got, limit.Message)
	}

	names := subject.New("t")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := make(chan struct{})
	ensureLogStream(ctx, nc, cfg, names.LogStream(), names.AllLogs(), zap.NewNop(), func() { close(ready) })
	select {
	case <-ready:
	default:
		t.Fatal("log stream not ready")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, names.LogStream())
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	if c.MaxMsgSize != limit.LogMessage || c.MaxBytes != logMaxBytes || c.MaxAge != logMaxAge {
		t.Errorf("log stream max msg size %d, bytes %d, age %s; want %d, %d, %s",
			c.MaxMsgSize, c.MaxBytes, c.MaxAge, limit.LogMessage, logMaxBytes, logMaxAge)
	}
	if _, err := js.Publish(ctx, names.Log("j", "t", "a1"), make([]byte, limit.LogMessage+1)); err == nil {
		t.Error("the log stream stored a message larger than limit.LogMessage")
	}
	if _, err := js.Publish(ctx, names.Log("j", "t", "a1"), make([]byte, limit.LogChunk)); err != nil {
		t.Errorf("a chunk of limit.LogChunk bytes: %v", err)
	}
}
