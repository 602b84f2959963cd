package v1alpha1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// DecodeError is one problem with one document of a YAML or JSON stream.
type DecodeError struct {
	// Doc is the document's position in the stream, from 1.
	Doc int
	// Line is the line in the stream the problem is on, from 1; 0 when
	// unknown.
	Line int
	// Object is "Kind namespace/name" when the document got that far.
	Object string
	Err    error
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "document %d", e.Doc)
	if e.Object != "" {
		fmt.Fprintf(&b, " (%s)", e.Object)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ", line %d", e.Line)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// DecodeErrors are every problem of a stream, in order.
type DecodeErrors []*DecodeError

func (es DecodeErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return "v1alpha1: " + strings.Join(lines, "\n")
}

// LoadOptions tune Load.
type LoadOptions struct {
	// DefaultNamespace is given to objects without one; default "default",
	// as kubectl does.
	DefaultNamespace string
}

// Decode reads a stream of YAML documents (separated by "---") or a JSON
// object, strictly: unknown and duplicate fields, an unknown kind or a
// wrong apiVersion are errors. Empty documents are skipped. On any error
// it returns no objects and a DecodeErrors naming every problem with its
// document and, where known, its line. It does not validate.
func Decode(data []byte) ([]Object, error) {
	objs, _, errs := decode(data)
	if len(errs) > 0 {
		return nil, errs
	}
	return objs, nil
}

// Load decodes like Decode, fills in the namespace, and validates every
// object; validation errors also carry the line of the field.
func Load(data []byte, opts LoadOptions) ([]Object, error) {
	if opts.DefaultNamespace == "" {
		opts.DefaultNamespace = "default"
	}
	objs, docs, errs := decode(data)
	if len(errs) > 0 {
		return nil, errs
	}
	for i, o := range objs {
		if o.GetNamespace() == "" {
			o.SetNamespace(opts.DefaultNamespace)
		}
		for _, fe := range o.Validate() {
			errs = append(errs, &DecodeError{Doc: docs[i].index, Line: docs[i].line(fe.Field), Object: Describe(o), Err: fe})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return objs, nil
}

// Describe names an object as "Kind namespace/name".
func Describe(o Object) string { return KindOf(o) + " " + o.GetNamespace() + "/" + o.GetName() }

// KindOf returns an object's kind: its TypeMeta's, or its Go type's name
// when TypeMeta is empty (objects built in code).
func KindOf(o Object) string {
	if k := o.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	return reflect.TypeOf(o).Elem().Name()
}

// document is one document of a stream and where it starts.
type document struct {
	index     int // from 1
	startLine int // line of its first line in the stream, from 1
	text      []byte
	node      *yaml3.Node // parsed lazily, for line look-ups
}

func decode(data []byte) ([]Object, []*document, DecodeErrors) {
	var (
		objs []Object
		docs []*document
		errs DecodeErrors
	)
	for _, d := range splitDocuments(data) {
		o, err := d.decode()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if o != nil {
			objs = append(objs, o)
			docs = append(docs, d)
		}
	}
	return objs, docs, errs
}

var separator = regexp.MustCompile(`^---(\s.*)?$`)

// splitDocuments splits at "---" lines, keeping each document's first line
// number so that errors point into the whole stream.
func splitDocuments(data []byte) []*document {
	var docs []*document
	cur := &document{index: 1, startLine: 1}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, l := range lines {
		if separator.Match(bytes.TrimRight(l, "\r\n")) {
			docs = append(docs, cur)
			cur = &document{index: cur.index + 1, startLine: i + 2}
			continue
		}
		cur.text = append(cur.text, l...)
	}
	docs = append(docs, cur)
	// Renumber without the empty documents ("---" at the top is common).
	var out []*document
	for _, d := range docs {
		if !isEmptyDocument(d.text) {
			d.index = len(out) + 1
			out = append(out, d)
		}
	}
	return out
}

func isEmptyDocument(b []byte) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' {
			return false
		}
	}
	return true
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func (d *document) decode() (Object, *DecodeError) {
	fail := func(line int, object string, err error) *DecodeError {
		return &DecodeError{Doc: d.index, Line: line, Object: object, Err: err}
	}
	js, err := yaml.YAMLToJSONStrict(d.text)
	if err != nil {
		line := 0
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			line = d.startLine + n - 1
		}
		return nil, fail(line, "", fmt.Errorf("not valid YAML: %w", err))
	}
	if !bytes.HasPrefix(bytes.TrimSpace(js), []byte("{")) {
		return nil, fail(d.startLine, "", errors.New("a document must be an object with apiVersion, kind, metadata and spec"))
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, fail(d.line("apiVersion"), "", fmt.Errorf("apiVersion and kind must be strings: %w", err))
	}
	if tm.APIVersion != APIVersion {
		return nil, fail(d.line("apiVersion"), "", field.NotSupported(field.NewPath("apiVersion"), tm.APIVersion, []string{APIVersion}))
	}
	k, ok := LookupKind(tm.Kind)
	if !ok {
		return nil, fail(d.line("kind"), "", field.NotSupported(field.NewPath("kind"), tm.Kind, kindNames()))
	}
	o := k.New()
	strict, err := kjson.UnmarshalStrict(js, o)
	if err != nil {
		var te *json.UnmarshalTypeError
		path := ""
		if errors.As(err, &te) {
			path = te.Field
		}
		return nil, fail(d.line(path), "", err)
	}
	if len(strict) > 0 {
		var first error
		line := 0
		for _, se := range strict {
			var fe kjson.FieldError
			if errors.As(se, &fe) && line == 0 {
				line = d.line(fe.FieldPath())
			}
			first = errors.Join(first, se)
		}
		return nil, fail(line, Describe(o), first)
	}
	return o, nil
}

// line finds the line of a field path ("spec.to[1].weight", as field.Path
// and the JSON decoder write them) in the document; 0 when not found.
func (d *document) line(path string) int {
	if d.node == nil {
		var n yaml3.Node
		if yaml3.Unmarshal(d.text, &n) != nil {
			return 0
		}
		d.node = &n
	}
	n := d.node
	if n.Kind == yaml3.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	best := n.Line
	for _, seg := range splitPath(path) {
		next := child(n, seg)
		if next == nil {
			break
		}
		n = next
		best = n.Line
	}
	if best == 0 {
		return 0
	}
	return d.startLine + best - 1
}

// splitPath turns "a.b[2].c[key.with.dots]" into a, b, 2, c, key.with.dots.
func splitPath(path string) []string {
	var out []string
	for path != "" {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return append(out, path[1:])
			}
			out = append(out, path[1:end])
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			out = append(out, path[:end])
			path = path[end:]
		}
	}
	return out
}

func child(n *yaml3.Node, seg string) *yaml3.Node {
	for n.Kind == yaml3.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg {
				// Report the key's line: for a block value, that is where the
				// reader looks.
				v := *n.Content[i+1]
				v.Line = n.Content[i].Line
				return &v
			}
		}
	case yaml3.SequenceNode:
		if i, err := strconv.Atoi(seg); err == nil {
			if i >= 0 && i < len(n.Content) {
				return n.Content[i]
			}
			return nil
		}
		// The JSON decoder's type errors name fields without list
		// indices: take the first element that has the field.
		for _, el := range n.Content {
			if c := child(el, seg); c != nil {
				return c
			}
		}
	}
	return nil
}
