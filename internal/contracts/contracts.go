// Package contracts holds the message contracts of the shop: one versioned
// JSON Schema (draft 2020-12) per bus subject, embedded from schemas/, the
// registry that maps a subject to its schema, payload validation, and the
// compatibility rule between two versions of a schema. docs/EVENTS.md lists
// the subjects with their producers, consumers and fields.
//
// A payload is the event's data (bus.Event.Data, what outbox.Add marshals),
// not the bus envelope around it.
//
// Versioning: a schema may gain optional fields at any time. A change that
// removes, retypes or newly requires a field (CheckCompatible) is a new
// version, published on a new subject ("<subject>.v2") alongside the old one
// until every consumer has moved.
package contracts

import (
	"bytes"
	"embed"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

//go:embed schemas/*.json
var schemaFiles embed.FS

// SchemaBase is the URL under which every schema's $id lies: a schema file
// F has the $id SchemaBase+F. Nothing is fetched from it.
const SchemaBase = "https://schemas.globomantics.example/"

// Subjects of the registered messages. They are spelled here as well as in
// the producing packages (catalog.SubjectItemListed, ...) so that this
// package imports no domain; a test checks that the two agree.
const (
	SubjectItemListed     = "globo.catalog.item_listed"
	SubjectProductChanged = "globo.catalog.product_changed"
	SubjectOrderPlaced    = "globo.order.placed"
	SubjectOrderCancelled = "globo.order.cancelled"
	// The analytics events travel on the buffered GLOBO_ANALYTICS stream,
	// hence their own prefix.
	// The per-event subjects are deprecated (storefronts before the
	// summaries); the consumer accepts them for one more version.
	SubjectPageViewed       = "globo_analytics.page_viewed"
	SubjectSearchMade       = "globo_analytics.search_made"
	SubjectPageViewsCounted = "globo_analytics.page_views_counted"
	SubjectSearchesCounted  = "globo_analytics.searches_counted"
	// The catalog's announcement that an item's thumbnails are made, and
	// the partner service's webhook jobs (work-queue stream GLOBO_JOBS).
	SubjectThumbnailsReady  = "globo.catalog.thumbnails_ready"
	SubjectWebhookRequested = "globo_jobs.webhook"
)

// Consumer is a handler of a subject and the fields of the payload it
// reads: JSON paths such as "order.items[].name". Needs documents what a
// change of the schema must keep; the tests check that each path is a
// required field of the schema and of the consumer's decoding struct.
type Consumer struct {
	Name  string   // the consuming component, e.g. "search indexer"
	Needs []string // JSON paths of the fields it reads
}

// Contract describes one message type at one version.
type Contract struct {
	Subject   string     // the bus subject, e.g. "globo.catalog.item_listed"
	Name      string     // the message's name, e.g. "ItemListed"
	Version   int        // the schema version, 1 for the unsuffixed subject
	File      string     // the schema's file name under schemas/
	Producer  string     // who publishes it, and how
	Consumers []Consumer // who handles it
}

// Contracts lists every registered message type, ordered by subject. The
// slice is the caller's own.
func Contracts() []Contract {
	cs := []Contract{
		{
			Subject: SubjectItemListed, Name: "ItemListed", Version: 1, File: "catalog.item_listed.v1.json",
			Producer: "catalog (catalogdb.CreateProduct, through the outbox)",
			Consumers: []Consumer{
				{Name: "search indexer (search.Service.HandleEvent)", Needs: []string{"product_id", "name", "description", "category"}},
				{Name: "thumbnail worker (thumbnail.Worker.Handle)", Needs: []string{"product_id", "image_key"}},
			},
		},
		{
			Subject: SubjectProductChanged, Name: "ProductChanged", Version: 1, File: "catalog.product_changed.v1.json",
			Producer: "catalog (catalogdb.UpdateProduct, through the outbox)",
			Consumers: []Consumer{
				{Name: "search indexer (search.Service.HandleEvent)", Needs: []string{"product_id", "name", "description", "category"}},
				{Name: "catalog cache of every instance (catalog.Service.HandleProductChanged)", Needs: []string{"product_id", "version"}},
			},
		},
		{
			Subject: SubjectOrderPlaced, Name: "OrderPlaced", Version: 1, File: "order.placed.v1.json",
			Producer: "order (order.Service.Confirm via orderdb's Update, through the outbox)",
			Consumers: []Consumer{
				{Name: "mail worker (mail.Worker.Handle)", Needs: []string{
					"order.id", "order.email", "order.items[].name", "order.items[].quantity",
					"order.items[].unit_price.amount", "order.items[].unit_price.currency",
					"order.items[].line_total.amount", "order.items[].line_total.currency",
					"order.subtotal.amount", "order.subtotal.currency",
					"order.shipping_cost.amount", "order.shipping_cost.currency",
					"order.total.amount", "order.total.currency",
					"order.shipping_address.name", "order.shipping_address.line1", "order.shipping_address.city",
					"order.shipping_address.postal_code", "order.shipping_address.country",
					"order.created_at", "order.updated_at",
				}},
				partnerOrderPlaced, // partner.go
			},
		},
		{
			Subject: SubjectOrderCancelled, Name: "OrderCancelled", Version: 1, File: "order.cancelled.v1.json",
			Producer: "order (order.Service.Cancel via orderdb's Update, through the outbox)",
			Consumers: []Consumer{
				{Name: "mail worker (mail.Worker.Handle)", Needs: []string{
					"order.id", "order.email", "order.items[].name", "order.items[].quantity",
					"order.items[].line_total.amount", "order.items[].line_total.currency",
					"order.total.amount", "order.total.currency",
					"order.shipping_address.name", "order.payment.status", "order.cancel_reason",
					"order.created_at", "order.updated_at",
				}},
			},
		},
	}
	cs = append(cs,
		Contract{
			Subject: SubjectPageViewed, Name: "PageViewed", Version: 1, File: "globo_analytics.page_viewed.v1.json",
			Producer: "deprecated: storefronts before the summaries (one message per product page); accepted for one more version",
			Consumers: []Consumer{
				{Name: "analytics consumer (analytics.Service.Handle)", Needs: []string{"product_id", "viewed_at"}},
			},
		},
		Contract{
			Subject: SubjectSearchMade, Name: "SearchMade", Version: 1, File: "globo_analytics.search_made.v1.json",
			Producer: "deprecated: storefronts before the summaries (one message per search); accepted for one more version",
			Consumers: []Consumer{
				{Name: "analytics consumer (analytics.Service.Handle)", Needs: []string{"query", "results", "searched_at"}},
			},
		},
		Contract{
			Subject: SubjectPageViewsCounted, Name: "PageViewsCounted", Version: 1, File: "globo_analytics.page_views_counted.v1.json",
			Producer: "storefront (analytics.Emitter: views counted in memory, one summary per second and at a clean stop)",
			Consumers: []Consumer{
				{Name: "analytics consumer (analytics.Service.Handle)", Needs: []string{
					"instance", "window_start", "window_end", "counts[].product_id", "counts[].views"}},
			},
		},
		Contract{
			Subject: SubjectSearchesCounted, Name: "SearchesCounted", Version: 1, File: "globo_analytics.searches_counted.v1.json",
			Producer: "storefront (analytics.Emitter: searches counted in memory, one summary per second and at a clean stop)",
			Consumers: []Consumer{
				{Name: "analytics consumer (analytics.Service.Handle)", Needs: []string{
					"instance", "window_start", "window_end", "counts[].query", "counts[].searches", "counts[].no_result"}},
			},
		},
	)
	cs = append(cs, partnerContracts()...)
	cs = append(cs, jobContracts()...) // jobs.go
	cs = append(cs, paymentContracts()...)
	cs = append(cs, accountContracts()...) // account.go
	slices.SortFunc(cs, func(a, b Contract) int { return strings.Compare(a.Subject, b.Subject) })
	return cs
}

// Schema is a compiled JSON Schema with its source.
type Schema struct {
	name string
	raw  []byte
	sch  *jsonschema.Schema
}

// Name is the schema's file name (or the name given to Compile).
func (s *Schema) Name() string { return s.name }

// Source is the schema's JSON text; the caller must not change it.
func (s *Schema) Source() []byte { return s.raw }

// Compile compiles raw, a draft 2020-12 JSON Schema, under name (a file
// name such as "order.placed.v1.json", resolved against SchemaBase). Format
// keywords ("date-time") are asserted, not only annotated. errs.Invalid
// when raw is not JSON or not a valid schema.
func Compile(name string, raw []byte) (*Schema, error) {
	const op = "contracts.Compile"
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, errs.E(op, errs.Invalid, errs.Msg("schema %s is not JSON: %v", name, err))
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	loc := SchemaBase + name
	if err := c.AddResource(loc, doc); err != nil {
		return nil, errs.E(op, errs.Invalid, errs.Msg("schema %s: %v", name, err))
	}
	sch, err := c.Compile(loc)
	if err != nil {
		return nil, errs.E(op, errs.Invalid, errs.Msg("schema %s does not compile: %v", name, err))
	}
	return &Schema{name: name, raw: raw, sch: sch}, nil
}

// Validate checks payload, a JSON document, against s. It returns
// errs.Invalid with every violation (JSON pointer and reason) in its
// message when the payload is not JSON or does not conform.
func (s *Schema) Validate(payload []byte) error {
	if why := s.violations(payload); why != "" {
		return errs.E("contracts.Validate", errs.Invalid, errs.Msg("%s", why))
	}
	return nil
}

// violations says why payload does not conform to s, or "" when it does.
func (s *Schema) violations(payload []byte) string {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Sprintf("payload is not JSON: %v", err)
	}
	if err := s.sch.Validate(v); err != nil {
		return fmt.Sprintf("payload does not conform to %s: %s", s.name, reason(err))
	}
	return ""
}

// reason flattens a validation error to one line: the innermost failures,
// each with the location of the offending value.
func reason(err error) string {
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return err.Error()
	}
	p := message.NewPrinter(language.English)
	var out []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, fmt.Sprintf("at %q: %s", "/"+strings.Join(e.InstanceLocation, "/"), e.ErrorKind.LocalizedString(p)))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return strings.Join(out, "; ")
}

// Registry maps each registered subject to its compiled schema. It is
// immutable and safe for concurrent use.
type Registry struct {
	bySubject map[string]*Schema
	contracts []Contract
}

// New compiles every registered schema. It fails (errs.Invalid) only if an
// embedded schema is missing or broken, which the package's tests rule out.
func New() (*Registry, error) {
	const op = "contracts.New"
	r := &Registry{bySubject: make(map[string]*Schema), contracts: Contracts()}
	for _, c := range r.contracts {
		raw, err := schemaFiles.ReadFile("schemas/" + c.File)
		if err != nil {
			return nil, errs.E(op, errs.Invalid, errs.Msg("no schema file %s for %s", c.File, c.Subject), err)
		}
		s, err := Compile(c.File, raw)
		if err != nil {
			return nil, errs.E(op, err)
		}
		r.bySubject[c.Subject] = s
	}
	return r, nil
}

// Subjects lists the registered subjects, sorted.
func (r *Registry) Subjects() []string {
	out := make([]string, 0, len(r.contracts))
	for _, c := range r.contracts {
		out = append(out, c.Subject)
	}
	return out
}

// Schema returns the schema of subject; errs.NotFound for a subject with no
// contract.
func (r *Registry) Schema(subject string) (*Schema, error) {
	s, ok := r.bySubject[subject]
	if !ok {
		return nil, errs.E("contracts.Schema", errs.NotFound, errs.Msg("no contract for subject %q", subject))
	}
	return s, nil
}

// Validate checks payload against the schema of subject. errs.Invalid,
// saying why, for a payload that does not conform and for a subject with no
// contract (every message on the bus must have one).
func (r *Registry) Validate(subject string, payload []byte) error {
	s, ok := r.bySubject[subject]
	if !ok {
		return errs.E("contracts.Validate", errs.Invalid, errs.Msg("no contract for subject %q", subject))
	}
	if why := s.violations(payload); why != "" {
		return errs.E("contracts.Validate", errs.Invalid, errs.Msg("%s: %s", subject, why))
	}
	return nil
}

// defaultRegistry compiles the embedded schemas once, on first use. The
// schemas are constant data built into the binary, so this is a cache of a
// pure function, not mutable shared state.
var defaultRegistry = sync.OnceValues(New)

// Default returns the registry of the embedded schemas, compiled once.
func Default() (*Registry, error) { return defaultRegistry() }

// Validate checks payload against the schema registered for subject, as
// Registry.Validate does on the Default registry: errs.Invalid with the
// reason when it does not conform or the subject has no contract.
func Validate(subject string, payload []byte) error {
	r, err := defaultRegistry()
	if err != nil {
		return err
	}
	return r.Validate(subject, payload)
}
