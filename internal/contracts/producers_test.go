package contracts_test

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/mail"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
	mailworker "github.com/globomantics/globomantics/internal/worker/mail"
	"github.com/globomantics/globomantics/internal/worker/thumbnail"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// TestSubjectsMatchProducers checks that the subjects this package spells
// are the producers' constants, that the workers subscribe to registered
// subjects only, and that no Subject constant naming a "globo." subject
// exists in the code without a contract.
func TestSubjectsMatchProducers(t *testing.T) {
	pairs := [][2]string{
		{contracts.SubjectItemListed, catalog.SubjectItemListed},
		{contracts.SubjectProductChanged, catalog.SubjectProductChanged},
		{contracts.SubjectOrderPlaced, order.SubjectOrderPlaced},
		{contracts.SubjectOrderCancelled, order.SubjectOrderCancelled},
		{contracts.SubjectThumbnailRequested, catalog.SubjectThumbnailRequested},
		{contracts.SubjectEmailRequested, order.SubjectEmailRequested},
	}
	for _, p := range pairs {
		if p[0] != p[1] {
			t.Errorf("contracts spells %q, the producer %q", p[0], p[1])
		}
	}
	r := registry(t)
	for _, s := range slices.Concat(thumbnail.Subjects, mailworker.Subjects, thumbnail.LegacySubjects, mailworker.LegacySubjects) {
		if _, err := r.Schema(s); err != nil {
			t.Errorf("a worker subscribes to %s: %v", s, err)
		}
	}

	// Every `const SubjectX = "globo...."` in non-test code of internal/.
	fset := token.NewFileSet()
	found := 0
	err := filepath.WalkDir(filepath.Join("..", ".."), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != filepath.Join("..", "..") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil // someone else's file mid-edit: not ours to judge
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Subject") || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, _ := strconv.Unquote(lit.Value)
					if !strings.HasPrefix(v, "globo.") || v == "globo." {
						continue
					}
					found++
					if _, err := r.Schema(v); err != nil {
						t.Errorf("%s: %s = %q has no contract: add a schema under internal/contracts/schemas and register it", fset.Position(name.Pos()), name.Name, v)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 3 {
		t.Errorf("found only %d subject constants in the code", found)
	}
}

type outboxRow struct {
	subject, id string
	payload     []byte
}

func outboxRows(t *testing.T, db *sqldb.DB) []outboxRow {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT subject, seq_id, payload FROM outbox ORDER BY created_at, seq_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		var p string
		if err := rows.Scan(&r.subject, &r.id, &p); err != nil {
			t.Fatal(err)
		}
		r.payload = []byte(p)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// producedPayloads runs the real producers (the catalog and order stores,
// the order service) on db backend b and returns what they wrote to their
// outboxes, by subject.
func producedPayloads(t *testing.T, b testenv.Backend) map[string][][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][][]byte{}

	catDB := b.Open(t)
	cat, err := catalogdb.Open(ctx, catDB)
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.EnsureCategories(ctx, []catalog.Category{{ID: "home", Name: "Home"}, {ID: "books", Name: "Books"}}); err != nil {
		t.Fatal(err)
	}
	if err := cat.CreateProduct(ctx, catalog.Record{ID: "prd_1", Name: "Lamp", Description: "", Category: "home",
		Price: money.USD(1250), Stock: 3, ImageKey: "products/prd_1/original.png", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.UpdateProduct(ctx, "prd_1", catalog.ProductChange{Name: ptr("Desk lamp"), Description: ptr("Brass."),
		Category: ptr("books"), Price: ptr(money.USD(999)), Stock: ptr(0), IfVersion: 1}, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.UpdateProduct(ctx, "prd_1", catalog.ProductChange{Price: ptr(money.Money{Amount: 1500})}, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, r := range outboxRows(t, catDB) {
		out[r.subject] = append(out[r.subject], r.payload)
	}

	ordDB := b.Open(t)
	store, err := orderdb.Open(ctx, ordDB)
	if err != nil {
		t.Fatal(err)
	}
	svc := order.NewService(store, func() {}, clock.NewFake(t0))
	for _, n := range []order.NewOrder{
		{ID: "ord_1", UserID: "usr_1", Email: "ada@example.com",
			Items:        []order.Item{{ProductID: "prd_1", Name: "Desk lamp", Quantity: 2, UnitPrice: money.USD(999)}},
			ShippingCost: money.USD(500),
			ShippingAddress: shipping.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield",
				PostalCode: "12345", Country: "US"}},
		{ID: "ord_2", UserID: "usr_2", Email: "bob@example.com",
			Items: []order.Item{{ProductID: "prd_1", Name: "Desk lamp", Quantity: 1, UnitPrice: money.USD(999)},
				{ProductID: "prd_2", Name: "Bulb ünicode", Quantity: 3, UnitPrice: money.USD(150)}}},
		{ID: "ord_3", UserID: "usr_3", Email: "cy@example.com",
			Items: []order.Item{{ProductID: "prd_1", Name: "Desk lamp", Quantity: 1, UnitPrice: money.USD(999)}},
			ShippingAddress: shipping.Address{Name: "Cy Young", Line1: "3 Elm St", City: "Springfield",
				PostalCode: "12345", Country: "US"}},
		{ID: "ord_4", UserID: "usr_4", Email: "di@example.com",
			Items: []order.Item{{ProductID: "prd_2", Name: "Bulb", Quantity: 2, UnitPrice: money.USD(150)}}},
	} {
		if _, err := svc.CreateOrder(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Confirm(ctx, "ord_1", order.PaymentInfo{ID: "pay_1", Status: "captured"},
		order.ShipmentInfo{ID: "shp_1", TrackingNumber: "TRK1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Confirm(ctx, "ord_2", order.PaymentInfo{Status: "captured"}, order.ShipmentInfo{ID: "shp_2"}); err != nil {
		t.Fatal(err)
	}
	// Cancelled as the checkout saga cancels: after a declined card (no
	// payment taken) and after a voided authorization.
	if _, err := svc.Cancel(ctx, "ord_3", "the card was declined", order.PaymentInfo{ID: "pay_3", Status: "declined"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Cancel(ctx, "ord_4", "checkout failed", order.PaymentInfo{}); err != nil {
		t.Fatal(err)
	}
	for _, r := range outboxRows(t, ordDB) {
		out[r.subject] = append(out[r.subject], r.payload)
	}
	analyticsPayloads(t, out) // analytics_test.go
	// The partner integration's producers (partner_test.go).
	partnerPayloads(t, b, out)
	paymentPayloads(t, b, out) // payment_test.go
	accountPayloads(t, b, out) // account_test.go
	return out
}

// TestProducersConform runs the real producers against SQLite and
// PostgreSQL and validates every payload they write to their outboxes
// against its contract; it then decodes each payload into the decoding
// struct of every consumer and checks that the fields each one reads
// arrived, and that the mail worker composes a confirmation from it.
func TestProducersConform(t *testing.T) {
	r := registry(t)
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			produced := producedPayloads(t, b)
			for _, c := range contracts.Contracts() {
				if len(produced[c.Subject]) == 0 {
					t.Errorf("the producers wrote no %s", c.Subject)
				}
			}
			for subject, payloads := range produced {
				for _, p := range payloads {
					if err := r.Validate(subject, p); err != nil {
						t.Errorf("a payload the producer wrote breaks its contract: %v\n%s", err, p)
					}
					for _, dec := range decoders[subject] {
						v := reflect.New(dec.typ)
						if err := json.Unmarshal(p, v.Interface()); err != nil {
							t.Errorf("%s cannot decode %s: %v", dec.consumer, subject, err)
							continue
						}
						var doc any
						if err := json.Unmarshal(p, &doc); err != nil {
							t.Fatal(err)
						}
						for _, need := range needsOf(t, subject, dec.consumer) {
							if !present(doc, strings.Split(need, ".")) {
								t.Errorf("%s: %s reads %s, which is missing from %s", subject, dec.consumer, need, p)
							}
						}
					}
				}
			}
			from, _ := mail.ParseAddress("Globomantics <orders@globomantics.example>")
			for _, p := range produced[contracts.SubjectOrderPlaced] {
				var placed order.OrderPlaced
				if err := json.Unmarshal(p, &placed); err != nil {
					t.Fatal(err)
				}
				if _, err := mailworker.Compose(from, placed.Order); err != nil {
					t.Errorf("the mail worker cannot compose from a produced OrderPlaced: %v", err)
				}
			}
			for _, p := range produced[contracts.SubjectEmailRequested] {
				var job order.EmailRequested
				if err := json.Unmarshal(p, &job); err != nil {
					t.Fatal(err)
				}
				compose := map[order.EmailKind]func(*mail.Address, order.Order) (mailworker.Message, error){
					order.EmailOrderConfirmation: mailworker.Compose, order.EmailOrderCancellation: mailworker.ComposeCancellation}[job.Kind]
				if compose == nil || job.OrderID != job.Order.ID || job.To != job.Order.Email {
					t.Errorf("a produced EmailRequested is not what the mail worker takes: %s", p)
					continue
				}
				if _, err := compose(from, job.Order); err != nil {
					t.Errorf("the mail worker cannot compose from a produced EmailRequested: %v", err)
				}
			}
			for _, p := range produced[contracts.SubjectOrderCancelled] {
				var cancelled order.OrderCancelled
				if err := json.Unmarshal(p, &cancelled); err != nil {
					t.Fatal(err)
				}
				if _, err := mailworker.ComposeCancellation(from, cancelled.Order); err != nil {
					t.Errorf("the mail worker cannot compose from a produced OrderCancelled: %v", err)
				}
			}
		})
	}
}

// decoder is the struct a consumer decodes a subject's payload into.
type decoder struct {
	consumer string // as named in contracts.Contracts
	typ      reflect.Type
}

// decoders are the consumers' decoding structs, by subject (see each
// consumer's handler: search.Service.HandleEvent decodes both catalog
// events into catalog.ItemListed).
var decoders = map[string][]decoder{
	contracts.SubjectItemListed: {
		{"search indexer (search.Service.HandleEvent)", reflect.TypeFor[catalog.ItemListed]()},
		{"thumbnail worker (thumbnail.Worker.Handle)", reflect.TypeFor[catalog.ItemListed]()},
	},
	contracts.SubjectProductChanged: {
		{"search indexer (search.Service.HandleEvent)", reflect.TypeFor[catalog.ItemListed]()},
		{"catalog cache of every instance (catalog.Service.HandleProductChanged)", reflect.TypeFor[catalog.ProductChanged]()},
	},
	contracts.SubjectOrderPlaced: {
		{"mail worker (mail.Worker.Handle)", reflect.TypeFor[order.OrderPlaced]()},
	},
	contracts.SubjectOrderCancelled: {
		{"mail worker (mail.Worker.Handle)", reflect.TypeFor[order.OrderCancelled]()},
	},
	contracts.SubjectThumbnailRequested: {
		{"thumbnail worker (thumbnail.Worker.Handle)", reflect.TypeFor[catalog.ThumbnailRequested]()},
	},
	contracts.SubjectEmailRequested: {
		{"mail worker (mail.Worker.Handle)", reflect.TypeFor[order.EmailRequested]()},
	},
}

func needsOf(t *testing.T, subject, consumer string) []string {
	t.Helper()
	for _, c := range contracts.Contracts() {
		if c.Subject != subject {
			continue
		}
		for _, cons := range c.Consumers {
			if cons.Name == consumer {
				return cons.Needs
			}
		}
	}
	t.Fatalf("%s is no registered consumer of %s", consumer, subject)
	return nil
}

// TestConsumersCoverNeeds checks, for every registered consumer, that each
// field it reads is required by the schema (at every level of its path)
// and is a field of the consumer's decoding struct of the same JSON type,
// and that every consumer registered has its decoding struct known here.
func TestConsumersCoverNeeds(t *testing.T) {
	r := registry(t)
	for _, c := range contracts.Contracts() {
		s, err := r.Schema(c.Subject)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Consumers) == 0 {
			t.Errorf("%s has no consumer registered", c.Subject)
		}
		for _, cons := range c.Consumers {
			var typ reflect.Type
			for _, d := range decoders[c.Subject] {
				if d.consumer == cons.Name {
					typ = d.typ
				}
			}
			if typ == nil {
				t.Errorf("%s: consumer %q has no decoding struct in this test's decoders", c.Subject, cons.Name)
				continue
			}
			if len(cons.Needs) == 0 {
				t.Errorf("%s: consumer %q reads no field", c.Subject, cons.Name)
			}
			for _, need := range cons.Needs {
				f, ok := s.Field(need)
				if !ok || !f.Required {
					t.Errorf("%s: %s reads %s, which the schema does not require (found %v)", c.Subject, cons.Name, need, ok)
					continue
				}
				goType, ok := jsonTypeAt(typ, strings.Split(need, "."))
				if !ok {
					t.Errorf("%s: %s's struct %s has no field %s", c.Subject, cons.Name, typ, need)
					continue
				}
				if len(f.Types) != 1 || f.Types[0] != goType {
					t.Errorf("%s: %s decodes %s as JSON %s, the schema says %v", c.Subject, cons.Name, need, goType, f.Types)
				}
			}
		}
	}
}

// fieldByJSON finds the field of struct type st whose JSON name is name.
func fieldByJSON(st reflect.Type, name string) (reflect.StructField, bool) {
	for i := range st.NumField() {
		f := st.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" || !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

var timeType = reflect.TypeFor[time.Time]()

// jsonTypeAt is the JSON type encoding/json gives the field at path in t.
func jsonTypeAt(t reflect.Type, path []string) (string, bool) {
	for _, step := range path {
		name, arrays := step, 0
		for strings.HasSuffix(name, "[]") {
			name, arrays = strings.TrimSuffix(name, "[]"), arrays+1
		}
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == timeType {
			return "", false
		}
		f, ok := fieldByJSON(t, name)
		if !ok {
			return "", false
		}
		t = f.Type
		for range arrays {
			if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
				return "", false
			}
			t = t.Elem()
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return "string", true
	case t.Kind() == reflect.String:
		return "string", true
	case t.Kind() == reflect.Bool:
		return "boolean", true
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer", true
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "number", true
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return "string", true
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		return "array", true
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		return "object", true
	}
	return "", false
}

// present reports whether the payload doc (decoded into any) has a value
// that is not null at path, in every element of an array along the way.
func present(doc any, path []string) bool {
	if len(path) == 0 {
		return doc != nil
	}
	name, arrays := path[0], 0
	for strings.HasSuffix(name, "[]") {
		name, arrays = strings.TrimSuffix(name, "[]"), arrays+1
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return false
	}
	return presentIn(obj[name], arrays, path[1:])
}

func presentIn(v any, arrays int, rest []string) bool {
	if arrays == 0 {
		return present(v, rest)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return false
	}
	for _, e := range arr {
		if !presentIn(e, arrays-1, rest) {
			return false
		}
	}
	return true
}
