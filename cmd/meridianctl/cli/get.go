package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
)

func newGetCommand(g *Globals) *cobra.Command {
	var namespace string
	var all bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Show policy objects (failover policies, residency rules, routes, ...)",
		Long: `Show the policy objects meridiand holds: the same in every cluster of the mesh.

KIND is a kind's name, plural, singular or short name, or "all":
  ` + kindList() + `.

-o yaml prints the objects as they can be applied again.`,
		Example: `  meridianctl get failoverpolicies -n shop
  meridianctl get rr -A
  meridianctl get fop web -n shop -o yaml
  meridianctl get all -A`,
		Args: cobra.RangeArgs(1, 2),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return kindCompletions(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := ""
			if args[0] != "all" {
				k, err := resolveKind(args[0])
				if err != nil {
					return err
				}
				kind = k.Name
			}
			if all && len(args) == 2 {
				return fmt.Errorf("--all-namespaces lists objects: give no NAME with it")
			}
			if kind == "" && len(args) == 2 {
				return fmt.Errorf("give a kind to get %q: \"all\" lists objects", args[1])
			}
			if all {
				namespace = ""
			}
			return withPolicyAPI(g, func(pc policyapipb.PolicyServiceClient, _ policyapipb.LocalityServiceClient) error {
				ctx, cancel := g.Request(cmd.Context())
				defer cancel()
				var objs []*policyapipb.Object
				if len(args) == 2 {
					o, err := pc.Get(ctx, &policyapipb.GetRequest{Ref: &policyapipb.ObjectRef{Kind: kind, Namespace: namespace, Name: args[1]}})
					if err != nil {
						return refusal(err, fmt.Sprintf("see 'meridianctl get %s -A'", strings.ToLower(kind)))
					}
					if g.Output != "table" {
						return g.printJSONOrYAML(o.GetManifest().AsMap())
					}
					objs = []*policyapipb.Object{o}
				} else {
					resp, err := pc.List(ctx, &policyapipb.ListRequest{Kind: kind, Namespace: namespace})
					if err != nil {
						return refusal(err, "")
					}
					objs = resp.GetObjects()
				}
				return printObjects(g, objs, namespace)
			})
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of the objects")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "objects of every namespace")
	return cmd
}

func kindCompletions() []string {
	out := []string{"all"}
	for _, k := range v1alpha1.Kinds() {
		out = append(out, k.Plural)
	}
	return out
}

// printObjects prints a list: a table, a YAML stream that apply reads
// back, or a JSON List as kubectl prints one.
func printObjects(g *Globals, objs []*policyapipb.Object, namespace string) error {
	switch g.Output {
	case "yaml":
		for i, o := range objs {
			b, err := yaml.Marshal(o.GetManifest().AsMap())
			if err != nil {
				return fmt.Errorf("encode the answer: %w", err)
			}
			if i > 0 {
				fmt.Fprintln(g.Out, "---")
			}
			if _, err := g.Out.Write(b); err != nil {
				return err
			}
		}
		return nil
	case "json":
		items := make([]any, len(objs))
		for i, o := range objs {
			items[i] = o.GetManifest().AsMap()
		}
		return g.printJSONOrYAML(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	}
	if len(objs) == 0 {
		where := "in namespace " + namespace
		if namespace == "" {
			where = "in any namespace"
		}
		fmt.Fprintln(g.Err, "No objects found "+where+".")
		return nil
	}
	t := tabwriter.NewWriter(g.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "KIND\tNAMESPACE\tNAME\tAGE\tSOURCE\tWRITTEN BY")
	for _, o := range objs {
		m := o.GetManifest().AsMap()
		md, _ := m["metadata"].(map[string]any)
		fmt.Fprintf(t, "%v\t%v\t%v\t%s\t%s\t%s\n", m["kind"], md["namespace"], md["name"],
			age(time.Since(o.GetUpdated().AsTime())), o.GetSource(), o.GetOrigin())
	}
	return t.Flush()
}

// age prints a duration as kubectl does: 45s, 12m, 3h, 5d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
