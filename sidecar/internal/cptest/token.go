package cptest

import (
	"context"
	"errors"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/metadata"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/xds/server"
)

// Token is the stand-in service-account token of namespace/serviceAccount
// that TokenAttestor accepts.
func Token(namespace, serviceAccount string) string {
	return "token-of-" + namespace + "/" + serviceAccount
}

// TokenAttestor maps a stream's "authorization: Bearer TOKEN" to the
// workload of td that Token named, as meridiand maps a Kubernetes
// service-account token after asking the API server. Streams without a
// token are left to the next attestor; other tokens are refused.
func TokenAttestor(td spiffeid.TrustDomain) server.AttestorFunc {
	return func(ctx context.Context) (spiffeid.ID, bool, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		auth := md.Get("authorization")
		if len(auth) == 0 {
			return spiffeid.ID{}, false, nil
		}
		who, ok := strings.CutPrefix(auth[0], "Bearer token-of-")
		ns, sa, ok2 := strings.Cut(who, "/")
		if !ok || !ok2 {
			return spiffeid.ID{}, false, errors.New("unknown token")
		}
		id, err := trust.WorkloadID(td, ns, sa)
		return id, err == nil, err
	}
}
