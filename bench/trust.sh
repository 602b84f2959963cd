#!/usr/bin/env bash
# Trust: X.509-SVIDs signed per second with P-256 (the whole CSR path:
# parse, check, sign), serial and on all cores, against the target of 2,000/s;
# and the cost of a full mesh mTLS handshake (SVIDs on both ends, chain and
# SPIFFE ID checked both ways) beside a plain web-style TLS handshake
# (server certificate only), measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
sign=$(go test -run '^$' -bench 'SignCSR' -benchtime 3s ./trust/ca)
hs=$(go test -run '^$' -bench 'Handshake' -benchtime 3s ./trust/mtls)
echo "$sign" | grep -E '^Benchmark'
echo "$hs" | grep -E '^Benchmark'
{ echo "$sign"; echo "$hs"; } | awk '
  /^BenchmarkSignCSR\/serial/   { serial = $3 }
  /^BenchmarkSignCSR\/parallel/ { par = $3 }
  /^BenchmarkHandshake\/plain-tls/ { plain = $3 }
  /^BenchmarkHandshake\/mtls/      { mtls = $3 }
  END {
    printf "SVIDs signed per second (P-256): %.0f on one core, %.0f on all cores (target: 2000 or more)\n", 1e9/serial, 1e9/par
    printf "handshake: mesh mTLS %.0f us, plain TLS %.0f us: mTLS costs %.2fx plain TLS\n", mtls/1000, plain/1000, mtls/plain
  }'
