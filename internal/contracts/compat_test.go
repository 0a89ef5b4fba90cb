package contracts_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// frozen compiles the copy of file kept in testdata/frozen: the schema as
// the consumers running today were written against it. The copy is never
// rewritten: a breaking change gets a new file (and subject) instead.
func frozen(t *testing.T, file string) *contracts.Schema {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "frozen", file))
	if err != nil {
		t.Fatalf("no frozen copy of %s: copy schemas/%s to testdata/frozen/ when a schema is added (%v)", file, file, err)
	}
	s, err := contracts.Compile(file, raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFrozenCompatible is the contract test of every subject: the current
// schema must be compatible with the frozen one, and every field a
// registered consumer reads must be required by the frozen schema too.
func TestFrozenCompatible(t *testing.T) {
	r := registry(t)
	for _, c := range contracts.Contracts() {
		t.Run(c.File, func(t *testing.T) {
			old := frozen(t, c.File)
			cur, err := r.Schema(c.Subject)
			if err != nil {
				t.Fatal(err)
			}
			if err := contracts.CheckCompatible(old, cur); err != nil {
				t.Errorf("schemas/%s breaks consumers of the frozen version: %v\n"+
					"a breaking change needs a new subject version (%s.v%d) published alongside this one", c.File, err, c.Subject, c.Version+1)
			}
			for _, cons := range c.Consumers {
				for _, need := range cons.Needs {
					if f, ok := old.Field(need); !ok || !f.Required {
						t.Errorf("%s reads %s, which the frozen %s does not require", cons.Name, need, c.File)
					}
				}
			}
		})
	}
}

// mutate returns a copy of the schema raw changed by fn, compiled.
func mutate(t *testing.T, name string, raw []byte, fn func(doc map[string]any)) *contracts.Schema {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	fn(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := contracts.Compile(name, b)
	if err != nil {
		t.Fatalf("mutated schema does not compile: %v", err)
	}
	return s
}

// objectSchemas calls fn with every object schema in doc (a node with a
// "required" list), with a JSON pointer to it.
func objectSchemas(node any, ptr string, fn func(ptr string, obj map[string]any)) {
	switch n := node.(type) {
	case map[string]any:
		if _, ok := n["required"].([]any); ok {
			fn(ptr, n)
		}
		keys := make([]string, 0, len(n))
		for k := range n {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			objectSchemas(n[k], ptr+"/"+k, fn)
		}
	case []any:
		for _, e := range n {
			objectSchemas(e, ptr, fn)
		}
	}
}

// at returns the node of doc at ptr (as made by objectSchemas).
func at(doc map[string]any, ptr string) map[string]any {
	cur := doc
	for _, k := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if k == "" {
			continue
		}
		cur = cur[k].(map[string]any)
	}
	return cur
}

func without(list []any, name string) []any {
	out := []any{}
	for _, v := range list {
		if v != name {
			out = append(out, v)
		}
	}
	return out
}

// TestCompatibilityRejectsRemovedFields proves the contract test bites:
// for every required field of every schema, at every depth, a schema that
// removes it (or makes it optional) is refused against the frozen copy,
// with the field named.
func TestCompatibilityRejectsRemovedFields(t *testing.T) {
	r := registry(t)
	mutations := 0
	for _, c := range contracts.Contracts() {
		old := frozen(t, c.File)
		cur, _ := r.Schema(c.Subject)
		var doc map[string]any
		if err := json.Unmarshal(cur.Source(), &doc); err != nil {
			t.Fatal(err)
		}
		type target struct{ ptr, field string }
		var targets []target
		objectSchemas(doc, "", func(ptr string, obj map[string]any) {
			for _, f := range obj["required"].([]any) {
				targets = append(targets, target{ptr, f.(string)})
			}
		})
		for _, tg := range targets {
			for _, how := range []string{"removed", "made optional"} {
				m := mutate(t, c.File, cur.Source(), func(doc map[string]any) {
					obj := at(doc, tg.ptr)
					obj["required"] = without(obj["required"].([]any), tg.field)
					if how == "removed" {
						delete(obj["properties"].(map[string]any), tg.field)
					}
				})
				mutations++
				err := contracts.CheckCompatible(old, m)
				if !errs.Is(errs.Invalid, err) {
					t.Errorf("%s with %s%s/%s %s: CheckCompatible = %v, want errs.Invalid", c.File, "#", tg.ptr, tg.field, how, err)
					continue
				}
				if d := errs.Detail(err); !strings.Contains(d, tg.field+": required field "+how) {
					t.Errorf("%s with %s %s: reason %q does not say so", c.File, tg.field, how, d)
				}
			}
		}
	}
	if mutations < 40 {
		t.Errorf("only %d mutations tried", mutations)
	}
}

// TestCompatibilityRule checks the other cases of the rule on the real
// schemas: which changes pass and which are refused, and with what reason.
func TestCompatibilityRule(t *testing.T) {
	r := registry(t)
	items, _ := r.Schema(contracts.SubjectItemListed)
	changed, _ := r.Schema(contracts.SubjectProductChanged)
	placed, _ := r.Schema(contracts.SubjectOrderPlaced)
	props := func(doc map[string]any, ptr string) map[string]any {
		return at(doc, ptr)["properties"].(map[string]any)
	}
	tests := []struct {
		name string
		base *contracts.Schema
		fn   func(doc map[string]any)
		want string // "" for compatible
	}{
		{"an optional field added", items, func(d map[string]any) {
			props(d, "")["colour"] = map[string]any{"type": "string"}
		}, ""},
		{"an optional nested field added", placed, func(d map[string]any) {
			props(d, "/$defs/item")["sku"] = map[string]any{"type": "string"}
		}, ""},
		{"a description and a tighter minimum", changed, func(d map[string]any) {
			props(d, "")["stock"] = map[string]any{"type": "integer", "minimum": 1, "description": "reworded"}
		}, ""},
		{"a field retyped", items, func(d map[string]any) {
			props(d, "")["product_id"] = map[string]any{"type": "integer"}
		}, "product_id: type changed from string to integer"},
		{"a nested field retyped", placed, func(d map[string]any) {
			props(d, "/$defs/money")["amount"] = map[string]any{"type": "number"}
		}, "order.items[].line_total.amount: type changed from integer to number"},
		{"a format changed", changed, func(d map[string]any) {
			props(d, "")["changed_at"] = map[string]any{"type": "string", "format": "date"}
		}, `changed_at: format changed from "date-time" to "date"`},
		{"an enum widened", changed, func(d map[string]any) {
			props(d, "")["changed"].(map[string]any)["items"] = map[string]any{"type": "string", "enum": []any{"name", "description", "category", "price", "stock", "colour"}}
		}, "changed[]: enum changed"},
		{"a field newly required", items, func(d map[string]any) {
			props(d, "")["stock"] = map[string]any{"type": "integer"}
			d["required"] = append(d["required"].([]any), "stock")
		}, "stock: newly required"},
		{"an optional field removed", placed, func(d map[string]any) {
			delete(props(d, "/$defs/order/properties/shipment"), "tracking_number")
		}, "order.shipment.tracking_number: optional field removed"},
		{"an array turned into a string", changed, func(d map[string]any) {
			props(d, "")["changed"] = map[string]any{"type": "string"}
		}, "changed: type changed from array to string"},
		{"closed to extra fields", items, func(d map[string]any) {
			d["additionalProperties"] = false
		}, "additionalProperties changed"},
		{"a construct the check does not model", items, func(d map[string]any) {
			props(d, "")["name"] = map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "null"}}}
		}, "name: uses anyOf"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mutate(t, tc.base.Name(), tc.base.Source(), tc.fn)
			err := contracts.CheckCompatible(tc.base, m)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckCompatible = %v, want compatible", err)
				}
				return
			}
			if !errs.Is(errs.Invalid, err) || !strings.Contains(errs.Detail(err), tc.want) {
				t.Fatalf("CheckCompatible = %v, want errs.Invalid saying %q", err, tc.want)
			}
		})
	}
}
