package contracts

import (
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// CheckCompatible reports whether newer may replace older as the schema of
// the same subject, with consumers written against older still running and
// messages published under older still in the stream (or in the dead
// letters, to be replayed). It fails with errs.Invalid, listing every
// problem by JSON path ("order.items[].name"), when newer
//
//   - removes a field of older, required or optional (an optional field
//     that is no longer sent stays in the schema, marked "deprecated");
//   - makes a required field optional, or requires a field older did not
//     (older messages lack it);
//   - changes a field's type, format, enum or const;
//   - changes the items of an array or additionalProperties.
//
// New optional fields are compatible. Constraints such as minLength or
// minimum are not compared. Parts of a schema this check does not model
// (allOf, anyOf, oneOf, not, if/then/else, patternProperties,
// prefixItems, $ref with sibling constraints, ...) are reported as
// problems rather than passed unchecked.
func CheckCompatible(older, newer *Schema) error {
	c := compatCheck{seen: make(map[[2]*jsonschema.Schema]bool)}
	c.compare("", older.sch, newer.sch)
	if len(c.problems) > 0 {
		return errs.E("contracts.CheckCompatible", errs.Invalid,
			errs.Msg("%s cannot replace %s: %s", newer.name, older.name, strings.Join(c.problems, "; ")))
	}
	return nil
}

type compatCheck struct {
	seen     map[[2]*jsonschema.Schema]bool
	problems []string
}

func (c *compatCheck) problem(path, format string, args ...any) {
	if path == "" {
		path = "(the payload)"
	}
	c.problems = append(c.problems, path+": "+fmt.Sprintf(format, args...))
}

// deref follows $ref. A $ref beside other constraints is reported.
func (c *compatCheck) deref(path string, s *jsonschema.Schema) *jsonschema.Schema {
	for s != nil && s.Ref != nil {
		if s.Types != nil || s.Properties != nil || len(s.Required) > 0 || s.Items2020 != nil || s.Enum != nil || s.Const != nil {
			c.problem(path, "$ref beside other constraints is not supported by the compatibility check")
		}
		s = s.Ref
	}
	return s
}

func (c *compatCheck) compare(path string, o, n *jsonschema.Schema) {
	o, n = c.deref(path, o), c.deref(path, n)
	if o == nil || n == nil {
		if o != n {
			c.problem(path, "schema removed or added")
		}
		return
	}
	key := [2]*jsonschema.Schema{o, n}
	if c.seen[key] {
		return
	}
	c.seen[key] = true

	for _, s := range []*jsonschema.Schema{o, n} {
		if u := unsupported(s); u != "" {
			c.problem(path, "uses %s, which the compatibility check does not compare", u)
		}
	}
	if ot, nt := typeNames(o), typeNames(n); !slices.Equal(ot, nt) {
		c.problem(path, "type changed from %s to %s", typeList(ot), typeList(nt))
	}
	if of, nf := formatName(o), formatName(n); of != nf {
		c.problem(path, "format changed from %q to %q", of, nf)
	}
	if oe, ne := enumValues(o), enumValues(n); !slices.Equal(oe, ne) {
		c.problem(path, "enum changed from %v to %v", oe, ne)
	}
	if oc, nc := constValue(o), constValue(n); oc != nc {
		c.problem(path, "const changed from %s to %s", oc, nc)
	}
	if !sameAdditional(o.AdditionalProperties, n.AdditionalProperties) {
		c.problem(path, "additionalProperties changed")
	}

	for _, r := range o.Required {
		if slices.Contains(n.Required, r) {
			continue
		}
		if _, ok := n.Properties[r]; ok {
			c.problem(join(path, r), "required field made optional (consumers of the older version read it)")
		} else {
			c.problem(join(path, r), "required field removed (consumers of the older version read it)")
		}
	}
	for _, r := range n.Required {
		if !slices.Contains(o.Required, r) {
			c.problem(join(path, r), "newly required (messages published under the older version lack it); add it as optional")
		}
	}
	names := make([]string, 0, len(o.Properties))
	for name := range o.Properties {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		ns, ok := n.Properties[name]
		if !ok {
			if !slices.Contains(o.Required, name) { // a removed required field is reported above
				c.problem(join(path, name), "optional field removed (keep it, marked deprecated)")
			}
			continue
		}
		c.compare(join(path, name), o.Properties[name], ns)
	}

	oi, ni := o.Items2020, n.Items2020
	if oi != nil || ni != nil {
		if oi == nil || ni == nil {
			c.problem(path, "array items added or removed")
		} else {
			c.compare(path+"[]", oi, ni)
		}
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// unsupported names a keyword of s that compare does not model, or "".
func unsupported(s *jsonschema.Schema) string {
	switch {
	case len(s.AllOf) > 0:
		return "allOf"
	case len(s.AnyOf) > 0:
		return "anyOf"
	case len(s.OneOf) > 0:
		return "oneOf"
	case s.Not != nil:
		return "not"
	case s.If != nil:
		return "if"
	case len(s.PatternProperties) > 0:
		return "patternProperties"
	case len(s.PrefixItems) > 0:
		return "prefixItems"
	case s.Items != nil || s.AdditionalItems != nil:
		return "items of an older draft"
	case len(s.DependentRequired) > 0 || len(s.DependentSchemas) > 0 || len(s.Dependencies) > 0:
		return "dependencies"
	case s.DynamicRef != nil || s.RecursiveRef != nil:
		return "dynamic references"
	case s.UnevaluatedProperties != nil || s.UnevaluatedItems != nil:
		return "unevaluated keywords"
	case s.Bool != nil:
		return "a boolean schema"
	}
	return ""
}

// typeNames are the JSON types s allows, sorted; nil for any type.
func typeNames(s *jsonschema.Schema) []string {
	if s.Types == nil || s.Types.IsEmpty() {
		return nil
	}
	t := s.Types.ToStrings()
	slices.Sort(t)
	return t
}

func typeList(t []string) string {
	if t == nil {
		return "any"
	}
	return strings.Join(t, "|")
}

func formatName(s *jsonschema.Schema) string {
	if s.Format == nil {
		return ""
	}
	return s.Format.Name
}

func enumValues(s *jsonschema.Schema) []string {
	if s.Enum == nil {
		return nil
	}
	out := make([]string, 0, len(s.Enum.Values))
	for _, v := range s.Enum.Values {
		out = append(out, fmt.Sprintf("%#v", v))
	}
	slices.Sort(out)
	return out
}

func constValue(s *jsonschema.Schema) string {
	if s.Const == nil {
		return "(none)"
	}
	return fmt.Sprintf("%#v", *s.Const)
}

// sameAdditional compares two additionalProperties values: nil (absent), a
// bool, or a schema. Two schemas count as different: the check does not
// compare them.
func sameAdditional(o, n any) bool {
	if o == nil || n == nil {
		return o == nil && n == nil
	}
	ob, ok1 := o.(bool)
	nb, ok2 := n.(bool)
	return ok1 && ok2 && ob == nb
}

// Field describes a field of a schema found by Schema.Field.
type Field struct {
	Types    []string // the JSON types it may have, sorted; nil for any
	Required bool     // required at every level of its path
}

// Field looks up path, a JSON path such as "order.items[].name" ("[]"
// steps into an array's items), in s. It reports false when the schema
// declares no such field.
func (s *Schema) Field(path string) (Field, bool) {
	var c compatCheck
	cur := c.deref("", s.sch)
	req := true
	for _, step := range strings.Split(path, ".") {
		name, arrays := step, 0
		for strings.HasSuffix(name, "[]") {
			name, arrays = strings.TrimSuffix(name, "[]"), arrays+1
		}
		next, ok := cur.Properties[name]
		if !ok {
			return Field{}, false
		}
		req = req && slices.Contains(cur.Required, name)
		cur = c.deref("", next)
		for range arrays {
			if cur.Items2020 == nil {
				return Field{}, false
			}
			cur = c.deref("", cur.Items2020)
		}
	}
	return Field{Types: typeNames(cur), Required: req}, true
}
