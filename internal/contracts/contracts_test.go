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
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func registry(t *testing.T) *contracts.Registry {
	t.Helper()
	r, err := contracts.New()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSchemasCompile compiles every registered schema, checks that its $id
// and title match the registry, and that schemas/ holds no file the
// registry leaves out.
func TestSchemasCompile(t *testing.T) {
	r := registry(t)
	files := map[string]bool{}
	for _, c := range contracts.Contracts() {
		s, err := r.Schema(c.Subject)
		if err != nil {
			t.Fatalf("%s: %v", c.Subject, err)
		}
		var head struct{ ID, Title, Schema string }
		var doc map[string]any
		if err := json.Unmarshal(s.Source(), &doc); err != nil {
			t.Fatal(err)
		}
		head.ID, _ = doc["$id"].(string)
		head.Title, _ = doc["title"].(string)
		head.Schema, _ = doc["$schema"].(string)
		if head.ID != contracts.SchemaBase+c.File || head.Title != c.Name || head.Schema != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $id %q, title %q, $schema %q; want %q, %q, draft 2020-12", c.File, head.ID, head.Title, head.Schema, contracts.SchemaBase+c.File, c.Name)
		}
		want := strings.TrimPrefix(c.Subject, "globo.") + ".v1.json"
		if c.Version > 1 {
			want = strings.TrimPrefix(strings.TrimSuffix(c.Subject, ".v"+itoa(c.Version)), "globo.") + ".v" + itoa(c.Version) + ".json"
		}
		if c.File != want {
			t.Errorf("%s: schema file %s, want %s (subject without globo., then .v<version>.json)", c.Subject, c.File, want)
		}
		files[c.File] = true
	}
	ents, err := os.ReadDir("schemas")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !files[e.Name()] {
			t.Errorf("schemas/%s is not registered in Contracts()", e.Name())
		}
	}
	if len(files) < 3 {
		t.Errorf("only %d contracts registered", len(files))
	}
	if got := r.Subjects(); !slices.IsSorted(got) || len(got) != len(files) {
		t.Errorf("Subjects() = %v", got)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestValidateRejects checks that payloads breaking a contract are refused
// with errs.Invalid and a reason naming the offending field, and that a
// payload with a field the schema does not know (a newer producer's
// optional field) is accepted.
func TestValidateRejects(t *testing.T) {
	r := registry(t)
	good := `{"product_id":"prd_1","name":"Lamp","description":"","category":"home","price":{"amount":1250,"currency":"USD"},"image_key":"products/prd_1/original.png"}`
	if err := r.Validate(contracts.SubjectItemListed, []byte(good)); err != nil {
		t.Fatalf("a valid ItemListed: %v", err)
	}
	if err := contracts.Validate(contracts.SubjectItemListed, []byte(good)); err != nil {
		t.Fatalf("package-level Validate of a valid ItemListed: %v", err)
	}
	withExtra := strings.Replace(good, `"name"`, `"colour":"red","name"`, 1)
	if err := r.Validate(contracts.SubjectItemListed, []byte(withExtra)); err != nil {
		t.Errorf("an unknown extra field must be accepted (optional fields may be added freely): %v", err)
	}
	tests := []struct {
		name, subject, payload, want string
	}{
		{"missing field", contracts.SubjectItemListed, strings.Replace(good, `,"image_key":"products/prd_1/original.png"`, "", 1), "image_key"},
		{"wrong type", contracts.SubjectItemListed, strings.Replace(good, `"amount":1250`, `"amount":"12.50"`, 1), "/price/amount"},
		{"fraction for integer", contracts.SubjectItemListed, strings.Replace(good, `"amount":1250`, `"amount":12.5`, 1), "/price/amount"},
		{"empty id", contracts.SubjectItemListed, strings.Replace(good, `"prd_1",`, `"",`, 1), "/product_id"},
		{"bad currency", contracts.SubjectItemListed, strings.Replace(good, `"USD"`, `"usd"`, 1), "/price/currency"},
		{"not JSON", contracts.SubjectItemListed, `{"product_id":`, "not JSON"},
		{"not an object", contracts.SubjectOrderPlaced, `[]`, "object"},
		{"bad time", contracts.SubjectProductChanged, `{"product_id":"p","version":2,"changed":["price"],"name":"n","description":"","category":"c","price":{"amount":1,"currency":"USD"},"stock":1,"changed_at":"yesterday"}`, "/changed_at"},
		{"unknown changed field", contracts.SubjectProductChanged, `{"product_id":"p","version":2,"changed":["colour"],"name":"n","description":"","category":"c","price":{"amount":1,"currency":"USD"},"stock":1,"changed_at":"2025-03-01T12:00:00Z"}`, "/changed/0"},
		{"no contract", "globo.nobody.nothing", `{}`, "no contract"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Validate(tc.subject, []byte(tc.payload))
			if !errs.Is(errs.Invalid, err) {
				t.Fatalf("Validate = %v, want errs.Invalid", err)
			}
			if d := errs.Detail(err); !strings.Contains(d, tc.want) || !strings.Contains(d, tc.subject) {
				t.Errorf("reason %q does not name %q and the subject", d, tc.want)
			}
		})
	}
}

// TestEventsDocListsEveryContract keeps docs/EVENTS.md in step with the
// registry: every subject, schema file, producer, consumer and required
// top-level field is named there.
func TestEventsDocListsEveryContract(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "EVENTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	r := registry(t)
	for _, c := range contracts.Contracts() {
		for _, want := range []string{"`" + c.Subject + "`", c.File, c.Name} {
			if !strings.Contains(doc, want) {
				t.Errorf("docs/EVENTS.md does not mention %s (of %s)", want, c.Subject)
			}
		}
		for _, cons := range c.Consumers {
			name, _, _ := strings.Cut(cons.Name, " (")
			if !strings.Contains(doc, name) {
				t.Errorf("docs/EVENTS.md does not name consumer %q of %s", name, c.Subject)
			}
			for _, need := range cons.Needs {
				if !strings.Contains(doc, "`"+need+"`") {
					t.Errorf("docs/EVENTS.md does not list field `%s` of %s", need, c.Subject)
				}
			}
		}
		s, _ := r.Schema(c.Subject)
		var top struct {
			Required []string `json:"required"`
		}
		if err := json.Unmarshal(s.Source(), &top); err != nil {
			t.Fatal(err)
		}
		for _, f := range top.Required {
			if !strings.Contains(doc, "`"+f+"`") {
				t.Errorf("docs/EVENTS.md does not list field `%s` of %s", f, c.Subject)
			}
		}
	}
}

// BenchmarkValidate measures the cost a validating publisher or handler
// adds per message, for the smallest and the largest payload.
func BenchmarkValidate(b *testing.B) {
	r, err := contracts.New()
	if err != nil {
		b.Fatal(err)
	}
	item := []byte(`{"product_id":"prd_1","name":"Lamp","description":"A lamp.","category":"home","price":{"amount":1250,"currency":"USD"},"image_key":"products/prd_1/original.png"}`)
	placed := []byte(`{"order":{"id":"ord_1","user_id":"usr_1","email":"ada@example.com","status":"confirmed","items":[` +
		`{"product_id":"prd_1","name":"Desk lamp","quantity":2,"unit_price":{"amount":999,"currency":"USD"},"line_total":{"amount":1998,"currency":"USD"}},` +
		`{"product_id":"prd_2","name":"Bulb","quantity":3,"unit_price":{"amount":150,"currency":"USD"},"line_total":{"amount":450,"currency":"USD"}}],` +
		`"subtotal":{"amount":2448,"currency":"USD"},"shipping_cost":{"amount":500,"currency":"USD"},"total":{"amount":2948,"currency":"USD"},` +
		`"shipping_address":{"name":"Ada","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"},` +
		`"payment":{"id":"pay_1","status":"captured"},"shipment":{"id":"shp_1","status":"created","tracking_number":"TRK1"},` +
		`"created_at":"2025-03-01T12:00:00Z","updated_at":"2025-03-01T12:00:00Z"}}`)
	for _, bc := range []struct {
		name    string
		subject string
		payload []byte
	}{{"ItemListed", contracts.SubjectItemListed, item}, {"OrderPlaced", contracts.SubjectOrderPlaced, placed}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.payload)))
			for b.Loop() {
				if err := r.Validate(bc.subject, bc.payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
