package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	xdsserver "github.com/meridian-mesh/meridian/xds/server"
	"github.com/meridian-mesh/meridian/xds/server/xdsadminpb"
)

// proxyConfigTypes are the --type values, in the order a proxy applies
// them.
var proxyConfigTypes = []string{"clusters", "endpoints", "listeners", "routes", "secrets"}

func newProxyConfigCommand(g *Globals) *cobra.Command {
	var types []string
	cmd := &cobra.Command{
		Use:   "proxy-config PROXY",
		Short: "Show the xDS resources a proxy was sent, their versions and ACK state",
		Long: `Show what meridiand's xDS server sent to one connected proxy (Envoy,
meridian-proxy or a proxyless gRPC client), named by the node id of its
bootstrap: for each resource type, every resource it holds with the version
last sent, and whether the proxy ACKed it, is yet to answer, or rejected it
(NACK, with the proxy's reason). As istioctl proxy-config, but from the
control plane's side: it shows what was sent, not what the proxy runs.

The table lists names and versions; -o json and -o yaml add the resources
themselves. Secrets never include private keys.`,
		Example: `  # Everything sent to one sidecar:
  meridianctl proxy-config checkout-7d9f-x2
  # Its clusters only, with their content:
  meridianctl proxy-config checkout-7d9f-x2 --type clusters -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, t := range types {
				if _, ok := xdsserver.TypeName(t); !ok {
					return Hint(fmt.Errorf("--type %q: not a resource type", t), "use one of "+strings.Join(proxyConfigTypes, ", "))
				}
			}
			conn, err := g.Dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := g.Request(cmd.Context())
			defer cancel()
			resp, err := xdsadminpb.NewXDSAdminClient(conn).GetProxyConfig(ctx, &xdsadminpb.GetProxyConfigRequest{
				Proxy: args[0], Types: types, Resources: g.Output != "table",
			})
			if status.Code(err) == codes.NotFound {
				return Hint(errors.New(status.Convert(err).Message()),
					"give the node id from the proxy's bootstrap, of a proxy connected to this meridiand (--server); the admin address's /debug/xds lists them")
			}
			if err != nil {
				return err
			}
			return g.Print(resp, func(w *tabwriter.Writer) { writeProxyConfig(w, resp) })
		},
	}
	cmd.Flags().StringSliceVar(&types, "type", nil, "resource types to show: "+strings.Join(proxyConfigTypes, ", ")+" (default all)")
	_ = cmd.RegisterFlagCompletionFunc("type", cobra.FixedCompletions(proxyConfigTypes, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// typeOrder is the order types are listed in, short names.
var typeOrder = []string{"CDS", "EDS", "LDS", "RDS", "SDS"}

func writeProxyConfig(w *tabwriter.Writer, resp *xdsadminpb.GetProxyConfigResponse) {
	for i, st := range resp.GetStreams() {
		if i > 0 {
			fmt.Fprintln(w)
		}
		// Header lines hold no tabs: they stay out of the columns.
		fmt.Fprintf(w, "PROXY %s (%s)  cluster %s  namespace %s  locality %s  stream %s\n", st.GetId(), st.GetMode(), st.GetCluster(), st.GetNamespace(), orDash(st.GetLocality()), st.GetStream())
		if st.GetIdentity() != "" {
			fmt.Fprintf(w, "IDENTITY %s\n", st.GetIdentity())
		}
		fmt.Fprintln(w, "TYPE\tNAME\tVERSION\tSTATE")
		types := make([]string, 0, len(st.GetTypes()))
		for t := range st.GetTypes() {
			types = append(types, t)
		}
		slices.SortFunc(types, func(a, b string) int { return slices.Index(typeOrder, a) - slices.Index(typeOrder, b) })
		for _, t := range types {
			ts := st.GetTypes()[t]
			state := ackState(ts)
			names := make([]string, 0, len(ts.GetSent()))
			for n := range ts.GetSent() {
				names = append(names, n)
			}
			slices.Sort(names)
			if len(names) == 0 {
				fmt.Fprintf(w, "%s\t(none)\t-\t%s\n", t, state)
			}
			for _, n := range names {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t, n, ts.GetSent()[n], state)
			}
		}
	}
}

// ackState says where a type's last push stands.
func ackState(ts *xdsadminpb.TypeState) string {
	switch n := ts.GetLastNack(); {
	case n != nil:
		return fmt.Sprintf("NACKed version %s (%s); keeps %s", n.GetVersion(), oneLine(n.GetMessage()), orDash(ts.GetAcked()))
	case ts.GetAwaitingAck() != "":
		return "sent version " + ts.GetAwaitingAck() + ", awaiting ACK"
	case ts.GetAcked() != "":
		return "ACKed version " + ts.GetAcked()
	}
	return "nothing sent"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
