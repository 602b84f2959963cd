package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
)

func newDeleteCommand(g *Globals) *cobra.Command {
	var files []string
	var namespace string
	req := &policyapipb.DeleteRequest{}
	cmd := &cobra.Command{
		Use:   "delete {KIND NAME... | -f FILE|DIR|-}",
		Short: "Delete policy objects, by name or as listed in files",
		Long: `Delete policy objects in every cluster of the mesh, all or none: each must
exist, and the policies left must still pass the set-level checks (a route
must not be left pointing at a deleted gateway or subset) unless --force.`,
		Example: `  meridianctl delete residencyrule eu-only -n payments
  meridianctl delete fop web cart -n shop
  meridianctl delete -f policies.yaml`,
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return kindCompletions()[1:], cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(files) > 0 && len(args) > 0:
				return errors.New("give KIND NAME... or -f, not both")
			case len(files) == 0 && len(args) < 2:
				return errors.New("give KIND and at least one NAME, or -f FILE")
			}
			if len(files) > 0 {
				refs, err := refsOfFiles(files, namespace, cmd)
				if err != nil {
					return err
				}
				req.Refs = refs
			} else {
				k, err := resolveKind(args[0])
				if err != nil {
					return err
				}
				for _, name := range args[1:] {
					req.Refs = append(req.Refs, &policyapipb.ObjectRef{Kind: k.Name, Namespace: namespace, Name: name})
				}
			}
			return withPolicyAPI(g, func(pc policyapipb.PolicyServiceClient, _ policyapipb.LocalityServiceClient) error {
				ctx, cancel := g.Request(cmd.Context())
				defer cancel()
				resp, err := pc.Delete(ctx, req)
				if err != nil {
					return refusal(err, "nothing was deleted; see what exists with 'meridianctl get KIND -A'")
				}
				return printWrite(g, resp, resp.GetResults(), resp.GetWarnings(), req.GetDryRun())
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "delete the objects this file, directory or - (stdin) lists")
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace of the objects (for files: of objects that give none)")
	f.BoolVar(&req.Force, "force", false, "delete even if the policies left fail the set-level checks")
	f.BoolVar(&req.DryRun, "dry-run", false, "check everything, delete nothing")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	return cmd
}

// refsOfFiles names the objects of files. They need not be valid, only
// decodable: deleting a bad object must be possible.
func refsOfFiles(files []string, namespace string, cmd *cobra.Command) ([]*policyapipb.ObjectRef, error) {
	srcs, err := readSources(files, cmd.InOrStdin())
	if err != nil {
		return nil, err
	}
	var refs []*policyapipb.ObjectRef
	for _, src := range srcs {
		objs, err := v1alpha1.Decode(src.GetData())
		if err != nil {
			var des v1alpha1.DecodeErrors
			if errors.As(err, &des) {
				de := des[0]
				return nil, Hint(fmt.Errorf("%s:%d (document %d): %w", src.GetName(), de.Line, de.Doc, de.Err),
					"fix the file, or delete by name: meridianctl delete KIND NAME")
			}
			return nil, err
		}
		for _, o := range objs {
			ns := o.GetNamespace()
			if ns == "" {
				ns = namespace
			}
			refs = append(refs, &policyapipb.ObjectRef{Kind: v1alpha1.KindOf(o), Namespace: ns, Name: o.GetName()})
		}
	}
	return refs, nil
}
