package consensus

import (
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// hclogAdapter lets hashicorp/raft and raft-wal log through zap. It is the
// one place where hclog meets zap.
type hclogAdapter struct {
	z    *zap.Logger
	name string
	args []any
}

func newHCLog(z *zap.Logger) hclog.Logger { return &hclogAdapter{z: z} }

func (h *hclogAdapter) fields(args []any) []zap.Field {
	all := append(append([]any{}, h.args...), args...)
	fs := make([]zap.Field, 0, len(all)/2+1)
	for i := 0; i+1 < len(all); i += 2 {
		k, ok := all[i].(string)
		if !ok {
			k = "arg"
		}
		fs = append(fs, zap.Any(k, all[i+1]))
	}
	if len(all)%2 == 1 {
		fs = append(fs, zap.Any("extra", all[len(all)-1]))
	}
	return fs
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	switch level {
	case hclog.Trace, hclog.Debug:
		h.Debug(msg, args...)
	case hclog.Warn:
		h.Warn(msg, args...)
	case hclog.Error:
		h.Error(msg, args...)
	default:
		h.Info(msg, args...)
	}
}
func (h *hclogAdapter) Trace(msg string, args ...any) { h.z.Debug(msg, h.fields(args)...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.z.Debug(msg, h.fields(args)...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.z.Info(msg, h.fields(args)...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.z.Warn(msg, h.fields(args)...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.z.Error(msg, h.fields(args)...) }
func (h *hclogAdapter) IsTrace() bool                 { return false }
func (h *hclogAdapter) IsDebug() bool                 { return h.z.Core().Enabled(zapcore.DebugLevel) }
func (h *hclogAdapter) IsInfo() bool                  { return h.z.Core().Enabled(zapcore.InfoLevel) }
func (h *hclogAdapter) IsWarn() bool                  { return h.z.Core().Enabled(zapcore.WarnLevel) }
func (h *hclogAdapter) IsError() bool                 { return h.z.Core().Enabled(zapcore.ErrorLevel) }
func (h *hclogAdapter) ImpliedArgs() []any            { return h.args }
func (h *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{z: h.z, name: h.name, args: append(append([]any{}, h.args...), args...)}
}
func (h *hclogAdapter) Name() string { return h.name }
func (h *hclogAdapter) Named(name string) hclog.Logger {
	return &hclogAdapter{z: h.z.Named(name), name: name, args: h.args}
}
func (h *hclogAdapter) ResetNamed(name string) hclog.Logger { return h.Named(name) }
func (h *hclogAdapter) SetLevel(hclog.Level)                {}
func (h *hclogAdapter) GetLevel() hclog.Level               { return hclog.Info }
func (h *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return zap.NewStdLog(h.z)
}
func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return zap.NewStdLog(h.z).Writer()
}
