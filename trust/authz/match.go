package authz

import "strings"

// pattern is one match value of a policy: exact, "*" (anything present),
// "prefix*" or "*suffix". Validation (api/v1alpha1) allows nothing else.
type pattern string

func (p pattern) match(v string) bool {
	s := string(p)
	switch {
	case s == "*":
		return v != ""
	case strings.HasSuffix(s, "*"):
		return strings.HasPrefix(v, s[:len(s)-1])
	case strings.HasPrefix(s, "*"):
		return strings.HasSuffix(v, s[1:])
	}
	return v == s
}

// field is one field of a source, operation or condition: the value must
// match one of in (when in is not empty) and none of notIn.
type field struct{ in, notIn []pattern }

func newField(in, notIn []string) field {
	return field{in: patterns(in), notIn: patterns(notIn)}
}

func patterns(ss []string) []pattern {
	out := make([]pattern, len(ss))
	for i, s := range ss {
		out[i] = pattern(s)
	}
	return out
}

func (f field) set() bool { return len(f.in) > 0 || len(f.notIn) > 0 }

func (f field) match(v string) bool {
	if len(f.in) > 0 && !anyMatch(f.in, v) {
		return false
	}
	return !anyMatch(f.notIn, v)
}

func anyMatch(ps []pattern, v string) bool {
	for _, p := range ps {
		if p.match(v) {
			return true
		}
	}
	return false
}
