package v1alpha1

import (
	"bytes"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The CRD manifests in deploy/crds are generated from the Go types by this
// test: `go test ./api/... -run TestCRDs -update` rewrites them, and without
// -update the test fails when they drifted.

var update = flag.Bool("update", false, "rewrite deploy/crds from the Go types")

const crdDir = "../../deploy/crds"

type crd struct {
	APIVersion string  `json:"apiVersion"`
	Kind       string  `json:"kind"`
	Metadata   crdMeta `json:"metadata"`
	Spec       crdSpec `json:"spec"`
}

type crdMeta struct {
	Name string `json:"name"`
}

type crdSpec struct {
	Group    string       `json:"group"`
	Names    crdNames     `json:"names"`
	Scope    string       `json:"scope"`
	Versions []crdVersion `json:"versions"`
}

type crdNames struct {
	Kind       string   `json:"kind"`
	ListKind   string   `json:"listKind"`
	Plural     string   `json:"plural"`
	Singular   string   `json:"singular"`
	ShortNames []string `json:"shortNames,omitempty"`
	Categories []string `json:"categories"`
}

type crdVersion struct {
	Name         string `json:"name"`
	Served       bool   `json:"served"`
	Storage      bool   `json:"storage"`
	Subresources struct {
		Status struct{} `json:"status"`
	} `json:"subresources"`
	Schema struct {
		OpenAPIV3Schema *schemaProps `json:"openAPIV3Schema"`
	} `json:"schema"`
}

// schemaProps is the part of apiextensions.k8s.io/v1 JSONSchemaProps the
// generator writes (the apiextensions module would drag in a newer etcd).
type schemaProps struct {
	Type                 string                  `json:"type,omitempty"`
	Format               string                  `json:"format,omitempty"`
	Description          string                  `json:"description,omitempty"`
	Enum                 []string                `json:"enum,omitempty"`
	Properties           map[string]*schemaProps `json:"properties,omitempty"`
	Required             []string                `json:"required,omitempty"`
	Items                *schemaProps            `json:"items,omitempty"`
	AdditionalProperties *schemaProps            `json:"additionalProperties,omitempty"`
}

func TestCRDs(t *testing.T) {
	docs := fieldDocs(t)
	want := map[string]bool{}
	for _, k := range Kinds() {
		name := Group + "_" + k.Plural + ".yaml"
		want[name] = true
		c := generateCRD(k, docs)
		checkStructural(t, k.Name, "", c.Spec.Versions[0].Schema.OpenAPIV3Schema)
		b, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		b = append([]byte("# Generated from api/v1alpha1 by `go test ./api/... -run TestCRDs -update`. Do not edit.\n"), b...)
		path := filepath.Join(crdDir, name)
		if *update {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s is not up to date with the Go types (%v): run go test ./api/... -run TestCRDs -update", path, err)
		}
	}
	entries, err := os.ReadDir(crdDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), Group+"_") && !want[e.Name()] {
			if *update {
				_ = os.Remove(filepath.Join(crdDir, e.Name()))
				continue
			}
			t.Errorf("%s has no kind any more: run go test ./api/... -run TestCRDs -update", e.Name())
		}
	}
}

func generateCRD(k Kind, docs map[string]string) crd {
	c := crd{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"}
	c.Metadata.Name = k.Plural + "." + Group
	c.Spec = crdSpec{
		Group: Group,
		Names: crdNames{Kind: k.Name, ListKind: k.Name + "List", Plural: k.Plural, Singular: strings.ToLower(k.Name),
			ShortNames: k.ShortNames, Categories: []string{"meridian"}},
		Scope: "Namespaced",
	}
	v := crdVersion{Name: Version, Served: true, Storage: true}
	g := &schemaGen{docs: docs}
	v.Schema.OpenAPIV3Schema = g.schema(k.Type, "")
	v.Schema.OpenAPIV3Schema.Description = docs[k.Name]
	c.Spec.Versions = []crdVersion{v}
	return c
}

type schemaGen struct{ docs map[string]string }

var (
	enumType     = reflect.TypeFor[enum]()
	durationType = reflect.TypeFor[metav1.Duration]()
	timeType     = reflect.TypeFor[metav1.Time]()
	metaType     = reflect.TypeFor[metav1.ObjectMeta]()
)

func (g *schemaGen) schema(t reflect.Type, doc string) *schemaProps {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := &schemaProps{Description: doc}
	switch {
	case t == durationType:
		s.Type = "string"
		s.Description = strings.TrimSpace(doc + " A duration such as 500ms, 10s or 1m30s.")
		return s
	case t == timeType:
		s.Type, s.Format = "string", "date-time"
		return s
	case t == metaType:
		s.Type = "object"
		return s
	case t.Implements(enumType):
		s.Type = "string"
		s.Enum = reflect.Zero(t).Interface().(enum).Values()
		return s
	}
	switch t.Kind() {
	case reflect.String:
		s.Type = "string"
	case reflect.Bool:
		s.Type = "boolean"
	case reflect.Int32, reflect.Uint32, reflect.Int16, reflect.Uint16:
		s.Type, s.Format = "integer", "int32"
	case reflect.Int, reflect.Int64, reflect.Uint64:
		s.Type, s.Format = "integer", "int64"
	case reflect.Float64, reflect.Float32:
		s.Type, s.Format = "number", "double"
	case reflect.Slice:
		s.Type = "array"
		s.Items = g.schema(t.Elem(), "")
	case reflect.Map:
		s.Type = "object"
		s.AdditionalProperties = g.schema(t.Elem(), "")
	case reflect.Struct:
		s.Type = "object"
		s.Properties = map[string]*schemaProps{}
		g.fields(t, s)
		if s.Description == "" {
			s.Description = g.docs[t.Name()]
		}
	default:
		panic("crd: no schema for " + t.String())
	}
	return s
}

// fields adds a struct's JSON fields to s, flattening inline ones.
func (g *schemaGen) fields(t reflect.Type, s *schemaProps) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") || (f.Anonymous && name == "") {
			g.fields(f.Type, s)
			continue
		}
		if name == "" {
			name = f.Name
		}
		doc := g.docs[t.Name()+"."+f.Name]
		s.Properties[name] = g.schema(f.Type, doc)
		if !strings.Contains(opts, "omitempty") {
			s.Required = append(s.Required, name)
		}
	}
	slices.Sort(s.Required)
}

// fieldDocs reads the doc comments of the package's types and fields:
// "Type" and "Type.Field" → text.
func fieldDocs(t *testing.T) map[string]string {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	docs := map[string]string{}
	text := func(cg *ast.CommentGroup) string {
		if cg == nil {
			return ""
		}
		return strings.Join(strings.Fields(cg.Text()), " ")
	}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				doc := ts.Doc
				if doc == nil {
					doc = gd.Doc
				}
				docs[ts.Name.Name] = text(doc)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				for _, fl := range st.Fields.List {
					for _, n := range fl.Names {
						docs[ts.Name.Name+"."+n.Name] = text(fl.Doc)
					}
				}
			}
		}
	}
	return docs
}

// checkStructural applies the rules of a structural schema that the
// generator could break: every node has a type, objects have properties or
// additionalProperties but not both, arrays have items.
func checkStructural(t *testing.T, kind, path string, s *schemaProps) {
	t.Helper()
	if s.Type == "" {
		t.Errorf("%s %s: no type", kind, path)
	}
	if s.Properties != nil && s.AdditionalProperties != nil {
		t.Errorf("%s %s: both properties and additionalProperties", kind, path)
	}
	if s.Type == "array" && s.Items == nil {
		t.Errorf("%s %s: array without items", kind, path)
	}
	for _, r := range s.Required {
		if s.Properties[r] == nil {
			t.Errorf("%s %s: required %s is not a property", kind, path, r)
		}
	}
	for name, p := range s.Properties {
		checkStructural(t, kind, path+"."+name, p)
	}
	if s.Items != nil {
		checkStructural(t, kind, path+"[]", s.Items)
	}
	if s.AdditionalProperties != nil {
		checkStructural(t, kind, path+"{}", s.AdditionalProperties)
	}
}
