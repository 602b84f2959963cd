package workloadapi

import (
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Registration entitles local processes to an identity. Every field that is
// set must match the caller; at least one selector must be set (New
// refuses a registration that would match every process).
type Registration struct {
	// ID is the identity the matching processes get.
	ID spiffeid.ID
	// UID and GID the process runs as.
	UID, GID *uint32
	// Exe is the process's executable path (/proc/PID/exe).
	Exe string
}

func (r Registration) selects() bool { return r.UID != nil || r.GID != nil || r.Exe != "" }

// matches reports whether the caller satisfies every selector. The
// executable is read only when a registration asks for it.
func (r Registration) matches(c Caller, exe func() (string, error)) bool {
	if r.UID != nil && *r.UID != c.UID || r.GID != nil && *r.GID != c.GID {
		return false
	}
	if r.Exe != "" {
		p, err := exe()
		if err != nil || p != r.Exe {
			return false
		}
	}
	return true
}

// Registry holds the registrations; Set replaces them while the server
// runs. Safe for concurrent use.
type Registry struct {
	mu   sync.RWMutex
	regs []Registration
}

// NewRegistry returns a Registry holding regs.
func NewRegistry(regs ...Registration) *Registry { return &Registry{regs: regs} }

// Set replaces the registrations. Streams already open keep the identities
// they were attested with until they reconnect.
func (r *Registry) Set(regs []Registration) {
	r.mu.Lock()
	r.regs = append([]Registration(nil), regs...)
	r.mu.Unlock()
}

// Attest returns the identities the caller is entitled to, in registration
// order, without duplicates.
func (r *Registry) Attest(c Caller) []spiffeid.ID {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var exe struct {
		once sync.Once
		path string
		err  error
	}
	lookup := func() (string, error) {
		exe.once.Do(func() { exe.path, exe.err = c.Exe() })
		return exe.path, exe.err
	}
	var ids []spiffeid.ID
	seen := map[spiffeid.ID]bool{}
	for _, reg := range r.regs {
		if reg.selects() && !seen[reg.ID] && reg.matches(c, lookup) {
			ids = append(ids, reg.ID)
			seen[reg.ID] = true
		}
	}
	return ids
}
