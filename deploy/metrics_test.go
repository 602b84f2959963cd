package deploy_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// metric is one Prometheus metric as the code declares it.
type metric struct {
	Name, Type, Help string
	Labels           []string
	Package          string // folder, relative to the repository
}

var optsTypes = map[string]string{"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram", "SummaryOpts": "summary"}

// codeMetrics finds every prometheus.*Opts literal in the repository's
// non-test Go files and evaluates its name (Namespace_Subsystem_Name from
// string constants), help, and labels (the []string or variadic labels of
// the call it is passed to, and ConstLabels). Reading the source rather than
// a registry finds every metric without starting every component.
func codeMetrics(t *testing.T) map[string]metric {
	t.Helper()
	out := map[string]metric{}
	pkgs := map[string][]*ast.File{}
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != ".." && (strings.HasPrefix(n, ".") || n == "tools" || n == "testdata" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, files := range pkgs {
		ev := newEvaluator(files)
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				for i, arg := range call.Args {
					lit, typ := optsLiteral(arg)
					if lit == nil {
						continue
					}
					m := ev.metric(lit, typ)
					if m.Name == "" {
						t.Errorf("%s: a %s whose name is not made of constants", fset.Position(lit.Pos()), typ)
						continue
					}
					for _, a := range call.Args[i+1:] {
						m.Labels = append(m.Labels, ev.strings(a)...)
					}
					slices.Sort(m.Labels)
					m.Package = strings.TrimPrefix(filepath.ToSlash(dir), "../")
					out[m.Name] = m
				}
				return true
			})
		}
	}
	return out
}

func optsLiteral(e ast.Expr) (*ast.CompositeLit, string) {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil, ""
	}
	sel, ok := lit.Type.(*ast.SelectorExpr)
	if !ok {
		return nil, ""
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
		return nil, ""
	}
	typ, ok := optsTypes[sel.Sel.Name]
	if !ok {
		return nil, ""
	}
	return lit, typ
}

// evaluator resolves string constants and []string variables of one
// package, wherever they are declared (package level or in a function).
type evaluator struct {
	consts map[string]string
	vars   map[string]ast.Expr
}

func newEvaluator(files []*ast.File) *evaluator {
	ev := &evaluator{consts: map[string]string{}, vars: map[string]ast.Expr{}}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				if s, ok := basicString(vs.Values[i]); ok {
					ev.consts[name.Name] = s
				} else {
					ev.vars[name.Name] = vs.Values[i]
				}
			}
			return true
		})
	}
	return ev
}

func basicString(e ast.Expr) (string, bool) {
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(b.Value)
	return s, err == nil
}

func (ev *evaluator) str(e ast.Expr) string {
	if s, ok := basicString(e); ok {
		return s
	}
	if id, ok := e.(*ast.Ident); ok {
		return ev.consts[id.Name]
	}
	return ""
}

// strings evaluates label lists: string literals, []string{...},
// prometheus.Labels{...} keys, variables holding them, and append(...).
func (ev *evaluator) strings(e ast.Expr) []string {
	switch x := e.(type) {
	case *ast.BasicLit:
		s, _ := basicString(x)
		return []string{s}
	case *ast.Ident:
		if s, ok := ev.consts[x.Name]; ok {
			return []string{s}
		}
		if v, ok := ev.vars[x.Name]; ok {
			return ev.strings(v)
		}
	case *ast.CompositeLit:
		var out []string
		for _, el := range x.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				el = kv.Key
			}
			out = append(out, ev.strings(el)...)
		}
		return out
	case *ast.CallExpr:
		if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "append" {
			var out []string
			for _, a := range x.Args {
				out = append(out, ev.strings(a)...)
			}
			return out
		}
	}
	return nil
}

func (ev *evaluator) metric(lit *ast.CompositeLit, typ string) metric {
	var ns, sub, name string
	m := metric{Type: typ}
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		switch kv.Key.(*ast.Ident).Name {
		case "Namespace":
			ns = ev.str(kv.Value)
		case "Subsystem":
			sub = ev.str(kv.Value)
		case "Name":
			name = ev.str(kv.Value)
		case "Help":
			m.Help = ev.str(kv.Value)
		case "ConstLabels":
			m.Labels = append(m.Labels, ev.strings(kv.Value)...)
		}
	}
	if name == "" {
		return m
	}
	var parts []string
	for _, p := range []string{ns, sub, name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	m.Name = strings.Join(parts, "_")
	return m
}

const metricsDoc = "../docs/metrics.md"

// docRow matches a metric's row in docs/metrics.md: | `name` | type | labels | meaning |
var docRow = regexp.MustCompile("(?m)^\\| `([a-z_:]+)` \\| (\\w+) \\| ([^|]*) \\|")

// TestMetricsDoc: every metric in the code is in docs/metrics.md with its
// type and labels. -update regenerates the tables from the code.
func TestMetricsDoc(t *testing.T) {
	metrics := codeMetrics(t)
	if len(metrics) < 10 {
		t.Fatalf("found only %d metrics in the code; the scanner is broken", len(metrics))
	}
	if *update {
		if err := os.WriteFile(metricsDoc, renderMetricsDoc(metrics), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	doc, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][2]string{}
	for _, m := range docRow.FindAllStringSubmatch(string(doc), -1) {
		rows[m[1]] = [2]string{m[2], strings.TrimSpace(m[3])}
	}
	for _, m := range metrics {
		row, ok := rows[m.Name]
		switch {
		case !ok:
			t.Errorf("%s (%s) is not in docs/metrics.md", m.Name, m.Package)
		case row[0] != m.Type || row[1] != labelCell(m.Labels):
			t.Errorf("docs/metrics.md says %s is a %s with labels %q; the code: %s with %q", m.Name, row[0], row[1], m.Type, labelCell(m.Labels))
		}
	}
	if t.Failed() {
		t.Log("regenerate: go test ./deploy -run TestMetricsDoc -update")
	}
}

func labelCell(labels []string) string {
	if len(labels) == 0 {
		return "—"
	}
	return "`" + strings.Join(labels, "`, `") + "`"
}

// components names the packages' sections in docs/metrics.md.
var components = []struct{ prefix, title string }{
	{"discovery/", "Discovery"},
	{"federation", "Federation"},
	{"xds/", "xDS server"},
	{"policyapi", "Policies and drills"},
	{"trust/", "Trust (CA, SVIDs, Workload API, mTLS)"},
	{"inject", "Sidecar injection"},
	{"sidecar/", "meridian-proxy (sidecars and gateways)"},
}

func renderMetricsDoc(metrics map[string]metric) []byte {
	var b strings.Builder
	b.WriteString(`# Metrics

Every Prometheus metric Meridian exports, generated from the code by
` + "`go test ./deploy -run TestMetricsDoc -update`" + ` (the test fails when a metric in the code is
missing here, or its type or labels differ). Meanings are the metrics' own help texts.

- **meridiand** serves its metrics on the admin port (` + "`:15014/metrics`" + `): discovery, federation,
  xDS, policies, trust and injection.
- **meridian-proxy** (sidecars and gateways) serves its own on ` + "`:15090/metrics`" + `. Its request and TCP
  metrics follow Istio's standard metrics (` + "`meridian_requests_total` ~ `istio_requests_total`" + `), so
  dashboards and alerts written for Istio translate label for label.
- Both also export the Go runtime and process collectors (` + "`go_*`, `process_*`" + `).

Scrape configuration: ` + "`deploy/observability/prometheus.yaml`" + `; dashboard: ` + "`deploy/observability/grafana-dashboard.json`" + `.
`)
	byComponent := map[string][]metric{}
	for _, m := range metrics {
		title := "Other"
		for _, c := range components {
			if strings.HasPrefix(m.Package, c.prefix) {
				title = c.title
				break
			}
		}
		byComponent[title] = append(byComponent[title], m)
	}
	titles := []string{}
	for _, c := range components {
		titles = append(titles, c.title)
	}
	for _, title := range append(titles, "Other") {
		ms := byComponent[title]
		if len(ms) == 0 {
			continue
		}
		slices.SortFunc(ms, func(a, b metric) int { return strings.Compare(a.Name, b.Name) })
		fmt.Fprintf(&b, "\n## %s\n\n| metric | type | labels | meaning |\n|---|---|---|---|\n", title)
		for _, m := range ms {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s (`%s`) |\n", m.Name, m.Type, labelCell(m.Labels), strings.ReplaceAll(m.Help, "|", "\\|"), m.Package)
		}
	}
	return []byte(b.String())
}
