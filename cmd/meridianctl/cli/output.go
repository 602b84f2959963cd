package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Print writes an answer from meridiand in the --output format: json and
// yaml print the message as the API defines it (protojson field names),
// table calls table with a tab-aligned writer.
func (g *Globals) Print(m proto.Message, table func(w *tabwriter.Writer)) error {
	switch g.Output {
	case "table":
		w := tabwriter.NewWriter(g.Out, 0, 4, 2, ' ', 0)
		table(w)
		return w.Flush()
	default:
		raw, err := protojson.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode the answer: %w", err)
		}
		// protojson varies its whitespace on purpose; scripts and people
		// reading the output want it stable.
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("encode the answer: %w", err)
		}
		b := buf.Bytes()
		if g.Output == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return fmt.Errorf("encode the answer: %w", err)
			}
		}
		if _, err := g.Out.Write(b); err != nil {
			return err
		}
		if g.Output == "json" {
			_, err = fmt.Fprintln(g.Out)
		}
		return err
	}
}
