package daemon

import (
	"io"
	"log/slog"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

var logLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

func validateLog(l Log, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if l.Format != "text" && l.Format != "json" {
		errs = append(errs, field.NotSupported(path.Child("format"), l.Format, []string{"text", "json"}))
	}
	if _, ok := logLevels[strings.ToLower(l.Level)]; !ok {
		errs = append(errs, field.NotSupported(path.Child("level"), l.Level, []string{"debug", "info", "warn", "error"}))
	}
	return errs
}

// NewLogger returns the process's logger for a validated Log configuration.
// Components add their own "component" attribute; the daemon adds
// "cluster".
func NewLogger(l Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: logLevels[strings.ToLower(l.Level)]}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
