package mask

import (
	"encoding/json"
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Logger returns log with every message and field masked by m: strings,
// errors, stringers, and structured values (masked values of the latter
// are logged as their JSON text).
func Logger(log *zap.Logger, m *Masker) *zap.Logger {
	if m.Len() == 0 {
		return log
	}
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return &core{Core: c, m: m} }))
}

type core struct {
	zapcore.Core
	m *Masker
}

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	return &core{Core: c.Core.With(c.fields(fields)), m: c.m}
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *core) Write(e zapcore.Entry, fields []zapcore.Field) error {
	e.Message = c.m.String(e.Message)
	return c.Core.Write(e, c.fields(fields))
}

func (c *core) fields(in []zapcore.Field) []zapcore.Field {
	out := make([]zapcore.Field, len(in))
	for i, f := range in {
		out[i] = c.field(f)
	}
	return out
}

func (c *core) field(f zapcore.Field) zapcore.Field {
	switch f.Type {
	case zapcore.StringType:
		f.String = c.m.String(f.String)
		return f
	case zapcore.ByteStringType:
		if b, ok := f.Interface.([]byte); ok {
			return zap.ByteString(f.Key, c.m.Bytes(b))
		}
	case zapcore.ErrorType:
		if err, ok := f.Interface.(error); ok && err != nil {
			return zap.String(f.Key, c.m.String(err.Error()))
		}
	case zapcore.StringerType:
		if s, ok := f.Interface.(fmt.Stringer); ok {
			return zap.String(f.Key, c.m.String(safeString(s)))
		}
	case zapcore.ReflectType:
		return c.asJSON(f, f.Interface)
	case zapcore.ArrayMarshalerType, zapcore.ObjectMarshalerType:
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		return c.asJSON(f, enc.Fields[f.Key])
	}
	return f
}

// asJSON keeps f unless the JSON text of v holds something to mask; then
// it is replaced by the masked text.
func (c *core) asJSON(f zapcore.Field, v any) zapcore.Field {
	b, err := json.Marshal(v)
	if err != nil {
		return f
	}
	if m := c.m.String(string(b)); m != string(b) {
		return zap.String(f.Key, m)
	}
	return f
}

func safeString(s fmt.Stringer) (out string) {
	defer func() {
		if recover() != nil {
			out = "<panic in String>"
		}
	}()
	return s.String()
}
