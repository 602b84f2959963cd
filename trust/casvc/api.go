package casvc

import "encoding/json"

// Paths of the CA service.
const (
	PathSVID         = "/trust/v1/svid"
	PathIntermediate = "/trust/v1/intermediate"
	PathBundle       = "/trust/v1/bundle"
)

// MaxRequestSize bounds a request body: a CSR (at most ca.MaxCSRSize) and a
// token (at most attest.MaxTokenSize), base64 and JSON.
const MaxRequestSize = 64 << 10

// SVIDRequest asks for an X.509-SVID.
type SVIDRequest struct {
	// CSR is a DER PKCS#10 request (base64 in JSON). It may name the
	// caller's SPIFFE ID as its only URI SAN, or nothing.
	CSR []byte `json:"csr"`
	// Token proves the caller's identity: a projected service-account token
	// (audience "meridian"), or a join token ("mjt1.…").
	Token string `json:"token"`
	// TTLSeconds asks for a lifetime; 0 is the CA's default (1h).
	TTLSeconds int64 `json:"ttlSeconds,omitempty"`
}

// SVIDResponse carries the SVID and what to verify peers with.
type SVIDResponse struct {
	SPIFFEID string `json:"spiffeId"`
	// Chain is PEM: the SVID, then its intermediate.
	Chain string `json:"chain"`
	// Bundle is the mesh's trust bundle in SPIFFE format (JWKS).
	Bundle json.RawMessage `json:"bundle"`
}

// IntermediateRequest asks the root holder for a cluster intermediate.
type IntermediateRequest struct {
	// CSR for the intermediate's key; only its public key is used.
	CSR []byte `json:"csr"`
	// Token is a join token bound to spiffe://TD/meridian/cluster/NAME.
	// A cluster that already holds an intermediate may instead present its
	// member certificate on the TLS connection (root rotation) and omit it.
	Token string `json:"token,omitempty"`
}

// IntermediateResponse carries the intermediate certificate.
type IntermediateResponse struct {
	Cluster string `json:"cluster"`
	// Chain is PEM: the intermediate certificate.
	Chain  string          `json:"chain"`
	Bundle json.RawMessage `json:"bundle"`
}

// ErrorResponse is the body of every non-200 answer.
type ErrorResponse struct {
	Error string `json:"error"`
	// Reason is the refusal reason when the request was refused
	// (trust.RefusedError), empty for other failures.
	Reason string `json:"reason,omitempty"`
}
