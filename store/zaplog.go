package store

import (
	"context"
	"log/slog"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog routes etcd's zap logging into the process's slog logger from
// the given level up, so that etcd speaks in the same structured stream.
// Once quiet is set (the store is closing) nothing is logged: etcd reports
// its own orderly shutdown as errors ("server closed").
func zapToSlog(log *slog.Logger, level zapcore.Level, quiet *atomic.Bool) *zap.Logger {
	return zap.New(&slogCore{log: log, level: level, quiet: quiet})
}

type slogCore struct {
	log   *slog.Logger
	level zapcore.Level
	quiet *atomic.Bool
}

func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= c.level && !c.quiet.Load() }

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{log: c.log.With(attrs(fields)...), level: c.level, quiet: c.quiet}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := slog.LevelWarn
	if e.Level >= zapcore.ErrorLevel {
		level = slog.LevelError
	}
	c.log.Log(context.Background(), level, e.Message, attrs(fields)...)
	return nil
}

func (c *slogCore) Sync() error { return nil }

func attrs(fields []zapcore.Field) []any {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make([]any, 0, 2*len(enc.Fields))
	for k, v := range enc.Fields {
		out = append(out, k, v)
	}
	return out
}
