package demo

import (
	"encoding/json"
	"fmt"

	"github.com/meridian-mesh/meridian/registry"
)

// Node is who a proxyless gRPC client is to its control plane: what the
// xDS server reads to pick its endpoints (see xds/translate, "Node
// identity").
type Node struct {
	// ID names the client in meridiand's logs and /debug/xds.
	ID string
	// Cluster is the Meridian cluster the client runs in.
	Cluster   string
	Namespace string
	Locality  registry.Locality
}

// Bootstrap returns grpc-go's xDS bootstrap (GRPC_XDS_BOOTSTRAP_CONFIG)
// for a client of the xDS server at server ("host:port", plaintext, as the
// lab's meridiand serves it).
func Bootstrap(server string, n Node) ([]byte, error) {
	if server == "" || n.ID == "" || n.Cluster == "" {
		return nil, fmt.Errorf("demo: bootstrap needs the xDS server, a node id and a cluster")
	}
	b, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      server,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []any{"xds_v3"},
		}},
		"node": map[string]any{
			"id":       n.ID,
			"locality": map[string]any{"region": n.Locality.Region, "zone": n.Locality.Zone, "sub_zone": n.Locality.Subzone},
			"metadata": map[string]any{"cluster": n.Cluster, "namespace": n.Namespace, "mode": "proxyless"},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("demo: bootstrap: %w", err)
	}
	return b, nil
}
