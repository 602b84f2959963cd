package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"

	"github.com/meridian-mesh/meridian/trust"
)

// MaxCSRSize bounds a CSR before it is parsed. A P-256 CSR is about 300
// bytes and an RSA-4096 one about 1.2 KB; anything past 4 KiB is not a CSR
// the mesh would sign.
const MaxCSRSize = 4 << 10

// Refusal reasons of SignCSR and Mint, the "reason" label of
// meridian_trust_csr_refused_total.
const (
	ReasonOversized    = "oversized"     // CSR larger than MaxCSRSize
	ReasonMalformed    = "malformed"     // not a parseable PKCS#10 CSR
	ReasonBadSignature = "bad_signature" // the CSR is not signed by its own key
	ReasonKeyType      = "key_type"      // key is not ECDSA P-256/P-384 or RSA 2048-4096
	ReasonExtraSAN     = "extra_san"     // DNS, IP, e-mail or a second URI SAN
	ReasonCA           = "ca_requested"  // basicConstraints CA:true or keyCertSign asked for
	ReasonTrustDomain  = "trust_domain"  // the ID is in another trust domain
	ReasonIdentity     = "identity"      // the CSR names an ID other than the attested one
	ReasonTTL          = "ttl"           // negative or above the authority's maximum
)

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
)

// checkRequest is the whole CSR policy. It returns the public key to certify
// or a *trust.RefusedError; it is a pure function of its input and the
// authority's trust domain, fuzzed by FuzzSignCSR.
func (a *Authority) checkRequest(req SignRequest) (crypto.PublicKey, error) {
	if len(req.CSR) > MaxCSRSize {
		return nil, trust.Refuse(ReasonOversized, "CSR of %d bytes exceeds %d", len(req.CSR), MaxCSRSize)
	}
	if err := a.checkID(req.ID); err != nil {
		return nil, err
	}
	if err := a.checkTTL(req.TTL); err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, trust.Refuse(ReasonMalformed, "CSR does not parse: %v", err)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, trust.Refuse(ReasonKeyType, "%v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, trust.Refuse(ReasonBadSignature, "CSR signature does not verify: %v", err)
	}
	if n := len(csr.DNSNames) + len(csr.EmailAddresses) + len(csr.IPAddresses); n > 0 {
		return nil, trust.Refuse(ReasonExtraSAN, "CSR asks for DNS %v, e-mail %v, IP %v; an SVID carries only its SPIFFE ID", csr.DNSNames, csr.EmailAddresses, csr.IPAddresses)
	}
	switch len(csr.URIs) {
	case 0: // the ID comes from attestation alone
	case 1:
		if got := csr.URIs[0].String(); got != req.ID.String() {
			if u := csr.URIs[0]; u.Scheme == "spiffe" && u.Host != req.ID.TrustDomain().Name() {
				return nil, trust.Refuse(ReasonTrustDomain, "CSR asks for %s, outside trust domain %s", got, req.ID.TrustDomain())
			}
			return nil, trust.Refuse(ReasonIdentity, "CSR asks for %s but the caller was attested as %s", got, req.ID)
		}
	default:
		return nil, trust.Refuse(ReasonExtraSAN, "CSR asks for %d URI SANs; an SVID has exactly one", len(csr.URIs))
	}
	for _, ext := range csr.Extensions {
		switch {
		case ext.Id.Equal(oidBasicConstraints):
			var bc struct {
				IsCA       bool `asn1:"optional"`
				MaxPathLen int  `asn1:"optional,default:-1"`
			}
			if _, err := asn1.Unmarshal(ext.Value, &bc); err != nil {
				return nil, trust.Refuse(ReasonMalformed, "CSR basicConstraints does not parse: %v", err)
			}
			if bc.IsCA {
				return nil, trust.Refuse(ReasonCA, "CSR asks for CA:true")
			}
		case ext.Id.Equal(oidKeyUsage):
			var bits asn1.BitString
			if _, err := asn1.Unmarshal(ext.Value, &bits); err != nil {
				return nil, trust.Refuse(ReasonMalformed, "CSR keyUsage does not parse: %v", err)
			}
			// bit 5 is keyCertSign, bit 6 cRLSign (RFC 5280 4.2.1.3)
			if bits.At(5) == 1 || bits.At(6) == 1 {
				return nil, trust.Refuse(ReasonCA, "CSR asks for keyCertSign or cRLSign")
			}
		}
	}
	return csr.PublicKey, nil
}
