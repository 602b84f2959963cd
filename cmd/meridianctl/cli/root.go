// Package cli is meridianctl's command tree, kept out of package main so
// that tests (and meridiand's own tests) run the same code path as the
// binary: Execute(ctx, args, stdout, stderr) is the whole program.
//
// One file per command group. A helper adding a group ("drill", "policy")
// writes NAME.go with a func(*Globals) *cobra.Command, adds it to the
// groups list below (one line), and uses only what Globals offers: the
// connection to meridiand (Dial, with --server and --timeout applied), the
// output format (Print, with --output applied) and the streams. Errors
// returned from RunE are printed by Execute as one line plus a hint:
// gRPC errors are explained by code (see errors.go), errors wrapped with
// Hint carry their own hint, anything else is a usage error. Commands never
// print errors themselves and never exit.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// groups are meridianctl's command groups, one file each.
var groups = []func(*Globals) *cobra.Command{
	newWorkloadCommand,
	newInstallCommand,
	newGetCommand,
	newApplyCommand,
	newDeleteCommand,
	newExplainCommand,
	newDrillCommand,
	newStatusCommand,
	newLabCommand,
	newTrustCommand,
	newProxyConfigCommand,
	newJoinCommand,
}

// Globals holds the flags every command shares and the output streams.
type Globals struct {
	// Server is meridiand's gRPC address (--server, $MERIDIAN_SERVER).
	Server string
	// Output is table, json or yaml (--output, -o).
	Output string
	// Timeout bounds each request to meridiand (--timeout).
	Timeout time.Duration

	Out, Err io.Writer
}

// DefaultServer is meridiand's default gRPC address, on this host.
const DefaultServer = "127.0.0.1:15010"

// Execute runs meridianctl with args and returns the exit code. ctx ends
// long-running commands (keepalives) cleanly: main cancels it on Ctrl-C.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &Globals{Out: stdout, Err: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	msg, hint := explain(err, g, cmd)
	fmt.Fprintf(stderr, "Error: %s\n", msg)
	if hint != "" {
		fmt.Fprintf(stderr, "Hint: %s\n", hint)
	}
	return 1
}

func newRoot(g *Globals) *cobra.Command {
	server := os.Getenv("MERIDIAN_SERVER")
	if server == "" {
		server = DefaultServer
	}
	root := &cobra.Command{
		Use:   "meridianctl",
		Short: "Control Meridian: workloads, the registry, policies and drills",
		Long: `meridianctl talks to meridiand, Meridian's control plane, over gRPC.

Set meridiand's address with --server or $MERIDIAN_SERVER (default ` + DefaultServer + `).`,
		Example: `  # Register a VM's web server in the mesh, and keep it healthy until Ctrl-C:
  meridianctl workload register --service web --namespace shop \
    --address 10.0.0.5:8080 --locality onprem-east/rack1 --keepalive

  # List the workloads of one namespace, as JSON:
  meridianctl workload list --namespace shop -o json`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch g.Output {
			case "table", "json", "yaml":
			default:
				return fmt.Errorf("--output %q: want table, json or yaml", g.Output)
			}
			if g.Timeout <= 0 {
				return fmt.Errorf("--timeout %v: must be positive", g.Timeout)
			}
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&g.Server, "server", server, "meridiand's gRPC address, host:port ($MERIDIAN_SERVER)")
	f.StringVarP(&g.Output, "output", "o", "table", "output format: table, json or yaml")
	f.DurationVar(&g.Timeout, "timeout", 10*time.Second, "how long to wait for each answer from meridiand")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	for _, group := range groups {
		cmd := group(g)
		if cmd.Run == nil && cmd.RunE == nil {
			// Runnable, so that an unknown subcommand is an error, not help.
			cmd.Args = cobra.NoArgs
			cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		root.AddCommand(cmd)
	}
	return root
}

// Dial connects to meridiand. The connection is lazy: errors surface on
// the first request, which Execute explains.
func (g *Globals) Dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(g.Server, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		return nil, Hint(fmt.Errorf("--server %q: %w", g.Server, err), "give meridiand's gRPC address as host:port, for example "+DefaultServer)
	}
	return conn, nil
}

// Request returns a context for one request to meridiand, bounded by
// --timeout.
func (g *Globals) Request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, g.Timeout)
}
