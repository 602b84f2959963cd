package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/policyapi"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
	"github.com/meridian-mesh/meridian/registry"
)

func newExplainCommand(g *Globals) *cobra.Command {
	var from, namespace string
	cmd := &cobra.Command{
		Use:   "explain SERVICE --from CLUSTER|REGION[/ZONE[/SUBZONE]]",
		Short: "Show where a client's requests for a service go, and which policy decided it",
		Long: `Show the priority table a client gets for a service, as meridiand pushes it
over xDS: each priority level, its localities with weights, endpoint counts
and health, the load Envoy gives each level, and the share of requests each
locality receives. Every decision names the rule, and the policy and field
that made it; endpoints a residency rule keeps away are listed too.

SERVICE is NAME.NAMESPACE, or NAME with --namespace.`,
		Example: `  meridianctl explain web.shop --from eks-use1
  meridianctl explain customer-records -n payments --from us-east-1/use1-az1
  meridianctl explain web.shop --from onprem-east -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			service := args[0]
			if !strings.Contains(service, ".") {
				service += "." + namespace
			}
			return withPolicyAPI(g, func(_ policyapipb.PolicyServiceClient, lc policyapipb.LocalityServiceClient) error {
				ctx, cancel := g.Request(cmd.Context())
				defer cancel()
				resp, err := lc.Explain(ctx, &policyapipb.ExplainRequest{Service: service, From: from})
				if err != nil {
					return refusal(err, "see the services with 'meridianctl get' or meridiand's /debug/registry, the clusters and regions in the message")
				}
				if g.Output != "table" {
					return g.Print(resp.GetExplanation(), nil)
				}
				var ex policyapi.Explanation
				b, _ := resp.GetExplanation().MarshalJSON()
				if err := json.Unmarshal(b, &ex); err != nil {
					return fmt.Errorf("decode the answer: %w", err)
				}
				return printExplanation(g.Out, ex)
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the client: a cluster, or a locality REGION[/ZONE[/SUBZONE]]")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of SERVICE when it gives none")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

func printExplanation(w io.Writer, ex policyapi.Explanation) error {
	fmt.Fprintf(w, "Service %s for a client in %s", ex.Service, orAll(ex.Client.Locality.String()))
	if ex.Client.Cluster != "" {
		fmt.Fprintf(w, " (cluster %s)", ex.Client.Cluster)
	}
	fmt.Fprintln(w)
	if ex.Failover != "" {
		fmt.Fprintf(w, "Failover policy: %s\n", ex.Failover)
	} else {
		fmt.Fprintln(w, "Failover policy: none (Meridian's default order: own zone, own region, other regions)")
	}
	if len(ex.Drains) > 0 {
		fmt.Fprintf(w, "Live drills in force: %s\n", targets(ex.Drains))
	}
	fmt.Fprintln(w)
	share := map[string]float64{}
	failing := map[string]bool{}
	for _, s := range ex.Shares {
		k := fmt.Sprintf("%d %s", s.Priority, s.Locality)
		share[k] += s.Percent
		failing[k] = failing[k] || s.Failing
	}
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(t, "PRIORITY\tLOAD\tLOCALITY\tWEIGHT\tENDPOINTS\tSERVING\tSHARE\tWHY")
	if len(ex.Levels) == 0 {
		fmt.Fprintln(t, "-\t-\t(no endpoint: every request fails)\t\t\t\t\t")
	}
	for p, l := range ex.Levels {
		for i, le := range l.Localities {
			prio, load, why := "", "", ""
			if i == 0 {
				prio, why = fmt.Sprint(p), reason(l.Reason)
				if p < len(ex.Load.Healthy) {
					load = fmt.Sprintf("%d%%", ex.Load.Total(p))
					if ex.Load.Panic[p] {
						load += " (panic)"
					}
				}
			}
			if le.WeightReason != nil && le.WeightReason.Policy != "" {
				why = strings.TrimPrefix(why+"; weight: "+reason(*le.WeightReason), "; ")
			}
			k := fmt.Sprintf("%d %s", p, le.Locality)
			sh := "-"
			if v, ok := share[k]; ok {
				sh = fmt.Sprintf("%.1f%%", v)
				if failing[k] {
					sh += " failing"
				}
			}
			fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", prio, load, le.Locality, le.Weight, len(le.Endpoints), serving(le), sh, why)
		}
	}
	if err := t.Flush(); err != nil {
		return err
	}
	printBlocked(w, "Kept away by residency", ex.Blocked)
	printBlocked(w, "Audit only (enforcement would keep away)", ex.Audited)
	od := ex.OutlierDetection.WithDefaults()
	fmt.Fprintf(w, "Outlier detection: eject after %d consecutive 5xx or %d gateway errors, every %v, for %v, at most %d%% — %s\n",
		*od.Consecutive5xxErrors, *od.ConsecutiveGatewayErrors, od.Interval.Duration, od.BaseEjectionTime.Duration, *od.MaxEjectionPercent,
		reason(ex.OutlierDetectionReason))
	return nil
}

// serving counts serving endpoints, and says why the others are not.
func serving(le locality.LocalityEndpoints) string {
	why := map[string]int{}
	for _, e := range le.Endpoints {
		if e.Health.Serving() {
			continue
		}
		r := e.Health.String()
		if e.HealthReason != nil {
			r += ": " + e.HealthReason.Rule
		}
		why[r]++
	}
	out := fmt.Sprint(le.Serving())
	var parts []string
	for r, n := range why {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	if len(parts) > 0 {
		out += " (" + strings.Join(parts, ", ") + ")"
	}
	return out
}

func printBlocked(w io.Writer, title string, bs []locality.Blocked) {
	if len(bs) == 0 {
		return
	}
	byRule := map[string][]registry.Locality{}
	var rules []string
	for _, b := range bs {
		r := reason(b.Rule)
		if _, ok := byRule[r]; !ok {
			rules = append(rules, r)
		}
		byRule[r] = append(byRule[r], b.Locality)
	}
	for _, r := range rules {
		regions := map[string]bool{}
		var names []string
		for _, l := range byRule[r] {
			if !regions[l.Region] {
				regions[l.Region] = true
				names = append(names, l.Region)
			}
		}
		sort.Strings(names)
		fmt.Fprintf(w, "%s: %d endpoints in %s — %s\n", title, len(byRule[r]), strings.Join(names, ", "), r)
	}
}

// reason renders a decision with the policy and field that made it.
func reason(r locality.Reason) string {
	if r.Policy == "" {
		return r.Rule
	}
	return fmt.Sprintf("%s [%s %s]", r.Rule, r.Policy, r.Field)
}

func targets(ts []locality.Target) string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return strings.Join(out, ", ")
}

func orAll(s string) string {
	if s == "" {
		return "any locality"
	}
	return s
}
