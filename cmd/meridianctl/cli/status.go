package cli

import (
	"context"
	"errors"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/federation"
	"github.com/meridian-mesh/meridian/federation/federationpb"
)

func newStatusCommand(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the clusters of the mesh as this control plane sees them",
		Long: `Show the mesh's federation from one control plane: every cluster with its
state (alive, suspect, unreachable, dead, left), how stale its data is, the
version of its registry segment and how far this control plane lags behind
it; every control-plane replica (member) with its role and state; the
replicated policies; and the bytes gossip and replication moved.

Suspect and unreachable clusters keep their endpoints, marked stale; dead
and departed clusters' endpoints are unhealthy everywhere.`,
		Example: `  meridianctl status
  meridianctl status --server 10.0.0.7:15010 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := g.Dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), g.Timeout)
			defer cancel()
			st, err := federationpb.NewFederationStatusClient(conn).GetStatus(ctx, &federationpb.GetStatusRequest{})
			if status.Code(err) == codes.Unimplemented {
				return Hint(errors.New("this meridiand is not federated"), "start it with --federate (federation.enabled) to join the mesh")
			}
			if err != nil {
				return err
			}
			return g.Print(st, func(w *tabwriter.Writer) { federation.WriteStatus(w, st) })
		},
	}
}
