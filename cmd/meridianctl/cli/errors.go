package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// hinted is an error with advice for the user.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() }
func (h *hinted) Unwrap() error { return h.err }

// Hint attaches advice that Execute prints under the error.
func Hint(err error, hint string) error { return &hinted{err: err, hint: hint} }

// fieldFlags maps request fields, as the server names them, to the flags
// that set them.
var fieldFlags = map[string]string{
	"service": "--service", "namespace": "--namespace", "address": "--address", "port_name": "--port-name",
	"protocol": "--protocol", "locality": "--locality", "labels": "--label", "service_account": "--service-account",
	"ttl": "--ttl", "id": "the ID argument",
}

// explain turns any error a command returns into one line and a hint.
func explain(err error, g *Globals, cmd *cobra.Command) (msg, hint string) {
	var h *hinted
	if errors.As(err, &h) {
		return oneLine(h.err.Error()), h.hint
	}
	st, ok := status.FromError(err)
	if !ok {
		hint = "see 'meridianctl --help'"
		if cmd != nil {
			hint = fmt.Sprintf("see '%s --help'", cmd.CommandPath())
		}
		return oneLine(err.Error()), hint
	}
	desc := oneLine(st.Message())
	// grpc-go wraps dial errors twice; the cause is what the user needs.
	if _, cause, ok := strings.Cut(desc, "Error while dialing: "); ok {
		desc = strings.TrimSuffix(cause, `"`)
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Sprintf("meridiand at %s is unavailable: %s", g.Server, desc),
			"is meridiand running there? Point --server (or $MERIDIAN_SERVER) at its gRPC address"
	case codes.DeadlineExceeded:
		return fmt.Sprintf("no answer from meridiand at %s within %v", g.Server, g.Timeout),
			"raise --timeout, or check that --server is meridiand's gRPC address"
	case codes.Unimplemented:
		return fmt.Sprintf("%s does not serve this API: %s", g.Server, desc),
			"check that --server is meridiand's gRPC address, not its admin address"
	case codes.NotFound:
		return strings.TrimPrefix(desc, "workload: "), "it may have expired and been removed; see 'meridianctl workload list'"
	case codes.InvalidArgument:
		return invalid(st)
	case codes.Canceled:
		return "interrupted", ""
	}
	return fmt.Sprintf("%s: %s", st.Code(), desc), ""
}

// invalid lists the fields an InvalidArgument names, and the flags to fix.
func invalid(st *status.Status) (msg, hint string) {
	var parts, flags []string
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		for _, v := range br.GetFieldViolations() {
			parts = append(parts, v.GetField()+": "+v.GetDescription())
			root, _, _ := strings.Cut(v.GetField(), ".")
			if f, ok := fieldFlags[root]; ok && !slices.Contains(flags, f) {
				flags = append(flags, f)
			}
		}
	}
	if len(parts) == 0 {
		return oneLine(st.Message()), ""
	}
	msg = "rejected: " + oneLine(strings.Join(parts, "; "))
	if len(flags) > 0 {
		hint = "fix " + strings.Join(flags, ", ")
	}
	return msg, hint
}

// oneLine keeps an error on one line, however the server wrapped it.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, `\"`, `"`)), " ")
}
