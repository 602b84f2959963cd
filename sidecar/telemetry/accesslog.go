package telemetry

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// AccessLog writes one JSON line per request or TCP connection, with
// Envoy's access-log fields under snake_case names. A nil *AccessLog
// writes nothing.
type AccessLog struct {
	l *slog.Logger
}

// NewAccessLog writes JSON lines to w.
func NewAccessLog(w io.Writer) *AccessLog {
	return &AccessLog{l: slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.MessageKey || a.Key == slog.LevelKey {
				return slog.Attr{} // every line is an access record: no message, no level
			}
			return a
		},
	}))}
}

// HTTPEntry is one request's access record.
type HTTPEntry struct {
	Start                 time.Time
	Listener, Route       string
	Method, Path, Proto   string
	Authority             string
	Code                  int
	Flags                 string
	BytesIn, BytesOut     int64
	Duration              time.Duration
	UpstreamHost          string
	UpstreamCluster       string
	Downstream            string
	Peer                  string
	UserAgent, RequestID  string
	ForwardedFor, TraceID string
	Attempts              int
}

// HTTP logs a request.
func (a *AccessLog) HTTP(e *HTTPEntry) {
	if a == nil {
		return
	}
	a.l.LogAttrs(context.Background(), slog.LevelInfo, "",
		slog.String("kind", "http"),
		slog.Time("start_time", e.Start),
		slog.String("listener", e.Listener),
		slog.String("route_name", e.Route),
		slog.String("method", e.Method),
		slog.String("path", e.Path),
		slog.String("protocol", e.Proto),
		slog.String("authority", e.Authority),
		slog.Int("response_code", e.Code),
		slog.String("response_flags", e.Flags),
		slog.Int64("bytes_received", e.BytesIn),
		slog.Int64("bytes_sent", e.BytesOut),
		slog.Float64("duration_ms", float64(e.Duration.Microseconds())/1000),
		slog.String("upstream_host", e.UpstreamHost),
		slog.String("upstream_cluster", e.UpstreamCluster),
		slog.Int("upstream_attempts", e.Attempts),
		slog.String("downstream_remote_address", e.Downstream),
		slog.String("downstream_peer", e.Peer),
		slog.String("user_agent", e.UserAgent),
		slog.String("request_id", e.RequestID),
		slog.String("x_forwarded_for", e.ForwardedFor),
		slog.String("trace_id", e.TraceID),
	)
}

// TCPEntry is one connection's access record.
type TCPEntry struct {
	Start             time.Time
	Listener          string
	Flags             string
	BytesIn, BytesOut int64
	Duration          time.Duration
	UpstreamHost      string
	UpstreamCluster   string
	Downstream        string
	Peer, SNI         string
}

// TCP logs a connection.
func (a *AccessLog) TCP(e *TCPEntry) {
	if a == nil {
		return
	}
	a.l.LogAttrs(context.Background(), slog.LevelInfo, "",
		slog.String("kind", "tcp"),
		slog.Time("start_time", e.Start),
		slog.String("listener", e.Listener),
		slog.String("response_flags", e.Flags),
		slog.Int64("bytes_received", e.BytesIn),
		slog.Int64("bytes_sent", e.BytesOut),
		slog.Float64("duration_ms", float64(e.Duration.Microseconds())/1000),
		slog.String("upstream_host", e.UpstreamHost),
		slog.String("upstream_cluster", e.UpstreamCluster),
		slog.String("downstream_remote_address", e.Downstream),
		slog.String("downstream_peer", e.Peer),
		slog.String("requested_server_name", e.SNI),
	)
}
