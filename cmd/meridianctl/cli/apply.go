package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
)

func newApplyCommand(g *Globals) *cobra.Command {
	var files []string
	req := &policyapipb.ApplyRequest{}
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- ...",
		Short: "Create or update policy objects from YAML or JSON files",
		Long: `Create or update policy objects (apiVersion meridian.io/v1alpha1), as kubectl
apply does: every document of every file, all or nothing.

meridiand checks each object alone, then the set it would make with the
policies in force against the mesh (regions, clusters and services that
exist, conflicts, references), and refuses a residency rule that would
leave a service with no allowed endpoint anywhere. Errors name the file,
the line and the field. Set-level refusals can be overridden with --force.
The objects reach every cluster of the mesh.`,
		Example: `  meridianctl apply -f policies.yaml
  meridianctl apply -f policies/ --dry-run
  cat residency.yaml | meridianctl apply -f - -n payments`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srcs, err := readSources(files, cmd.InOrStdin())
			if err != nil {
				return err
			}
			req.Sources = srcs
			return withPolicyAPI(g, func(pc policyapipb.PolicyServiceClient, _ policyapipb.LocalityServiceClient) error {
				ctx, cancel := g.Request(cmd.Context())
				defer cancel()
				resp, err := pc.Apply(ctx, req)
				if err != nil {
					return refusal(err, "")
				}
				return printWrite(g, resp, resp.GetResults(), resp.GetWarnings(), req.GetDryRun())
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "file, directory (its .yaml, .yml and .json files) or - for stdin; repeat for several")
	f.StringVarP(&req.DefaultNamespace, "namespace", "n", "default", "namespace of objects that give none")
	f.BoolVar(&req.Force, "force", false, "write objects that only the set-level checks refuse (conflicts, references, residency)")
	f.BoolVar(&req.DryRun, "dry-run", false, "check everything, write nothing")
	_ = cmd.MarkFlagRequired("filename")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	return cmd
}

// readSources reads files, directories and stdin ("-"), each named as the
// user gave it so that errors point at it.
func readSources(paths []string, stdin io.Reader) ([]*policyapipb.Source, error) {
	var out []*policyapipb.Source
	hint := "give a YAML or JSON file, a directory of them, or - for stdin"
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(stdin)
			if err != nil {
				return nil, Hint(fmt.Errorf("reading stdin: %w", err), hint)
			}
			out = append(out, &policyapipb.Source{Name: "-", Data: b})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, Hint(fmt.Errorf("-f %s: %w", p, pathError(err)), hint)
		}
		names := []string{p}
		if fi.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, Hint(fmt.Errorf("-f %s: %w", p, pathError(err)), hint)
			}
			names = nil
			for _, e := range entries {
				if ext := filepath.Ext(e.Name()); !e.IsDir() && slices.Contains([]string{".yaml", ".yml", ".json"}, ext) {
					names = append(names, filepath.Join(p, e.Name()))
				}
			}
			if len(names) == 0 {
				return nil, Hint(fmt.Errorf("-f %s: no .yaml, .yml or .json files in the directory", p), hint)
			}
		}
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				return nil, Hint(fmt.Errorf("-f %s: %w", n, pathError(err)), hint)
			}
			out = append(out, &policyapipb.Source{Name: n, Data: b})
		}
	}
	return out, nil
}

// pathError drops the path an *os.PathError repeats.
func pathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// printWrite prints what an apply or delete did, kubectl style, and its
// warnings on stderr; -o json or yaml prints the whole answer.
func printWrite(g *Globals, resp proto.Message, results []*policyapipb.Result, warnings []*policyapipb.Finding, dryRun bool) error {
	for _, w := range warnings {
		fmt.Fprintf(g.Err, "Warning: %s: %s: %s\n", w.GetObject(), w.GetField(), w.GetMessage())
	}
	if g.Output != "table" {
		return g.Print(resp, nil)
	}
	suffix := ""
	if dryRun {
		suffix = " (dry run)"
	}
	for _, r := range results {
		fmt.Fprintf(g.Out, "%s %s%s\n", resourceName(r.GetRef().GetKind(), r.GetRef().GetName()), r.GetOutcome(), suffix)
	}
	return nil
}
