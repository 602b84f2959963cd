package fieldrules

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/envoyproxy/protoc-gen-validate/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// maxReported bounds the violations an error lists; the rest are counted.
const maxReported = 3

// Check returns nil when m satisfies every rule of its type and of the
// messages it contains; otherwise an error naming the first violations by
// field path (`virtual_hosts[0].domains: value must contain at least 1
// item(s)`), as the generated ValidateAll would have found them.
func Check(m proto.Message) error {
	c := checker{}
	c.message(m.ProtoReflect())
	if c.total == 0 {
		return nil
	}
	msg := strings.Join(c.reported, "; ")
	if c.total > len(c.reported) {
		msg += fmt.Sprintf("; and %d more", c.total-len(c.reported))
	}
	return errors.New(msg)
}

type checker struct {
	reported []string
	total    int
	// path is where the walk is; it becomes a string only for a failure.
	path []segment
}

// segment is a field name, or a list index or map key under it.
type segment struct {
	name  protoreflect.Name
	index string
}

func (c *checker) push(name protoreflect.Name) { c.path = append(c.path, segment{name: name}) }
func (c *checker) pushIndex(i string)          { c.path = append(c.path, segment{index: i}) }
func (c *checker) pop()                        { c.path = c.path[:len(c.path)-1] }

func (c *checker) fail(format string, args ...any) {
	c.total++
	if len(c.reported) >= maxReported {
		return
	}
	var b strings.Builder
	for _, s := range c.path {
		switch {
		case s.index != "":
			b.WriteString("[" + s.index + "]")
		case b.Len() > 0:
			b.WriteString("." + string(s.name))
		default:
			b.WriteString(string(s.name))
		}
	}
	c.reported = append(c.reported, b.String()+": "+fmt.Sprintf(format, args...))
}

// plan is what one message type asks: its fields with rules or with
// messages inside, and its oneofs.
type plan struct {
	fields []fieldPlan // outside real oneofs
	oneofs []oneofPlan
}

type fieldPlan struct {
	fd    protoreflect.FieldDescriptor
	rules *validate.FieldRules // nil: none, but messages inside are checked
	// onlyIfSet: a proto3 optional field, checked only when present.
	onlyIfSet bool
}

type oneofPlan struct {
	od       protoreflect.OneofDescriptor
	required bool
	fields   map[protoreflect.FieldNumber]fieldPlan
}

// plans caches a plan per message type, keyed by its descriptor (one
// value per type, cheaper to hash than its name).
var plans sync.Map // protoreflect.MessageDescriptor → *plan

func planFor(md protoreflect.MessageDescriptor) *plan {
	if p, ok := plans.Load(md); ok {
		return p.(*plan)
	}
	p := &plan{}
	if skipped(md) {
		plans.Store(md, p)
		return p // the generated code checks nothing here, nor below
	}
	oneofs := map[protoreflect.FullName]*oneofPlan{}
	for i := range md.Oneofs().Len() {
		od := md.Oneofs().Get(i)
		if od.IsSynthetic() {
			continue
		}
		op := &oneofPlan{od: od, fields: map[protoreflect.FieldNumber]fieldPlan{}}
		if oo, ok := od.Options().(*descriptorpb.OneofOptions); ok && oo != nil {
			op.required = proto.GetExtension(oo, validate.E_Required).(bool)
		}
		oneofs[od.FullName()] = op
	}
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		fp := fieldPlan{fd: fd, onlyIfSet: fd.HasOptionalKeyword()}
		if fo, ok := fd.Options().(*descriptorpb.FieldOptions); ok && fo != nil && proto.HasExtension(fo, validate.E_Rules) {
			fp.rules = proto.GetExtension(fo, validate.E_Rules).(*validate.FieldRules)
		}
		inner := fd.Message()
		if fd.IsMap() {
			inner = fd.MapValue().Message()
		}
		// Fields holding messages are kept even when their types carry no
		// rules (only set ones are entered): finding out would decode the
		// options of every type the schema can reach, most never sent.
		if fp.rules == nil && inner == nil {
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			oneofs[od.FullName()].fields[fd.Number()] = fp
			continue
		}
		p.fields = append(p.fields, fp)
	}
	for i := range md.Oneofs().Len() {
		if op := oneofs[md.Oneofs().Get(i).FullName()]; op != nil && (op.required || len(op.fields) > 0) {
			p.oneofs = append(p.oneofs, *op)
		}
	}
	actual, _ := plans.LoadOrStore(md, p)
	return actual.(*plan)
}

// skipped reports a message type whose rules the generated code never
// checks.
func skipped(md protoreflect.MessageDescriptor) bool {
	mo, ok := md.Options().(*descriptorpb.MessageOptions)
	return ok && mo != nil && (proto.GetExtension(mo, validate.E_Disabled).(bool) || proto.GetExtension(mo, validate.E_Ignored).(bool))
}

func (c *checker) message(m protoreflect.Message) {
	p := planFor(m.Descriptor())
	for _, f := range p.fields {
		if f.onlyIfSet && !m.Has(f.fd) {
			continue
		}
		c.field(m, f)
	}
	for _, o := range p.oneofs {
		set := m.WhichOneof(o.od)
		if set == nil {
			if o.required {
				c.push(o.od.Name())
				c.fail("value is required")
				c.pop()
			}
			continue
		}
		if f, ok := o.fields[set.Number()]; ok {
			c.field(m, f)
		}
	}
}

func (c *checker) field(m protoreflect.Message, f fieldPlan) {
	c.push(f.fd.Name())
	defer c.pop()
	switch {
	case f.fd.IsList():
		c.list(f.fd, m.Get(f.fd).List(), f.rules)
	case f.fd.IsMap():
		c.mapField(f.fd, m.Get(f.fd).Map(), f.rules)
	default:
		c.value(f.fd.Kind(), f.fd.Enum(), m.Has(f.fd), m.Get(f.fd), f.rules)
	}
}

// value checks one value (a field, a list item, a map key or value)
// against its rules; messages inside are checked unless the rules skip
// them.
func (c *checker) value(kind protoreflect.Kind, enum protoreflect.EnumDescriptor, set bool, v protoreflect.Value, r *validate.FieldRules) {
	if kind == protoreflect.MessageKind || kind == protoreflect.GroupKind {
		c.messageValue(set, v, r)
		return
	}
	switch t := r.GetType().(type) {
	case nil:
	case *validate.FieldRules_String_:
		c.str(v.String(), t.String_)
	case *validate.FieldRules_Bytes:
		c.bytes(v.Bytes(), t.Bytes)
	case *validate.FieldRules_Bool:
		if t.Bool.Const != nil && v.Bool() != t.Bool.GetConst() {
			c.fail("value must equal %v", t.Bool.GetConst())
		}
	case *validate.FieldRules_Enum:
		c.enum(enum, v.Enum(), t.Enum)
	default:
		if rm := numericRules(r); rm != nil {
			c.number(v, rm)
		}
	}
}

// messageValue checks a message-typed value: required, the rules of
// well-known types (Duration, Any, the scalar wrappers), and otherwise the
// message's own rules.
func (c *checker) messageValue(set bool, v protoreflect.Value, r *validate.FieldRules) {
	// Which "required" counts follows the generated code: the type rule's
	// own for Duration, Any and Timestamp, the message rule's otherwise.
	required := r.GetMessage().GetRequired()
	switch t := r.GetType().(type) {
	case *validate.FieldRules_Duration:
		required = t.Duration.GetRequired()
	case *validate.FieldRules_Any:
		required = t.Any.GetRequired()
	case *validate.FieldRules_Timestamp:
		required = t.Timestamp.GetRequired()
	}
	if !set {
		if required {
			c.fail("value is required")
		}
		return
	}
	m := v.Message()
	switch t := r.GetType().(type) {
	case *validate.FieldRules_Duration:
		c.duration(m, t.Duration)
		return
	case *validate.FieldRules_Any:
		// Envoy puts any rules on messages that are not Anys too (only
		// required then, and no look inside, as in the generated code).
		var url string
		if fd := m.Descriptor().Fields().ByName("type_url"); fd != nil {
			url = m.Get(fd).String()
		}
		if len(t.Any.In) > 0 && !contains(t.Any.In, url) {
			c.fail("type URL must be in list %v", t.Any.In)
		} else if len(t.Any.In) == 0 && len(t.Any.NotIn) > 0 && contains(t.Any.NotIn, url) {
			c.fail("type URL must not be in list %v", t.Any.NotIn)
		}
		return
	case *validate.FieldRules_Timestamp:
		return // not used by the API the proxy reads (TestEveryRuleKindIsImplemented)
	case nil:
		if !r.GetMessage().GetSkip() {
			c.message(m)
		}
		return
	}
	// A scalar rule on a message is a wrapper (google.protobuf.UInt32Value
	// and kin): it applies to the wrapped value.
	inner := m.Descriptor().Fields().ByName("value")
	if inner == nil {
		return
	}
	c.value(inner.Kind(), inner.Enum(), true, m.Get(inner), r)
}

func (c *checker) list(fd protoreflect.FieldDescriptor, l protoreflect.List, r *validate.FieldRules) {
	rr := r.GetRepeated()
	if rr == nil {
		rr = &validate.RepeatedRules{}
	}
	if rr.GetIgnoreEmpty() && l.Len() == 0 {
		return
	}
	n := uint64(l.Len())
	c.count(n, rr.MinItems, rr.MaxItems, "item(s)", "items")
	if !rr.GetUnique() && rr.GetItems() == nil && fd.Message() == nil {
		return
	}
	seen := map[any]bool{}
	for i := range l.Len() {
		c.pushIndex(strconv.Itoa(i))
		v := l.Get(i)
		if rr.GetUnique() {
			k := v.Interface()
			if b, ok := k.([]byte); ok {
				k = string(b)
			}
			if seen[k] {
				c.fail("repeated value must contain unique items")
			}
			seen[k] = true
		}
		c.value(fd.Kind(), fd.Enum(), true, v, rr.GetItems())
		c.pop()
	}
}

func (c *checker) mapField(fd protoreflect.FieldDescriptor, m protoreflect.Map, r *validate.FieldRules) {
	mr := r.GetMap()
	if mr == nil {
		mr = &validate.MapRules{}
	}
	if mr.GetIgnoreEmpty() && m.Len() == 0 {
		return
	}
	c.count(uint64(m.Len()), mr.MinPairs, mr.MaxPairs, "pair(s)", "pairs")
	kd, vd := fd.MapKey(), fd.MapValue()
	m.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		c.pushIndex(fmt.Sprint(k.Interface()))
		defer c.pop()
		if mr.GetNoSparse() && vd.Message() != nil && !v.Message().IsValid() {
			c.fail("value cannot be sparse, all pairs must be non-nil")
		}
		c.value(kd.Kind(), kd.Enum(), true, k.Value(), mr.GetKeys())
		c.value(vd.Kind(), vd.Enum(), true, v, mr.GetValues())
		return true
	})
}

// count applies min/max item (or pair) rules as the generated code does:
// a minimum of 0 counts as unset.
func (c *checker) count(n uint64, minP, maxP *uint64, unit, units string) {
	lo, hi := derefU(minP), derefU(maxP)
	switch {
	case lo > 0 && lo == hi:
		if n != lo {
			c.fail("value must contain exactly %d %s", lo, unit)
		}
	case lo > 0 && maxP != nil:
		if n < lo || n > hi {
			c.fail("value must contain between %d and %d %s, inclusive", lo, hi, units)
		}
	case lo > 0:
		if n < lo {
			c.fail("value must contain at least %d %s", lo, unit)
		}
	case maxP != nil:
		if n > hi {
			c.fail("value must contain no more than %d %s", hi, unit)
		}
	}
}

func derefU(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// The regular expressions behind well_known_regex, as protoc-gen-validate
// substitutes them (strict by default).
var (
	headerName   = regexp.MustCompile("^:?[0-9a-zA-Z!#$%&'*+-.^_|~\x60]+$")
	headerValue  = regexp.MustCompile("^[^\u0000-\u0008\u000A-\u001F\u007F]*$")
	headerString = regexp.MustCompile("^[^\u0000\u000A\u000D]*$")
	patterns     sync.Map // string → *regexp.Regexp (or error)
)

func pattern(r *validate.StringRules) (*regexp.Regexp, string) {
	if wk, ok := r.GetWellKnown().(*validate.StringRules_WellKnownRegex); ok {
		strict := r.Strict == nil || r.GetStrict()
		switch {
		case !strict && (wk.WellKnownRegex == validate.KnownRegex_HTTP_HEADER_NAME || wk.WellKnownRegex == validate.KnownRegex_HTTP_HEADER_VALUE):
			return headerString, headerString.String()
		case wk.WellKnownRegex == validate.KnownRegex_HTTP_HEADER_NAME:
			return headerName, headerName.String()
		case wk.WellKnownRegex == validate.KnownRegex_HTTP_HEADER_VALUE:
			return headerValue, headerValue.String()
		}
	}
	if r.Pattern == nil {
		return nil, ""
	}
	return compiled(r.GetPattern()), r.GetPattern()
}

func compiled(p string) *regexp.Regexp {
	if re, ok := patterns.Load(p); ok {
		return re.(*regexp.Regexp)
	}
	// Envoy's patterns are RE2; one that does not compile matches nothing,
	// so values are refused rather than let through unchecked.
	re, err := regexp.Compile(p)
	if err != nil {
		re = regexp.MustCompile(`[^\s\S]`)
	}
	patterns.Store(p, re)
	return re
}

func (c *checker) str(s string, r *validate.StringRules) {
	if r.GetIgnoreEmpty() && s == "" {
		return
	}
	if r.Const != nil && s != r.GetConst() {
		c.fail("value must equal %q", r.GetConst())
	}
	if len(r.In) > 0 && !contains(r.In, s) {
		c.fail("value must be in list %v", r.In)
	} else if len(r.In) == 0 && len(r.NotIn) > 0 && contains(r.NotIn, s) {
		c.fail("value must not be in list %v", r.NotIn)
	}
	c.length(uint64(utf8.RuneCountInString(s)), r.Len, r.MinLen, r.MaxLen, "runes")
	c.length(uint64(len(s)), r.LenBytes, r.MinBytes, r.MaxBytes, "bytes")
	c.affixes([]byte(s), r.Prefix, r.Suffix, r.Contains, r.NotContains)
	switch wk := r.GetWellKnown().(type) {
	case *validate.StringRules_Ip:
		if wk.Ip && net.ParseIP(s) == nil {
			c.fail("value must be a valid IP address")
		}
	case *validate.StringRules_Ipv4:
		if ip := net.ParseIP(s); wk.Ipv4 && (ip == nil || ip.To4() == nil) {
			c.fail("value must be a valid IPv4 address")
		}
	case *validate.StringRules_Ipv6:
		if ip := net.ParseIP(s); wk.Ipv6 && (ip == nil || ip.To4() != nil) {
			c.fail("value must be a valid IPv6 address")
		}
	}
	if re, src := pattern(r); re != nil && !re.MatchString(s) {
		c.fail("value does not match regex pattern %q", src)
	}
}

func (c *checker) bytes(b []byte, r *validate.BytesRules) {
	if r.GetIgnoreEmpty() && len(b) == 0 {
		return
	}
	if r.Const != nil && !bytes.Equal(b, r.GetConst()) {
		c.fail("value must equal %v", r.GetConst())
	}
	c.length(uint64(len(b)), r.Len, r.MinLen, r.MaxLen, "bytes")
	var prefix, suffix, sub *string
	if r.Prefix != nil {
		prefix = proto.String(string(r.Prefix))
	}
	if r.Suffix != nil {
		suffix = proto.String(string(r.Suffix))
	}
	if r.Contains != nil {
		sub = proto.String(string(r.Contains))
	}
	c.affixes(b, prefix, suffix, sub, nil)
	if r.Pattern != nil && !compiled(r.GetPattern()).Match(b) {
		c.fail("value does not match regex pattern %q", r.GetPattern())
	}
}

// length applies len / min / max rules (runes or bytes) as the generated
// code does.
func (c *checker) length(n uint64, exact, minP, maxP *uint64, unit string) {
	switch {
	case exact != nil || (minP != nil && maxP != nil && *minP == *maxP):
		want := derefU(exact)
		if exact == nil {
			want = *minP
		}
		if n != want {
			c.fail("value length must be %d %s", want, unit)
		}
	case minP != nil && maxP != nil:
		if n < *minP || n > *maxP {
			c.fail("value length must be between %d and %d %s, inclusive", *minP, *maxP, unit)
		}
	case minP != nil:
		if n < *minP {
			c.fail("value length must be at least %d %s", *minP, unit)
		}
	case maxP != nil:
		if n > *maxP {
			c.fail("value length must be at most %d %s", *maxP, unit)
		}
	}
}

func (c *checker) affixes(b []byte, prefix, suffix, sub, notSub *string) {
	if prefix != nil && !bytes.HasPrefix(b, []byte(*prefix)) {
		c.fail("value does not have prefix %q", *prefix)
	}
	if suffix != nil && !bytes.HasSuffix(b, []byte(*suffix)) {
		c.fail("value does not have suffix %q", *suffix)
	}
	if sub != nil && !bytes.Contains(b, []byte(*sub)) {
		c.fail("value does not contain substring %q", *sub)
	}
	if notSub != nil && bytes.Contains(b, []byte(*notSub)) {
		c.fail("value contains substring %q", *notSub)
	}
}

func (c *checker) enum(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber, r *validate.EnumRules) {
	if r.Const != nil && int32(n) != r.GetConst() {
		c.fail("value must equal %d", r.GetConst())
	}
	if len(r.In) > 0 && !contains(r.In, int32(n)) {
		c.fail("value must be in list %v", r.In)
	} else if len(r.In) == 0 && len(r.NotIn) > 0 && contains(r.NotIn, int32(n)) {
		c.fail("value must not be in list %v", r.NotIn)
	}
	if r.GetDefinedOnly() && ed != nil && ed.Values().ByNumber(n) == nil {
		c.fail("value must be one of the defined enum values")
	}
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// numericRules returns the rules message of a numeric rule (UInt32Rules,
// DoubleRules, …): they share their field names, so one walker serves all.
func numericRules(r *validate.FieldRules) protoreflect.Message {
	od := r.ProtoReflect().Descriptor().Oneofs().ByName("type")
	fd := r.ProtoReflect().WhichOneof(od)
	if fd == nil || fd.Message() == nil {
		return nil
	}
	rm := r.ProtoReflect().Get(fd).Message()
	if rm.Descriptor().Fields().ByName("gte") == nil {
		return nil
	}
	return rm
}

// num orders values of one numeric kind with Go's operators (so a NaN
// fails no comparison, as in the generated code).
type num struct {
	kind protoreflect.Kind
	v    protoreflect.Value
}

// order compares two values of the rule's kind as Go would.
func (a num) order(b num) (less, lessEq bool) {
	switch a.kind {
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		x, y := a.v.Float(), b.v.Float()
		return x < y, x <= y
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		x, y := a.v.Uint(), b.v.Uint()
		return x < y, x <= y
	}
	x, y := a.v.Int(), b.v.Int()
	return x < y, x <= y
}

func (a num) less(b num) bool   { lt, _ := a.order(b); return lt }
func (a num) lessEq(b num) bool { _, le := a.order(b); return le }

// zero reports a value equal to 0 (so NaN is not).
func (a num) zero() bool {
	z := num{a.kind, protoreflect.ValueOfInt64(0)}
	switch a.kind {
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		z.v = protoreflect.ValueOfFloat64(0)
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		z.v = protoreflect.ValueOfUint64(0)
	}
	return a.lessEq(z) && z.lessEq(a)
}

func (a num) String() string { return fmt.Sprint(a.v.Interface()) }

func (c *checker) number(v protoreflect.Value, rm protoreflect.Message) {
	fields := rm.Descriptor().Fields()
	kind := fields.ByName("gte").Kind()
	val := num{kind, v}
	get := func(name protoreflect.Name) *num {
		fd := fields.ByName(name)
		if !rm.Has(fd) {
			return nil
		}
		return &num{kind, rm.Get(fd)}
	}
	if ie := fields.ByName("ignore_empty"); ie != nil && rm.Get(ie).Bool() && val.zero() {
		return
	}
	if k := get("const"); k != nil && !(k.lessEq(val) && val.lessEq(*k)) {
		c.fail("value must equal %v", k)
	}
	if why := ltgt(val, get("lt"), get("lte"), get("gt"), get("gte")); why != "" {
		c.fail("%s", why)
	}
	in, notIn := rm.Get(fields.ByName("in")).List(), rm.Get(fields.ByName("not_in")).List()
	found := func(l protoreflect.List) bool {
		for i := range l.Len() {
			if x := (num{kind, l.Get(i)}); x.lessEq(val) && val.lessEq(x) {
				return true
			}
		}
		return false
	}
	if in.Len() > 0 && !found(in) {
		c.fail("value must be in list %v", listString(in))
	} else if in.Len() == 0 && notIn.Len() > 0 && found(notIn) {
		c.fail("value must not be in list %v", listString(notIn))
	}
}

func listString(l protoreflect.List) string {
	parts := make([]string, l.Len())
	for i := range l.Len() {
		parts[i] = fmt.Sprint(l.Get(i).Interface())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// ordered is what the range rules compare: numbers and durations.
type ordered[T any] interface {
	less(T) bool
	lessEq(T) bool
	fmt.Stringer
}

// ltgt is protoc-gen-validate's range logic: a lower and an upper bound
// make an inside range, or an outside one when the upper is below the
// lower.
func ltgt[T ordered[T]](v T, lt, lte, gt, gte *T) string {
	switch {
	case lt != nil && gt != nil:
		if (*gt).less(*lt) {
			if v.lessEq(*gt) || (*lt).lessEq(v) {
				return fmt.Sprintf("value must be inside range (%v, %v)", *gt, *lt)
			}
		} else if (*lt).lessEq(v) && v.lessEq(*gt) {
			return fmt.Sprintf("value must be outside range [%v, %v]", *lt, *gt)
		}
	case lt != nil && gte != nil:
		if (*gte).less(*lt) {
			if v.less(*gte) || (*lt).lessEq(v) {
				return fmt.Sprintf("value must be inside range [%v, %v)", *gte, *lt)
			}
		} else if (*lt).lessEq(v) && v.less(*gte) {
			return fmt.Sprintf("value must be outside range [%v, %v)", *lt, *gte)
		}
	case lt != nil:
		if (*lt).lessEq(v) {
			return fmt.Sprintf("value must be less than %v", *lt)
		}
	case lte != nil && gt != nil:
		if (*gt).less(*lte) {
			if v.lessEq(*gt) || (*lte).less(v) {
				return fmt.Sprintf("value must be inside range (%v, %v]", *gt, *lte)
			}
		} else if (*lte).less(v) && v.lessEq(*gt) {
			return fmt.Sprintf("value must be outside range (%v, %v]", *lte, *gt)
		}
	case lte != nil && gte != nil:
		if (*gte).less(*lte) {
			if v.less(*gte) || (*lte).less(v) {
				return fmt.Sprintf("value must be inside range [%v, %v]", *gte, *lte)
			}
		} else if (*lte).less(v) && v.less(*gte) {
			return fmt.Sprintf("value must be outside range (%v, %v)", *lte, *gte)
		}
	case lte != nil:
		if (*lte).less(v) {
			return fmt.Sprintf("value must be less than or equal to %v", *lte)
		}
	case gt != nil:
		if v.lessEq(*gt) {
			return fmt.Sprintf("value must be greater than %v", *gt)
		}
	case gte != nil:
		if v.less(*gte) {
			return fmt.Sprintf("value must be greater than or equal to %v", *gte)
		}
	}
	return ""
}

type dur time.Duration

func (a dur) less(b dur) bool   { return a < b }
func (a dur) lessEq(b dur) bool { return a <= b }
func (a dur) String() string    { return time.Duration(a).String() }

func (c *checker) duration(m protoreflect.Message, r *validate.DurationRules) {
	if r.Const == nil && r.Lt == nil && r.Lte == nil && r.Gt == nil && r.Gte == nil && len(r.In) == 0 && len(r.NotIn) == 0 {
		return
	}
	fields := m.Descriptor().Fields()
	d := &durationpb.Duration{Seconds: m.Get(fields.ByName("seconds")).Int(), Nanos: int32(m.Get(fields.ByName("nanos")).Int())}
	if err := d.CheckValid(); err != nil {
		c.fail("value is not a valid duration: %v", err)
		return
	}
	v := dur(d.AsDuration())
	bound := func(b *durationpb.Duration) *dur {
		if b == nil {
			return nil
		}
		x := dur(b.AsDuration())
		return &x
	}
	if r.Const != nil && v != *bound(r.Const) {
		c.fail("value must equal %v", *bound(r.Const))
	}
	if why := ltgt(v, bound(r.Lt), bound(r.Lte), bound(r.Gt), bound(r.Gte)); why != "" {
		c.fail("%s", why)
	}
	in := func(list []*durationpb.Duration) bool {
		for _, x := range list {
			if dur(x.AsDuration()) == v {
				return true
			}
		}
		return false
	}
	if len(r.In) > 0 && !in(r.In) {
		c.fail("value must be in list %v", r.In)
	} else if len(r.In) == 0 && len(r.NotIn) > 0 && in(r.NotIn) {
		c.fail("value must not be in list %v", r.NotIn)
	}
}
