// Command benchcp is the control plane of bench/proxy.sh: a registry with
// the benchmark's services, served to meridian-proxy over xDS on loopback.
//
//	benchcp -addr 127.0.0.1:PORT -backend 127.0.0.1:PORT [-services 1000 -endpoints 10]
//	benchcp -addr ... -backend ... -mtls -inbound 127.0.0.1:PORT -dir DIR
//
// Meridian's own xds/server serves service "bench" (port 80, HTTP) with
// the backend as its endpoint, plus -services-1 filler services of
// -endpoints endpoints each (for the memory figure). With -mtls the
// endpoint is the server sidecar's inbound address (-inbound) and the
// security path is meridiand's: a fresh mesh CA (package trust), SVIDs by
// SDS through trust/sds, xDS over TLS with the control plane's own SVID,
// and proxies attested by a token. It writes into -dir the mesh bundle
// (ca.pem, for --xds-ca with --xds-server-id
// spiffe://bench.test/ns/meridian-system/sa/meridiand) and one token per
// service account (token-client, token-server, for --xds-token-file).
// It prints "ready" on stdout once serving and runs until killed. Benches
// only.
package main
