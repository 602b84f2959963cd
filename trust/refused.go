package trust

import "fmt"

// RefusedError is how every trust package refuses bad input: a CSR, a join
// token, a service-account token, a JWT. Reason is a short, stable,
// lower-case word used as the "reason" label of the refusal counters;
// Detail says what exactly was wrong, for the log line and the caller.
type RefusedError struct {
	Reason string
	Detail string
}

func (e *RefusedError) Error() string { return fmt.Sprintf("refused (%s): %s", e.Reason, e.Detail) }

// Refuse builds a RefusedError with a formatted detail.
func Refuse(reason, format string, args ...any) *RefusedError {
	return &RefusedError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}
